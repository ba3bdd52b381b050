package fhir

// RFC 8259 (JSON) as FHIR uses it (json.html): the parser must accept and
// decode exactly what encoding/json does, except for its deliberate
// differences: a leading byte order mark is skipped (section 8.1), invalid
// UTF-8 is an error, nesting is limited to MaxDepth, duplicate keys are
// reported (json.html: "objects SHALL NOT have duplicate properties"), a
// number that overflows a float64 is refused (section 6: implementations may
// limit the range of numbers) and so is a lone UTF-16 surrogate escape
// (section 8.2: such a string is not Unicode).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

var parseSeeds = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0.5e+10`, `1E3`, `"x"`,
	`{"a":[1,2,{"b":null}],"c":"\u00e9\n\t\"\\\/"}`,
	`"\ud83d\ude00 \ud83d \udc00x"`, // pair, lone high, lone low
	`{"a":1,"a":2}`, ` [ 1 , 2 ] `, `[1,]`, `{"a" 1}`, `01`, `1.`, `-`, `"\x"`, `"abc`, `[`, `{"a":1}}`,
	"\"\x01\"", `tru`, `nul`, `{"a":[[[[]]]]}`,
	`1e400`, `[-1e400]`, `1e-400`, `{"\ud800":1}`, `"\udc00x"`, `"\ud83d\u0041"`,
}

func TestParseMatchesEncodingJSON(t *testing.T) {
	for _, s := range parseSeeds {
		compareWithEncodingJSON(t, []byte(s))
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(compareWithEncodingJSON)
}

func compareWithEncodingJSON(t *testing.T, data []byte) {
	got, dups, err := ParseJSON(data)
	// CheckJSON, which keeps nothing, refuses exactly what ParseJSON refuses
	// or reports as duplicate.
	if cerr := CheckJSON(data, ""); (cerr == nil) != (err == nil && len(dups) == 0) {
		t.Fatalf("CheckJSON(%q) = %v; ParseJSON error %v, duplicates %v", data, cerr, err, dups)
	}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) || !utf8.Valid(data) {
		return
	}
	var se *SyntaxError
	if errors.As(err, &se) && se.At != nil {
		return // nesting limit
	}
	if valid := json.Valid(data); (err == nil) != valid {
		t.Fatalf("parse(%q) error %v; encoding/json valid = %v", data, err, valid)
	}
	if err != nil {
		if se == nil || se.Offset < 0 || se.Offset > len(data) {
			t.Fatalf("parse(%q): error %v is not a syntax error with an offset in range", data, err)
		}
		return
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var want any
	if err := d.Decode(&want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parse(%q) = %#v, encoding/json = %#v", data, got, want)
	}
	for _, p := range dups {
		if len(p) == 0 || p[len(p)-1].Index >= 0 {
			t.Fatalf("duplicate at %v is not a property", p)
		}
	}
}

// The limits are refused with their location (RFC 8259 sections 6 and 8.2);
// what is just inside them is accepted.
func TestParseLimits(t *testing.T) {
	big := "1" + strings.Repeat("0", 308) // 1e308, 309 digits
	cases := []struct {
		name, in string
		msg      string // "" = accepted
		at       string // Render("R") of the error location
	}{
		{"exponent overflows", `{"a":{"b":1e400}}`, "number 1e400 is out of range", "R.a.b"},
		{"negative overflow", `{"a":[0,-1e400]}`, "number -1e400 is out of range", "R.a[1]"},
		{"just above the largest float64", `1.7976931348623159e308`, "out of range", "R"},
		{"many integer digits", `[` + big + `0]`, "out of range", "R[0]"},
		{"lone high surrogate", `{"a":"\ud800"}`, `lone UTF-16 surrogate \ud800`, "R.a"},
		{"lone low surrogate", `{"a":["x","\udc00x"]}`, `lone UTF-16 surrogate \udc00`, "R.a[1]"},
		{"high surrogate then a letter", `"\ud83d\u0041"`, `lone UTF-16 surrogate \ud83d`, "R"},
		{"surrogate in a property name", `{"a":{"\udfff":1}}`, `lone UTF-16 surrogate \udfff`, "R.a"},
		{"largest float64", `1.7976931348623157e308`, "", ""},
		{"308 integer digits", `[` + big[:308] + `]`, "", ""},
		{"309 integer digits below the limit", `[` + big + `]`, "", ""},
		{"underflow is not overflow", `1e-400`, "", ""},
		{"surrogate pair", `"\ud83d\ude00"`, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ParseJSON([]byte(c.in))
			if c.msg == "" {
				if err != nil {
					t.Fatalf("ParseJSON(%.40q): %v", c.in, err)
				}
				return
			}
			var se *SyntaxError
			if !errors.As(err, &se) || !strings.Contains(se.Msg, c.msg) || se.At == nil {
				t.Fatalf("ParseJSON(%.40q) = %v, want a limit error %q", c.in, err, c.msg)
			}
			if got := se.At.Render("R"); got != c.at {
				t.Fatalf("location %q, want %q", got, c.at)
			}
		})
	}
	// ParseObject (every resource body) answers them with a 400 at the location.
	_, err := ParseObject([]byte(`{"resourceType":"Observation","valueQuantity":{"value":1e400}}`))
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindInvalid || len(fe.Issues) != 1 || strings.Join(fe.Issues[0].Expression, ",") != "valueQuantity.value" {
		t.Fatalf("ParseObject: %v, want one 400 issue at valueQuantity.value", err)
	}
}

