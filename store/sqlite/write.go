package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Writes: one goroutine owns the writer connection and applies requests in
// arrival order. Whatever is queued when it is free is applied in one
// SQLite transaction (group commit: one WAL commit, and with synchronous
// full one fsync, for all of them). The requests run one after the other
// without savepoints; when one fails, the group is rolled back and run
// again with a savepoint per request (writer.apply), so the failing
// request is undone alone and the others commit. A request returns once
// the transaction holding it committed.

type reqKind int

const (
	reqTransact reqKind = iota + 1
	reqAppend
	reqDerived
	reqLock
	reqUnlock
)

type request struct {
	ctx  context.Context
	kind reqKind
	ops  []store.Op
	recs []store.Record
	prep []prepared // of ops or recs, by index
	// SetDerived
	typ, id string
	vid     int64
	idx     *search.Index
	rel     *store.Release
	// Lock / unlock
	key, owner string
	exp, now   int64

	got     bool  // lock acquired
	held    int64 // lock not acquired: the holder's expiry (ms)
	err     error // result
	partial bool  // err reported, but the request's writes are kept (Append)
	done    chan struct{}
	// effects applied once the transaction committed
	newTypes []string
}

// reset clears what a run of r sets, so that r runs again from the start
// when its group is re-run (writer.runGroup).
func (r *request) reset() {
	r.got, r.held, r.err, r.partial, r.newTypes = false, 0, nil, false, r.newTypes[:0]
}

type writer struct {
	s     *Store
	conn  *sql.Conn
	reqs  chan *request
	quit  chan struct{}
	wg    sync.WaitGroup
	stmts map[string]*sql.Stmt
	rows  rowBuf
	// counters (tests and benchmarks): transactions and requests applied,
	// groups re-run with savepoints after a request failed
	txs, reqN, reruns atomic.Int64
	// afterFirst, in tests, runs when a group's first request is taken,
	// before the rest of the queue is drained into the group.
	afterFirst func()
	// Planner statistics (maybeOptimize): records written since they
	// were last refreshed, and when; optimizes counts the refreshes.
	sinceStats int
	statsAt    time.Time
	optimizes  atomic.Int64
}

// Statistics refresh (sqlite.org/lang_analyze.html#pragopt: long-lived
// connections run PRAGMA optimize periodically). Without it a store
// filled after it was opened keeps planning with the statistics of an
// empty database until it is reopened: an ORDER BY date then walks the
// whole date index of the type instead of sorting a patient's few
// matches (measured: 21 ms instead of 2 ms at 100k Observations).
const (
	statsEvery = 10_000           // records written
	statsGap   = 30 * time.Second // at most this often
)

// maybeOptimize refreshes the planner statistics once statsEvery records
// were written since the last time, at most every statsGap. PRAGMA
// optimize analyzes only the tables that need it, from a sample of each
// index (analysis_limit, set at open), so it costs milliseconds.
func (w *writer) maybeOptimize(batch []*request) {
	for _, r := range batch {
		w.sinceStats += len(r.ops) + len(r.recs)
		if r.kind == reqDerived {
			w.sinceStats++
		}
	}
	if w.sinceStats < statsEvery || w.s.mem || time.Since(w.statsAt) < statsGap {
		return
	}
	w.sinceStats, w.statsAt = 0, time.Now()
	if _, err := w.conn.ExecContext(context.Background(), `PRAGMA optimize=0x10002`); err != nil {
		w.s.opts.Logger.Warn("sqlite: planner statistics not refreshed", "err", err)
		return
	}
	w.optimizes.Add(1)
}

func newWriter(s *Store, conn *sql.Conn) *writer {
	w := &writer{s: s, conn: conn, reqs: make(chan *request, 1024), quit: make(chan struct{}), stmts: map[string]*sql.Stmt{}}
	w.wg.Add(1)
	go w.loop()
	return w
}

func (w *writer) stop() {
	close(w.quit)
	w.wg.Wait()
	for _, st := range w.stmts {
		st.Close()
	}
}

