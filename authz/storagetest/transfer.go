package storagetest

import (
	"errors"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/authz"
)

// testExportImport fills src, exports it (authz.Exporter), imports the
// snapshot into the empty dst (authz.Importer), and checks that dst
// behaves as src: the records, and the used and revoked state of single-use
// values. Importing again adds nothing.
func testExportImport(t *testing.T, src, dst authz.Storage) {
	t.Cleanup(func() { dst.Close() })
	ex, ok := src.(authz.Exporter)
	if !ok {
		t.Skip("the storage has no Export")
	}
	im, ok := dst.(authz.Importer)
	if !ok {
		t.Skip("the storage has no Import")
	}
	must(t, src.CreateClient(ctx, &authz.Client{ID: "app", Name: "App", AuthMethod: authz.AuthNone, RedirectURIs: []string{"https://app/cb"}, CreatedAt: t0}))
	must(t, src.CreateAccount(ctx, &authz.Account{ID: "a1", Username: "mum", PasswordHash: "x", FHIRUser: "RelatedPerson/mum", CreatedAt: t0}))
	must(t, src.CreateAccount(ctx, &authz.Account{ID: "f1", Issuer: "https://idp", Subject: "s1", FHIRUser: "Patient/p"}))
	must(t, src.CreateInvitation(ctx, &authz.Invitation{Hash: "used", FHIRUser: "Patient/p1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(t, src.CreateInvitation(ctx, &authz.Invitation{Hash: "open", FHIRUser: "Patient/p2", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	_, err := src.Register(ctx, "used", &authz.Account{ID: "u1", Username: "u1"}, t0)
	must(t, err)
	must(t, src.CreateSession(ctx, &authz.Session{Hash: "s1", AccountID: "a1", AuthTime: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(t, src.CreateAuthRequest(ctx, &authz.AuthRequest{ID: "q1", ClientID: "app", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	family(t, src, "fam1", "a1", "app")
	family(t, src, "fam2", "a1", "app")
	must(t, src.CreateCode(ctx, &authz.Code{Hash: "c-used", FamilyID: "fam1", ExpiresAt: t0.Add(time.Minute)}))
	must(t, src.CreateCode(ctx, &authz.Code{Hash: "c-open", FamilyID: "fam1", ExpiresAt: t0.Add(time.Minute)}))
	_, err = src.UseCode(ctx, "c-used", t0)
	must(t, err)
	must(t, src.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: "r-used", FamilyID: "fam2", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(t, src.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: "r-open", FamilyID: "fam2", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(t, src.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: "r-revoked", FamilyID: "fam1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	_, err = src.UseRefreshToken(ctx, "r-used", t0)
	must(t, err)
	must(t, src.RecordAccessToken(ctx, &authz.AccessToken{JTI: "j1", FamilyID: "fam1", ClientID: "app", ExpiresAt: t0.Add(time.Hour)}))
	must(t, src.RecordAccessToken(ctx, &authz.AccessToken{JTI: "j2", FamilyID: "fam2", ClientID: "app", ExpiresAt: t0.Add(time.Hour)}))
	_, err = src.RevokeFamily(ctx, "fam1", t0)
	must(t, err)
	must(t, src.PutApproval(ctx, &authz.Approval{AccountID: "a1", ClientID: "app", Requested: []string{"a"}, Granted: []string{"a"}, CreatedAt: t0}))
	must(t, src.CreateLaunch(ctx, &authz.LaunchContext{Hash: "l-used", Patient: "p1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(t, src.CreateLaunch(ctx, &authz.LaunchContext{Hash: "l-open", Patient: "p2", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	_, err = src.UseLaunch(ctx, "l-used", t0)
	must(t, err)
	must(t, src.UseAssertion(ctx, "emr", "jti-1", t0.Add(time.Minute)))
	secret, err := src.Secret(ctx, "csrf", func() ([]byte, error) { return []byte{0, 1, 2, 255}, nil })
	must(t, err)

	snap, err := ex.Export(ctx)
	must(t, err)
	// 2 (+1 registered) accounts, 1 client, 2 invitations, 1 session, 1
	// request, 2 families, 2 codes, 3 refresh tokens, 2 access tokens, 1
	// revocation, 1 approval, 2 launches, 1 assertion, 1 secret.
	if want := 3 + 1 + 2 + 1 + 1 + 2 + 2 + 3 + 2 + 1 + 1 + 2 + 1 + 1; snap.Len() != want {
		t.Fatalf("snapshot of %d records, want %d: %+v", snap.Len(), want, snap)
	}
	n, err := im.Import(ctx, snap)
	must(t, err)
	if n != snap.Len() {
		t.Fatalf("imported %d of %d", n, snap.Len())
	}
	if n, err := im.Import(ctx, snap); err != nil || n != 0 {
		t.Fatalf("second import added %d (%v), want 0", n, err)
	}

	c, err := dst.GetClient(ctx, "app")
	must(t, err)
	if c.RedirectURIs[0] != "https://app/cb" || !c.CreatedAt.Equal(t0) {
		t.Fatalf("%+v", c)
	}
	if a, err := dst.AccountByUsername(ctx, "mum"); err != nil || a.PasswordHash != "x" {
		t.Fatalf("%+v %v", a, err)
	}
	if a, err := dst.AccountByIdentity(ctx, "https://idp", "s1"); err != nil || a.ID != "f1" {
		t.Fatalf("%+v %v", a, err)
	}
	wantErr(t, dst.CreateAccount(ctx, &authz.Account{ID: "x", Username: "mum"}), authz.ErrExists)
	_, err = dst.Register(ctx, "used", &authz.Account{ID: "u9", Username: "u9"}, t0)
	wantErr(t, err, authz.ErrUsed)
	_, err = dst.Register(ctx, "open", &authz.Account{ID: "u2", Username: "u2"}, t0)
	must(t, err)
	if _, err := dst.GetSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.GetAuthRequest(ctx, "q1"); err != nil {
		t.Fatal(err)
	}
	_, err = dst.UseCode(ctx, "c-used", t0)
	wantErr(t, err, authz.ErrUsed)
	_, err = dst.UseCode(ctx, "c-open", t0)
	must(t, err)
	_, err = dst.UseRefreshToken(ctx, "r-used", t0)
	wantErr(t, err, authz.ErrUsed)
	r, err := dst.GetRefreshToken(ctx, "r-revoked")
	must(t, err)
	if r.RevokedAt.IsZero() || !r.UsedAt.IsZero() {
		t.Fatalf("revoked refresh token %+v", r)
	}
	r, err = dst.UseRefreshToken(ctx, "r-open", t0)
	must(t, err)
	if !r.RevokedAt.IsZero() {
		t.Fatalf("%+v", r)
	}
	f, err := dst.GetFamily(ctx, "fam1")
	must(t, err)
	if f.RevokedAt.IsZero() {
		t.Fatal("revoked family imported as active")
	}
	revs, err := dst.Revocations(ctx, time.Time{}, t0)
	must(t, err)
	if len(revs) != 1 || revs[0].JTI != "j1" {
		t.Fatalf("revocations %+v", revs)
	}
	// The imported access token of fam2 is revoked with its family.
	revs, err = dst.RevokeFamily(ctx, "fam2", t0)
	must(t, err)
	if len(revs) != 1 || revs[0].JTI != "j2" {
		t.Fatalf("revoked %+v", revs)
	}
	if a, err := dst.GetApproval(ctx, "a1", "app"); err != nil || len(a.Granted) != 1 {
		t.Fatalf("%+v %v", a, err)
	}
	_, err = dst.UseLaunch(ctx, "l-used", t0)
	wantErr(t, err, authz.ErrUsed)
	if l, err := dst.UseLaunch(ctx, "l-open", t0); err != nil || l.Patient != "p2" {
		t.Fatalf("%+v %v", l, err)
	}
	wantErr(t, dst.UseAssertion(ctx, "emr", "jti-1", t0.Add(time.Minute)), authz.ErrUsed)
	got, err := dst.Secret(ctx, "csrf", func() ([]byte, error) { return nil, errors.New("the imported secret is kept") })
	must(t, err)
	if string(got) != string(secret) {
		t.Fatalf("secret %q, want %q", got, secret)
	}
}
