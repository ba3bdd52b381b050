package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Cases of history (http.html#history): instance, type and system, _since,
// _at, paging, filters.

// historyFixture writes (lastUpdated in seconds after base):
// Patient/p1 v1@1 v2@3 v3(deleted)@5, Patient/p2 v1@2, Observation/o1 v1@4.
func historyFixture(t *testing.T, s store.Store) {
	mustTx(t, s, create(rec("Patient", "p1", 1, at(1), "p1v1")))
	mustTx(t, s, create(rec("Patient", "p2", 1, at(2), "p2v1")))
	mustTx(t, s, put(rec("Patient", "p1", 2, at(3), "p1v2")))
	mustTx(t, s, create(rec("Observation", "o1", 1, at(4), "o1v1")))
	mustTx(t, s, del(tomb("Patient", "p1", 3, at(5))))
}

func history(t *testing.T, s store.Store, q store.HistoryQuery) []string {
	t.Helper()
	if q.Count == 0 {
		q.Count = 100
	}
	p, err := s.History(ctxT(t), q)
	if err != nil {
		t.Fatalf("History(%+v): %v", q, err)
	}
	if p.Next != "" {
		t.Errorf("History(%+v): unexpected next page", q)
	}
	return keys(p.Records)
}

// http.html#history: instance, type and system level, newest first.
func testHistory(t *testing.T, s store.Store) {
	historyFixture(t, s)
	tests := []struct {
		name string
		q    store.HistoryQuery
		want []string
	}{
		{"instance", store.HistoryQuery{Type: "Patient", ID: "p1"}, []string{"Patient/p1/3", "Patient/p1/2", "Patient/p1/1"}},
		{"type", store.HistoryQuery{Type: "Patient"}, []string{"Patient/p1/3", "Patient/p1/2", "Patient/p2/1", "Patient/p1/1"}},
		{"system", store.HistoryQuery{}, []string{"Patient/p1/3", "Observation/o1/1", "Patient/p1/2", "Patient/p2/1", "Patient/p1/1"}},
		{"unknown instance", store.HistoryQuery{Type: "Patient", ID: "zz"}, nil},
	}
	for _, tc := range tests {
		if got := history(t, s, tc.q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	p, err := s.History(ctxT(t), store.HistoryQuery{Type: "Patient", ID: "p1", Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Records[0].Deleted || len(p.Records[0].Raw) != 0 || p.Records[1].Deleted || !strings.Contains(string(p.Records[1].Raw), "p1v2") {
		t.Errorf("history records: %+v", p.Records)
	}
}

// http.html#history: _since and _at.
func testHistorySinceAt(t *testing.T, s store.Store) {
	historyFixture(t, s)
	tests := []struct {
		name string
		q    store.HistoryQuery
		want []string
	}{
		{"since 3", store.HistoryQuery{Since: at(3)}, []string{"Patient/p1/3", "Observation/o1/1", "Patient/p1/2"}},
		{"since 3.5 type", store.HistoryQuery{Type: "Patient", Since: at(3).Add(500 * time.Millisecond)}, []string{"Patient/p1/3"}},
		{"since future", store.HistoryQuery{Since: at(100)}, nil},
		{"at 3.5", store.HistoryQuery{At: at(3).Add(500 * time.Millisecond)}, []string{"Patient/p1/2", "Patient/p2/1"}},
		{"at 4", store.HistoryQuery{At: at(4)}, []string{"Observation/o1/1", "Patient/p1/2", "Patient/p2/1"}},
		{"at 10 includes the tombstone", store.HistoryQuery{At: at(10)}, []string{"Patient/p1/3", "Observation/o1/1", "Patient/p2/1"}},
		{"at 0", store.HistoryQuery{At: at(0)}, nil},
		{"instance at 2.5", store.HistoryQuery{Type: "Patient", ID: "p1", At: at(2).Add(500 * time.Millisecond)}, []string{"Patient/p1/1"}},
		{"type at 1.5", store.HistoryQuery{Type: "Patient", At: at(1).Add(500 * time.Millisecond)}, []string{"Patient/p1/1"}},
		{"at 4 since 3", store.HistoryQuery{At: at(4), Since: at(3)}, []string{"Observation/o1/1", "Patient/p1/2"}},
	}
	for _, tc := range tests {
		if got := history(t, s, tc.q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// walkHistory pages through q and returns every record key in order.
func walkHistory(t *testing.T, s store.Store, q store.HistoryQuery) ([]string, int) {
	t.Helper()
	var all []string
	pages := 0
	for {
		p, err := s.History(ctxT(t), q)
		if err != nil {
			t.Fatalf("History page %d: %v", pages, err)
		}
		pages++
		if len(p.Records) > q.Count {
			t.Fatalf("page of %d records for Count %d", len(p.Records), q.Count)
		}
		all = append(all, keys(p.Records)...)
		if p.Next == "" {
			return all, pages
		}
		if pages > 100 {
			t.Fatal("history paging does not end")
		}
		q.Cursor = p.Next
	}
}

func testHistoryPaging(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	historyFixture(t, s)
	// Five resources with the same lastUpdated: ties break by type, id.
	var ops []store.Op
	for i := 0; i < 5; i++ {
		ops = append(ops, create(rec("Basic", fmt.Sprintf("t%d", i), 1, at(7), "tie")))
	}
	mustTx(t, s, ops...)
	full := history(t, s, store.HistoryQuery{})
	want := append([]string{"Basic/t0/1", "Basic/t1/1", "Basic/t2/1", "Basic/t3/1", "Basic/t4/1"},
		"Patient/p1/3", "Observation/o1/1", "Patient/p1/2", "Patient/p2/1", "Patient/p1/1")
	if !reflect.DeepEqual(full, want) {
		t.Fatalf("system history = %v, want %v", full, want)
	}
	for _, count := range []int{1, 2, 3, 4} {
		got, pages := walkHistory(t, s, store.HistoryQuery{Count: count})
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Count %d: %v, want %v", count, got, want)
		}
		if least := (len(want) + count - 1) / count; pages < least || pages > least+1 {
			t.Errorf("Count %d: %d pages", count, pages)
		}
	}
	got, _ := walkHistory(t, s, store.HistoryQuery{Type: "Patient", At: at(10), Count: 1})
	if w := []string{"Patient/p1/3", "Patient/p2/1"}; !reflect.DeepEqual(got, w) {
		t.Errorf("paged _at: %v, want %v", got, w)
	}
	p, err := s.History(ctx, store.HistoryQuery{Type: "Patient", Total: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 4 || len(p.Records) != 0 || p.Next != "" {
		t.Errorf("Count 0 Total: total %d, %d records, next %q", p.Total, len(p.Records), p.Next)
	}
	p, err = s.History(ctx, store.HistoryQuery{Count: 2, Total: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 10 || len(p.Records) != 2 {
		t.Errorf("Total = %d (%d records), want 10 (2)", p.Total, len(p.Records))
	}
	if _, err := s.History(ctx, store.HistoryQuery{Count: 2, Cursor: "not-a-cursor"}); !errors.Is(err, store.ErrBadCursor) {
		t.Errorf("bad history cursor: %v, want ErrBadCursor", err)
	}
}

// History filters (access control confines history to what a caller may see).
func testHistoryFilter(t *testing.T, s store.Store) {
	historyFixture(t, s)
	tests := []struct {
		name string
		f    search.Expr
		want []string
	}{
		{"id", search.IDCond{IDs: []string{"p1"}}, []string{"Patient/p1/3", "Patient/p1/2", "Patient/p1/1"}},
		{"key", search.KeyCond{Keys: []string{"Patient/p2", "Observation/o1"}}, []string{"Observation/o1/1", "Patient/p2/1"}},
		{"false", search.Const{Value: false}, nil},
		{"and", search.And{Args: []search.Expr{search.Const{Value: true}, search.KeyCond{Keys: []string{"Patient/p2"}}}}, []string{"Patient/p2/1"}},
	}
	for _, tc := range tests {
		if got := history(t, s, store.HistoryQuery{Filter: tc.f}); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
