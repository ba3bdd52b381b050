package mongo

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Group commit of single creates. Every insert command costs a store a
// fixed price beyond its documents: a round trip, and on the embedded
// store a SQLite transaction whose commit writes and syncs the WAL.
// Concurrent creates of one resource type therefore share commands: the
// first create of an idle type inserts alone at once; creates that arrive
// while an insert of their type is in flight queue up, and the next insert
// takes them all (one unordered InsertMany). No create waits for a timer,
// and none is acknowledged before its own document is written, so
// durability and isolation are those of one InsertOne per create; only
// throughput under concurrency changes (README.md, "Write paths").

// maxGroup bounds the documents of one grouped insert.
const maxGroup = 128

// groupTimeout bounds one grouped insert (it runs without its requests'
// cancellation).
const groupTimeout = 2 * time.Minute

// insertGroup queues the single creates of one collection.
type insertGroup struct {
	mu      sync.Mutex
	pending []*groupedInsert
	busy    bool // an insert of this collection is in flight
	largest int  // the most documents one insert took (tests)
}

// groupedInsert is one create waiting for its insert.
type groupedInsert struct {
	doc  any
	done chan groupResult
}

// groupResult ends a wait: the insert's outcome for this document, or the
// order to insert the queue now (lead), when the previous insert is done.
type groupResult struct {
	err  error
	lead bool
}

// insertCurrent inserts doc, a new current document of coll, sharing the
// insert command with concurrent creates of the same collection. The error
// is the one an InsertOne of doc alone would return (nil, a duplicate key
// error, or a failure of the command).
func (s *Store) insertCurrent(ctx context.Context, coll *mongo.Collection, doc any) error {
	gv, _ := s.groups.LoadOrStore(coll.Name(), &insertGroup{})
	g := gv.(*insertGroup)
	me := &groupedInsert{doc: doc, done: make(chan groupResult, 1)}
	g.mu.Lock()
	if g.busy {
		g.pending = append(g.pending, me)
		g.mu.Unlock()
		r := <-me.done
		if !r.lead {
			return r.err
		}
		// The previous insert is done and this create leads the next one:
		// everything queued meanwhile, itself first.
	} else {
		g.busy = true
		g.pending = append(g.pending, me)
		g.mu.Unlock()
	}
	g.mu.Lock()
	n := min(len(g.pending), maxGroup)
	batch := g.pending[:n:n]
	g.pending = g.pending[n:]
	g.largest = max(g.largest, n)
	g.mu.Unlock()

	// Whatever happens to the insert, the queue gets a new leader and
	// every waiter of this batch an answer.
	errs := make([]error, len(batch))
	for i := range errs {
		errs[i] = errors.New("mongo: grouped insert did not complete")
	}
	defer func() {
		g.mu.Lock()
		if len(g.pending) > 0 {
			next := g.pending[0]
			g.mu.Unlock()
			next.done <- groupResult{lead: true}
		} else {
			g.busy = false
			g.mu.Unlock()
		}
		for i, in := range batch {
			if in != me {
				in.done <- groupResult{err: errs[i]}
			}
		}
	}()
	// The insert serves other requests too: one client's cancellation
	// must not fail theirs. It is bounded instead, so a store that stops
	// answering fails the queue rather than holding it forever.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupTimeout)
	defer cancel()
	errs = s.insertBatch(ictx, coll, batch)
	return errs[0] // batch[0] is me
}

// insertBatch inserts the documents of batch and returns each one's error.
func (s *Store) insertBatch(ctx context.Context, coll *mongo.Collection, batch []*groupedInsert) []error {
	if len(batch) == 1 {
		_, err := coll.InsertOne(ctx, batch[0].doc)
		return []error{err}
	}
	docs := make([]any, len(batch))
	for i, in := range batch {
		docs[i] = in.doc
	}
	return insertEach(ctx, coll, docs)
}

// insertEach inserts docs with one unordered InsertMany and returns each
// document's error (nil: inserted), shaped as an InsertOne of it alone
// would return it: a write error of its own (mongo.IsDuplicateKeyError
// works on it), or the command's failure.
func insertEach(ctx context.Context, coll *mongo.Collection, docs []any) []error {
	errs := make([]error, len(docs))
	_, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return errs
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	// Unordered: the documents without a write error are inserted.
	for _, we := range bwe.WriteErrors {
		if we.Index >= 0 && we.Index < len(errs) {
			w := we.WriteError
			w.Index = 0
			errs[we.Index] = mongo.WriteException{WriteErrors: mongo.WriteErrors{w}}
		}
	}
	return errs
}

// insertNew inserts docs (new documents of one collection) and returns the
// indexes of those whose _id exists already; any other failure is err.
func insertNew(ctx context.Context, coll *mongo.Collection, docs []any) (dups []int, err error) {
	for i, e := range insertEach(ctx, coll, docs) {
		switch {
		case e == nil:
		case mongo.IsDuplicateKeyError(e):
			dups = append(dups, i)
		default:
			return nil, e
		}
	}
	return dups, nil
}
