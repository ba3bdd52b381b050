package mongo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/store"
)

// eachPath runs fn on the FerretDB flavor and on the MongoDB paths that
// run on FerretDB (flavorMongoDBOnFerretDB).
func eachPath(t *testing.T, fn func(t *testing.T, s *Store)) {
	for _, f := range testFlavors {
		t.Run(f.String(), func(t *testing.T) { fn(t, openTest(t, embeddedURI, Options{flavor: f})) })
	}
}

// An insert-mode transaction (creates of fresh ids) that meets an
// existing id fails whole: its other documents are gone, the existing
// resource is untouched, no journal is left.
func TestInsertModeCollision(t *testing.T) {
	eachPath(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: basic("x", 1, "first")}}); err != nil {
			t.Fatal(err)
		}
		obs := basic("b", 1, "b")
		obs.Type = "Observation"
		err := s.Transact(ctx, []store.Op{
			{Kind: store.OpCreate, Record: basic("a", 1, "a")},
			{Kind: store.OpCreate, Record: basic("x", 1, "second")},
			{Kind: store.OpCreate, Record: obs},
		})
		var oe *store.OpError
		if !errors.As(err, &oe) || oe.Index != 1 || !errors.Is(err, store.ErrConflict) {
			t.Fatalf("err = %v, want ErrConflict at op 1", err)
		}
		for _, k := range [][2]string{{"Basic", "a"}, {"Observation", "b"}} {
			if _, err := s.Read(ctx, k[0], k[1]); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s/%s after the failed transaction: %v", k[0], k[1], err)
			}
		}
		if r, err := s.Read(ctx, "Basic", "x"); err != nil || string(r.Raw) != string(basic("x", 1, "first").Raw) {
			t.Errorf("Basic/x = %s, %v", r.Raw, err)
		}
		if n := count(t, s, collTxlog, bson.D{}); n != 0 {
			t.Errorf("%d journal documents left", n)
		}
	})
}

// A history copy of the current version (an update cut between its two
// writes) is listed once, by instance, type and _at history, and the next
// update completes it.
func TestHistoryCopyOfCurrent(t *testing.T) {
	eachPath(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		mustWrite := func(op store.Op) {
			t.Helper()
			if err := s.Transact(ctx, []store.Op{op}); err != nil {
				t.Fatal(err)
			}
		}
		mustWrite(store.Op{Kind: store.OpCreate, Record: basic("p", 1, "v1")})
		mustWrite(store.Op{Kind: store.OpPut, Record: basic("p", 2, "v2"), IfVersion: 1})
		if err := s.putHistory(ctx, []doc{toDoc(basic("p", 2, "v2")).historyDoc()}); err != nil {
			t.Fatal(err)
		}
		versions := func(q store.HistoryQuery) []int64 {
			t.Helper()
			var out []int64
			for {
				p, err := s.History(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range p.Records {
					out = append(out, r.VersionID)
				}
				if p.Next == "" {
					return out
				}
				q.Cursor = p.Next
			}
		}
		for _, n := range []int{1, 2, 10} {
			if got := versions(store.HistoryQuery{Type: "Basic", ID: "p", Count: n}); len(got) != 2 || got[0] != 2 || got[1] != 1 {
				t.Errorf("instance history (count %d) = %v, want [2 1]", n, got)
			}
			if got := versions(store.HistoryQuery{Type: "Basic", Count: n}); len(got) != 2 {
				t.Errorf("type history (count %d) = %v, want [2 1]", n, got)
			}
		}
		if got := versions(store.HistoryQuery{Type: "Basic", ID: "p", At: basic("p", 2, "").LastUpdated, Count: 10}); len(got) != 1 || got[0] != 2 {
			t.Errorf("_at history = %v, want [2]", got)
		}
		mustWrite(store.Op{Kind: store.OpPut, Record: basic("p", 3, "v3"), IfVersion: 2})
		if got := versions(store.HistoryQuery{Type: "Basic", ID: "p", Count: 10}); len(got) != 3 || got[0] != 3 || got[2] != 1 {
			t.Errorf("history after the next update = %v, want [3 2 1]", got)
		}
		for v := int64(1); v <= 3; v++ {
			if r, err := s.VRead(ctx, "Basic", "p", v); err != nil || r.VersionID != v {
				t.Errorf("VRead %d: %v %v", v, r.VersionID, err)
			}
		}
		if _, err := s.VRead(ctx, "Basic", "p", 4); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("VRead 4: %v, want not found", err)
		}
	})
}

