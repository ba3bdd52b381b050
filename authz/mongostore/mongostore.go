// Package mongostore is the authorization server's storage (authz.Storage)
// in the FHIR store's MongoDB database, beside store/mongo's collections:
// every collection is named authz_*, so several fhirgate processes on one
// MongoDB (replica set or sharded cluster) share clients, accounts,
// sessions and tokens. It runs on the embedded FerretDB v1.24 too.
//
// Each record is its JSON document (the same bytes as sqlitestore's data
// column) in field d, beside the fields that filters and indexes need
// (times are Unix nanoseconds, 0 for none: exact, so Revocations(since)
// never misses a revocation made in the same millisecond).
//
// No multi-document transaction (FerretDB has none) and no conditional
// update is relied on for single use: on FerretDB v1.24 findAndModify and
// update with a condition are a query followed by a write by _id, so two
// processes could both "win" (see shared design notes, ferretdb-notes.md).
// What is atomic on both servers, across processes, is an insert against
// a unique key. So:
//
//   - every Use* (code, refresh token, launch) and Register claims the value
//     by inserting a marker {_id: "<kind>/<hash>"} into authz_uses; the
//     insert that succeeds is the one use, a duplicate key is ErrUsed.
//     The record's used_at is then set for reading (GetRefreshToken falls
//     back to the marker should a process stop between the two writes).
//   - Register claims the invitation, then inserts the account (unique
//     username and identity), and deletes its claim when the account is
//     refused (ErrExists), so the invitation stays usable.
//   - RevokeFamily records each access token's revocation by inserting
//     {_id: jti} into authz_revocations: the tokens it returns are those
//     whose insert succeeded, so two concurrent revocations never report one
//     token twice. Setting revoked_at on the family and its refresh tokens
//     is idempotent and done first: a process stopping half-way leaves a
//     revoked family whose revocation can simply be run again.
//   - UseAssertion and Secret insert their key; CreateAccount relies on
//     the unique indexes of authz_accounts.
//
// Uniqueness that the interface demands is in unique indexes: _id of every
// collection, and authz_accounts' uname and ident (the username or the
// issuer and subject; an account without one stores a value derived from
// its id, so neither index needs to be sparse or partial, which FerretDB
// lacks). Leave the authz_* collections unsharded: they are small, and a
// unique index that is not the shard key is unique per shard only.
//
// Expired records are deleted by Prune (every authorization server process
// runs it every 10 minutes), not by TTL indexes: FerretDB v1.24 has no
// expireAfterSeconds, a TTL monitor would run on the wall clock rather
// than the server's (tests inject one), and families, codes and refresh
// tokens must live as long as their family, which a TTL index on their own
// fields cannot express.
package mongostore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/store/mongo/mongoutil"
)

// Prefix starts the name of every collection of the store.
const Prefix = "authz_"

// Collection names (without Prefix).
const (
	cClients     = "clients"
	cAccounts    = "accounts"
	cInvitations = "invitations"
	cSessions    = "sessions"
	cRequests    = "auth_requests"
	cFamilies    = "families"
	cCodes       = "codes"
	cRefresh     = "refresh_tokens"
	cAccess      = "access_tokens"
	cRevocations = "revocations"
	cApprovals   = "approvals"
	cLaunches    = "launches"
	cAssertions  = "assertions"
	cSecrets     = "secrets"
	cUses        = "uses"
)

// Store is authz.Storage on MongoDB.
type Store struct {
	mongoutil.Conn // the client Open connected (Close disconnects)
	db             *mongo.Database

	clients, accounts, invitations, sessions, requests, families, codes, refresh,
	access, revocations, approvals, launches, assertions, secrets, uses *mongo.Collection
}

var (
	_ authz.Storage  = (*Store)(nil)
	_ authz.Exporter = (*Store)(nil)
	_ authz.Importer = (*Store)(nil)
)

// Open connects to uri and opens the store in database (Close
// disconnects).
func Open(ctx context.Context, uri, database string) (*Store, error) {
	return mongoutil.Open(ctx, uri, database, "mongostore", New)
}

