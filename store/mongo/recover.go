package mongo

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Recovery of transactions (README.md, "Transactions"): a journal committed
// before a crash is rolled forward, an undecided one back, and a document a
// dead holder locked is released.

// heldBy returns which of keys are locked by transaction id.
func (s *Store) heldBy(ctx context.Context, keys []string, id string) (map[string]bool, error) {
	docs, err := s.findIDsRes(ctx, keys, bson.D{{Key: "_id", Value: 1}, {Key: "tx", Value: 1}})
	if err != nil {
		return nil, fmt.Errorf("mongo: lock check: %w", err)
	}
	held := make(map[string]bool, len(docs))
	for _, d := range docs {
		if condHolds(d, []cond{eq("tx", id)}) {
			held[d.Lookup("_id").StringValue()] = true
		}
	}
	return held, nil
}

// recoverHolders recovers the transactions holding locks on t's documents
// whose journals are older than the lease (or gone). It returns how many
// it recovered.
func (s *Store) recoverHolders(ctx context.Context, t *tx) (int, error) {
	keys := make([]string, len(t.keys))
	for i, k := range t.keys {
		keys[i] = k.K
	}
	docs, err := s.findIDsRes(ctx, keys, bson.D{{Key: "_id", Value: 1}, {Key: "tx", Value: 1}})
	if err != nil {
		return 0, err
	}
	var locked []struct {
		ID string `bson:"_id"`
		Tx string `bson:"tx"`
	}
	for _, d := range docs {
		if tx, ok := d.Lookup("tx").StringValueOK(); ok {
			locked = append(locked, struct {
				ID string `bson:"_id"`
				Tx string `bson:"tx"`
			}{d.Lookup("_id").StringValue(), tx})
		}
	}
	n := 0
	done := map[string]bool{}
	for _, l := range locked {
		if l.Tx == t.id || done[l.Tx] {
			continue
		}
		done[l.Tx] = true
		var j journal
		err := s.txlog.FindOne(ctx, bson.D{{Key: "_id", Value: l.Tx}}, options.FindOne().SetProjection(bson.D{{Key: "ops", Value: 0}})).Decode(&j)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			// An orphan lock (its transaction gave up after recovery
			// aborted it, then died): release it. The filters name the
			// transaction, so a lock it no longer holds is left alone.
			if err := s.releaseOrphan(ctx, l.ID, l.Tx); err != nil {
				return n, err
			}
			n++
		case err != nil:
			return n, err
		case s.now().Sub(j.At) > s.lease:
			if err := s.recoverJournal(ctx, l.Tx); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// releaseOrphan releases the lock of transaction txid on key.
func (s *Store) releaseOrphan(ctx context.Context, key, txid string) error {
	if _, err := s.updateIf(ctx, s.resColl(typeOf(key)), key, []cond{eq("tx", txid), absent("pending")},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "tx", Value: ""}}}}); err != nil {
		return fmt.Errorf("mongo: release orphan lock: %w", err)
	}
	if _, err := s.deleteIfRes(ctx, []string{key}, []cond{eq("tx", txid), eq("pending", true)}); err != nil {
		return fmt.Errorf("mongo: release orphan lock: %w", err)
	}
	return nil
}

// rollback releases the locks of transaction id and deletes its journal.
// Idempotent, and harmless once the transaction is fully applied (it
// holds no lock any more).
func (s *Store) rollback(ctx context.Context, id string, keys []jkey, chunks int) error {
	var release []condWrite
	var created []string
	for _, k := range keys {
		if k.If == 0 {
			created = append(created, k.K)
		} else {
			release = append(release, condWrite{ID: k.K, If: []cond{eq("tx", id)},
				Update: bson.D{{Key: "$unset", Value: bson.D{{Key: "tx", Value: ""}}}}})
		}
	}
	if _, _, err := s.writeEachRes(ctx, release); err != nil {
		return fmt.Errorf("mongo: release locks: %w", err)
	}
	if _, err := s.deleteIfRes(ctx, created, []cond{eq("tx", id), eq("pending", true)}); err != nil {
		return fmt.Errorf("mongo: delete placeholders: %w", err)
	}
	return s.deleteJournal(ctx, id, chunks)
}