// do hands r to the writer and waits for its outcome. A request whose ctx
// ends while it is queued is not applied.
func (w *writer) do(ctx context.Context, r *request) error {
	if w.s.closed.Load() {
		return ErrClosed
	}
	r.ctx = ctx
	r.done = make(chan struct{})
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.quit:
		return ErrClosed
	}
	<-r.done
	return r.err
}

func (w *writer) loop() {
	defer w.wg.Done()
	max := w.s.opts.GroupMax
	for {
		var first *request
		select {
		case first = <-w.reqs:
		case <-w.quit:
			// Fail what is still queued.
			for {
				select {
				case r := <-w.reqs:
					r.err = ErrClosed
					close(r.done)
				default:
					return
				}
			}
		}
		if w.afterFirst != nil {
			w.afterFirst()
		}
		batch := []*request{first}
	drain:
		for len(batch) < max {
			select {
			case r := <-w.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		w.apply(batch)
		w.maybeOptimize(batch)
		w.s.ckpt.maybeRestart(w.conn)
	}
}

// apply runs batch in one transaction.
func (w *writer) apply(batch []*request) {
	ctx := context.Background() // the transaction carries several callers' writes
	w.txs.Add(1)
	w.reqN.Add(int64(len(batch)))
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	finish := func(err error) {
		for _, r := range live {
			if err != nil {
				r.err, r.got = err, false
			}
			close(r.done)
		}
	}
	// Optimistic first: the requests run one after the other without
	// savepoints. A savepoint copies every page it first changes into the
	// sub-journal (measured: 15% of the writer's CPU during a Bundle
	// ingest, its in-memory journal's allocations included), and requests
	// rarely fail. When one does, the transaction is rolled back and the
	// group runs again with a savepoint per request, so the failing one
	// is undone alone.
	ok, err := w.runGroup(ctx, live, false)
	if err == nil && !ok && len(live) > 1 {
		w.reruns.Add(1)
		ok, err = w.runGroup(ctx, live, true)
	}
	if err != nil {
		finish(err)
		return
	}
	if !ok {
		// One request, failed: nothing to commit.
		finish(nil)
		return
	}
	if _, err := w.exec(ctx, "COMMIT"); err != nil {
		w.rollback()
		finish(fmt.Errorf("sqlite: commit: %w", err))
		return
	}
	wake := false
	for _, r := range live {
		if r.err == nil || r.partial {
			w.s.addTypes(r.newTypes)
			if r.kind == reqUnlock {
				wake = true
			}
		}
	}
	if wake {
		w.s.wakeLockWaiters()
	}
	finish(nil)
}

// runGroup runs the requests of batch in one open transaction (it
// begins it). Without savepoints, a request failing (not partially) rolls
// the transaction back and runGroup reports !ok; with them, each request
// runs in its own, a failing one is rolled back alone, and the
// transaction stays open for the commit (ok). err is a failure of the
// transaction itself (rolled back; every request fails with it).
func (w *writer) runGroup(ctx context.Context, batch []*request, savepoints bool) (ok bool, err error) {
	if _, err := w.exec(ctx, "BEGIN IMMEDIATE"); err != nil {
		return false, fmt.Errorf("sqlite: begin: %w", err)
	}
	step := func(q, what string) error {
		if _, err := w.exec(ctx, q); err != nil {
			w.rollback()
			return fmt.Errorf("sqlite: %s: %w", what, err)
		}
		return nil
	}
	for _, r := range batch {
		r.reset()
		if savepoints {
			if err := step("SAVEPOINT g", "savepoint"); err != nil {
				return false, err
			}
		}
		r.err = w.run(ctx, r)
		if r.err != nil && !r.partial {
			if !savepoints {
				w.rollback()
				return false, nil
			}
			if err := step("ROLLBACK TO g", "rollback to savepoint"); err != nil {
				return false, err
			}
		}
		if savepoints {
			if err := step("RELEASE g", "release savepoint"); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

func (w *writer) rollback() {
	_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
}

func (w *writer) run(ctx context.Context, r *request) error {
	w.rows.reset()
	switch r.kind {
	case reqTransact:
		return w.transact(ctx, r)
	case reqAppend:
		return w.appendRecs(ctx, r)
	case reqDerived:
		return w.setDerived(ctx, r)
	case reqLock:
		return w.lock(ctx, r)
	case reqUnlock:
		_, err := w.exec(ctx, `DELETE FROM locks WHERE k = ? AND owner = ?`, r.key, r.owner)
		return err
	}
	return fmt.Errorf("sqlite: unknown request %d", r.kind)
}

// stmt is a prepared statement of the writer connection, cached by text.
func (w *writer) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := w.stmts[q]; ok {
		return st, nil
	}
	st, err := w.conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", q, err)
	}
	w.stmts[q] = st
	return st, nil
}

func (w *writer) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := w.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// cur is the current state of a resource in res.
type cur struct {
	exists  bool
	rid     int64
	vid     int64
	deleted bool
	ik      int64
}

func (w *writer) current(ctx context.Context, typ, id string) (cur, error) {
	st, err := w.stmt(ctx, `SELECT rid, vid, deleted, ik FROM res WHERE type = ? AND id = ?`)
	if err != nil {
		return cur{}, err
	}
	var c cur
	err = st.QueryRowContext(ctx, typ, id).Scan(&c.rid, &c.vid, &c.deleted, &c.ik)
	if errors.Is(err, sql.ErrNoRows) {
		return cur{}, nil
	}
	if err != nil {
		return cur{}, err
	}
	c.exists = true
	return c, nil
}

// validType: a type names a table row and is split from keys at the first
// "/", so it must be non-empty and slash-free.
func validType(t string) error {
	if t == "" || len(t) > 64 || strings.ContainsAny(t, "/\x1f") {
		return fmt.Errorf("invalid resource type %q", t)
	}
	return nil
}

// validateOps checks the shape of every op before anything is written.
func validateOps(ops []store.Op) error {
	seen := make(map[[2]string]bool, len(ops))
	for i, op := range ops {
		r := &op.Record
		bad := func(format string, args ...any) error {
			return &store.OpError{Index: i, Err: fmt.Errorf("sqlite: "+format, args...)}
		}
		if err := validType(r.Type); err != nil {
			return bad("%v", err)
		}
		if r.ID == "" {
			return bad("empty id")
		}
		if op.IfVersion < 0 || r.VersionID != op.IfVersion+1 {
			return bad("%s: version %d after %d", r.Key(), r.VersionID, op.IfVersion)
		}
		switch op.Kind {
		case store.OpCreate:
			if op.IfVersion != 0 {
				return bad("%s: create with IfVersion %d", r.Key(), op.IfVersion)
			}
			fallthrough
		case store.OpPut:
			if r.Deleted || len(r.Raw) == 0 {
				return bad("%s: a create or put needs a resource, not a tombstone", r.Key())
			}
		case store.OpDelete:
			if !r.Deleted || len(r.Raw) != 0 {
				return bad("%s: a delete is a tombstone (Deleted, no Raw)", r.Key())
			}
		default:
			return bad("%s: unknown op kind %d", r.Key(), op.Kind)
		}
		k := [2]string{r.Type, r.ID}
		if seen[k] {
			return bad("%s twice in one transaction", r.Key())
		}
		seen[k] = true
	}
	return nil
}

// Transact applies every op or none (http.html#trules) in one SQLite
// transaction. A version mismatch is an *store.OpError wrapping
// store.ErrConflict.
func (s *Store) Transact(ctx context.Context, ops []store.Op) error {
	if len(ops) == 0 {
		return nil
	}
	if err := validateOps(ops); err != nil {
		return fmt.Errorf("sqlite: transact: %w", err)
	}
	prep, err := prepareAll(len(ops), func(i int) *store.Record { return &ops[i].Record })
	if err != nil {
		return fmt.Errorf("sqlite: transact: %w", err)
	}
	return s.w.do(ctx, &request{kind: reqTransact, ops: ops, prep: prep})
}

func (w *writer) transact(ctx context.Context, r *request) error {
	for i := range r.ops {
		op := &r.ops[i]
		c, err := w.current(ctx, op.Record.Type, op.Record.ID)
		if err != nil {
			return fmt.Errorf("sqlite: transact: %w", err)
		}
		if op.Kind == store.OpCreate && c.exists || c.vid != op.IfVersion {
			return &store.OpError{Index: i, Err: fmt.Errorf("sqlite: %s version %d, expected %d: %w",
				op.Record.Key(), c.vid, op.IfVersion, store.ErrConflict)}
		}
		if err := w.writeVersion(ctx, r, &op.Record, &r.prep[i], c); err != nil {
			return &store.OpError{Index: i, Err: fmt.Errorf("sqlite: write %s: %w", op.Record.Key(), err)}
		}
	}
	if err := w.flushRows(ctx); err != nil {
		return fmt.Errorf("sqlite: transact: %w", err)
	}
	return nil
}

// Append stores version 1 of new resources, each alone: an existing id
// fails with an *store.OpError wrapping store.ErrConflict (the first such
// record is named), the others are stored. A malformed record stores
// nothing.
func (s *Store) Append(ctx context.Context, recs []store.Record) error {
	if len(recs) == 0 {
		return nil
	}
	ops := make([]store.Op, len(recs))
	for i, r := range recs {
		ops[i] = store.Op{Kind: store.OpCreate, Record: r}
	}
	for i, op := range ops {
		if err := validateOps([]store.Op{op}); err != nil {
			var oe *store.OpError
			if errors.As(err, &oe) {
				oe.Index = i
			}
			return fmt.Errorf("sqlite: append: %w", err)
		}
	}
	prep, err := prepareAll(len(recs), func(i int) *store.Record { return &recs[i] })
	if err != nil {
		return fmt.Errorf("sqlite: append: %w", err)
	}
	return s.w.do(ctx, &request{kind: reqAppend, recs: recs, prep: prep})
}

func (w *writer) appendRecs(ctx context.Context, r *request) error {
	var first error
	for i := range r.recs {
		rec := &r.recs[i]
		c, err := w.current(ctx, rec.Type, rec.ID)
		if err != nil {
			return fmt.Errorf("sqlite: append: %w", err)
		}
		if c.exists {
			if first == nil {
				first = &store.OpError{Index: i, Err: fmt.Errorf("sqlite: append %s: %w", rec.Key(), store.ErrConflict)}
			}
			continue
		}
		if err := w.writeVersion(ctx, r, rec, &r.prep[i], c); err != nil {
			return &store.OpError{Index: i, Err: fmt.Errorf("sqlite: append %s: %w", rec.Key(), err)}
		}
	}
	if err := w.flushRows(ctx); err != nil {
		return fmt.Errorf("sqlite: append: %w", err)
	}
	if first != nil {
		// The others are stored: the error is reported, the savepoint kept.
		r.partial = true
	}
	return first
}

// prepared is what a version's rows need that is computed from the record
// alone: done by the caller (Transact, Append) before the request is
// queued, so the one writer goroutine spends its time in SQLite.
type prepared struct {
	idxb, relb []byte
	ik         int64
	has        string
	srt        any
}

func prepare(rec *store.Record) (prepared, error) {
	var pv prepared
	var err error
	if pv.idxb, err = encodeIndex(&rec.Index); err != nil {
		return pv, err
	}
	if pv.relb, err = encodeRelease(&rec.Release); err != nil {
		return pv, err
	}
	if !rec.Deleted {
		pv.ik = indexBits(&rec.Index)
		pv.has, pv.srt = hasColumn(&rec.Index), sortColumn(&rec.Index)
	}
	return pv, nil
}

// prepareAll prepares the n records; one that cannot be encoded is an
// *store.OpError naming it, before anything is queued.
func prepareAll(n int, rec func(i int) *store.Record) ([]prepared, error) {
	out := make([]prepared, n)
	for i := range out {
		var err error
		if out[i], err = prepare(rec(i)); err != nil {
			return nil, &store.OpError{Index: i, Err: fmt.Errorf("sqlite: %s: %w", rec(i).Key(), err)}
		}
	}
	return out, nil
}

// writeVersion stores rec as the new current version of a resource whose
// state before was c.
func (w *writer) writeVersion(ctx context.Context, r *request, rec *store.Record, pv *prepared, c cur) error {
	lu, luns := splitTime(rec.LastUpdated)
	idxb, relb, ik, has, srt := pv.idxb, pv.relb, pv.ik, pv.has, pv.srt
	relp, relx := nullMs(rec.Release.Patient), nullMs(rec.Release.Proxy)
	rid := c.rid
	if !c.exists {
		res, err := w.exec(ctx, `INSERT INTO res(type, id, vid, lu, deleted, relp, relx, ik, has, srt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, jsonb(?))`,
			rec.Type, rec.ID, rec.VersionID, lu, rec.Deleted, relp, relx, ik, has, srt)
		if err != nil {
			return err
		}
		if rid, err = res.LastInsertId(); err != nil {
			return err
		}
	} else {
		if _, err := w.exec(ctx, `UPDATE res SET vid = ?, lu = ?, deleted = ?, relp = ?, relx = ?, ik = ?, has = ?, srt = jsonb(?) WHERE rid = ?`,
			rec.VersionID, lu, rec.Deleted, relp, relx, ik, has, srt, rid); err != nil {
			return err
		}
		if err := w.deleteRows(ctx, rid, c.ik); err != nil {
			return err
		}
	}
	var raw any
	if !rec.Deleted {
		raw = rec.Raw
	}
	res, err := w.exec(ctx, `INSERT INTO ver(rid, vid, type, id, lu, luns, deleted, relp, relx, rel, idx, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		rid, rec.VersionID, rec.Type, rec.ID, lu, luns, rec.Deleted, relp, relx, nilIfEmpty(relb), nilIfEmpty(idxb), raw)
	if err != nil {
		return err
	}
	vk, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if !rec.Deleted {
		w.rows.addIndex(rec.Type, rid, &rec.Index)
	}
	w.rows.addHistory(vk, &rec.Index)
	if !w.s.knownType(rec.Type) {
		if _, err := w.exec(ctx, `INSERT OR IGNORE INTO types(name) VALUES (?)`, rec.Type); err != nil {
			return err
		}
		r.newTypes = append(r.newTypes, rec.Type)
	}
	return nil
}

func nilIfEmpty(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// deleteRows removes the index rows of rid from the tables in bits ik.
func (w *writer) deleteRows(ctx context.Context, rid, ik int64) error {
	for _, t := range ikTables {
		if ik&t.bit == 0 {
			continue
		}
		if _, err := w.exec(ctx, `DELETE FROM `+t.table+` WHERE rid = ?`, rid); err != nil {
			return err
		}
	}
	return nil
}

// SetDerived replaces Index and/or Release of version vid (current and
// history) without a new version.
func (s *Store) SetDerived(ctx context.Context, typ, id string, vid int64, idx *search.Index, rel *store.Release) error {
	return s.w.do(ctx, &request{kind: reqDerived, typ: typ, id: id, vid: vid, idx: idx, rel: rel})
}

func (w *writer) setDerived(ctx context.Context, r *request) error {
	wrap := func(err error) error { return fmt.Errorf("sqlite: set derived %s/%s/%d: %w", r.typ, r.id, r.vid, err) }
	c, err := w.current(ctx, r.typ, r.id)
	if err != nil {
		return wrap(err)
	}
	if !c.exists {
		return wrap(store.ErrNotFound)
	}
	var vk int64
	var deleted bool
	var oldIdx []byte
	st, err := w.stmt(ctx, `SELECT vk, deleted, idx FROM ver WHERE rid = ? AND vid = ?`)
	if err != nil {
		return wrap(err)
	}
	switch err := st.QueryRowContext(ctx, c.rid, r.vid).Scan(&vk, &deleted, &oldIdx); {
	case errors.Is(err, sql.ErrNoRows):
		return wrap(store.ErrNotFound)
	case err != nil:
		return wrap(err)
	}
	current := r.vid == c.vid
	if r.idx != nil {
		idxb, err := encodeIndex(r.idx)
		if err != nil {
			return wrap(err)
		}
		old, err := decodeIndex(oldIdx)
		if err != nil {
			return wrap(err)
		}
		for _, cp := range old.Compartments {
			if _, err := w.exec(ctx, `DELETE FROM hcpt WHERE c = ? AND vk = ?`, cp, vk); err != nil {
				return wrap(err)
			}
		}
		for _, l := range old.Security {
			if _, err := w.exec(ctx, `DELETE FROM hsec WHERE l = ? AND vk = ?`, l, vk); err != nil {
				return wrap(err)
			}
		}
		if _, err := w.exec(ctx, `UPDATE ver SET idx = ? WHERE vk = ?`, nilIfEmpty(idxb), vk); err != nil {
			return wrap(err)
		}
		w.rows.addHistory(vk, r.idx)
		if current && !deleted {
			if err := w.deleteRows(ctx, c.rid, c.ik); err != nil {
				return wrap(err)
			}
			w.rows.addIndex(r.typ, c.rid, r.idx)
			if _, err := w.exec(ctx, `UPDATE res SET ik = ?, has = ?, srt = jsonb(?) WHERE rid = ?`,
				indexBits(r.idx), hasColumn(r.idx), sortColumn(r.idx), c.rid); err != nil {
				return wrap(err)
			}
		}
	}
	if r.rel != nil {
		relb, err := encodeRelease(r.rel)
		if err != nil {
			return wrap(err)
		}
		relp, relx := nullMs(r.rel.Patient), nullMs(r.rel.Proxy)
		if _, err := w.exec(ctx, `UPDATE ver SET rel = ?, relp = ?, relx = ? WHERE vk = ?`, nilIfEmpty(relb), relp, relx, vk); err != nil {
			return wrap(err)
		}
		if current {
			if _, err := w.exec(ctx, `UPDATE res SET relp = ?, relx = ? WHERE rid = ?`, relp, relx, c.rid); err != nil {
				return wrap(err)
			}
		}
	}
	if err := w.flushRows(ctx); err != nil {
		return wrap(err)
	}
	return nil
}

// indexBits is the res.ik of an index: the tables its rows go to.
func indexBits(ix *search.Index) int64 {
	var b int64
	set := func(n int, bit int64) {
		if n > 0 {
			b |= bit
		}
	}
	set(len(ix.Str), ikStr)
	set(len(ix.Tok), ikTok)
	set(len(ix.Ref), ikRef)
	set(len(ix.Date), ikDt)
	set(len(ix.Num), ikNum)
	set(len(ix.Qty), ikQty)
	set(len(ix.URI), ikURI)
	if len(ix.Comp) > 0 {
		// Component values live in the value tables too.
		b |= ikCmp | ikStr | ikTok | ikRef | ikDt | ikNum | ikQty | ikURI
	}
	set(len(ix.Compartments), ikCpt)
	set(len(ix.Security), ikSec)
	return b
}

// rowBuf collects the index rows of a request, inserted by flushRows with
// multi-row INSERTs.
type rowBuf struct {
	tabs map[string]*tabRows
}

type tabRows struct {
	cols int
	vals []any
}

// tableCols lists the insert columns of each index table.
var tableCols = map[string]string{
	"str":  "t, p, v, e, rid, cid",
	"tok":  "t, p, cf, c, s, ts, tc, tx, rid, cid",
	"ref":  `t, p, r, ri, rt, v, "is", ic, rid, cid`,
	"dt":   "t, p, lo, hi, rid, cid",
	"num":  "t, p, v, lo, hi, rid, cid",
	"qty":  "t, p, v, s, c, u, lo, hi, rid, cid",
	"uri":  "t, p, v, rid, cid",
	"cmp":  "t, p, rid, cid, parent",
	"cpt":  "c, t, rid",
	"sec":  "l, t, rid",
	"hcpt": "c, vk",
	"hsec": "l, vk",
}

// flushOrder is the order tables are written in (deterministic statements).
var flushOrder = []string{"str", "tok", "ref", "dt", "num", "qty", "uri", "cmp", "cpt", "sec", "hcpt", "hsec"}

func (b *rowBuf) reset() {
	for _, t := range b.tabs {
		t.vals = t.vals[:0]
	}
}

func (b *rowBuf) add(table string, vals ...any) {
	if b.tabs == nil {
		b.tabs = map[string]*tabRows{}
	}
	t := b.tabs[table]
	if t == nil {
		t = &tabRows{cols: len(vals)}
		b.tabs[table] = t
	}
	t.vals = append(t.vals, vals...)
}

// compSep joins a composite parameter and a component position into the
// parameter code of the component's values.
const compSep = "\x1f"

// addIndex adds the rows of the current version's index ix of resource rid.
func (b *rowBuf) addIndex(typ string, rid int64, ix *search.Index) {
	next := int64(0)
	b.addValues(typ, rid, ix, "", 0, &next)
	for _, c := range ix.Compartments {
		b.add("cpt", c, typ, rid)
	}
	for _, l := range ix.Security {
		b.add("sec", l, typ, rid)
	}
}

// addValues adds the value rows of ix at composite level prefix / cid
// (resource level: "", 0); tuples are numbered through next.
func (b *rowBuf) addValues(typ string, rid int64, ix *search.Index, prefix string, cid int64, next *int64) {
	for _, v := range ix.Str {
		e := v.Exact
		if e == "" {
			e = v.Value
		}
		b.add("str", typ, prefix+v.Param, v.Value, e, rid, cid)
	}
	for _, v := range ix.Tok {
		b.add("tok", typ, prefix+v.Param, foldKey(v.Code), v.Code, v.System, v.TypeSystem, v.TypeCode, v.Text, rid, cid)
	}
	for _, v := range ix.Ref {
		b.add("ref", typ, prefix+v.Param, v.Ref, v.ID, v.Type, v.Version, v.IDSystem, v.IDValue, rid, cid)
	}
	for _, v := range ix.Date {
		b.add("dt", typ, prefix+v.Param, msOf(v.Lo), msOf(v.Hi), rid, cid)
	}
	for _, v := range ix.Num {
		if math.IsNaN(v.Value) {
			continue // NaN satisfies no number condition
		}
		b.add("num", typ, prefix+v.Param, v.Value, finite(v.Lo), finite(v.Hi), rid, cid)
	}
	for _, v := range ix.Qty {
		if math.IsNaN(v.Value) {
			continue
		}
		b.add("qty", typ, prefix+v.Param, v.Value, v.System, v.Code, v.Unit, finite(v.Lo), finite(v.Hi), rid, cid)
	}
	for _, v := range ix.URI {
		b.add("uri", typ, prefix+v.Param, v.Value, rid, cid)
	}
	for i := range ix.Comp {
		c := &ix.Comp[i]
		*next++
		k := *next
		b.add("cmp", typ, prefix+c.Param, rid, k, cid)
		b.addValues(typ, rid, &c.Parts, prefix+c.Param+compSep, k, next)
	}
}

func finite(f float64) float64 {
	if math.IsNaN(f) {
		return 0
	}
	return f
}

// addHistory adds the compartments and labels of version vk.
func (b *rowBuf) addHistory(vk int64, ix *search.Index) {
	for _, c := range ix.Compartments {
		b.add("hcpt", c, vk)
	}
	for _, l := range ix.Security {
		b.add("hsec", l, vk)
	}
}

// chunk sizes of multi-row inserts (a few statement shapes per table).
var chunks = []int{64, 16, 4, 1}

func (w *writer) flushRows(ctx context.Context) error {
	for _, table := range flushOrder {
		t := w.rows.tabs[table]
		if t == nil || len(t.vals) == 0 {
			continue
		}
		n := len(t.vals) / t.cols
		off := 0
		for _, size := range chunks {
			for n-off/t.cols >= size {
				q := insertSQL(table, t.cols, size)
				end := off + size*t.cols
				if _, err := w.exec(ctx, q, t.vals[off:end]...); err != nil {
					return fmt.Errorf("insert into %s: %w", table, err)
				}
				off = end
			}
		}
	}
	w.rows.reset()
	return nil
}

var insertCache sync.Map // "table/size" -> SQL

func insertSQL(table string, cols, rows int) string {
	k := fmt.Sprintf("%s/%d", table, rows)
	if q, ok := insertCache.Load(k); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString("INSERT OR IGNORE INTO " + table + "(" + tableCols[table] + ") VALUES ")
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(one)
	}
	q := b.String()
	insertCache.Store(k, q)
	return q
}
