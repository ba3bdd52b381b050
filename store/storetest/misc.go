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

// Cases of locks, ForEach, SetDerived and Ping.

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
	idx := search.Index{Tok: []search.TokValue{{Param: "code", System: "http://loinc.org", Code: "1234-5"}}, Compartments: []string{"Patient/p"}}
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
