package search

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

const fpObservation = `{
  "resourceType": "Observation", "id": "o1", "status": "final",
  "contained": [{"resourceType": "Patient", "id": "p1"}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}, {"system": "http://snomed.info/sct", "code": "75367002"}], "text": "BP"},
  "subject": {"reference": "Patient/123"},
  "performer": [{"reference": "Practitioner/dr"}, {"reference": "#p1"}, {"reference": "https://other.example/fhir/Patient/9/_history/2"}, {"type": "Patient", "identifier": {"value": "x"}}],
  "effectivePeriod": {"start": "2024-01-01"},
  "valueQuantity": {"value": 5.40, "unit": "mmol/L"},
  "component": [
    {"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": 120}},
    {"code": {"coding": [{"code": "8462-4"}]}, "valueString": "n/a"}
  ],
  "extension": [{"url": "http://x/a", "valueCode": "A"}, {"url": "http://x/b", "valueAge": {"value": 3, "unit": "a"}}],
  "note": [{"text": "one"}, {"text": "two"}]
}`

// render shows an evaluation result as JSON, resolve() results as "@Type/id".
func render(items []item) string {
	vals := make([]any, len(items))
	for i, it := range items {
		if r, ok := it.v.(resolvedRef); ok {
			vals[i] = "@" + r.typ + "/" + r.id
			continue
		}
		vals[i] = it.v
	}
	b, _ := json.Marshal(vals)
	return string(b)
}

func evalExpr(t *testing.T, resource map[string]any, expr string) (string, error) {
	t.Helper()
	_, m, err := loadDefs()
	if err != nil {
		t.Fatal(err)
	}
	e, err := compileFHIRPath(expr)
	if err != nil {
		return "", err
	}
	rt, _ := resource["resourceType"].(string)
	c := &fpCtx{m: m, root: item{v: resource, t: rt}}
	out, err := e.eval(c, []item{c.root})
	if err != nil {
		return "", err
	}
	return render(out), nil
}

// TestFHIRPath covers the subset of fhirpath.html used by search parameter
// expressions (searchparameter.html#expression).
func TestFHIRPath(t *testing.T) {
	obs := decodeJSON(t, []byte(fpObservation))
	tests := []struct {
		expr, want string
	}{
		// Paths; the type name as first step (fhirpath.html#path-selection).
		{"Observation.status", `["final"]`},
		{"status", `["final"]`},
		{"Patient.name", `[]`},
		{"Resource.id", `["o1"]`},
		{"DomainResource.id", `["o1"]`},
		{"Observation.code.coding.code", `["85354-9","75367002"]`},
		{"Observation.code.coding[1].code", `["75367002"]`},
		{"Observation.code.coding[5]", `[]`},
		// Choice types (fhirpath.html#polymorphism).
		{"Observation.value", `[{"unit":"mmol/L","value":5.40}]`},
		{"Observation.value as Quantity", `[{"unit":"mmol/L","value":5.40}]`},
		{"Observation.value as CodeableConcept", `[]`},
		{"Observation.value.as(Quantity).value", `[5.40]`},
		{"Observation.value.ofType(FHIR.Quantity).unit", `["mmol/L"]`},
		{"(Observation.value as Quantity).value", `[5.40]`},
		{"Observation.value is Quantity", `[true]`},
		{"Observation.value.is(string)", `[false]`},
		{"Observation.effective", `[{"start":"2024-01-01"}]`},
		{"Observation.effective as dateTime", `[]`},
		{"Observation.effective as Period", `[{"start":"2024-01-01"}]`},
		{"Observation.component.value as Quantity", `[{"value":120}]`},
		{"Observation.component.value.ofType(string)", `["n/a"]`},
		{"(Observation.value as string) | (Observation.value as CodeableConcept).text", `[]`},
		// Union (fhirpath.html#union), de-duplicated.
		{"Observation.status | Observation.status", `["final"]`},
		{"Observation.code.coding[0].code | Observation.component.code.coding.code", `["85354-9","8480-6","8462-4"]`},
		// where, equality, and/or, resolve() is (fhirpath.html#functions).
		{"Observation.code.coding.where(system='http://loinc.org').code", `["85354-9"]`},
		{"Observation.code.coding.where(system!='http://loinc.org').code", `["75367002"]`},
		{"Observation.code.coding.where(system='http://loinc.org' and code='x')", `[]`},
		{"Observation.code.coding.where(code='x' or code='75367002').code", `["75367002"]`},
		{"Observation.subject.where(resolve() is Patient)", `[{"reference":"Patient/123"}]`},
		{"Observation.subject.where(resolve() is Group)", `[]`},
		{"Observation.performer.resolve()", `["@Practitioner/dr",{"id":"p1","resourceType":"Patient"},"@Patient/9","@Patient/"]`},
		{"Observation.performer.where(resolve() is Patient).reference", `["#p1","https://other.example/fhir/Patient/9/_history/2"]`},
		// exists/empty/not/first/last/count.
		{"Observation.note.exists()", `[true]`},
		{"Observation.method.exists()", `[false]`},
		{"Observation.method.empty()", `[true]`},
		{"Observation.note.exists(text='two')", `[true]`},
		{"Observation.note.text.first()", `["one"]`},
		{"Observation.note.text.last()", `["two"]`},
		{"Observation.note.count()", `[2]`},
		{"Observation.method.exists().not()", `[true]`},
		{"Observation.note.text.where($this = 'two')", `["two"]`},
		// extension('url') and its value.
		{"Observation.extension('http://x/a').value", `["A"]`},
		{"Observation.extension('http://x/b').value as Quantity", `[{"unit":"a","value":3}]`},
		{"Observation.extension('http://x/c')", `[]`},
		{"Observation.hasExtension('http://x/a')", `[true]`},
		// Literals, comparison and precedence.
		{"1 + 2 * 3", `[7]`},
		{"'a' & 'b'", `["ab"]`},
		{"Observation.value.value > 5", `[true]`},
		{"Observation.status = 'final' and Observation.value.value < 5", `[false]`},
		{"{}.exists()", `[false]`},
		{"Observation.method = 'x'", `[]`},
		{"'final' in Observation.status", `[true]`},
		{"Observation.status.iif($this = 'final', 'done', 'open')", `["done"]`},
		{"%resource.id", `["o1"]`},
	}
	for _, tc := range tests {
		got, err := evalExpr(t, obs, tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s = %s, want %s", tc.expr, got, tc.want)
		}
	}
}

