package search

import (
	"errors"
	"slices"
	"sort"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/model"
)

// TestDefaultRegistry checks the vendored core R4 parameters
// (searchparameter-registry.html) and their lookup rules.
func TestDefaultRegistry(t *testing.T) {
	r := Default()
	if n := len(r.params); n != 1385 {
		t.Errorf("%d core parameters, want 1385", n)
	}
	tests := []struct {
		typ, code string
		want      ParamType
		ok        bool
	}{
		{"Observation", "code", TypeToken, true},
		{"Observation", "value-quantity", TypeQuantity, true},
		{"Observation", "code-value-quantity", TypeComposite, true},
		{"Observation", "date", TypeDate, true},
		{"Patient", "name", TypeString, true},
		{"Patient", "birthdate", TypeDate, true},
		{"Patient", "_id", TypeToken, true},            // Resource
		{"Patient", "_lastUpdated", TypeDate, true},    // Resource
		{"Patient", "_tag", TypeToken, true},           // Resource
		{"Patient", "_profile", TypeURI, true},         // Resource
		{"Patient", "_security", TypeToken, true},      // Resource
		{"Patient", "_source", TypeURI, true},          // Resource
		{"Patient", "_content", TypeString, true},      // Resource
		{"Patient", "_text", TypeString, true},         // DomainResource
		{"Bundle", "_text", "", false},                 // Bundle is not a DomainResource
		{"Bundle", "_id", TypeToken, true},             //
		{"Bundle", "composition", TypeReference, true}, //
		{"RiskAssessment", "probability", TypeNumber, true},
		{"Location", "near", TypeSpecial, true},
		{"ValueSet", "url", TypeURI, true},
		{"Patient", "nope", "", false},
		{"NoSuchType", "_id", "", false},
	}
	for _, tc := range tests {
		p, ok := r.Lookup(tc.typ, tc.code)
		if ok != tc.ok || ok && p.Type != tc.want {
			t.Errorf("Lookup(%s, %s) = %v, %v; want %s, %v", tc.typ, tc.code, p, ok, tc.want, tc.ok)
		}
	}
	// Params are sorted by code and unique.
	ps := r.Params("Observation")
	codes := make([]string, len(ps))
	for i, p := range ps {
		codes[i] = p.Code
	}
	if !sort.StringsAreSorted(codes) || len(slices.Compact(slices.Clone(codes))) != len(codes) {
		t.Errorf("Observation params not sorted/unique: %v", codes)
	}
	if !slices.Contains(codes, "_lastUpdated") || !slices.Contains(codes, "component-code-value-quantity") {
		t.Errorf("Observation params miss inherited or composite ones: %v", codes)
	}
	// Composite components are resolved (search.html#composite).
	p, _ := r.Lookup("Observation", "component-code-value-quantity")
	if len(p.Components) != 2 || p.Components[0].Param == nil || p.Components[0].Param.Type != TypeToken ||
		p.Components[1].Param == nil || p.Components[1].Param.Type != TypeQuantity {
		t.Errorf("components not resolved: %+v", p.Components)
	}
	// Compartments (CompartmentDefinition-patient).
	if got := r.Compartment("Observation"); !slices.Equal(got, []string{"subject", "performer"}) {
		t.Errorf("Compartment(Observation) = %v", got)
	}
	if got := r.Compartment("Patient"); !slices.Equal(got, []string{"link"}) {
		t.Errorf("Compartment(Patient) = %v", got)
	}
	if got := r.Compartment("Organization"); len(got) != 0 {
		t.Errorf("Compartment(Organization) = %v", got)
	}
	if !r.IsResourceType("Observation") || r.IsResourceType("DomainResource") || r.IsResourceType("Quantity") {
		t.Error("IsResourceType wrong")
	}
	if p, ok := r.ByURL("http://hl7.org/fhir/SearchParameter/clinical-code"); !ok || p.Code != "code" || len(p.Base) < 10 {
		t.Errorf("ByURL(clinical-code) = %+v, %v", p, ok)
	}
}

const customMaidenName = `{
  "resourceType": "SearchParameter", "url": "http://fhirgate.example/sp/maiden", "name": "maiden",
  "status": "active", "code": "maiden", "base": ["Patient"], "type": "string",
  "expression": "Patient.extension('http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName').value"
}`

