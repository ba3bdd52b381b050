package search

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

var parseNow = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func sptr(s string) *string { return &s }

func putc(s string) time.Time {
	for _, f := range []string{"2006", "2006-01", "2006-01-02", time.RFC3339, "2006-01-02T15:04"} {
		if t, err := time.Parse(f, s); err == nil {
			return t.UTC()
		}
	}
	panic(s)
}

func mustParse(t *testing.T, typ, query string, opt ParseOptions) *Parsed {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	if opt.Now == nil {
		opt.Now = func() time.Time { return parseNow }
	}
	p, err := Default().Parse(typ, q, opt)
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, query, err)
	}
	return p
}

// TestParseFilter checks the filter of each parameter type and modifier.
func TestParseFilter(t *testing.T) {
	tests := []struct {
		name, typ, query string
		want             Expr
	}{
		// search.html#string: starts-with on the folded value; :exact; :contains.
		{"string", "Patient", "name=Peter", StringCond{Param: "name", Value: "peter"}},
		{"string accents", "Patient", "given=%C3%88ve", StringCond{Param: "given", Value: "eve"}},
		{"string exact", "Patient", "name:exact=Peter", StringCond{Param: "name", Value: "Peter", Mode: StringExact}},
		{"string contains", "Patient", "name:contains=eve", StringCond{Param: "name", Value: "eve", Mode: StringContains}},
		// search.html#token
		{"token code", "Patient", "gender=male", TokenCond{Param: "gender", Code: sptr("male")}},
		{"token system|code", "Patient", "identifier=http://acme.org/patient|2345",
			TokenCond{Param: "identifier", System: sptr("http://acme.org/patient"), Code: sptr("2345")}},
		{"token |code", "Patient", "identifier=|2345", TokenCond{Param: "identifier", System: sptr(""), Code: sptr("2345")}},
		{"token system|", "Patient", "identifier=http://acme.org/patient|", TokenCond{Param: "identifier", System: sptr("http://acme.org/patient")}},
		{"token :text", "Condition", "code:text=Head%20Ache", TokenCond{Param: "code", Text: "head ache"}},
		{"token :not", "Patient", "gender:not=male", Not{Arg: TokenCond{Param: "gender", Code: sptr("male")}}},
		{"token :not or", "Patient", "gender:not=male,female", Not{Arg: Or{Args: []Expr{
			TokenCond{Param: "gender", Code: sptr("male")}, TokenCond{Param: "gender", Code: sptr("female")}}}}},
		{"token :of-type", "Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053",
			TokenCond{Param: "identifier", OfType: true, TypeSystem: "http://terminology.hl7.org/CodeSystem/v2-0203", TypeCode: "MR", Code: sptr("446053")}},
		{"token prefix-like code is a code", "Observation", "code=gt5", TokenCond{Param: "code", Code: sptr("gt5")}},
		// search.html#escaping
		{"escaped comma", "Patient", `identifier=a\,b`, TokenCond{Param: "identifier", Code: sptr("a,b")}},
		{"escaped pipe", "Patient", `identifier=urn:x\|y|v`, TokenCond{Param: "identifier", System: sptr("urn:x|y"), Code: sptr("v")}},
		{"escaped backslash", "Patient", `name=a\\`, StringCond{Param: "name", Value: `a\`}},
		// search.html#reference
		{"reference Type/id", "Observation", "subject=Patient/123", RefCond{Param: "subject", Targets: []string{"Patient/123"}}},
		{"reference versioned", "Observation", "subject=Patient/123/_history/2", RefCond{Param: "subject", Targets: []string{"Patient/123"}}},
		{"reference :Type", "Observation", "subject:Patient=123", RefCond{Param: "subject", Targets: []string{"Patient/123"}}},
		{"reference bare id single target", "Patient", "organization=7", RefCond{Param: "organization", Targets: []string{"Organization/7"}}},
		{"reference bare id multi target", "Observation", "subject=123", RefCond{Param: "subject", IDs: []string{"123"}}},
		{"reference own base made relative", "Observation", "subject=https://fhir.example/r4/Patient/123", RefCond{Param: "subject", Targets: []string{"Patient/123"}}},
		{"reference absolute", "Observation", "subject=http://other.org/fhir/Patient/123", RefCond{Param: "subject", URLs: []string{"http://other.org/fhir/Patient/123"}}},
		{"reference canonical|version", "PlanDefinition", "definition=http://x.org/fhir/ActivityDefinition/a|1.0",
			RefCond{Param: "definition", URLs: []string{"http://x.org/fhir/ActivityDefinition/a"}, Version: "1.0"}},
		{"reference :identifier", "Observation", "subject:identifier=urn:mrn|123",
			RefCond{Param: "subject", Identifier: &TokenCond{System: sptr("urn:mrn"), Code: sptr("123")}}},
		{"reference :below", "PlanDefinition", "definition:below=http://x.org/fhir/", RefCond{Param: "definition", URLs: []string{"http://x.org/fhir/"}, Below: true}},
		// search.html#date and #prefix
		{"date year", "Patient", "birthdate=1970", DateCond{Param: "birthdate", Prefix: Eq, Lo: putc("1970"), Hi: putc("1971")}},
		{"date eq day", "Patient", "birthdate=eq1970-02-03", DateCond{Param: "birthdate", Prefix: Eq, Lo: putc("1970-02-03"), Hi: putc("1970-02-04")}},
		{"date ne", "Observation", "date=ne2020-01", DateCond{Param: "date", Prefix: Ne, Lo: putc("2020-01"), Hi: putc("2020-02")}},
		{"date gt", "Observation", "date=gt2020", DateCond{Param: "date", Prefix: Gt, Lo: putc("2020"), Hi: putc("2021")}},
		{"date lt", "Observation", "date=lt2020", DateCond{Param: "date", Prefix: Lt, Lo: putc("2020"), Hi: putc("2021")}},
		{"date ge", "Observation", "date=ge2020", DateCond{Param: "date", Prefix: Ge, Lo: putc("2020"), Hi: putc("2021")}},
		{"date le", "Observation", "date=le2020", DateCond{Param: "date", Prefix: Le, Lo: putc("2020"), Hi: putc("2021")}},
		{"date sa", "Observation", "date=sa2020", DateCond{Param: "date", Prefix: Sa, Lo: putc("2020"), Hi: putc("2021")}},
		{"date eb", "Observation", "date=eb2020", DateCond{Param: "date", Prefix: Eb, Lo: putc("2020"), Hi: putc("2021")}},
		{"date minute with zone", "Observation", "date=2020-01-02T10:00%2B02:00",
			DateCond{Param: "date", Prefix: Eq, Lo: putc("2020-01-02T08:00"), Hi: putc("2020-01-02T08:01")}},
		// ap: 10% of the distance to now (2024-01-01): 2014-01-01 is 3652 days away.
		{"date ap", "Observation", "date=ap2014-01-01", DateCond{Param: "date", Prefix: Ap,
			Lo: putc("2014-01-01").Add(-365*24*time.Hour - 288*time.Minute), Hi: putc("2014-01-02").Add(365*24*time.Hour + 288*time.Minute)}},
		{"lastUpdated", "Patient", "_lastUpdated=gt2023-06", LastUpdatedCond{Prefix: Gt, Lo: putc("2023-06"), Hi: putc("2023-07")}},
		// search.html#number: implicit precision
		{"number", "RiskAssessment", "probability=0.8", NumberCond{Param: "probability", Prefix: Eq, Value: 0.8, Lo: 0.75, Hi: 0.8500000000000001}},
		{"number prefix", "RiskAssessment", "probability=gt100", NumberCond{Param: "probability", Prefix: Gt, Value: 100, Lo: 99.5, Hi: 100.5}},
		{"number exponent", "RiskAssessment", "probability=1e2", NumberCond{Param: "probability", Prefix: Eq, Value: 100, Lo: 99.5, Hi: 100.5}},
		{"number ap", "RiskAssessment", "probability=ap100", NumberCond{Param: "probability", Prefix: Ap, Value: 100, Lo: 90, Hi: 110}},
		// search.html#quantity
		{"quantity system|code", "Observation", "value-quantity=5.4|http://unitsofmeasure.org|mg",
			QuantityCond{Param: "value-quantity", Prefix: Eq, Value: 5.4, Lo: 5.3500000000000005, Hi: 5.45, System: "http://unitsofmeasure.org", Code: "mg"}},
		{"quantity ||code", "Observation", "value-quantity=le5.4||mg",
			QuantityCond{Param: "value-quantity", Prefix: Le, Value: 5.4, Lo: 5.3500000000000005, Hi: 5.45, Code: "mg"}},
		{"quantity plain", "Observation", "value-quantity=5", QuantityCond{Param: "value-quantity", Prefix: Eq, Value: 5, Lo: 4.5, Hi: 5.5}},
		// search.html#uri
		{"uri", "ValueSet", "url=http://acme.org/fhir/ValueSet/123", URICond{Param: "url", Value: "http://acme.org/fhir/ValueSet/123"}},
		{"uri below", "ValueSet", "url:below=http://acme.org/fhir/", URICond{Param: "url", Value: "http://acme.org/fhir/", Mode: URIBelow}},
		{"uri above", "ValueSet", "url:above=http://acme.org/fhir/ValueSet/123/_history/5", URICond{Param: "url", Value: "http://acme.org/fhir/ValueSet/123/_history/5", Mode: URIAbove}},
		// search.html#composite
		{"composite", "Observation", "code-value-quantity=http://loinc.org|8480-6$gt100", CompositeCond{Param: "code-value-quantity", Parts: []Expr{
			TokenCond{Param: "0", System: sptr("http://loinc.org"), Code: sptr("8480-6")},
			QuantityCond{Param: "1", Prefix: Gt, Value: 100, Lo: 99.5, Hi: 100.5}}}},
		{"composite escaped $", "Observation", `code-value-string=x\$y$abc`, CompositeCond{Param: "code-value-string", Parts: []Expr{
			TokenCond{Param: "0", Code: sptr("x$y")}, StringCond{Param: "1", Value: "abc"}}}},
		// search.html#missing
		{"missing true", "Patient", "gender:missing=true", MissingCond{Param: "gender", Missing: true}},
		{"missing false", "Observation", "date:missing=false", MissingCond{Param: "date"}},
		{"_id:missing", "Patient", "_id:missing=true", Const{Value: false}},
		{"_lastUpdated:missing", "Patient", "_lastUpdated:missing=false", Const{Value: true}},
		// search.html#combining: comma = OR, repeated = AND
		{"or", "Patient", "gender=male,female", Or{Args: []Expr{TokenCond{Param: "gender", Code: sptr("male")}, TokenCond{Param: "gender", Code: sptr("female")}}}},
		{"and", "Observation", "date=ge2020&date=lt2021", And{Args: []Expr{
			DateCond{Param: "date", Prefix: Ge, Lo: putc("2020"), Hi: putc("2021")}, DateCond{Param: "date", Prefix: Lt, Lo: putc("2021"), Hi: putc("2022")}}}},
		{"empty value ignored", "Patient", "name=", nil},
		// common parameters (search.html#all)
		{"_id", "Patient", "_id=a,b", IDCond{IDs: []string{"a", "b"}}},
		{"_tag", "Patient", "_tag=http://x|y", TokenCond{Param: "_tag", System: sptr("http://x"), Code: sptr("y")}},
		{"_security", "Patient", "_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R",
			TokenCond{Param: "_security", System: sptr("http://terminology.hl7.org/CodeSystem/v3-Confidentiality"), Code: sptr("R")}},
		{"_profile", "Patient", "_profile=http://x.org/p", URICond{Param: "_profile", Value: "http://x.org/p"}},
		{"_source", "Patient", "_source=http://x.org/s", URICond{Param: "_source", Value: "http://x.org/s"}},
		{"_text", "Patient", "_text=Heart%20Failure", StringCond{Param: "_text", Value: "heart failure", Mode: StringContains}},
		{"_format ignored", "Patient", "_format=json", nil},
		// system search: parameters common to all types
		{"system _id", "", "_id=1", IDCond{IDs: []string{"1"}}},
		{"system _type code", "", "_type=Observation,Condition&code=x", TokenCond{Param: "code", Code: sptr("x")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParse(t, tc.typ, tc.query, ParseOptions{Base: "https://fhir.example/r4"})
			if !reflect.DeepEqual(p.Filter, tc.want) {
				t.Fatalf("filter:\n got %#v\nwant %#v", p.Filter, tc.want)
			}
			if len(p.Warnings) != 0 {
				t.Fatalf("unexpected warnings %v", p.Warnings)
			}
		})
	}
}

// TestParseErrors: malformed values are a *ParamError naming the parameter (search.html#errors).
func TestParseErrors(t *testing.T) {
	tests := []struct {
		typ, query, param, msg string
	}{
		{"Patient", "birthdate=1970-13", "birthdate", "invalid date"},
		{"Patient", "birthdate=xx2020", "birthdate", "invalid date"},
		{"Observation", "date=2020-01-01T25:00", "date", "invalid date"},
		{"RiskAssessment", "probability=abc", "probability", "invalid number"},
		{"Observation", "value-quantity=5.4|mg", "value-quantity", "quantity must be"},
		{"Patient", "gender:foo=male", "gender:foo", "unknown modifier"},
		{"Patient", "birthdate:exact=1970", "birthdate:exact", "unknown modifier"},
		{"Patient", "gender:missing=maybe", "gender:missing", ":missing must be"},
		{"Patient", "identifier=a|b|c", "identifier", "more than one"},
		{"Patient", "identifier:of-type=a|b", "identifier:of-type", ":of-type needs"},
		{"Observation", "code-value-quantity=http://loinc.org|8480-6", "code-value-quantity", "needs 2 values"},
		{"Observation", "subject:Medication=1", "subject:Medication", "cannot refer to Medication"},
		{"Observation", "subject=Foo/1", "subject", "invalid reference"},
		{"Observation", "subject.name=smith", "subject.name", "ambiguous"},
		{"Patient", "gender.name=x", "gender.name", "not a reference"},
		{"Patient", "_has:Observation:code:code=1", "_has:Observation:code:code", "not a reference"},
		{"Patient", "_has:Observation:patient=1", "_has:Observation:patient", "_has must be"},
		{"Patient", "_has:Nope:patient:code=1", "_has:Nope:patient:code", "unknown resource type"},
		{"Patient", "_count=-1", "_count", "non-negative"},
		{"Patient", "_count=ten", "_count", "non-negative"},
		{"Patient", "_count=1&_count=2", "_count", "only once"},
		{"Patient", "_total=maybe", "_total", "_total must be"},
		{"Patient", "_summary=maybe", "_summary", "_summary must be"},
		{"Patient", "_elements=na%20me", "_elements", "invalid element"},
		{"Patient", "_include=Patient", "_include", "must be Type:parameter"},
		{"Patient", "_include=Patient:gender", "_include", "not a reference"},
		{"Patient", "_include:deep=Patient:organization", "_include:deep", "unknown modifier"},
		{"Patient", "_include=Patient:organization:Patient", "_include", "cannot refer to Patient"},
		{"", "_type=Nope", "_type", "unknown resource type"},
		{"Patient", "_id:exact=1", "_id:exact", "unknown modifier"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Default().Parse(tc.typ, q, ParseOptions{})
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("want *ParamError, got %v", err)
			}
			if pe.Param != tc.param || !strings.Contains(pe.Msg, tc.msg) || pe.Code != "invalid" {
				t.Fatalf("got %+v, want param %q message containing %q", pe, tc.param, tc.msg)
			}
		})
	}
}

// TestParseUnknown: unknown or unsupported parameters are ignored with a
// warning, or rejected when strict (search.html#errors, Prefer: handling).
func TestParseUnknown(t *testing.T) {
	tests := []struct{ typ, query, param string }{
		{"Patient", "foo=bar", "foo"},
		{"Patient", "_content=x", "_content"},
		{"Patient", "_filter=name eq x", "_filter"},
		{"Condition", "code:in=http://x/vs", "code:in"},
		{"Condition", "code:below=http://snomed.info/sct|1", "code:below"},
		{"Patient", "_sort=foo", "_sort"},
		{"Patient", "_has:Observation:nope:code=1", "_has:Observation:nope:code"},
		{"Observation", "patient.nope=1", "patient.nope"},
		{"", "gender=male", "gender"},
		{"Patient", "_include=Patient:nope", "_include"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			p := mustParse(t, tc.typ, tc.query, ParseOptions{})
			if p.Filter != nil || len(p.Chains) != 0 || len(p.Has) != 0 || len(p.Sort) != 0 || len(p.Include) != 0 {
				t.Fatalf("ignored parameter left a condition: %+v", p)
			}
			if len(p.Warnings) != 1 || p.Warnings[0].Expression[0] != tc.param || p.Warnings[0].Severity != "warning" {
				t.Fatalf("warnings %+v, want one naming %s", p.Warnings, tc.param)
			}
			q, _ := url.ParseQuery(tc.query)
			_, err := Default().Parse(tc.typ, q, ParseOptions{Strict: true})
			var pe *ParamError
			if !errors.As(err, &pe) || pe.Param != tc.param || pe.Code != "not-supported" {
				t.Fatalf("strict: got %v, want a not-supported error at %s", err, tc.param)
			}
		})
	}
}

// TestParseChains: search.html#chaining and #has.
func TestParseChains(t *testing.T) {
	p := mustParse(t, "Observation", "subject:Patient.name=smith", ParseOptions{})
	want := []Chain{{Name: "subject:Patient.name", Param: "subject", Type: "Patient", Where: Criteria{Filter: StringCond{Param: "name", Value: "smith"}}}}
	if !reflect.DeepEqual(p.Chains, want) || p.Filter != nil {
		t.Fatalf("chain: %#v", p.Chains)
	}
	// The type is inferred when only one target defines the parameter.
	p = mustParse(t, "Observation", "patient.name:exact=Smith,Jones", ParseOptions{})
	want = []Chain{{Name: "patient.name:exact", Param: "patient", Type: "Patient", Where: Criteria{Filter: Or{Args: []Expr{
		StringCond{Param: "name", Value: "Smith", Mode: StringExact}, StringCond{Param: "name", Value: "Jones", Mode: StringExact}}}}}}
	if !reflect.DeepEqual(p.Chains, want) {
		t.Fatalf("inferred chain: %#v", p.Chains)
	}
	// Two hops.
	p = mustParse(t, "Encounter", "patient.organization.name=acme", ParseOptions{})
	want = []Chain{{Name: "patient.organization.name", Param: "patient", Type: "Patient", Where: Criteria{Chains: []Chain{
		{Name: "patient.organization.name", Param: "organization", Type: "Organization", Where: Criteria{Filter: StringCond{Param: "name", Value: "acme"}}}}}}}
	if !reflect.DeepEqual(p.Chains, want) {
		t.Fatalf("two hops: %#v", p.Chains)
	}
	// Chain to _id and a leaf in the same query.
	p = mustParse(t, "Observation", "subject:Patient._id=1&status=final", ParseOptions{})
	if len(p.Chains) != 1 || !reflect.DeepEqual(p.Chains[0].Where.Filter, IDCond{IDs: []string{"1"}}) || p.Filter == nil {
		t.Fatalf("chain to _id: %#v", p)
	}
	// _has, nested (the example of search.html#has).
	p = mustParse(t, "Patient", "_has:Observation:patient:_has:AuditEvent:entity:agent=MyUserId", ParseOptions{})
	wantHas := []Has{{Name: "_has:Observation:patient:_has:AuditEvent:entity:agent", Type: "Observation", Param: "patient", Where: Criteria{Has: []Has{
		{Name: "_has:Observation:patient:_has:AuditEvent:entity:agent", Type: "AuditEvent", Param: "entity", Where: Criteria{Filter: RefCond{Param: "agent", IDs: []string{"MyUserId"}}}}}}}}
	if !reflect.DeepEqual(p.Has, wantHas) {
		t.Fatalf("nested _has: %#v", p.Has)
	}
	p = mustParse(t, "Patient", "_has:Observation:patient:code=1234-5", ParseOptions{})
	if len(p.Has) != 1 || !reflect.DeepEqual(p.Has[0].Where.Filter, TokenCond{Param: "code", Code: sptr("1234-5")}) {
		t.Fatalf("_has: %#v", p.Has)
	}
}

// TestParseResultParams: search.html#count, #sort, #total, #summary, #elements, #include.
func TestParseResultParams(t *testing.T) {
	p := mustParse(t, "Observation", "", ParseOptions{})
	if p.Count != DefaultCount || p.Total != "" || !reflect.DeepEqual(p.Types, []string{"Observation"}) {
		t.Fatalf("defaults: %+v", p)
	}
	p = mustParse(t, "Observation", "_count=5000&_sort=-date,_id,status&_total=accurate&_elements=code,subject&_cursor=abc", ParseOptions{})
	if p.Count != MaxCount {
		t.Fatalf("count %d, want clamped to %d", p.Count, MaxCount)
	}
	if !reflect.DeepEqual(p.Sort, []SortKey{{Param: "date", Desc: true}, {Param: "_id"}, {Param: "status"}}) {
		t.Fatalf("sort %+v", p.Sort)
	}
	if p.Total != "accurate" || !reflect.DeepEqual(p.Elements, []string{"code", "subject"}) || p.Cursor != "abc" {
		t.Fatalf("result params %+v", p)
	}
	p = mustParse(t, "Observation", "_count=0", ParseOptions{})
	if p.Count != 0 {
		t.Fatalf("_count=0 gave %d", p.Count)
	}
	p = mustParse(t, "Observation", "_summary=count", ParseOptions{})
	if p.Count != 0 || p.Summary != "count" {
		t.Fatalf("_summary=count gave %+v", p)
	}
	p = mustParse(t, "MedicationRequest", "_include=MedicationRequest:patient&_include=MedicationRequest:medication:Medication"+
		"&_include:iterate=Patient:general-practitioner&_include=*&_revinclude=Provenance:target&_revinclude:iterate=Provenance:*", ParseOptions{})
	wantInc := []Include{
		{Source: "*", Param: "*"},
		{Source: "MedicationRequest", Param: "patient"},
		{Source: "MedicationRequest", Param: "medication", Target: "Medication"},
		{Source: "Patient", Param: "general-practitioner", Iterate: true},
	}
	if !sameIncludes(p.Include, wantInc) {
		t.Fatalf("include %+v", p.Include)
	}
	wantRev := []Include{{Source: "Provenance", Param: "target"}, {Source: "Provenance", Param: "*", Iterate: true}}
	if !sameIncludes(p.RevInclude, wantRev) {
		t.Fatalf("revinclude %+v", p.RevInclude)
	}
	p = mustParse(t, "", "_type=Patient,Observation&_type=Patient", ParseOptions{})
	if !reflect.DeepEqual(p.Types, []string{"Patient", "Observation"}) {
		t.Fatalf("_type %v", p.Types)
	}
	p = mustParse(t, "Patient", "_type=Observation", ParseOptions{})
	if len(p.Warnings) != 1 || !reflect.DeepEqual(p.Types, []string{"Patient"}) {
		t.Fatalf("_type in a type search: %+v", p)
	}
}

func sameIncludes(a, b []Include) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range b {
		found := false
		for _, y := range a {
			found = found || x == y
		}
		if !found {
			return false
		}
	}
	return true
}

func TestSplitEsc(t *testing.T) {
	// search.html#escaping
	got := splitEsc(`a\,b,c\\,d`, ',')
	if !reflect.DeepEqual(got, []string{`a\,b`, `c\\`, `d`}) {
		t.Fatalf("splitEsc = %q", got)
	}
	if u := unesc(`a\,b\$c\|d\\e\x`); u != `a,b$c|d\e\x` {
		t.Fatalf("unesc = %q", u)
	}
}
