package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The stored form keeps the client's bytes (json.html: a server keeps
// primitive extensions, unknown content and decimal precision), minus
// insignificant whitespace, and the tree is the same content decoded.
func TestObjectKeepsBytesAndTree(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"compact input unchanged", `{"resourceType":"Patient","birthDate":"1970-01-01","_birthDate":{"extension":[{"url":"u","valueString":"x"}]}}`,
			`{"resourceType":"Patient","birthDate":"1970-01-01","_birthDate":{"extension":[{"url":"u","valueString":"x"}]}}`},
		{"decimals keep their literal", `{"resourceType":"Observation","valueQuantity":{"value":1.50},"x":1e2,"y":-0.0}`,
			`{"resourceType":"Observation","valueQuantity":{"value":1.50},"x":1e2,"y":-0.0}`},
		{"whitespace dropped, strings kept", "{ \"resourceType\" : \"Patient\" ,\n \"name\": [ { \"text\" : \"a  b\\n\" } ] }",
			`{"resourceType":"Patient","name":[{"text":"a  b\n"}]}`},
		{"escaped key bytes kept", `{"resourceType":"Patient","\u0061ctive":true}`, `{"resourceType":"Patient","\u0061ctive":true}`},
		{"byte order mark", "\xef\xbb\xbf{\"resourceType\":\"Patient\"}", `{"resourceType":"Patient"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := ParseObject([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(o.Bytes()); got != c.want {
				t.Fatalf("Bytes() = %s, want %s", got, c.want)
			}
			checkTree(t, o)
		})
	}
}

// checkTree asserts that Tree is exactly what decoding Bytes gives.
func checkTree(t *testing.T, o *Object) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(o.Bytes()))
	dec.UseNumber()
	var want map[string]any
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("Bytes() is not JSON: %v\n%s", err, o.Bytes())
	}
	if !reflect.DeepEqual(o.Tree(), want) {
		t.Fatalf("Tree() = %#v\ndecoded Bytes() = %#v", o.Tree(), want)
	}
}

// Set, Delete and StampMeta (resource.html#Meta) keep the tree in step.
func TestObjectEditsKeepTree(t *testing.T) {
	o, err := ParseObject([]byte(`{"resourceType":"Observation","id":"old","meta":{"source":"emr","versionId":"9","tag":[{"code":"t"}]},"status":"final"}`))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 600e6, time.UTC)
	if err := StampMeta(o, "new", 3, now); err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Observation","id":"new","meta":{"source":"emr","tag":[{"code":"t"}],"versionId":"3","lastUpdated":"2026-01-02T03:04:05.600Z"},"status":"final"}`
	if got := string(o.Bytes()); got != want {
		t.Fatalf("after StampMeta: %s\nwant %s", got, want)
	}
	checkTree(t, o)
	if err := o.Set("note", json.RawMessage(`[{"text":"x"}]`), "status"); err != nil {
		t.Fatal(err)
	}
	o.Delete("status")
	if err := o.Set("status", json.RawMessage(`"amended"`)); err != nil {
		t.Fatal(err)
	}
	checkTree(t, o)
	if err := o.Set("bad", json.RawMessage(`{"a":`)); err == nil {
		t.Fatal("Set of invalid JSON succeeded")
	}
	if _, ok := o.Get("bad"); ok {
		t.Fatal("a failed Set changed the object")
	}
	checkTree(t, o)
	if o.String("status") != "amended" || o.String("note") != "" {
		t.Fatalf("String: %q %q", o.String("status"), o.String("note"))
	}
	// An object built from nothing (StampMeta of a resource without meta).
	o, _ = ParseObject([]byte(`{"resourceType":"Patient"}`))
	if err := StampMeta(o, "p", 1, now); err != nil {
		t.Fatal(err)
	}
	checkTree(t, o)
}