// New opens the store in db, creating its collections and indexes if
// needed. Close does not disconnect db's client.
func New(ctx context.Context, db *mongo.Database) (*Store, error) {
	s := &Store{db: db}
	for _, c := range []struct {
		p    **mongo.Collection
		name string
	}{
		{&s.clients, cClients}, {&s.accounts, cAccounts}, {&s.invitations, cInvitations}, {&s.sessions, cSessions},
		{&s.requests, cRequests}, {&s.families, cFamilies}, {&s.codes, cCodes}, {&s.refresh, cRefresh},
		{&s.access, cAccess}, {&s.revocations, cRevocations}, {&s.approvals, cApprovals}, {&s.launches, cLaunches},
		{&s.assertions, cAssertions}, {&s.secrets, cSecrets}, {&s.uses, cUses},
	} {
		*c.p = db.Collection(Prefix + c.name)
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

type index struct {
	coll   string
	name   string
	keys   bson.D
	unique bool
}

// indexes are the store's secondary indexes; each names what it serves.
var indexes = []index{
	{cAccounts, "uname", bson.D{{Key: "uname", Value: 1}}, true},                                               // AccountByUsername; usernames are unique
	{cAccounts, "ident", bson.D{{Key: "ident", Value: 1}}, true},                                               // AccountByIdentity; identities are unique
	{cAccounts, "username_id", bson.D{{Key: "username", Value: 1}, {Key: "_id", Value: 1}}, false},             // ListAccounts order
	{cFamilies, "account_client", bson.D{{Key: "account_id", Value: 1}, {Key: "client_id", Value: 1}}, false},  // RevokeGrants
	{cFamilies, "exp", bson.D{{Key: "exp", Value: 1}}, false},                                                  // Prune
	{cCodes, "family", bson.D{{Key: "family_id", Value: 1}}, false},                                            // Prune
	{cRefresh, "family", bson.D{{Key: "family_id", Value: 1}}, false},                                          // RevokeFamily, Prune
	{cAccess, "family", bson.D{{Key: "family_id", Value: 1}}, false},                                           // RevokeFamily
	{cAccess, "exp", bson.D{{Key: "exp", Value: 1}}, false},                                                    // Prune
	{cRevocations, "revoked_at", bson.D{{Key: "revoked_at", Value: 1}}, false},                                 // Revocations(since)
	{cRevocations, "exp", bson.D{{Key: "exp", Value: 1}}, false},                                               // Prune
	{cApprovals, "account_client", bson.D{{Key: "account_id", Value: 1}, {Key: "client_id", Value: 1}}, false}, // ListApprovals
	{cSessions, "exp", bson.D{{Key: "exp", Value: 1}}, false},                                                  // Prune
	{cRequests, "exp", bson.D{{Key: "exp", Value: 1}}, false},                                                  // Prune
	{cLaunches, "exp", bson.D{{Key: "exp", Value: 1}}, false},                                                  // Prune
	{cAssertions, "exp", bson.D{{Key: "exp", Value: 1}}, false},                                                // Prune
	{cInvitations, "exp", bson.D{{Key: "exp", Value: 1}}, false},                                               // Prune
	{cUses, "family", bson.D{{Key: "family_id", Value: 1}}, false},                                             // Prune
	{cUses, "exp", bson.D{{Key: "exp", Value: 1}}, false},                                                      // Prune
}

// migrate creates the missing collections (explicitly, so that the
// embedded store's _id index covers them all) and indexes, one at a time:
// FerretDB v1.24 panics on a createIndexes of several indexes some of
// which exist.
func (s *Store) migrate(ctx context.Context) error {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("mongostore: list collections: %w", err)
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	for _, c := range []string{cClients, cAccounts, cInvitations, cSessions, cRequests, cFamilies, cCodes, cRefresh,
		cAccess, cRevocations, cApprovals, cLaunches, cAssertions, cSecrets, cUses} {
		if have[Prefix+c] {
			continue
		}
		var ce mongo.CommandError
		if err := s.db.CreateCollection(ctx, Prefix+c); err != nil && !(errors.As(err, &ce) && ce.Code == 48) { // 48: NamespaceExists (another process)
			return fmt.Errorf("mongostore: create %s: %w", Prefix+c, err)
		}
	}
	for _, ix := range indexes {
		m := mongo.IndexModel{Keys: ix.keys, Options: options.Index().SetName(ix.name)}
		if ix.unique {
			m.Options.SetUnique(true)
		}
		if err := mongoutil.CreateIndexes(ctx, s.db.Collection(Prefix+ix.coll), m); err != nil {
			return fmt.Errorf("mongostore: index %s.%s: %w", Prefix+ix.coll, ix.name, err)
		}
	}
	return nil
}

// Close disconnects the client Open connected (within 10 seconds).
func (s *Store) Close() error { return s.Conn.CloseWithin(10 * time.Second) }

// Database is the store's database.
func (s *Store) Database() *mongo.Database { return s.db }

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func enc(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("mongostore: encode: %w", err)
	}
	return string(b), nil
}

func dec(data string, v any) error {
	if err := json.Unmarshal([]byte(data), v); err != nil {
		return fmt.Errorf("mongostore: decode: %w", err)
	}
	return nil
}

// pair is an injective key of two strings (the first's length, then both).
func pair(a, b string) string { return strconv.Itoa(len(a)) + ":" + a + "|" + b }

// row is a stored document (the fields a collection has).
type row struct {
	ID        string `bson:"_id"`
	D         string `bson:"d"`
	Exp       int64  `bson:"exp"`
	UsedAt    int64  `bson:"used_at"`
	RevokedAt int64  `bson:"revoked_at"`
	FamilyID  string `bson:"family_id"`
	At        int64  `bson:"at"`
	Owner     string `bson:"owner"`
	ClientID  string `bson:"client_id"`
	JTI       string `bson:"jti"`
	V         []byte `bson:"v"`
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("mongostore: %w", err)
}

// find reads the document _id = id (ErrNotFound when none).
func find(ctx context.Context, c *mongo.Collection, id string) (*row, error) {
	var r row
	err := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&r)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, authz.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("mongostore: %s: %w", c.Name(), err)
	}
	return &r, nil
}

