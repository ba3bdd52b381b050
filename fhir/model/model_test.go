package model

import (
	"bytes"
	"cmp"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Tests of the R4 model against the base StructureDefinitions
// (structuredefinition.html, elementdefinition.html, resourcelist.html).

func TestResourceTypes(t *testing.T) {
	m := R4()
	rts := m.ResourceTypes()
	if len(rts) != 146 {
		t.Fatalf("%d concrete resource types, want 146 (resourcelist.html)", len(rts))
	}
	if !slices.IsSorted(rts) {
		t.Error("ResourceTypes is not sorted")
	}
	for _, c := range []struct {
		name                   string
		resource, resourceType bool
	}{
		{"Patient", true, true}, {"Observation", true, true}, {"VisionPrescription", true, true},
		{"Resource", true, false}, {"DomainResource", true, false},
		{"MetadataResource", false, false}, // a logical model in R4, not a type
		{"patient", false, false}, {"Quantity", false, false}, {"", false, false},
	} {
		if got := m.IsResource(c.name); got != c.resource {
			t.Errorf("IsResource(%q) = %v", c.name, got)
		}
		if got := m.IsResourceType(c.name); got != c.resourceType {
			t.Errorf("IsResourceType(%q) = %v", c.name, got)
		}
	}
}

func TestHierarchy(t *testing.T) {
	m := R4()
	for _, c := range []struct {
		t, want string
		is      bool
	}{
		{"Patient", "DomainResource", true}, {"Patient", "Resource", true}, {"Bundle", "DomainResource", false},
		{"Bundle", "Resource", true}, {"Age", "Quantity", true}, {"SimpleQuantity", "Quantity", true},
		{"MoneyQuantity", "Quantity", true}, {"Quantity", "Age", false}, {"code", "string", true},
		{"positiveInt", "integer", true}, {"HumanName", "Element", true}, {"Extension", "Element", true},
	} {
		if got := m.IsA(c.t, c.want); got != c.is {
			t.Errorf("IsA(%s, %s) = %v", c.t, c.want, got)
		}
	}
	if !m.IsPrimitive("dateTime") || m.IsPrimitive("Period") || !m.IsType("BackboneElement") {
		t.Error("IsPrimitive/IsType")
	}
}

func TestElements(t *testing.T) {
	m := R4()
	for _, c := range []struct {
		parent, name string
		path         string
		many, choice bool
		min          int
		types        string
	}{
		{"Patient", "identifier", "Patient.identifier", true, false, 0, "Identifier"},
		{"Patient", "birthDate", "Patient.birthDate", false, false, 0, "date"},
		{"Patient", "id", "Patient.id", false, false, 0, "string"},
		{"Patient", "contact", "Patient.contact", true, false, 0, "Patient.contact"},
		{"Patient.contact", "name", "Patient.contact.name", false, false, 0, "HumanName"},
		{"Observation", "status", "Observation.status", false, false, 1, "code"},
		{"Observation", "value", "Observation.value[x]", false, true, 0, "Quantity,CodeableConcept,string,boolean,integer,Range,Ratio,SampledData,time,dateTime,Period"},
		{"HumanName", "given", "HumanName.given", true, false, 0, "string"},
		{"Extension", "url", "Extension.url", false, false, 1, "uri"},
		{"Questionnaire.item", "item", "Questionnaire.item.item", true, false, 0, "Questionnaire.item"},
		{"Timing", "repeat", "Timing.repeat", false, false, 0, "Timing.repeat"},
		{"Age", "value", "Age.value", false, false, 0, "decimal"},
		{"SimpleQuantity", "unit", "Quantity.unit", false, false, 0, "string"}, // inherited
	} {
		e, ok := m.Element(c.parent, c.name)
		if !ok {
			t.Errorf("%s.%s: not found", c.parent, c.name)
			continue
		}
		if e.Path != c.path || e.Many != c.many || e.Choice != c.choice || e.Min != c.min || strings.Join(e.Types, ",") != c.types {
			t.Errorf("%s.%s = %+v", c.parent, c.name, e)
		}
	}
	if _, ok := m.Element("Patient", "colour"); ok {
		t.Error("Patient.colour found")
	}
	if e, typ, ok := m.ChoiceKey("Observation", "valueQuantity"); !ok || e.Name != "value" || typ != "Quantity" {
		t.Errorf("ChoiceKey(valueQuantity) = %v %q %v", e, typ, ok)
	}
	if e, typ, ok := m.ChoiceKey("Patient", "deceasedDateTime"); !ok || e.Key(typ) != "deceasedDateTime" {
		t.Errorf("ChoiceKey(deceasedDateTime) = %v %q %v", e, typ, ok)
	}
	if _, _, ok := m.ChoiceKey("Observation", "valueHumanName"); ok {
		t.Error("valueHumanName is not a type of Observation.value[x]")
	}
	if typ, ok := m.ChoiceType("DateTime"); !ok || typ != "dateTime" {
		t.Errorf("ChoiceType(DateTime) = %q", typ)
	}
	// Summary elements in definition order (search.html#summary).
	var summary []string
	for _, e := range m.Elements("Binary") {
		if e.Summary {
			summary = append(summary, e.Name)
		}
	}
	if strings.Join(summary, ",") != "id,meta,implicitRules,contentType,securityContext" {
		t.Errorf("Binary summary elements: %v", summary)
	}
	if len(m.Elements("SimpleQuantity")) == 0 || !m.HasElements("Age") || m.HasElements("string") {
		t.Error("Elements/HasElements of derived and primitive types")
	}
}

func BenchmarkLoad(b *testing.B) {
	for b.Loop() {
		if _, err := Load(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGeneratedFromOfficialPackage: r4.tsv.gz is exactly what
// internal/genmodel makes of the official package (when it is unpacked:
// make examples).
func TestGeneratedFromOfficialPackage(t *testing.T) {
	dir := cmp.Or(os.Getenv("FHIRGATE_EXAMPLES_DIR"), os.ExpandEnv("$HOME/.cache/fhirgate/hl7.fhir.r4.examples-4.0.1/package"))
	if _, err := os.Stat(filepath.Join(dir, "StructureDefinition-Patient.json")); err != nil {
		t.Skip("official package not unpacked at " + dir)
	}
	if testing.Short() {
		t.Skip("-short")
	}
	out := filepath.Join(t.TempDir(), "r4.tsv.gz")
	cmd := exec.Command("go", "run", "./internal/genmodel", "-pkg", dir, "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("genmodel: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, r4Data) {
		t.Error("r4.tsv.gz differs from what internal/genmodel generates; run go generate ./fhir/model")
	}
}

func BenchmarkLoadTypes(b *testing.B) {
	for b.Loop() {
		if _, err := loadTypes(); err != nil {
			b.Fatal(err)
		}
	}
}
