// Package storagetest is the conformance suite of authz.Storage: every
// implementation runs Run (dex's storage/conformance pattern).
package storagetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/authz"
)

// Run runs every case on a fresh storage from newStorage.
func Run(t *testing.T, newStorage func(t *testing.T) authz.Storage) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, authz.Storage)
	}{
		{"Clients", testClients},
		{"Accounts", testAccounts},
		{"RegisterIsSingleUse", testRegister},
		{"CodeIsSingleUse", testCode},
		{"ConcurrentUseOneWins", testConcurrentUse},
		{"ConcurrentCodeLaunchAssertion", testConcurrentSingleUse},
		{"ConcurrentRegister", testConcurrentRegister},
		{"ConcurrentRevokeReportsEachTokenOnce", testConcurrentRevoke},
		{"ConcurrentSecretOneValue", testConcurrentSecret},
		{"RefreshRotationAndFamilyRevocation", testRefresh},
		{"RevokeGrantsOfAccountAndClient", testRevokeGrants},
		{"Approvals", testApprovals},
		{"LaunchSingleUseAndExpiry", testLaunch},
		{"AssertionReplay", testAssertion},
		{"SessionsAndRequests", testSessions},
		{"SecretIsStable", testSecret},
		{"Prune", testPrune},
		{"ExportImport", func(t *testing.T, s authz.Storage) { testExportImport(t, s, newStorage(t)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStorage(t)
			t.Cleanup(func() { s.Close() })
			tc.run(t, s)
		})
	}
}

