package mongo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

func searchSort(p string) []search.SortKey { return []search.SortKey{{Param: p}} }

// reopen opens a second Store on the database of s (another process,
// or the same one after a restart) with its own options.
func reopen(t *testing.T, s *Store, opts Options) *Store {
	t.Helper()
	s2, err := Open(context.Background(), embeddedURI, s.db.Name(), opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = s2.Close(context.Background()) })
	return s2
}

func basic(id string, v int64, note string) store.Record {
	return store.Record{Type: "Basic", ID: id, VersionID: v, LastUpdated: time.Unix(1700000000+v, 0),
		Raw: []byte(fmt.Sprintf(`{"resourceType":"Basic","id":%q,"note":%q}`, id, note))}
}

// crashedTx leaves a transaction of s as a process killed after step
// 3 (committed=false) or after step 4 (committed=true) would: it updates
// Basic/a from v1 to v2 and creates Basic/b.
func crashedTx(t *testing.T, s *Store, committed bool) *tx {
	t.Helper()
	ctx := context.Background()
	tr := newTx([]store.Op{
		{Kind: store.OpPut, Record: basic("a", 2, "a2"), IfVersion: 1},
		{Kind: store.OpCreate, Record: basic("b", 1, "b1")},
	})
	if err := s.prepare(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if committed {
		if o, err := s.decide(ctx, tr.id, outcomeCommitted); err != nil || o != outcomeCommitted {
			t.Fatalf("commit: %v %v", o, err)
		}
	}
	return tr
}

func count(t *testing.T, s *Store, coll string, filter bson.D) int64 {
	t.Helper()
	n, err := s.db.Collection(coll).CountDocuments(context.Background(), filter)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func checkRolledBack(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	if r, err := s.Read(ctx, "Basic", "a"); err != nil || r.VersionID != 1 {
		t.Errorf("Basic/a = v%d, %v; want v1", r.VersionID, err)
	}
	if _, err := s.Read(ctx, "Basic", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Basic/b: %v, want ErrNotFound", err)
	}
	if n := count(t, s, collTxlog, bson.D{}) + count(t, s, resPrefix+"Basic", bson.D{{Key: "tx", Value: bson.D{{Key: "$exists", Value: true}}}}); n != 0 {
		t.Errorf("%d journals or locks left", n)
	}
	if n := count(t, s, resPrefix+"Basic", bson.D{{Key: "_id", Value: "Basic/b"}}); n != 0 {
		t.Errorf("placeholder of Basic/b left")
	}
}

func checkRolledForward(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	if r, err := s.Read(ctx, "Basic", "a"); err != nil || r.VersionID != 2 || !strings.Contains(string(r.Raw), "a2") {
		t.Errorf("Basic/a = v%d %s, %v; want v2", r.VersionID, r.Raw, err)
	}
	if r, err := s.Read(ctx, "Basic", "b"); err != nil || r.VersionID != 1 {
		t.Errorf("Basic/b = v%d, %v; want v1", r.VersionID, err)
	}
	if _, err := s.VRead(ctx, "Basic", "a", 2); err != nil {
		t.Errorf("VRead Basic/a/2: %v", err)
	}
	if n := count(t, s, collTxlog, bson.D{}) + count(t, s, resPrefix+"Basic", bson.D{{Key: "tx", Value: bson.D{{Key: "$exists", Value: true}}}}); n != 0 {
		t.Errorf("%d journals or locks left", n)
	}
}

func setup(t *testing.T, opts Options) *Store {
	s := openTest(t, embeddedURI, opts)
	if err := s.Transact(context.Background(), []store.Op{{Kind: store.OpCreate, Record: basic("a", 1, "a1")}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// While a transaction is in flight, readers see the old version and no
// placeholder; a competing write conflicts.
func TestInFlightIsolation(t *testing.T) {
	ctx := context.Background()
	s := setup(t, Options{})
	crashedTx(t, s, false)
	if r, err := s.Read(ctx, "Basic", "a"); err != nil || r.VersionID != 1 {
		t.Errorf("Read locked Basic/a = v%d, %v; want v1", r.VersionID, err)
	}
	if _, err := s.Read(ctx, "Basic", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read placeholder: %v, want ErrNotFound", err)
	}
	p, err := s.Search(ctx, store.Query{Count: 10, Total: true})
	if err != nil || p.Total != 1 || len(p.Records) != 1 {
		t.Errorf("Search with a placeholder: %v total %d", err, p.Total)
	}
	var n int
	if err := s.ForEach(ctx, "", func(store.Record) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("ForEach: %d records, %v", n, err)
	}
	err = s.Transact(ctx, []store.Op{{Kind: store.OpPut, Record: basic("a", 2, "other"), IfVersion: 1}})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("write of a locked resource: %v, want ErrConflict", err)
	}
	err = s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: basic("b", 1, "other")}})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("create of a resource being created: %v, want ErrConflict", err)
	}
}

