package mquery

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/embedded"
)

var testDB *mongo.Database

// TestMain starts one embedded FerretDB for the package.
func TestMain(m *testing.M) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "mquery")
	if err != nil {
		panic(err)
	}
	srv, err := embedded.Start(ctx, dir, "", nil)
	if err != nil {
		panic(err)
	}
	c, err := mongo.Connect(options.Client().ApplyURI(srv.URI))
	if err != nil {
		panic(err)
	}
	testDB = c.Database("mquery")
	code := m.Run()
	_ = c.Disconnect(ctx)
	srv.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

func sp(s string) *string { return &s }

const (
	loinc = "http://loinc.org"
	ucum  = "http://unitsofmeasure.org"
)

// fixtures are the stored versions every case runs against.
func fixtures() []store.Record {
	rec := func(typ, id string, lu time.Time, x search.Index) store.Record {
		return store.Record{Type: typ, ID: id, VersionID: 1, LastUpdated: lu, Index: x}
	}
	o1 := rec("Observation", "o1", day("2021-01-01"), search.Index{
		Tok: []search.TokValue{
			{Param: "code", System: loinc, Code: "8480-6", Text: "systolic blood pressure"},
			{Param: "status", System: "http://hl7.org/fhir/observation-status", Code: "final"},
		},
		Ref:  []search.RefValue{{Param: "subject", Ref: "Patient/p1", Type: "Patient", ID: "p1"}},
		Date: []search.DateValue{{Param: "date", Lo: day("2020-01-15"), Hi: day("2020-01-16")}},
		Qty: []search.QtyValue{
			{Param: "value-quantity", Value: 120, Lo: 119.5, Hi: 120.5, System: ucum, Code: "mm[Hg]", Unit: "mmHg"},
			{Param: "component-value-quantity", Value: 80, Lo: 79.5, Hi: 80.5, System: ucum, Code: "mm[Hg]", Unit: "mmHg"},
		},
		// A blood pressure panel: two tuples (search.html#composite).
		Comp: []search.CompValue{
			{Param: "code-value-quantity", Parts: search.Index{
				Tok: []search.TokValue{{Param: "0", System: loinc, Code: "8480-6"}},
				Qty: []search.QtyValue{{Param: "1", Value: 120, System: ucum, Code: "mm[Hg]"}},
			}},
			{Param: "code-value-quantity", Parts: search.Index{
				Tok: []search.TokValue{{Param: "0", System: loinc, Code: "8462-4"}},
				Qty: []search.QtyValue{{Param: "1", Value: 80, System: ucum, Code: "mm[Hg]"}},
			}},
		},
		Has:          []string{"code", "status", "subject", "date", "value-quantity", "code-value-quantity"},
		Compartments: []string{"Patient/p1"},
		Sort:         map[string]any{"date": day("2020-01-15")},
	})
	o1.Release = store.Release{Patient: day("2021-01-08"), State: "delay"}
	o2 := rec("Observation", "o2", day("2021-02-01"), search.Index{
		Tok: []search.TokValue{
			{Param: "code", System: loinc, Code: "8462-4", Text: "diastolic blood pressure"},
			{Param: "status", System: "http://hl7.org/fhir/observation-status", Code: "preliminary"},
		},
		Ref:          []search.RefValue{{Param: "subject", Ref: "Patient/p2", Type: "Patient", ID: "p2"}},
		Date:         []search.DateValue{{Param: "date", Lo: day("2020-02-01"), Hi: day("2020-02-02")}},
		Qty:          []search.QtyValue{{Param: "value-quantity", Value: 80, Lo: 79.5, Hi: 80.5, System: ucum, Code: "mm[Hg]", Unit: "mmHg"}},
		Has:          []string{"code", "status", "subject", "date", "value-quantity"},
		Compartments: []string{"Patient/p2"},
		Security:     []string{"http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"},
		Sort:         map[string]any{"date": day("2020-02-01")},
	})
	o2.Release = store.Release{Proxy: store.Never, State: "exclude"}
	p1 := rec("Patient", "p1", day("2021-03-01"), search.Index{
		Str: []search.StrValue{{Param: "name", Value: "smith", Exact: "Smith"}, {Param: "name", Value: "john"}},
		Tok: []search.TokValue{
			{Param: "gender", System: "http://hl7.org/fhir/administrative-gender", Code: "male"},
			{Param: "identifier", System: "urn:mrn", Code: "123", TypeSystem: "http://terminology.hl7.org/CodeSystem/v2-0203", TypeCode: "MR"},
		},
		Date:         []search.DateValue{{Param: "birthdate", Lo: day("1970-01-01"), Hi: day("1970-01-02")}},
		Has:          []string{"name", "gender", "identifier", "birthdate"},
		Compartments: []string{"Patient/p1"},
		Sort:         map[string]any{"family": "smith"},
	})
	p2 := rec("Patient", "p2", day("2021-03-02"), search.Index{
		Str: []search.StrValue{{Param: "name", Value: "muller", Exact: "Müller"}},
		Tok: []search.TokValue{
			{Param: "gender", System: "http://hl7.org/fhir/administrative-gender", Code: "female"},
			{Param: "identifier", Code: "456"},
		},
		Ref:          []search.RefValue{{Param: "general-practitioner", Ref: "Practitioner/pr1", Type: "Practitioner", ID: "pr1"}},
		Date:         []search.DateValue{{Param: "birthdate", Lo: day("1980-05-01"), Hi: day("1980-06-01")}},
		Has:          []string{"name", "gender", "identifier", "birthdate", "general-practitioner"},
		Compartments: []string{"Patient/p2"},
		Sort:         map[string]any{"family": "muller"},
	})
	vs := rec("ValueSet", "vs1", day("2021-04-01"), search.Index{
		URI: []search.URIValue{{Param: "url", Value: "http://acme.org/fhir/ValueSet/123"}},
		Has: []string{"url"},
	})
	ra := rec("RiskAssessment", "r1", day("2021-04-02"), search.Index{
		Num: []search.NumValue{{Param: "probability", Value: 0.8, Lo: 0.75, Hi: 0.85}},
		Has: []string{"probability"},
	})
	e1 := rec("Encounter", "e1", day("2021-04-03"), search.Index{
		Ref: []search.RefValue{
			{Param: "subject", Ref: "Patient/p1", Type: "Patient", ID: "p1"},
			{Param: "participant", IDSystem: "urn:npi", IDValue: "999"},
		},
		Date:         []search.DateValue{{Param: "date", Lo: day("2020-01-01"), Hi: day("2020-01-10")}},
		Has:          []string{"subject", "participant", "date"},
		Compartments: []string{"Patient/p1"},
	})
	ig := rec("ImplementationGuide", "ig1", day("2021-04-04"), search.Index{
		Ref: []search.RefValue{{Param: "depends-on", Ref: "http://hl7.org/fhir/ig/core", Version: "4.0.1"}},
		Has: []string{"depends-on"},
	})
	return []store.Record{o1, o2, p1, p2, vs, ra, e1, ig}
}