var (
	ctx = context.Background()
	t0  = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

func testClients(t *testing.T, s authz.Storage) {
	c := &authz.Client{ID: "app", Name: "App", AuthMethod: authz.AuthNone, RedirectURIs: []string{"https://app/cb"},
		GrantTypes: []string{authz.GrantAuthorizationCode}, CreatedAt: t0}
	must(t, s.CreateClient(ctx, c))
	wantErr(t, s.CreateClient(ctx, c), authz.ErrExists)
	got, err := s.GetClient(ctx, "app")
	must(t, err)
	if got.Name != "App" || got.RedirectURIs[0] != "https://app/cb" || !got.CreatedAt.Equal(t0) {
		t.Fatalf("client %+v", got)
	}
	got.Name = "App 2"
	must(t, s.UpdateClient(ctx, got))
	got, _ = s.GetClient(ctx, "app")
	if got.Name != "App 2" {
		t.Fatalf("update lost: %+v", got)
	}
	_, err = s.GetClient(ctx, "nope")
	wantErr(t, err, authz.ErrNotFound)
	wantErr(t, s.UpdateClient(ctx, &authz.Client{ID: "nope"}), authz.ErrNotFound)
	all, err := s.ListClients(ctx)
	must(t, err)
	if len(all) != 1 {
		t.Fatalf("list %d", len(all))
	}
	must(t, s.DeleteClient(ctx, "app"))
	wantErr(t, s.DeleteClient(ctx, "app"), authz.ErrNotFound)
}

func testAccounts(t *testing.T, s authz.Storage) {
	a := &authz.Account{ID: "a1", Username: "mum@example.org", PasswordHash: "x", FHIRUser: "RelatedPerson/mum", CreatedAt: t0}
	must(t, s.CreateAccount(ctx, a))
	wantErr(t, s.CreateAccount(ctx, &authz.Account{ID: "a2", Username: "mum@example.org"}), authz.ErrExists)
	f := &authz.Account{ID: "f1", Issuer: "https://idp", Subject: "s1", FHIRUser: "Patient/p"}
	must(t, s.CreateAccount(ctx, f))
	wantErr(t, s.CreateAccount(ctx, &authz.Account{ID: "f2", Issuer: "https://idp", Subject: "s1"}), authz.ErrExists)
	// Two federated accounts without username: usernames are optional.
	must(t, s.CreateAccount(ctx, &authz.Account{ID: "f3", Issuer: "https://idp", Subject: "s2"}))
	got, err := s.AccountByUsername(ctx, "mum@example.org")
	must(t, err)
	if got.ID != "a1" || got.FHIRUser != "RelatedPerson/mum" {
		t.Fatalf("%+v", got)
	}
	got, err = s.AccountByIdentity(ctx, "https://idp", "s1")
	must(t, err)
	if got.ID != "f1" {
		t.Fatalf("%+v", got)
	}
	_, err = s.AccountByUsername(ctx, "nobody")
	wantErr(t, err, authz.ErrNotFound)
	a.FailedLogins, a.LockedUntil = 3, t0.Add(time.Minute)
	must(t, s.UpdateAccount(ctx, a))
	got, _ = s.GetAccount(ctx, "a1")
	if got.FailedLogins != 3 || !got.LockedUntil.Equal(t0.Add(time.Minute)) {
		t.Fatalf("%+v", got)
	}
	all, err := s.ListAccounts(ctx)
	must(t, err)
	if len(all) != 3 {
		t.Fatalf("list %d", len(all))
	}
}

func testRegister(t *testing.T, s authz.Storage) {
	must(t, s.CreateInvitation(ctx, &authz.Invitation{Hash: "h1", FHIRUser: "Patient/p1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(t, s.CreateInvitation(ctx, &authz.Invitation{Hash: "h2", FHIRUser: "Patient/p2", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	_, err := s.Register(ctx, "nope", &authz.Account{ID: "x", Username: "x"}, t0)
	wantErr(t, err, authz.ErrNotFound)
	_, err = s.Register(ctx, "h2", &authz.Account{ID: "late", Username: "late"}, t0.Add(2*time.Hour))
	wantErr(t, err, authz.ErrExpired)
	inv, err := s.Register(ctx, "h1", &authz.Account{ID: "u1", Username: "u1"}, t0)
	must(t, err)
	if inv.AccountID != "u1" || inv.UsedAt.IsZero() {
		t.Fatalf("%+v", inv)
	}
	acct, err := s.GetAccount(ctx, "u1")
	must(t, err)
	if acct.FHIRUser != "Patient/p1" {
		t.Fatalf("account fhirUser %q comes from the invitation", acct.FHIRUser)
	}
	_, err = s.Register(ctx, "h1", &authz.Account{ID: "u2", Username: "u2"}, t0)
	wantErr(t, err, authz.ErrUsed)
	// A taken username leaves the invitation unused.
	_, err = s.Register(ctx, "h2", &authz.Account{ID: "u3", Username: "u1"}, t0)
	wantErr(t, err, authz.ErrExists)
	_, err = s.Register(ctx, "h2", &authz.Account{ID: "u3", Username: "u3"}, t0)
	must(t, err)
}

func family(t *testing.T, s authz.Storage, id, account, client string) {
	must(t, s.CreateFamily(ctx, &authz.Family{ID: id, ClientID: client, AccountID: account, CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}))
}

func testCode(t *testing.T, s authz.Storage) {
	family(t, s, "f1", "a1", "app")
	must(t, s.CreateCode(ctx, &authz.Code{Hash: "c1", FamilyID: "f1", RedirectURI: "https://app/cb", CodeChallenge: "ch",
		Grant: authz.Grant{ClientID: "app", Scopes: []string{"openid"}, Patient: "p1"}, ExpiresAt: t0.Add(time.Minute)}))
	c, err := s.UseCode(ctx, "c1", t0)
	must(t, err)
	if c.Grant.Patient != "p1" || c.FamilyID != "f1" || c.CodeChallenge != "ch" {
		t.Fatalf("%+v", c)
	}
	c, err = s.UseCode(ctx, "c1", t0.Add(time.Second))
	wantErr(t, err, authz.ErrUsed)
	if c == nil || c.FamilyID != "f1" {
		t.Fatal("a replayed code is returned with its family, so the caller can revoke it")
	}
	_, err = s.UseCode(ctx, "nope", t0)
	wantErr(t, err, authz.ErrNotFound)
}

func testConcurrentUse(t *testing.T, s authz.Storage) {
	family(t, s, "f1", "a1", "app")
	must(t, s.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: "r1", FamilyID: "f1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, used := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UseRefreshToken(ctx, "r1", t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, authz.ErrUsed):
				used++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || used != 7 {
		t.Fatalf("%d uses succeeded, %d saw ErrUsed; want 1 and 7", ok, used)
	}
}

func testRefresh(t *testing.T, s authz.Storage) {
	family(t, s, "f1", "a1", "app")
	family(t, s, "f2", "a1", "app")
	must(t, s.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: "r1", FamilyID: "f1", Grant: authz.Grant{Scopes: []string{"offline_access"}},
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(t, s.RecordAccessToken(ctx, &authz.AccessToken{JTI: "j1", FamilyID: "f1", ClientID: "app", ExpiresAt: t0.Add(time.Hour)}))
	must(t, s.RecordAccessToken(ctx, &authz.AccessToken{JTI: "j-old", FamilyID: "f1", ClientID: "app", ExpiresAt: t0.Add(-time.Minute)}))
	must(t, s.RecordAccessToken(ctx, &authz.AccessToken{JTI: "j2", FamilyID: "f2", ClientID: "app", ExpiresAt: t0.Add(time.Hour)}))
	r, err := s.UseRefreshToken(ctx, "r1", t0)
	must(t, err)
	if r.Grant.Scopes[0] != "offline_access" || r.UsedAt.IsZero() {
		t.Fatalf("%+v", r)
	}
	must(t, s.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: "r2", FamilyID: "f1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	_, err = s.UseRefreshToken(ctx, "r1", t0)
	wantErr(t, err, authz.ErrUsed)
	revs, err := s.RevokeFamily(ctx, "f1", t0)
	must(t, err)
	if len(revs) != 1 || revs[0].JTI != "j1" {
		t.Fatalf("revoked %+v, want j1 only (j-old expired, j2 another family)", revs)
	}
	f, err := s.GetFamily(ctx, "f1")
	must(t, err)
	if f.RevokedAt.IsZero() {
		t.Fatal("family not revoked")
	}
	r2, err := s.GetRefreshToken(ctx, "r2")
	must(t, err)
	if r2.RevokedAt.IsZero() {
		t.Fatal("the family's newest refresh token is not revoked")
	}
	if f2, _ := s.GetFamily(ctx, "f2"); !f2.RevokedAt.IsZero() {
		t.Fatal("another family was revoked")
	}
	// Revoking again revokes nothing new.
	revs, err = s.RevokeFamily(ctx, "f1", t0.Add(time.Second))
	must(t, err)
	if len(revs) != 0 {
		t.Fatalf("second revocation returned %+v", revs)
	}
	list, err := s.Revocations(ctx, time.Time{}, t0)
	must(t, err)
	if len(list) != 1 || list[0].JTI != "j1" {
		t.Fatalf("revocations %+v", list)
	}
	must(t, s.RevokeAccessToken(ctx, authz.Revocation{JTI: "j2", ExpiresAt: t0.Add(time.Hour), RevokedAt: t0.Add(time.Minute)}))
	list, err = s.Revocations(ctx, t0.Add(30*time.Second), t0)
	must(t, err)
	if len(list) != 1 || list[0].JTI != "j2" {
		t.Fatalf("revocations since: %+v", list)
	}
	at, err := s.GetAccessToken(ctx, "j2")
	must(t, err)
	if at.FamilyID != "f2" {
		t.Fatalf("%+v", at)
	}
}

func testRevokeGrants(t *testing.T, s authz.Storage) {
	family(t, s, "f1", "a1", "app")
	family(t, s, "f2", "a1", "app")
	family(t, s, "f3", "a1", "other")
	family(t, s, "f4", "a2", "app")
	for i, f := range []string{"f1", "f2", "f3", "f4"} {
		must(t, s.RecordAccessToken(ctx, &authz.AccessToken{JTI: "j" + string(rune('1'+i)), FamilyID: f, ExpiresAt: t0.Add(time.Hour)}))
	}
	revs, err := s.RevokeGrants(ctx, "a1", "app", t0)
	must(t, err)
	if len(revs) != 2 {
		t.Fatalf("revoked %+v", revs)
	}
	for _, f := range []string{"f3", "f4"} {
		if fam, _ := s.GetFamily(ctx, f); !fam.RevokedAt.IsZero() {
			t.Fatalf("%s revoked", f)
		}
	}
}

func testApprovals(t *testing.T, s authz.Storage) {
	must(t, s.PutApproval(ctx, &authz.Approval{AccountID: "a1", ClientID: "app", Requested: []string{"a", "b"}, Granted: []string{"a"}, CreatedAt: t0}))
	must(t, s.PutApproval(ctx, &authz.Approval{AccountID: "a1", ClientID: "app", Requested: []string{"a", "b"}, Granted: []string{"a", "b"}, CreatedAt: t0}))
	must(t, s.PutApproval(ctx, &authz.Approval{AccountID: "a1", ClientID: "zzz", Granted: []string{"x"}, CreatedAt: t0}))
	a, err := s.GetApproval(ctx, "a1", "app")
	must(t, err)
	if len(a.Granted) != 2 {
		t.Fatalf("%+v", a)
	}
	l, err := s.ListApprovals(ctx, "a1")
	must(t, err)
	if len(l) != 2 {
		t.Fatalf("%d approvals", len(l))
	}
	must(t, s.DeleteApproval(ctx, "a1", "app"))
	_, err = s.GetApproval(ctx, "a1", "app")
	wantErr(t, err, authz.ErrNotFound)
	wantErr(t, s.DeleteApproval(ctx, "a1", "app"), authz.ErrNotFound)
}

func testLaunch(t *testing.T, s authz.Storage) {
	must(t, s.CreateLaunch(ctx, &authz.LaunchContext{Hash: "l1", Patient: "p1", Encounter: "e1", CreatedAt: t0, ExpiresAt: t0.Add(5 * time.Minute)}))
	must(t, s.CreateLaunch(ctx, &authz.LaunchContext{Hash: "l2", Patient: "p2", CreatedAt: t0, ExpiresAt: t0.Add(5 * time.Minute)}))
	l, err := s.UseLaunch(ctx, "l1", t0.Add(time.Minute))
	must(t, err)
	if l.Patient != "p1" || l.Encounter != "e1" {
		t.Fatalf("%+v", l)
	}
	_, err = s.UseLaunch(ctx, "l1", t0.Add(time.Minute))
	wantErr(t, err, authz.ErrUsed)
	_, err = s.UseLaunch(ctx, "l2", t0.Add(10*time.Minute))
	wantErr(t, err, authz.ErrExpired)
	_, err = s.UseLaunch(ctx, "l2", t0)
	wantErr(t, err, authz.ErrUsed) // an expired launch is burnt too
	_, err = s.UseLaunch(ctx, "nope", t0)
	wantErr(t, err, authz.ErrNotFound)
}

func testAssertion(t *testing.T, s authz.Storage) {
	must(t, s.UseAssertion(ctx, "emr", "j1", t0.Add(time.Minute)))
	wantErr(t, s.UseAssertion(ctx, "emr", "j1", t0.Add(time.Minute)), authz.ErrUsed)
	must(t, s.UseAssertion(ctx, "other", "j1", t0.Add(time.Minute)))
}

func testSessions(t *testing.T, s authz.Storage) {
	se := &authz.Session{Hash: "s1", AccountID: "a1", AuthTime: t0, ExpiresAt: t0.Add(time.Hour), MFAPending: true}
	must(t, s.CreateSession(ctx, se))
	se.MFAPending = false
	must(t, s.UpdateSession(ctx, se))
	got, err := s.GetSession(ctx, "s1")
	must(t, err)
	if got.MFAPending || got.AccountID != "a1" {
		t.Fatalf("%+v", got)
	}
	must(t, s.DeleteSession(ctx, "s1"))
	_, err = s.GetSession(ctx, "s1")
	wantErr(t, err, authz.ErrNotFound)

	r := &authz.AuthRequest{ID: "r1", ClientID: "app", Scopes: []string{"openid"}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour),
		Launch: &authz.LaunchContext{Patient: "p1"}}
	must(t, s.CreateAuthRequest(ctx, r))
	r.Patient, r.PatientChosen = "p1", true
	must(t, s.UpdateAuthRequest(ctx, r))
	gr, err := s.GetAuthRequest(ctx, "r1")
	must(t, err)
	if !gr.PatientChosen || gr.Launch == nil || gr.Launch.Patient != "p1" {
		t.Fatalf("%+v", gr)
	}
	must(t, s.DeleteAuthRequest(ctx, "r1"))
	_, err = s.GetAuthRequest(ctx, "r1")
	wantErr(t, err, authz.ErrNotFound)
}

func testSecret(t *testing.T, s authz.Storage) {
	a, err := s.Secret(ctx, "csrf", func() ([]byte, error) { return []byte("first"), nil })
	must(t, err)
	b, err := s.Secret(ctx, "csrf", func() ([]byte, error) { return []byte("second"), nil })
	must(t, err)
	if string(a) != "first" || string(b) != "first" {
		t.Fatalf("%q %q", a, b)
	}
}

func testPrune(t *testing.T, s authz.Storage) {
	must(t, s.CreateSession(ctx, &authz.Session{Hash: "old", ExpiresAt: t0}))
	must(t, s.CreateSession(ctx, &authz.Session{Hash: "new", ExpiresAt: t0.Add(time.Hour)}))
	must(t, s.CreateFamily(ctx, &authz.Family{ID: "f-old", ExpiresAt: t0}))
	must(t, s.CreateCode(ctx, &authz.Code{Hash: "c-old", FamilyID: "f-old", ExpiresAt: t0}))
	must(t, s.RevokeAccessToken(ctx, authz.Revocation{JTI: "j-old", ExpiresAt: t0, RevokedAt: t0.Add(-time.Hour)}))
	must(t, s.Prune(ctx, t0.Add(time.Second)))
	if _, err := s.GetSession(ctx, "old"); !errors.Is(err, authz.ErrNotFound) {
		t.Fatal("expired session kept")
	}
	if _, err := s.GetSession(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetFamily(ctx, "f-old"); !errors.Is(err, authz.ErrNotFound) {
		t.Fatal("expired family kept")
	}
	if _, err := s.UseCode(ctx, "c-old", t0); !errors.Is(err, authz.ErrNotFound) {
		t.Fatal("code of an expired family kept")
	}
}
