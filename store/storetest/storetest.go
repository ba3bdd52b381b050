// Package storetest is the conformance suite of store.Store: every backend
// runs Run against fresh, empty stores and must pass every case. The cases
// pin down the contract of store/store.go (R4 http.html: read, vread,
// update, delete, history, transaction; search.html#paging for Search
// paging). Search semantics beyond IDCond, KeyCond, Const and And, and
// _sort on _lastUpdated / Index.Sort, belong to the query compiler's tests.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Run runs every conformance case, each against a store newStore returns
// (fresh and empty; newStore registers its own clean-up with t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newStore(t)) })
	}
}

var cases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"CreateReadKeepsBytes", testCreateRead},
	{"ReadNotFound", testReadNotFound},
	{"VersionIncrementsAndVRead", testVersions},
	{"IfVersionConflict", testIfVersionConflict},
	{"CreateExistsConflict", testCreateExists},
	{"InvalidOps", testInvalidOps},
	{"DeleteTombstone", testDelete},
	{"RecreateAfterDelete", testRecreate},
	{"TransactAtomic", testTransactAtomic},
	{"TransactMany", testTransactMany},
	{"ConcurrentTransactOneWins", testConcurrentTransact},
	{"ConcurrentCreateOneWins", testConcurrentCreate},
	{"HistoryInstanceTypeSystem", testHistory},
	{"HistorySinceAt", testHistorySinceAt},
	{"HistoryPaging", testHistoryPaging},
	{"HistoryFilter", testHistoryFilter},
	{"SearchTypesAndDeleted", testSearchTypes},
	{"SearchCountZeroTotal", testSearchCountZero},
	{"SearchFilterIDKeyConstAnd", testSearchFilter},
	{"SearchPagingWithConcurrentWrites", testSearchPaging},
	{"SearchSortLastUpdated", testSearchSortLastUpdated},
	{"SearchSortParamMissingValues", testSearchSortParam},
	{"SearchBadCursor", testSearchBadCursor},
	{"LockMutualExclusion", testLockExclusion},
	{"LockTTLExpiry", testLockTTL},
	{"ForEach", testForEach},
	{"SetDerived", testSetDerived},
	{"AppendIndependentCreates", testAppend},
	{"Ping", testPing},
}

// base is the clock of the records the suite writes; it has nanoseconds
// (FHIR instants may carry sub-millisecond digits).
var base = time.Date(2024, 3, 1, 10, 0, 0, 123456789, time.UTC)