// testDoc is a stored document in the layout of the package doc.
type testDoc struct {
	ID  string      `bson:"_id"`
	T   string      `bson:"t"`
	I   string      `bson:"i"`
	V   int64       `bson:"v"`
	LU  time.Time   `bson:"lu"`
	Del bool        `bson:"del"`
	Idx BSONIndex   `bson:"idx"`
	Rel BSONRelease `bson:"rel"`
}

func toDoc(r store.Record, history bool) testDoc {
	id := r.Key()
	if history {
		id = fmt.Sprintf("%s/%d", id, r.VersionID)
	}
	return testDoc{ID: id, T: r.Type, I: r.ID, V: r.VersionID, LU: r.LastUpdated, Idx: ToBSON(r.Index), Rel: BSONRelease(r.Release)}
}

var (
	collOnce = map[string]*mongo.Collection{}
)

// collection returns a collection holding the fixtures (history: _id with vid).
func collection(t *testing.T, history bool) *mongo.Collection {
	t.Helper()
	name := "cur"
	if history {
		name = "hist"
	}
	if c, ok := collOnce[name]; ok {
		return c
	}
	ctx := context.Background()
	c := testDB.Collection(name)
	for _, r := range fixtures() {
		if _, err := c.InsertOne(ctx, toDoc(r, history)); err != nil {
			t.Fatal(err)
		}
	}
	collOnce[name] = c
	return c
}

func keysOf(rs []store.Record) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.Key())
	}
	sort.Strings(out)
	return out
}

