// Package mongostore keeps eVisit invitations (visit.Storage) in the
// store's MongoDB database (or the embedded FerretDB): the collection
// visit_invitations, beside the resource collections and authz_*.
//
// One document per invitation: _id the invitation id, the fixed fields as a
// JSON string (data), and what changes as fields (attempts, used_at,
// locked_at, revoked_at, replaced_by, session_hash, session_expires; times
// as Unix nanoseconds, 0 for none). Every change is one conditional
// updateOne, atomic on the document on MongoDB, so concurrent browsers and
// several fhirgate processes agree: one winner per link, every wrong PIN
// counted and no more than the maximum. FerretDB runs a conditional update
// as a query then a write by _id, not atomically (store/mongo/flavor.go),
// so this process's conditional updates also go through one mutex (the
// conformance suite's concurrent cases fail on FerretDB without it;
// several processes on one FerretDB are not supported, as for the store).
package mongostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fhirgate/fhirgate/authz/visit"
	"github.com/fhirgate/fhirgate/store/mongo/mongoutil"
)

// Collection is the collection's name.
const Collection = "visit_invitations"

// Store is visit.Storage on MongoDB.
type Store struct {
	mongoutil.Conn // the client Open connected (none when New was given a database)
	c              *mongo.Collection
	mu             sync.Mutex // serialises conditional updates (FerretDB)
}

var _ visit.Storage = (*Store)(nil)

// Open connects to uri and opens the store in database (Close
// disconnects).
func Open(ctx context.Context, uri, database string) (*Store, error) {
	return mongoutil.Open(ctx, uri, database, "visit mongostore", New)
}

// New opens the store in db, creating its indexes if needed.
func New(ctx context.Context, db *mongo.Database) (*Store, error) {
	c, err := mongoutil.Collection(ctx, db, Collection,
		mongo.IndexModel{Keys: bson.D{{Key: "token_hash", Value: 1}}, Options: options.Index().SetName("token_hash").SetUnique(true)},
		mongo.IndexModel{Keys: bson.D{{Key: "session_hash", Value: 1}}, Options: options.Index().SetName("session_hash")},
		mongo.IndexModel{Keys: bson.D{{Key: "appointment", Value: 1}, {Key: "created_at", Value: 1}}, Options: options.Index().SetName("appointment")})
	if err != nil {
		return nil, fmt.Errorf("visit mongostore: indexes: %w", err)
	}
	return &Store{c: c}, nil
}

// Collection returns the collection (tests).
func (s *Store) Collection() *mongo.Collection { return s.c }

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func at(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

type doc struct {
	ID             string `bson:"_id"`
	TokenHash      string `bson:"token_hash"`
	Appointment    string `bson:"appointment"`
	CreatedAt      int64  `bson:"created_at"`
	ExpiresAt      int64  `bson:"expires_at"`
	Attempts       int64  `bson:"attempts"`
	UsedAt         int64  `bson:"used_at"`
	LockedAt       int64  `bson:"locked_at"`
	RevokedAt      int64  `bson:"revoked_at"`
	ReplacedBy     string `bson:"replaced_by"`
	SessionHash    string `bson:"session_hash"`
	SessionExpires int64  `bson:"session_expires"`
	Data           string `bson:"data"`
}

// Create stores a new invitation.
func (s *Store) Create(ctx context.Context, inv visit.Invitation) error {
	fixed := inv
	fixed.Attempts, fixed.UsedAt, fixed.LockedAt, fixed.RevokedAt, fixed.ReplacedBy = 0, time.Time{}, time.Time{}, time.Time{}, ""
	fixed.SessionHash, fixed.SessionExpires = "", time.Time{}
	data, err := json.Marshal(fixed)
	if err != nil {
		return fmt.Errorf("visit mongostore: encode: %w", err)
	}
	_, err = s.c.InsertOne(ctx, doc{ID: inv.ID, TokenHash: inv.TokenHash, Appointment: inv.Appointment,
		CreatedAt: ns(inv.CreatedAt), ExpiresAt: ns(inv.ExpiresAt), Data: string(data)})
	if mongo.IsDuplicateKeyError(err) {
		return visit.ErrExists
	}
	if err != nil {
		return fmt.Errorf("visit mongostore: create: %w", err)
	}
	return nil
}

func decode(d doc) (visit.Invitation, error) {
	var inv visit.Invitation
	if err := json.Unmarshal([]byte(d.Data), &inv); err != nil {
		return inv, fmt.Errorf("visit mongostore: decode: %w", err)
	}
	inv.Attempts, inv.ReplacedBy, inv.SessionHash = int(d.Attempts), d.ReplacedBy, d.SessionHash
	inv.UsedAt, inv.LockedAt, inv.RevokedAt, inv.SessionExpires = at(d.UsedAt), at(d.LockedAt), at(d.RevokedAt), at(d.SessionExpires)
	return inv, nil
}

func (s *Store) one(ctx context.Context, filter bson.D) (visit.Invitation, error) {
	var d doc
	err := s.c.FindOne(ctx, filter).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return visit.Invitation{}, visit.ErrNotFound
	}
	if err != nil {
		return visit.Invitation{}, fmt.Errorf("visit mongostore: %w", err)
	}
	return decode(d)
}