func at(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

// rec builds a record whose Raw is a small resource tagged with note.
func rec(typ, id string, vid int64, lu time.Time, note string) store.Record {
	raw := fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"%d","lastUpdated":%q},"text":{"status":"generated","div":%q}}`,
		typ, id, vid, lu.Format(time.RFC3339Nano), note)
	return store.Record{Type: typ, ID: id, VersionID: vid, LastUpdated: lu, Raw: []byte(raw)}
}

func tomb(typ, id string, vid int64, lu time.Time) store.Record {
	return store.Record{Type: typ, ID: id, VersionID: vid, LastUpdated: lu, Deleted: true}
}

func create(r store.Record) store.Op { return store.Op{Kind: store.OpCreate, Record: r} }

func put(r store.Record) store.Op {
	return store.Op{Kind: store.OpPut, Record: r, IfVersion: r.VersionID - 1}
}

func del(r store.Record) store.Op {
	return store.Op{Kind: store.OpDelete, Record: r, IfVersion: r.VersionID - 1}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustTx(t *testing.T, s store.Store, ops ...store.Op) {
	t.Helper()
	if err := s.Transact(ctxT(t), ops); err != nil {
		t.Fatalf("Transact: %v", err)
	}
}

func mustRead(t *testing.T, s store.Store, typ, id string) store.Record {
	t.Helper()
	r, err := s.Read(ctxT(t), typ, id)
	if err != nil {
		t.Fatalf("Read %s/%s: %v", typ, id, err)
	}
	return r
}

func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return d < time.Millisecond && d > -time.Millisecond
}

// checkRecord compares what a store returned with what was written. Times
// must agree to the millisecond (a store may keep more).
func checkRecord(t *testing.T, got, want store.Record) {
	t.Helper()
	if got.Type != want.Type || got.ID != want.ID || got.VersionID != want.VersionID || got.Deleted != want.Deleted {
		t.Errorf("record = %s v%d deleted=%v, want %s v%d deleted=%v", got.Key(), got.VersionID, got.Deleted, want.Key(), want.VersionID, want.Deleted)
	}
	if !sameTime(got.LastUpdated, want.LastUpdated) {
		t.Errorf("%s: LastUpdated = %v, want %v", want.Key(), got.LastUpdated, want.LastUpdated)
	}
	if !bytes.Equal(got.Raw, want.Raw) {
		t.Errorf("%s v%d: Raw =\n%s\nwant\n%s", want.Key(), want.VersionID, got.Raw, want.Raw)
	}
}

func keys(rs []store.Record) []string {
	if len(rs) == 0 {
		return nil
	}
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s/%d", r.Key(), r.VersionID)
	}
	return out
}

// http.html#create, #read: the resource comes back exactly as written,
// including primitive extensions and decimal precision (json.html#primitive).
func testCreateRead(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	raw := `{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2024-03-01T10:00:00.123456789Z"},` +
		`"birthDate":"1970-01-01","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1970-01-01T14:35:45-05:00"}]},` +
		`"extension":[{"url":"http://example.org/weight","valueDecimal":1.50}],  "name":[{"text":"Zoë \u00e9 \"q\""}] }`
	r := store.Record{Type: "Patient", ID: "p1", VersionID: 1, LastUpdated: base, Raw: []byte(raw)}
	r.Index = search.Index{
		Str:          []search.StrValue{{P: "name", V: "zoe", X: "Zoë"}},
		Tok:          []search.TokValue{{P: "gender", S: "http://hl7.org/fhir/administrative-gender", C: "female"}},
		Compartments: []string{"Patient/p1"},
		Sort:         map[string]any{"name": "zoe", "n": 1.5, "d": time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	r.Release = store.Release{Patient: time.Date(2024, 3, 8, 10, 0, 0, 0, time.UTC), Rule: "pathology", State: "delay"}
	if err := s.Transact(ctx, []store.Op{create(r)}); err != nil {
		t.Fatal(err)
	}
	got := mustRead(t, s, "Patient", "p1")
	checkRecord(t, got, r)
	if string(got.Raw) != raw {
		t.Fatalf("Raw changed:\n got %s\nwant %s", got.Raw, raw)
	}
	if !reflect.DeepEqual(got.Index.Str, r.Index.Str) || !reflect.DeepEqual(got.Index.Tok, r.Index.Tok) ||
		!reflect.DeepEqual(got.Index.Compartments, r.Index.Compartments) {
		t.Errorf("Index = %+v, want %+v", got.Index, r.Index)
	}
	if got.Index.Sort["name"] != "zoe" || got.Index.Sort["n"] != 1.5 {
		t.Errorf("Index.Sort = %#v", got.Index.Sort)
	}
	if d, ok := got.Index.Sort["d"].(time.Time); !ok || !d.Equal(r.Index.Sort["d"].(time.Time)) {
		t.Errorf("Index.Sort[d] = %#v, want time.Time 1970-01-01", got.Index.Sort["d"])
	}
	if !got.Release.Patient.Equal(r.Release.Patient) || got.Release.Rule != "pathology" || got.Release.State != "delay" || !got.Release.Proxy.IsZero() {
		t.Errorf("Release = %+v, want %+v", got.Release, r.Release)
	}
	v, err := s.VRead(ctx, "Patient", "p1", 1)
	if err != nil {
		t.Fatal(err)
	}
	checkRecord(t, v, r)
}

func testReadNotFound(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.Read(ctx, "Patient", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read missing: %v, want ErrNotFound", err)
	}
	if _, err := s.VRead(ctx, "Patient", "nope", 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("VRead missing: %v, want ErrNotFound", err)
	}
	mustTx(t, s, create(rec("Patient", "p", 1, at(0), "a")))
	if _, err := s.VRead(ctx, "Patient", "p", 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("VRead v2 of v1 resource: %v, want ErrNotFound", err)
	}
	if _, err := s.Read(ctx, "Observation", "p"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read same id other type: %v, want ErrNotFound", err)
	}
}

// http.html#update, #vread: each update is a new version; every version
// stays readable.
func testVersions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var want []store.Record
	for v := int64(1); v <= 4; v++ {
		r := rec("Observation", "o1", v, at(int(v)), fmt.Sprintf("version %d", v))
		mustTx(t, s, put(r))
		want = append(want, r)
		checkRecord(t, mustRead(t, s, "Observation", "o1"), r)
	}
	for _, w := range want {
		got, err := s.VRead(ctx, "Observation", "o1", w.VersionID)
		if err != nil {
			t.Fatalf("VRead v%d: %v", w.VersionID, err)
		}
		checkRecord(t, got, w)
	}
}

// http.html#concurrency: a stale version is rejected and changes nothing.
func testIfVersionConflict(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustTx(t, s, create(rec("Patient", "p", 1, at(0), "one")))
	mustTx(t, s, put(rec("Patient", "p", 2, at(1), "two")))
	stale := store.Op{Kind: store.OpPut, Record: rec("Patient", "p", 2, at(2), "stale"), IfVersion: 1}
	err := s.Transact(ctx, []store.Op{stale})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale put: %v, want ErrConflict", err)
	}
	var oe *store.OpError
	if !errors.As(err, &oe) || oe.Index != 0 {
		t.Errorf("stale put: %v, want *OpError{Index: 0}", err)
	}
	ahead := store.Op{Kind: store.OpPut, Record: rec("Patient", "p", 4, at(2), "ahead"), IfVersion: 3}
	if err := s.Transact(ctx, []store.Op{ahead}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("put ahead of current: %v, want ErrConflict", err)
	}
	got := mustRead(t, s, "Patient", "p")
	if got.VersionID != 2 || !strings.Contains(string(got.Raw), "two") {
		t.Errorf("after conflicts: v%d %s, want v2 'two'", got.VersionID, got.Raw)
	}
	if _, err := s.VRead(ctx, "Patient", "p", 3); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("VRead v3 after conflicts: %v, want ErrNotFound", err)
	}
	// Locks are released: the right version still goes through.
	mustTx(t, s, put(rec("Patient", "p", 3, at(3), "three")))
}