// run executes e on FerretDB the way a store must: coarse filter, then Match.
func run(t *testing.T, c *mongo.Collection, e search.Expr, history bool) (coarse, matched []string, exact bool) {
	t.Helper()
	ctx := context.Background()
	f, exact, err := Compile(e, Options{Dialect: FerretDB, History: history})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	m, err := NewMatcher(e)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := c.Find(ctx, f)
	if err != nil {
		t.Fatalf("find %v: %v", f, err)
	}
	var docs []testDoc
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatal(err)
	}
	var all, kept []store.Record
	for _, d := range docs {
		r := store.Record{Type: d.T, ID: d.I, VersionID: d.V, LastUpdated: d.LU, Index: FromBSON(d.Idx), Release: store.Release(d.Rel)}
		all = append(all, r)
		if m.Match(r) {
			kept = append(kept, r)
		}
	}
	return keysOf(all), keysOf(kept), exact
}

type matchCase struct {
	name string
	e    search.Expr
	want []string
}

// cases walks every node type with the semantics of search.html.
func cases() []matchCase {
	jan := func(p search.Prefix) search.Expr {
		return search.DateCond{Param: "date", Prefix: p, Lo: day("2020-01-01"), Hi: day("2020-02-01")}
	}
	jan12 := func(p search.Prefix) search.Expr {
		return search.DateCond{Param: "date", Prefix: p, Lo: day("2020-01-12"), Hi: day("2020-01-13")}
	}
	prob := func(p search.Prefix, v, lo, hi float64) search.Expr {
		return search.NumberCond{Param: "probability", Prefix: p, Value: v, Lo: lo, Hi: hi}
	}
	qty := func(p search.Prefix, v float64, sys, code string) search.Expr {
		return search.QuantityCond{Param: "value-quantity", Prefix: p, Value: v, Lo: v - 0.5, Hi: v + 0.5, System: sys, Code: code}
	}
	bp := func(code string, p search.Prefix, v float64) search.Expr {
		return search.CompositeCond{Param: "code-value-quantity", Parts: []search.Expr{
			search.TokenCond{Param: "0", System: sp(loinc), Code: sp(code)},
			search.QuantityCond{Param: "1", Prefix: p, Value: v, Lo: v - 0.5, Hi: v + 0.5},
		}}
	}
	all := []string{"Encounter/e1", "ImplementationGuide/ig1", "Observation/o1", "Observation/o2", "Patient/p1", "Patient/p2", "RiskAssessment/r1", "ValueSet/vs1"}
	without := func(drop ...string) []string {
		var out []string
		for _, k := range all {
			if !slices.Contains(drop, k) {
				out = append(out, k)
			}
		}
		return out
	}
	return []matchCase{
		// search.html#string
		{"string prefix", search.StringCond{Param: "name", Value: "smi"}, []string{"Patient/p1"}},
		{"string prefix folded", search.StringCond{Param: "name", Value: "mul"}, []string{"Patient/p2"}},
		{"string prefix is not contains", search.StringCond{Param: "name", Value: "ith"}, nil},
		{"string contains", search.StringCond{Param: "name", Value: "ith", Mode: search.StringContains}, []string{"Patient/p1"}},
		{"string regex metachars are literal", search.StringCond{Param: "name", Value: "sm.th"}, nil},
		{"string exact", search.StringCond{Param: "name", Value: "Smith", Mode: search.StringExact}, []string{"Patient/p1"}},
		{"string exact is case-sensitive", search.StringCond{Param: "name", Value: "smith", Mode: search.StringExact}, nil},
		{"string exact without x", search.StringCond{Param: "name", Value: "john", Mode: search.StringExact}, []string{"Patient/p1"}},
		{"string exact accents", search.StringCond{Param: "name", Value: "Müller", Mode: search.StringExact}, []string{"Patient/p2"}},
		// search.html#token
		{"token code", search.TokenCond{Param: "code", Code: sp("8480-6")}, []string{"Observation/o1"}},
		{"token system|code", search.TokenCond{Param: "code", System: sp(loinc), Code: sp("8462-4")}, []string{"Observation/o2"}},
		{"token wrong system", search.TokenCond{Param: "code", System: sp("http://snomed.info/sct"), Code: sp("8462-4")}, nil},
		{"token |code (no system)", search.TokenCond{Param: "identifier", System: sp(""), Code: sp("456")}, []string{"Patient/p2"}},
		{"token |code excludes systems", search.TokenCond{Param: "identifier", System: sp(""), Code: sp("123")}, nil},
		{"token system|", search.TokenCond{Param: "identifier", System: sp("urn:mrn")}, []string{"Patient/p1"}},
		{"token is correlated with its parameter", search.TokenCond{Param: "status", Code: sp("8480-6")}, nil},
		{"token :text word prefix", search.TokenCond{Param: "code", Text: "press"}, []string{"Observation/o1", "Observation/o2"}},
		{"token :text start", search.TokenCond{Param: "code", Text: "systolic"}, []string{"Observation/o1"}},
		{"token :text mid-word", search.TokenCond{Param: "code", Text: "ressure"}, nil},
		{"token :of-type", search.TokenCond{Param: "identifier", OfType: true, TypeSystem: "http://terminology.hl7.org/CodeSystem/v2-0203", TypeCode: "MR", Code: sp("123")}, []string{"Patient/p1"}},
		{"token :of-type wrong value", search.TokenCond{Param: "identifier", OfType: true, TypeSystem: "http://terminology.hl7.org/CodeSystem/v2-0203", TypeCode: "MR", Code: sp("456")}, nil},
		{"token code case-folded", search.TokenCond{Param: "status", Code: sp("FINAL"), CodeFold: true}, []string{"Observation/o1"}},
		{"token :not", search.Not{Arg: search.TokenCond{Param: "code", Code: sp("8480-6")}}, without("Observation/o1")},
		// search.html#reference
		{"reference Type/id", search.RefCond{Param: "subject", Targets: []string{"Patient/p1"}}, []string{"Encounter/e1", "Observation/o1"}},
		{"reference bare id any type", search.RefCond{Param: "subject", IDs: []string{"p2"}}, []string{"Observation/o2"}},
		{"reference id with :Type", search.RefCond{Param: "subject", IDs: []string{"p1"}, Types: []string{"Patient"}}, []string{"Encounter/e1", "Observation/o1"}},
		{"reference id with other :Type", search.RefCond{Param: "subject", IDs: []string{"p1"}, Types: []string{"Group"}}, nil},
		{"reference targets and ids", search.RefCond{Param: "subject", Targets: []string{"Patient/p1"}, IDs: []string{"p2"}}, []string{"Encounter/e1", "Observation/o1", "Observation/o2"}},
		{"reference :identifier", search.RefCond{Param: "participant", Identifier: &search.TokenCond{System: sp("urn:npi"), Code: sp("999")}}, []string{"Encounter/e1"}},
		{"reference canonical url|version", search.RefCond{Param: "depends-on", URLs: []string{"http://hl7.org/fhir/ig/core"}, Version: "4.0.1"}, []string{"ImplementationGuide/ig1"}},
		{"reference canonical wrong version", search.RefCond{Param: "depends-on", URLs: []string{"http://hl7.org/fhir/ig/core"}, Version: "3.0.2"}, nil},
		{"reference canonical :below", search.RefCond{Param: "depends-on", URLs: []string{"http://hl7.org/fhir/"}, Below: true}, []string{"ImplementationGuide/ig1"}},
		{"reference empty", search.RefCond{Param: "subject"}, nil},
		// search.html#prefix on dates: search 2020-01 = [2020-01-01, 2020-02-01)
		{"date eq", jan(search.Eq), []string{"Encounter/e1", "Observation/o1"}},
		{"date ne", jan(search.Ne), []string{"Observation/o2"}},
		{"date gt", jan(search.Gt), []string{"Observation/o2"}},
		{"date lt", jan(search.Lt), nil},
		{"date ge", jan(search.Ge), []string{"Encounter/e1", "Observation/o1", "Observation/o2"}},
		{"date le", jan(search.Le), []string{"Encounter/e1", "Observation/o1"}},
		{"date sa", jan(search.Sa), []string{"Observation/o2"}},
		{"date eb", jan12(search.Eb), []string{"Encounter/e1"}},
		{"date sa day", jan12(search.Sa), []string{"Observation/o1", "Observation/o2"}},
		{"date eq day", jan12(search.Eq), nil},
		{"date lt day", jan12(search.Lt), []string{"Encounter/e1"}},
		{"date ap overlap", search.DateCond{Param: "date", Prefix: search.Ap, Lo: day("2020-01-09"), Hi: day("2020-01-15")}, []string{"Encounter/e1"}},
		{"date other param", search.DateCond{Param: "birthdate", Lo: day("1980-01-01"), Hi: day("1981-01-01")}, []string{"Patient/p2"}},
		// search.html#number: "0.8" is [0.75, 0.85)
		{"number eq", prob(search.Eq, 0.8, 0.75, 0.85), []string{"RiskAssessment/r1"}},
		{"number eq precision", prob(search.Eq, 0.80, 0.795, 0.805), []string{"RiskAssessment/r1"}},
		{"number eq miss", prob(search.Eq, 0.7, 0.65, 0.75), nil},
		{"number ne", prob(search.Ne, 0.7, 0.65, 0.75), []string{"RiskAssessment/r1"}},
		{"number gt", prob(search.Gt, 0.5, 0.45, 0.55), []string{"RiskAssessment/r1"}},
		{"number lt", prob(search.Lt, 0.8, 0.75, 0.85), nil},
		{"number le", prob(search.Le, 0.8, 0.75, 0.85), []string{"RiskAssessment/r1"}},
		{"number ge", prob(search.Ge, 0.81, 0.805, 0.815), nil},
		{"number ap", prob(search.Ap, 0.75, 0.675, 0.825), []string{"RiskAssessment/r1"}},
		// search.html#quantity
		{"quantity system|code", qty(search.Gt, 100, ucum, "mm[Hg]"), []string{"Observation/o1"}},
		{"quantity ||unit text", qty(search.Lt, 100, "", "mmHg"), []string{"Observation/o2"}},
		{"quantity ||code", qty(search.Eq, 120, "", "mm[Hg]"), []string{"Observation/o1"}},
		{"quantity no unit", qty(search.Eq, 80, "", ""), []string{"Observation/o2"}},
		{"quantity wrong unit", qty(search.Eq, 80, ucum, "kg"), nil},
		{"quantity per parameter", qty(search.Eq, 80, ucum, "mm[Hg]"), []string{"Observation/o2"}},
		// search.html#uri
		{"uri exact", search.URICond{Param: "url", Value: "http://acme.org/fhir/ValueSet/123"}, []string{"ValueSet/vs1"}},
		{"uri exact is exact", search.URICond{Param: "url", Value: "http://acme.org/fhir/ValueSet/12"}, nil},
		{"uri :below", search.URICond{Param: "url", Value: "http://acme.org/fhir/", Mode: search.URIBelow}, []string{"ValueSet/vs1"}},
		{"uri :above", search.URICond{Param: "url", Value: "http://acme.org/fhir/ValueSet/123/_history/5", Mode: search.URIAbove}, []string{"ValueSet/vs1"}},
		{"uri :above sibling", search.URICond{Param: "url", Value: "http://acme.org/fhir/ValueSet/1234", Mode: search.URIAbove}, nil},
		// search.html#composite: the parts hold in one tuple
		{"composite", bp("8480-6", search.Gt, 100), []string{"Observation/o1"}},
		{"composite other tuple", bp("8462-4", search.Lt, 100), []string{"Observation/o1"}},
		{"composite uncorrelated", bp("8480-6", search.Lt, 100), nil},
		{"composite ne in one tuple", search.CompositeCond{Param: "code-value-quantity", Parts: []search.Expr{
			search.TokenCond{Param: "0", Code: sp("8480-6")},
			search.QuantityCond{Param: "1", Prefix: search.Ne, Value: 120, Lo: 119.5, Hi: 120.5},
		}}, nil},
		// search.html#missing
		{"missing true", search.MissingCond{Param: "birthdate", Missing: true}, without("Patient/p1", "Patient/p2")},
		{"missing false", search.MissingCond{Param: "birthdate"}, []string{"Patient/p1", "Patient/p2"}},
		// _id, keys, types
		{"id", search.IDCond{IDs: []string{"p1", "o2"}}, []string{"Observation/o2", "Patient/p1"}},
		{"id none", search.IDCond{}, nil},
		{"key", search.KeyCond{Keys: []string{"Patient/p1", "Observation/o2", "Patient/o2"}}, []string{"Observation/o2", "Patient/p1"}},
		{"type", search.TypeCond{Types: []string{"Patient", "ValueSet"}}, []string{"Patient/p1", "Patient/p2", "ValueSet/vs1"}},
		// _lastUpdated (an instant)
		{"lastUpdated ge", search.LastUpdatedCond{Prefix: search.Ge, Lo: day("2021-04-02"), Hi: day("2021-04-03")}, []string{"Encounter/e1", "ImplementationGuide/ig1", "RiskAssessment/r1"}},
		{"lastUpdated eq", search.LastUpdatedCond{Prefix: search.Eq, Lo: day("2021-04-02"), Hi: day("2021-04-03")}, []string{"RiskAssessment/r1"}},
		{"lastUpdated gt", search.LastUpdatedCond{Prefix: search.Gt, Lo: day("2021-04-02"), Hi: day("2021-04-03")}, []string{"Encounter/e1", "ImplementationGuide/ig1"}},
		{"lastUpdated lt", search.LastUpdatedCond{Prefix: search.Lt, Lo: day("2021-02-01"), Hi: day("2021-02-02")}, []string{"Observation/o1"}},
		{"lastUpdated le", search.LastUpdatedCond{Prefix: search.Le, Lo: day("2021-02-01"), Hi: day("2021-02-02")}, []string{"Observation/o1", "Observation/o2"}},
		// access control nodes
		{"compartment", search.CompartmentCond{Compartments: []string{"Patient/p1"}}, []string{"Encounter/e1", "Observation/o1", "Patient/p1"}},
		{"security", search.SecurityCond{Labels: []string{"http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"}}, []string{"Observation/o2"}},
		{"not security", search.Not{Arg: search.SecurityCond{Labels: []string{"http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"}}}, without("Observation/o2")},
		{"release patient before", search.ReleaseCond{Audience: "patient", Now: day("2021-01-05")}, without("Observation/o1")},
		{"release patient after", search.ReleaseCond{Audience: "patient", Now: day("2021-01-09")}, all},
		{"release proxy never", search.ReleaseCond{Audience: "proxy", Now: day("2030-01-01")}, without("Observation/o2")},
		// combining (search.html#combining)
		{"and", search.And{Args: []search.Expr{search.CompartmentCond{Compartments: []string{"Patient/p1"}}, search.TypeCond{Types: []string{"Observation"}}}}, []string{"Observation/o1"}},
		{"or", search.Or{Args: []search.Expr{search.IDCond{IDs: []string{"p1"}}, search.TokenCond{Param: "code", Code: sp("8462-4")}}}, []string{"Observation/o2", "Patient/p1"}},
		{"or empty", search.Or{}, nil},
		{"and empty", search.And{}, all},
		{"not exact", search.Not{Arg: search.TypeCond{Types: []string{"Observation", "Patient"}}}, []string{"Encounter/e1", "ImplementationGuide/ig1", "RiskAssessment/r1", "ValueSet/vs1"}},
		{"not not", search.Not{Arg: search.Not{Arg: search.StringCond{Param: "name", Value: "smith"}}}, []string{"Patient/p1"}},
		{"const true", search.Const{Value: true}, all},
		{"const false", search.Const{Value: false}, nil},
		{"nil", nil, all},
	}
}

