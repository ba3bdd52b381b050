package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Cases of search as far as the store answers it (search.html#paging,
// #sort): types, totals, filters, keyset paging under concurrent writes.

func searchKeys(t *testing.T, s store.Store, q store.Query) []string {
	t.Helper()
	p, err := s.Search(ctxT(t), q)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	if len(p.Records) == 0 {
		return nil
	}
	out := make([]string, len(p.Records))
	for i, r := range p.Records {
		out[i] = r.Key()
	}
	return out
}

func testSearchTypes(t *testing.T, s store.Store) {
	mustTx(t, s,
		create(rec("Patient", "b", 1, at(0), "")), create(rec("Patient", "a", 1, at(0), "")),
		create(rec("Observation", "a", 1, at(0), "")), create(rec("Basic", "x", 1, at(0), "")),
		create(rec("Basic", "gone", 1, at(0), "")))
	mustTx(t, s, del(tomb("Basic", "gone", 2, at(1))))
	tests := []struct {
		types []string
		want  []string
	}{
		{nil, []string{"Basic/x", "Observation/a", "Patient/a", "Patient/b"}},
		{[]string{"Patient"}, []string{"Patient/a", "Patient/b"}},
		{[]string{"Patient", "Basic"}, []string{"Basic/x", "Patient/a", "Patient/b"}},
		{[]string{"Encounter"}, nil},
	}
	for _, tc := range tests {
		// Ordered by type; within a type the store's tie order (Query.Sort),
		// the same on every search and page by page.
		got := searchKeys(t, s, store.Query{Types: tc.types, Count: 10})
		if !reflect.DeepEqual(slices.Sorted(slices.Values(got)), tc.want) {
			t.Errorf("Types %v: %v, want %v in some order (no tombstones)", tc.types, got, tc.want)
		}
		if !slices.IsSortedFunc(got, func(a, b string) int {
			ta, _, _ := strings.Cut(a, "/")
			tb, _, _ := strings.Cut(b, "/")
			return strings.Compare(ta, tb)
		}) {
			t.Errorf("Types %v: %v, not ordered by type", tc.types, got)
		}
		var paged []string
		for _, r := range walk(t, s, store.Query{Types: tc.types, Count: 1}, nil) {
			paged = append(paged, r.Key())
		}
		if again := searchKeys(t, s, store.Query{Types: tc.types, Count: 10}); !reflect.DeepEqual(again, got) || !reflect.DeepEqual(paged, got) {
			t.Errorf("Types %v: %v, then %v, page by page %v: the tie order is not stable", tc.types, got, again, paged)
		}
	}
}

// search.html#count: _count=0 returns only the total (_summary=count).
func testSearchCountZero(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for i := 0; i < 5; i++ {
		mustTx(t, s, create(rec("Basic", fmt.Sprint(i), 1, at(i), "")))
	}
	p, err := s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 0, Total: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Records) != 0 || p.Total != 5 || p.Next != "" {
		t.Errorf("Count 0: %d records, total %d, next %q; want 0, 5, none", len(p.Records), p.Total, p.Next)
	}
	p, err = s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != -1 || len(p.Records) != 2 || p.Next == "" {
		t.Errorf("Count 2 without Total: %d records, total %d, next %q", len(p.Records), p.Total, p.Next)
	}
	p, err = s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 5, Total: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 5 || len(p.Records) != 5 || p.Next != "" {
		t.Errorf("Count 5 of 5: %d records, total %d, next %q; want no next page", len(p.Records), p.Total, p.Next)
	}
	// TotalLimit: exact up to the limit; above it -1 (or exact: a store
	// may count on).
	for _, tc := range []struct {
		limit int64
		exact bool
	}{{10, true}, {5, true}, {4, false}, {1, false}} {
		p, err = s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 2, Total: true, TotalLimit: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 5 && (tc.exact || p.Total != -1) || len(p.Records) != 2 {
			t.Errorf("TotalLimit %d of 5 matches: %d records, total %d", tc.limit, len(p.Records), p.Total)
		}
	}
	// The total with a page that does not hold every match, on the first
	// page and on the next (where it counts the whole search, not what
	// follows the cursor), over one type and over several.
	mustTx(t, s, create(rec("Patient", "p", 1, at(9), "")))
	for _, types := range [][]string{{"Basic"}, {"Basic", "Patient"}} {
		want := int64(5 + len(types) - 1)
		p, err = s.Search(ctx, store.Query{Types: types, Count: 2, Total: true})
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != want || len(p.Records) != 2 || p.Next == "" {
			t.Fatalf("%v Count 2 with Total: %d records, total %d, next %q; want 2, %d, a next page", types, len(p.Records), p.Total, p.Next, want)
		}
		p, err = s.Search(ctx, store.Query{Types: types, Count: 2, Total: true, Cursor: p.Next})
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != want || len(p.Records) != 2 {
			t.Errorf("%v second page with Total: %d records, total %d; want 2, %d", types, len(p.Records), p.Total, want)
		}
	}
}