func testCreateExists(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustTx(t, s, create(rec("Patient", "p", 1, at(0), "first")))
	if err := s.Transact(ctx, []store.Op{create(rec("Patient", "p", 1, at(1), "second"))}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("create existing: %v, want ErrConflict", err)
	}
	if err := s.Transact(ctx, []store.Op{put(rec("Patient", "p", 1, at(1), "second"))}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("put IfVersion 0 on existing: %v, want ErrConflict", err)
	}
	if got := mustRead(t, s, "Patient", "p"); !strings.Contains(string(got.Raw), "first") {
		t.Errorf("after conflicts: %s", got.Raw)
	}
	// Put with IfVersion 0 on an absent resource creates it (update as create).
	mustTx(t, s, put(rec("Patient", "q", 1, at(1), "q")))
	mustRead(t, s, "Patient", "q")
}

// Malformed ops are rejected before anything is written.
func testInvalidOps(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	good := create(rec("Basic", "ok", 1, at(0), "ok"))
	bad := map[string]store.Op{
		"version not IfVersion+1": {Kind: store.OpPut, Record: rec("Basic", "b", 3, at(0), "x"), IfVersion: 0},
		"create with IfVersion":   {Kind: store.OpCreate, Record: rec("Basic", "b", 2, at(0), "x"), IfVersion: 1},
		"delete without Deleted":  {Kind: store.OpDelete, Record: rec("Basic", "b", 2, at(0), "x"), IfVersion: 1},
		"put of a tombstone":      {Kind: store.OpPut, Record: tomb("Basic", "b", 2, at(0)), IfVersion: 1},
		"unknown kind":            {Kind: 99, Record: rec("Basic", "b", 1, at(0), "x")},
		"empty id":                {Kind: store.OpCreate, Record: rec("Basic", "", 1, at(0), "x")},
	}
	for name, op := range bad {
		if err := s.Transact(ctx, []store.Op{good, op}); err == nil {
			t.Errorf("%s: Transact succeeded", name)
		}
	}
	if err := s.Transact(ctx, []store.Op{good, put(rec("Basic", "ok", 1, at(0), "again"))}); err == nil {
		t.Errorf("same resource twice in one transaction: Transact succeeded")
	}
	if _, err := s.Read(ctx, "Basic", "ok"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a rejected transaction wrote its valid op: %v", err)
	}
	if err := s.Transact(ctx, nil); err != nil {
		t.Errorf("empty transaction: %v", err)
	}
}

