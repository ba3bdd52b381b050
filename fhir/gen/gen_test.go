package gen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/samply/golang-fhir-models/fhir-models/fhir"
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`) // datatypes.html#id

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// refs collects every Reference.reference in v.
func refs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				*out = append(*out, s)
				continue
			}
			refs(e, out)
		}
	case []any:
		for _, e := range x {
			refs(e, out)
		}
	}
}

func TestGenerateDeterministic(t *testing.T) {
	a := Generate(7, 10, Options{})
	b := Generate(7, 10, Options{})
	if len(a) != len(b) {
		t.Fatalf("%d vs %d resources", len(a), len(b))
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].ID != b[i].ID || !bytes.Equal(a[i].JSON, b[i].JSON) {
			t.Fatalf("resource %d differs", i)
		}
	}
	c := Generate(8, 10, Options{})
	if bytes.Equal(a[len(a)-1].JSON, c[len(c)-1].JSON) {
		t.Error("different seeds gave the same data")
	}
	// A larger count extends a smaller one (same practitioner pool size).
	small := Generate(7, 5, Options{})
	for i := range small {
		if !bytes.Equal(small[i].JSON, a[i].JSON) {
			t.Fatalf("resource %d (%s/%s) changed with more patients", i, small[i].Type, small[i].ID)
		}
	}
	p := Generate(7, 2, Options{IDPrefix: "x1."})
	for _, r := range p {
		if !strings.HasPrefix(r.ID, "x1.") {
			t.Fatalf("id %s lacks the prefix", r.ID)
		}
	}
}

// TestGenerateContent checks validity (ids, references, required
// elements via the samply R4 models with unknown fields rejected) and the
// promised content.
func TestGenerateContent(t *testing.T) {
	opt := Options{}
	rs := Generate(42, 40, opt)
	opt.defaults(40)
	byKey := map[string]map[string]any{}
	count := map[string]int{}
	for _, r := range rs {
		if !idRE.MatchString(r.ID) {
			t.Errorf("invalid id %q", r.ID)
		}
		m := decode(t, r.JSON)
		if m["resourceType"] != r.Type || m["id"] != r.ID {
			t.Errorf("%s/%s: JSON says %v/%v", r.Type, r.ID, m["resourceType"], m["id"])
		}
		if _, dup := byKey[r.Ref()]; dup {
			t.Errorf("duplicate %s", r.Ref())
		}
		byKey[r.Ref()] = m
		count[r.Type]++
		strictR4(t, r)
	}
	for _, typ := range []string{"Patient", "Practitioner", "RelatedPerson", "Observation", "ServiceRequest",
		"DiagnosticReport", "DocumentReference", "Appointment", "Communication"} {
		if count[typ] == 0 {
			t.Errorf("no %s generated", typ)
		}
	}
	if count["Patient"] != 40 || count["DiagnosticReport"] != 40 {
		t.Errorf("counts %v", count)
	}
	// References point at generated resources.
	for key, m := range byKey {
		var rr []string
		refs(m, &rr)
		for _, ref := range rr {
			if _, ok := byKey[ref]; !ok {
				t.Errorf("%s references missing %s", key, ref)
			}
		}
	}
	// Children (< 12) have a parent; adults are >= 18; names have accents sometimes.
	children, accented := 0, 0
	parents := map[string]bool{}
	for key, m := range byKey {
		if strings.HasPrefix(key, "RelatedPerson/") {
			parents[m["patient"].(map[string]any)["reference"].(string)] = true
		}
	}
	for key, m := range byKey {
		if !strings.HasPrefix(key, "Patient/") {
			continue
		}
		birth, _ := time.Parse("2006-01-02", m["birthDate"].(string))
		age := opt.Now.Sub(birth).Hours() / 24 / 365.25
		switch {
		case age < 12:
			children++
			if !parents[key] {
				t.Errorf("child %s has no parent RelatedPerson", key)
			}
		case age < 18:
			t.Errorf("%s is %.1f years old", key, age)
		case parents[key]:
			t.Errorf("adult %s has a parent", key)
		}
		name := m["name"].([]any)[0].(map[string]any)
		full := name["family"].(string) + name["given"].([]any)[0].(string)
		if strings.IndexFunc(full, func(r rune) bool { return r > 127 }) >= 0 {
			accented++
		}
		id := m["identifier"].([]any)[0].(map[string]any)
		if id["system"] != MRNSystem || !strings.HasPrefix(id["value"].(string), "MRN") {
			t.Errorf("%s identifier %v", key, id)
		}
	}
	if children == 0 || children == 40 || accented == 0 {
		t.Errorf("%d children, %d accented names of 40", children, accented)
	}
}

func strictR4(t *testing.T, r Resource) {
	t.Helper()
	var target any
	switch r.Type {
	case "Patient":
		target = &struct {
			fhir.Patient
			ResourceType string `json:"resourceType"`
		}{}
	case "Practitioner":
		target = &struct {
			fhir.Practitioner
			ResourceType string `json:"resourceType"`
		}{}
	case "RelatedPerson":
		target = &struct {
			fhir.RelatedPerson
			ResourceType string `json:"resourceType"`
		}{}
	case "Observation":
		target = &struct {
			fhir.Observation
			ResourceType string `json:"resourceType"`
		}{}
	case "ServiceRequest":
		target = &struct {
			fhir.ServiceRequest
			ResourceType string `json:"resourceType"`
		}{}
	case "DiagnosticReport":
		target = &struct {
			fhir.DiagnosticReport
			ResourceType string `json:"resourceType"`
		}{}
	case "DocumentReference":
		target = &struct {
			fhir.DocumentReference
			ResourceType string `json:"resourceType"`
		}{}
	case "Appointment":
		target = &struct {
			fhir.Appointment
			ResourceType string `json:"resourceType"`
		}{}
	case "Communication":
		target = &struct {
			fhir.Communication
			ResourceType string `json:"resourceType"`
		}{}
	default:
		t.Errorf("unexpected type %s", r.Type)
		return
	}
	d := json.NewDecoder(bytes.NewReader(r.JSON))
	d.DisallowUnknownFields()
	if err := d.Decode(target); err != nil {
		t.Errorf("%s: not R4: %v", r.Ref(), err)
	}
}

// TestGenerateSearchable: everything extracts without error or skipped
// value, every clinical resource lands in its patient's compartment, and
// the promised codes are searchable.
func TestGenerateSearchable(t *testing.T) {
	reg := search.Default()
	rs := Generate(3, 15, Options{})
	tokens := map[string]bool{}
	for _, r := range rs {
		idx, warns, err := reg.ExtractWithWarnings(r.Type, decode(t, r.JSON))
		if err != nil {
			t.Fatalf("%s: %v", r.Ref(), err)
		}
		if len(warns) > 0 {
			t.Errorf("%s: %v", r.Ref(), warns)
		}
		if r.Type != "Practitioner" && len(idx.Compartments) != 1 {
			t.Errorf("%s: compartments %v", r.Ref(), idx.Compartments)
		}
		for _, tok := range idx.Tok {
			tokens[r.Type+"."+tok.Param+"="+tok.System+"|"+tok.Code] = true
		}
		if r.Type == "Appointment" {
			var actors []string
			for _, ref := range idx.Ref {
				if ref.Param == "actor" {
					actors = append(actors, ref.Type)
				}
			}
			if !slices.Contains(actors, "Patient") || !slices.Contains(actors, "Practitioner") {
				t.Errorf("%s actors %v", r.Ref(), actors)
			}
		}
	}
	for _, want := range []string{
		"Observation.code=" + LOINC + "|85354-9",
		"Observation.component-code=" + LOINC + "|8480-6",
		"Observation.code=" + LOINC + "|8867-4",
		"Observation.category=" + ObsCategory + "|laboratory",
		"DiagnosticReport.category=" + DiagService + "|SP",
		"Patient.identifier=" + MRNSystem + "|" + "MRN",
	} {
		found := tokens[want]
		if strings.HasSuffix(want, "|MRN") {
			for k := range tokens {
				found = found || strings.HasPrefix(k, want)
			}
		}
		if !found {
			t.Errorf("no %s", want)
		}
	}
	labs := 0
	for k := range tokens {
		if strings.HasPrefix(k, "Observation.code="+LOINC+"|2160-0") || strings.HasPrefix(k, "Observation.code="+LOINC+"|718-7") {
			labs++
		}
	}
	if labs != 2 {
		t.Errorf("creatinine/hemoglobin not both generated")
	}
}

func TestTransaction(t *testing.T) {
	rs := Generate(5, 4, Options{})
	b := decode(t, Transaction(rs))
	if b["resourceType"] != "Bundle" || b["type"] != "transaction" {
		t.Fatalf("bundle header %v %v", b["resourceType"], b["type"])
	}
	entries := b["entry"].([]any)
	if len(entries) != len(rs) {
		t.Fatalf("%d entries for %d resources", len(entries), len(rs))
	}
	full := map[string]bool{}
	for i, e := range entries {
		em := e.(map[string]any)
		u := em["fullUrl"].(string)
		if !regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(u) || full[u] {
			t.Errorf("entry %d fullUrl %q", i, u)
		}
		full[u] = true
		req := em["request"].(map[string]any)
		if req["method"] != "POST" || req["url"] != rs[i].Type {
			t.Errorf("entry %d request %v", i, req)
		}
		if u != UUID(rs[i].Type, rs[i].ID) {
			t.Errorf("entry %d fullUrl is not UUID(%s)", i, rs[i].Ref())
		}
		if _, ok := em["resource"].(map[string]any)["id"]; ok {
			t.Errorf("entry %d keeps its id", i)
		}
	}
	n := 0
	for _, e := range entries {
		var rr []string
		refs(e.(map[string]any)["resource"], &rr)
		for _, r := range rr {
			n++
			if !full[r] {
				t.Errorf("reference %s not rewritten to a bundle urn", r)
			}
		}
	}
	if n == 0 {
		t.Error("no references checked")
	}
}

func BenchmarkGenerate100(b *testing.B) {
	for b.Loop() {
		if rs := Generate(1, 100, Options{}); len(rs) == 0 {
			b.Fatal("nothing generated")
		}
	}
}

func ExampleGenerate() {
	rs := Generate(1, 1, Options{Visits: 1})
	for _, r := range rs {
		fmt.Println(r.Ref())
	}
	// Output:
	// Practitioner/prac-1
	// Practitioner/prac-2
	// Patient/pat-1
	// ServiceRequest/sr-1-1
	// Appointment/appt-1-1
	// Observation/lab-1-1-1
	// Observation/lab-1-1-2
	// Observation/bp-1-1
	// Observation/hr-1-1
	// Communication/comm-1-1
	// DiagnosticReport/path-1
	// DocumentReference/doc-1-1
	// DocumentReference/doc-1-2
}