// TestFHIRPathPatientDeceased is the expression of Patient-deceased, the one
// core parameter using and/!= (searchparameter-registry.html).
func TestFHIRPathPatientDeceased(t *testing.T) {
	const expr = "Patient.deceased.exists() and Patient.deceased != false"
	for _, tc := range []struct{ patient, want string }{
		{`{"resourceType":"Patient"}`, `[false]`},
		{`{"resourceType":"Patient","deceasedBoolean":false}`, `[false]`},
		{`{"resourceType":"Patient","deceasedBoolean":true}`, `[true]`},
		{`{"resourceType":"Patient","deceasedDateTime":"2020-01-01"}`, `[true]`},
	} {
		got, err := evalExpr(t, decodeJSON(t, []byte(tc.patient)), expr)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %s, %v; want %s", tc.patient, got, err, tc.want)
		}
	}
}

func TestFHIRPathBundleIndexer(t *testing.T) {
	b := decodeJSON(t, []byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Composition","id":"c"}},{"resource":{"resourceType":"Patient","id":"p"}}]}`))
	for expr, want := range map[string]string{
		"Bundle.entry[0].resource":                         `[{"id":"c","resourceType":"Composition"}]`,
		"Bundle.entry.resource.ofType(Patient).id":         `["p"]`,
		"Bundle.entry[0].resource is Composition":          `[true]`,
		"Bundle.entry.resource.where($this is Patient).id": `["p"]`,
	} {
		got, err := evalExpr(t, b, expr)
		if err != nil || got != want {
			t.Errorf("%s = %s, %v; want %s", expr, got, err, want)
		}
	}
}

func TestFHIRPathErrors(t *testing.T) {
	obs := decodeJSON(t, []byte(fpObservation))
	for _, expr := range []string{
		"Observation.code.coding.foo(1)", // unknown function
		"Observation.where(",             // unterminated
		"Observation.status 'x'",         // trailing token
		"'unterminated",                  // string
		"Observation.value.as(1)",        // as() needs a type
		"Observation.where(1, 2)",        // arity
		"Observation # x",                // bad character
	} {
		if _, err := compileFHIRPath(expr); err == nil {
			t.Errorf("%s: compiled, want a syntax error", expr)
		}
	}
	// Runtime: a boolean context with several items is an error.
	if _, err := evalExpr(t, obs, "Observation.where(note.text)"); err == nil || !strings.Contains(err.Error(), "single") {
		t.Errorf("where(multi) error = %v", err)
	}
}

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

// FuzzFHIRPath: no expression makes the parser or evaluator panic.
func FuzzFHIRPath(f *testing.F) {
	for _, p := range Default().params {
		if p.Expression != "" {
			f.Add(p.Expression)
		}
	}
	for _, s := range []string{"`a`.b", "%resource.x[0]", "1 + 'a'", "@2020-01-01 < @2021", "a.where(b.exists() implies c)", "-(1)", "{}"} {
		f.Add(s)
	}
	_, m, err := loadDefs()
	if err != nil {
		f.Fatal(err)
	}
	obs := decodeJSON(f, []byte(fpObservation))
	f.Fuzz(func(t *testing.T, src string) {
		e, err := compileFHIRPath(src)
		if err != nil {
			return
		}
		c := &fpCtx{m: m, root: item{v: obs, t: "Observation"}}
		_, _ = e.eval(c, []item{c.root})
	})
}