// ParseJSONOrdered keeps member order (a duplicate keeps its first place
// and the last value) and has ParseJSON's limits.
func TestParseJSONOrdered(t *testing.T) {
	type ordered struct {
		keys []string
		vals map[string]any
	}
	mk := func(keys []string, vals map[string]any) any { return ordered{keys, vals} }
	v, dups, err := ParseJSONOrdered([]byte(`{"z":1,"a":{"y":[],"b":2},"z":3}`), mk)
	if err != nil {
		t.Fatal(err)
	}
	o := v.(ordered)
	if !reflect.DeepEqual(o.keys, []string{"z", "a"}) || o.vals["z"] != json.Number("3") {
		t.Fatalf("keys %v, z = %v", o.keys, o.vals["z"])
	}
	if in := o.vals["a"].(ordered); !reflect.DeepEqual(in.keys, []string{"y", "b"}) {
		t.Fatalf("inner keys %v", in.keys)
	}
	if len(dups) != 1 || dups[0].Render("") != "z" {
		t.Fatalf("dups %v", dups)
	}
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	if _, _, err := ParseJSONOrdered([]byte(deep), mk); err == nil || !strings.Contains(err.Error(), "nest deeper") {
		t.Fatalf("depth: %v", err)
	}
}

// CheckJSON (the Bundle body) refuses what ParseJSON refuses and every
// duplicate property at any depth (json.html), located under the root.
func TestCheckJSON(t *testing.T) {
	var wide []string // an object of 100 members
	for i := range 100 {
		wide = append(wide, fmt.Sprintf(`"k%d":%d`, i, i))
	}
	obj := "{" + strings.Join(wide, ",") + "}"
	cases := []struct {
		name, in string
		msgs     []string // nil = accepted
		exprs    []string
	}{
		{"sibling objects with the same keys", `[` + obj + `,{"k1":1,"k2":2},` + obj + `,{"k1":1}]`, nil, nil},
		{"duplicate after a wide sibling", `[` + obj + `,{"k1":1,"k1":2},{"a":1,"b":{"a":1}}]`, []string{`duplicate property "k1"`}, []string{"R[1].k1"}},
		{"duplicate in a wide object", `[{"a":1},` + strings.TrimSuffix(obj, "}") + `,"k99":0}]`, []string{`duplicate property "k99"`}, []string{"R[1].k99"}},
		{"valid", `{"resourceType":"Bundle","entry":[{"request":{"url":"Patient"}},[1,{"a":null}]]}`, nil, nil},
		{"duplicates anywhere", `{"resourceType":"Bundle","entry":[{"request":{"method":"GET","url":"a","url":"b"}}],"type":"batch","type":"x"}`,
			[]string{`duplicate property "url"`, `duplicate property "type"`}, []string{"Bundle.entry[0].request.url", "Bundle.type"}},
		{"syntax", `{"resourceType":"Bundle",}`, []string{"invalid JSON at byte offset 25"}, nil},
		{"too deep", `{"entry":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`,
			[]string{"nest deeper than 64"}, []string{"Bundle.entry" + strings.Repeat("[0]", MaxDepth-1)}},
		{"number out of range", `{"entry":[{"resource":{"valueDecimal":-1e400}}]}`, []string{"out of range"}, []string{"Bundle.entry[0].resource.valueDecimal"}},
		{"lone surrogate", `{"entry":[{"fullUrl":"\udc00"}]}`, []string{"lone UTF-16 surrogate"}, []string{"Bundle.entry[0].fullUrl"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := "Bundle"
			if strings.HasPrefix(c.in, "[") {
				root = "R"
			}
			err := CheckJSON([]byte(c.in), root)
			if c.msgs == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.Kind != KindInvalid || len(fe.Issues) != len(c.msgs) {
				t.Fatalf("CheckJSON = %v, want %d invalid issues", err, len(c.msgs))
			}
			var exprs []string
			for i, is := range fe.Issues {
				if !strings.Contains(is.Diagnostics, c.msgs[i]) {
					t.Errorf("issue %d: %q, want %q", i, is.Diagnostics, c.msgs[i])
				}
				exprs = append(exprs, is.Expression...)
			}
			if !reflect.DeepEqual(exprs, c.exprs) {
				t.Errorf("expressions %q, want %q", exprs, c.exprs)
			}
		})
	}
}