// deleteJournal deletes the documents of journal id: header (with its
// decision) and chunks. It runs after the transaction is applied or
// rolled back, so any part of the journal it leaves is harmless: committed
// with chunks missing reads as applied; chunks without header are swept
// by recovery.
func (s *Store) deleteJournal(ctx context.Context, id string, chunks int) error {
	ids := bson.A{id}
	for n := 0; n < chunks; n++ {
		ids = append(ids, chunkID(id, n))
	}
	if s.flavor.byExactID(len(ids), true) {
		// Flavor.byExactID: a scan inside SQLite per id beats decoding
		// every journal document.
		for _, jid := range ids {
			if _, err := s.txlog.DeleteOne(ctx, bson.D{{Key: "_id", Value: jid}}); err != nil {
				return fmt.Errorf("mongo: delete journal: %w", err)
			}
		}
	} else if _, err := s.txlog.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
		return fmt.Errorf("mongo: delete journal: %w", err)
	}
	return nil
}

// Recover finishes the transactions of processes that died (journals
// older than the lease): committed ones are rolled forward, the others
// rolled back. Open calls it; a long-running server may call it
// periodically (Transact also recovers the holders of locks it runs into).
func (s *Store) Recover(ctx context.Context) error { return s.recover(ctx, false) }

func (s *Store) recover(ctx context.Context, all bool) error {
	cutoff := s.now().Add(-s.lease)
	older := func(f bson.D) bson.D {
		if !all {
			f = append(f, bson.E{Key: "at", Value: bson.D{{Key: "$lt", Value: cutoff}}})
		}
		return f
	}
	cur, err := s.txlog.Find(ctx, older(bson.D{{Key: "k", Value: kindHeader}}), options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return fmt.Errorf("mongo: recover: %w", err)
	}
	var heads []struct {
		ID string `bson:"_id"`
	}
	if err := cur.All(ctx, &heads); err != nil {
		return fmt.Errorf("mongo: recover: %w", err)
	}
	for _, h := range heads {
		if err := s.recoverJournal(ctx, h.ID); err != nil {
			return err
		}
	}
	// Chunks and decisions whose header is gone (a writer that died
	// mid-way, or a journal deletion cut short).
	var strays []struct {
		ID string `bson:"_id"`
		Tx string `bson:"tx"`
	}
	cur, err = s.txlog.Find(ctx, older(bson.D{{Key: "k", Value: bson.D{{Key: "$in", Value: bson.A{kindChunk, kindDecision}}}}}),
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "tx", Value: 1}}))
	if err == nil {
		err = cur.All(ctx, &strays)
	}
	if err != nil {
		return fmt.Errorf("mongo: recover: %w", err)
	}
	header := map[string]bool{}
	for _, st := range strays {
		has, ok := header[st.Tx]
		if !ok {
			n, err := s.txlog.CountDocuments(ctx, bson.D{{Key: "_id", Value: st.Tx}})
			if err != nil {
				return fmt.Errorf("mongo: recover: %w", err)
			}
			has = n > 0
			header[st.Tx] = has
		}
		if !has {
			if _, err := s.txlog.DeleteOne(ctx, bson.D{{Key: "_id", Value: st.ID}}); err != nil {
				return fmt.Errorf("mongo: recover: %w", err)
			}
		}
	}
	return nil
}

// recoverJournal rolls transaction id forward (committed) or back
// (aborted, or undecided: then it decides "aborted" first).
func (s *Store) recoverJournal(ctx context.Context, id string) error {
	var j journal
	err := s.txlog.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&j)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil // finished meanwhile
	}
	if err != nil {
		return fmt.Errorf("mongo: recover %s: %w", id, err)
	}
	vote := outcomeAborted
	if len(j.D) == 0 {
		// A journal of a version that kept the decision in a document
		// of its own (txid.d): adopt that outcome.
		var d decision
		err := s.txlog.FindOne(ctx, bson.D{{Key: "_id", Value: decisionID(id)}}).Decode(&d)
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return fmt.Errorf("mongo: recover %s: %w", id, err)
		}
		if err == nil {
			vote = d.Outcome
		}
	}
	outcome, err := s.decide(ctx, id, vote)
	if errors.Is(err, errJournalGone) {
		return nil // finished meanwhile
	}
	if err != nil {
		return fmt.Errorf("mongo: recover %s: %w", id, err)
	}
	if outcome != outcomeCommitted {
		s.log.Info("mongo: rolling back unfinished transaction", "tx", id, "owner", j.Owner, "at", j.At)
		return s.rollback(ctx, id, j.Keys, j.Chunks)
	}
	s.log.Info("mongo: rolling forward committed transaction", "tx", id, "owner", j.Owner, "at", j.At, "mode", j.Mode)
	docs, err := s.journalDocs(ctx, &j)
	if errors.Is(err, errChunksGone) {
		return s.deleteJournal(ctx, id, j.Chunks) // applied; its deletion was cut short
	}
	if err != nil {
		return err
	}
	if j.Mode == modeInsert {
		if err := s.ensureKeys(ctx, j.Keys); err != nil {
			return err
		}
		_, err := s.insertApply(ctx, id, docs, j.Chunks)
		return err
	}
	return s.apply(ctx, id, j.Keys, docs, j.Chunks)
}

