package mongostore

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/fhirgate/fhirgate/authz"
)

// Export reads the whole state (authz.Exporter). The used and revoked
// state is read from the records' fields and the use markers.
func (s *Store) Export(ctx context.Context) (*authz.Snapshot, error) {
	snap := &authz.Snapshot{Secrets: map[string][]byte{}}
	usedAt := map[string]int64{}
	if err := scan(ctx, s.uses, func(r row) error { usedAt[r.ID] = r.At; return nil }); err != nil {
		return nil, err
	}
	used := func(r row, marker string) int64 {
		if r.UsedAt != 0 {
			return r.UsedAt
		}
		return usedAt[marker]
	}
	err := errors.Join(
		scanData(ctx, s.clients, func(r row, c *authz.Client) { snap.Clients = append(snap.Clients, c) }),
		scanData(ctx, s.accounts, func(r row, a *authz.Account) { snap.Accounts = append(snap.Accounts, a) }),
		scanData(ctx, s.invitations, func(r row, inv *authz.Invitation) {
			inv.UsedAt = fromNS(used(r, "invitation/"+r.ID))
			snap.Invitations = append(snap.Invitations, inv)
		}),
		scanData(ctx, s.sessions, func(r row, se *authz.Session) { snap.Sessions = append(snap.Sessions, se) }),
		scanData(ctx, s.requests, func(r row, q *authz.AuthRequest) { snap.AuthRequests = append(snap.AuthRequests, q) }),
		scanData(ctx, s.families, func(r row, f *authz.Family) {
			f.RevokedAt = fromNS(r.RevokedAt)
			snap.Families = append(snap.Families, f)
		}),
		scanData(ctx, s.codes, func(r row, c *authz.Code) {
			c.UsedAt = fromNS(used(r, "code/"+r.ID))
			snap.Codes = append(snap.Codes, c)
		}),
		scanData(ctx, s.refresh, func(r row, t *authz.RefreshToken) {
			t.UsedAt, t.RevokedAt = fromNS(used(r, "refresh/"+r.ID)), fromNS(r.RevokedAt)
			snap.RefreshTokens = append(snap.RefreshTokens, t)
		}),
		scanData(ctx, s.access, func(r row, t *authz.AccessToken) { snap.AccessTokens = append(snap.AccessTokens, t) }),
		scan(ctx, s.revocations, func(r row) error {
			snap.Revocations = append(snap.Revocations, authz.Revocation{JTI: r.ID, ExpiresAt: fromNS(r.Exp), RevokedAt: fromNS(r.RevokedAt)})
			return nil
		}),
		scanData(ctx, s.approvals, func(r row, a *authz.Approval) { snap.Approvals = append(snap.Approvals, a) }),
		scanData(ctx, s.launches, func(r row, l *authz.LaunchContext) {
			l.UsedAt = fromNS(used(r, "launch/"+r.ID))
			snap.Launches = append(snap.Launches, l)
		}),
		scan(ctx, s.assertions, func(r row) error {
			snap.Assertions = append(snap.Assertions, authz.Assertion{ClientID: r.ClientID, JTI: r.JTI, ExpiresAt: fromNS(r.Exp)})
			return nil
		}),
		scan(ctx, s.secrets, func(r row) error { snap.Secrets[r.ID] = r.V; return nil }),
	)
	if err != nil {
		return nil, err
	}
	return snap, nil
}

