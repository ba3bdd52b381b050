package mongo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Transactions without multi-document transactions (README.md, "Transact"):
//
//  1. validate the ops;
//  2. insert a journal header (txlog, kind "h") holding the new documents
//     of the updates and deletes (in chunk documents, kind "c", beyond
//     chunkLimit); a create journals only its key;
//  3. lock every touched current document by setting its tx field, with the
//     version check in the same single-document update; a create inserts
//     its new document as placeholder (tx, pending, del: hidden from
//     readers), made race-free by the unique _id. Any failure releases
//     what was taken and reports ErrConflict;
//  4. commit: $push "committed" onto the header's decision list d (the
//     commit point; the first element is the outcome; no match: the
//     journal is gone, recovery rolled the transaction back);
//  5. copy the versions it replaces to history, replace the current
//     documents still locked by this transaction (unsetting tx) and reveal
//     the create placeholders (del false, unset tx and pending);
//  6. delete the journal (header, chunks).
//
// A crash before 4 leaves a journal without decision, which recovery rolls
// back; a crash after 4 a committed one, which it rolls forward (a create
// from its placeholder). Recovery decides an undecided journal by pushing
// "aborted": both decisions are one single-document atomic update of the
// header (on FerretDB under the process mutex) and only the first counts,
// so an owner that was only slow cannot commit after recovery rolled it
// back, and the same write tells it whether the header still exists.

// Journal document kinds and outcomes.
const (
	kindHeader   = "h"
	kindChunk    = "c"
	kindDecision = "d"

	outcomeCommitted = "committed"
	outcomeAborted   = "aborted"
)

// chunkLimit is the size of the op documents a journal keeps inline; more
// goes to chunk documents of at most chunkLimit each (MongoDB caps a
// document at 16 MiB). A variable for tests.
var chunkLimit = 12 << 20

// jkey names one touched current document; If is the expected version (0:
// a create, locked by a placeholder).
type jkey struct {
	K  string `bson:"k"`
	If int64  `bson:"if"`
}

// journal is the header document of a transaction in txlog.
type journal struct {
	ID     string     `bson:"_id"`
	Kind   string     `bson:"k"` // kindHeader
	At     time.Time  `bson:"at"`
	Owner  string     `bson:"owner"`
	Keys   []jkey     `bson:"keys"`
	Chunks int        `bson:"chunks"`
	Ops    []bson.Raw `bson:"ops,omitempty"` // inline docs of older versions
	// Blob holds the new documents inline when Chunks == 0 (packDocs).
	Blob []byte `bson:"ob,omitempty"`
	// Mode is modeInsert for a transaction of fresh creates (fast.go),
	// committed as written; "" for the lock protocol.
	Mode string `bson:"mode,omitempty"`
	// D lists the decisions pushed onto the header; the first one is the
	// outcome (see decide).
	D []string `bson:"d,omitempty"`
}

// jchunk holds part of the new documents of a large transaction.
type jchunk struct {
	ID   string     `bson:"_id"` // txid.n
	Kind string     `bson:"k"`   // kindChunk
	Tx   string     `bson:"tx"`
	At   time.Time  `bson:"at"`
	N    int        `bson:"n"`
	Ops  []bson.Raw `bson:"ops,omitempty"` // older versions
	Blob []byte     `bson:"ob,omitempty"`
}

// decision is the commit point of a transaction: its outcome.
type decision struct {
	ID      string    `bson:"_id"` // txid.d
	Kind    string    `bson:"k"`   // kindDecision
	Tx      string    `bson:"tx"`
	At      time.Time `bson:"at"`
	Outcome string    `bson:"outcome"`
}

func decisionID(txid string) string { return txid + ".d" }

func chunkID(txid string, n int) string { return txid + "." + strconv.Itoa(n) }

// tx is a transaction being applied by this process.
type tx struct {
	id     string
	ops    []store.Op
	keys   []jkey
	docs   []doc // new current documents, in op order
	chunks int   // journal chunk documents (0: inline)
}

func newTx(ops []store.Op) *tx {
	t := &tx{id: randomID(), ops: ops}
	for _, op := range ops {
		d := toDoc(op.Record)
		t.docs = append(t.docs, d)
		t.keys = append(t.keys, jkey{K: d.ID, If: op.IfVersion})
	}
	return t
}

