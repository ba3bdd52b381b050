// Package mongostore is the notification outbox's storage (notify.Storage)
// in the FHIR store's MongoDB database (or the embedded FerretDB):
// collections notify_outbox, notify_claims, notify_prefs, notify_state.
//
// Single-document writes only (FerretDB v1.24 has no transactions, and its
// conditional updates are a query followed by a write by _id, so two
// processes could both "win" one). What is atomic on both servers, across
// processes, is an insert against the unique _id, so a claim is an insert:
//
//   - an item's lease n is the document {_id: "<key>#<n>"} of notify_claims;
//     the process whose insert succeeds holds lease n. To claim, a process
//     tries n = seq+1 (seq: the item's last lease), and on a duplicate key
//     moves to n+1 only if that claim's lease ended (never while another
//     holds one), then re-reads the item: a pending item whose seq is below
//     n is its own; otherwise (delivered meanwhile) it lets go.
//   - the holder's writes (Delivered, Retry, Finish) filter on {_id, seq}.
//     A holder whose lease ended could still write after a new holder
//     claimed the item: keep deliveries shorter than the lease.
//   - Enqueue inserts {_id: key}: a duplicate key is an item enqueued before.
//
// Claims of finished items are deleted when they finish.
package mongostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/store/mongo/mongoutil"
)

// Prefix starts the name of every collection of the store.
const Prefix = "notify_"

// Store is notify.Storage on MongoDB.
type Store struct {
	mongoutil.Conn                // the client Open connected (none: not ours, New)
	db                            *mongo.Database
	outbox, claims, prefs, states *mongo.Collection
}

var _ notify.Storage = (*Store)(nil)

// Open connects to uri and opens the store in database (Close
// disconnects).
func Open(ctx context.Context, uri, database string) (*Store, error) {
	return mongoutil.Open(ctx, uri, database, "notify mongostore", New)
}

// New opens the store in db, creating its indexes if needed. Close does
// not disconnect db's client.
func New(ctx context.Context, db *mongo.Database) (*Store, error) {
	s := &Store{db: db, outbox: db.Collection(Prefix + "outbox"), claims: db.Collection(Prefix + "claims"),
		prefs: db.Collection(Prefix + "prefs"), states: db.Collection(Prefix + "state")}
	if err := mongoutil.CreateIndexes(ctx, s.outbox,
		mongo.IndexModel{Keys: bson.D{{Key: "st", Value: 1}, {Key: "due", Value: 1}}},
		mongo.IndexModel{Keys: bson.D{{Key: "cr", Value: 1}}}); err != nil {
		return nil, fmt.Errorf("notify mongostore: index: %w", err)
	}
	if err := mongoutil.CreateIndexes(ctx, s.claims, mongo.IndexModel{Keys: bson.D{{Key: "k", Value: 1}}}); err != nil {
		return nil, fmt.Errorf("notify mongostore: index: %w", err)
	}
	return s, nil
}

// Database is the store's database.
func (s *Store) Database() *mongo.Database { return s.db }