// TestFerretDB runs every case on the embedded FerretDB: the coarse filter
// must select a superset, Match must leave exactly the expected keys, and
// when Compile claims exactness the server result must already be exact.
func TestFerretDB(t *testing.T) {
	c := collection(t, false)
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			coarse, got, exact := run(t, c, tc.e, false)
			want := tc.want
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(got, want) {
				t.Errorf("matched %v, want %v", got, want)
			}
			for _, k := range want {
				if !slices.Contains(coarse, k) {
					t.Errorf("coarse filter lost %s (got %v)", k, coarse)
				}
			}
			if exact && !slices.Equal(coarse, want) {
				t.Errorf("exact filter returned %v, want %v", coarse, want)
			}
		})
	}
}

// TestMatchAlone checks the Go matcher against the same table, record by record.
func TestMatchAlone(t *testing.T) {
	for _, tc := range cases() {
		var got []store.Record
		for _, r := range fixtures() {
			ok, err := Match(tc.e, r)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if ok {
				got = append(got, r)
			}
		}
		want := tc.want
		if want == nil {
			want = []string{}
		}
		if g := keysOf(got); !slices.Equal(g, want) {
			t.Errorf("%s: %v, want %v", tc.name, g, want)
		}
	}
}

// TestHistoryKeys: in history, KeyCond matches every version by {t, i}.
func TestHistoryKeys(t *testing.T) {
	c := collection(t, true)
	e := search.And{Args: []search.Expr{
		search.KeyCond{Keys: []string{"Patient/p1", "Observation/o2", "bogus"}},
		search.CompartmentCond{Compartments: []string{"Patient/p1", "Patient/p2"}},
	}}
	coarse, got, exact := run(t, c, e, true)
	want := []string{"Observation/o2", "Patient/p1"}
	if !slices.Equal(got, want) || !exact || !slices.Equal(coarse, want) {
		t.Fatalf("history keys: coarse %v matched %v exact %v", coarse, got, exact)
	}
	f, err := FilterHistory(search.KeyCond{Keys: []string{"Patient/p1", "Patient/p2"}})
	if err != nil {
		t.Fatal(err)
	}
	wantF := bson.D{{Key: "t", Value: "Patient"}, {Key: "i", Value: bson.D{{Key: "$in", Value: bson.A{"p1", "p2"}}}}}
	if fmt.Sprint(f) != fmt.Sprint(wantF) {
		t.Fatalf("FilterHistory = %v, want %v", f, wantF)
	}
}

