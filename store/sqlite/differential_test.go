package sqlite

// The differential test of the SQL compiler (search.html #string, #token,
// #reference, #date, #number, #quantity, #uri, #composite, #missing,
// #prefix with every prefix, _id, _lastUpdated, and the access-control
// nodes): for records written to a real store and thousands of conditions
// of every kind, the store returns exactly the records search.Matcher (the
// one in-memory evaluation of the AST, fhir/search/match.go) accepts; and
// every query shape of the suite is read through indexes (EXPLAIN QUERY
// PLAN has no full SCAN of a table).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/gen"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	dc "github.com/fhirgate/fhirgate/store/storetest/conds"
)

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

// genRecords extracts the search values of a generated data set.
func genRecords(t testing.TB, patients int) []store.Record {
	t.Helper()
	reg := search.Default()
	lu := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	var out []store.Record
	for i, r := range gen.Generate(7, patients, gen.Options{}) {
		dec := json.NewDecoder(bytes.NewReader(r.JSON))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		idx, err := reg.Extract(r.Type, m)
		if err != nil {
			t.Fatalf("extract %s: %v", r.Ref(), err)
		}
		rec := store.Record{Type: r.Type, ID: r.ID, VersionID: 1, LastUpdated: lu.Add(time.Duration(i) * 1500 * time.Microsecond),
			Raw: r.JSON, Index: idx}
		if i%3 == 1 {
			rec.Release.Patient = rec.LastUpdated.Add(time.Hour)
		}
		out = append(out, rec)
	}
	return out
}

func subjectOf(r *store.Record) search.Subject {
	return search.Subject{Type: r.Type, ID: r.ID, LastUpdated: r.LastUpdated, Index: &r.Index,
		PatientVisible: r.Release.Patient, ProxyVisible: r.Release.Proxy}
}

// loadRecords writes recs (one version each, duplicates of a key
// dropped) and returns what was written.
func loadRecords(t testing.TB, s *Store, recs []store.Record) []store.Record {
	t.Helper()
	seen := map[string]bool{}
	var out []store.Record
	var ops []store.Op
	for _, r := range recs {
		if seen[r.Key()] || r.ID == "" {
			continue
		}
		seen[r.Key()] = true
		if len(r.Raw) == 0 {
			r.Raw = []byte(`{}`)
		}
		out = append(out, r)
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: r})
	}
	for i := 0; i < len(ops); i += 200 {
		if err := s.Transact(context.Background(), ops[i:min(i+200, len(ops))]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// matchKeys runs the SQL of a search for q without paging: every match's key.
func (s *Store) matchKeys(ctx context.Context, q store.Query) ([]string, error) {
	p, err := s.planSearch(ctx, q)
	if err != nil {
		return nil, err
	}
	var b sqlb
	b.w("SELECT r.type, r.id FROM ", p.from)
	b.add(&p.base)
	rows, err := s.rdb.QueryContext(ctx, b.String(), b.args...)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, b.String())
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t, id string
		if err := rows.Scan(&t, &id); err != nil {
			return nil, err
		}
		out = append(out, t+"/"+id)
	}
	sort.Strings(out)
	return out, rows.Err()
}

