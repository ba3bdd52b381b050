package feed

// The change feed under a sustained bulk load: every committed version is
// processed once, and the history re-read for late commits (Config.Lag)
// stays a small multiple of what was written.

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/notify/sqlitestore"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

// countingStore counts the versions History returns.
type countingStore struct {
	store.Store
	mu   sync.Mutex
	read int
}

func (c *countingStore) History(ctx context.Context, q store.HistoryQuery) (store.Page, error) {
	pg, err := c.Store.History(ctx, q)
	c.mu.Lock()
	c.read += len(pg.Records)
	c.mu.Unlock()
	return pg, err
}

type noOutbox struct{}

func (noOutbox) Enqueue(context.Context, ...notify.Notification) error { return nil }

func TestFeedUnderLoadReadsHistoryBoundedly(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	st, ns := feedStores(t)
	cs := &countingStore{Store: st}
	seen := map[string]int{}
	p := New(Config{Store: cs, Storage: ns, Outbox: noOutbox{}, Now: clock,
		Subscriptions: func(_ context.Context, r store.Record) error { seen[verKey(r)]++; return nil }})
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	// 30 s of a bulk load, 200 versions per 100 ms, the producer run as
	// Start runs it: again after pause().
	const perTick, ticks = 200, 300
	written, n := 0, 0
	next := t0
	for tick := range ticks {
		now = t0.Add(time.Duration(tick+1) * 100 * time.Millisecond)
		ops := make([]store.Op, perTick)
		for i := range ops {
			n++
			at := now.Add(-time.Duration(perTick-i) * 100 * time.Millisecond / perTick)
			ops[i] = store.Op{Kind: store.OpCreate, Record: store.Record{Type: "Basic", ID: fmt.Sprintf("b%d", n), VersionID: 1, LastUpdated: at,
				Raw: []byte(fmt.Sprintf(`{"resourceType":"Basic","id":"b%d","code":{"text":"x"}}`, n))}}
		}
		if err := st.Transact(ctx, ops); err != nil {
			t.Fatal(err)
		}
		written += perTick
		if !now.Before(next) {
			if err := p.RunOnce(ctx); err != nil {
				t.Fatal(err)
			}
			next = now.Add(p.pause())
		}
	}
	now = now.Add(time.Minute)
	if err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if len(seen) != written {
		t.Errorf("processed %d versions, want %d", len(seen), written)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s processed %d times", k, c)
		}
	}
	// Lag 5 s re-read by passes a Lag apart: about twice what was written
	// (passes a Poll apart read it six times).
	if cs.read > 3*written {
		t.Errorf("history read %d versions for %d written (%.1f×), want at most 3×", cs.read, written, float64(cs.read)/float64(written))
	}
	t.Logf("history read %d versions for %d written (%.1f×)", cs.read, written, float64(cs.read)/float64(written))
}

// failingState fails the next SetState of the feed's cursor.
type failingState struct {
	notify.Storage
	fail bool
}

func (f *failingState) SetState(ctx context.Context, name string, b []byte) error {
	if f.fail && name == stateFeed {
		f.fail = false
		return fmt.Errorf("disk full")
	}
	return f.Storage.SetState(ctx, name, b)
}

// A pass that processed versions but failed to save its cursor: the next
// pass skips them (processed) and still moves the cursor past them, so the
// feed does not stay behind until a newer version is written.
func TestFeedCursorMovesPastVersionsOfAFailedSave(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	st, ns := feedStores(t)
	fs := &failingState{Storage: ns}
	processed := 0
	p := New(Config{Store: st, Storage: fs, Outbox: noOutbox{}, Now: clock,
		Subscriptions: func(context.Context, store.Record) error { processed++; return nil }})
	if err := p.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.RunOnce(ctx); err != nil { // first start: the cursor is now
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	at := now
	if err := st.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: store.Record{Type: "Basic", ID: "b1", VersionID: 1, LastUpdated: at,
		Raw: []byte(`{"resourceType":"Basic","id":"b1","code":{"text":"x"}}`)}}}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	fs.fail = true
	if err := p.RunOnce(ctx); err == nil {
		t.Fatal("the pass whose cursor save failed reported no error")
	}
	if err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if processed != 1 {
		t.Errorf("processed %d times, want 1", processed)
	}
	b, err := ns.State(ctx, stateFeed)
	if err != nil {
		t.Fatal(err)
	}
	var cur cursor
	if err := json.Unmarshal(b, &cur); err != nil {
		t.Fatal(err)
	}
	if cur.At.Before(at) {
		t.Errorf("cursor at %v, before the processed version at %v", cur.At, at)
	}
}

// feedStores opens an in-memory resource store and a notification store,
// closed when the test ends.
func feedStores(t *testing.T) (*sqlite.Store, *sqlitestore.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(ctx) })
	ns, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "notify.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return st, ns
}
