package validate

// RFC 8259 (JSON) as FHIR uses it (json.html): the parser must accept and
// decode exactly what encoding/json does, except for its deliberate
// differences: a leading byte order mark is skipped, invalid UTF-8 is an
// error, nesting is limited to MaxDepth and duplicate keys are reported.

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/fhir"
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
	got, dups, err := parse(data)
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) || !utf8.Valid(data) {
		return
	}
	var se *syntaxError
	if errors.As(err, &se) && se.at != nil {
		return // nesting limit
	}
	if valid := json.Valid(data); (err == nil) != valid {
		t.Fatalf("parse(%q) error %v; encoding/json valid = %v", data, err, valid)
	}
	if err != nil {
		if se == nil || se.offset < 0 || se.offset > len(data) {
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
		if !strings.HasPrefix(p.msg, "duplicate property") {
			t.Fatalf("unexpected problem %+v", p)
		}
	}
}

// Whatever the input, Validate returns nil or a 400 *fhir.Error, never panics.
func FuzzValidate(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add("", []byte(s))
	}
	for _, name := range []string{"Patient-example.json", "Observation-blood-pressure.json", "Provenance-example.json"} {
		raw, err := os.ReadFile(filepath.Join(examplesDir, name))
		if err != nil {
			f.Fatal(err)
		}
		typ, _, _ := strings.Cut(name, "-")
		f.Add(typ, raw)
	}
	f.Add("Patient", []byte(`{"resourceType":"Patient","contained":[{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","_given":[null]}}]}]}`))
	v := validator(f)
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		err := v.Validate(typ, data)
		if err == nil {
			return
		}
		var fe *fhir.Error
		if !errors.As(err, &fe) || fe.Kind != fhir.KindInvalid || len(fe.Issues) == 0 || len(fe.Issues) > MaxIssues+1 {
			t.Fatalf("Validate(%q, %q) = %#v", typ, data, err)
		}
	})
}