// The filter nodes every backend's compiler must support first (they carry
// _id, _include targets and resolved chains).
func testSearchFilter(t *testing.T, s store.Store) {
	mustTx(t, s,
		create(rec("Patient", "a", 1, at(0), "")), create(rec("Patient", "b", 1, at(0), "")),
		create(rec("Observation", "a", 1, at(0), "")), create(rec("Observation", "c", 1, at(0), "")))
	tests := []struct {
		name  string
		types []string
		f     search.Expr
		want  []string
	}{
		{"_id", []string{"Patient"}, search.IDCond{IDs: []string{"a", "zz"}}, []string{"Patient/a"}},
		{"_id any type", nil, search.IDCond{IDs: []string{"a"}}, []string{"Observation/a", "Patient/a"}},
		{"keys", nil, search.KeyCond{Keys: []string{"Patient/b", "Observation/c", "Patient/nope"}}, []string{"Observation/c", "Patient/b"}},
		{"keys within types", []string{"Patient"}, search.KeyCond{Keys: []string{"Patient/b", "Observation/c"}}, []string{"Patient/b"}},
		{"true", []string{"Patient"}, search.Const{Value: true}, []string{"Patient/a", "Patient/b"}},
		{"false", nil, search.Const{Value: false}, nil},
		{"and", nil, search.And{Args: []search.Expr{search.IDCond{IDs: []string{"a", "b"}}, search.KeyCond{Keys: []string{"Patient/b", "Observation/a"}}}}, []string{"Observation/a", "Patient/b"}},
	}
	for _, tc := range tests {
		if got := searchKeys(t, s, store.Query{Types: tc.types, Filter: tc.f, Count: 10}); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// walk pages through q calling between(page) after every page; it returns
// the keys in the order seen.
func walk(t *testing.T, s store.Store, q store.Query, between func(page int)) []store.Record {
	t.Helper()
	var all []store.Record
	for page := 0; ; page++ {
		p, err := s.Search(ctxT(t), q)
		if err != nil {
			t.Fatalf("Search page %d: %v", page, err)
		}
		if len(p.Records) > q.Count {
			t.Fatalf("page of %d records for Count %d", len(p.Records), q.Count)
		}
		all = append(all, p.Records...)
		if p.Next == "" {
			return all
		}
		if page > 200 {
			t.Fatal("paging does not end")
		}
		if between != nil {
			between(page)
		}
		q.Cursor = p.Next
	}
}

// checkWalk asserts every key of want appears exactly once in got and no
// key appears twice.
func checkWalk(t *testing.T, got []store.Record, want []string) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range got {
		seen[r.Key()]++
		if seen[r.Key()] == 2 {
			t.Errorf("%s returned twice", r.Key())
		}
	}
	for _, k := range want {
		if seen[k] == 0 {
			t.Errorf("%s skipped", k)
		}
	}
}

// search.html#paging: walking the pages while others create and update
// resources returns every pre-existing resource once.
func testSearchPaging(t *testing.T, s store.Store) {
	var want []string
	var ops []store.Op
	for i := 0; i < 30; i++ {
		id := fmt.Sprintf("b%02d", i)
		ops = append(ops, create(rec("Basic", id, 1, at(i), "")))
		want = append(want, "Basic/"+id)
	}
	mustTx(t, s, ops...)
	mustTx(t, s, create(rec("Patient", "other", 1, at(0), "")))
	// The order of the resources that exist before the walk.
	pos := map[string]int{}
	for i, k := range searchKeys(t, s, store.Query{Types: []string{"Basic"}, Count: 100}) {
		pos[k] = i
	}
	version := map[string]int64{}
	got := walk(t, s, store.Query{Types: []string{"Basic"}, Count: 7}, func(page int) {
		// New resources sorting before and after every existing one, and
		// a new version of one not yet returned.
		mustTx(t, s, create(rec("Basic", fmt.Sprintf("a-%d", page), 1, at(100+page), "")),
			create(rec("Basic", fmt.Sprintf("z-%d", page), 1, at(100+page), "")))
		id := fmt.Sprintf("b%02d", 29-page)
		version[id]++
		mustTx(t, s, put(rec("Basic", id, version[id]+1, at(200+page), "")))
	})
	checkWalk(t, got, want)
	last := -1
	for _, r := range got {
		i, ok := pos[r.Key()]
		if !ok {
			continue // created during the walk: anywhere
		}
		if i < last {
			t.Errorf("order: %s after a resource it preceded before the walk", r.Key())
		}
		last = i
	}
	for _, r := range got {
		if r.Type != "Basic" {
			t.Errorf("%s returned for Types [Basic]", r.Key())
		}
	}
}

// search.html#sort: _sort=-_lastUpdated, paged while new resources arrive.
func testSearchSortLastUpdated(t *testing.T, s store.Store) {
	var want []string
	var ops []store.Op
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("r%02d", i)
		ops = append(ops, create(rec("Basic", id, 1, at(i/3), ""))) // ties of three
		want = append(want, "Basic/"+id)
	}
	mustTx(t, s, ops...)
	for _, desc := range []bool{true, false} {
		n := 0
		got := walk(t, s, store.Query{Types: []string{"Basic"}, Count: 4, Sort: []search.SortKey{{Param: "_lastUpdated", Desc: desc}}}, func(int) {
			n++
			mustTx(t, s, create(rec("Basic", fmt.Sprintf("new-%v-%d", desc, n), 1, at(50+n), "")))
		})
		var old []store.Record
		for _, r := range got {
			if strings.HasPrefix(r.ID, "r") {
				old = append(old, r)
			}
		}
		checkWalk(t, got, want)
		for i := 1; i < len(old); i++ {
			a, b := old[i-1], old[i]
			if desc {
				a, b = b, a
			}
			// Ties in the store's order (Query.Sort): each once, checkWalk.
			if a.LastUpdated.After(b.LastUpdated) {
				t.Errorf("desc=%v: %s (%v) before %s (%v)", desc, old[i-1].ID, old[i-1].LastUpdated, old[i].ID, old[i].LastUpdated)
			}
		}
	}
}