// A release state set on the current version travels with it into
// history when the next update supersedes it, and reaches a history copy
// of the current version too.
func TestDerivedStateKeptInHistory(t *testing.T) {
	eachPath(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: basic("p", 1, "v1")}}); err != nil {
			t.Fatal(err)
		}
		// A copy as an update cut short leaves it, then a $release.
		if err := s.putHistory(ctx, []doc{toDoc(basic("p", 1, "v1")).historyDoc()}); err != nil {
			t.Fatal(err)
		}
		rel := store.Release{State: "released", By: "Practitioner/1", Note: "ok"}
		if err := s.SetDerived(ctx, "Basic", "p", 1, nil, &rel); err != nil {
			t.Fatal(err)
		}
		var h doc
		if err := s.histColl("Basic").FindOne(ctx, bson.D{{Key: "_id", Value: historyID("Basic", "p", 1)}}).Decode(&h); err != nil || h.Rel.State != "released" {
			t.Fatalf("history copy: %+v %v", h.Rel, err)
		}
		if err := s.Transact(ctx, []store.Op{{Kind: store.OpPut, Record: basic("p", 2, "v2"), IfVersion: 1}}); err != nil {
			t.Fatal(err)
		}
		r, err := s.VRead(ctx, "Basic", "p", 1)
		if err != nil || r.Release.State != "released" || r.Release.Note != "ok" {
			t.Fatalf("VRead 1 after update: %+v %v", r.Release, err)
		}
		// And on a superseded version.
		rel.Note = "again"
		if err := s.SetDerived(ctx, "Basic", "p", 1, nil, &rel); err != nil {
			t.Fatal(err)
		}
		if r, _ := s.VRead(ctx, "Basic", "p", 1); r.Release.Note != "again" {
			t.Errorf("VRead 1: %+v", r.Release)
		}
		if r, _ := s.Read(ctx, "Basic", "p"); r.Release.State != "" {
			t.Errorf("current version got the old version's state: %+v", r.Release)
		}
	})
}

// Concurrent single creates share insert commands (group.go) and still
// each get their own outcome: every fresh id is created once, and of two
// creates of one id exactly one succeeds and the other is a conflict.
func TestGroupedCreates(t *testing.T) {
	eachPath(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const n = 64
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("g%d", i%(n-8)) // the last 8 repeat ids 0..7
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: basic(ids[i], 1, fmt.Sprint(i))}})
			}()
		}
		wg.Wait()
		wins := map[string]int{}
		for i, err := range errs {
			switch {
			case err == nil:
				wins[ids[i]]++
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("create %d (%s): %v", i, ids[i], err)
			}
		}
		for i := 0; i < n-8; i++ {
			id := fmt.Sprintf("g%d", i)
			if wins[id] != 1 {
				t.Errorf("%s created %d times", id, wins[id])
			}
			if _, err := s.Read(ctx, "Basic", id); err != nil {
				t.Errorf("read %s: %v", id, err)
			}
		}
		gv, _ := s.groups.Load(s.resColl("Basic").Name())
		if g := gv.(*insertGroup); g.largest < 2 {
			t.Errorf("no insert took more than one create (largest %d)", g.largest)
		}
		// A cancelled create does not fail the others of its group, and
		// the group keeps working after it.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_ = s.Transact(cctx, []store.Op{{Kind: store.OpCreate, Record: basic("after-cancel", 1, "x")}})
		if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: basic("after", 1, "x")}}); err != nil {
			t.Fatal(err)
		}
	})
}