// TestLoadCustom: SearchParameter resources extend a registry
// (searchparameter.html) without changing the original.
func TestLoadCustom(t *testing.T) {
	core := Default()
	r, err := LoadCustom(core, []byte(customMaidenName))
	if err != nil {
		t.Fatal(err)
	}
	p, ok := r.Lookup("Patient", "maiden")
	if !ok || !p.Custom || p.Type != TypeString {
		t.Fatalf("custom param: %+v, %v", p, ok)
	}
	if _, ok := core.Lookup("Patient", "maiden"); ok {
		t.Error("the core registry was modified")
	}
	idx, err := r.Extract("Patient", decodeJSON(t, []byte(`{"resourceType":"Patient","id":"x","extension":[
		{"url":"http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName","valueString":"Müller"}]}`)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(idx.Str, StrValue{Param: "maiden", Value: "muller", Exact: "Müller"}) {
		t.Errorf("custom values: %+v", idx.Str)
	}

	// A Bundle: one new parameter, one replacing the core Observation "status".
	bundle := `{"resourceType":"Bundle","type":"collection","entry":[
	  {"resource":` + customMaidenName + `},
	  {"resource":{"resourceType":"SearchParameter","url":"http://fhirgate.example/sp/status","code":"status",
	    "base":["Observation"],"type":"token","expression":"Observation.status | Observation.dataAbsentReason"}},
	  {"resource":{"resourceType":"SearchParameter","url":"http://fhirgate.example/sp/cv","code":"code-status",
	    "base":["Observation"],"type":"composite","expression":"Observation","component":[
	      {"definition":"http://hl7.org/fhir/SearchParameter/clinical-code","expression":"code"},
	      {"definition":"http://fhirgate.example/sp/status","expression":"status"}]}}]}`
	r2, err := LoadCustom(core, []byte(bundle))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := r2.Lookup("Observation", "status"); !p.Custom || p.Expression != "Observation.status | Observation.dataAbsentReason" {
		t.Errorf("status not replaced: %+v", p)
	}
	if p, _ := r2.Lookup("Observation", "code-status"); p == nil || p.Components[1].Param == nil || p.Components[1].Param.URL != "http://fhirgate.example/sp/status" {
		t.Errorf("custom composite: %+v", p)
	}
	if _, ok := r2.Lookup("Patient", "maiden"); !ok {
		t.Error("bundle entry 0 missing")
	}
	if len(r2.params) != len(core.params)+2 {
		t.Errorf("%d params, want %d", len(r2.params), len(core.params)+2)
	}
}

func TestLoadCustomErrors(t *testing.T) {
	core := Default()
	tests := []struct {
		name, json, path string
	}{
		{"not json", `{`, ""},
		{"wrong type", `{"resourceType":"Patient"}`, "resourceType"},
		{"no url", `{"resourceType":"SearchParameter","code":"x","base":["Patient"],"type":"token","expression":"Patient.id"}`, "SearchParameter.url"},
		{"no code", `{"resourceType":"SearchParameter","url":"u","base":["Patient"],"type":"token","expression":"Patient.id"}`, "SearchParameter.code"},
		{"bad code", `{"resourceType":"SearchParameter","url":"u","code":"a b","base":["Patient"],"type":"token","expression":"Patient.id"}`, "SearchParameter.code"},
		{"bad type", `{"resourceType":"SearchParameter","url":"u","code":"x","base":["Patient"],"type":"fuzzy","expression":"Patient.id"}`, "SearchParameter.type"},
		{"no base", `{"resourceType":"SearchParameter","url":"u","code":"x","type":"token","expression":"Patient.id"}`, "SearchParameter.base"},
		{"unknown base", `{"resourceType":"SearchParameter","url":"u","code":"x","base":["Patiens"],"type":"token","expression":"Patient.id"}`, "SearchParameter.base"},
		{"no expression", `{"resourceType":"SearchParameter","url":"u","code":"x","base":["Patient"],"type":"token"}`, "SearchParameter.expression"},
		{"bad expression", `{"resourceType":"SearchParameter","url":"u","code":"x","base":["Patient"],"type":"token","expression":"Patient.where("}`, "SearchParameter.expression"},
		{"bad function", `{"resourceType":"SearchParameter","url":"u","code":"x","base":["Patient"],"type":"token","expression":"Patient.id.frobnicate()"}`, "SearchParameter.expression"},
		{"unknown component", `{"resourceType":"SearchParameter","url":"u","code":"x","base":["Patient"],"type":"composite","expression":"Patient","component":[{"definition":"http://nope","expression":"id"}]}`, "SearchParameter.component.definition"},
		{"bundle entry", `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"}}]}`, "Bundle.entry[0].resource"},
	}
	for _, tc := range tests {
		_, err := LoadCustom(core, []byte(tc.json))
		var de *DefError
		if !errors.As(err, &de) {
			t.Errorf("%s: err = %v, want a *DefError", tc.name, err)
			continue
		}
		if de.Path != tc.path {
			t.Errorf("%s: path %q, want %q (%v)", tc.name, de.Path, tc.path, err)
		}
	}
}

func TestNewRegistry(t *testing.T) {
	yes := true
	r, err := NewRegistry([]*Param{
		{URL: "u1", Code: "kind", Type: TypeToken, Base: []string{"Basic"}, Expression: "Basic.code", MultipleOr: &yes},
		{URL: "u2", Code: "_tag", Type: TypeToken, Base: []string{"Resource"}, Expression: "Resource.meta.tag"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := r.Lookup("Basic", "kind"); !ok || *p.MultipleOr != true {
		t.Errorf("Lookup(Basic, kind) = %+v", p)
	}
	if _, ok := r.Lookup("Observation", "_tag"); !ok {
		t.Error("Resource-level parameter not inherited")
	}
	if _, ok := r.Lookup("Observation", "code"); ok {
		t.Error("NewRegistry must not include the core parameters")
	}
	if _, err := NewRegistry([]*Param{{Code: "x", Type: TypeComposite, Base: []string{"Basic"}}}); err == nil {
		t.Error("composite without components accepted")
	}
}

// BenchmarkLoadDefinitions measures decoding the R4 model and the vendored
// core parameters and compiling them (what Default does once); the goal is
// < 50 ms.
func BenchmarkLoadDefinitions(b *testing.B) {
	for b.Loop() {
		d, err := decodeDefs()
		if err != nil {
			b.Fatal(err)
		}
		m, err := model.Load()
		if err != nil {
			b.Fatal(err)
		}
		params := make([]*Param, len(d.Params))
		for i := range d.Params {
			params[i] = d.Params[i].param()
		}
		if _, err := build(params, m, d.Compartment, nil); err != nil {
			b.Fatal(err)
		}
	}
}