func TestRecoverAtOpen(t *testing.T) {
	for _, committed := range []bool{false, true} {
		t.Run(fmt.Sprintf("committed=%v", committed), func(t *testing.T) {
			s := setup(t, Options{})
			crashedTx(t, s, committed)
			s2 := reopen(t, s, Options{RecoverAll: true})
			if committed {
				checkRolledForward(t, s2)
			} else {
				checkRolledBack(t, s2)
			}
			// Recovery is idempotent and leaves a usable store.
			if err := s2.Recover(context.Background()); err != nil {
				t.Fatal(err)
			}
			v := int64(2)
			if committed {
				v = 3
			}
			if err := s2.Transact(context.Background(), []store.Op{{Kind: store.OpPut, Record: basic("a", v, "next"), IfVersion: v - 1}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Journals younger than the lease belong to live processes: left alone
// unless RecoverAll; recovered once the lease has passed.
func TestRecoverLease(t *testing.T) {
	ctx := context.Background()
	s := setup(t, Options{})
	crashedTx(t, s, false)
	s2 := reopen(t, s, Options{})
	if err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s2, collTxlog, bson.D{}); n != 1 {
		t.Fatalf("a fresh journal was recovered (%d left)", n)
	}
	later := func() time.Time { return time.Now().Add(DefaultLease + time.Second) }
	s3 := reopen(t, s, Options{Now: later})
	checkRolledBack(t, s3)
}

// A write that runs into the lock of a dead transaction recovers it and
// goes through.
func TestConflictRecoversStaleHolder(t *testing.T) {
	for _, committed := range []bool{false, true} {
		t.Run(fmt.Sprintf("committed=%v", committed), func(t *testing.T) {
			ctx := context.Background()
			s := setup(t, Options{})
			crashedTx(t, s, committed)
			later := func() time.Time { return time.Now().Add(DefaultLease + time.Second) }
			s2 := reopen(t, s, Options{Lease: time.Hour}) // Open leaves it alone
			s2.now = later
			s2.lease = DefaultLease
			v := int64(1)
			if committed {
				v = 2
			}
			err := s2.Transact(ctx, []store.Op{{Kind: store.OpPut, Record: basic("a", v+1, "winner"), IfVersion: v}})
			if err != nil {
				t.Fatalf("Transact past a stale lock: %v", err)
			}
			if r, _ := s2.Read(ctx, "Basic", "a"); r.VersionID != v+1 {
				t.Errorf("Basic/a v%d, want v%d", r.VersionID, v+1)
			}
			_, err = s2.Read(ctx, "Basic", "b")
			if committed != (err == nil) {
				t.Errorf("Basic/b after recovery: %v (committed=%v)", err, committed)
			}
		})
	}
}

// Once recovery has rolled a transaction back, its owner cannot commit it.
func TestRecoveryFencesOwner(t *testing.T) {
	ctx := context.Background()
	s := setup(t, Options{})
	tr := crashedTx(t, s, false)
	s2 := reopen(t, s, Options{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	checkRolledBack(t, s2)
	if err := s.commit(ctx, tr); err == nil || !strings.Contains(err.Error(), "rolled back by recovery") {
		t.Fatalf("commit after recovery: %v, want rolled back", err)
	}
	checkRolledBack(t, s)
}

// Large transactions split their journal into chunks; recovery reads them.
func TestChunkedJournal(t *testing.T) {
	old := chunkLimit
	chunkLimit = 1500
	t.Cleanup(func() { chunkLimit = old })
	ctx := context.Background()
	s := setup(t, Options{})
	// Creates journal no document (their placeholders hold it): chunk the
	// documents of updates.
	var ops []store.Op
	for i := 0; i < 8; i++ {
		r := basic(fmt.Sprintf("c%d", i), 1, "small")
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: r})
	}
	if err := s.Transact(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		ops[i] = store.Op{Kind: store.OpPut, IfVersion: 1, Record: basic(fmt.Sprintf("c%d", i), 2, strings.Repeat("z", 600))}
	}
	tr := newTx(ops)
	if err := s.prepare(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, collTxlog, bson.D{{Key: "tx", Value: tr.id}}); n < 3 {
		t.Fatalf("%d chunks, want >= 3", n)
	}
	if _, err := s.decide(ctx, tr.id, outcomeCommitted); err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t, s, Options{RecoverAll: true})
	for i := 0; i < 8; i++ {
		r, err := s2.Read(ctx, "Basic", fmt.Sprintf("c%d", i))
		if err != nil || !strings.Contains(string(r.Raw), "zzz") {
			t.Errorf("c%d: %v", i, err)
		}
	}
	if n := count(t, s2, collTxlog, bson.D{}); n != 0 {
		t.Errorf("%d journal documents left", n)
	}
	// And through Transact.
	for i := range ops {
		ops[i].IfVersion, ops[i].Record.VersionID = 2, 3
	}
	if err := s2.Transact(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if r, err := s2.Read(ctx, "Basic", "c7"); err != nil || r.VersionID != 3 {
		t.Errorf("c7 = v%d, %v; want v3", r.VersionID, err)
	}
	// Chunks of a writer that died before its header was written... or
	// whose header is gone: deleted once older than the lease.
	longAgo := time.Now().Add(-time.Hour)
	if _, err := s2.txlog.InsertOne(ctx, jchunk{ID: "dead.0", Kind: kindChunk, Tx: "dead", At: longAgo}); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.txlog.InsertOne(ctx, decision{ID: "gone.d", Kind: kindDecision, Tx: "gone", At: longAgo, Outcome: outcomeCommitted}); err != nil {
		t.Fatal(err)
	}
	if err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s2, collTxlog, bson.D{}); n != 0 {
		t.Errorf("orphan chunk or decision not deleted")
	}
}

// A cursor only continues the query shape that issued it.
func TestCursorBinding(t *testing.T) {
	ctx := context.Background()
	s := setup(t, Options{})
	for i := 0; i < 3; i++ {
		if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: basic(fmt.Sprintf("x%d", i), 1, "")}}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 1})
	if err != nil || p.Next == "" {
		t.Fatal(err)
	}
	h, err := s.History(ctx, store.HistoryQuery{Count: 1})
	if err != nil || h.Next == "" {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		err  error
	}{
		{"other types", func() error {
			_, err := s.Search(ctx, store.Query{Types: []string{"Patient"}, Count: 1, Cursor: p.Next})
			return err
		}()},
		{"other sort", func() error {
			_, err := s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 1, Cursor: p.Next, Sort: searchSort("_lastUpdated")})
			return err
		}()},
		{"history cursor in search", func() error {
			_, err := s.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 1, Cursor: h.Next})
			return err
		}()},
		{"search cursor in history", func() error {
			_, err := s.History(ctx, store.HistoryQuery{Count: 1, Cursor: p.Next})
			return err
		}()},
		{"other store's key", func() error {
			s2 := *s
			s2.key = []byte("0123456789abcdef0123456789abcdef")
			_, err := s2.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 1, Cursor: p.Next})
			return err
		}()},
	}
	for _, b := range bad {
		if !errors.Is(b.err, store.ErrBadCursor) {
			t.Errorf("%s: %v, want ErrBadCursor", b.name, b.err)
		}
	}
	// Another process of the same database accepts it.
	s2 := reopen(t, s, Options{})
	if _, err := s2.Search(ctx, store.Query{Types: []string{"Basic"}, Count: 1, Cursor: p.Next}); err != nil {
		t.Errorf("cursor in another Store of the same database: %v", err)
	}
}

// Open creates the indexes (MongoDB flavor) idempotently, mquery's included.
func TestIndexes(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, embeddedURI, Options{flavor: flavorMongoDBOnFerretDB})
	if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: basic("a", 1, "a1")}}); err != nil {
		t.Fatal(err)
	}
	reopen(t, s, Options{flavor: flavorMongoDBOnFerretDB})
	cur, err := s.resColl("Basic").Indexes().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Key bson.D `bson:"key"`
	}
	if err := cur.All(ctx, &got); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, g := range got {
		have[keyString(g.Key)] = true
	}
	want := []bson.D{{{Key: "t", Value: 1}, {Key: "i", Value: 1}}}
	for _, m := range mquery.Indexes() {
		want = append(want, m.Keys.(bson.D))
	}
	for _, w := range want {
		if !have[keyString(w)] {
			t.Errorf("index %s missing", keyString(w))
		}
	}
}

func keyString(d bson.D) string {
	var b strings.Builder
	for _, e := range d {
		fmt.Fprintf(&b, "%s:%v,", e.Key, e.Value)
	}
	return b.String()
}