// get decodes the record _id = id into v.
func get(ctx context.Context, c *mongo.Collection, id string, v any) error {
	r, err := find(ctx, c, id)
	if err != nil {
		return err
	}
	return dec(r.D, v)
}

// insert inserts doc: ErrExists on a duplicate key.
func insert(ctx context.Context, c *mongo.Collection, doc bson.D) error {
	_, err := c.InsertOne(ctx, doc)
	if mongo.IsDuplicateKeyError(err) {
		return authz.ErrExists
	}
	if err != nil {
		return fmt.Errorf("mongostore: %s: %w", c.Name(), err)
	}
	return nil
}

// withData is doc with the JSON of v as d.
func withData(v any, doc bson.D) (bson.D, error) {
	d, err := enc(v)
	if err != nil {
		return nil, err
	}
	return append(doc, bson.E{Key: "d", Value: d}), nil
}

func insertData(ctx context.Context, c *mongo.Collection, v any, doc bson.D) error {
	doc, err := withData(v, doc)
	if err != nil {
		return err
	}
	return insert(ctx, c, doc)
}

// replace replaces the document doc[0] names (ErrNotFound when none,
// ErrExists when a unique index refuses it).
func replace(ctx context.Context, c *mongo.Collection, v any, doc bson.D) error {
	doc, err := withData(v, doc)
	if err != nil {
		return err
	}
	res, err := c.ReplaceOne(ctx, bson.D{doc[0]}, doc)
	if mongo.IsDuplicateKeyError(err) {
		return authz.ErrExists
	}
	if err != nil {
		return fmt.Errorf("mongostore: %s: %w", c.Name(), err)
	}
	if res.MatchedCount == 0 {
		return authz.ErrNotFound
	}
	return nil
}