// Get reads an invitation by id.
func (s *Store) Get(ctx context.Context, id string) (visit.Invitation, error) {
	return s.one(ctx, bson.D{{Key: "_id", Value: id}})
}

// ByToken reads an invitation by its token hash.
func (s *Store) ByToken(ctx context.Context, h string) (visit.Invitation, error) {
	return s.one(ctx, bson.D{{Key: "token_hash", Value: h}})
}

// BySession reads an invitation by its session hash.
func (s *Store) BySession(ctx context.Context, h string) (visit.Invitation, error) {
	if h == "" {
		return visit.Invitation{}, visit.ErrNotFound
	}
	return s.one(ctx, bson.D{{Key: "session_hash", Value: h}})
}

// List returns an Appointment's invitations, oldest first.
func (s *Store) List(ctx context.Context, appointment string) ([]visit.Invitation, error) {
	cur, err := s.c.Find(ctx, bson.D{{Key: "appointment", Value: appointment}},
		options.Find().SetSort(bson.D{{Key: "created_at", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("visit mongostore: list: %w", err)
	}
	var docs []doc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("visit mongostore: list: %w", err)
	}
	out := make([]visit.Invitation, 0, len(docs))
	for _, d := range docs {
		inv, err := decode(d)
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, nil
}

func pending(id string, now time.Time) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "used_at", Value: int64(0)}, {Key: "locked_at", Value: int64(0)},
		{Key: "revoked_at", Value: int64(0)}, {Key: "expires_at", Value: bson.D{{Key: "$gt", Value: ns(now)}}}}
}

// Fail counts a wrong PIN (at most max are counted); the max-th locks.
func (s *Store) Fail(ctx context.Context, id string, max int, now time.Time) (visit.Invitation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := append(pending(id, now), bson.E{Key: "attempts", Value: bson.D{{Key: "$lt", Value: int64(max)}}})
	res, err := s.c.UpdateOne(ctx, f, bson.D{{Key: "$inc", Value: bson.D{{Key: "attempts", Value: int64(1)}}}})
	if err != nil {
		return visit.Invitation{}, fmt.Errorf("visit mongostore: fail: %w", err)
	}
	if res.MatchedCount == 0 {
		return visit.Invitation{}, visit.ErrNotPending
	}
	// The update that reached max locks (only one can: attempts never passes max).
	_, err = s.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "locked_at", Value: int64(0)},
		{Key: "attempts", Value: bson.D{{Key: "$gte", Value: int64(max)}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "locked_at", Value: ns(now)}}}})
	if err != nil {
		return visit.Invitation{}, fmt.Errorf("visit mongostore: lock: %w", err)
	}
	return s.Get(ctx, id)
}

// Use marks a pending invitation used and attaches the session.
func (s *Store) Use(ctx context.Context, id, sessionHash string, sessionExpires, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, err := s.c.UpdateOne(ctx, pending(id, now), bson.D{{Key: "$set", Value: bson.D{
		{Key: "used_at", Value: ns(now)}, {Key: "session_hash", Value: sessionHash}, {Key: "session_expires", Value: ns(sessionExpires)}}}})
	if err != nil {
		return fmt.Errorf("visit mongostore: use: %w", err)
	}
	if res.MatchedCount == 0 {
		return visit.ErrNotPending
	}
	return nil
}

// Revoke withdraws an invitation (the first revocation's time is kept).
func (s *Store) Revoke(ctx context.Context, id, replacedBy string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "revoked_at", Value: int64(0)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "revoked_at", Value: ns(now)}}}}); err != nil {
		return fmt.Errorf("visit mongostore: revoke: %w", err)
	}
	set := bson.D{}
	if replacedBy != "" {
		set = append(set, bson.E{Key: "replaced_by", Value: replacedBy})
	}
	var res *mongo.UpdateResult
	var err error
	if len(set) > 0 {
		res, err = s.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: set}})
		if err == nil && res.MatchedCount == 0 {
			return visit.ErrNotFound
		}
	} else {
		var n int64
		n, err = s.c.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
		if err == nil && n == 0 {
			return visit.ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("visit mongostore: revoke: %w", err)
	}
	return nil
}