// validateOps checks the shape of every op (store.Op contract).
func validateOps(ops []store.Op) error {
	seen := make(map[string]bool, len(ops))
	for i, op := range ops {
		bad := func(f string, a ...any) error {
			return &store.OpError{Index: i, Err: fmt.Errorf("mongo: invalid op: "+f, a...)}
		}
		r := op.Record
		if !validType(r.Type) || r.ID == "" || strings.Contains(r.ID, "/") {
			return bad("bad type %q or id %q", r.Type, r.ID)
		}
		if op.IfVersion < 0 || r.VersionID != op.IfVersion+1 {
			return bad("%s/%s: version %d does not follow %d", r.Type, r.ID, r.VersionID, op.IfVersion)
		}
		switch op.Kind {
		case store.OpCreate:
			if op.IfVersion != 0 {
				return bad("create with IfVersion %d", op.IfVersion)
			}
			fallthrough
		case store.OpPut:
			if r.Deleted || len(r.Raw) == 0 {
				return bad("%s/%s: a write needs a resource and no deleted flag", r.Type, r.ID)
			}
		case store.OpDelete:
			if !r.Deleted || len(r.Raw) != 0 {
				return bad("%s/%s: a tombstone has Deleted set and no resource", r.Type, r.ID)
			}
			if op.IfVersion == 0 {
				return bad("%s/%s: delete of an absent resource", r.Type, r.ID)
			}
		default:
			return bad("unknown kind %d", op.Kind)
		}
		k := r.Key()
		if seen[k] {
			return bad("%s written twice in one transaction", k)
		}
		seen[k] = true
	}
	return nil
}

// prepare writes the journal and takes the locks (steps 2 and 3). On
// failure nothing of the transaction is left behind (or, if even the
// clean-up fails, a prepared journal that recovery rolls back).
func (s *Store) prepare(ctx context.Context, t *tx) error {
	// The collections of each type touched, created on first use.
	if err := s.ensureKeys(ctx, t.keys); err != nil {
		return err
	}
	if err := s.writeJournal(ctx, t, ""); err != nil {
		s.cleanup(ctx, t, "journal write failed")
		return err
	}
	for attempt := 0; ; attempt++ {
		idx, err := s.lockAll(ctx, t)
		if err == nil && idx < 0 {
			return nil
		}
		s.cleanup(ctx, t, "lock failed")
		if err != nil {
			return err
		}
		// A lock may be left by a transaction whose process died: recover
		// such journals (older than the lease) and try once more.
		if attempt == 0 {
			if n, rerr := s.recoverHolders(ctx, t); rerr == nil && n > 0 {
				if err := s.writeJournal(ctx, t, ""); err != nil {
					s.cleanup(ctx, t, "journal write failed")
					return err
				}
				continue
			}
		}
		return &store.OpError{Index: idx, Err: fmt.Errorf("mongo: %s: %w", t.keys[idx].K, store.ErrConflict)}
	}
}

// cleanup releases the locks of t and deletes its journal (owner-side
// rollback of an uncommitted transaction). Errors are logged: a journal
// left behind is rolled back by recovery.
func (s *Store) cleanup(ctx context.Context, t *tx, why string) {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.rollback(bg, t.id, t.keys, t.chunks); err != nil {
		s.log.Warn("mongo: transaction clean-up failed; recovery will finish it",
			"tx", t.id, "reason", why, "err", err)
	}
}

// writeJournal writes the journal of t: in mode "" the new documents of
// its updates and deletes (a create's document is its placeholder), in
// modeInsert every document, and the decision "committed" with it.
func (s *Store) writeJournal(ctx context.Context, t *tx, mode string) error {
	var chunks [][][]byte
	var cur [][]byte
	size := 0
	for i, d := range t.docs {
		if t.keys[i].If == 0 && mode != modeInsert {
			continue // a create's document is its placeholder
		}
		raw, err := bson.Marshal(d)
		if err != nil {
			return fmt.Errorf("mongo: encode %s: %w", d.ID, err)
		}
		if size+len(raw) > chunkLimit && len(cur) > 0 {
			chunks = append(chunks, cur)
			cur, size = nil, 0
		}
		cur = append(cur, raw)
		size += len(raw)
	}
	chunks = append(chunks, cur)
	now := s.now().UTC()
	j := journal{ID: t.id, Kind: kindHeader, At: now, Owner: s.owner, Keys: t.keys, Mode: mode}
	if mode == modeInsert {
		j.D = []string{outcomeCommitted}
	}
	if len(chunks) == 1 {
		j.Blob = packDocs(chunks[0])
	} else {
		// Header first: a recoverer that finds chunks always finds the
		// header (or deletes chunks older than the lease that have none).
		j.Chunks = len(chunks)
	}
	t.chunks = j.Chunks
	if _, err := s.txlog.InsertOne(ctx, j); err != nil {
		return fmt.Errorf("mongo: write journal: %w", err)
	}
	if j.Chunks > 0 {
		for n, c := range chunks {
			ch := jchunk{ID: chunkID(t.id, n), Kind: kindChunk, Tx: t.id, At: now, N: n, Blob: packDocs(c)}
			if _, err := s.txlog.InsertOne(ctx, ch); err != nil {
				return fmt.Errorf("mongo: write journal chunk: %w", err)
			}
		}
	}
	return nil
}

