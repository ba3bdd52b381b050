package search

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// Gates only skip parameters that would have no value: extraction with
// gates equals extraction evaluating every expression, on the vendored
// examples and, when present, on every official R4 example.
func TestGatesChangeNothing(t *testing.T) {
	dirs := []string{"testdata/examples"}
	if _, err := os.Stat(officialExamples); err == nil && !testing.Short() {
		dirs = append(dirs, officialExamples)
	}
	gated := Default()
	full := Default()
	full.noGates = true
	n, skipped := 0, 0
	for _, dir := range dirs {
		for rt, list := range loadExamples(t, dir) {
			if !gated.IsResourceType(rt) {
				continue
			}
			for _, res := range list {
				a, err := gated.Extract(rt, res)
				if err != nil {
					t.Fatalf("%s/%s: %v", rt, str(res, "id"), err)
				}
				b, err := full.Extract(rt, res)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(a, b) {
					t.Errorf("%s/%s: gated extraction differs\ngated: %+v\nfull:  %+v", rt, str(res, "id"), a, b)
				}
				n++
				for _, cp := range gated.types[rt].sorted {
					if cp.gated && !open(res, cp.gate) || cp.compGate != nil && !allOpen(res, cp.compGate) {
						skipped++
					}
				}
			}
		}
	}
	t.Logf("%d resources, %d parameter evaluations skipped", n, skipped)
	if skipped == 0 {
		t.Fatal("no gate ever closed")
	}
}

// gateFor is certain or silent: expressions that can have a value on an
// empty resource get no gate (fhirpath.html#functions).
func TestGateFor(t *testing.T) {
	r := Default()
	cases := []struct {
		expr  string
		names []gateName // nil: no gate
	}{
		{"Observation.code", []gateName{{"code", false}}},
		{"Observation.value", []gateName{{"value", true}}},
		{"Observation.value as Quantity", []gateName{{"value", false}, {"valueQuantity", false}}},
		{"(Observation.value as Quantity) | (Observation.value as SampledData)", []gateName{{"value", false}, {"valueQuantity", false}, {"valueSampledData", false}}},
		{"Observation.value.as(string)", []gateName{{"value", false}, {"valueString", false}}},
		{"Observation.effective.ofType(dateTime)", []gateName{{"effective", false}, {"effectiveDateTime", false}}},
		{"Observation.value.as(Age)", []gateName{{"value", false}}}, // no Age in value[x]: only the bare name
		{"Observation.subject.where(resolve() is Patient)", []gateName{{"subject", false}}},
		{"Observation.component.code | Observation.code", []gateName{{"component", false}, {"code", false}}},
		{"Observation.code.exists()", nil},
		{"Observation", nil},
		{"Observation.code | %resource.id", nil},
		{"iif(Observation.code.exists(), 'a', 'b')", nil},
		{"Observation.code.first()", []gateName{{"code", false}}},
		{"Observation.frobnicate", []gateName{{"frobnicate", true}}},
		{"Patient.name", nil}, // not the type's: no gate, always evaluated
	}
	for _, c := range cases {
		e, err := fhirpath.Compile(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		got, ok := gateFor(r.model, e, "Observation")
		if !ok {
			got = nil
		}
		if !reflect.DeepEqual(got, c.names) {
			t.Errorf("gateFor(%q) = %v, %v; want %v", c.expr, got, ok, c.names)
		}
	}
}

// Composites on the resource (Observation's code-value-quantity) are
// skipped unless every component can have a value.
func TestCompositeGate(t *testing.T) {
	r := Default()
	cp := r.types["Observation"].byCode["code-value-quantity"]
	if cp == nil || cp.compGate == nil {
		t.Fatalf("code-value-quantity has no composite gate: %+v", cp)
	}
	withQty := map[string]any{"resourceType": "Observation", "code": map[string]any{}, "valueQuantity": map[string]any{}}
	withString := map[string]any{"resourceType": "Observation", "code": map[string]any{}, "valueString": "x"}
	if !allOpen(withQty, cp.compGate) || allOpen(withString, cp.compGate) {
		t.Fatalf("gate %v: open(valueQuantity) = %v, open(valueString) = %v", cp.compGate, allOpen(withQty, cp.compGate), allOpen(withString, cp.compGate))
	}
}

// On ASCII, Fold is lower case with white space runs collapsed and trimmed
// (search.html#string), whether or not it takes its already-folded shortcut.
func FuzzFoldASCII(f *testing.F) {
	for _, s := range []string{"", "abc", "Abc", " a", "a ", "a  b", "a b", "a\tb", "x\r\n", "123-45 6"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return
			}
		}
		want := strings.Join(strings.FieldsFunc(strings.ToLower(s), unicode.IsSpace), " ")
		if got := Fold(s); got != want {
			t.Fatalf("Fold(%q) = %q, want %q", s, got, want)
		}
	})
}
