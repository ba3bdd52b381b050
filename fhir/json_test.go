package fhir

// RFC 8259 (JSON) as FHIR uses it (json.html): the parser must accept and
// decode exactly what encoding/json does, except for its deliberate
// differences: a leading byte order mark is skipped, invalid UTF-8 is an
// error, nesting is limited to MaxDepth and duplicate keys are reported.

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

var parseSeeds = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0.5e+10`, `1E3`, `"x"`,
	`{"a":[1,2,{"b":null}],"c":"\u00e9\n\t\"\\\/"}`,
	`"\ud83d\ude00 \ud83d \udc00x"`, // pair, lone high, lone low
	`{"a":1,"a":2}`, ` [ 1 , 2 ] `, `[1,]`, `{"a" 1}`, `01`, `1.`, `-`, `"\x"`, `"abc`, `[`, `{"a":1}}`,
	"\"\x01\"", `tru`, `nul`, `{"a":[[[[]]]]}`,
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
