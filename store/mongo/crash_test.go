package mongo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/embedded"
)

// The crash test: a child process (this test binary, switched by
// crashChildEnv in TestMain) runs transactions in a loop against an
// embedded FerretDB data directory and is killed with SIGKILL at random
// moments. After every kill the next child opens the store (recovery) and
// checks that every transaction is fully present or fully absent before it
// goes on; the parent checks that no transaction a child reported as
// committed was lost.
//
// Transaction k (k = 1, 2, ...) writes version k of every resource of a
// pool of crashPool Basic resources (a tombstone when k > 1 and (k+j) % 5
// == 0, so deletes and re-creates are exercised too), creates Basic/n-k and
// deletes Basic/n-(k-1): crashPool+2 ops tagged with k. Then the fast
// paths (fast.go): transaction k' creates Media/i-k-0..4 and Observation/o-k
// (insert mode), and a single write puts version k of Group/s. A child
// reports k committed after all three.

const (
	crashChildEnv = "FHIRGATE_MONGO_CRASH_DIR"
	crashPool     = 20
	crashKills    = 22
)

func crashRaw(id string, k int) []byte {
	return []byte(fmt.Sprintf(`{"resourceType":"Basic","id":%q,"meta":{"versionId":"%d"},"note":"written by tx %d","pad":%q}`,
		id, k, k, strings.Repeat("x", 300)))
}

func crashTombstone(j, k int) bool { return k > 1 && (k+j)%5 == 0 }

func crashOps(k int) []store.Op {
	lu := time.Unix(1700000000+int64(k), 0).UTC()
	var ops []store.Op
	for j := 0; j < crashPool; j++ {
		id := fmt.Sprintf("p-%d", j)
		r := store.Record{Type: "Basic", ID: id, VersionID: int64(k), LastUpdated: lu, Raw: crashRaw(id, k)}
		kind := store.OpPut
		if crashTombstone(j, k) {
			kind, r.Deleted, r.Raw = store.OpDelete, true, nil
		}
		ops = append(ops, store.Op{Kind: kind, Record: r, IfVersion: int64(k - 1)})
	}
	nid := fmt.Sprintf("n-%d", k)
	ops = append(ops, store.Op{Kind: store.OpCreate, Record: store.Record{Type: "Basic", ID: nid, VersionID: 1, LastUpdated: lu, Raw: crashRaw(nid, k)}})
	if k > 1 {
		ops = append(ops, store.Op{Kind: store.OpDelete, IfVersion: 1,
			Record: store.Record{Type: "Basic", ID: fmt.Sprintf("n-%d", k-1), VersionID: 2, LastUpdated: lu, Deleted: true}})
	}
	return ops
}

func crashInsertOps(k int) []store.Op {
	lu := time.Unix(1700000000+int64(k), 0).UTC()
	var ops []store.Op
	for j := 0; j < 5; j++ {
		id := fmt.Sprintf("i-%d-%d", k, j)
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: store.Record{Type: "Media", ID: id, VersionID: 1, LastUpdated: lu, Raw: crashRaw(id, k)}})
	}
	id := fmt.Sprintf("o-%d", k)
	return append(ops, store.Op{Kind: store.OpCreate, Record: store.Record{Type: "Observation", ID: id, VersionID: 1, LastUpdated: lu, Raw: crashRaw(id, k)}})
}

func crashSingleOp(k int) store.Op {
	lu := time.Unix(1700000000+int64(k), 0).UTC()
	kind := store.OpPut
	if k == 1 {
		kind = store.OpCreate
	}
	return store.Op{Kind: kind, IfVersion: int64(k - 1), Record: store.Record{Type: "Group", ID: "s", VersionID: int64(k), LastUpdated: lu, Raw: crashRaw("s", k)}}
}

// crashVerifyFast checks the fast paths after transaction last: insert
// transactions all-or-nothing (1..last-1 present, last+1.. absent), and
// Group/s at version last-1 or last with every version in history, once.
func crashVerifyFast(ctx context.Context, s *Store, last int) error {
	insertDone := func(k int) (bool, error) {
		n := 0
		for _, op := range crashInsertOps(k) {
			r, err := s.Read(ctx, op.Record.Type, op.Record.ID)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return false, err
			case string(r.Raw) != string(op.Record.Raw):
				return false, fmt.Errorf("%s: raw %s", op.Record.Key(), r.Raw)
			default:
				n++
			}
		}
		if n != 0 && n != len(crashInsertOps(k)) {
			return false, fmt.Errorf("half an insert transaction %d: %d of %d resources", k, n, len(crashInsertOps(k)))
		}
		return n > 0, nil
	}
	cur, err := insertDone(last)
	if err != nil {
		return err
	}
	if last > 1 {
		if ok, err := insertDone(last - 1); err != nil || !ok {
			return fmt.Errorf("insert transaction %d missing after transaction %d (%v)", last-1, last, err)
		}
	}
	if ok, err := insertDone(last + 1); err != nil || ok {
		return fmt.Errorf("insert transaction %d present after transaction %d (%v)", last+1, last, err)
	}
	want := int64(max(last-1, 0))
	if cur {
		want = int64(last)
	}
	p, err := s.Search(ctx, store.Query{Types: []string{"Observation"}, Total: true})
	if err != nil {
		return err
	}
	if p.Total != want {
		return fmt.Errorf("%d insert transactions applied, want %d", p.Total, want)
	}
	r, err := s.Read(ctx, "Group", "s")
	v := int64(0)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		v = r.VersionID
	}
	if v < int64(last)-1 || v > int64(last) {
		return fmt.Errorf("Group/s at version %d after transaction %d", v, last)
	}
	h, err := s.History(ctx, store.HistoryQuery{Type: "Group", ID: "s", Count: 1000})
	if err != nil {
		return err
	}
	if len(h.Records) != int(v) {
		return fmt.Errorf("history of Group/s has %d versions, want %d", len(h.Records), v)
	}
	for i, hr := range h.Records {
		if hr.VersionID != v-int64(i) || string(hr.Raw) != string(crashRaw("s", int(hr.VersionID))) {
			return fmt.Errorf("history of Group/s: entry %d is version %d", i, hr.VersionID)
		}
	}
	return nil
}