// http.html#delete: a delete is a tombstone version.
func testDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r1 := rec("Patient", "p", 1, at(0), "alive")
	mustTx(t, s, create(r1))
	mustTx(t, s, del(tomb("Patient", "p", 2, at(1))))
	got := mustRead(t, s, "Patient", "p")
	if !got.Deleted || got.VersionID != 2 || len(got.Raw) != 0 {
		t.Errorf("Read after delete: v%d deleted=%v raw=%q, want v2 tombstone", got.VersionID, got.Deleted, got.Raw)
	}
	v1, err := s.VRead(ctx, "Patient", "p", 1)
	if err != nil {
		t.Fatal(err)
	}
	checkRecord(t, v1, r1)
	v2, err := s.VRead(ctx, "Patient", "p", 2)
	if err != nil {
		t.Fatal(err)
	}
	checkRecord(t, v2, tomb("Patient", "p", 2, at(1)))
	// Deleting again needs the tombstone's version.
	if err := s.Transact(ctx, []store.Op{del(tomb("Patient", "p", 2, at(2)))}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("delete with stale version: %v, want ErrConflict", err)
	}
}

// A tombstone counts as the current version: re-creating puts n+1.
func testRecreate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustTx(t, s, create(rec("Patient", "p", 1, at(0), "one")))
	mustTx(t, s, del(tomb("Patient", "p", 2, at(1))))
	if err := s.Transact(ctx, []store.Op{create(rec("Patient", "p", 1, at(2), "again"))}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("create over a tombstone: %v, want ErrConflict", err)
	}
	r3 := rec("Patient", "p", 3, at(2), "three")
	mustTx(t, s, put(r3))
	checkRecord(t, mustRead(t, s, "Patient", "p"), r3)
	p, err := s.History(ctx, store.HistoryQuery{Type: "Patient", ID: "p", Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keys(p.Records), []string{"Patient/p/3", "Patient/p/2", "Patient/p/1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("history = %v, want %v", got, want)
	}
}

// http.html#trules: a transaction is all or nothing; a conflict in the
// last op leaves nothing of the earlier ones, and no lock behind.
func testTransactAtomic(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustTx(t, s, create(rec("Patient", "c", 1, at(0), "c1")), create(rec("Patient", "d", 1, at(0), "d1")))
	ops := []store.Op{
		create(rec("Patient", "a", 1, at(1), "a1")),
		put(rec("Patient", "d", 2, at(1), "d2")),
		create(rec("Observation", "b", 1, at(1), "b1")),
		{Kind: store.OpPut, Record: rec("Patient", "c", 3, at(1), "c3"), IfVersion: 2}, // stale
	}
	err := s.Transact(ctx, ops)
	var oe *store.OpError
	if !errors.Is(err, store.ErrConflict) || !errors.As(err, &oe) || oe.Index != 3 {
		t.Fatalf("Transact = %v, want *OpError{Index: 3} wrapping ErrConflict", err)
	}
	for _, k := range [][2]string{{"Patient", "a"}, {"Observation", "b"}} {
		if _, err := s.Read(ctx, k[0], k[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Read %s/%s after failed transaction: %v, want ErrNotFound", k[0], k[1], err)
		}
	}
	if got := mustRead(t, s, "Patient", "d"); got.VersionID != 1 {
		t.Errorf("Patient/d after failed transaction: v%d, want v1", got.VersionID)
	}
	if _, err := s.VRead(ctx, "Patient", "d", 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("VRead Patient/d/2 after failed transaction: %v", err)
	}
	page, err := s.Search(ctx, store.Query{Count: 10, Total: true})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 2 || len(page.Records) != 2 {
		t.Errorf("Search after failed transaction: total %d, %v", page.Total, keys(page.Records))
	}
	// Nothing stays locked: the corrected transaction succeeds.
	ops[3] = put(rec("Patient", "c", 2, at(1), "c2"))
	mustTx(t, s, ops...)
	if got := mustRead(t, s, "Observation", "b"); got.VersionID != 1 {
		t.Errorf("Observation/b v%d", got.VersionID)
	}
}

// A transaction of many ops (a batch bundle) is applied completely.
func testTransactMany(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var ops []store.Op
	for i := 0; i < 60; i++ {
		ops = append(ops, create(rec("Basic", fmt.Sprintf("m%02d", i), 1, at(i), strings.Repeat("x", 2000))))
	}
	mustTx(t, s, ops...)
	for i := range ops {
		ops[i] = put(rec("Basic", fmt.Sprintf("m%02d", i), 2, at(100+i), "second"))
	}
	ops[59] = del(tomb("Basic", "m59", 2, at(200)))
	mustTx(t, s, ops...)
	p, err := s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 100, Total: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 59 || len(p.Records) != 59 {
		t.Fatalf("Search: total %d, %d records, want 59", p.Total, len(p.Records))
	}
	for _, r := range p.Records {
		if r.VersionID != 2 || !strings.Contains(string(r.Raw), "second") {
			t.Errorf("%s v%d %s", r.Key(), r.VersionID, r.Raw)
		}
	}
}

// Concurrent updates with the same expected version: exactly one wins
// (http.html#concurrency), the others get ErrConflict.
func testConcurrentTransact(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustTx(t, s, create(rec("Patient", "p", 1, at(0), "start")), create(rec("Patient", "q", 1, at(0), "start")))
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[g] = s.Transact(ctx, []store.Op{
				put(rec("Patient", "p", 2, at(1), fmt.Sprintf("writer %d", g))),
				put(rec("Patient", "q", 2, at(1), fmt.Sprintf("writer %d", g))),
			})
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for g, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("writers %d and %d both succeeded", winner, g)
			}
			winner = g
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("writer %d: %v, want ErrConflict", g, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	for _, id := range []string{"p", "q"} {
		got := mustRead(t, s, "Patient", id)
		if want := fmt.Sprintf("writer %d", winner); got.VersionID != 2 || !strings.Contains(string(got.Raw), want) {
			t.Errorf("Patient/%s = v%d %s, want v2 by %s", id, got.VersionID, got.Raw, want)
		}
	}
	mustTx(t, s, put(rec("Patient", "p", 3, at(2), "after")))
}

func testConcurrentCreate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const n = 8
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := s.Transact(ctx, []store.Op{create(rec("Patient", "new", 1, at(0), fmt.Sprint(g)))})
			if err == nil {
				wins.Add(1)
			} else if !errors.Is(err, store.ErrConflict) {
				t.Errorf("creator %d: %v, want ErrConflict", g, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d creators succeeded, want 1", wins.Load())
	}
	if got := mustRead(t, s, "Patient", "new"); got.VersionID != 1 {
		t.Errorf("v%d", got.VersionID)
	}
}

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
		if got := searchKeys(t, s, store.Query{Types: tc.types, Count: 10}); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Types %v: %v, want %v (sorted by type, id; no tombstones)", tc.types, got, tc.want)
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
	for i := 1; i < len(got); i++ {
		if got[i-1].ID >= got[i].ID {
			t.Errorf("order: %s before %s", got[i-1].Key(), got[i].Key())
		}
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
			if a.LastUpdated.After(b.LastUpdated) || (a.LastUpdated.Equal(b.LastUpdated) && old[i-1].ID > old[i].ID) {
				t.Errorf("desc=%v: %s (%v) before %s (%v)", desc, old[i-1].ID, old[i-1].LastUpdated, old[i].ID, old[i].LastUpdated)
			}
		}
	}
}

