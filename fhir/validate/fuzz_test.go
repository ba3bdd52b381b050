package validate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

// Seeds of JSON edge cases (RFC 8259), valid and not.
var fuzzSeeds = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0.5e+10`, `1E3`, `"x"`,
	`{"a":[1,2,{"b":null}],"c":"\u00e9\n\t\"\\\/"}`,
	`"\ud83d\ude00 \ud83d \udc00x"`,
	`{"a":1,"a":2}`, ` [ 1 , 2 ] `, `[1,]`, `{"a" 1}`, `01`, `1.`, `-`, `"\x"`, `"abc`, `[`, `{"a":1}}`,
	"\"\x01\"", `tru`, `nul`, `{"a":[[[[]]]]}`,
}

// Whatever the input, Validate returns nil or a 400 *fhir.Error, never panics.
func FuzzValidate(f *testing.F) {
	for _, s := range fuzzSeeds {
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
