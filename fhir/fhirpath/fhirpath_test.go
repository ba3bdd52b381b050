package fhirpath

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/model"
)

// Tests of the engine against fhirpath.html (R4) and the N1 specification:
// path selection, polymorphism, the operators and the functions used by
// search parameter expressions (searchparameter.html#expression) and
// FHIRPath Patch paths (fhirpatch.html).

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

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return m
}

// render shows an evaluation result as JSON, resolve() results as "@Type/id".
func render(items []Item) string {
	vals := make([]any, len(items))
	for i, it := range items {
		if r, ok := it.V.(Ref); ok {
			vals[i] = "@" + r.Type + "/" + r.ID
			continue
		}
		vals[i] = it.V
	}
	b, _ := json.Marshal(vals)
	return string(b)
}

func evalExpr(t *testing.T, resource map[string]any, expr string) (string, error) {
	t.Helper()
	e, err := Compile(expr)
	if err != nil {
		return "", err
	}
	out, err := Evaluate(model.R4(), e, resource)
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
		// A choice element by its typed key.
		{"Observation.valueQuantity.unit", `["mmol/L"]`},
		{"Observation.valueQuantity is Quantity", `[true]`},
		{"Observation.valueString", `[]`},
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
		{"Observation.note.all(text.exists())", `[true]`},
		{"Observation.note.all(text='two')", `[false]`},
		{"Observation.note.text.first()", `["one"]`},
		{"Observation.note.text.last()", `["two"]`},
		{"Observation.note.text.tail()", `["two"]`},
		{"Observation.note.text.skip(1)", `["two"]`},
		{"Observation.note.text.take(1)", `["one"]`},
		{"Observation.note.count()", `[2]`},
		{"Observation.method.exists().not()", `[true]`},
		{"Observation.note.text.where($this = 'two')", `["two"]`},
		{"Observation.note.select(text)", `["one","two"]`},
		{"(Observation.note.text | Observation.note.text).count()", `[2]`},
		{"Observation.note.text.combine(Observation.note.text).count()", `[4]`},
		{"Observation.note.text.combine(Observation.note.text).distinct()", `["one","two"]`},
		// extension('url') and its value.
		{"Observation.extension('http://x/a').value", `["A"]`},
		{"Observation.extension('http://x/b').value as Quantity", `[{"unit":"a","value":3}]`},
		{"Observation.extension('http://x/c')", `[]`},
		{"Observation.hasExtension('http://x/a')", `[true]`},
		// Literals, comparison and precedence.
		{"1 + 2 * 3", `[7]`},
		{"'a' & 'b'", `["ab"]`},
		{"'a' + 'b'", `["ab"]`},
		{"Observation.value.value > 5", `[true]`},
		{"Observation.status = 'final' and Observation.value.value < 5", `[false]`},
		{"{}.exists()", `[false]`},
		{"Observation.method = 'x'", `[]`},
		{"'final' in Observation.status", `[true]`},
		{"Observation.status contains 'final'", `[true]`},
		{"Observation.status.iif($this = 'final', 'done', 'open')", `["done"]`},
		{"%resource.id", `["o1"]`},
		{"Observation.code.text ~ 'bp'", `[true]`},
		{"Observation.code.text.lower() & Observation.code.text.upper().startsWith('B').toString()", `["bptrue"]`},
		{"Observation.children().ofType(Period)", `[{"start":"2024-01-01"}]`},
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

// TestNumbers: numbers are the exact values of their literals
// (fhirpath.html#decimal, #math), not float64 approximations.
func TestNumbers(t *testing.T) {
	res := decodeJSON(t, []byte(`{"resourceType":"Observation","valueQuantity":{"value":1.50},
		"component":[{"valueQuantity":{"value":0.1}},{"valueQuantity":{"value":0.2}},{"valueInteger":9007199254740993}]}`))
	for _, tc := range []struct{ expr, want string }{
		{"0.1 + 0.2", `[0.3]`},
		{"0.1 + 0.2 = 0.3", `[true]`},
		{"Observation.component[0].value.value + Observation.component[1].value.value", `[0.3]`},
		{"Observation.component[0].value.value + Observation.component[1].value.value = 0.3", `[true]`},
		{"Observation.value.value = 1.5", `[true]`},
		{"Observation.value.value", `[1.50]`},
		{"Observation.value.value.toString()", `["1.50"]`},
		{"Observation.value.value * 2", `[3.00]`},
		{"Observation.value.value - 1.5", `[0.00]`},
		{"-Observation.value.value", `[-1.50]`},
		{"- -2", `[2]`},
		{"-0", `[0]`},
		// Integers beyond 2^53 stay exact.
		{"Observation.component[2].value", `[9007199254740993]`},
		{"Observation.component[2].value + 1", `[9007199254740994]`},
		{"Observation.component[2].value > 9007199254740992", `[true]`},
		{"Observation.component[2].value = 9007199254740992", `[false]`},
		{"10 / 4", `[2.5]`},
		{"1 / 3", `[0.3333333333333333]`},
		{"2 / 3", `[0.6666666666666667]`},
		{"1 / 0", `[]`},
		{"7 div 2", `[3]`},
		{"-7 div 2", `[-3]`},
		{"7 mod 2", `[1]`},
		{"5.5 mod 2", `[1.5]`},
		{"7.5 div 2", `[3]`},
		{"3 * 0.5", `[1.5]`},
		{"2 < 10", `[true]`},
		{"2.0 = 2", `[true]`},
		{"1.0 < 1.01", `[true]`},
		{"(1 | 1.0).count()", `[1]`},
		{"Observation.component.value.value[1 + 0]", `[0.2]`},
	} {
		got, err := evalExpr(t, res, tc.expr)
		if err != nil || got != tc.want {
			t.Errorf("%s = %s (%v), want %s", tc.expr, got, err, tc.want)
		}
	}
	// A literal too long or too large for exact arithmetic compares by its
	// float64 value.
	long := decodeJSON(t, []byte(`{"resourceType":"Basic","a":2.`+strings.Repeat("0", 2000)+`1,"b":1e-999}`))
	for expr, want := range map[string]string{"Basic.a > 1": `[true]`, "Basic.b < 0.000001": `[true]`, "Basic.b > 0": `[false]`} {
		out, err := Evaluate(model.R4(), MustCompile(expr), long)
		if err != nil || render(out) != want {
			t.Errorf("%s = %s (%v), want %s", expr, render(out), err, want)
		}
	}
	// The result types: integer arithmetic stays integer, / is decimal.
	for expr, want := range map[string]string{"1 + 2": "integer", "1 + 2.0": "decimal", "4 / 2": "decimal", "5 div 2": "integer", "-3": "integer"} {
		out, err := Evaluate(model.R4(), MustCompile(expr), map[string]any{})
		if err != nil || len(out) != 1 || out[0].T != want {
			t.Errorf("%s: %+v %v, want type %s", expr, out, err, want)
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
		"$index",                         // not implemented
		strings.Repeat("a.", MaxLen),     // too long
	} {
		if _, err := Compile(expr); err == nil {
			t.Errorf("%s: compiled, want a syntax error", expr)
		}
	}
	// Runtime: a boolean context with several items is an error.
	if _, err := evalExpr(t, obs, "Observation.where(note.text)"); err == nil || !strings.Contains(err.Error(), "single") {
		t.Errorf("where(multi) error = %v", err)
	}
	if _, err := evalExpr(t, obs, "%unknown"); err == nil {
		t.Error("%unknown evaluated")
	}
}

// TestFunctionTable: every function of the table compiles with its
// arities and PropagatesEmpty holds for the functions that claim it.
func TestFunctionTable(t *testing.T) {
	names := Functions()
	if len(names) != len(functions) || !slices.IsSorted(names) {
		t.Fatalf("Functions() = %v", names)
	}
	empty := map[string]any{"resourceType": "Basic"}
	for _, name := range names {
		f := functions[name]
		args := make([]string, f.max)
		for i := range args {
			args[i] = "'x'"
			if f.typeArg {
				args[i] = "string"
			}
			if name == "skip" || name == "take" {
				args[i] = "1"
			}
		}
		expr := "Basic.nothing." + name + "(" + strings.Join(args, ", ") + ")"
		e, err := Compile(expr)
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		out, err := Evaluate(model.R4(), e, empty)
		if err != nil {
			t.Errorf("%s: %v", expr, err)
		}
		if PropagatesEmpty(name) && len(out) != 0 {
			t.Errorf("%s: PropagatesEmpty but = %s", expr, render(out))
		}
		if f.min > 0 {
			if _, err := Compile("Basic." + name + "()"); err == nil {
				t.Errorf("%s() without arguments compiled", name)
			}
		}
	}
	if PropagatesEmpty("exists") || PropagatesEmpty("count") || PropagatesEmpty("frob") {
		t.Error("PropagatesEmpty of exists/count/unknown")
	}
}

// orderedObject is an Object as an ordered tree implements it (fhir/patch).
type orderedObject struct {
	keys []string
	vals map[string]any
}

func (o *orderedObject) Get(k string) (any, bool) { v, ok := o.vals[k]; return v, ok }
func (o *orderedObject) Keys() []string           { return o.keys }

func toOrdered(v any) any {
	switch x := v.(type) {
	case map[string]any:
		o := &orderedObject{vals: map[string]any{}}
		for k, e := range x {
			o.keys = append(o.keys, k)
			o.vals[k] = toOrdered(e)
		}
		slices.Sort(o.keys)
		return o
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toOrdered(e)
		}
		return out
	}
	return v
}

// TestObjectTreeAndLocations: the evaluator navigates an ordered tree
// through Object the same way, and with Track it tells where each
// selected value is (what FHIRPath Patch edits, fhirpatch.html).
func TestObjectTreeAndLocations(t *testing.T) {
	root := toOrdered(decodeJSON(t, []byte(fpObservation))).(*orderedObject)
	c := &Context{Model: model.R4(), Root: Item{V: root, T: "Observation"}, Track: true}
	for _, tc := range []struct {
		expr  string
		n     int
		key   string
		index int
		elem  string
	}{
		{"Observation.status", 1, "status", -1, "Observation.status"},
		{"Observation.value", 1, "valueQuantity", -1, "Observation.value[x]"},
		{"Observation.valueQuantity", 1, "valueQuantity", -1, "Observation.value[x]"},
		{"Observation.value.value", 1, "value", -1, "Quantity.value"},
		{"Observation.note[1].text", 1, "text", -1, "Annotation.text"},
		{"Observation.note.where(text = 'two')", 1, "note", 1, "Observation.note"},
		{"Observation.code.coding.last()", 1, "coding", 1, "CodeableConcept.coding"},
		{"Observation.extension('http://x/b').value", 1, "valueAge", -1, "Extension.value[x]"},
		{"Observation.contained.where(id = 'p1').id", 1, "id", -1, "Patient.id"},
		{"Observation.component.code", 2, "code", -1, "Observation.component.code"},
	} {
		out, err := c.Eval(MustCompile(tc.expr), []Item{c.Root})
		if err != nil || len(out) != tc.n {
			t.Errorf("%s: %d items, %v", tc.expr, len(out), err)
			continue
		}
		l := out[len(out)-1].Loc
		if l == nil || l.Key != tc.key || l.Index != tc.index || l.Elem == nil || l.Elem.Path != tc.elem {
			t.Errorf("%s: Loc = %+v", tc.expr, l)
		}
		if p, ok := l.Parent.(*orderedObject); ok {
			v, _ := p.Get(l.Key)
			if tc.index >= 0 {
				v = v.([]any)[tc.index]
			}
			if !jsonEqual(v, out[len(out)-1].V) {
				t.Errorf("%s: Loc does not point at the value", tc.expr)
			}
		} else {
			t.Errorf("%s: parent %T", tc.expr, l.Parent)
		}
	}
	// Both trees give the same results (objects compared member by member).
	plain := decodeJSON(t, []byte(fpObservation))
	for _, expr := range []string{
		"Observation.code.coding.distinct().count()", "Observation.code.coding[0] = Observation.code.coding[0]",
		"Observation.code.coding[0] = Observation.code.coding[1]", "(Observation.code | Observation.code).count()",
		"Observation.performer.resolve().ofType(Patient).id", "Observation.children().count()",
		"Observation.extension('http://x/b').value.value + 1",
	} {
		a, errA := c.Eval(MustCompile(expr), []Item{c.Root})
		b, errB := Evaluate(model.R4(), MustCompile(expr), plain)
		if errA != nil || errB != nil || render(a) != render(b) {
			t.Errorf("%s: ordered %s (%v), plain %s (%v)", expr, render(a), errA, render(b), errB)
		}
	}
	// Without Track, no locations.
	out, _ := (&Context{Model: model.R4(), Root: c.Root}).Eval(MustCompile("Observation.status"), []Item{c.Root})
	if len(out) != 1 || out[0].Loc != nil || out[0].V != "final" {
		t.Errorf("untracked: %+v", out)
	}
}

// TestStrict: in strict mode an element the type does not define is an
// error; lenient evaluation selects nothing (fhirpath.html#path-selection).
func TestStrict(t *testing.T) {
	obs := decodeJSON(t, []byte(fpObservation))
	root := Item{V: obs, T: "Observation"}
	strict := &Context{Model: model.R4(), Root: root, Strict: true}
	lenient := &Context{Model: model.R4(), Root: root}
	for _, expr := range []string{"Observation.colour", "Observation.code.colour", "Observation.valueHumanName"} {
		if _, err := strict.Eval(MustCompile(expr), []Item{root}); err == nil || !strings.Contains(err.Error(), "has no element") {
			t.Errorf("strict %s: %v", expr, err)
		}
		if out, err := lenient.Eval(MustCompile(expr), []Item{root}); err != nil || len(out) != 0 {
			t.Errorf("lenient %s: %v %v", expr, out, err)
		}
	}
	// Present or absent, defined elements are fine; so are choice keys.
	for _, expr := range []string{"Observation.method", "Observation.valueQuantity", "Observation.value.value", "Observation.extension.value"} {
		if _, err := strict.Eval(MustCompile(expr), []Item{root}); err != nil {
			t.Errorf("strict %s: %v", expr, err)
		}
	}
}

func TestReferenceTypeID(t *testing.T) {
	for ref, want := range map[string]string{
		"Patient/1": "Patient 1", "Patient/1/_history/2": "Patient 1", "https://x.org/fhir/Observation/o": "Observation o",
		"http://hl7.org/fhir/ValueSet/x|4.0.1": "ValueSet x", "urn:uuid:1": " ", "#c": " ", "patient/1": " ", "Patient/": " ",
	} {
		typ, id := ReferenceTypeID(ref)
		if typ+" "+id != want {
			t.Errorf("ReferenceTypeID(%q) = %q %q", ref, typ, id)
		}
	}
}

// FuzzEval: no expression makes the parser or the evaluator panic, on the
// decoded tree or an ordered one, strict or tracking.
func FuzzEval(f *testing.F) {
	for _, s := range []string{"`a`.b", "%resource.x[0]", "1 + 'a'", "@2020-01-01 < @2021", "a.where(b.exists() implies c)", "-(1)", "{}",
		"Observation.value.value / 0.0", "Observation.component.value.value.distinct()", "1e5", "children().children()"} {
		f.Add(s)
	}
	obs := decodeJSON(f, []byte(fpObservation))
	ordered := toOrdered(obs)
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Compile(src)
		if err != nil {
			return
		}
		for _, c := range []*Context{
			{Model: model.R4(), Root: Item{V: obs, T: "Observation"}},
			{Model: model.R4(), Root: Item{V: ordered, T: "Observation"}, Strict: true, Track: true},
		} {
			_, _ = c.Eval(e, []Item{c.Root})
		}
	})
}