func list[T any](ctx context.Context, c *mongo.Collection, filter bson.D, sort bson.D) ([]*T, error) {
	cur, err := c.Find(ctx, filter, options.Find().SetSort(sort).SetProjection(bson.D{{Key: "d", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongostore: %s: %w", c.Name(), err)
	}
	var rows []row
	if err := cur.All(ctx, &rows); err != nil {
		return nil, fmt.Errorf("mongostore: %s: %w", c.Name(), err)
	}
	out := make([]*T, 0, len(rows))
	for _, r := range rows {
		v := new(T)
		if err := dec(r.D, v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Single use.

// claim inserts the use marker id: first is true for the one caller whose
// insert succeeded; the others get the first use's time. The marker
// carries a random owner, so a driver's retried insert that finds its own
// marker is still the first use.
func (s *Store) claim(ctx context.Context, id string, now time.Time, extra ...bson.E) (first bool, at int64, err error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	owner := hex.EncodeToString(b[:])
	doc := append(bson.D{{Key: "_id", Value: id}, {Key: "at", Value: ns(now)}, {Key: "owner", Value: owner}}, extra...)
	for range 3 {
		err = insert(ctx, s.uses, doc)
		if err == nil {
			return true, ns(now), nil
		}
		if !errors.Is(err, authz.ErrExists) {
			return false, 0, err
		}
		r, err := find(ctx, s.uses, id)
		if errors.Is(err, authz.ErrNotFound) {
			continue // released meanwhile (a refused registration): claim again
		}
		if err != nil {
			return false, 0, err
		}
		return r.Owner == owner, r.At, nil
	}
	return false, 0, fmt.Errorf("mongostore: claim %s: %w", id, authz.ErrUsed)
}

// used is the time of the use marker id, 0 when there is none.
func (s *Store) used(ctx context.Context, id string) (int64, error) {
	r, err := find(ctx, s.uses, id)
	if errors.Is(err, authz.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return r.At, nil
}

// markUsed records the use on the record itself (for reading).
func markUsed(ctx context.Context, c *mongo.Collection, id string, at int64) error {
	_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "used_at", Value: at}}}})
	return wrap(err)
}

// Clients.

func clientDoc(c *authz.Client) bson.D { return bson.D{{Key: "_id", Value: c.ID}} }

func (s *Store) CreateClient(ctx context.Context, c *authz.Client) error {
	return insertData(ctx, s.clients, c, clientDoc(c))
}

func (s *Store) GetClient(ctx context.Context, id string) (*authz.Client, error) {
	c := &authz.Client{}
	return c, get(ctx, s.clients, id, c)
}

func (s *Store) ListClients(ctx context.Context) ([]*authz.Client, error) {
	return list[authz.Client](ctx, s.clients, bson.D{}, bson.D{{Key: "_id", Value: 1}})
}

func (s *Store) UpdateClient(ctx context.Context, c *authz.Client) error {
	return replace(ctx, s.clients, c, clientDoc(c))
}

func (s *Store) DeleteClient(ctx context.Context, id string) error {
	res, err := s.clients.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return wrap(err)
	}
	if res.DeletedCount == 0 {
		return authz.ErrNotFound
	}
	return nil
}

// Accounts.

// accountDoc: uname and ident hold the unique username and identity, or
// a value derived from the id when the account has none (the prefixes
// keep the three kinds of values apart).
func accountDoc(a *authz.Account) bson.D {
	uname, ident := "id:"+a.ID, "id:"+a.ID
	if a.Username != "" {
		uname = "u:" + a.Username
	}
	if a.Issuer != "" || a.Subject != "" {
		ident = "i:" + pair(a.Issuer, a.Subject)
	}
	return bson.D{{Key: "_id", Value: a.ID}, {Key: "username", Value: a.Username}, {Key: "uname", Value: uname}, {Key: "ident", Value: ident}}
}

func (s *Store) CreateAccount(ctx context.Context, a *authz.Account) error {
	return insertData(ctx, s.accounts, a, accountDoc(a))
}

func (s *Store) GetAccount(ctx context.Context, id string) (*authz.Account, error) {
	a := &authz.Account{}
	return a, get(ctx, s.accounts, id, a)
}

func (s *Store) accountBy(ctx context.Context, field, value string) (*authz.Account, error) {
	var r row
	err := s.accounts.FindOne(ctx, bson.D{{Key: field, Value: value}}).Decode(&r)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, authz.ErrNotFound
	}
	if err != nil {
		return nil, wrap(err)
	}
	a := &authz.Account{}
	return a, dec(r.D, a)
}

func (s *Store) AccountByUsername(ctx context.Context, username string) (*authz.Account, error) {
	if username == "" {
		return nil, authz.ErrNotFound
	}
	return s.accountBy(ctx, "uname", "u:"+username)
}

func (s *Store) AccountByIdentity(ctx context.Context, issuer, subject string) (*authz.Account, error) {
	if issuer == "" && subject == "" {
		return nil, authz.ErrNotFound
	}
	return s.accountBy(ctx, "ident", "i:"+pair(issuer, subject))
}

func (s *Store) UpdateAccount(ctx context.Context, a *authz.Account) error {
	return replace(ctx, s.accounts, a, accountDoc(a))
}

func (s *Store) ListAccounts(ctx context.Context) ([]*authz.Account, error) {
	return list[authz.Account](ctx, s.accounts, bson.D{}, bson.D{{Key: "username", Value: 1}, {Key: "_id", Value: 1}})
}

// Invitations.

func invitationDoc(inv *authz.Invitation) bson.D {
	return bson.D{{Key: "_id", Value: inv.Hash}, {Key: "exp", Value: ns(inv.ExpiresAt)}, {Key: "used_at", Value: ns(inv.UsedAt)}}
}

func (s *Store) CreateInvitation(ctx context.Context, inv *authz.Invitation) error {
	return insertData(ctx, s.invitations, inv, invitationDoc(inv))
}

// Register claims the invitation (the use marker), creates the account,
// and releases the claim when the account is refused.
func (s *Store) Register(ctx context.Context, hash string, a *authz.Account, now time.Time) (*authz.Invitation, error) {
	r, err := find(ctx, s.invitations, hash)
	if err != nil {
		return nil, err
	}
	inv := &authz.Invitation{}
	if err := dec(r.D, inv); err != nil {
		return nil, err
	}
	if r.UsedAt != 0 {
		inv.UsedAt = fromNS(r.UsedAt)
		return inv, authz.ErrUsed
	}
	if !now.Before(inv.ExpiresAt) {
		return inv, authz.ErrExpired
	}
	marker := "invitation/" + hash
	first, at, err := s.claim(ctx, marker, now, bson.E{Key: "account_id", Value: a.ID})
	if err != nil {
		return nil, err
	}
	if !first {
		inv.UsedAt = fromNS(at)
		return inv, authz.ErrUsed
	}
	a.FHIRUser = inv.FHIRUser
	if err := s.CreateAccount(ctx, a); err != nil {
		// Release the claim: the invitation stays usable.
		if _, derr := s.uses.DeleteOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: marker}, {Key: "account_id", Value: a.ID}}); derr != nil {
			return nil, errors.Join(err, fmt.Errorf("mongostore: release invitation: %w", derr))
		}
		return nil, err
	}
	inv.UsedAt, inv.AccountID = now, a.ID
	if err := replace(ctx, s.invitations, inv, invitationDoc(inv)); err != nil {
		return nil, err
	}
	return inv, nil
}

