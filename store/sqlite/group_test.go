package sqlite

// Group commit (write.go): requests queued together commit in one SQLite
// transaction, run first without savepoints; when one fails the group runs
// again with a savepoint per request, so the failing request is rolled
// back alone (R4 http.html#trules: a transaction is all or nothing) and
// the others commit as if it had not been queued.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/store"
)

func groupRec(typ, id string, vid int64) store.Record {
	raw := fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"%d"}}`, typ, id, vid)
	return store.Record{Type: typ, ID: id, VersionID: vid, LastUpdated: time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), Raw: []byte(raw)}
}

func groupCreate(typ, id string) store.Op {
	return store.Op{Kind: store.OpCreate, Record: groupRec(typ, id, 1)}
}

// inOneGroup runs fns concurrently so that the writer applies all of
// them in one group: it holds the writer after it took a first request
// (a create of Basic/<tag>) until every fn's request is queued.
func inOneGroup(t *testing.T, s *Store, tag string, fns ...func() error) []error {
	t.Helper()
	ctx := context.Background()
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.w.afterFirst = func() { once.Do(func() { close(held); <-release }) }
	first := make(chan error, 1)
	go func() { first <- s.Transact(ctx, []store.Op{groupCreate("Basic", tag)}) }()
	<-held
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn() }()
	}
	for deadline := time.Now().Add(10 * time.Second); len(s.w.reqs) < len(fns); {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests queued", len(s.w.reqs), len(fns))
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatalf("the group's first request: %v", err)
	}
	return errs
}

func TestGroupCommitRollsBackAFailingRequestAlone(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "fhirgate.db"), Options{})
	if err := s.Transact(ctx, []store.Op{groupCreate("Patient", "x"), groupCreate("AuditEvent", "taken")}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	holder := now + int64(time.Hour/time.Millisecond)
	if err := s.w.do(ctx, &request{kind: reqLock, key: "held", owner: "other", now: now, exp: holder}); err != nil {
		t.Fatal(err)
	}
	exists := func(typ, id string) bool {
		_, err := s.Read(ctx, typ, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	// A group without a failing request: one transaction, no re-run.
	txs, reruns := s.w.txs.Load(), s.w.reruns.Load()
	errs := inOneGroup(t, s, "g1",
		func() error {
			return s.Transact(ctx, []store.Op{groupCreate("Patient", "a1"), groupCreate("Patient", "a2")})
		},
		func() error { return s.Append(ctx, []store.Record{groupRec("AuditEvent", "e1", 1)}) },
	)
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if d := s.w.txs.Load() - txs; d != 1 {
		t.Errorf("%d transactions for one group, want 1", d)
	}
	if d := s.w.reruns.Load() - reruns; d != 0 {
		t.Errorf("%d re-runs without a failure", d)
	}

	// A group with a transaction that fails after writing (its second op
	// conflicts): it is undone alone, the others commit, once.
	txs, reruns = s.w.txs.Load(), s.w.reruns.Load()
	held := &request{kind: reqLock, key: "held", owner: "me", now: now, exp: now + 60_000}
	free := &request{kind: reqLock, key: "free", owner: "me", now: now, exp: now + 60_000}
	errs = inOneGroup(t, s, "g2",
		func() error { return s.Transact(ctx, []store.Op{groupCreate("Patient", "b1")}) },
		func() error {
			return s.Transact(ctx, []store.Op{groupCreate("Patient", "gone"), groupCreate("Patient", "x")})
		},
		func() error { return s.w.do(ctx, held) },
		func() error { return s.w.do(ctx, free) },
		func() error {
			return s.Append(ctx, []store.Record{groupRec("AuditEvent", "taken", 1), groupRec("AuditEvent", "e2", 1)})
		},
		func() error { return s.Transact(ctx, []store.Op{groupCreate("Patient", "b2")}) },
	)
	if d := s.w.txs.Load() - txs; d != 1 {
		t.Errorf("%d transactions for one group, want 1", d)
	}
	if d := s.w.reruns.Load() - reruns; d != 1 {
		t.Errorf("%d re-runs with savepoints, want 1", d)
	}
	var oe *store.OpError
	if !errors.As(errs[1], &oe) || oe.Index != 1 || !errors.Is(errs[1], store.ErrConflict) {
		t.Errorf("the conflicting transaction: %v, want ErrConflict at op 1", errs[1])
	}
	if !errors.As(errs[4], &oe) || oe.Index != 0 || !errors.Is(errs[4], store.ErrConflict) {
		t.Errorf("the append of an existing id: %v, want ErrConflict at record 0", errs[4])
	}
	for _, i := range []int{0, 2, 3, 5} {
		if errs[i] != nil {
			t.Errorf("request %d: %v", i, errs[i])
		}
	}
	for _, k := range [][2]string{{"Patient", "b1"}, {"Patient", "b2"}, {"AuditEvent", "e2"}, {"Basic", "g2"}} {
		if !exists(k[0], k[1]) {
			t.Errorf("%s/%s not stored", k[0], k[1])
		}
	}
	if exists("Patient", "gone") {
		t.Error("Patient/gone stored by a transaction that failed")
	}
	if r, err := s.Read(ctx, "Patient", "x"); err != nil || r.VersionID != 1 {
		t.Errorf("Patient/x: v%d, %v", r.VersionID, err)
	}
	if held.got || held.held != holder {
		t.Errorf("a held lock: got %v, held %d; want not got, the holder's expiry %d", held.got, held.held, holder)
	}
	if !free.got {
		t.Error("a free lock not taken")
	}
	// Nothing of the failed run is left: the ids it wrote and then lost
	// in the rollback are free, the stored ones are not.
	if err := s.Transact(ctx, []store.Op{groupCreate("Patient", "gone")}); err != nil {
		t.Errorf("create of Patient/gone after the group: %v", err)
	}
	if err := s.Transact(ctx, []store.Op{groupCreate("Patient", "b1")}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("create of Patient/b1 again: %v, want ErrConflict", err)
	}
}
