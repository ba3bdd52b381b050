package authz_test

// Several fhirgate processes on one MongoDB share the authorization
// server's state (authz/mongostore): two whole servers, each with its own
// authz.Server, on one database of the embedded FerretDB. A client and an
// account registered through one are used through the other, and a
// refresh token rotated on one is a replay on the other (OAuth 2.0
// Security BCP 4.14: the family is revoked, on both).

import (
	"context"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/store/embedded"
)

func TestTwoServersShareTheStore(t *testing.T) {
	ctx := context.Background()
	srv, err := embedded.Start(ctx, t.TempDir(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop) // after both servers close (cleanups run last first)
	shared := func(o *app.Options) { o.MongoURI, o.Database, o.AuthzDB = srv.URI, "shared", "" }
	a := newHarness(t, shared)
	b := newHarness(t, shared)
	a.seed()

	// The account is created through b, the client through a.
	b.account("mia", miaPassword, "Patient/mia")
	cfg := a.publicApp("app", "openid", "fhirUser", "launch/patient", "patient/*.rs", "offline_access")
	if _, err := b.app.AuthzStore.GetClient(ctx, "app"); err != nil {
		t.Fatalf("b does not see a's client: %v", err)
	}

	// Mia logs in at a (with b's account) and the app gets its tokens there.
	br := a.browser()
	state, verifier := br.authorize(cfg)
	tok, err := cfg.Exchange(a.ctx(), approveAll(t, br, state, true), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}

	// The refresh goes to b: b authenticates a's client and rotates a's token.
	refresh := func(h *harness, rt string) (int, map[string]any) {
		resp, body := h.postForm("/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"}, "refresh_token": {rt}}, "", "")
		return resp.StatusCode, body
	}
	st, body := refresh(b, tok.RefreshToken)
	if st != 200 {
		t.Fatalf("refresh at b: %d %v", st, body)
	}
	access, rotated := body["access_token"].(string), body["refresh_token"].(string)
	if access == "" || rotated == "" || rotated == tok.RefreshToken {
		t.Fatalf("refresh at b: %v", body)
	}
	if st, got := b.fhir("GET", "Patient/mia", nil, access); st != 200 {
		t.Fatalf("b's access token at b: %d %v", st, got)
	}

	// Replaying the rotated token at a is detected: refused, family revoked.
	if st, body := refresh(a, tok.RefreshToken); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("replay at a: %d %v", st, body)
	}
	// So the token b issued in its place is dead...
	if st, body := refresh(b, rotated); st != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("the family's newest token at b after the replay at a: %d %v", st, body)
	}
	// ...and b refuses its own access token once it reads the revocations
	// a recorded (each process reads them at most every 5 s).
	b.clock.Add(6 * time.Second)
	if st, got := b.fhir("GET", "Patient/mia", nil, access); st != 401 {
		t.Fatalf("b's revoked access token at b: %d %v", st, got)
	}
}