// Sessions.

func sessionDoc(se *authz.Session) bson.D {
	return bson.D{{Key: "_id", Value: se.Hash}, {Key: "exp", Value: ns(se.ExpiresAt)}}
}

func (s *Store) CreateSession(ctx context.Context, se *authz.Session) error {
	return insertData(ctx, s.sessions, se, sessionDoc(se))
}

func (s *Store) GetSession(ctx context.Context, hash string) (*authz.Session, error) {
	se := &authz.Session{}
	return se, get(ctx, s.sessions, hash, se)
}

func (s *Store) UpdateSession(ctx context.Context, se *authz.Session) error {
	return replace(ctx, s.sessions, se, sessionDoc(se))
}

func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	_, err := s.sessions.DeleteOne(ctx, bson.D{{Key: "_id", Value: hash}})
	return wrap(err)
}

// Authorization requests.

func requestDoc(r *authz.AuthRequest) bson.D {
	return bson.D{{Key: "_id", Value: r.ID}, {Key: "exp", Value: ns(r.ExpiresAt)}}
}

func (s *Store) CreateAuthRequest(ctx context.Context, r *authz.AuthRequest) error {
	return insertData(ctx, s.requests, r, requestDoc(r))
}

func (s *Store) GetAuthRequest(ctx context.Context, id string) (*authz.AuthRequest, error) {
	r := &authz.AuthRequest{}
	return r, get(ctx, s.requests, id, r)
}

func (s *Store) UpdateAuthRequest(ctx context.Context, r *authz.AuthRequest) error {
	return replace(ctx, s.requests, r, requestDoc(r))
}

func (s *Store) DeleteAuthRequest(ctx context.Context, id string) error {
	_, err := s.requests.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	return wrap(err)
}

// Families, codes and tokens.

func familyDoc(f *authz.Family) bson.D {
	return bson.D{{Key: "_id", Value: f.ID}, {Key: "account_id", Value: f.AccountID}, {Key: "client_id", Value: f.ClientID},
		{Key: "exp", Value: ns(f.ExpiresAt)}, {Key: "revoked_at", Value: ns(f.RevokedAt)}}
}

func (s *Store) CreateFamily(ctx context.Context, f *authz.Family) error {
	return insertData(ctx, s.families, f, familyDoc(f))
}

func (s *Store) GetFamily(ctx context.Context, id string) (*authz.Family, error) {
	r, err := find(ctx, s.families, id)
	if err != nil {
		return nil, err
	}
	f := &authz.Family{}
	if err := dec(r.D, f); err != nil {
		return nil, err
	}
	f.RevokedAt = fromNS(r.RevokedAt)
	return f, nil
}

func codeDoc(c *authz.Code) bson.D {
	return bson.D{{Key: "_id", Value: c.Hash}, {Key: "family_id", Value: c.FamilyID}, {Key: "exp", Value: ns(c.ExpiresAt)},
		{Key: "used_at", Value: ns(c.UsedAt)}}
}

func (s *Store) CreateCode(ctx context.Context, c *authz.Code) error {
	return insertData(ctx, s.codes, c, codeDoc(c))
}

func (s *Store) UseCode(ctx context.Context, hash string, now time.Time) (*authz.Code, error) {
	r, err := find(ctx, s.codes, hash)
	if err != nil {
		return nil, err
	}
	c := &authz.Code{}
	if err := dec(r.D, c); err != nil {
		return nil, err
	}
	if r.UsedAt != 0 {
		c.UsedAt = fromNS(r.UsedAt)
		return c, authz.ErrUsed
	}
	first, at, err := s.claim(ctx, "code/"+hash, now, bson.E{Key: "family_id", Value: c.FamilyID})
	if err != nil {
		return nil, err
	}
	c.UsedAt = fromNS(at)
	if !first {
		return c, authz.ErrUsed
	}
	return c, markUsed(ctx, s.codes, hash, at)
}