// crashVerify checks the all-or-nothing invariant and returns the number
// of the last transaction applied.
func crashVerify(ctx context.Context, s *Store) (int, error) {
	// Nothing of a transaction may linger after recovery.
	if n, err := s.txlog.CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
		return 0, fmt.Errorf("txlog has %d documents after recovery (%v)", n, err)
	}
	if n, err := s.resColl("Basic").CountDocuments(ctx, bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "tx", Value: bson.D{{Key: "$exists", Value: true}}}},
		bson.D{{Key: "pending", Value: bson.D{{Key: "$exists", Value: true}}}},
	}}}); err != nil || n != 0 {
		return 0, fmt.Errorf("%d locked or placeholder documents after recovery (%v)", n, err)
	}
	last := -1
	for j := 0; j < crashPool; j++ {
		id := fmt.Sprintf("p-%d", j)
		r, err := s.Read(ctx, "Basic", id)
		v := 0
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return 0, err
		default:
			v = int(r.VersionID)
		}
		if last >= 0 && v != last {
			return 0, fmt.Errorf("half a transaction: Basic/%s is at version %d, Basic/p-0 at %d", id, v, last)
		}
		last = v
		if v == 0 {
			continue
		}
		if r.Deleted != crashTombstone(j, v) {
			return 0, fmt.Errorf("Basic/%s v%d: deleted=%v", id, v, r.Deleted)
		}
		if !r.Deleted && string(r.Raw) != string(crashRaw(id, v)) {
			return 0, fmt.Errorf("Basic/%s v%d: raw %s", id, v, r.Raw)
		}
		if _, err := s.VRead(ctx, "Basic", id, int64(v)); err != nil {
			return 0, fmt.Errorf("Basic/%s v%d missing in history: %w", id, v, err)
		}
	}
	if _, err := s.VRead(ctx, "Basic", "p-0", int64(last+1)); !errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("history has version %d of Basic/p-0 beyond the current %d (%v)", last+1, last, err)
	}
	if _, err := s.Read(ctx, "Basic", fmt.Sprintf("n-%d", last+1)); !errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("Basic/n-%d of an unapplied transaction is visible (%v)", last+1, err)
	}
	if last > 0 {
		r, err := s.Read(ctx, "Basic", fmt.Sprintf("n-%d", last))
		if err != nil || r.Deleted || r.VersionID != 1 {
			return 0, fmt.Errorf("Basic/n-%d: %v deleted=%v v%d", last, err, r.Deleted, r.VersionID)
		}
	}
	if last > 1 {
		r, err := s.Read(ctx, "Basic", fmt.Sprintf("n-%d", last-1))
		if err != nil || !r.Deleted || r.VersionID != 2 {
			return 0, fmt.Errorf("Basic/n-%d: %v deleted=%v v%d", last-1, err, r.Deleted, r.VersionID)
		}
	}
	alive := 0
	if last > 0 {
		alive = 1 // n-last
		for j := 0; j < crashPool; j++ {
			if !crashTombstone(j, last) {
				alive++
			}
		}
	}
	p, err := s.Search(ctx, store.Query{Types: []string{"Basic"}, Total: true})
	if err != nil {
		return 0, err
	}
	if p.Total != int64(alive) {
		return 0, fmt.Errorf("search finds %d Basic resources after tx %d, want %d", p.Total, last, alive)
	}
	return last, nil
}

// recoveryCounter is a slog.Handler counting recovery messages.
type recoveryCounter struct{ back, forward atomic.Int64 }

func (c *recoveryCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *recoveryCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *recoveryCounter) WithGroup(string) slog.Handler            { return c }
func (c *recoveryCounter) Handle(_ context.Context, r slog.Record) error {
	switch {
	case strings.Contains(r.Message, "rolling back"):
		c.back.Add(1)
	case strings.Contains(r.Message, "rolling forward"):
		c.forward.Add(1)
	}
	return nil
}