// TestExactFilters pins the MongoDB form of representative nodes: one
// $elemMatch per value, with p first (search.html, index layout).
func TestExactFilters(t *testing.T) {
	tests := []struct {
		e    search.Expr
		want string
	}{
		{search.TokenCond{Param: "code", System: sp(loinc), Code: sp("8480-6")},
			`{"idx.tok":{"$elemMatch":{"p":"code","c":"8480-6","s":"http://loinc.org"}}}`},
		{search.TokenCond{Param: "identifier", System: sp(""), Code: sp("1")},
			`{"idx.tok":{"$elemMatch":{"p":"identifier","c":"1","s":{"$exists":false}}}}`},
		{search.StringCond{Param: "name", Value: "a.b"},
			`{"idx.str":{"$elemMatch":{"p":"name","v":{"$regex":"^a\\.b"}}}}`},
		{search.DateCond{Param: "date", Prefix: search.Ge, Lo: day("2020-01-01"), Hi: day("2020-01-02")},
			`{"$or":[{"idx.dt":{"$elemMatch":{"p":"date","hi":{"$gt":{"$date":{"$numberLong":"1577923200000"}}}}}},{"idx.dt":{"$elemMatch":{"p":"date","lo":{"$gte":{"$date":{"$numberLong":"1577836800000"}}},"hi":{"$lte":{"$date":{"$numberLong":"1577923200000"}}}}}}]}`},
		{search.MissingCond{Param: "x", Missing: true}, `{"$nor":[{"idx.has":"x"}]}`},
		{search.CompositeCond{Param: "cv", Parts: []search.Expr{
			search.TokenCond{Param: "0", Code: sp("a")}, search.TokenCond{Param: "1", Code: sp("b")}}},
			`{"idx.cmp":{"$elemMatch":{"p":"cv","$and":[{"x.tok":{"$elemMatch":{"p":"0","c":"a"}}},{"x.tok":{"$elemMatch":{"p":"1","c":"b"}}}]}}}`},
		{search.ReleaseCond{Audience: "patient", Now: day("2020-01-01")},
			`{"$or":[{"rel.p":{"$exists":false}},{"rel.p":{"$lte":{"$date":{"$numberLong":"1577836800000"}}}}]}`},
		{search.Const{}, `{"_id":{"$in":[]}}`},
	}
	for _, tc := range tests {
		f, err := Filter(tc.e)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.String(); got != tc.want {
			t.Errorf("%#v:\n got %s\nwant %s", tc.e, got, tc.want)
		}
	}
}

