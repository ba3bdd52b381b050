// Package gen generates deterministic synthetic FHIR R4 data for tests,
// benchmarks and demos of fhirgate: patients (adults and children, names
// with accents), their parents as RelatedPersons, lab results and vital
// signs (Observation), lab orders (ServiceRequest), pathology reports
// (DiagnosticReport), clinical documents (DocumentReference), appointments
// and messages (Communication), plus a pool of practitioners. Every
// resource is valid R4 JSON whose references ("Type/id") point at other
// generated resources.
package gen

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Resource is one generated resource.
type Resource struct {
	Type, ID string
	JSON     []byte
}

// Ref is the relative reference "Type/id" to the resource.
func (r Resource) Ref() string { return r.Type + "/" + r.ID }

// Options tunes Generate. Zero values select the defaults.
type Options struct {
	// Now is the reference instant for ages and for appointment status
	// (past: fulfilled, future: booked). Default 2026-01-01T00:00:00Z.
	Now time.Time
	// From and To bound clinical dates. Default 2023-01-01 to 2026-12-31.
	From, To time.Time
	// Visits per patient, each with a lab order, lab results, vital signs,
	// an appointment and a message. Default 3.
	Visits int
	// Practitioners in the pool. Default 2 + patients/20.
	Practitioners int
	// ChildRatio is the share of patients younger than 12 (each gets a
	// parent RelatedPerson). Default 0.3; negative: no children.
	ChildRatio float64
	// IDPrefix is prepended to every id, to generate several independent
	// data sets into one server. Must keep ids within [A-Za-z0-9-.]{1,64}.
	IDPrefix string
}

