package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/embedded"
	"github.com/fhirgate/fhirgate/store/mongo"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const testBase = "https://fhir.example/r4"

var (
	fixedNow = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	srvURI   string
	sharedMu sync.Mutex
	shared   *mongo.Store
)

func TestMain(m *testing.M) {
	flag.Parse()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "engine")
	if err != nil {
		panic(err)
	}
	srv, err := embedded.Start(ctx, dir, "", nil)
	if err != nil {
		panic(err)
	}
	srvURI = srv.URI
	code := m.Run()
	if shared != nil {
		_ = shared.Close(ctx)
	}
	srv.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// openStore opens a store on a fresh database.
func openStore(t testing.TB, db string) *mongo.Store {
	t.Helper()
	st, err := mongo.Open(context.Background(), srvURI, db, mongo.Options{RecoverAll: true})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st
}

// record builds the stored version of a resource JSON: meta.versionId and
// meta.lastUpdated set, search values extracted.
func record(t testing.TB, raw []byte, lu time.Time) store.Record {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	typ, _ := m["resourceType"].(string)
	id, _ := m["id"].(string)
	ms, err := members(raw)
	if err != nil {
		t.Fatal(err)
	}
	meta := member{"meta", json.RawMessage(fmt.Sprintf(`{"versionId":"1","lastUpdated":%q}`, lu.Format(time.RFC3339Nano)))}
	ms = slices.DeleteFunc(ms, func(x member) bool { return x.key == "meta" })
	at := 0
	for at < len(ms) && (ms[at].key == "resourceType" || ms[at].key == "id") {
		at++
	}
	ms = slices.Insert(ms, at, meta)
	out, err := writeObject(ms)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, out); err != nil {
		t.Fatal(err)
	}
	m["meta"] = map[string]any{"versionId": "1", "lastUpdated": lu.Format(time.RFC3339Nano)}
	idx, err := search.Default().WithBase(testBase).Extract(typ, m)
	if err != nil {
		t.Fatalf("extract %s/%s: %v", typ, id, err)
	}
	return store.Record{Type: typ, ID: id, VersionID: 1, LastUpdated: lu, Raw: compact.Bytes(), Index: idx}
}

func load(t testing.TB, st store.Store, recs []store.Record) {
	t.Helper()
	ops := make([]store.Op, len(recs))
	for i, r := range recs {
		ops[i] = store.Op{Kind: store.OpCreate, Record: r}
	}
	if err := st.Transact(context.Background(), ops); err != nil {
		t.Fatalf("load: %v", err)
	}
}

// fixtures are the vendored official examples (testdata/examples) plus
// synthetic resources: patient "pg" with 25 heart-rate Observations for
// paging, and a Provenance targeting Patient/example.
func fixtures(t testing.TB) []store.Record {
	files, err := filepath.Glob("testdata/examples/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("examples: %v", err)
	}
	sort.Strings(files)
	lu := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []store.Record
	for i, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, record(t, raw, lu.Add(time.Duration(i)*time.Minute)))
	}
	lu = time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)
	recs = append(recs, record(t, []byte(`{"resourceType":"Patient","id":"pg","gender":"female","name":[{"family":"Paging","given":["Pia"]}],"birthDate":"2001-02-03"}`), lu))
	for i := 0; i < 25; i++ {
		raw := fmt.Sprintf(`{"resourceType":"Observation","id":"hr-%02d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},`+
			`"subject":{"reference":"Patient/pg"},"effectiveDateTime":"2020-01-%02dT08:00:00Z","valueQuantity":{"value":%d,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}}`,
			i, i+1, 60+i)
		recs = append(recs, record(t, []byte(raw), lu.Add(time.Duration(i+1)*time.Minute)))
	}
	recs = append(recs, record(t, []byte(`{"resourceType":"Provenance","id":"prov-1","target":[{"reference":"Patient/example"}],"recorded":"2024-01-02T00:00:00Z","agent":[{"who":{"reference":"Practitioner/example"}}]}`), lu.Add(time.Hour)))
	return recs
}

// sharedStore is one database holding the fixtures, for read-only tests.
func sharedStore(t testing.TB) *mongo.Store {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil {
		shared = openStore(t, "shared")
		load(t, shared, fixtures(t))
	}
	return shared
}

