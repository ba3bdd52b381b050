// Package mongo is the MongoDB backend of store.Store, the scale-out
// engine: MongoDB standalone, replica set or sharded cluster, through the
// official driver, with exact filters served by the declared indexes. It
// also runs on FerretDB v1.24 (store/embedded: the tests' server), whose
// differences are all in one place, Flavor (flavor.go). Writes are
// all-or-nothing (R4 http.html#transaction) through a journal in the
// txlog collection, not multi-document transactions; see README.md.
package mongo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

// Collection names.
// (Resource collections are per type: collections.go.)
const (
	collTxlog = "txlog"
	collLocks = "locks"
	collMeta  = "meta"
)

// DefaultLease is how old a transaction journal must be before another
// process may recover (roll forward or back) the transaction it describes.
const DefaultLease = 30 * time.Second

// Options configures Open.
type Options struct {
	// Now is the clock (journal and lock timestamps); nil: time.Now.
	Now func() time.Time
	// Logger receives recovery and index messages; nil: discarded.
	Logger *slog.Logger
	// RecoverAll makes Open recover every unfinished transaction journal,
	// not only those older than Lease. Only set it when no other process
	// writes the same database (the embedded single-process mode).
	RecoverAll bool
	// IndexedIDs tells a FerretDB store that lookups by exact _id are
	// index lookups (store/embedded.IndexIDs), so reading many documents
	// one by one beats one $in query that decodes the collection
	// (Flavor.byExactID); ignored on MongoDB.
	IndexedIDs bool
	// Lease is the age after which a journal of another (presumably dead)
	// process is recovered; 0: DefaultLease. It must exceed the longest
	// time a live Transact can take.
	Lease time.Duration
	// OnNewCollection, if set, is called after Open ensured the
	// collections of the types stored already, and whenever this process
	// creates the collections of a type it writes for the first time (the
	// embedded mode passes store/embedded's IndexIDs, so the new SQLite
	// tables get their _id index). An error fails the write.
	OnNewCollection func(ctx context.Context) error

	// flavor (tests only) overrides the detected Flavor with
	// flavorMongoDBOnFerretDB; Open checks that the server is FerretDB.
	flavor Flavor
}

// Store is the MongoDB implementation of store.Store. It is safe for
// concurrent use by many goroutines and many processes.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	txlog  *mongo.Collection // transaction journals
	locks  *mongo.Collection // Lock leases
	meta   *mongo.Collection // store-wide settings (cursor key)

	now   func() time.Time
	log   *slog.Logger
	owner string // random id of this Store instance (journal owner)
	lease time.Duration
	key   []byte // HMAC key of paging cursors, shared by every process

	// flavor is the server, detected once at Open: every difference
	// between MongoDB and FerretDB is a method of it (flavor.go).
	flavor Flavor
	// serial serialises this process's conditional writes when
	// flavor.serialised() (FerretDB), else nil.
	serial     *sync.Mutex
	indexedIDs bool // see Options.IndexedIDs
	// legacy, if not nil, is why this database cannot be served (a
	// layout this version does not read, see checkLayout); every
	// operation on resources returns it.
	legacy error

	onNew    func(ctx context.Context) error // see Options.OnNewCollection
	ensured  *sync.Map                       // type -> true: collections ensured
	ensureMu *sync.Mutex                     // serialises collection creation
	groups   *sync.Map                       // collection name -> *insertGroup (group.go)
}

var _ store.Store = (*Store)(nil)

// Open connects to uri, uses database, creates the indexes (idempotently,
// one at a time) and recovers unfinished transactions before returning.
func Open(ctx context.Context, uri, database string, opts Options) (*Store, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return nil, fmt.Errorf("mongo: connect: %w", err)
	}
	s, err := open(ctx, client, uri, database, opts)
	if err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