// lockAll locks every touched document (step 3). It returns the index of
// the first op that could not be locked (a version conflict), or -1.
func (s *Store) lockAll(ctx context.Context, t *tx) (int, error) {
	var upd []condWrite
	var updIdx []int
	var ins []any
	var insIdx []int
	for i, k := range t.keys {
		if k.If == 0 {
			// The placeholder is the new document itself, hidden from
			// readers (del, pending) until apply clears the flags.
			d := t.docs[i]
			d.Del, d.Pending, d.Tx = true, true, t.id
			ins = append(ins, d)
			insIdx = append(insIdx, i)
			continue
		}
		upd = append(upd, condWrite{ID: k.K, If: []cond{eq("v", k.If), absent("tx")},
			Update: bson.D{{Key: "$set", Value: bson.D{{Key: "tx", Value: t.id}}}}})
		updIdx = append(updIdx, i)
	}
	conflict := -1
	note := func(i int) {
		if conflict < 0 || i < conflict {
			conflict = i
		}
	}
	// Placeholders: one InsertMany per type.
	types, groups := groupByType(len(ins), func(j int) string { return t.keys[insIdx[j]].K })
	for _, typ := range types {
		g := groups[typ]
		docs := make([]any, len(g))
		for n, j := range g {
			docs[n] = ins[j]
		}
		_, err := s.resColl(typ).InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		var bwe mongo.BulkWriteException
		switch {
		case err == nil:
		case errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0:
			for _, we := range bwe.WriteErrors {
				i := insIdx[g[we.Index]]
				if we.Code != 11000 {
					return -1, fmt.Errorf("mongo: lock %s: %w", t.keys[i].K, err)
				}
				note(i)
			}
		default:
			return -1, fmt.Errorf("mongo: lock: %w", err)
		}
	}
	if len(upd) > 0 {
		matched, n, err := s.writeEachRes(ctx, upd)
		if err != nil {
			return -1, fmt.Errorf("mongo: lock: %w", err)
		}
		if n != len(upd) {
			if matched == nil { // MongoDB counts only: find out which we hold
				keys := make([]string, len(updIdx))
				for j, i := range updIdx {
					keys[j] = t.keys[i].K
				}
				held, err := s.heldBy(ctx, keys, t.id)
				if err != nil {
					return -1, err
				}
				matched = make([]bool, len(updIdx))
				for j, i := range updIdx {
					matched[j] = held[t.keys[i].K]
				}
			}
			for j, ok := range matched {
				if !ok {
					note(updIdx[j])
				}
			}
		}
	}
	return conflict, nil
}

// commit inserts the decision "committed" (step 4, the commit point),
// then applies the transaction and deletes its journal (steps 5 and 6).
// From the commit point on, the caller's cancellation no longer stops the
// work.
func (s *Store) commit(ctx context.Context, t *tx) error {
	if err := ctx.Err(); err != nil {
		s.cleanup(ctx, t, "cancelled")
		return fmt.Errorf("mongo: transact: %w", err)
	}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.lease)
	defer cancel()
	outcome, err := s.decide(bg, t.id, outcomeCommitted)
	if errors.Is(err, errJournalGone) {
		// Recovery rolled the transaction back and deleted its journal
		// before this decision (only the owner decides "committed").
		return s.lateCommit(bg, t)
	}
	if err != nil {
		// Unknown outcome: the journal decides; recovery finishes it.
		return fmt.Errorf("mongo: commit transaction %s (outcome left to recovery): %w", t.id, err)
	}
	if outcome != outcomeCommitted {
		s.cleanup(ctx, t, "aborted by recovery")
		return fmt.Errorf("mongo: transaction %s was rolled back by recovery (lease %s expired)", t.id, s.lease)
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		if last = s.apply(bg, t.id, t.keys, t.docs, t.chunks); last == nil {
			return nil
		}
	}
	return fmt.Errorf("mongo: transaction %s committed but not yet applied (recovery will finish it): %w", t.id, last)
}