// journalDocs returns the new documents of a journal (inline or chunks).
func (s *Store) journalDocs(ctx context.Context, j *journal) ([]doc, error) {
	raws := j.Ops
	if len(j.Blob) > 0 {
		var err error
		if raws, err = unpackDocs(j.Blob); err != nil {
			return nil, fmt.Errorf("mongo: recover %s: %w", j.ID, err)
		}
	}
	if j.Chunks > 0 {
		cur, err := s.txlog.Find(ctx, bson.D{{Key: "k", Value: kindChunk}, {Key: "tx", Value: j.ID}})
		if err != nil {
			return nil, fmt.Errorf("mongo: recover %s: %w", j.ID, err)
		}
		var chunks []jchunk
		if err := cur.All(ctx, &chunks); err != nil {
			return nil, fmt.Errorf("mongo: recover %s: %w", j.ID, err)
		}
		if len(chunks) != j.Chunks {
			return nil, errChunksGone
		}
		sort.Slice(chunks, func(a, b int) bool { return chunks[a].N < chunks[b].N })
		raws = nil
		for _, c := range chunks {
			raws = append(raws, c.Ops...)
			if len(c.Blob) > 0 {
				b, err := unpackDocs(c.Blob)
				if err != nil {
					return nil, fmt.Errorf("mongo: recover %s: %w", j.ID, err)
				}
				raws = append(raws, b...)
			}
		}
	}
	if len(raws) == len(j.Keys) { // every document inline (older journals)
		docs := make([]doc, len(raws))
		for i, r := range raws {
			if err := bson.Unmarshal(r, &docs[i]); err != nil {
				return nil, fmt.Errorf("mongo: recover %s: %w", j.ID, err)
			}
		}
		return docs, nil
	}
	docs := make([]doc, len(j.Keys))
	var creates []string
	n := 0
	for i, k := range j.Keys {
		if k.If == 0 {
			creates = append(creates, k.K)
			continue
		}
		if n >= len(raws) {
			break
		}
		if err := bson.Unmarshal(raws[n], &docs[i]); err != nil {
			return nil, fmt.Errorf("mongo: recover %s: %w", j.ID, err)
		}
		n++
	}
	if n != len(raws) || n+len(creates) != len(j.Keys) {
		return nil, fmt.Errorf("mongo: recover %s: %d documents for %d keys", j.ID, len(raws), len(j.Keys))
	}
	// A create's document is its placeholder, still locked by the
	// transaction unless already applied (revealed: nothing left to do).
	placeholders, err := s.docsByIDRes(ctx, creates)
	if err != nil {
		return nil, fmt.Errorf("mongo: recover %s: %w", j.ID, err)
	}
	for i, k := range j.Keys {
		raw, ok := placeholders[k.K]
		if k.If != 0 || !ok || !condHolds(raw, []cond{eq("tx", j.ID), eq("pending", true)}) {
			continue
		}
		if err := bson.Unmarshal(raw, &docs[i]); err != nil {
			return nil, fmt.Errorf("mongo: recover %s: %w", j.ID, err)
		}
		if docs[i].V == 0 { // a bare placeholder of an older version: cannot apply
			return nil, fmt.Errorf("mongo: recover %s: placeholder of %s without document", j.ID, k.K)
		}
		docs[i].Del, docs[i].Tx, docs[i].Pending = false, "", false
	}
	return docs, nil
}