// crashChild is the process that gets killed.
func crashChild() {
	fail := func(f string, a ...any) {
		fmt.Printf("FAIL "+f+"\n", a...)
		os.Exit(1)
	}
	ctx := context.Background()
	srv, err := embedded.Start(ctx, os.Getenv(crashChildEnv), "", nil)
	if err != nil {
		fail("start: %v", err)
	}
	rec := &recoveryCounter{}
	s, err := Open(ctx, srv.URI, "crash", Options{RecoverAll: true, Logger: slog.New(rec)})
	if err != nil {
		fail("open: %v", err)
	}
	fmt.Printf("recovered %d %d\n", rec.back.Load(), rec.forward.Load())
	last, err := crashVerify(ctx, s)
	if err != nil {
		fail("verify: %v", err)
	}
	if err := crashVerifyFast(ctx, s, last); err != nil {
		fail("verify fast paths: %v", err)
	}
	fmt.Printf("verified %d\n", last)
	// Finish the fast-path writes of transaction last, cut by the kill.
	if r, err := s.Read(ctx, "Observation", fmt.Sprintf("o-%d", last)); last > 0 && errors.Is(err, store.ErrNotFound) {
		if err := s.Transact(ctx, crashInsertOps(last)); err != nil {
			fail("insert tx %d: %v", last, err)
		}
	} else if err != nil && last > 0 {
		fail("read: %v (%v)", err, r)
	}
	if r, err := s.Read(ctx, "Group", "s"); last > 0 && (errors.Is(err, store.ErrNotFound) || (err == nil && r.VersionID < int64(last))) {
		if err := s.Transact(ctx, []store.Op{crashSingleOp(last)}); err != nil {
			fail("single write %d: %v", last, err)
		}
	}
	for k := last + 1; ; k++ {
		if err := s.Transact(ctx, crashOps(k)); err != nil {
			fail("tx %d: %v", k, err)
		}
		if err := s.Transact(ctx, crashInsertOps(k)); err != nil {
			fail("insert tx %d: %v", k, err)
		}
		if err := s.Transact(ctx, []store.Op{crashSingleOp(k)}); err != nil {
			fail("single write %d: %v", k, err)
		}
		fmt.Printf("committed %d\n", k)
	}
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes for ~20 s")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	committed := 0 // highest transaction a child reported as committed
	verified := 0
	var back, forward int // journals recovery rolled back / forward
	for kill := 0; kill < crashKills; kill++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1000)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Most kills land in the transaction loop (at a random moment
		// after the child's first commit, so every child makes progress
		// however slow the machine), some during start-up and recovery.
		var killAfter time.Duration
		early := kill%5 == 4
		if early {
			killAfter = time.Duration(rng.IntN(150)) * time.Millisecond
		} else {
			killAfter = time.Duration(rng.IntN(500)) * time.Millisecond
		}
		var timer <-chan time.Time
		if early {
			timer = time.After(killAfter)
		}
		timeout := time.After(30 * time.Second)
		killed := false
		for !killed {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child %d exited before it was killed", kill)
				}
				switch f := strings.Fields(l); {
				case strings.HasPrefix(l, "FAIL"):
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
					t.Fatalf("child %d: %s", kill, l)
				case len(f) == 2 && f[0] == "verified":
					v, _ := strconv.Atoi(f[1])
					if v < committed {
						t.Fatalf("child %d: recovered state is tx %d, but tx %d was reported committed", kill, v, committed)
					}
					verified++
				case len(f) == 2 && f[0] == "committed":
					committed, _ = strconv.Atoi(f[1])
					if timer == nil {
						timer = time.After(killAfter)
					}
				case len(f) == 3 && f[0] == "recovered":
					b, _ := strconv.Atoi(f[1])
					fw, _ := strconv.Atoi(f[2])
					back += b
					forward += fw
				}
			case <-timer:
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
				killed = true
			case <-timeout:
				_ = cmd.Process.Kill()
				t.Fatalf("child %d: no progress", kill)
			}
		}
		_ = cmd.Wait()
		for l := range lines { // lines written before the kill
			if f := strings.Fields(l); len(f) == 2 && f[0] == "committed" {
				committed, _ = strconv.Atoi(f[1])
			}
		}
	}
	// Final recovery and check in this process.
	ctx := context.Background()
	srv, err := embedded.Start(ctx, dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	s, err := Open(ctx, srv.URI, "crash", Options{RecoverAll: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	last, err := crashVerify(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := crashVerifyFast(ctx, s, last); err != nil {
		t.Fatal(err)
	}
	if last < committed {
		t.Fatalf("final state is tx %d, but tx %d was reported committed", last, committed)
	}
	if verified < crashKills*3/4 || last < crashKills/2 {
		t.Fatalf("too little progress: %d verified starts, %d transactions", verified, last)
	}
	// Kills land in every phase; over this many, recovery must have had
	// both kinds of work (else the test did not exercise it).
	if back == 0 || forward == 0 {
		t.Errorf("recovery rolled back %d and forward %d journals; want both > 0", back, forward)
	}
	t.Logf("%d kills, %d verified recoveries (%d journals rolled back, %d forward), %d transactions of %d ops",
		crashKills, verified, back, forward, last, crashPool+2)
}