// search.html#sort on a parameter some resources have no value for: every
// resource is returned once, values in order, and the
// resources without a value together at one end.
func testSearchSortParam(t *testing.T, s store.Store) {
	var want []string
	var ops []store.Op
	for i := 0; i < 22; i++ {
		id := fmt.Sprintf("s%02d", i)
		r := rec("Basic", id, 1, at(i), "")
		if i%5 != 0 {
			r.Index.Sort = map[string]any{"name": fmt.Sprintf("n%d", i%4)}
		}
		ops = append(ops, create(r))
		want = append(want, "Basic/"+id)
	}
	mustTx(t, s, ops...)
	for _, desc := range []bool{false, true} {
		got := walk(t, s, store.Query{Types: []string{"Basic"}, Count: 3, Sort: []search.SortKey{{Param: "name", Desc: desc}}}, nil)
		checkWalk(t, got, want)
		if len(got) != len(want) {
			t.Fatalf("desc=%v: %d records, want %d", desc, len(got), len(want))
		}
		var missingAt []int
		var prev store.Record
		for i, r := range got {
			name, ok := r.Index.Sort["name"].(string)
			if !ok {
				missingAt = append(missingAt, i)
				continue
			}
			if pn, ok := prev.Index.Sort["name"].(string); ok {
				if (!desc && pn > name) || (desc && pn < name) {
					t.Errorf("desc=%v: %s (%s) before %s (%s)", desc, prev.ID, pn, r.ID, name)
				}
			}
			prev = r
		}
		if n := len(missingAt); n != 5 || (missingAt[0] != 0 && missingAt[n-1] != len(got)-1) || missingAt[n-1]-missingAt[0] != n-1 {
			t.Errorf("desc=%v: resources without a value at positions %v, want together at one end", desc, missingAt)
		}
	}
}

func testSearchBadCursor(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for i := 0; i < 4; i++ {
		mustTx(t, s, create(rec("Basic", fmt.Sprint(i), 1, at(i), "")))
	}
	p, err := s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 2})
	if err != nil || p.Next == "" {
		t.Fatalf("Search: %v, next %q", err, p.Next)
	}
	tampered := []byte(p.Next)
	i := len(tampered) / 2
	if tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	for _, c := range []string{"x", "%%%", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", string(tampered), p.Next + "A", p.Next[:len(p.Next)-3]} {
		if _, err := s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 2, Cursor: c}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", c, err)
		}
	}
	p2, err := s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 2, Cursor: p.Next})
	if err != nil || len(p2.Records) != 2 {
		t.Errorf("genuine cursor: %v, %d records", err, len(p2.Records))
	}
}