func TestUnsupported(t *testing.T) {
	type bogus struct{ search.Expr }
	if _, err := Filter(search.And{Args: []search.Expr{bogus{}}}); err == nil {
		t.Fatal("want error for an unknown node")
	}
	if _, err := Filter(search.ReleaseCond{Audience: "nobody"}); err == nil {
		t.Fatal("want error for an unknown audience")
	}
}

// shape is the ordered field list a leaf filter constrains, as the store
// runs it ({t: {$in: types}} first).
func shapes(d bson.D, prefix string) [][]string {
	var out [][]string
	for _, e := range d {
		switch e.Key {
		case "$and", "$or", "$nor":
			for _, sub := range e.Value.(bson.A) {
				out = append(out, shapes(sub.(bson.D), prefix)...)
			}
			continue
		}
		f := prefix + e.Key
		if v, ok := e.Value.(bson.D); ok && len(v) > 0 && v[0].Key == "$elemMatch" {
			s := []string{}
			for _, in := range v[0].Value.(bson.D) {
				if !strings.HasPrefix(in.Key, "$") {
					s = append(s, f+"."+in.Key)
				}
			}
			out = append(out, s)
			continue
		}
		out = append(out, []string{f})
	}
	return out
}

// TestIndexCoverage is the "every query shape is covered by a declared
// index" test: for one example of every node, each leaf shape (t first)
// must be a prefix of some declared index (up to three fields; the first
// two are equality fields, so their order is free). Negations, release
// and security conditions only ever narrow a selective query and ride on
// the {t} prefix; KeyCond uses _id, IDCond the store's own {t, i}.
func TestIndexCoverage(t *testing.T) {
	declared := append([][]string{{"t", "i"}, {"_id"}}, indexKeys...)
	residual := map[string]bool{"rel.p": true, "rel.x": true, "idx.sec": true}
	covered := func(s []string) bool {
		if residual[s[1]] {
			return true
		}
		if s[1] == "_id" {
			return true
		}
		for _, k := range declared {
			n := min(len(k), len(s), 3)
			if n < 2 && len(s) > 1 {
				continue
			}
			a, b := slices.Clone(k[:n]), slices.Clone(s[:n])
			if n >= 2 {
				slices.Sort(a[:2])
				slices.Sort(b[:2])
			}
			if slices.Equal(a, b) {
				return true
			}
		}
		return false
	}
	seen := map[string]bool{}
	for _, tc := range cases() {
		f, err := Filter(tc.e)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range shapes(f, "") {
			if s[0] == "_id" && tc.name == "const false" {
				continue
			}
			s = append([]string{"t"}, s...)
			if s[1] == "t" {
				s = s[1:]
			}
			key := strings.Join(s, ",")
			if seen[key] {
				continue
			}
			seen[key] = true
			if len(s) == 1 {
				continue // {t} alone: prefix of every index
			}
			if !covered(s) {
				t.Errorf("%s: shape %v has no declared index", tc.name, s)
			}
		}
	}
	if len(seen) < 20 {
		t.Fatalf("only %d shapes walked", len(seen))
	}
}

