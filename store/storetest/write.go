package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Cases of reads and writes: versions, conflicts, tombstones, transactions
// (http.html#read, #vread, #update, #delete, #transaction), Append.

// http.html#create, #read: the resource comes back exactly as written,
// including primitive extensions and decimal precision (json.html#primitive).
func testCreateRead(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	raw := `{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2024-03-01T10:00:00.123456789Z"},` +
		`"birthDate":"1970-01-01","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1970-01-01T14:35:45-05:00"}]},` +
		`"extension":[{"url":"http://example.org/weight","valueDecimal":1.50}],  "name":[{"text":"Zoë \u00e9 \"q\""}] }`
	r := store.Record{Type: "Patient", ID: "p1", VersionID: 1, LastUpdated: base, Raw: []byte(raw)}
	r.Index = search.Index{
		Str:          []search.StrValue{{Param: "name", Value: "zoe", Exact: "Zoë"}},
		Tok:          []search.TokValue{{Param: "gender", System: "http://hl7.org/fhir/administrative-gender", Code: "female"}},
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