func open(ctx context.Context, client *mongo.Client, uri, database string, opts Options) (*Store, error) {
	if database == "" {
		return nil, errors.New("mongo: empty database name")
	}
	s := &Store{
		client: client,
		db:     client.Database(database),
		now:    opts.Now,
		log:    opts.Logger,
		owner:  randomID(),
		lease:  opts.Lease,

		indexedIDs: opts.IndexedIDs,
		onNew:      opts.OnNewCollection,
		ensured:    new(sync.Map),
		groups:     new(sync.Map),
		ensureMu:   new(sync.Mutex),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.lease <= 0 {
		s.lease = DefaultLease
	}
	s.txlog = s.db.Collection(collTxlog)
	s.locks = s.db.Collection(collLocks)
	s.meta = s.db.Collection(collMeta)
	if err := client.Ping(ctx, nil); err != nil {
		return nil, fmt.Errorf("mongo: ping: %w", err)
	}
	f, err := detectFlavor(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if opts.flavor != 0 {
		if !f.onFerretDB() || !opts.flavor.onFerretDB() {
			return nil, fmt.Errorf("mongo: flavor %s on a %s server", opts.flavor, f)
		}
		f = opts.flavor
	}
	s.flavor = f
	if f.serialised() {
		s.serial = serialFor(uri, database)
	}
	if err := s.ensureIndexes(ctx, s.controlIndexes()); err != nil {
		return nil, err
	}
	// The collections of the types stored already (recovery writes them).
	if err := s.ensureStored(ctx); err != nil {
		return nil, err
	}
	if err := s.loadCursorKey(ctx); err != nil {
		return nil, err
	}
	if err := s.recover(ctx, opts.RecoverAll); err != nil {
		return nil, err
	}
	if s.legacy != nil {
		s.log.Warn("mongo: operations on the resources of this database fail until it is migrated", "database", database, "err", s.legacy)
	}
	return s, nil
}

// Flavor is the server this store talks to (detected at Open).
func (s *Store) Flavor() Flavor { return s.flavor }

// indexSpec is one index of one collection.
type indexSpec struct {
	coll  *mongo.Collection
	model mongo.IndexModel
}

func ix(c *mongo.Collection, name string, keys bson.D) indexSpec {
	return indexSpec{c, mongo.IndexModel{Keys: keys, Options: options.Index().SetName(name)}}
}

// typeIndexes lists the indexes of the collections of one type (README.md
// explains which query each serves); mquery.Indexes() adds the search
// indexes. They keep t in front although it is constant within a
// collection: the compiled filters and orders name it.
func (s *Store) typeIndexes(typ string) []indexSpec {
	res, hist := s.resColl(typ), s.histColl(typ)
	specs := []indexSpec{
		// Search tie-breakers / default order, ForEach by type.
		ix(res, "t_i", bson.D{{Key: "t", Value: 1}, {Key: "i", Value: 1}}),
		// Instance history and the per-resource pick of History.At.
		ix(hist, "t_i_lu_v", bson.D{{Key: "t", Value: 1}, {Key: "i", Value: 1}, {Key: "lu", Value: -1}, {Key: "v", Value: -1}}),
		// Type (and, merged across types, system) history, newest first.
		ix(hist, "lu_t_i_v", bson.D{{Key: "lu", Value: -1}, {Key: "t", Value: 1}, {Key: "i", Value: 1}, {Key: "v", Value: -1}}),
		// Patient-compartment history (CompartmentCond filter), newest first.
		ix(hist, "cpt_lu", bson.D{{Key: "idx.cpt", Value: 1}, {Key: "lu", Value: -1}}),
		// History lists the current versions too (res holds them only):
		// type and system history newest first, compartment history.
		// Instance history there is one document (_id, or t_i).
		ix(res, "lu_t_i_v", bson.D{{Key: "lu", Value: -1}, {Key: "t", Value: 1}, {Key: "i", Value: 1}, {Key: "v", Value: -1}}),
		ix(res, "cpt_lu", bson.D{{Key: "idx.cpt", Value: 1}, {Key: "lu", Value: -1}}),
	}
	for _, m := range mquery.Indexes() {
		specs = append(specs, indexSpec{res, m})
	}
	return specs
}

// controlIndexes are the indexes of the journal collection.
func (s *Store) controlIndexes() []indexSpec {
	return []indexSpec{
		// Recovery scans: journal documents by kind and age, chunks by
		// transaction.
		ix(s.txlog, "k_at", bson.D{{Key: "k", Value: 1}, {Key: "at", Value: 1}}),
		ix(s.txlog, "k_tx", bson.D{{Key: "k", Value: 1}, {Key: "tx", Value: 1}}),
	}
}

// ensureIndexes creates the indexes one CreateOne at a time (FerretDB
// v1.24 panics on a createIndexes listing several indexes when some
// exist; on MongoDB CreateOne of an existing index is a no-op), unless
// the flavor uses none (Flavor.secondaryIndexes).
func (s *Store) ensureIndexes(ctx context.Context, specs []indexSpec) error {
	if !s.flavor.secondaryIndexes() {
		return nil
	}
	for _, sp := range specs {
		if _, err := sp.coll.Indexes().CreateOne(ctx, sp.model); err != nil {
			return fmt.Errorf("mongo: create index %v on %s: %w", sp.model.Keys, sp.coll.Name(), err)
		}
	}
	return nil
}

// loadCursorKey reads (creating it on first use) the random HMAC key that
// signs paging cursors, so every process of a cluster accepts the others'.
func (s *Store) loadCursorKey(ctx context.Context) error {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return fmt.Errorf("mongo: cursor key: %w", err)
	}
	_, err := s.meta.InsertOne(ctx, bson.D{{Key: "_id", Value: "cursorKey"}, {Key: "k", Value: k}})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("mongo: store cursor key: %w", err)
	}
	var m struct {
		K []byte `bson:"k"`
	}
	if err := s.meta.FindOne(ctx, bson.D{{Key: "_id", Value: "cursorKey"}}).Decode(&m); err != nil {
		return fmt.Errorf("mongo: load cursor key: %w", err)
	}
	if len(m.K) < 16 {
		return errors.New("mongo: load cursor key: key too short")
	}
	s.key = m.K
	return nil
}

// Ping checks the connection.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, nil); err != nil {
		return fmt.Errorf("mongo: ping: %w", err)
	}
	return nil
}

// Close disconnects. Transactions in flight may be left to recovery.
func (s *Store) Close(ctx context.Context) error {
	if err := s.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("mongo: disconnect: %w", err)
	}
	return nil
}

func randomID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("mongo: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// notFound wraps store.ErrNotFound with what was looked up.
func notFound(what string) error { return fmt.Errorf("mongo: %s: %w", what, store.ErrNotFound) }

// EnsureCollections creates the control collections (txlog, locks, meta)
// that do not exist yet and ensures those of every type stored already
// (MongoDB and FerretDB create collections lazily on the first write; the
// embedded store indexes their tables at start-up). The collections of a
// type are otherwise created the first time it is written.
func (s *Store) EnsureCollections(ctx context.Context) error {
	if s.legacy != nil {
		return s.legacy
	}
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("mongo: list collections: %w", err)
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	for _, c := range []string{collTxlog, collLocks, collMeta} {
		if have[c] {
			continue
		}
		if err := s.createCollection(ctx, c); err != nil {
			return err
		}
	}
	return s.ensureStored(ctx)
}