func (o *Options) defaults(patients int) {
	if o.Now.IsZero() {
		o.Now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if o.From.IsZero() {
		o.From = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if o.To.IsZero() {
		o.To = time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	if !o.To.After(o.From) {
		o.To = o.From.Add(24 * time.Hour)
	}
	if o.Visits <= 0 {
		o.Visits = 3
	}
	if o.Practitioners <= 0 {
		o.Practitioners = 2 + patients/20
	}
	if o.ChildRatio == 0 {
		o.ChildRatio = 0.3
	}
}

// Code systems and identifier systems used by the generator.
const (
	LOINC        = "http://loinc.org"
	UCUM         = "http://unitsofmeasure.org"
	MRNSystem    = "http://hospital.example/mrn"
	NPISystem    = "http://hl7.org/fhir/sid/us-npi"
	ObsCategory  = "http://terminology.hl7.org/CodeSystem/observation-category"
	DiagService  = "http://terminology.hl7.org/CodeSystem/v2-0074"
	RoleCode     = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
	Confidential = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
)

type lab struct {
	code, display, unit string
	mean, sd            float64
	decimals            int
	low, high           float64
}

// Labs are the generated laboratory analytes (LOINC, UCUM units).
var labs = []lab{
	{"2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.95, 0.25, 2, 0.6, 1.2},
	{"718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 13.8, 1.6, 1, 12, 17.5},
	{"2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 98, 18, 0, 70, 99},
	{"2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 140, 3, 0, 135, 145},
	{"6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 7.2, 2, 1, 4, 11},
	{"4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.6, 0.7, 1, 4, 5.6},
	{"2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 190, 35, 0, 0, 200},
}

var (
	families = []string{"Smith", "Müller", "Dupré", "García", "Nørgaard", "Johnson", "Łukasiewicz", "Rossi",
		"Öztürk", "Brown", "Šimić", "Meier", "Martin", "Fernández", "Kowalski", "Lefèvre", "Andersson", "Nguyễn"}
	givenF = []string{"Zoë", "Anna", "Renée", "Maria", "Anaïs", "Sofia", "Emma", "Chloé", "Léa", "Ingrid", "Mia", "Inés"}
	givenM = []string{"José", "Jürgen", "Peter", "François", "Luca", "Noah", "Liam", "Jonas", "Mateo", "Björn", "Ali", "Tomás"}
	cities = []struct{ city, postal, country string }{
		{"Zürich", "8001", "CH"}, {"Genève", "1201", "CH"}, {"München", "80331", "DE"}, {"Lyon", "69001", "FR"},
		{"Springfield", "62701", "US"}, {"Kraków", "30-001", "PL"}, {"Malmö", "211 20", "SE"},
	}
	specialties = []struct{ code, display string }{
		{"419772000", "Family practice"}, {"394802001", "General medicine"}, {"394537008", "Pediatric specialty"},
		{"394585009", "Obstetrics and gynecology"}, {"394579002", "Cardiology"},
	}
	docTypes = []struct{ code, display string }{
		{"34133-9", "Summarization of episode note"}, {"11506-3", "Progress note"}, {"18842-5", "Discharge summary"},
	}
)

type builder struct {
	opt   Options
	out   []Resource
	pract []string // Practitioner ids
}

func (b *builder) id(kind string, n ...int) string {
	s := b.opt.IDPrefix + kind
	for _, i := range n {
		s += "-" + strconv.Itoa(i)
	}
	return s
}

func (b *builder) add(m map[string]any) {
	t, id := m["resourceType"].(string), m["id"].(string)
	js, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Errorf("gen: %s/%s: %w", t, id, err)) // only plain values are used
	}
	b.out = append(b.out, Resource{Type: t, ID: id, JSON: js})
}

// Generate returns the resources of patients synthetic patients,
// deterministically from seed (the same seed, count and options give the
// same bytes). Practitioners come first, then each patient followed by its
// RelatedPerson and clinical resources. Each patient's data depends only on
// seed and its position, so a larger count extends a smaller one.
func Generate(seed int64, patients int, opt Options) []Resource {
	opt.defaults(patients)
	b := &builder{opt: opt}
	pr := rand.New(rand.NewPCG(uint64(seed), math.MaxUint32))
	for i := 1; i <= opt.Practitioners; i++ {
		b.practitioner(pr, i)
	}
	for i := 1; i <= patients; i++ {
		r := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
		b.patient(r, i)
	}
	return b.out
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func ref(t, id string) map[string]any { return map[string]any{"reference": t + "/" + id} }

func coding(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return c
}

func concept(system, code, display string) map[string]any {
	return map[string]any{"coding": []any{coding(system, code, display)}, "text": display}
}

func dec(v float64, decimals int) json.Number {
	return json.Number(strconv.FormatFloat(v, 'f', decimals, 64))
}

// zones alternates UTC and central European offsets in dateTimes.
var zones = []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("", 7200)}

func stamp(t time.Time, r *rand.Rand) string {
	return t.In(pick(r, zones)).Format(time.RFC3339)
}

func (b *builder) practitioner(r *rand.Rand, i int) {
	id := b.id("prac", i)
	b.pract = append(b.pract, id)
	female := r.IntN(2) == 0
	given := pick(r, givenM)
	if female {
		given = pick(r, givenF)
	}
	family := pick(r, families)
	sp := pick(r, specialties)
	gender := "male"
	if female {
		gender = "female"
	}
	b.add(map[string]any{
		"resourceType": "Practitioner",
		"id":           id,
		"active":       true,
		"identifier":   []any{map[string]any{"system": NPISystem, "value": strconv.Itoa(1000000000 + r.IntN(899999999))}},
		"name":         []any{map[string]any{"use": "official", "family": family, "given": []any{given}, "prefix": []any{"Dr."}}},
		"telecom":      []any{map[string]any{"system": "email", "value": fmt.Sprintf("%s@hospital.example", id), "use": "work"}},
		"gender":       gender,
		"qualification": []any{map[string]any{
			"code": map[string]any{"coding": []any{coding("http://snomed.info/sct", sp.code, sp.display)}, "text": sp.display},
		}},
	})
}

func (b *builder) patient(r *rand.Rand, n int) {
	o := b.opt
	id := b.id("pat", n)
	female := r.IntN(2) == 0
	gender, givens := "male", givenM
	if female {
		gender, givens = "female", givenF
	}
	family := pick(r, families)
	given := pick(r, givens)
	child := o.ChildRatio > 0 && r.Float64() < o.ChildRatio
	var birth time.Time
	if child {
		birth = o.Now.AddDate(0, 0, -(30 + r.IntN(11*365))) // 1 month .. ~11 years
	} else {
		birth = o.Now.AddDate(-(18 + r.IntN(72)), 0, -r.IntN(365))
	}
	city := pick(r, cities)
	gp := pick(r, b.pract)
	mrn := fmt.Sprintf("MRN%d%04d", 100+r.IntN(900), n)
	b.add(map[string]any{
		"resourceType": "Patient",
		"id":           id,
		"active":       true,
		"identifier": []any{map[string]any{
			"use":    "usual",
			"type":   map[string]any{"coding": []any{coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical record number")}},
			"system": MRNSystem,
			"value":  mrn,
		}},
		"name":      []any{map[string]any{"use": "official", "family": family, "given": []any{given}}},
		"gender":    gender,
		"birthDate": birth.Format("2006-01-02"),
		"telecom": []any{
			map[string]any{"system": "phone", "value": fmt.Sprintf("+41 44 %03d %02d %02d", r.IntN(1000), r.IntN(100), r.IntN(100)), "use": "home"},
			map[string]any{"system": "email", "value": fmt.Sprintf("%s@mail.example", id)},
		},
		"address": []any{map[string]any{
			"use": "home", "line": []any{fmt.Sprintf("%s %d", pick(r, []string{"Bahnhofstrasse", "Rue du Lac", "Main Street", "Hauptstraße"}), 1+r.IntN(120))},
			"city": city.city, "postalCode": city.postal, "country": city.country,
		}},
		"communication":       []any{map[string]any{"language": concept("urn:ietf:bcp:47", "de", "German"), "preferred": true}},
		"generalPractitioner": []any{ref("Practitioner", gp)},
	})
	if child {
		b.parent(r, n, id, family)
	}
	for v := 1; v <= o.Visits; v++ {
		b.visit(r, n, v, id, gp)
	}
	b.pathology(r, n, id)
	b.document(r, n, 1, id, gp)
	if r.IntN(2) == 0 {
		b.document(r, n, 2, id, pick(r, b.pract))
	}
}

// parent adds the RelatedPerson who acts for a child (a proxy in the portal).
func (b *builder) parent(r *rand.Rand, n int, patientID, family string) {
	mother := r.IntN(2) == 0
	code, display, gender, given := "FTH", "father", "male", pick(r, givenM)
	if mother {
		code, display, gender, given = "MTH", "mother", "female", pick(r, givenF)
	}
	id := b.id("rp", n)
	b.add(map[string]any{
		"resourceType": "RelatedPerson",
		"id":           id,
		"active":       true,
		"patient":      ref("Patient", patientID),
		"relationship": []any{map[string]any{"coding": []any{
			coding(RoleCode, code, display),
			coding(RoleCode, "PRN", "parent"),
		}}},
		"name":    []any{map[string]any{"family": family, "given": []any{given}}},
		"gender":  gender,
		"telecom": []any{map[string]any{"system": "email", "value": fmt.Sprintf("%s@mail.example", id)}},
	})
}

// when draws a clinical instant inside [From, To) at office hours.
func (b *builder) when(r *rand.Rand) time.Time {
	days := int(b.opt.To.Sub(b.opt.From).Hours() / 24)
	d := b.opt.From.AddDate(0, 0, r.IntN(max(days, 1)))
	return d.Add(time.Duration(7+r.IntN(10))*time.Hour + time.Duration(r.IntN(4)*15)*time.Minute)
}

func (b *builder) visit(r *rand.Rand, n, v int, patientID, gp string) {
	o := b.opt
	at := b.when(r)
	doctor := gp
	if r.IntN(3) == 0 {
		doctor = pick(r, b.pract)
	}
	srID := b.id("sr", n, v)
	status := "completed"
	if at.After(o.Now) {
		status = "active"
	}
	b.add(map[string]any{
		"resourceType": "ServiceRequest",
		"id":           srID,
		"status":       status,
		"intent":       "order",
		"category":     []any{concept("http://snomed.info/sct", "108252007", "Laboratory procedure")},
		"code":         concept(LOINC, "24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma"),
		"subject":      ref("Patient", patientID),
		"requester":    ref("Practitioner", doctor),
		"authoredOn":   stamp(at.Add(-time.Hour), r),
	})

	// Appointment for the visit.
	apptStatus := "fulfilled"
	if at.After(o.Now) {
		apptStatus = "booked"
	}
	b.add(map[string]any{
		"resourceType": "Appointment",
		"id":           b.id("appt", n, v),
		"status":       apptStatus,
		"serviceType":  []any{concept("http://snomed.info/sct", "11429006", "Consultation")},
		"description":  "Follow-up consultation",
		"start":        at.UTC().Format(time.RFC3339),
		"end":          at.Add(30 * time.Minute).UTC().Format(time.RFC3339),
		"participant": []any{
			map[string]any{"actor": ref("Patient", patientID), "required": "required", "status": "accepted"},
			map[string]any{"actor": ref("Practitioner", doctor), "required": "required", "status": "accepted"},
		},
	})

	// Lab results: two or three analytes, issued a few hours later.
	perm := r.Perm(len(labs))
	for k, li := range perm[:2+r.IntN(2)] {
		l := labs[li]
		val := math.Max(l.mean+r.NormFloat64()*l.sd, math.Pow10(-l.decimals))
		issued := at.Add(time.Duration(2+r.IntN(30)) * time.Hour)
		obs := map[string]any{
			"resourceType":      "Observation",
			"id":                b.id("lab", n, v, k+1),
			"status":            "final",
			"basedOn":           []any{ref("ServiceRequest", srID)},
			"category":          []any{map[string]any{"coding": []any{coding(ObsCategory, "laboratory", "Laboratory")}}},
			"code":              concept(LOINC, l.code, l.display),
			"subject":           ref("Patient", patientID),
			"effectiveDateTime": stamp(at, r),
			"issued":            issued.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			"performer":         []any{ref("Practitioner", doctor)},
			"valueQuantity":     map[string]any{"value": dec(val, l.decimals), "unit": l.unit, "system": UCUM, "code": l.unit},
			"referenceRange": []any{map[string]any{
				"low":  map[string]any{"value": dec(l.low, l.decimals), "unit": l.unit, "system": UCUM, "code": l.unit},
				"high": map[string]any{"value": dec(l.high, l.decimals), "unit": l.unit, "system": UCUM, "code": l.unit},
			}},
		}
		interp := "N"
		switch {
		case val < l.low:
			interp = "L"
		case val > l.high:
			interp = "H"
		}
		obs["interpretation"] = []any{map[string]any{"coding": []any{coding("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", interp, "")}}}
		if at.After(o.Now) {
			obs["status"] = "preliminary"
		}
		b.add(obs)
	}

	// Vital signs: blood pressure panel and heart rate.
	vital := []any{map[string]any{"coding": []any{coding(ObsCategory, "vital-signs", "Vital Signs")}}}
	sys := 105 + r.IntN(50)
	dia := 60 + r.IntN(35)
	mmHg := func(v int) map[string]any {
		return map[string]any{"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}
	}
	b.add(map[string]any{
		"resourceType":      "Observation",
		"id":                b.id("bp", n, v),
		"status":            "final",
		"category":          vital,
		"code":              concept(LOINC, "85354-9", "Blood pressure panel with all children optional"),
		"subject":           ref("Patient", patientID),
		"effectiveDateTime": stamp(at, r),
		"performer":         []any{ref("Practitioner", doctor)},
		"component": []any{
			map[string]any{"code": concept(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": mmHg(sys)},
			map[string]any{"code": concept(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": mmHg(dia)},
		},
	})
	b.add(map[string]any{
		"resourceType":      "Observation",
		"id":                b.id("hr", n, v),
		"status":            "final",
		"category":          vital,
		"code":              concept(LOINC, "8867-4", "Heart rate"),
		"subject":           ref("Patient", patientID),
		"effectiveDateTime": stamp(at, r),
		"valueQuantity":     map[string]any{"value": 55 + r.IntN(50), "unit": "beats/minute", "system": UCUM, "code": "/min"},
	})

	// A message to the patient after the visit.
	sent := at.Add(time.Duration(1+r.IntN(72)) * time.Hour)
	comm := map[string]any{
		"resourceType": "Communication",
		"id":           b.id("comm", n, v),
		"status":       "completed",
		"category":     []any{concept("http://terminology.hl7.org/CodeSystem/communication-category", "notification", "Notification")},
		"subject":      ref("Patient", patientID),
		"basedOn":      []any{ref("ServiceRequest", srID)},
		"sender":       ref("Practitioner", doctor),
		"recipient":    []any{ref("Patient", patientID)},
		"sent":         sent.UTC().Format(time.RFC3339),
		"payload":      []any{map[string]any{"contentString": "Your laboratory results are available in the portal."}},
	}
	if sent.After(o.Now) {
		comm["status"] = "in-progress"
		delete(comm, "sent")
	}
	b.add(comm)
}

// pathology adds a surgical pathology report (diagnostic service section
// SP, held back from patients by release rules).
func (b *builder) pathology(r *rand.Rand, n int, patientID string) {
	at := b.when(r)
	issued := at.Add(time.Duration(24+r.IntN(96)) * time.Hour)
	conclusions := []struct{ code, display string }{
		{"254837009", "Malignant neoplasm of breast"}, {"92546004", "Benign neoplasm of colon"},
		{"399294002", "Chronic gastritis"}, {"38907003", "Varicella"},
	}
	c := pick(r, conclusions)
	b.add(map[string]any{
		"resourceType":      "DiagnosticReport",
		"id":                b.id("path", n),
		"status":            "final",
		"category":          []any{concept(DiagService, "SP", "Surgical Pathology")},
		"code":              concept(LOINC, "60568-3", "Pathology Synoptic report"),
		"subject":           ref("Patient", patientID),
		"effectiveDateTime": stamp(at, r),
		"issued":            issued.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"performer":         []any{ref("Practitioner", pick(r, b.pract))},
		"conclusion":        c.display,
		"conclusionCode":    []any{concept("http://snomed.info/sct", c.code, c.display)},
	})
}

func (b *builder) document(r *rand.Rand, n, k int, patientID, author string) {
	at := b.when(r)
	dt := pick(r, docTypes)
	doc := map[string]any{
		"resourceType": "DocumentReference",
		"id":           b.id("doc", n, k),
		"status":       "current",
		"docStatus":    "final",
		"type":         concept(LOINC, dt.code, dt.display),
		"category":     []any{concept("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note", "Clinical Note")},
		"subject":      ref("Patient", patientID),
		"date":         at.UTC().Format(time.RFC3339),
		"author":       []any{ref("Practitioner", author)},
		"description":  dt.display,
		"content": []any{map[string]any{"attachment": map[string]any{
			"contentType": "text/plain",
			"language":    "en",
			"data":        "UGF0aWVudCBzZWVuIGZvciBmb2xsb3ctdXAuIE5vIGFjdXRlIGZpbmRpbmdzLg==",
			"title":       dt.display,
			"creation":    at.UTC().Format(time.RFC3339),
		}}},
		"context": map[string]any{"period": map[string]any{"start": at.UTC().Format(time.RFC3339)}},
	}
	if r.IntN(10) == 0 {
		doc["meta"] = map[string]any{"security": []any{coding(Confidential, "R", "restricted")}}
	}
	b.add(doc)
}
