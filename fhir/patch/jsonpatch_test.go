package patch

import (
	"errors"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

func mustEqualJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	g, err := decode(got)
	if err != nil {
		t.Fatalf("result is not JSON: %v\n%s", err, got)
	}
	w, err := decode([]byte(want))
	if err != nil {
		t.Fatalf("bad want: %v", err)
	}
	if !equal(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func wantKind(t *testing.T, err error, kind fhir.Kind, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error of kind %v, got none", kind.Status())
	}
	var fe *fhir.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error is not a *fhir.Error: %v", err)
	}
	if fe.Kind != kind {
		t.Fatalf("kind = %d (%d), want %d: %v", fe.Kind, fe.Kind.Status(), kind.Status(), err)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q does not contain %q", err, c)
		}
	}
}

// TestJSONPatchRFC6902AppendixA runs the examples of RFC 6902 appendix A.
func TestJSONPatchRFC6902AppendixA(t *testing.T) {
	tests := []struct {
		name, doc, patch, want string
		fail                   fhir.Kind // 0 with want set: success
	}{
		{"A.1 add object member", `{"foo":"bar"}`, `[{"op":"add","path":"/baz","value":"qux"}]`, `{"baz":"qux","foo":"bar"}`, 0},
		{"A.2 add array element", `{"foo":["bar","baz"]}`, `[{"op":"add","path":"/foo/1","value":"qux"}]`, `{"foo":["bar","qux","baz"]}`, 0},
		{"A.3 remove object member", `{"baz":"qux","foo":"bar"}`, `[{"op":"remove","path":"/baz"}]`, `{"foo":"bar"}`, 0},
		{"A.4 remove array element", `{"foo":["bar","qux","baz"]}`, `[{"op":"remove","path":"/foo/1"}]`, `{"foo":["bar","baz"]}`, 0},
		{"A.5 replace", `{"baz":"qux","foo":"bar"}`, `[{"op":"replace","path":"/baz","value":"boo"}]`, `{"baz":"boo","foo":"bar"}`, 0},
		{"A.6 move value", `{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}`, `[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]`, `{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}`, 0},
		{"A.7 move array element", `{"foo":["all","grass","cows","eat"]}`, `[{"op":"move","from":"/foo/1","path":"/foo/3"}]`, `{"foo":["all","cows","eat","grass"]}`, 0},
		{"A.8 test success", `{"baz":"qux","foo":["a",2,"c"]}`, `[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2}]`, `{"baz":"qux","foo":["a",2,"c"]}`, 0},
		{"A.9 test error", `{"baz":"qux"}`, `[{"op":"test","path":"/baz","value":"bar"}]`, "", fhir.KindUnprocessable},
		{"A.10 add nested member", `{"foo":"bar"}`, `[{"op":"add","path":"/child","value":{"grandchild":{}}}]`, `{"foo":"bar","child":{"grandchild":{}}}`, 0},
		{"A.11 ignore unrecognized members", `{"foo":"bar"}`, `[{"op":"add","path":"/baz","value":"qux","xyz":123}]`, `{"foo":"bar","baz":"qux"}`, 0},
		{"A.12 add to nonexistent target", `{"foo":"bar"}`, `[{"op":"add","path":"/baz/bat","value":"qux"}]`, "", fhir.KindUnprocessable},
		{"A.13 invalid patch (duplicate op)", `{"foo":"bar"}`, `[{"op":"add","path":"/baz","value":"qux","op":"remove"}]`, "", fhir.KindInvalid},
		{"A.14 ~ escape ordering", `{"/":9,"~1":10}`, `[{"op":"test","path":"/~01","value":10}]`, `{"/":9,"~1":10}`, 0},
		{"A.15 string is not number", `{"/":9,"~1":10}`, `[{"op":"test","path":"/~01","value":"10"}]`, "", fhir.KindUnprocessable},
		{"A.16 add array value", `{"foo":["bar"]}`, `[{"op":"add","path":"/foo/-","value":["abc","def"]}]`, `{"foo":["bar",["abc","def"]]}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := JSONPatch([]byte(tt.doc), []byte(tt.patch))
			if tt.fail != 0 {
				wantKind(t, err, tt.fail)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mustEqualJSON(t, got, tt.want)
		})
	}
}

// TestJSONPatchErrors: malformed patches are 400, inapplicable ones 422, and
// the error names the operation index and path (http.html#patch).
func TestJSONPatchErrors(t *testing.T) {
	doc := `{"resourceType":"Patient","id":"p1","name":[{"family":"A"}],"active":true}`
	tests := []struct {
		name, patch string
		kind        fhir.Kind
		contains    []string
	}{
		{"not an array", `{"op":"add"}`, fhir.KindInvalid, nil},
		{"not JSON", `[{"op":`, fhir.KindInvalid, nil},
		{"op not object", `[1]`, fhir.KindInvalid, []string{"operation 0"}},
		{"unknown op", `[{"op":"frob","path":"/a"}]`, fhir.KindInvalid, []string{"operation 0", "frob"}},
		{"missing path", `[{"op":"remove"}]`, fhir.KindInvalid, []string{"path"}},
		{"missing value", `[{"op":"test","path":"/active"},{"op":"add","path":"/x"}]`, fhir.KindInvalid, []string{"operation 0", "value"}},
		{"missing from", `[{"op":"copy","path":"/x"}]`, fhir.KindInvalid, []string{"from"}},
		{"bad pointer", `[{"op":"remove","path":"name"}]`, fhir.KindInvalid, []string{"JSON Pointer"}},
		{"bad tilde", `[{"op":"remove","path":"/a~2"}]`, fhir.KindInvalid, []string{"~"}},
		{"remove missing", `[{"op":"remove","path":"/gender"}]`, fhir.KindUnprocessable, []string{"operation 0", "/gender"}},
		{"replace missing", `[{"op":"test","path":"/active","value":true},{"op":"replace","path":"/name/3","value":{}}]`, fhir.KindUnprocessable, []string{"operation 1", "/name/3", "out of bounds"}},
		{"leading zero index", `[{"op":"remove","path":"/name/00"}]`, fhir.KindUnprocessable, []string{"not an array index"}},
		{"dash on remove", `[{"op":"remove","path":"/name/-"}]`, fhir.KindUnprocessable, nil},
		{"move into own child", `[{"op":"move","from":"/name","path":"/name/0/x"}]`, fhir.KindUnprocessable, []string{"prefix"}},
		{"copy missing from", `[{"op":"copy","from":"/nope","path":"/x"}]`, fhir.KindUnprocessable, []string{"from"}},
		{"change id", `[{"op":"replace","path":"/id","value":"p2"}]`, fhir.KindUnprocessable, []string{"id"}},
		{"remove id", `[{"op":"remove","path":"/id"}]`, fhir.KindUnprocessable, []string{"id"}},
		{"change resourceType", `[{"op":"replace","path":"/resourceType","value":"Group"}]`, fhir.KindUnprocessable, []string{"resourceType"}},
		{"replace root with array", `[{"op":"replace","path":"","value":[]}]`, fhir.KindUnprocessable, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := JSONPatch([]byte(doc), []byte(tt.patch))
			wantKind(t, err, tt.kind, tt.contains...)
		})
	}
}

// TestJSONPatchPreserves: untouched values keep number literals and member
// order byte for byte; test compares numbers by value (RFC 6902 4.6).
func TestJSONPatchPreserves(t *testing.T) {
	doc := `{"resourceType":"Observation","id":"o1","valueQuantity":{"value":1.50,"unit":"mg","code":"mg"},"z":1e3,"a":[0.10,{"y":2,"b":3}],"status":"final"}`
	patch := `[{"op":"test","path":"/valueQuantity/value","value":1.5},{"op":"replace","path":"/status","value":"amended"},{"op":"add","path":"/note","value":[{"text":"x<y&z"}]},{"op":"copy","from":"/a/1","path":"/c"}]`
	got, err := JSONPatch([]byte(doc), []byte(patch))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Observation","id":"o1","valueQuantity":{"value":1.50,"unit":"mg","code":"mg"},"z":1e3,"a":[0.10,{"y":2,"b":3}],"status":"amended","note":[{"text":"x<y&z"}],"c":{"y":2,"b":3}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestJSONPatchAtomic: a failing later operation returns no document and
// does not modify the input.
func TestJSONPatchAtomic(t *testing.T) {
	doc := []byte(`{"a":[1,2]}`)
	orig := string(doc)
	_, err := JSONPatch(doc, []byte(`[{"op":"remove","path":"/a/0"},{"op":"test","path":"/a/0","value":1}]`))
	wantKind(t, err, fhir.KindUnprocessable, "operation 1", "test failed")
	if string(doc) != orig {
		t.Fatalf("input modified: %s", doc)
	}
}

func TestJSONPatchRootAndEscapes(t *testing.T) {
	got, err := JSONPatch([]byte(`{"a":1}`), []byte(`[{"op":"add","path":"","value":{"b":"\u2028\"\\\n"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"b":"\u2028\"\\\n"}`; string(got) != want {
		t.Fatalf("got %s want %s", got, want)
	}
	got, err = JSONPatch([]byte(`{"a/b":{"m~n":[1]}}`), []byte(`[{"op":"add","path":"/a~1b/m~0n/0","value":0}]`))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a/b":{"m~n":[0,1]}}`; string(got) != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

func BenchmarkJSONPatch(b *testing.B) {
	doc := []byte(`{"resourceType":"Patient","id":"p","name":[{"family":"F","given":["A","B"]}],"identifier":[{"system":"s","value":"1"},{"system":"s","value":"2"}],"birthDate":"1970-01-01","active":true}`)
	p := []byte(`[{"op":"replace","path":"/name/0/family","value":"G"},{"op":"add","path":"/identifier/-","value":{"system":"t","value":"3"}},{"op":"test","path":"/active","value":true}]`)
	for b.Loop() {
		if _, err := JSONPatch(doc, p); err != nil {
			b.Fatal(err)
		}
	}
}
