package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// TestStatisticsFollowTheData: a store opened empty and filled while it
// serves refreshes its planner statistics (maybeOptimize:
// sqlite.org/lang_analyze.html#pragopt), and a patient's search sorted
// by date sorts the patient's few matches read by rid from the
// reference index (a small probed driver: NOT INDEXED) instead of
// walking the type's whole date index for its LIMIT.
func TestStatisticsFollowTheData(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 12,000 resources")
	}
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "stats.db"), Options{Synchronous: "normal"})
	var ops []store.Op
	for i := range statsEvery + 2000 {
		p := fmt.Sprintf("p%d", i%2000)
		d := day("2024-01-01").Add(time.Duration(i) * time.Hour)
		ix := search.Index{
			Tok:          []search.TokValue{{Param: "category", Code: "laboratory"}},
			Ref:          []search.RefValue{{Param: "patient", Ref: "Patient/" + p, ID: p, Type: "Patient"}},
			Date:         []search.DateValue{{Param: "date", Lo: d, Hi: d.Add(time.Second)}},
			Sort:         map[string]any{"date": d.Format(time.RFC3339)},
			Compartments: []string{"Patient/" + p},
		}
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: store.Record{Type: "Observation", ID: fmt.Sprintf("o%d", i), VersionID: 1,
			LastUpdated: d, Raw: []byte(`{}`), Index: ix}})
		if len(ops) == 500 {
			if err := s.Transact(ctx, ops); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	if err := s.Transact(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.w.optimizes.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the statistics were never refreshed")
		}
	}
	var analyzed int
	if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_stat1 WHERE tbl <> 'meta'`).Scan(&analyzed); err != nil || analyzed == 0 {
		t.Fatalf("sqlite_stat1 holds %d rows of the store's tables (%v)", analyzed, err)
	}
	ref := search.RefCond{Param: "patient", Targets: []string{"Patient/p7"}}
	p, err := s.planSearch(ctx, store.Query{Types: []string{"Observation"}, Filter: ref, Sort: []search.SortKey{{Param: "date", Desc: true}}, Count: 20})
	if err != nil {
		t.Fatal(err)
	}
	plan, _, err := s.explain(ctx, p.pageSQL(nil, 21))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range plan {
		if strings.Contains(l, "res_sort_date") {
			t.Fatalf("a patient's sorted search walks the date index:\n  %s", strings.Join(plan, "\n  "))
		}
	}
	page, err := s.Search(ctx, store.Query{Types: []string{"Observation"}, Filter: ref, Sort: []search.SortKey{{Param: "date", Desc: true}}, Count: 20})
	if err != nil || len(page.Records) != 6 || page.Records[0].ID != fmt.Sprintf("o%d", statsEvery+2000-2000+7) {
		t.Fatalf("page: %d records, first %v, %v", len(page.Records), page.Records, err)
	}
}

// TestKeysReadByID: a search by _id or by keys (the _include of a
// reference, a conditional read) is read from res_type_id, not by walking
// the type in the default order's index to find its rows.
func TestKeysReadByID(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, ":memory:", Options{})
	var ops []store.Op
	for i := range 3000 {
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: store.Record{Type: "Patient", ID: fmt.Sprintf("p%d", i), VersionID: 1,
			LastUpdated: day("2025-01-01"), Raw: []byte(`{}`)}})
	}
	if err := s.Transact(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for _, f := range []search.Expr{
		search.KeyCond{Keys: []string{"Patient/p2999"}},
		search.IDCond{IDs: []string{"p2999", "p1"}},
		search.AllOf(search.KeyCond{Keys: []string{"Patient/p2999"}}, search.Not{Arg: search.SecurityCond{Labels: []string{"x|y"}}}),
	} {
		for _, sort := range [][]search.SortKey{nil, {{Param: "_lastUpdated", Desc: true}}} {
			q := store.Query{Types: []string{"Patient"}, Filter: f, Sort: sort, Count: 5}
			p, err := s.planSearch(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			plan, _, err := s.explain(ctx, p.pageSQL(nil, 6))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(strings.Join(plan, "\n"), "res_type_id") {
				t.Errorf("%#v sort %v is not read by id:\n  %s", f, sort, strings.Join(plan, "\n  "))
			}
			page, err := s.Search(ctx, q)
			if err != nil || len(page.Records) == 0 || page.Records[0].ID != "p2999" && page.Records[0].ID != "p1" {
				t.Errorf("%#v: %v %v", f, page.Records, err)
			}
		}
	}
}