// TestIndexesCreate creates every declared index on FerretDB one at a
// time, twice (idempotent), and checks the names are unique.
func TestIndexesCreate(t *testing.T) {
	ctx := context.Background()
	c := testDB.Collection("ix")
	names := map[string]bool{}
	for round := 0; round < 2; round++ {
		for _, m := range Indexes() {
			if _, err := c.Indexes().CreateOne(ctx, m); err != nil {
				t.Fatalf("create %v: %v", m.Keys, err)
			}
		}
	}
	for _, m := range Indexes() {
		var o options.IndexOptions
		for _, set := range m.Options.List() {
			_ = set(&o)
		}
		if o.Name == nil || names[*o.Name] {
			t.Fatalf("index name missing or repeated: %v", m.Keys)
		}
		names[*o.Name] = true
	}
}

// TestSortFields: _id -> i, _lastUpdated -> lu, others idx.srt (search.html#sort),
// and the sort runs on FerretDB.
func TestSortFields(t *testing.T) {
	got := SortFields([]search.SortKey{{Param: "_id"}, {Param: "_lastUpdated", Desc: true}, {Param: "date", Desc: true}})
	want := bson.D{{Key: "i", Value: 1}, {Key: "lu", Value: -1}, {Key: "idx.srt.date", Value: -1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("SortFields = %v", got)
	}
	c := collection(t, false)
	f, _, _ := Compile(search.TypeCond{Types: []string{"Observation"}}, Options{Dialect: FerretDB})
	sortD := append(SortFields([]search.SortKey{{Param: "date", Desc: true}}), bson.E{Key: "t", Value: 1}, bson.E{Key: "i", Value: 1})
	cur, err := c.Find(context.Background(), f, options.Find().SetSort(sortD))
	if err != nil {
		t.Fatal(err)
	}
	var docs []testDoc
	if err := cur.All(context.Background(), &docs); err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].I != "o2" || docs[1].I != "o1" {
		t.Fatalf("sort by -date: %+v", docs)
	}
}

func TestURIAncestors(t *testing.T) {
	got := uriAncestors("http://a.org/b/c")
	want := []string{"http://a.org", "http://a.org/", "http://a.org/b", "http://a.org/b/", "http://a.org/b/c"}
	if !slices.Equal(got, want) {
		t.Fatalf("uriAncestors = %v", got)
	}
}
