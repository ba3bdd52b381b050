package mongo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/fhirgate/fhirgate/store"
)

// The write paths that need no journal, or a journal without locks
// (README.md, "Write paths"). The current version of a resource lives only
// in res_<Type>; hist_<Type> holds the versions it superseded. So:
//
//   - one create is one InsertOne (the unique _id makes it race-free);
//   - one update or delete copies the version it replaces to history,
//     then replaces the current document on the condition that it is still
//     that version (unlocked, no SetDerived meanwhile). A crash between the
//     two leaves a history copy of the current version, which history
//     listings drop (page) and the next update overwrites;
//   - a transaction of creates of fresh ids (OpCreate: ids the server
//     generated) has nothing to lock: its journal is committed when
//     written (mode "i", every document in it), then the documents are
//     inserted. Recovery inserts what is missing. An id that exists
//     already (a collision the caller promised cannot happen) rolls the
//     transaction back: its own documents (c = its id) are deleted;
//   - every other transaction takes the journal protocol of tx.go.

// Transaction journal modes.
const modeInsert = "i"

// Transact applies ops all-or-nothing (tx.go's protocol, or a shorter
// path above when it gives the same guarantees).
func (s *Store) Transact(ctx context.Context, ops []store.Op) error {
	if len(ops) == 0 {
		return nil
	}
	if s.legacy != nil {
		return s.legacy
	}
	if err := validateOps(ops); err != nil {
		return err
	}
	t := newTx(ops)
	if err := s.ensureKeys(ctx, t.keys); err != nil {
		return err
	}
	fresh := true
	for _, op := range ops {
		fresh = fresh && op.Kind == store.OpCreate
	}
	switch {
	case len(ops) == 1 && ops[0].IfVersion == 0:
		return s.createOne(ctx, t)
	case len(ops) == 1:
		return s.writeOne(ctx, t)
	case fresh:
		return s.insertAll(ctx, t)
	}
	return s.transact(ctx, t)
}

// transact is the journal protocol of tx.go.
func (s *Store) transact(ctx context.Context, t *tx) error {
	if err := s.prepare(ctx, t); err != nil {
		return err
	}
	return s.commit(ctx, t)
}

func conflictAt(i int, key string) error {
	return &store.OpError{Index: i, Err: fmt.Errorf("mongo: %s: %w", key, store.ErrConflict)}
}

// createOne inserts the document of a single create. A duplicate _id is a
// conflict; when a transaction holds the id, the journal protocol decides
// it, as it also recovers a stale placeholder of a dead transaction.
func (s *Store) createOne(ctx context.Context, t *tx) error {
	d := t.docs[0]
	err := s.insertCurrent(ctx, s.resColl(d.T), d)
	if mongo.IsDuplicateKeyError(err) {
		var cur doc
		if err := s.resColl(d.T).FindOne(ctx, bson.D{{Key: "_id", Value: d.ID}}).Decode(&cur); err == nil && !cur.Pending && cur.Tx == "" {
			return conflictAt(0, d.ID) // a resource: no transaction to recover
		}
		return s.transact(ctx, t)
	}
	if err != nil {
		return fmt.Errorf("mongo: create %s: %w", d.ID, err)
	}
	return nil
}

// Outcomes of one attempt of writeOne.
const (
	oneDone = iota
	oneConflict
	oneLocked // a transaction holds the document: the journal protocol decides
	oneRetry  // changed meanwhile (MongoDB): read again
)

// writeOne applies a single update or delete.
func (s *Store) writeOne(ctx context.Context, t *tx) error {
	d := t.docs[0]
	for attempt := 0; attempt < 5; attempt++ {
		out, err := s.writeOneAttempt(ctx, d, t.keys[0].If)
		if err != nil {
			return fmt.Errorf("mongo: write %s: %w", d.ID, err)
		}
		switch out {
		case oneDone:
			return nil
		case oneConflict:
			return conflictAt(0, d.ID)
		case oneLocked:
			return s.transact(ctx, t)
		}
	}
	return s.transact(ctx, t)
}