// diffConds builds the conditions of the suite by kind.
func diffConds(t testing.TB, recs []store.Record, limit int) (map[string][]search.Expr, []string) {
	g := dc.NewGen(3, 4)
	for _, r := range recs {
		g.FromRecord(r)
	}
	var pool []search.Expr
	for _, es := range g.Conds {
		pool = append(pool, es...)
	}
	slices.SortFunc(pool, func(a, b search.Expr) int { return strings.Compare(search.Key(a), search.Key(b)) })
	pick := func() search.Expr { return pool[g.Rnd.IntN(len(pool))] }
	for range 300 {
		g.Add("combined", search.And{Args: []search.Expr{pick(), pick()}})
		g.Add("combined", search.Or{Args: []search.Expr{pick(), pick(), pick()}})
		g.Add("combined", search.Not{Arg: search.Or{Args: []search.Expr{pick(), search.Not{Arg: pick()}}}})
		a := search.And{Args: []search.Expr{pick(), pick()}}
		g.Add("combined", &a)
		// A driver plus conditions checked per resource, the shape of most searches.
		g.Add("combined", search.And{Args: []search.Expr{pick(), pick(), search.Not{Arg: pick()}}})
	}
	fixed := dc.FixedConds()
	out := map[string][]search.Expr{}
	// Shuffle the kinds in one order: map order would hand each kind a
	// different part of the random stream on every run.
	for _, kind := range slices.Sorted(maps.Keys(g.Conds)) {
		conds := g.Conds[kind]
		if len(conds) > limit {
			g.Rnd.Shuffle(len(conds), func(i, j int) { conds[i], conds[j] = conds[j], conds[i] })
			conds = conds[:limit]
		}
		out[kind] = append(slices.Clone(fixed[kind]), conds...)
	}
	for kind, conds := range fixed {
		if _, ok := out[kind]; !ok {
			out[kind] = conds
		}
	}
	kinds := make([]string, 0, len(out))
	for k := range out {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return out, kinds
}

func diffStore(t *testing.T) (*Store, []store.Record) {
	s := openTest(t, ":memory:", Options{})
	recs := append(append(dc.EdgeRecords(), dc.ExampleRecords(t)...), genRecords(t, 8)...)
	return s, loadRecords(t, s, recs)
}

// TestSearchEqualsMatcher is the differential test: for every condition,
// over all types and within one type, the store's matches are exactly the
// records search.Matcher accepts; each kind has matches and non-matches.
func TestSearchEqualsMatcher(t *testing.T) {
	ctx := context.Background()
	s, recs := diffStore(t)
	limit := 600
	if testing.Short() {
		limit = 150
	}
	conds, kinds := diffConds(t, recs, limit)
	types := map[string]bool{}
	for _, r := range recs {
		types[r.Type] = true
	}
	rnd := rand.New(rand.NewPCG(5, 6))
	total := 0
	for _, kind := range kinds {
		hits, misses := 0, 0
		for i, e := range conds[kind] {
			m, err := search.NewMatcher(e)
			if err != nil {
				t.Fatalf("%s %#v: search.NewMatcher: %v", kind, e, err)
			}
			var typs []string
			if i%2 == 1 {
				typs = []string{recs[rnd.IntN(len(recs))].Type}
			}
			var want []string
			for j := range recs {
				r := &recs[j]
				if typs != nil && r.Type != typs[0] {
					continue
				}
				if m.Match(subjectOf(r)) {
					want = append(want, r.Key())
				}
			}
			sort.Strings(want)
			got, err := s.matchKeys(ctx, store.Query{Types: typs, Filter: e})
			if err != nil {
				t.Fatalf("%s %#v: %v", kind, e, err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s %#v (types %v):\n got %v\nwant %v", kind, e, typs, diffKeys(got, want), diffKeys(want, got))
			}
			// The counts run too (not only explained): exact, bounded at
			// the number of matches (exact) and one below it (over).
			n := int64(len(want))
			for _, lim := range []int64{0, n, n - 1} {
				if lim < 0 || (lim == 0 && n > 0 && i%3 != 0) {
					continue
				}
				p, err := s.Search(ctx, store.Query{Types: typs, Filter: e, Total: true, TotalLimit: lim, Sort: []search.SortKey{{Param: "date"}, {Param: "_id", Desc: true}}})
				if err != nil {
					t.Fatalf("%s %#v count (limit %d): %v", kind, e, lim, err)
				}
				if wantTotal := map[bool]int64{true: n, false: -1}[lim == 0 || lim >= n]; p.Total != wantTotal {
					t.Errorf("%s %#v (types %v) limit %d: total %d, want %d", kind, e, typs, lim, p.Total, wantTotal)
				}
			}
			hits += len(want)
			misses += len(recs) - len(want)
			total++
		}
		t.Logf("%-11s %5d conditions, %7d matches, %8d non-matches", kind, len(conds[kind]), hits, misses)
		if hits == 0 || misses == 0 {
			t.Errorf("%s: %d matches, %d non-matches: the kind is not exercised both ways", kind, hits, misses)
		}
	}
	for _, kind := range []string{"string", "token", "reference", "date", "number", "quantity", "uri", "composite", "missing", "id", "lastUpdated", "access", "const", "combined"} {
		if len(conds[kind]) == 0 {
			t.Errorf("no %s conditions", kind)
		}
	}
	t.Logf("%d searches on %d records", total, len(recs))
	for _, e := range dc.BadConds() {
		if _, err := s.Search(ctx, store.Query{Filter: e, Count: 1}); err == nil {
			t.Errorf("%#v: Search accepted a condition search.Matcher rejects", e)
		}
	}
}

// diffKeys is a - b (for messages).
func diffKeys(a, b []string) []string {
	var out []string
	for _, k := range a {
		if !slices.Contains(b, k) {
			out = append(out, k)
		}
	}
	return out
}

// TestHistoryFilterEqualsMatcher: history filters (every node; those
// history compiles to SQL and those it re-checks in Go) over versions
// agree with search.Matcher, paged.
func TestHistoryFilterEqualsMatcher(t *testing.T) {
	ctx := context.Background()
	s, recs := diffStore(t)
	// A second version of some records, with other release state and compartments.
	var ops []store.Op
	byKey := map[string][]store.Record{}
	for i, r := range recs {
		byKey[r.Key()] = append(byKey[r.Key()], r)
		if i%4 != 0 {
			continue
		}
		r2 := r
		r2.VersionID = 2
		r2.LastUpdated = r.LastUpdated.Add(time.Hour)
		r2.Release = store.Release{Proxy: r.LastUpdated.Add(2 * time.Hour)}
		r2.Index.Compartments = append([]string{"Patient/moved"}, r.Index.Compartments...)
		if i%8 == 0 {
			r2 = store.Record{Type: r.Type, ID: r.ID, VersionID: 2, LastUpdated: r2.LastUpdated, Deleted: true}
			ops = append(ops, store.Op{Kind: store.OpDelete, Record: r2, IfVersion: 1})
		} else {
			ops = append(ops, store.Op{Kind: store.OpPut, Record: r2, IfVersion: 1})
		}
		byKey[r.Key()] = append(byKey[r.Key()], r2)
	}
	for i := 0; i < len(ops); i += 100 {
		if err := s.Transact(ctx, ops[i:min(i+100, len(ops))]); err != nil {
			t.Fatal(err)
		}
	}
	var versions []store.Record
	for _, vs := range byKey {
		versions = append(versions, vs...)
	}
	limit := 30
	if testing.Short() {
		limit = 10
	}
	conds, kinds := diffConds(t, recs, limit)
	conds["access"] = append(conds["access"], search.CompartmentCond{Compartments: []string{"Patient/moved"}},
		search.Or{Args: []search.Expr{
			search.And{Args: []search.Expr{search.TypeCond{Types: []string{"Observation"}}, search.CompartmentCond{Compartments: []string{"Patient/moved"}}}},
			search.And{Args: []search.Expr{search.TypeCond{Types: []string{"Patient"}}, search.CompartmentCond{Compartments: []string{"Patient/moved"}}}},
		}})
	for _, kind := range kinds {
		for i, e := range conds[kind] {
			m, err := search.NewMatcher(e)
			if err != nil {
				t.Fatal(err)
			}
			var want []store.Record
			for j := range versions {
				if m.Match(subjectOf(&versions[j])) {
					want = append(want, versions[j])
				}
			}
			sort.Slice(want, func(i, j int) bool {
				a, b := want[i], want[j]
				if la, lb := a.LastUpdated.UnixMilli(), b.LastUpdated.UnixMilli(); la != lb {
					return la > lb
				}
				if a.Type != b.Type {
					return a.Type < b.Type
				}
				if a.ID != b.ID {
					return a.ID < b.ID
				}
				return a.VersionID > b.VersionID
			})
			var wantKeys []string
			for _, r := range want {
				wantKeys = append(wantKeys, fmt.Sprintf("%s/%d", r.Key(), r.VersionID))
			}
			q := store.HistoryQuery{Filter: e, Count: 1000, Total: true}
			if i%3 == 1 {
				q.Count = 7 // paged
			}
			var got []string
			for page := 0; ; page++ {
				p, err := s.History(ctx, q)
				if err != nil {
					t.Fatalf("%s %#v: %v", kind, e, err)
				}
				if p.Total != int64(len(want)) {
					t.Errorf("%s %#v: Total %d, want %d", kind, e, p.Total, len(want))
				}
				for _, r := range p.Records {
					got = append(got, fmt.Sprintf("%s/%d", r.Key(), r.VersionID))
				}
				if p.Next == "" || page > 1000 {
					break
				}
				q.Cursor = p.Next
			}
			if !slices.Equal(got, wantKeys) {
				t.Errorf("%s %#v:\n got %v\nwant %v", kind, e, diffKeys(got, wantKeys), diffKeys(wantKeys, got))
			}
		}
	}
}

// planLine is a line of EXPLAIN QUERY PLAN that reads a whole table.
// Allowed: the outer query over the page already selected ("SCAN q"), the
// driving set a bounded count reads ("SCAN drv": a co-routine whose own
// lines, index searches, are checked like the others), the types
// dictionary (one row per stored type), and constant rows.
var (
	scanLine    = regexp.MustCompile(`^SCAN (\S+)`)
	allowedScan = map[string]bool{"q": true, "drv": true, "types": true, "CONSTANT": true}
)

// explain returns the plan of b and the lines that scan a table.
func (s *Store) explain(ctx context.Context, b *sqlb) ([]string, []string, error) {
	rows, err := s.rdb.QueryContext(ctx, "EXPLAIN QUERY PLAN "+b.String(), b.args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var plan, bad []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			return nil, nil, err
		}
		plan = append(plan, detail)
		if m := scanLine.FindStringSubmatch(detail); m != nil && !allowedScan[m[1]] {
			bad = append(bad, detail)
		}
	}
	return plan, bad, rows.Err()
}

// TestQueryPlansUseIndexes runs EXPLAIN QUERY PLAN on the page and count
// queries of every condition of the differential suite, within one type
// (the shape of a type search) and over all types (system search and
// compartment searches), with and without a cursor and a _sort, and on
// history queries: no plan may scan a table. A temporary b-tree for ORDER
// BY is allowed: it sorts the matches read through the driving index (a
// page needs them all when the order is not the driving index's), and the
// pages of the default order without a driver come from res_type_id in
// order (no sort).
func TestQueryPlansUseIndexes(t *testing.T) {
	ctx := context.Background()
	s, recs := diffStore(t)
	if _, err := s.w.conn.ExecContext(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	limit := 200
	if testing.Short() {
		limit = 60
	}
	conds, kinds := diffConds(t, recs, limit)
	shapes, sorts := 0, 0
	check := func(what string, b *sqlb) {
		plan, bad, err := s.explain(ctx, b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, b.String())
		}
		shapes++
		for _, l := range plan {
			if strings.Contains(l, "TEMP B-TREE") {
				sorts++
				break
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s: full scan %q\n%s\nplan:\n  %s", what, bad, b.String(), strings.Join(plan, "\n  "))
		}
	}
	sortsBy := [][]search.SortKey{nil, {{Param: "_lastUpdated", Desc: true}}, {{Param: "date"}, {Param: "_id", Desc: true}}}
	for _, kind := range kinds {
		for i, e := range conds[kind] {
			for _, types := range [][]string{{"Observation"}, nil} {
				q := store.Query{Types: types, Filter: e, Sort: sortsBy[i%len(sortsBy)], Count: 20, Total: true}
				p, err := s.planSearch(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if p.never {
					continue // answered without a query
				}
				what := fmt.Sprintf("%s %#v types %v sort %v", kind, e, types, q.Sort)
				check(what+" count", p.countSQL(0))
				check(what+" bounded count", p.countSQL(1000))
				check(what+" page", p.pageSQL(nil, 21))
				vals := make([]any, len(p.terms))
				for j := range vals {
					vals[j] = "x"
				}
				check(what+" next page", p.pageSQL(vals, 21))
				if p.window {
					check(what+" window", p.windowSQL(nil, 21))
					check(what+" window next page", p.windowSQL(vals, 21))
				}
			}
		}
	}
	t.Logf("%d query shapes explained, %d sort with a temporary b-tree", shapes, sorts)
}

// TestWindowEqualsDriven: the window plan (dense driving sets, orders an
// index delivers) pages exactly like the driven plan, for conditions
// that match most resources, some, and few, in every windowed order.
func TestWindowEqualsDriven(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, ":memory:", Options{})
	var recs []store.Record
	for i := range 3000 {
		code := "common"
		switch {
		case i%100 == 0:
			code = "rare"
		case i%3 == 0:
			code = "third"
		}
		ix := search.Index{
			Tok:  []search.TokValue{{Param: "code", Code: code}, {Param: "status", Code: "final"}},
			Date: []search.DateValue{{Param: "date", Lo: day("2024-01-01").AddDate(0, 0, i%400), Hi: day("2024-01-02").AddDate(0, 0, i%400)}},
			Sort: map[string]any{"date": day("2024-01-01").AddDate(0, 0, i%400).Format(time.RFC3339)},
		}
		if i%7 == 0 {
			ix.Sort = nil // no sort value
		}
		recs = append(recs, store.Record{Type: "Observation", ID: fmt.Sprintf("o%04d", (i*7919)%3000), VersionID: 1,
			LastUpdated: day("2025-01-01").Add(time.Duration(i%500) * time.Second), Raw: []byte(`{}`), Index: ix})
	}
	loadRecords(t, s, recs)
	code := func(c string) search.Expr { return search.TokenCond{Param: "code", Code: &c} }
	status := "final"
	filters := []search.Expr{
		code("common"), code("third"), code("rare"),
		search.And{Args: []search.Expr{search.TokenCond{Param: "status", Code: &status}, code("third")}},
		search.And{Args: []search.Expr{code("common"), search.DateCond{Param: "date", Prefix: search.Ge, Lo: day("2024-12-01"), Hi: day("2024-12-02")}}},
	}
	sorts := [][]search.SortKey{nil, {{Param: "_lastUpdated"}}, {{Param: "_lastUpdated", Desc: true}}, {{Param: "date", Desc: true}}, {{Param: "date"}}}
	windowed := 0
	for _, f := range filters {
		for _, srt := range sorts {
			for _, count := range []int{25, 400} {
				q := store.Query{Types: []string{"Observation"}, Filter: f, Sort: srt, Count: count}
				p, err := s.planSearch(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if p.window {
					windowed++
				}
				walkAll := func(noWindow bool) []string {
					s.noWindow = noWindow
					defer func() { s.noWindow = false }()
					return walkIDs(t, s, q)
				}
				if a, b := walkAll(false), walkAll(true); !slices.Equal(a, b) {
					t.Errorf("%#v sort %v count %d: window plan %d records, driven plan %d, first difference at %d",
						f, srt, count, len(a), len(b), firstDiff(a, b))
				}
			}
		}
	}
	if windowed == 0 {
		t.Error("no query used the window plan")
	}
}

// walkIDs pages through q to the end and returns the ids in order.
func walkIDs(t *testing.T, s *Store, q store.Query) []string {
	t.Helper()
	var out []string
	for {
		pg, err := s.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range pg.Records {
			out = append(out, r.ID)
		}
		if pg.Next == "" {
			return out
		}
		q.Cursor = pg.Next
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestJoinEqualsDriven: the ordered-join plan (a driver whose index
// delivers rid order, read in order and stopped at the page) pages exactly
// like the driven plan, with resources that have several rows of the
// driving value (one result each), tombstones, and other conditions.
func TestJoinEqualsDriven(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, ":memory:", Options{})
	var recs []store.Record
	loinc := "http://loinc.org"
	for i := range 600 {
		code := "a"
		if i%3 == 0 {
			code = "b"
		}
		ix := search.Index{
			Tok:          []search.TokValue{{Param: "code", System: loinc, Code: code, Text: "x"}, {Param: "status", Code: "final"}},
			Ref:          []search.RefValue{{Param: "subject", Ref: fmt.Sprintf("Patient/p%d", i%4), ID: fmt.Sprintf("p%d", i%4), Type: "Patient"}},
			URI:          []search.URIValue{{Param: "url", Value: fmt.Sprintf("http://x/%d", i%5)}},
			Date:         []search.DateValue{{Param: "date", Lo: day("2024-01-01").AddDate(0, 0, i%40), Hi: day("2024-01-02").AddDate(0, 0, i%40)}},
			Compartments: []string{fmt.Sprintf("Patient/p%d", i%4)},
		}
		if i%2 == 0 {
			// The same code again, with another display: a second row.
			ix.Tok = append(ix.Tok, search.TokValue{Param: "code", System: loinc, Code: code, Text: "y"})
		}
		if i%5 == 0 {
			ix.Security = []string{"http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV"}
		}
		// Strings (folded value, as written): a resource with several
		// rows under one prefix (two values, or one value written twice)
		// is one result; str_pre's prefix bytes may end inside a rune.
		switch {
		case i%4 == 0:
			ix.Str = []search.StrValue{{Param: "name", Value: "smith", Exact: "Smith"}, {Param: "name", Value: "smith", Exact: "SMITH"},
				{Param: "name", Value: "smithers", Exact: "Smithers"}}
		case i%2 == 0:
			ix.Str = []search.StrValue{{Param: "name", Value: "smith", Exact: "Smith"}}
		case i%7 == 1:
			ix.Str = []search.StrValue{{Param: "name", Value: "émile", Exact: "Émile"}, {Param: "name", Value: "sm", Exact: "Sm"},
				{Param: "name", Value: "smélie", Exact: "Smélie"}}
		default:
			ix.Str = []search.StrValue{{Param: "name", Value: "jones", Exact: "Jones"}}
		}
		recs = append(recs, store.Record{Type: "Observation", ID: fmt.Sprintf("o%03d", (i*7919)%600), VersionID: 1,
			LastUpdated: day("2025-01-01").Add(time.Duration(i) * time.Second), Raw: []byte(`{}`), Index: ix})
	}
	loadRecords(t, s, recs)
	for i := 0; i < 600; i += 11 {
		r := recs[i]
		if err := s.Transact(ctx, []store.Op{{Kind: store.OpDelete, Record: store.Record{Type: r.Type, ID: r.ID, VersionID: 2,
			LastUpdated: day("2025-02-01"), Deleted: true}, IfVersion: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	code := func(c string) search.Expr { return search.TokenCond{Param: "code", System: &loinc, Code: &c} }
	filters := []search.Expr{
		code("a"), code("b"),
		search.AllOf(code("a"), search.DateCond{Param: "date", Prefix: search.Ge, Lo: day("2024-01-20"), Hi: day("2024-01-21")}),
		search.RefCond{Param: "subject", Targets: []string{"Patient/p1"}},
		search.URICond{Param: "url", Value: "http://x/2"},
		search.CompartmentCond{Compartments: []string{"Patient/p2"}},
		search.AllOf(search.SecurityCond{Labels: []string{"http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV"}}, code("b")),
		// A prefix of 3 bytes or more is read from str_pre in rid order.
		search.StringCond{Param: "name", Value: "smi"}, search.StringCond{Param: "name", Value: "smithe"},
		search.StringCond{Param: "name", Value: "émi"}, search.StringCond{Param: "name", Value: "smé"[:3]},
		// :exact is read from str_e_rid in rid order.
		search.StringCond{Param: "name", Value: "Smith", Mode: search.StringExact},
		search.StringCond{Param: "name", Value: "SMITH", Mode: search.StringExact},
		search.AllOf(search.StringCond{Param: "name", Value: "smit"}, code("b")),
		// A condition on the resource row (not its rid): the count reads res.
		search.AllOf(code("a"), search.LastUpdatedCond{Prefix: search.Ge, Lo: day("2025-01-01").Add(300 * time.Second),
			Hi: day("2025-01-01").Add(301 * time.Second)}),
	}
	// Whether a bounded count of each filter reads the driver's rows alone
	// (where.ridCond): every condition besides the driver reads only rids.
	rowFree := []bool{true, true, true, true, true, true, true, true, true, true, true, true, true, true, false}
	joined := 0
	for fi, f := range filters {
		for _, count := range []int{7, 1000} {
			q := store.Query{Types: []string{"Observation"}, Filter: f, Count: count, Total: true}
			p, err := s.planSearch(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if p.join != nil {
				joined++
			}
			if got := p.ridCond != nil; got != rowFree[fi] {
				t.Errorf("%#v: count by rid alone %v, want %v", f, got, !got)
			}
			walkAll := func(noJoin bool) []string {
				s.noJoin = noJoin
				defer func() { s.noJoin = false }()
				return walkIDs(t, s, q)
			}
			a, b := walkAll(false), walkAll(true)
			if !slices.Equal(a, b) {
				t.Errorf("%#v count %d: join plan %d records, driven plan %d, first difference at %d", f, count, len(a), len(b), firstDiff(a, b))
			}
			m, err := search.NewMatcher(f)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for _, r := range recs {
				if r.Deleted {
					continue
				}
				if cur, err := s.Read(ctx, r.Type, r.ID); err == nil && !cur.Deleted &&
					m.Match(search.Subject{Type: r.Type, ID: r.ID, LastUpdated: r.LastUpdated, Index: &r.Index}) {
					want++
				}
			}
			if len(a) != want {
				t.Errorf("%#v: %d records, the matcher selects %d", f, len(a), want)
			}
			// The total of the first page: exact, and bounded (omitted
			// past the bound), through either plan.
			for _, noJoin := range []bool{false, true} {
				for _, limit := range []int64{0, 10, int64(want), 10_000} {
					s.noJoin = noJoin
					q2 := q
					q2.TotalLimit = limit
					pg, err := s.Search(ctx, q2)
					s.noJoin = false
					if err != nil {
						t.Fatal(err)
					}
					wantTotal := int64(want)
					if limit > 0 && wantTotal > limit && count < want {
						// (A first page holding every match counts them.)
						wantTotal = -1
					}
					if pg.Total != wantTotal {
						t.Errorf("%#v count %d, total limit %d, noJoin %v: total %d, want %d", f, count, limit, noJoin, pg.Total, wantTotal)
					}
				}
			}
		}
	}
	if joined != 2*len(filters) {
		t.Errorf("%d of %d searches used the join plan", joined, 2*len(filters))
	}
}