// itemDoc is an outbox document (times: Unix nanoseconds, 0 for none).
type itemDoc struct {
	ID       string `bson:"_id"`
	State    string `bson:"st"`
	Due      int64  `bson:"due"`
	Lease    int64  `bson:"lease"`
	Seq      int64  `bson:"seq"`
	Attempts int    `bson:"att"`
	Created  int64  `bson:"cr"`
	Done     int64  `bson:"done"`
	Err      string `bson:"err"`
	Data     string `bson:"d"` // notify.Notification as JSON
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (d itemDoc) item() (notify.Item, error) {
	var it notify.Item
	if err := json.Unmarshal([]byte(d.Data), &it.Notification); err != nil {
		return it, fmt.Errorf("notify mongostore: decode %s: %w", d.ID, err)
	}
	it.Key, it.State, it.Seq, it.Attempts, it.LastError = d.ID, notify.State(d.State), d.Seq, d.Attempts, d.Err
	it.Due, it.LeaseUntil, it.Created, it.Done = tm(d.Due), tm(d.Lease), tm(d.Created), tm(d.Done)
	return it, nil
}

// Enqueue implements notify.Storage.
func (s *Store) Enqueue(ctx context.Context, now time.Time, list []notify.Notification) ([]bool, error) {
	added := make([]bool, len(list))
	for i, n := range list {
		b, err := json.Marshal(n)
		if err != nil {
			return nil, fmt.Errorf("notify mongostore: enqueue: %w", err)
		}
		due := n.NotBefore
		if due.IsZero() {
			due = now
		}
		_, err = s.outbox.InsertOne(ctx, itemDoc{ID: n.Key, State: string(notify.Pending), Due: ns(due), Created: ns(now), Data: string(b)})
		switch {
		case err == nil:
			added[i] = true
		case mongo.IsDuplicateKeyError(err):
		default:
			return nil, fmt.Errorf("notify mongostore: enqueue %s: %w", n.Key, err)
		}
	}
	return added, nil
}

type claimDoc struct {
	ID    string `bson:"_id"` // key#n
	Key   string `bson:"k"`
	Until int64  `bson:"until"`
}

// maxSkips bounds the ended leases one claim steps over.
const maxSkips = 64

// Claim implements notify.Storage (see the package comment).
func (s *Store) Claim(ctx context.Context, now time.Time, lease time.Duration, max int) ([]notify.Item, error) {
	filter := bson.D{{Key: "st", Value: string(notify.Pending)}, {Key: "due", Value: bson.D{{Key: "$lte", Value: ns(now)}}},
		{Key: "lease", Value: bson.D{{Key: "$lte", Value: ns(now)}}}}
	cur, err := s.outbox.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "due", Value: 1}}).SetLimit(int64(2*max)))
	if err != nil {
		return nil, fmt.Errorf("notify mongostore: claim: %w", err)
	}
	var docs []itemDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("notify mongostore: claim: %w", err)
	}
	until := now.Add(lease)
	var out []notify.Item
	for _, d := range docs {
		if len(out) == max {
			break
		}
		n, ok, err := s.claimOne(ctx, d, now, until)
		if err != nil {
			return out, err
		}
		if !ok {
			continue
		}
		// The item as it is now: delivered meanwhile means not ours.
		var cur itemDoc
		if err := s.outbox.FindOne(ctx, bson.D{{Key: "_id", Value: d.ID}}).Decode(&cur); err != nil {
			return out, fmt.Errorf("notify mongostore: claim %s: %w", d.ID, err)
		}
		if cur.State != string(notify.Pending) || cur.Seq >= n {
			continue
		}
		if _, err := s.outbox.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "seq", Value: n}, {Key: "lease", Value: ns(until)}}}}); err != nil {
			return out, fmt.Errorf("notify mongostore: claim %s: %w", d.ID, err)
		}
		cur.Seq, cur.Lease = n, ns(until)
		it, err := cur.item()
		if err != nil {
			return out, err
		}
		out = append(out, it)
	}
	return out, nil
}

// claimOne inserts the first free claim after d.Seq, stepping over ended
// leases only; ok false when another process holds the item.
func (s *Store) claimOne(ctx context.Context, d itemDoc, now, until time.Time) (int64, bool, error) {
	for n := d.Seq + 1; n <= d.Seq+maxSkips; n++ {
		id := d.ID + "#" + strconv.FormatInt(n, 10)
		_, err := s.claims.InsertOne(ctx, claimDoc{ID: id, Key: d.ID, Until: ns(until)})
		if err == nil {
			return n, true, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return 0, false, fmt.Errorf("notify mongostore: claim %s: %w", d.ID, err)
		}
		var c claimDoc
		if err := s.claims.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&c); err != nil {
			if errors.Is(err, mongo.ErrNoDocuments) {
				return 0, false, nil // deleted: the item finished
			}
			return 0, false, fmt.Errorf("notify mongostore: claim %s: %w", d.ID, err)
		}
		if c.Until > ns(now) {
			return 0, false, nil
		}
	}
	return 0, false, nil
}