// search.html#sort on a parameter some resources have no value for: every
// resource is returned once, values in order, ties by id, and the
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
				if (!desc && pn > name) || (desc && pn < name) || (pn == name && prev.ID > r.ID) {
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

func testLockExclusion(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	unlock, err := s.Lock(ctx, "Patient?identifier=x|1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	_, err = s.Lock(short, "Patient?identifier=x|1", time.Minute)
	cancel()
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Lock while held: %v, want ErrLocked", err)
	}
	other, err := s.Lock(ctx, "Patient?identifier=x|2", time.Minute)
	if err != nil {
		t.Fatalf("Lock of another key: %v", err)
	}
	other()
	unlock()
	unlock() // idempotent
	// Goroutines increment a counter under the lock: no two inside at once.
	var inside, maxInside, total atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 3; i++ {
				u, err := s.Lock(ctx, "counter", time.Minute)
				if err != nil {
					t.Errorf("Lock: %v", err)
					return
				}
				n := inside.Add(1)
				for m := maxInside.Load(); n > m && !maxInside.CompareAndSwap(m, n); m = maxInside.Load() {
				}
				time.Sleep(2 * time.Millisecond)
				total.Add(1)
				inside.Add(-1)
				u()
			}
		}()
	}
	wg.Wait()
	if maxInside.Load() != 1 || total.Load() != 18 {
		t.Errorf("max holders %d (want 1), %d critical sections (want 18)", maxInside.Load(), total.Load())
	}
}

