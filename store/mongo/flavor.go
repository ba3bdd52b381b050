package mongo

import (
	"context"
	"fmt"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

// Flavor is the kind of server a Store talks to. Open detects it once
// (buildInfo: FerretDB answers with a "ferretdbVersion" field) and keeps
// it in Store.flavor; every behaviour that differs between the two is a
// method of Flavor below, and nothing else in the package asks which
// server it is.
//
// FlavorMongoDB is the product: exact filters ($elemMatch on the idx
// arrays) served by the declared indexes (mquery/indexes.go), conditional
// writes whose filter carries the condition (single-document atomic on
// MongoDB), one $in per multi-document read. FlavorFerretDB is FerretDB
// v1.24 on SQLite, the embedded server of the tests (store/embedded) and
// of existing `--store ferretdb` data directories; it lacks what the
// methods below list, each with the workaround the store takes there.
//
// What both flavors share, because FerretDB has no multi-document
// transactions and a standalone mongod has none either: all-or-nothing
// Transact through the txlog journal (tx.go), the unique _id as the only
// uniqueness (create placeholders), lock leases compared by date (no TTL
// index). MongoDB replica sets could run Transact as a multi-document
// transaction instead, but no MongoDB server runs here to test such a
// path, so there is one path, the tested journal (README.md).
type Flavor int

const (
	// FlavorMongoDB: MongoDB (standalone, replica set or sharded).
	FlavorMongoDB Flavor = iota + 1
	// FlavorFerretDB: FerretDB v1.24 (store/embedded).
	FlavorFerretDB

	// flavorMongoDBOnFerretDB (tests only) runs the MongoDB paths on
	// FerretDB wherever FerretDB can run them: conditions in the write
	// filters, bulk writes and $in reads, every index created, totals
	// counted apart. What FerretDB cannot do stays as on FerretDB: the
	// superset filters (no $elemMatch on documents), the process mutex
	// (its conditional writes are not atomic), batches of 50.
	flavorMongoDBOnFerretDB
)

func (f Flavor) String() string {
	switch f {
	case FlavorMongoDB:
		return "mongodb"
	case FlavorFerretDB:
		return "ferretdb"
	case flavorMongoDBOnFerretDB:
		return "mongodb-paths-on-ferretdb"
	}
	return fmt.Sprintf("Flavor(%d)", int(f))
}

// onFerretDB: the server is FerretDB.
func (f Flavor) onFerretDB() bool { return f != FlavorMongoDB }

// detectFlavor asks the server what it is.
func detectFlavor(ctx context.Context, db *mongo.Database) (Flavor, error) {
	var info bson.M
	if err := db.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return 0, fmt.Errorf("mongo: buildInfo: %w", err)
	}
	if _, ok := info["ferretdbVersion"]; ok {
		return FlavorFerretDB, nil
	}
	return FlavorMongoDB, nil
}

// The differences, one method each.

// dialect: FerretDB v1.24 rejects $elemMatch with field conditions
// ("unknown operator: p"), so there mquery emits independent dot-notation
// conditions (a superset) and the store keeps the documents
// mquery.Matcher accepts, paging and counting after it (read.go). On
// MongoDB the filter is exact and no Go re-check runs.
func (f Flavor) dialect() mquery.Dialect {
	if f.onFerretDB() {
		return mquery.FerretDB
	}
	return mquery.MongoDB
}

// serialised: FerretDB runs update, findAndModify and delete as a query
// followed by a write by _id, not atomically, so two concurrent
// conditional updates of one document can both match. Every conditional
// write of this process to one database (the transaction locks, the
// journal decision, single updates, Lock) then goes through one mutex
// (serialFor). Several processes writing to one FerretDB are not
// supported. MongoDB's single-document writes are atomic: no mutex.
func (f Flavor) serialised() bool { return f.onFerretDB() }

// emulatedCAS: FerretDB uses no index for any filter but exactly
// {_id: "string"} (and even that scans without store/embedded.IndexIDs),
// and any other filter decodes every document of the collection. So a
// conditional write reads its documents by _id, checks the condition in
// Go (condHolds) and writes by _id, under the mutex (cas.go); a single
// update replaces by _id (fast.go), and a history copy replaces by _id
// without the dv condition (its writers are serialised already). On
// MongoDB the condition is in the write's filter.
func (f Flavor) emulatedCAS() bool { return f == FlavorFerretDB }

// secondaryIndexes: FerretDB v1.24 on SQLite uses no secondary index for
// any query but maintains them on every write, so on FerretDB Open
// creates none; on MongoDB every index of typeIndexes and
// controlIndexes (README.md, "Indexes").
func (f Flavor) secondaryIndexes() bool { return f != FlavorFerretDB }

// writeBatch caps the statements of one write command: FerretDB v1.24's
// update command keeps one SQLite connection per statement until the
// command ends and deadlocks beyond its pool of 100. 0: no cap (the
// driver splits at the server's maxWriteBatchSize).
func (f Flavor) writeBatch() int {
	if f.onFerretDB() {
		return 50
	}
	return 0
}

// totalInScan: every FerretDB query scans its collection, so a first page
// that needs Total counts the matches while reading the page, in the same
// scan. On MongoDB Total is a CountDocuments (index-served), skipped when
// the first page holds every match.
func (f Flavor) totalInScan() bool { return f == FlavorFerretDB }

// byExactID: on FerretDB a filter that is exactly {_id: "string"} is the
// only one pushed down to SQLite (an index lookup with
// store/embedded.IndexIDs, Options.IndexedIDs; a scan of the table inside
// SQLite without), while {_id: {$in: ...}} decodes every document. So
// there n documents are read (or journal documents deleted) one exact _id
// at a time when the ids are indexed or few. On MongoDB: one $in.
func (f Flavor) byExactID(n int, indexedIDs bool) bool {
	return f == FlavorFerretDB && (indexedIDs || n <= 3)
}

// The mutex of serialised flavors, one per server and database.
var (
	serialMu sync.Mutex
	serials  = map[string]*sync.Mutex{}
)

func serialFor(uri, database string) *sync.Mutex {
	serialMu.Lock()
	defer serialMu.Unlock()
	k := uri + "\x00" + database
	if serials[k] == nil {
		serials[k] = new(sync.Mutex)
	}
	return serials[k]
}
