package search

import (
	"os"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// The FHIRPath engine itself is tested in fhir/fhirpath; these tests run
// the registry's expressions (searchparameter.html#expression) through it.

// TestVendoredExamples evaluates every core expression on the example
// resources vendored in testdata (always available, unlike the package).
func TestVendoredExamples(t *testing.T) {
	r := Default()
	examples := loadExamples(t, "testdata/examples")
	if len(examples) < 15 {
		t.Fatalf("only %d resource types in testdata/examples", len(examples))
	}
	errs, evals, nonEmpty := evalAll(t, r, examples)
	for _, e := range errs {
		t.Error(e)
	}
	if evals < 600 || nonEmpty < 250 {
		t.Errorf("%d evaluations, %d with values: too few", evals, nonEmpty)
	}
	t.Logf("%d evaluations, %d with values", evals, nonEmpty)
}

func TestVendoredExamplesUnmodified(t *testing.T) {
	if _, err := os.Stat(officialExamples); err != nil {
		t.Skip("official examples not unpacked")
	}
	files, _ := os.ReadDir("testdata/examples")
	for _, f := range files {
		a, _ := os.ReadFile("testdata/examples/" + f.Name())
		b, err := os.ReadFile(officialExamples + "/" + f.Name())
		if err != nil || string(a) != string(b) {
			t.Errorf("%s differs from the official example", f.Name())
		}
	}
}

// FuzzFHIRPath: no expression makes the parser or evaluator panic; the
// corpus starts from every core parameter expression.
func FuzzFHIRPath(f *testing.F) {
	for _, p := range Default().params {
		if p.Expression != "" {
			f.Add(p.Expression)
		}
	}
	for _, s := range []string{"`a`.b", "%resource.x[0]", "1 + 'a'", "@2020-01-01 < @2021", "a.where(b.exists() implies c)", "-(1)", "{}"} {
		f.Add(s)
	}
	b, err := os.ReadFile("testdata/examples/Observation-blood-pressure.json")
	if err != nil {
		f.Fatal(err)
	}
	obs := decodeJSON(f, b)
	m := Default().model
	f.Fuzz(func(t *testing.T, src string) {
		e, err := fhirpath.Compile(src)
		if err != nil {
			return
		}
		_, _ = fhirpath.Evaluate(m, e, obs)
	})
}