// writeOneAttempt reads the current document, copies it to history and
// replaces it by d if it is still the version read. On MongoDB the
// replacement's filter carries the condition; on FerretDB the whole
// attempt runs under the process mutex (Flavor.serialised) and the
// replacement is by _id (Flavor.emulatedCAS).
func (s *Store) writeOneAttempt(ctx context.Context, d doc, ifv int64) (int, error) {
	if s.serial != nil {
		s.serial.Lock()
		defer s.serial.Unlock()
	}
	res := s.resColl(d.T)
	var old doc
	err := res.FindOne(ctx, bson.D{{Key: "_id", Value: d.ID}}).Decode(&old)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return oneConflict, nil
	case err != nil:
		return 0, err
	case old.Pending || old.Tx != "":
		return oneLocked, nil
	case old.V != ifv:
		return oneConflict, nil
	}
	if err := s.putHistory(ctx, []doc{old.historyDoc()}); err != nil {
		return 0, err
	}
	if s.flavor.emulatedCAS() {
		if _, err := res.ReplaceOne(ctx, bson.D{{Key: "_id", Value: d.ID}}, d); err != nil {
			return 0, err
		}
		return oneDone, nil
	}
	r, err := res.ReplaceOne(ctx, condFilter(d.ID, []cond{eq("v", ifv), absent("tx"), absent("pending"), dvCond(old.DV)}), d)
	if err != nil {
		return 0, err
	}
	if r.MatchedCount == 0 {
		return oneRetry, nil
	}
	return oneDone, nil
}

// dvCond is the condition "SetDerived has not changed the document since
// it had dv".
func dvCond(dv int64) cond {
	if dv == 0 {
		return absent("dv")
	}
	return eq("dv", dv)
}

// putHistory writes history documents (superseded versions), replacing a
// copy of the same version with fewer SetDerived changes (dv) and keeping
// one with more: whichever writer copies a version last, history ends with
// its newest derived state. On FerretDB (Flavor.emulatedCAS) the writers
// of a version are serialised already (the mutex, or the transaction
// lock), and a filter beyond _id would decode the collection: there it
// replaces by _id.
func (s *Store) putHistory(ctx context.Context, docs []doc) error {
	types, groups := groupByType(len(docs), func(i int) string { return docs[i].ID })
	for _, typ := range types {
		var models []mongo.WriteModel
		for _, i := range groups[typ] {
			h := docs[i]
			f := bson.D{{Key: "_id", Value: h.ID}}
			if !s.flavor.emulatedCAS() {
				f = append(f, bson.E{Key: "$or", Value: bson.A{
					bson.D{{Key: "dv", Value: bson.D{{Key: "$exists", Value: false}}}},
					bson.D{{Key: "dv", Value: bson.D{{Key: "$lte", Value: h.DV}}}},
				}})
			}
			models = append(models, mongo.NewReplaceOneModel().SetFilter(f).SetReplacement(h).SetUpsert(true))
		}
		// A duplicate key: a copy with more changes exists (its filter
		// did not match, so the upsert's insert met it).
		if _, err := s.bulkWrite(ctx, s.histColl(typ), models); err != nil && !onlyDuplicates(err) {
			return fmt.Errorf("mongo: write history: %w", err)
		}
	}
	return nil
}

// insertAll applies a transaction of creates of fresh ids: journal
// (committed as written), insert, delete the journal.
func (s *Store) insertAll(ctx context.Context, t *tx) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mongo: transact: %w", err)
	}
	for i := range t.docs {
		t.docs[i].C = t.id
	}
	if err := s.writeJournal(ctx, t, modeInsert); err != nil {
		s.cleanup(ctx, t, "journal write failed")
		return err
	}
	// From here the transaction is committed: the caller's cancellation
	// no longer stops it.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*s.lease)
	defer cancel()
	at, err := s.insertApply(bg, t.id, t.docs, t.chunks)
	if err != nil {
		return fmt.Errorf("mongo: transaction %s committed but not yet applied (recovery will finish it): %w", t.id, err)
	}
	if at >= 0 {
		return conflictAt(at, t.docs[at].ID)
	}
	return nil
}