func (s *Store) finish(ctx context.Context, it notify.Item, set bson.D, terminal bool) error {
	res, err := s.outbox.UpdateOne(ctx, bson.D{{Key: "_id", Value: it.Key}, {Key: "seq", Value: it.Seq}, {Key: "st", Value: string(notify.Pending)}},
		bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("notify mongostore: %s: %w", it.Key, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("notify mongostore: %s: %w", it.Key, notify.ErrLeaseLost)
	}
	if terminal {
		if _, err := s.claims.DeleteMany(ctx, bson.D{{Key: "k", Value: it.Key}}); err != nil {
			return fmt.Errorf("notify mongostore: %s: %w", it.Key, err)
		}
	}
	return nil
}

// Delivered implements notify.Storage.
func (s *Store) Delivered(ctx context.Context, it notify.Item, now time.Time) error {
	return s.finish(ctx, it, bson.D{{Key: "st", Value: string(notify.Delivered)}, {Key: "done", Value: ns(now)}, {Key: "lease", Value: int64(0)}}, true)
}

// Retry implements notify.Storage.
func (s *Store) Retry(ctx context.Context, it notify.Item, due time.Time, msg string) error {
	return s.finish(ctx, it, bson.D{{Key: "att", Value: it.Attempts + 1}, {Key: "due", Value: ns(due)}, {Key: "lease", Value: int64(0)}, {Key: "err", Value: msg}}, false)
}

// Finish implements notify.Storage.
func (s *Store) Finish(ctx context.Context, it notify.Item, st notify.State, now time.Time, msg string) error {
	if st != notify.Failed && st != notify.Skipped {
		return fmt.Errorf("notify mongostore: finish %s: state %q is not failed or skipped", it.Key, st)
	}
	return s.finish(ctx, it, bson.D{{Key: "st", Value: string(st)}, {Key: "done", Value: ns(now)}, {Key: "lease", Value: int64(0)}, {Key: "err", Value: msg}}, true)
}

// Item implements notify.Storage.
func (s *Store) Item(ctx context.Context, key string) (notify.Item, error) {
	var d itemDoc
	if err := s.outbox.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&d); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return notify.Item{}, fmt.Errorf("notify mongostore: %s: %w", key, notify.ErrNotFound)
		}
		return notify.Item{}, fmt.Errorf("notify mongostore: %s: %w", key, err)
	}
	return d.item()
}

// Items implements notify.Storage.
func (s *Store) Items(ctx context.Context, st notify.State, limit int) ([]notify.Item, error) {
	filter := bson.D{}
	if st != "" {
		filter = bson.D{{Key: "st", Value: string(st)}}
	}
	cur, err := s.outbox.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "cr", Value: 1}, {Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("notify mongostore: items: %w", err)
	}
	var docs []itemDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("notify mongostore: items: %w", err)
	}
	out := make([]notify.Item, 0, len(docs))
	for _, d := range docs {
		it, err := d.item()
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

type dataDoc struct {
	ID   string `bson:"_id"`
	Data []byte `bson:"d"`
}

func (s *Store) getData(ctx context.Context, c *mongo.Collection, id string) ([]byte, error) {
	var d dataDoc
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil, nil
		}
		return nil, fmt.Errorf("notify mongostore: %s: %w", id, err)
	}
	if d.Data == nil {
		d.Data = []byte{}
	}
	return d.Data, nil
}

func (s *Store) putData(ctx context.Context, c *mongo.Collection, id string, b []byte) error {
	if _, err := c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, dataDoc{ID: id, Data: b}, options.Replace().SetUpsert(true)); err != nil {
		return fmt.Errorf("notify mongostore: %s: %w", id, err)
	}
	return nil
}

// Prefs implements notify.Storage.
func (s *Store) Prefs(ctx context.Context, person string) (notify.Prefs, bool, error) {
	var p notify.Prefs
	b, err := s.getData(ctx, s.prefs, person)
	if err != nil || b == nil {
		return p, false, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, false, fmt.Errorf("notify mongostore: prefs %s: %w", person, err)
	}
	return p, true, nil
}

// SetPrefs implements notify.Storage.
func (s *Store) SetPrefs(ctx context.Context, person string, p notify.Prefs) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("notify mongostore: prefs %s: %w", person, err)
	}
	return s.putData(ctx, s.prefs, person, b)
}

// State implements notify.Storage.
func (s *Store) State(ctx context.Context, name string) ([]byte, error) {
	return s.getData(ctx, s.states, name)
}

// SetState implements notify.Storage.
func (s *Store) SetState(ctx context.Context, name string, b []byte) error {
	return s.putData(ctx, s.states, name, b)
}