// lateCommit handles a commit decision inserted after the journal was
// recovered: either recovery had rolled the transaction back (before the
// decision) or it rolled it forward (after it).
func (s *Store) lateCommit(ctx context.Context, t *tx) error {
	d := t.docs[0]
	var cur doc
	err := s.resColl(d.T).FindOne(ctx, bson.D{{Key: "_id", Value: d.ID}}).Decode(&cur)
	if err == nil && sameVersion(cur, d) {
		return nil // rolled forward by recovery
	}
	var h doc // rolled forward, and superseded since
	err = s.histColl(d.T).FindOne(ctx, bson.D{{Key: "_id", Value: historyID(d.T, d.I, d.V)}}).Decode(&h)
	if err == nil && sameVersion(h, d) {
		return nil
	}
	return fmt.Errorf("mongo: transaction %s was rolled back by recovery (lease %s expired)", t.id, s.lease)
}

// errJournalGone: the header of the journal no longer exists (the
// transaction was recovered and its journal deleted).
var errJournalGone = errors.New("mongo: journal gone")

// decide records outcome for transaction id unless it is decided
// already, and returns the outcome that holds. The decision is a $push
// onto the header's list d, the first element of which is the outcome:
// one single-document atomic update (on FerretDB under the mutex of this
// process), so of the owner's "committed" and a recoverer's "aborted"
// exactly the first counts, and it is the same command that tells the
// owner whether the header still exists (errJournalGone).
func (s *Store) decide(ctx context.Context, id, outcome string) (string, error) {
	if s.serial != nil {
		s.serial.Lock()
		defer s.serial.Unlock()
	}
	var j struct {
		D []string `bson:"d"`
	}
	err := s.txlog.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$push", Value: bson.D{{Key: "d", Value: outcome}}}},
		// No projection: FerretDB v1.24's findAndModify has none.
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&j)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", errJournalGone
	}
	if err != nil {
		return "", err
	}
	if len(j.D) == 0 {
		return "", fmt.Errorf("mongo: decide %s: no decision recorded", id)
	}
	return j.D[0], nil
}

// apply writes the documents of a committed transaction and deletes its
// journal (steps 5 and 6). docs holds the new document of each key, or a
// zero doc (ID "") for a create already applied. It is idempotent:
// recovery repeats it.
func (s *Store) apply(ctx context.Context, id string, keys []jkey, docs []doc, chunks int) error {
	if err := s.ensureKeys(ctx, keys); err != nil {
		return err
	}
	// The versions replaced, still locked by this transaction unless
	// replaced already (then history has them: it goes first).
	var upd []string
	for i, d := range docs {
		if d.ID != "" && keys[i].If > 0 {
			upd = append(upd, d.ID)
		}
	}
	olds, err := s.docsByIDRes(ctx, upd)
	if err != nil {
		return fmt.Errorf("mongo: read replaced versions: %w", err)
	}
	var hist []doc
	var repl []condWrite
	for i, d := range docs {
		if d.ID == "" {
			continue
		}
		if keys[i].If > 0 {
			if raw, ok := olds[d.ID]; ok && condHolds(raw, []cond{eq("tx", id), eq("v", keys[i].If)}) {
				var old doc
				if err := bson.Unmarshal(raw, &old); err != nil {
					return fmt.Errorf("mongo: read replaced version %s: %w", d.ID, err)
				}
				hist = append(hist, old.historyDoc())
			}
		}
		if keys[i].If == 0 {
			// The placeholder is the document: reveal it.
			repl = append(repl, condWrite{ID: d.ID, If: []cond{eq("tx", id)}, Update: bson.D{
				{Key: "$set", Value: bson.D{{Key: "del", Value: false}}},
				{Key: "$unset", Value: bson.D{{Key: "tx", Value: ""}, {Key: "pending", Value: ""}}},
			}})
			continue
		}
		cur := d
		cur.Tx, cur.Pending = "", false
		repl = append(repl, condWrite{ID: d.ID, If: []cond{eq("tx", id)}, Replace: cur})
	}
	// History first: no version is ever missing from both collections.
	if err := s.putHistory(ctx, hist); err != nil {
		return err
	}
	if _, _, err := s.writeEachRes(ctx, repl); err != nil {
		return fmt.Errorf("mongo: write current versions: %w", err)
	}
	return s.deleteJournal(ctx, id, chunks)
}

// onlyDuplicates reports whether every write error of err is a duplicate
// key (the document is already there: a repeated apply).
func onlyDuplicates(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 {
			return false
		}
	}
	return true
}

// errChunksGone: a committed journal lost chunks, which only its deletion
// after a complete apply does.
var errChunksGone = errors.New("mongo: journal chunks gone")