func refreshDoc(t *authz.RefreshToken) bson.D {
	return bson.D{{Key: "_id", Value: t.Hash}, {Key: "family_id", Value: t.FamilyID}, {Key: "exp", Value: ns(t.ExpiresAt)},
		{Key: "used_at", Value: ns(t.UsedAt)}, {Key: "revoked_at", Value: ns(t.RevokedAt)}}
}

func (s *Store) CreateRefreshToken(ctx context.Context, t *authz.RefreshToken) error {
	return insertData(ctx, s.refresh, t, refreshDoc(t))
}

func (s *Store) refreshToken(ctx context.Context, hash string) (*authz.RefreshToken, *row, error) {
	r, err := find(ctx, s.refresh, hash)
	if err != nil {
		return nil, nil, err
	}
	t := &authz.RefreshToken{}
	if err := dec(r.D, t); err != nil {
		return nil, nil, err
	}
	t.UsedAt, t.RevokedAt = fromNS(r.UsedAt), fromNS(r.RevokedAt)
	return t, r, nil
}

func (s *Store) GetRefreshToken(ctx context.Context, hash string) (*authz.RefreshToken, error) {
	t, r, err := s.refreshToken(ctx, hash)
	if err != nil {
		return nil, err
	}
	if r.UsedAt == 0 {
		// The marker decides; used_at may lag it (a process that stopped
		// between the two writes).
		at, err := s.used(ctx, "refresh/"+hash)
		if err != nil {
			return nil, err
		}
		t.UsedAt = fromNS(at)
	}
	return t, nil
}

func (s *Store) UseRefreshToken(ctx context.Context, hash string, now time.Time) (*authz.RefreshToken, error) {
	t, r, err := s.refreshToken(ctx, hash)
	if err != nil {
		return nil, err
	}
	if r.UsedAt != 0 {
		return t, authz.ErrUsed
	}
	first, at, err := s.claim(ctx, "refresh/"+hash, now, bson.E{Key: "family_id", Value: t.FamilyID})
	if err != nil {
		return nil, err
	}
	t.UsedAt = fromNS(at)
	if !first {
		return t, authz.ErrUsed
	}
	return t, markUsed(ctx, s.refresh, hash, at)
}

func accessDoc(t *authz.AccessToken) bson.D {
	return bson.D{{Key: "_id", Value: t.JTI}, {Key: "family_id", Value: t.FamilyID}, {Key: "exp", Value: ns(t.ExpiresAt)}}
}

func (s *Store) RecordAccessToken(ctx context.Context, t *authz.AccessToken) error {
	return insertData(ctx, s.access, t, accessDoc(t))
}

func (s *Store) GetAccessToken(ctx context.Context, jti string) (*authz.AccessToken, error) {
	t := &authz.AccessToken{}
	return t, get(ctx, s.access, jti, t)
}

func revocationDoc(r authz.Revocation) bson.D {
	return bson.D{{Key: "_id", Value: r.JTI}, {Key: "exp", Value: ns(r.ExpiresAt)}, {Key: "revoked_at", Value: ns(r.RevokedAt)}}
}

// revoke records r: false when the token was revoked before.
func (s *Store) revoke(ctx context.Context, r authz.Revocation) (bool, error) {
	err := insert(ctx, s.revocations, revocationDoc(r))
	if errors.Is(err, authz.ErrExists) {
		return false, nil
	}
	return err == nil, err
}