func testLockTTL(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	start := time.Now()
	first, err := s.Lock(ctx, "k", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// Never unlocked: the lease expires and the next caller takes it.
	second, err := s.Lock(ctx, "k", time.Minute)
	if err != nil {
		t.Fatalf("Lock after ttl: %v", err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("second Lock got the key after %v, before the first lease expired", waited)
	}
	// The first holder's late unlock must not release the second's lease.
	first()
	short, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
	_, err = s.Lock(short, "k", time.Minute)
	cancel()
	if !errors.Is(err, store.ErrLocked) {
		t.Errorf("Lock after stale unlock: %v, want ErrLocked", err)
	}
	second()
	third, err := s.Lock(ctx, "k", time.Minute)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	third()
}

func testForEach(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustTx(t, s, create(rec("Basic", "a", 1, at(0), "a1")), create(rec("Basic", "b", 1, at(0), "b1")),
		create(rec("Basic", "c", 1, at(0), "c1")), create(rec("Patient", "p", 1, at(0), "p1")))
	mustTx(t, s, put(rec("Basic", "a", 2, at(1), "a2")), del(tomb("Basic", "c", 2, at(1))))
	collect := func(typ string) []string {
		var out []string
		err := s.ForEach(ctx, typ, func(r store.Record) error {
			out = append(out, fmt.Sprintf("%s/%d:%s", r.Key(), r.VersionID, r.Raw[bytes.LastIndexByte(r.Raw, ':')+2:len(r.Raw)-3]))
			return nil
		})
		if err != nil {
			t.Fatalf("ForEach(%q): %v", typ, err)
		}
		sort.Strings(out)
		return out
	}
	if got, want := collect("Basic"), []string{"Basic/a/2:a2", "Basic/b/1:b1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ForEach(Basic) = %v, want %v", got, want)
	}
	if got, want := collect(""), []string{"Basic/a/2:a2", "Basic/b/1:b1", "Patient/p/1:p1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ForEach(\"\") = %v, want %v", got, want)
	}
	stop := errors.New("stop")
	calls := 0
	err := s.ForEach(ctx, "", func(store.Record) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ForEach with failing fn: %v after %d calls, want stop after 1", err, calls)
	}
}

