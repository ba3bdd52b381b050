package search

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// TestParseDateRange: a date's precision is its range (search.html#date).
func TestParseDateRange(t *testing.T) {
	tests := []struct{ in, lo, hi string }{
		{"2024", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		{"2024-02", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"2024-12", "2024-12-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		{"2024-02-29", "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"2024-03-05T10:20", "2024-03-05T10:20:00Z", "2024-03-05T10:21:00Z"},
		{"2024-03-05T10:20:30", "2024-03-05T10:20:30Z", "2024-03-05T10:20:31Z"}, // no tz: UTC
		{"2024-03-05T10:20:30Z", "2024-03-05T10:20:30Z", "2024-03-05T10:20:31Z"},
		{"2024-03-05T10:20:30+02:00", "2024-03-05T08:20:30Z", "2024-03-05T08:20:31Z"},
		{"2024-03-05T23:20:30-05:00", "2024-03-06T04:20:30Z", "2024-03-06T04:20:31Z"},
		{"2024-03-05T10:20:30.5Z", "2024-03-05T10:20:30.5Z", "2024-03-05T10:20:30.6Z"},
		{"2015-02-07T13:28:17.239+02:00", "2015-02-07T11:28:17.239Z", "2015-02-07T11:28:17.240Z"},
		{"2015-02-07T13:28:17.2391234Z", "2015-02-07T13:28:17.239Z", "2015-02-07T13:28:17.240Z"}, // widened to 1 ms
	}
	for _, tc := range tests {
		lo, hi, err := ParseDateRange(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if !lo.Equal(utc(tc.lo)) || !hi.Equal(utc(tc.hi)) || lo.Location() != time.UTC {
			t.Errorf("%s = [%v, %v), want [%s, %s)", tc.in, lo, hi, tc.lo, tc.hi)
		}
	}
	for _, bad := range []string{"", "24", "2024-13", "2024-02-30", "2024-1-01", "2024-03-05T", "2024-03-05T25:00",
		"2024-03-05T10:20:30+2", "2024-03-05T10:20:30.Z", "January 2012", "2024T10:00", "0000"} {
		if _, _, err := ParseDateRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestNumberRange: implicit precision of numbers (search.html#number).
func TestNumberRange(t *testing.T) {
	tests := []struct {
		in        string
		v, lo, hi float64
	}{
		{"100", 100, 99.5, 100.5},
		{"100.00", 100, 99.995, 100.005},
		{"1e2", 100, 99.5, 100.5},
		{"1.5e-3", 0.0015, 0.00145, 0.00155},
		{"-2.5", -2.5, -2.55, -2.45},
		{"0.887", 0.887, 0.8865, 0.8875},
		{"+7", 7, 6.5, 7.5},
	}
	for _, tc := range tests {
		v, lo, hi, err := NumberRange(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		near := func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }
		if !near(v, tc.v) || !near(lo, tc.lo) || !near(hi, tc.hi) {
			t.Errorf("%s = %v [%v, %v), want %v [%v, %v)", tc.in, v, lo, hi, tc.v, tc.lo, tc.hi)
		}
	}
	for _, bad := range []string{"", "abc", "1..2", "1e", "--1", "1e400", ".", "NaN", "Inf"} {
		if _, _, _, err := NumberRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestFold: string search ignores case and accents (search.html#string).
func TestFold(t *testing.T) {
	for in, want := range map[string]string{
		"Chalmers":                "chalmers",
		"  Zoë   O'Brien ":        "zoe o'brien",
		"Ångström":                "angstrom",
		"MÜLLER\tStraße":          "muller strasse",
		"Łódź":                    "lodz",
		"Søren Kierkegård":        "soren kierkegard",
		"François-Xavier Lefèvre": "francois-xavier lefevre",
		"":                        "",
		"ÇA\u00a0VA":              "ca va",
	} {
		if got := Fold(in); got != want {
			t.Errorf("Fold(%q) = %q, want %q", in, got, want)
		}
	}
}

const extractObservation = `{
  "resourceType": "Observation", "id": "bp1",
  "meta": {"tag": [{"system": "http://fhirgate.example/tags", "code": "emr"}],
           "profile": ["http://hl7.org/fhir/StructureDefinition/bp"],
           "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
           "source": "urn:emr:1"},
  "status": "final",
  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}], "text": "Blutdruck"},
  "subject": {"reference": "https://fhir.example/r4/Patient/p1/_history/3"},
  "encounter": {"reference": "Encounter/e1"},
  "performer": [{"reference": "#dr"}, {"reference": "Practitioner/dr2"}, {"reference": "https://elsewhere.example/Patient/p9"}],
  "basedOn": [{"identifier": {"system": "http://hospital.example/order", "value": "O-1"}}],
  "effectiveDateTime": "2024-03-05T10:20:30",
  "issued": "2024-03-05T11:00:00.000+01:00",
  "component": [
    {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
    {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80.0, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
  ]
}`

func countP[T any](vals []T, p string, pf func(T) string) int {
	n := 0
	for _, v := range vals {
		if pf(v) == p {
			n++
		}
	}
	return n
}

// TestExtractObservation checks the value kinds of search.html#ptypes on an
// Observation.
func TestExtractObservation(t *testing.T) {
	r := Default().WithBase("https://fhir.example/r4/")
	idx, warns, err := r.ExtractWithWarnings("Observation", decodeJSON(t, []byte(extractObservation)))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) > 0 {
		t.Errorf("warnings: %v", warns)
	}
	// token: Coding with folded display, CodeableConcept.text alone.
	for _, want := range []TokValue{
		{Param: "code", System: "http://loinc.org", Code: "85354-9", Text: "blood pressure panel"},
		{Param: "code", Text: "blutdruck"},
		{Param: "category", System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "vital-signs", Text: "vital signs"},
		{Param: "status", Code: "final"},
		{Param: "component-code", System: "http://loinc.org", Code: "8462-4"},
		{Param: "_tag", System: "http://fhirgate.example/tags", Code: "emr"},
		{Param: "_security", System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R"},
	} {
		if !slices.Contains(idx.Tok, want) {
			t.Errorf("missing token %+v", want)
		}
	}
	if n := countP(idx.Tok, "_id", func(v TokValue) string { return v.Param }); n != 0 {
		t.Error("_id must not be indexed")
	}
	// reference: base URL made relative, _history dropped, contained
	// skipped, foreign absolute kept, identifier-only reference.
	for _, want := range []RefValue{
		{Param: "subject", Ref: "Patient/p1", Type: "Patient", ID: "p1"},
		{Param: "patient", Ref: "Patient/p1", Type: "Patient", ID: "p1"},
		{Param: "encounter", Ref: "Encounter/e1", Type: "Encounter", ID: "e1"},
		{Param: "performer", Ref: "Practitioner/dr2", Type: "Practitioner", ID: "dr2"},
		{Param: "performer", Ref: "https://elsewhere.example/Patient/p9", Type: "Patient"},
		{Param: "based-on", IDSystem: "http://hospital.example/order", IDValue: "O-1"},
	} {
		if !slices.Contains(idx.Ref, want) {
			t.Errorf("missing reference %+v in %+v", want, idx.Ref)
		}
	}
	if n := countP(idx.Ref, "performer", func(v RefValue) string { return v.Param }); n != 2 {
		t.Errorf("%d performer references, want 2 (contained skipped)", n)
	}
	// date: dateTime without zone = UTC second.
	if !slices.Contains(idx.Date, DateValue{Param: "date", Lo: utc("2024-03-05T10:20:30Z"), Hi: utc("2024-03-05T10:20:31Z")}) {
		t.Errorf("date: %+v", idx.Date)
	}
	// quantity with precision; composite tuples per component.
	if !slices.Contains(idx.Qty, QtyValue{Param: "component-value-quantity", Value: 80, Lo: 79.95, Hi: 80.05, System: "http://unitsofmeasure.org", Code: "mm[Hg]", Unit: "mmHg"}) {
		t.Errorf("component quantity: %+v", idx.Qty)
	}
	var tuples []string
	for _, c := range idx.Comp {
		if c.Param == "component-code-value-quantity" {
			tuples = append(tuples, c.Parts.Tok[0].Code+"="+c.Parts.Qty[0].Unit+":"+c.Parts.Tok[0].Param+c.Parts.Qty[0].Param)
			if len(c.Parts.Tok) != 1 || len(c.Parts.Qty) != 1 {
				t.Errorf("tuple mixes components: %+v", c.Parts)
			}
		}
	}
	if !slices.Equal(tuples, []string{"8480-6=mmHg:01", "8462-4=mmHg:01"}) {
		t.Errorf("component-code-value-quantity tuples = %v", tuples)
	}
	// uri: _profile, _source.
	for _, want := range []URIValue{{Param: "_profile", Value: "http://hl7.org/fhir/StructureDefinition/bp"}, {Param: "_source", Value: "urn:emr:1"}} {
		if !slices.Contains(idx.URI, want) {
			t.Errorf("missing uri %+v", want)
		}
	}
	// Has, compartments, security, sort.
	for _, p := range []string{"code", "subject", "date", "component-code-value-quantity", "_tag"} {
		if !slices.Contains(idx.Has, p) {
			t.Errorf("Has lacks %s: %v", p, idx.Has)
		}
	}
	if slices.Contains(idx.Has, "value-quantity") {
		t.Error("Has lists value-quantity, which has no value")
	}
	if !slices.Equal(idx.Compartments, []string{"Patient/p1"}) {
		t.Errorf("compartments %v (foreign Patient/p9 must not count)", idx.Compartments)
	}
	if !slices.Equal(idx.Security, []string{"http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"}) {
		t.Errorf("security %v", idx.Security)
	}
	wantSort := map[string]any{"code": "85354-9", "date": utc("2024-03-05T10:20:30Z"), "subject": "Patient/p1", "component-value-quantity": 120.0}
	for k, v := range wantSort {
		if got := idx.Sort[k]; got != v {
			t.Errorf("Sort[%s] = %v, want %v", k, got, v)
		}
	}
}

const extractPatient = `{
  "resourceType": "Patient", "id": "p1",
  "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}], "text": "Medical record"},
                  "system": "http://hospital.example/mrn", "value": "MRN123"}],
  "active": true,
  "name": [{"use": "official", "family": "Dupré", "given": ["Zoë", "Anne"], "prefix": ["Dr."]}, {"text": "Zoé D."}],
  "telecom": [{"system": "phone", "value": "+41 44 000"}, {"system": "email", "value": "zoe@example.org"}],
  "gender": "female", "birthDate": "2016-07",
  "address": [{"line": ["Rue du Lac 1"], "city": "Genève", "postalCode": "1201", "country": "CH"}],
  "link": [{"other": {"reference": "Patient/p0"}, "type": "seealso"}],
  "generalPractitioner": [{"reference": "Practitioner/gp"}]
}`

func TestExtractPatient(t *testing.T) {
	idx, warns, err := Default().ExtractWithWarnings("Patient", decodeJSON(t, []byte(extractPatient)))
	if err != nil || len(warns) > 0 {
		t.Fatal(err, warns)
	}
	// string: every HumanName / Address part, folded (search.html#string).
	var names, addr []string
	for _, s := range idx.Str {
		switch s.Param {
		case "name":
			names = append(names, s.Value+"|"+s.Exact)
		case "address":
			addr = append(addr, s.Value)
		}
	}
	if want := []string{"dupre|Dupré", "zoe|Zoë", "anne|Anne", "dr.|Dr.", "zoe d.|Zoé D."}; !slices.Equal(names, want) {
		t.Errorf("name values %v, want %v", names, want)
	}
	if want := []string{"rue du lac 1", "geneve", "1201", "ch"}; !slices.Equal(addr, want) {
		t.Errorf("address values %v, want %v", addr, want)
	}
	for _, want := range []TokValue{
		{Param: "identifier", System: "http://hospital.example/mrn", Code: "MRN123", Text: "medical record", TypeSystem: "http://terminology.hl7.org/CodeSystem/v2-0203", TypeCode: "MR"},
		{Param: "gender", Code: "female"},
		{Param: "active", Code: "true"},
		{Param: "deceased", Code: "false"},
		{Param: "phone", Code: "+41 44 000"},
		{Param: "email", Code: "zoe@example.org"},
		{Param: "telecom", Code: "zoe@example.org"},
	} {
		if !slices.Contains(idx.Tok, want) {
			t.Errorf("missing token %+v", want)
		}
	}
	if countP(idx.Tok, "phone", func(v TokValue) string { return v.Param }) != 1 {
		t.Error("phone must only hold telecom.where(system='phone')")
	}
	if !slices.Contains(idx.Date, DateValue{Param: "birthdate", Lo: utc("2016-07-01T00:00:00Z"), Hi: utc("2016-08-01T00:00:00Z")}) {
		t.Errorf("birthdate %+v", idx.Date)
	}
	// A Patient is in its own compartment and, via link, in the linked one's.
	if !slices.Equal(idx.Compartments, []string{"Patient/p1", "Patient/p0"}) {
		t.Errorf("compartments %v", idx.Compartments)
	}
	if idx.Sort["family"] != "dupre" || idx.Sort["birthdate"] != utc("2016-07-01T00:00:00Z") {
		t.Errorf("sort %v", idx.Sort)
	}
}

// TestExtractShapes covers the remaining type conversions: Period (open
// ends), Timing, Money, Range, canonical with version, booleans, numbers.
func TestExtractShapes(t *testing.T) {
	r := Default()
	tests := []struct {
		name, resource string
		check          func(t *testing.T, idx Index)
	}{
		{"Period open end", `{"resourceType":"Encounter","id":"e","status":"in-progress","period":{"start":"2024-01-02T08:00:00Z"},"subject":{"reference":"Patient/p"}}`,
			func(t *testing.T, idx Index) {
				if !slices.Contains(idx.Date, DateValue{Param: "date", Lo: utc("2024-01-02T08:00:00Z"), Hi: FarFuture}) {
					t.Errorf("%+v", idx.Date)
				}
				if !slices.Equal(idx.Compartments, []string{"Patient/p"}) {
					t.Errorf("compartments %v", idx.Compartments)
				}
			}},
		{"Period open start", `{"resourceType":"Encounter","id":"e","status":"finished","period":{"end":"2024-01-02"}}`,
			func(t *testing.T, idx Index) {
				if !slices.Contains(idx.Date, DateValue{Param: "date", Lo: FarPast, Hi: utc("2024-01-03T00:00:00Z")}) {
					t.Errorf("%+v", idx.Date)
				}
			}},
		{"Timing events and bounds", `{"resourceType":"CarePlan","id":"c","status":"active","intent":"plan","subject":{"reference":"Patient/p"},
			"activity":[{"detail":{"status":"scheduled","scheduledTiming":{"event":["2024-05-01","2024-05-03"],"repeat":{"boundsPeriod":{"start":"2024-05-01","end":"2024-05-31"}}}}}]}`,
			func(t *testing.T, idx Index) {
				var got []string
				for _, d := range idx.Date {
					if d.Param == "activity-date" {
						got = append(got, d.Lo.Format("01-02")+"/"+d.Hi.Format("01-02"))
					}
				}
				if !slices.Equal(got, []string{"05-01/05-02", "05-03/05-04", "05-01/06-01"}) {
					t.Errorf("activity-date %v", got)
				}
			}},
		{"Money", `{"resourceType":"Invoice","id":"i","status":"issued","totalGross":{"value":48,"currency":"EUR"}}`,
			func(t *testing.T, idx Index) {
				if !slices.Contains(idx.Qty, QtyValue{Param: "totalgross", Value: 48, Lo: 47.5, Hi: 48.5, Code: "EUR"}) {
					t.Errorf("%+v", idx.Qty)
				}
			}},
		{"Range and comparator", `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"x"},"valueRange":{"low":{"value":2.0,"unit":"mg"}},
			"component":[{"code":{"text":"y"},"valueQuantity":{"value":5,"comparator":"<","unit":"mg"}}]}`,
			func(t *testing.T, idx Index) {
				// value-quantity does not select Range in R4; the component quantity keeps its comparator.
				if !slices.Contains(idx.Qty, QtyValue{Param: "component-value-quantity", Value: 5, Lo: -math.MaxFloat64, Hi: 5.5, Unit: "mg"}) {
					t.Errorf("%+v", idx.Qty)
				}
			}},
		{"Range in a quantity parameter", `{"resourceType":"ActivityDefinition","id":"a","status":"active","useContext":[{"code":{"code":"age"},"valueRange":{"low":{"value":18},"high":{"value":65}}}]}`,
			func(t *testing.T, idx Index) {
				if !slices.Contains(idx.Qty, QtyValue{Param: "context-quantity", Value: 18, Lo: 17.5, Hi: 65.5}) {
					t.Errorf("%+v", idx.Qty)
				}
			}},
		{"canonical with version", `{"resourceType":"QuestionnaireResponse","id":"q","status":"completed","questionnaire":"http://forms.example/Questionnaire/phq9|2.0"}`,
			func(t *testing.T, idx Index) {
				if !slices.Contains(idx.Ref, RefValue{Param: "questionnaire", Ref: "http://forms.example/Questionnaire/phq9", Version: "2.0", Type: "Questionnaire"}) {
					t.Errorf("%+v", idx.Ref)
				}
			}},
		{"number", `{"resourceType":"RiskAssessment","id":"r","status":"final","subject":{"reference":"Patient/p"},"prediction":[{"probabilityDecimal":0.25}]}`,
			func(t *testing.T, idx Index) {
				if !slices.Contains(idx.Num, NumValue{Param: "probability", Value: 0.25, Lo: 0.245, Hi: 0.255}) {
					t.Errorf("%+v", idx.Num)
				}
			}},
		{"securityLabel and urn reference", `{"resourceType":"DocumentReference","id":"d","status":"current","subject":{"reference":"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
			"securityLabel":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]}],"content":[{"attachment":{"url":"http://x"}}]}`,
			func(t *testing.T, idx Index) {
				if !slices.Equal(idx.Security, []string{"http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY"}) {
					t.Errorf("security %v", idx.Security)
				}
				if !slices.Contains(idx.Ref, RefValue{Param: "subject", Ref: "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"}) {
					t.Errorf("%+v", idx.Ref)
				}
				if len(idx.Compartments) != 0 {
					t.Errorf("compartments %v", idx.Compartments)
				}
			}},
		{"narrative", `{"resourceType":"Condition","id":"c","subject":{"reference":"Patient/p"},"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Fièvre&nbsp;<b>sévère</b></p></div>"}}`,
			func(t *testing.T, idx Index) {
				if !slices.Contains(idx.Str, StrValue{Param: "_text", Value: "fievre severe"}) {
					t.Errorf("%+v", idx.Str)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx, warns, err := r.ExtractWithWarnings(strings.SplitN(tc.resource[17:], `"`, 2)[0], decodeJSON(t, []byte(tc.resource)))
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) > 0 {
				t.Errorf("warnings %v", warns)
			}
			tc.check(t, idx)
		})
	}
}

// TestExtractBadShapes: unexpected shapes never fail the write; they are
// skipped and reported as warnings.
func TestExtractBadShapes(t *testing.T) {
	res := decodeJSON(t, []byte(`{"resourceType":"Observation","id":"x","status":["final"],"code":"85354-9",
		"subject":"Patient/1","effectiveDateTime":"yesterday","valueQuantity":{"value":"12"},
		"component":[1,2,{"code":{"coding":"x"}}],"meta":{"tag":"x","security":[1]},"performer":[{"reference":42}],
		"text":{"div":7},"extension":[{"url":"u"}],"issued":12}`))
	idx, warns, err := Default().ExtractWithWarnings("Observation", res)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) == 0 {
		t.Error("no warnings for bad values")
	}
	for _, w := range warns {
		if !strings.Contains(w, ": ") {
			t.Errorf("warning without parameter: %q", w)
		}
	}
	if len(idx.Date) != 0 || len(idx.Qty) != 0 {
		t.Errorf("bad values indexed: %+v", idx)
	}
	for _, p := range []string{"date", "value-quantity"} {
		if slices.Contains(idx.Has, p) {
			t.Errorf("Has lists %s", p)
		}
	}
}

func TestExtractErrors(t *testing.T) {
	r := Default()
	if _, err := r.Extract("Observation", nil); err == nil {
		t.Error("nil resource accepted")
	}
	if _, err := r.Extract("Observation", map[string]any{"resourceType": "Patient"}); err == nil {
		t.Error("resourceType mismatch accepted")
	}
	if _, err := r.Extract("Frobnicator", map[string]any{"resourceType": "Frobnicator"}); err == nil {
		t.Error("unknown type accepted")
	}
	if _, err := r.Extract("DomainResource", map[string]any{}); err == nil {
		t.Error("abstract type accepted")
	}
}

func benchExtract(b *testing.B, typ, src string) {
	r := Default()
	res := decodeJSON(b, []byte(src))
	for b.Loop() {
		if _, err := r.Extract(typ, res); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtractObservation(b *testing.B) { benchExtract(b, "Observation", extractObservation) }
func BenchmarkExtractPatient(b *testing.B)     { benchExtract(b, "Patient", extractPatient) }

// BenchmarkExtractAuditEvent: the AuditEvent fhirgate writes for a create.
func BenchmarkExtractAuditEvent(b *testing.B) {
	raw, err := os.ReadFile("testdata/bench-auditevent.json")
	if err != nil {
		b.Fatal(err)
	}
	benchExtract(b, "AuditEvent", string(raw))
}

// FuzzExtract: arbitrary JSON never makes extraction panic or fail.
func FuzzExtract(f *testing.F) {
	f.Add(extractObservation)
	f.Add(extractPatient)
	f.Add(`{"resourceType":"Observation","valueQuantity":[1,{"value":"x"}],"effectivePeriod":{"start":5}}`)
	r := Default()
	f.Fuzz(func(t *testing.T, src string) {
		d := json.NewDecoder(strings.NewReader(src))
		d.UseNumber()
		var m map[string]any
		if d.Decode(&m) != nil || m == nil {
			return
		}
		rt, _ := m["resourceType"].(string)
		if !r.IsResourceType(rt) {
			return
		}
		if _, err := r.Extract(rt, m); err != nil {
			t.Fatalf("extract: %v", err)
		}
	})
}

// FuzzParseDateRange: parsed ranges are non-empty and never panic.
func FuzzParseDateRange(f *testing.F) {
	for _, s := range []string{"2024", "2024-02-29T10:00:00.123+14:00", "2024-03-05T10:20", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParseDateRange(s)
		if err == nil && !hi.After(lo) {
			t.Fatalf("%q: empty range [%v, %v)", s, lo, hi)
		}
	})
}