// json.html: objects SHALL NOT have duplicate properties. The object's own
// are refused at once; deeper ones are left to the validator, which reports
// them with everything else.
func TestParseObjectRejects(t *testing.T) {
	cases := []struct{ name, in, msg, expr string }{
		{"duplicate top-level property", `{"resourceType":"Patient","gender":"male","gender":"female"}`, `duplicate property "gender"`, "gender"},
		{"not an object", `[{"resourceType":"Patient"}]`, "must be a JSON object, not an array", ""},
		{"syntax", `{"resourceType":"Patient",}`, "invalid JSON at byte offset 26 (line 1, column 27)", ""},
		{"trailing data", `{"resourceType":"Patient"} {}`, "after the top-level value", ""},
		{"invalid UTF-8", "{\"resourceType\":\"Patient\",\"x\":\"\xff\"}", "not valid UTF-8", ""},
		{"too deep", `{"a":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`, "nest deeper than 64", "a" + strings.Repeat("[0]", MaxDepth-1)},
		{"empty", ``, "unexpected end of input", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseObject([]byte(c.in))
			var fe *Error
			if !errors.As(err, &fe) || fe.Kind != KindInvalid || len(fe.Issues) != 1 {
				t.Fatalf("ParseObject(%q) = %v, want one invalid issue", c.in, err)
			}
			is := fe.Issues[0]
			if !strings.Contains(is.Diagnostics, c.msg) {
				t.Fatalf("diagnostics %q, want %q", is.Diagnostics, c.msg)
			}
			if got := strings.Join(is.Expression, ","); got != c.expr {
				t.Fatalf("expression %q, want %q", got, c.expr)
			}
		})
	}
	o, err := ParseObject([]byte(`{"resourceType":"Patient","name":[{"family":"a","family":"b"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if d := o.Duplicates(); len(d) != 1 || d[0].Render("Patient") != "Patient.name[0].family" {
		t.Fatalf("Duplicates() = %v", d)
	}
}

// Whatever the input, ParseObject either fails with a 400 or returns an
// object whose bytes decode to its tree and to the input's content.
func FuzzParseObject(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"resourceType":"Patient","meta":{"versionId":"1"},"a":[1.50, {"b" : "c"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseObject(data)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) || fe.Kind != KindInvalid {
				t.Fatalf("ParseObject(%q) = %v", data, err)
			}
			return
		}
		checkTree(t, o)
		if err := StampMeta(o, "x", 1, time.Unix(0, 0)); err == nil {
			checkTree(t, o)
		}
	})
}

// SetTag (meta.html#tag): tags of the system are replaced, others and
// every other meta element are kept as written.
func TestSetTag(t *testing.T) {
	const sys = "http://example.org/origin"
	for _, c := range []struct{ in, code, want string }{
		{`{"resourceType":"Patient"}`, "", `{"resourceType":"Patient"}`},
		{`{"resourceType":"Patient"}`, "app", `{"resourceType":"Patient","meta":{"tag":[{"code":"app","system":"http://example.org/origin"}]}}`},
		{`{"resourceType":"Patient","meta":{"source":"x","tag":[{"system":"http://example.org/origin","code":"forged"},{"system":"s","code":"c","extension":[{"url":"u","valueDecimal":1.50}]}]}}`, "",
			`{"resourceType":"Patient","meta":{"source":"x","tag":[{"code":"c","extension":[{"url":"u","valueDecimal":1.50}],"system":"s"}]}}`},
		{`{"resourceType":"Patient","meta":{"tag":[{"system":"http://example.org/origin","code":"forged"}]}}`, "", `{"resourceType":"Patient"}`},
		{`{"resourceType":"Patient","meta":{"profile":["p"]}}`, "", `{"resourceType":"Patient","meta":{"profile":["p"]}}`},
	} {
		o, err := ParseObject([]byte(c.in))
		if err != nil {
			t.Fatal(err)
		}
		if err := SetTag(o, sys, c.code, ""); err != nil {
			t.Fatal(err)
		}
		if got := string(o.Bytes()); got != c.want {
			t.Errorf("SetTag(%s, %q)\n got %s\nwant %s", c.in, c.code, got, c.want)
		}
	}
}