func newEngine(t testing.TB) *Engine {
	return &Engine{Store: sharedStore(t), Registry: search.Default().WithBase(testBase), Base: testBase, Now: func() time.Time { return fixedNow }}
}

func keys(recs []store.Record) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, r.Key())
	}
	return out
}

func sorted(ss []string) []string {
	ss = slices.Clone(ss)
	sort.Strings(ss)
	return ss
}

func query(t *testing.T, s string) url.Values {
	t.Helper()
	q, err := url.ParseQuery(s)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// search runs a type-level search and returns the match keys, sorted.
func (e *Engine) keysOf(t *testing.T, typ, q string) []string {
	t.Helper()
	res, err := e.Search(context.Background(), Request{Types: []string{typ}, Params: query(t, q+"&_count=1000"), SelfPath: typ})
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, q, err)
	}
	return sorted(keys(res.Matches))
}

func hrs(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("Observation/hr-%02d", i))
	}
	return out
}

// TestParameterTypes runs each parameter type and modifier against the
// official examples (search.html#ptypes, #modifiers, #prefix).
func TestParameterTypes(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		typ, q string
		want   []string
	}{
		// string (search.html#string)
		{"Patient", "name=peter", []string{"Patient/example"}},
		{"Patient", "name=PETER", []string{"Patient/example"}},
		{"Patient", "family=chalm", []string{"Patient/example"}},
		{"Patient", "name:exact=Peter", []string{"Patient/example"}},
		{"Patient", "name:exact=peter", nil},
		{"Patient", "name:contains=HALM", []string{"Patient/example"}},
		{"Patient", "name=halm", nil},
		// token (search.html#token)
		{"Patient", "identifier=urn:oid:1.2.36.146.595.217.0.1|12345", []string{"Patient/example"}},
		{"Patient", "identifier=12345", []string{"Patient/example"}},
		{"Patient", "identifier=|12345", nil},
		{"Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345", []string{"Patient/example"}},
		{"Patient", "gender=female", []string{"Patient/pg"}},
		{"Patient", "gender:not=male", []string{"Patient/pg"}},
		{"Observation", "code=http://loinc.org|85354-9", []string{"Observation/blood-pressure"}},
		{"Observation", "code=http://snomed.info/sct|85354-9", nil},
		{"Observation", "code:text=blood%20pressure", []string{"Observation/blood-pressure"}},
		{"Observation", "code=http://loinc.org|85354-9,http://loinc.org|15074-8", []string{"Observation/blood-pressure", "Observation/f001"}},
		// reference (search.html#reference)
		{"Observation", "subject=Patient/f001", []string{"Observation/f001"}},
		{"Observation", "subject:Patient=f001", []string{"Observation/f001"}},
		{"Observation", "subject=" + url.QueryEscape(testBase+"/Patient/f001"), []string{"Observation/f001"}},
		{"Patient", "organization=1", []string{"Patient/example"}},
		{"Encounter", "subject=Patient/example", []string{"Encounter/example"}},
		{"Patient", "general-practitioner:missing=false", nil},
		{"Patient", "organization:missing=true", []string{"Patient/pg"}},
		// date (search.html#date, #prefix)
		{"Patient", "birthdate=1974-12-25", []string{"Patient/example"}},
		{"Patient", "birthdate=1974", []string{"Patient/example"}},
		{"Patient", "birthdate=gt1950&birthdate=lt1975", []string{"Patient/example", "Patient/f201"}},
		{"Observation", "date=2012-09-17", []string{"Observation/blood-pressure"}},
		{"Observation", "subject=Patient/pg&date=ge2020-01-20", hrs(19, 24)},
		{"Observation", "subject=Patient/pg&date=lt2020-01-03", hrs(0, 1)},
		{"Observation", "subject=Patient/pg&date=sa2020-01-24", hrs(24, 24)},
		{"Observation", "subject=Patient/pg&date=eb2020-01-02", hrs(0, 0)},
		{"Observation", "subject=Patient/pg&date=ne2020-01", nil},
		{"Patient", "_lastUpdated=ge2024-02-01", []string{"Patient/pg"}},
		// number (search.html#number)
		{"RiskAssessment", "probability=0.02", []string{"RiskAssessment/cardiac"}},
		{"RiskAssessment", "probability=lt0.01", []string{"RiskAssessment/genetic"}},
		{"RiskAssessment", "probability=ap0.0002", []string{"RiskAssessment/genetic"}},
		// quantity (search.html#quantity)
		{"Observation", "value-quantity=6.3|http://unitsofmeasure.org|mmol/L", []string{"Observation/f001"}},
		{"Observation", "value-quantity=6.3||mmol/l", []string{"Observation/f001"}},
		{"Observation", "value-quantity=gt83|http://unitsofmeasure.org|/min", hrs(24, 24)},
		{"Observation", "value-quantity=le61||/min", hrs(0, 1)},
		// composite (search.html#composite): the parts hold in one component
		{"Observation", "component-code-value-quantity=http://loinc.org|8480-6$gt100", []string{"Observation/blood-pressure"}},
		{"Observation", "component-code-value-quantity=http://loinc.org|8480-6$lt100", nil},
		{"Observation", "component-code-value-quantity=http://loinc.org|8462-4$lt100", []string{"Observation/blood-pressure"}},
		{"Observation", "code-value-quantity=http://loinc.org|8867-4$84", hrs(24, 24)},
		// uri (search.html#uri)
		{"ValueSet", "url=http://hl7.org/fhir/ValueSet/example-expansion", []string{"ValueSet/example-expansion"}},
		{"ValueSet", "url=http://hl7.org/fhir/ValueSet/example", nil},
		{"ValueSet", "url:below=http://hl7.org/fhir/ValueSet/", []string{"ValueSet/example-expansion"}},
		{"ValueSet", "url:above=http://hl7.org/fhir/ValueSet/example-expansion/_history/3", []string{"ValueSet/example-expansion"}},
		// :missing, _id
		{"Patient", "birthdate:missing=true", nil},
		{"Patient", "_id=example,pg", []string{"Patient/example", "Patient/pg"}},
		{"Observation", "status:missing=false&code=http://loinc.org|15074-8", []string{"Observation/f001"}},
	}
	for _, tc := range tests {
		t.Run(tc.typ+"?"+tc.q, func(t *testing.T) {
			got := e.keysOf(t, tc.typ, tc.q)
			want := tc.want
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(got, sorted(want)) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

// TestChainsAndHas: search.html#chaining and #has, resolved with inner searches.
func TestChainsAndHas(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		typ, q string
		want   []string
	}{
		{"Observation", "subject:Patient.name=peter", []string{"Observation/blood-pressure"}},
		{"Observation", "patient.birthdate=1974-12-25", []string{"Observation/blood-pressure"}},
		{"Observation", "patient.name=nobody", nil},
		{"Encounter", "patient.organization.name=gastro", []string{"Encounter/example"}},
		{"Encounter", "patient.organization.name=other", nil},
		{"Observation", "subject:Patient._id=f001", []string{"Observation/f001"}},
		{"Patient", "_has:Observation:patient:code=http://loinc.org|85354-9", []string{"Patient/example"}},
		{"Patient", "_has:Observation:patient:code=http://loinc.org|8867-4&gender=female", []string{"Patient/pg"}},
		{"Patient", "_has:Observation:patient:code=http://loinc.org|8867-4&gender=male", nil},
		{"Patient", "_has:Observation:subject:_has:Provenance:target:agent=Practitioner/example", nil},
		{"Patient", "_has:Provenance:target:agent=Practitioner/example", []string{"Patient/example"}},
	}
	for _, tc := range tests {
		t.Run(tc.typ+"?"+tc.q, func(t *testing.T) {
			got := e.keysOf(t, tc.typ, tc.q)
			want := tc.want
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(got, sorted(want)) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
	// An ambiguous chain is a 400 naming the parameter.
	_, err := e.Search(context.Background(), Request{Types: []string{"Observation"}, Params: query(t, "subject.name=peter")})
	assertInvalid(t, err, "subject.name", "invalid")
	// Too many inner matches: 400 too-costly.
	e2 := *e
	e2.MaxInner = 10
	_, err = e2.Search(context.Background(), Request{Types: []string{"Patient"}, Params: query(t, "_has:Observation:patient:code=http://loinc.org|8867-4")})
	assertInvalid(t, err, "_has:Observation:patient:code", "too-costly")
}

func assertInvalid(t *testing.T, err error, expr, code string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got none")
	}
	fe := fhir.AsError(err) // what the client gets (store errors know their kind)
	if fe.Kind != fhir.KindInvalid || fe.Kind.Status() != 400 {
		t.Fatalf("kind %v, want invalid", fe.Kind)
	}
	if len(fe.Issues) == 0 || fe.Issues[0].Code != code || expr != "" && !slices.Contains(fe.Issues[0].Expression, expr) || expr == "" && len(fe.Issues[0].Expression) != 0 {
		t.Fatalf("issues %+v, want code %s at %s", fe.Issues, code, expr)
	}
}

// TestConstrain: the access constraint is ANDed into every store query:
// main, chains, _has, includes and revincludes.
func TestConstrain(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	// Only Patient/pg's compartment is visible.
	onlyPG := func(typ string) search.Expr {
		return search.CompartmentCond{Compartments: []string{"Patient/pg"}}
	}
	run := func(typ, q string) *Result {
		t.Helper()
		res, err := e.Search(ctx, Request{Types: []string{typ}, Params: query(t, q), Constrain: onlyPG})
		if err != nil {
			t.Fatalf("%s?%s: %v", typ, q, err)
		}
		return res
	}
	if got := keys(run("Patient", "").Matches); !slices.Equal(got, []string{"Patient/pg"}) {
		t.Fatalf("main: %v", got)
	}
	if got := keys(run("Observation", "subject:Patient.name=peter").Matches); len(got) != 0 {
		t.Fatalf("chain leaked: %v", got)
	}
	if got := keys(run("Patient", "_has:Observation:patient:code=http://loinc.org|85354-9").Matches); len(got) != 0 {
		t.Fatalf("_has leaked: %v", got)
	}
	// Includes: the Organization of Patient/example is outside every compartment.
	hidePatients := func(typ string) search.Expr {
		if typ == "Patient" {
			return search.Const{Value: false}
		}
		return nil
	}
	res, err := e.Search(ctx, Request{Types: []string{"Observation"}, Params: query(t, "_id=blood-pressure&_include=Observation:subject"), Constrain: hidePatients})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != 1 || len(res.Included) != 0 {
		t.Fatalf("include leaked: %v %v", keys(res.Matches), keys(res.Included))
	}
	hideProvenance := func(typ string) search.Expr {
		if typ == "Provenance" {
			return search.Const{Value: false}
		}
		return nil
	}
	res, err = e.Search(ctx, Request{Types: []string{"Patient"}, Params: query(t, "_id=example&_revinclude=Provenance:target"), Constrain: hideProvenance})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != 1 || len(res.Included) != 0 {
		t.Fatalf("revinclude leaked: %v", keys(res.Included))
	}
	// A system search with different constraints per type (TypeCond groups).
	perType := func(typ string) search.Expr {
		switch typ {
		case "Patient":
			return search.IDCond{IDs: []string{"example"}}
		case "Observation":
			return search.Const{Value: false}
		}
		return nil
	}
	res, err = e.Search(ctx, Request{Params: query(t, "_type=Patient,Observation,Organization&_count=100"), Constrain: perType})
	if err != nil {
		t.Fatal(err)
	}
	if got := sorted(keys(res.Matches)); !slices.Equal(got, []string{"Organization/1", "Organization/f001", "Patient/example"}) {
		t.Fatalf("system search: %v", got)
	}
	// Several types from the caller (a _type list).
	res, err = e.Search(ctx, Request{Types: []string{"Patient", "Organization"}, Params: query(t, "_id=example,1"), Constrain: perType})
	if err != nil {
		t.Fatal(err)
	}
	if got := sorted(keys(res.Matches)); !slices.Equal(got, []string{"Organization/1", "Patient/example"}) {
		t.Fatalf("two types: %v", got)
	}
	res, err = e.Search(ctx, Request{Params: query(t, "_id=example,f001&_count=100"), Constrain: perType})
	if err != nil {
		t.Fatal(err)
	}
	if got := sorted(keys(res.Matches)); !slices.Equal(got, []string{"Condition/example", "Encounter/example", "Organization/f001", "Patient/example", "Practitioner/example"}) {
		t.Fatalf("system search without _type: %v", got)
	}
}

// TestIncludes: search.html#include.
func TestIncludes(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	tests := []struct {
		typ, q        string
		matches, incl []string
	}{
		{"Observation", "_id=blood-pressure&_include=Observation:subject", []string{"Observation/blood-pressure"}, []string{"Patient/example"}},
		{"Observation", "_id=blood-pressure&_include=Observation:subject:Group", []string{"Observation/blood-pressure"}, nil},
		{"Observation", "_id=blood-pressure&_include=Observation:subject&_include:iterate=Patient:organization",
			[]string{"Observation/blood-pressure"}, []string{"Organization/1", "Patient/example"}},
		{"Observation", "_id=blood-pressure&_include=Observation:subject&_include=Patient:organization",
			[]string{"Observation/blood-pressure"}, []string{"Patient/example"}},
		{"Observation", "_id=f001&_include=*", []string{"Observation/f001"}, []string{"Patient/f001", "Practitioner/f005"}},
		{"Patient", "_id=example&_revinclude=Provenance:target", []string{"Patient/example"}, []string{"Provenance/prov-1"}},
		{"Patient", "_id=example&_revinclude=Provenance:*", []string{"Patient/example"}, []string{"Provenance/prov-1"}},
		{"Patient", "_id=example&_revinclude=Observation:subject&_revinclude:iterate=Provenance:target",
			[]string{"Patient/example"}, []string{"Observation/blood-pressure", "Provenance/prov-1"}},
		// An included resource that is also a match appears once, as a match.
		{"Patient", "_id=f001&_revinclude=Observation:subject&_include:iterate=Observation:subject",
			[]string{"Patient/f001"}, []string{"Observation/f001"}},
	}
	for _, tc := range tests {
		t.Run(tc.typ+"?"+tc.q, func(t *testing.T) {
			res, err := e.Search(ctx, Request{Types: []string{tc.typ}, Params: query(t, tc.q)})
			if err != nil {
				t.Fatal(err)
			}
			if got := sorted(keys(res.Matches)); !slices.Equal(got, sorted(tc.matches)) {
				t.Fatalf("matches %v, want %v", got, tc.matches)
			}
			want := tc.incl
			if want == nil {
				want = []string{}
			}
			if got := sorted(keys(res.Included)); !slices.Equal(got, sorted(want)) {
				t.Fatalf("included %v, want %v", got, want)
			}
		})
	}
	// The include budget truncates with a warning.
	e2 := *e
	e2.MaxInclude = 1
	res, err := e2.Search(ctx, Request{Types: []string{"Observation"}, Params: query(t, "_id=f001&_include=*")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Included) != 1 || len(res.Warnings) != 1 || res.Warnings[0].Code != "too-costly" {
		t.Fatalf("budget: included %v warnings %v", keys(res.Included), res.Warnings)
	}
}

// TestPaging walks the next links (search.html#paging) in both sort orders.
func TestPaging(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	for _, sortKey := range []string{"date", "-date", "_id"} {
		t.Run(sortKey, func(t *testing.T) {
			params := query(t, "subject=Patient/pg&_count=10&_total=accurate&_sort="+sortKey)
			var all []string
			var sizes []int
			for page := 0; page < 10; page++ {
				res, err := e.Search(ctx, Request{Types: []string{"Observation"}, Params: params, SelfPath: "Observation"})
				if err != nil {
					t.Fatal(err)
				}
				if res.Total != 25 {
					t.Fatalf("total %d, want 25", res.Total)
				}
				all = append(all, keys(res.Matches)...)
				sizes = append(sizes, len(res.Matches))
				if res.Next == "" {
					break
				}
				// Follow the next link as a client would.
				b, err := e.Bundle(Request{Types: []string{"Observation"}, Params: params, SelfPath: "Observation"}, res)
				if err != nil {
					t.Fatal(err)
				}
				next := linkOf(t, b, "next")
				u, err := url.Parse(next)
				if err != nil {
					t.Fatal(err)
				}
				params = u.Query()
			}
			want := hrs(0, 24)
			if sortKey == "-date" {
				slices.Reverse(want)
			}
			if !slices.Equal(all, want) || !slices.Equal(sizes, []int{10, 10, 5}) {
				t.Fatalf("pages %v: %v", sizes, all)
			}
		})
	}
	// By default only the first page carries the total; a single page
	// counts its matches without a second query.
	params := query(t, "subject=Patient/pg&_count=10")
	res, err := e.Search(ctx, Request{Types: []string{"Observation"}, Params: params})
	if err != nil || res.Total != 25 || res.Next == "" {
		t.Fatalf("first page: total %d next %q err %v", res.Total, res.Next, err)
	}
	params.Set("_cursor", res.Next)
	res, err = e.Search(ctx, Request{Types: []string{"Observation"}, Params: params})
	if err != nil || res.Total != -1 {
		t.Fatalf("second page: total %d err %v", res.Total, err)
	}
	res, err = e.Search(ctx, Request{Types: []string{"Observation"}, Params: query(t, "subject=Patient/pg&_count=100")})
	if err != nil || res.Total != 25 || res.Next != "" {
		t.Fatalf("single page: total %d next %q err %v", res.Total, res.Next, err)
	}
	// A cursor the store did not issue is a 400 at _cursor.
	_, err = e.Search(ctx, Request{Types: []string{"Observation"}, Params: query(t, "_cursor=bogus")})
	assertInvalid(t, err, "_cursor", "invalid")
}

func linkOf(t *testing.T, bundle []byte, rel string) string {
	t.Helper()
	var b struct {
		Link []bundleLink `json:"link"`
	}
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

type decodedBundle struct {
	Type  string `json:"type"`
	Total *int64 `json:"total"`
	Entry []struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

func bundleOf(t *testing.T, e *Engine, typ, q string) decodedBundle {
	t.Helper()
	req := Request{Types: []string{typ}, Params: query(t, q), SelfPath: typ}
	res, err := e.Search(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.Bundle(req, res)
	if err != nil {
		t.Fatal(err)
	}
	var b decodedBundle
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	return b
}

func subsetted(r map[string]any) bool {
	meta, _ := r["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	for _, tg := range tags {
		if m, _ := tg.(map[string]any); m["code"] == "SUBSETTED" {
			return true
		}
	}
	return false
}

// TestResultParameters: _total, _summary, _elements (search.html#total, #summary, #elements).
func TestResultParameters(t *testing.T) {
	e := newEngine(t)
	b := bundleOf(t, e, "Observation", "subject=Patient/pg&_total=none&_count=2")
	if b.Total != nil || len(b.Entry) != 2 || b.Type != "searchset" {
		t.Fatalf("_total=none: total %v, %d entries", b.Total, len(b.Entry))
	}
	b = bundleOf(t, e, "Observation", "subject=Patient/pg&_total=accurate&_count=2")
	if b.Total == nil || *b.Total != 25 {
		t.Fatalf("_total=accurate: %v", b.Total)
	}
	b = bundleOf(t, e, "Observation", "subject=Patient/pg&_summary=count")
	if b.Total == nil || *b.Total != 25 || len(b.Entry) != 0 {
		t.Fatalf("_summary=count: total %v, %d entries", b.Total, len(b.Entry))
	}
	b = bundleOf(t, e, "Observation", "subject=Patient/pg&_count=0")
	if b.Total == nil || *b.Total != 25 || len(b.Entry) != 0 {
		t.Fatalf("_count=0: total %v, %d entries", b.Total, len(b.Entry))
	}
	// _summary=true keeps the summary elements of Patient (not contact, not text).
	b = bundleOf(t, e, "Patient", "_id=example&_summary=true")
	r := b.Entry[0].Resource
	for _, k := range []string{"resourceType", "id", "meta", "identifier", "name", "gender", "birthDate", "_birthDate", "managingOrganization", "deceasedBoolean"} {
		if _, ok := r[k]; !ok {
			t.Errorf("_summary=true lost %s", k)
		}
	}
	for _, k := range []string{"text", "contact"} {
		if _, ok := r[k]; ok {
			t.Errorf("_summary=true kept %s", k)
		}
	}
	if !subsetted(r) {
		t.Error("_summary=true: no SUBSETTED tag")
	}
	b = bundleOf(t, e, "Patient", "_id=example&_summary=data")
	if _, ok := b.Entry[0].Resource["text"]; ok || b.Entry[0].Resource["contact"] == nil || !subsetted(b.Entry[0].Resource) {
		t.Errorf("_summary=data: %v", b.Entry[0].Resource)
	}
	b = bundleOf(t, e, "Patient", "_id=example&_summary=text")
	if _, ok := b.Entry[0].Resource["text"]; !ok || b.Entry[0].Resource["name"] != nil {
		t.Errorf("_summary=text: %v", b.Entry[0].Resource)
	}
	b = bundleOf(t, e, "Observation", "_id=blood-pressure&_elements=subject,value")
	r = b.Entry[0].Resource
	var got []string
	for k := range r {
		got = append(got, k)
	}
	// status and code are mandatory (min 1) and always returned.
	if want := []string{"code", "id", "meta", "resourceType", "status", "subject"}; !slices.Equal(sorted(got), want) {
		t.Errorf("_elements: %v, want %v", sorted(got), want)
	}
	if !subsetted(r) {
		t.Error("_elements: no SUBSETTED tag")
	}
	b = bundleOf(t, e, "Observation", "_id=f001&_elements=value")
	if _, ok := b.Entry[0].Resource["valueQuantity"]; !ok {
		t.Errorf("_elements=value lost valueQuantity: %v", b.Entry[0].Resource)
	}
	// Unchanged resources are served byte for byte.
	b = bundleOf(t, e, "Patient", "_id=pg")
	if subsetted(b.Entry[0].Resource) || b.Entry[0].FullURL != testBase+"/Patient/pg" || b.Entry[0].Search.Mode != "match" {
		t.Errorf("plain entry: %+v", b.Entry[0])
	}
}

// TestStrict: unknown parameters are a warning entry, or a 400 with
// handling=strict (search.html#errors).
func TestStrict(t *testing.T) {
	e := newEngine(t)
	b := bundleOf(t, e, "Patient", "foo=bar&_id=pg")
	if len(b.Entry) != 2 || b.Entry[1].Search.Mode != "outcome" || b.Entry[1].Resource["resourceType"] != "OperationOutcome" {
		t.Fatalf("lenient: %+v", b.Entry)
	}
	_, err := e.Search(context.Background(), Request{Types: []string{"Patient"}, Params: query(t, "foo=bar"), Strict: true})
	assertInvalid(t, err, "foo", "not-supported")
	_, err = e.Search(context.Background(), Request{Types: []string{"Patient"}, Params: query(t, "birthdate=1974-99")})
	assertInvalid(t, err, "birthdate", "invalid")
}

// TestCompartment: compartmentdefinition.html#search.
func TestCompartment(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	res, err := e.Search(ctx, Request{Types: []string{"Observation"}, Compartment: "Patient/pg", Params: query(t, "_count=100&date=lt2020-01-03")})
	if err != nil {
		t.Fatal(err)
	}
	if got := sorted(keys(res.Matches)); !slices.Equal(got, hrs(0, 1)) {
		t.Fatalf("Patient/pg/Observation: %v", got)
	}
	res, err = e.Search(ctx, Request{Compartment: "Patient/example", Params: query(t, "_count=100")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Condition/example", "Encounter/example", "Observation/blood-pressure", "Patient/example", "Provenance/prov-1"}
	if got := sorted(keys(res.Matches)); !slices.Equal(got, want) {
		t.Fatalf("Patient/example/*: %v, want %v", got, want)
	}
	_, err = e.Search(ctx, Request{Types: []string{"Organization"}, Compartment: "Patient/pg", Params: url.Values{}})
	assertInvalid(t, err, "", "invalid")
}

// TestMatch: the search of conditional operations (http.html#cond-update).
func TestMatch(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	recs, err := e.Match(ctx, "Patient", query(t, "identifier=urn:oid:1.2.36.146.595.217.0.1|12345"), nil, 2)
	if err != nil || !slices.Equal(keys(recs), []string{"Patient/example"}) {
		t.Fatalf("match: %v %v", keys(recs), err)
	}
	recs, err = e.Match(ctx, "Observation", query(t, "subject=Patient/pg"), nil, 2)
	if err != nil || len(recs) != 2 {
		t.Fatalf("limit: %v %v", keys(recs), err)
	}
	recs, err = e.Match(ctx, "Observation", query(t, "subject=Patient/pg"), func(string) search.Expr { return search.Const{} }, 2)
	if err != nil || len(recs) != 0 {
		t.Fatalf("constrained: %v %v", keys(recs), err)
	}
	_, err = e.Match(ctx, "Patient", query(t, "nope=1"), nil, 2)
	assertInvalid(t, err, "nope", "not-supported")
	_, err = e.Match(ctx, "Patient", query(t, "_count=1"), nil, 2)
	assertInvalid(t, err, "", "invalid")
}

var (
	maskID     = regexp.MustCompile(`"id":"[0-9a-f]{32}"`)
	maskUUID   = regexp.MustCompile(`urn:uuid:[0-9a-f-]{36}`)
	maskCursor = regexp.MustCompile(`_cursor=[^&"]+`)
)

// TestGolden compares searchset Bundles of realistic queries with
// testdata/golden (go test -update rewrites them).
func TestGolden(t *testing.T) {
	e := newEngine(t)
	tests := []struct{ name, typ, q string }{
		{"patient-name-revinclude", "Patient", "name=peter&_revinclude=Provenance:target"},
		{"observations-page", "Observation", "patient=Patient/pg&_sort=-date&_count=3&_elements=code,value"},
		{"bp-include-summary", "Observation", "code=http://loinc.org|85354-9&_include=Observation:subject&_summary=true"},
		{"count-with-warning", "Patient", "gender=male&foo=bar&_summary=count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := Request{Types: []string{tc.typ}, Params: query(t, tc.q), SelfPath: tc.typ}
			res, err := e.Search(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := e.Bundle(req, res)
			if err != nil {
				t.Fatal(err)
			}
			raw = maskID.ReplaceAll(raw, []byte(`"id":"<bundle-id>"`))
			raw = maskUUID.ReplaceAll(raw, []byte(`urn:uuid:<uuid>`))
			raw = maskCursor.ReplaceAll(raw, []byte(`_cursor=<cursor>`))
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, raw, "", "  "); err != nil {
				t.Fatal(err)
			}
			pretty.WriteByte('\n')
			path := filepath.Join("testdata", "golden", tc.name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(pretty.Bytes(), want) {
				t.Fatalf("bundle differs from %s:\n%s", path, diffHint(pretty.String(), string(want)))
			}
		})
	}
}

func diffHint(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < min(len(g), len(w)); i++ {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d:\n got %s\nwant %s", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d lines", len(g), len(w))
}

// TestSubset unit-tests the member-order-preserving subset.
func TestSubset(t *testing.T) {
	raw := []byte(`{"resourceType":"Patient","id":"x","text":{"div":"<div>a &amp; b</div>"},"gender":"male","_gender":{"extension":[]},"contact":[{}]}`)
	got, err := subset(raw, "Patient", "", []string{"gender"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"resourceType":"Patient","id":"x","meta":{"tag":[` + string(subsettedTag) + `]},"gender":"male","_gender":{"extension":[]}}`
	if string(got) != want {
		t.Fatalf("subset:\n got %s\nwant %s", got, want)
	}
	same, err := subset(raw, "Patient", "false", nil)
	if err != nil || !bytes.Equal(same, raw) {
		t.Fatalf("no subset changed the resource: %s %v", same, err)
	}
}

// TestTotalLimit: by default and with _total=estimate the first page's
// total is counted up to TotalLimit matches and left out above it (R4
// Bundle.total is 0..1); _total=accurate and _summary=count count
// exactly (search.html#total). On store/sqlite, which honours the limit.
func TestTotalLimit(t *testing.T) {
	st, err := sqlite.Open(context.Background(), ":memory:", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	load(t, st, fixtures(t))
	e := &Engine{Store: st, Registry: search.Default().WithBase(testBase), Base: testBase, Now: func() time.Time { return fixedNow }}
	total := func(q string) *int64 {
		t.Helper()
		return bundleOf(t, e, "Observation", q).Total
	}
	for _, tc := range []struct {
		limit int64
		q     string
		want  int64 // -1: no total
	}{
		{0, "subject=Patient/pg&_count=2", 25},   // under DefaultTotalLimit
		{10, "subject=Patient/pg&_count=2", -1},  // over the limit: left out
		{10, "subject=Patient/pg&_count=30", 25}, // the page holds every match
		{10, "subject=Patient/pg&_count=2&_total=estimate", -1},
		{10, "subject=Patient/pg&_count=2&_total=accurate", 25},
		{10, "subject=Patient/pg&_summary=count", 25},
		{25, "subject=Patient/pg&_count=2", 25}, // exactly the limit
		{24, "subject=Patient/pg&_count=2", -1},
		{-1, "subject=Patient/pg&_count=2", 25}, // -1: always exact
	} {
		e.TotalLimit = tc.limit
		got := total(tc.q)
		switch {
		case tc.want < 0 && got != nil:
			t.Errorf("limit %d, %s: total %d, want none", tc.limit, tc.q, *got)
		case tc.want >= 0 && (got == nil || *got != tc.want):
			t.Errorf("limit %d, %s: total %v, want %d", tc.limit, tc.q, got, tc.want)
		}
	}
}