func scan(ctx context.Context, c *mongo.Collection, f func(row) error) error {
	cur, err := c.Find(ctx, bson.D{})
	if err != nil {
		return wrap(err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var r row
		if err := cur.Decode(&r); err != nil {
			return wrap(err)
		}
		if err := f(r); err != nil {
			return err
		}
	}
	return wrap(cur.Err())
}

func scanData[T any](ctx context.Context, c *mongo.Collection, f func(row, *T)) error {
	return scan(ctx, c, func(r row) error {
		v := new(T)
		if err := dec(r.D, v); err != nil {
			return err
		}
		f(r, v)
		return nil
	})
}

// Import adds the snapshot's records (authz.Importer): one insert each, a
// record whose key exists is kept, so an interrupted import can run again.
// Used values get their use marker too.
func (s *Store) Import(ctx context.Context, snap *authz.Snapshot) (int, error) {
	n := 0
	add := func(c *mongo.Collection, v any, doc bson.D) error {
		var err error
		if v != nil {
			if doc, err = withData(v, doc); err != nil {
				return err
			}
		}
		switch err = insert(ctx, c, doc); {
		case err == nil:
			n++
			return nil
		case errors.Is(err, authz.ErrExists):
			return nil
		default:
			return err
		}
	}
	mark := func(kind, id string, at int64, extra ...bson.E) error {
		if at == 0 {
			return nil
		}
		err := insert(ctx, s.uses, append(bson.D{{Key: "_id", Value: kind + "/" + id}, {Key: "at", Value: at}, {Key: "owner", Value: "import"}}, extra...))
		if errors.Is(err, authz.ErrExists) {
			return nil
		}
		return err
	}
	for _, c := range snap.Clients {
		if err := add(s.clients, c, clientDoc(c)); err != nil {
			return n, err
		}
	}
	for _, a := range snap.Accounts {
		if err := add(s.accounts, a, accountDoc(a)); err != nil {
			return n, err
		}
	}
	for _, inv := range snap.Invitations {
		if err := mark("invitation", inv.Hash, ns(inv.UsedAt), bson.E{Key: "account_id", Value: inv.AccountID}); err != nil {
			return n, err
		}
		if err := add(s.invitations, inv, invitationDoc(inv)); err != nil {
			return n, err
		}
	}
	for _, se := range snap.Sessions {
		if err := add(s.sessions, se, sessionDoc(se)); err != nil {
			return n, err
		}
	}
	for _, r := range snap.AuthRequests {
		if err := add(s.requests, r, requestDoc(r)); err != nil {
			return n, err
		}
	}
	for _, f := range snap.Families {
		if err := add(s.families, f, familyDoc(f)); err != nil {
			return n, err
		}
	}
	for _, c := range snap.Codes {
		if err := mark("code", c.Hash, ns(c.UsedAt), bson.E{Key: "family_id", Value: c.FamilyID}); err != nil {
			return n, err
		}
		if err := add(s.codes, c, codeDoc(c)); err != nil {
			return n, err
		}
	}
	for _, t := range snap.RefreshTokens {
		if err := mark("refresh", t.Hash, ns(t.UsedAt), bson.E{Key: "family_id", Value: t.FamilyID}); err != nil {
			return n, err
		}
		if err := add(s.refresh, t, refreshDoc(t)); err != nil {
			return n, err
		}
	}
	for _, t := range snap.AccessTokens {
		if err := add(s.access, t, accessDoc(t)); err != nil {
			return n, err
		}
	}
	for _, r := range snap.Revocations {
		if err := add(s.revocations, nil, revocationDoc(r)); err != nil {
			return n, err
		}
	}
	for _, a := range snap.Approvals {
		if err := add(s.approvals, a, approvalDoc(a)); err != nil {
			return n, err
		}
	}
	for _, l := range snap.Launches {
		if err := mark("launch", l.Hash, ns(l.UsedAt), bson.E{Key: "exp", Value: ns(l.ExpiresAt)}); err != nil {
			return n, err
		}
		if err := add(s.launches, l, launchDoc(l)); err != nil {
			return n, err
		}
	}
	for _, a := range snap.Assertions {
		if err := add(s.assertions, nil, assertionDoc(a)); err != nil {
			return n, err
		}
	}
	for name, v := range snap.Secrets {
		if err := add(s.secrets, nil, bson.D{{Key: "_id", Value: name}, {Key: "v", Value: v}}); err != nil {
			return n, err
		}
	}
	return n, nil
}