// SetDerived changes Index and Release of one version without a new version.
func testSetDerived(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustTx(t, s, create(rec("Observation", "o", 1, at(0), "v1")))
	mustTx(t, s, put(rec("Observation", "o", 2, at(1), "v2")))
	idx := search.Index{Tok: []search.TokValue{{P: "code", S: "http://loinc.org", C: "1234-5"}}, Compartments: []string{"Patient/p"}}
	rel := store.Release{Patient: store.Never, Proxy: store.Never, State: "held", By: "Practitioner/d", At: at(5), Note: "call first"}
	// Older version: history only.
	if err := s.SetDerived(ctx, "Observation", "o", 1, &idx, nil); err != nil {
		t.Fatal(err)
	}
	v1, err := s.VRead(ctx, "Observation", "o", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v1.Index.Tok, idx.Tok) || v1.Release.State != "" {
		t.Errorf("v1 after SetDerived: %+v %+v", v1.Index, v1.Release)
	}
	if cur := mustRead(t, s, "Observation", "o"); len(cur.Index.Tok) != 0 || cur.VersionID != 2 {
		t.Errorf("current changed by SetDerived of v1: v%d %+v", cur.VersionID, cur.Index)
	}
	// Current version: both.
	if err := s.SetDerived(ctx, "Observation", "o", 2, nil, &rel); err != nil {
		t.Fatal(err)
	}
	v2, err := s.VRead(ctx, "Observation", "o", 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []store.Record{mustRead(t, s, "Observation", "o"), v2} {
		if r.VersionID != 2 || !strings.Contains(string(r.Raw), "v2") {
			t.Errorf("SetDerived created a version: v%d %s", r.VersionID, r.Raw)
		}
		if !r.Release.Patient.Equal(store.Never) || r.Release.State != "held" || r.Release.By != "Practitioner/d" ||
			r.Release.Note != "call first" || !sameTime(r.Release.At, at(5)) {
			t.Errorf("v2 Release = %+v, want %+v", r.Release, rel)
		}
	}
	if err := s.SetDerived(ctx, "Observation", "o", 3, &idx, &rel); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetDerived of a missing version: %v, want ErrNotFound", err)
	}
	if err := s.SetDerived(ctx, "Observation", "nope", 1, &idx, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetDerived of a missing resource: %v, want ErrNotFound", err)
	}
	p, err := s.History(ctx, store.HistoryQuery{Type: "Observation", ID: "o", Count: 10})
	if err != nil || len(p.Records) != 2 {
		t.Errorf("history after SetDerived: %v, %v", err, keys(p.Records))
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// Append stores independent creates: every record readable, in history and
// search; an existing id fails alone; a malformed record nothing.
func testAppend(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustTx(t, s, create(rec("AuditEvent", "taken", 1, at(0), "first")))
	recs := []store.Record{
		rec("AuditEvent", "a1", 1, at(1), "a1"),
		rec("AuditEvent", "taken", 1, at(1), "second"),
		rec("Provenance", "p1", 1, at(1), "p1"),
		rec("AuditEvent", "a2", 1, at(2), "a2"),
	}
	err := s.Append(ctx, recs)
	var oe *store.OpError
	if !errors.As(err, &oe) || oe.Index != 1 || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Append with an existing id: %v, want ErrConflict at record 1", err)
	}
	for _, r := range []store.Record{recs[0], recs[2], recs[3]} {
		checkRecord(t, mustRead(t, s, r.Type, r.ID), r)
		if _, err := s.VRead(ctx, r.Type, r.ID, 1); err != nil {
			t.Errorf("VRead %s: %v", r.Key(), err)
		}
	}
	if got := mustRead(t, s, "AuditEvent", "taken"); !strings.Contains(string(got.Raw), "first") {
		t.Errorf("existing record overwritten: %s", got.Raw)
	}
	p, err := s.Search(ctx, store.Query{Types: []string{"AuditEvent"}, Count: 10, Total: true})
	if err != nil || p.Total != 3 {
		t.Fatalf("search AuditEvent: total %d, %v; want 3", p.Total, err)
	}
	h, err := s.History(ctx, store.HistoryQuery{Type: "AuditEvent", Count: 10, Total: true})
	if err != nil || len(h.Records) != 3 {
		t.Fatalf("history AuditEvent: %d records, %v; want 3", len(h.Records), err)
	}
	bad := rec("AuditEvent", "v2", 2, at(3), "x")
	if err := s.Append(ctx, []store.Record{rec("AuditEvent", "ok", 1, at(3), "ok"), bad}); err == nil {
		t.Fatal("Append of a version 2 accepted")
	}
	if _, err := s.Read(ctx, "AuditEvent", "ok"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a malformed Append stored its other record: %v", err)
	}
	if err := s.Append(ctx, nil); err != nil {
		t.Errorf("empty Append: %v", err)
	}
}
