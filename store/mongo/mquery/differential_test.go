package mquery

// The differential test of the one in-memory matcher (search.Matcher, used
// by the pipeline's access decisions and as the FerretDB re-check) against
// the semantics of the filters this package renders (irMatch: the lowered
// form evaluated field by field as MongoDB does). Covers search.html
// #string, #token, #reference, #date, #number, #quantity, #uri,
// #composite, #missing, #prefix (every prefix), _id, _lastUpdated and the
// access-control nodes, on hand-built records with edge values and on the
// search values extracted from every vendored official example.

import (
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	dc "github.com/fhirgate/fhirgate/store/storetest/conds"
)

// irMatcher compiles e once for irMatch semantics.
func irMatcher(e search.Expr) (func(store.Record) bool, error) {
	n, err := lowerer{}.lower(e)
	if err != nil {
		return nil, err
	}
	return func(r store.Record) bool { return evalNode(n, &r) }, nil
}

func TestMatcherAgreesWithFilterSemantics(t *testing.T) {
	recs := append(append(fixtures(), dc.EdgeRecords()...), dc.ExampleRecords(t)...)
	g := dc.NewGen(3, 4)
	for _, r := range recs {
		g.FromRecord(r)
	}
	// Combinations: And / Or / Not of random conditions of all kinds.
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
	}

	// A deterministic sample per kind keeps the run to a few seconds (the
	// reference evaluator builds every array element as a map).
	limit := 1000
	if testing.Short() {
		limit = 300
	}
	// The hand-written conditions always run.
	fixed := dc.FixedConds()
	for kind := range fixed {
		if _, ok := g.Conds[kind]; !ok {
			g.Conds[kind] = nil
		}
	}
	kinds := make([]string, 0, len(g.Conds))
	for kind := range g.Conds {
		kinds = append(kinds, kind)
	}
	slices.Sort(kinds)
	total := 0
	for _, kind := range kinds {
		conds := g.Conds[kind]
		if len(conds) > limit {
			g.Rnd.Shuffle(len(conds), func(i, j int) { conds[i], conds[j] = conds[j], conds[i] })
			conds = conds[:limit]
		}
		conds = append(slices.Clone(fixed[kind]), conds...)
		hits, misses := 0, 0
		for _, e := range conds {
			want, err := irMatcher(e)
			if err != nil {
				t.Fatalf("%s %#v: irMatch: %v", kind, e, err)
			}
			m, err := search.NewMatcher(e)
			if err != nil {
				t.Fatalf("%s %#v: search.NewMatcher: %v", kind, e, err)
			}
			for _, r := range recs {
				w := want(r)
				if got := m.Match(subject(&r)); got != w {
					t.Errorf("%s %#v on %s: search.Match %v, filter semantics %v", kind, e, r.Key(), got, w)
				}
				if w {
					hits++
				} else {
					misses++
				}
				total++
			}
		}
		t.Logf("%-11s %5d of %5d conditions, %7d matches, %8d non-matches", kind, len(conds), len(fixed[kind])+len(g.Conds[kind]), hits, misses)
		if hits == 0 || misses == 0 {
			t.Errorf("%s: %d matches, %d non-matches: the kind is not exercised both ways", kind, hits, misses)
		}
	}
	for _, kind := range []string{"string", "token", "reference", "date", "number", "quantity", "uri", "composite", "missing", "id", "lastUpdated", "access", "const", "combined"} {
		if len(g.Conds[kind])+len(fixed[kind]) == 0 {
			t.Errorf("no %s conditions", kind)
		}
	}
	t.Logf("%d evaluations on %d records", total, len(recs))

	for _, e := range dc.BadConds() {
		_, ierr := irMatcher(e)
		_, merr := search.NewMatcher(e)
		if ierr == nil || merr == nil {
			t.Errorf("%#v: irMatch error %v, search error %v: both must reject it", e, ierr, merr)
		}
	}
}

// TestMatchEqualsEval: the mquery entry points and search.Eval are the
// same matcher.
func TestMatchEqualsEval(t *testing.T) {
	for _, tc := range cases() {
		m, err := NewMatcher(tc.e)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range fixtures() {
			a, err1 := Match(tc.e, r)
			b, err2 := search.Eval(tc.e, subject(&r))
			if err1 != nil || err2 != nil || a != b || m.Match(r) != a {
				t.Errorf("%s on %s: Match %v %v, Eval %v %v", tc.name, r.Key(), a, err1, b, err2)
			}
		}
	}
}