// insertApply inserts the documents of an insert-mode transaction and
// deletes its journal; it is idempotent (recovery repeats it). If an id
// belongs to another resource it rolls the transaction back instead and
// returns the index of that op (else -1).
func (s *Store) insertApply(ctx context.Context, id string, docs []doc, chunks int) (int, error) {
	types, groups := groupByType(len(docs), func(i int) string { return docs[i].ID })
	var dups []int
	for _, typ := range types {
		g := groups[typ]
		batch := make([]any, len(g))
		for n, i := range g {
			batch[n] = docs[i]
		}
		d, err := insertNew(ctx, s.resColl(typ), batch)
		if err != nil {
			return -1, fmt.Errorf("mongo: insert: %w", err)
		}
		for _, n := range d {
			dups = append(dups, g[n])
		}
	}
	collided := -1
	if len(dups) > 0 {
		// Ours from an earlier attempt (c is this transaction), or a
		// resource of someone else.
		ids := make([]string, len(dups))
		for n, i := range dups {
			ids[n] = docs[i].ID
		}
		found, err := s.docsByIDRes(ctx, ids)
		if err != nil {
			return -1, fmt.Errorf("mongo: insert: %w", err)
		}
		for _, i := range dups {
			if raw, ok := found[docs[i].ID]; !ok || !condHolds(raw, []cond{eq("c", id)}) {
				if collided < 0 || i < collided {
					collided = i
				}
			}
		}
	}
	if collided >= 0 {
		s.log.Warn("mongo: insert transaction met an existing id; rolling it back", "tx", id, "key", docs[collided].ID)
		ids := make([]string, len(docs))
		for i, d := range docs {
			ids[i] = d.ID
		}
		if _, err := s.deleteIfRes(ctx, ids, []cond{eq("c", id)}); err != nil {
			return -1, fmt.Errorf("mongo: roll back insert: %w", err)
		}
	}
	if err := s.deleteJournal(ctx, id, chunks); err != nil {
		return -1, err
	}
	return collided, nil
}

// Journal documents carry their new documents as one binary of
// concatenated BSON documents: one field however many documents, which
// FerretDB stores as it is (nested documents cost it an encoding of every
// field) and MongoDB copies without a look inside.

func packDocs(raws [][]byte) []byte {
	var b []byte
	for _, r := range raws {
		b = append(b, r...)
	}
	return b
}

func unpackDocs(b []byte) ([]bson.Raw, error) {
	var out []bson.Raw
	for len(b) > 0 {
		if len(b) < 5 {
			return nil, errors.New("mongo: truncated journal documents")
		}
		n := int(binary.LittleEndian.Uint32(b))
		if n < 5 || n > len(b) {
			return nil, errors.New("mongo: bad journal document length")
		}
		out = append(out, bson.Raw(bytes.Clone(b[:n])))
		b = b[n:]
	}
	return out, nil
}

// sameVersion reports whether stored is version d as d would store it.
func sameVersion(stored, d doc) bool {
	return stored.V == d.V && bytes.Equal(stored.Raw, d.Raw) && stored.LU.Equal(d.LU) &&
		stored.LUN == d.LUN && stored.Del == d.Del && !stored.Pending
}

// wait pauses for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// Append inserts independent creates (store.Store.Append): one unordered
// InsertMany per type, no journal.
func (s *Store) Append(ctx context.Context, recs []store.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if s.legacy != nil {
		return s.legacy
	}
	ops := make([]store.Op, len(recs))
	keys := make([]jkey, len(recs))
	for i, r := range recs {
		ops[i] = store.Op{Kind: store.OpCreate, Record: r}
		keys[i] = jkey{K: r.Key()}
	}
	if err := validateOps(ops); err != nil {
		return err
	}
	if err := s.ensureKeys(ctx, keys); err != nil {
		return err
	}
	types, groups := groupByType(len(recs), func(i int) string { return keys[i].K })
	first := -1
	for _, typ := range types {
		g := groups[typ]
		batch := make([]any, len(g))
		for n, i := range g {
			batch[n] = toDoc(recs[i])
		}
		dups, err := insertNew(ctx, s.resColl(typ), batch)
		if err != nil {
			return fmt.Errorf("mongo: append: %w", err)
		}
		for _, n := range dups {
			if i := g[n]; first < 0 || i < first {
				first = i
			}
		}
	}
	if first >= 0 {
		return conflictAt(first, keys[first].K)
	}
	return nil
}