// revokeFamilies revokes the families filter matches: each family and its
// refresh tokens first (idempotent), then its unexpired access tokens, one
// insert each (the tokens revoked now are those whose insert succeeded).
func (s *Store) revokeFamilies(ctx context.Context, now time.Time, filter bson.D) ([]authz.Revocation, error) {
	cur, err := s.families.Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "revoked_at", Value: 1}}))
	if err != nil {
		return nil, wrap(err)
	}
	var fams []row
	if err := cur.All(ctx, &fams); err != nil {
		return nil, wrap(err)
	}
	t := ns(now)
	var out []authz.Revocation
	for _, f := range fams {
		if f.RevokedAt == 0 {
			if _, err := s.families.UpdateOne(ctx, bson.D{{Key: "_id", Value: f.ID}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "revoked_at", Value: t}}}}); err != nil {
				return nil, wrap(err)
			}
		}
		if _, err := s.refresh.UpdateMany(ctx, bson.D{{Key: "family_id", Value: f.ID}, {Key: "revoked_at", Value: int64(0)}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "revoked_at", Value: t}}}}); err != nil {
			return nil, wrap(err)
		}
		cur, err := s.access.Find(ctx, bson.D{{Key: "family_id", Value: f.ID}, {Key: "exp", Value: bson.D{{Key: "$gt", Value: t}}}},
			options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "exp", Value: 1}}))
		if err != nil {
			return nil, wrap(err)
		}
		var toks []row
		if err := cur.All(ctx, &toks); err != nil {
			return nil, wrap(err)
		}
		for _, a := range toks {
			r := authz.Revocation{JTI: a.ID, ExpiresAt: fromNS(a.Exp), RevokedAt: now}
			added, err := s.revoke(ctx, r)
			if err != nil {
				return nil, err
			}
			if added {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func (s *Store) RevokeFamily(ctx context.Context, id string, now time.Time) ([]authz.Revocation, error) {
	return s.revokeFamilies(ctx, now, bson.D{{Key: "_id", Value: id}})
}

func (s *Store) RevokeGrants(ctx context.Context, accountID, clientID string, now time.Time) ([]authz.Revocation, error) {
	return s.revokeFamilies(ctx, now, bson.D{{Key: "account_id", Value: accountID}, {Key: "client_id", Value: clientID}})
}

func (s *Store) RevokeAccessToken(ctx context.Context, r authz.Revocation) error {
	_, err := s.revoke(ctx, r)
	return err
}

func (s *Store) Revocations(ctx context.Context, since, now time.Time) ([]authz.Revocation, error) {
	cur, err := s.revocations.Find(ctx, bson.D{
		{Key: "revoked_at", Value: bson.D{{Key: "$gte", Value: ns(since)}}},
		{Key: "exp", Value: bson.D{{Key: "$gt", Value: ns(now)}}},
	})
	if err != nil {
		return nil, wrap(err)
	}
	var rows []row
	if err := cur.All(ctx, &rows); err != nil {
		return nil, wrap(err)
	}
	out := make([]authz.Revocation, 0, len(rows))
	for _, r := range rows {
		out = append(out, authz.Revocation{JTI: r.ID, ExpiresAt: fromNS(r.Exp), RevokedAt: fromNS(r.RevokedAt)})
	}
	return out, nil
}

// Approvals.

func approvalDoc(a *authz.Approval) bson.D {
	return bson.D{{Key: "_id", Value: pair(a.AccountID, a.ClientID)}, {Key: "account_id", Value: a.AccountID}, {Key: "client_id", Value: a.ClientID}}
}

func (s *Store) PutApproval(ctx context.Context, a *authz.Approval) error {
	doc, err := withData(a, approvalDoc(a))
	if err != nil {
		return err
	}
	for try := 0; ; try++ {
		_, err = s.approvals.ReplaceOne(ctx, bson.D{doc[0]}, doc, options.Replace().SetUpsert(true))
		// Two first approvals at once may both insert (FerretDB's upsert
		// is a query, then an insert): the second becomes a replace.
		if !mongo.IsDuplicateKeyError(err) || try == 2 {
			return wrap(err)
		}
	}
}

func (s *Store) GetApproval(ctx context.Context, accountID, clientID string) (*authz.Approval, error) {
	a := &authz.Approval{}
	return a, get(ctx, s.approvals, pair(accountID, clientID), a)
}

func (s *Store) ListApprovals(ctx context.Context, accountID string) ([]*authz.Approval, error) {
	return list[authz.Approval](ctx, s.approvals, bson.D{{Key: "account_id", Value: accountID}}, bson.D{{Key: "client_id", Value: 1}})
}

func (s *Store) DeleteApproval(ctx context.Context, accountID, clientID string) error {
	res, err := s.approvals.DeleteOne(ctx, bson.D{{Key: "_id", Value: pair(accountID, clientID)}})
	if err != nil {
		return wrap(err)
	}
	if res.DeletedCount == 0 {
		return authz.ErrNotFound
	}
	return nil
}

// Launch contexts.

func launchDoc(l *authz.LaunchContext) bson.D {
	return bson.D{{Key: "_id", Value: l.Hash}, {Key: "exp", Value: ns(l.ExpiresAt)}, {Key: "used_at", Value: ns(l.UsedAt)}}
}

func (s *Store) CreateLaunch(ctx context.Context, l *authz.LaunchContext) error {
	return insertData(ctx, s.launches, l, launchDoc(l))
}

// UseLaunch burns the launch even when it expired (as sqlitestore does).
func (s *Store) UseLaunch(ctx context.Context, hash string, now time.Time) (*authz.LaunchContext, error) {
	r, err := find(ctx, s.launches, hash)
	if err != nil {
		return nil, err
	}
	l := &authz.LaunchContext{}
	if err := dec(r.D, l); err != nil {
		return nil, err
	}
	if r.UsedAt != 0 {
		l.UsedAt = fromNS(r.UsedAt)
		return l, authz.ErrUsed
	}
	first, at, err := s.claim(ctx, "launch/"+hash, now, bson.E{Key: "exp", Value: ns(l.ExpiresAt)})
	if err != nil {
		return nil, err
	}
	l.UsedAt = fromNS(at)
	if !first {
		return l, authz.ErrUsed
	}
	if err := markUsed(ctx, s.launches, hash, at); err != nil {
		return nil, err
	}
	if !now.Before(l.ExpiresAt) {
		return l, authz.ErrExpired
	}
	return l, nil
}

// Client assertions.

func assertionDoc(a authz.Assertion) bson.D {
	return bson.D{{Key: "_id", Value: pair(a.ClientID, a.JTI)}, {Key: "client_id", Value: a.ClientID}, {Key: "jti", Value: a.JTI},
		{Key: "exp", Value: ns(a.ExpiresAt)}}
}

func (s *Store) UseAssertion(ctx context.Context, clientID, jti string, exp time.Time) error {
	err := insert(ctx, s.assertions, assertionDoc(authz.Assertion{ClientID: clientID, JTI: jti, ExpiresAt: exp}))
	if errors.Is(err, authz.ErrExists) {
		return authz.ErrUsed
	}
	return err
}

// Secrets.

func (s *Store) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	r, err := find(ctx, s.secrets, name)
	if err == nil {
		return r.V, nil
	}
	if !errors.Is(err, authz.ErrNotFound) {
		return nil, err
	}
	v, err := gen()
	if err != nil {
		return nil, err
	}
	if err := insert(ctx, s.secrets, bson.D{{Key: "_id", Value: name}, {Key: "v", Value: v}}); err != nil && !errors.Is(err, authz.ErrExists) {
		return nil, err
	}
	// Another process may have won the race: everyone uses the stored value.
	r, err = find(ctx, s.secrets, name)
	if err != nil {
		return nil, err
	}
	return r.V, nil
}

// Prune deletes expired records. Families, their codes, refresh tokens and
// use markers stay until the family expires (reuse detection needs them);
// used invitations stay as a record of who registered with which code.
func (s *Store) Prune(ctx context.Context, now time.Time) error {
	t := ns(now)
	expired := bson.D{{Key: "exp", Value: bson.D{{Key: "$lte", Value: t}}}}
	for _, c := range []*mongo.Collection{s.sessions, s.requests, s.launches, s.assertions, s.revocations, s.access} {
		if _, err := c.DeleteMany(ctx, expired); err != nil {
			return fmt.Errorf("mongostore: prune %s: %w", c.Name(), err)
		}
	}
	// Launch markers carry the launch's expiry; the others have none (0).
	if _, err := s.uses.DeleteMany(ctx, bson.D{{Key: "exp", Value: bson.D{{Key: "$gt", Value: int64(0)}, {Key: "$lte", Value: t}}}}); err != nil {
		return fmt.Errorf("mongostore: prune uses: %w", err)
	}
	// Expired invitations nobody used: the marker decides (used_at may lag it).
	invs, err := s.ids(ctx, s.invitations, bson.D{{Key: "exp", Value: bson.D{{Key: "$lte", Value: t}}}, {Key: "used_at", Value: int64(0)}})
	if err != nil {
		return err
	}
	for _, id := range invs {
		at, err := s.used(ctx, "invitation/"+id)
		if err != nil {
			return err
		}
		if at == 0 {
			if _, err := s.invitations.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
				return fmt.Errorf("mongostore: prune invitations: %w", err)
			}
		}
	}
	fams, err := s.ids(ctx, s.families, expired)
	if err != nil {
		return err
	}
	for len(fams) > 0 {
		n := min(len(fams), 500)
		in := bson.D{{Key: "$in", Value: fams[:n]}}
		for _, c := range []*mongo.Collection{s.codes, s.refresh, s.uses} {
			if _, err := c.DeleteMany(ctx, bson.D{{Key: "family_id", Value: in}}); err != nil {
				return fmt.Errorf("mongostore: prune %s: %w", c.Name(), err)
			}
		}
		// The families last: an interrupted prune finds them again.
		if _, err := s.families.DeleteMany(ctx, bson.D{{Key: "_id", Value: in}}); err != nil {
			return fmt.Errorf("mongostore: prune families: %w", err)
		}
		fams = fams[n:]
	}
	return nil
}

// ids lists the _id of the documents filter matches.
func (s *Store) ids(ctx context.Context, c *mongo.Collection, filter bson.D) ([]string, error) {
	cur, err := c.Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("mongostore: %s: %w", c.Name(), err)
	}
	var rows []row
	if err := cur.All(ctx, &rows); err != nil {
		return nil, fmt.Errorf("mongostore: %s: %w", c.Name(), err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out, nil
}
