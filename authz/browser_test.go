package authz_test

// A real SMART client in a real browser against the in-process server
// (internal/browsertest, the scenario cmd/fhirgate also runs against the
// binary): npm fhirclient in headless Chromium performs a standalone
// launch: a mother logs in, picks her 8-year-old (her 14-year-old is not
// offered), approves, and the app reads the child's Observations; the app
// refreshes its token; revoking the app on the approved-apps page ends its
// access; the mother then opens the record a patient delegated to her by
// Consent and sees only what the Consent allows (appointments).
// FHIRGATE_SCREENSHOTS=1 rewrites docs/authz-login.png, authz-picker.png
// and authz-approval.png.

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/internal/browsertest"
)

func TestBrowserStandaloneLaunchWithFHIRClient(t *testing.T) {
	chrome, js := browsertest.Require(t)
	h := newHarness(t)
	h.seed()
	h.account("mia@example.org", mumPassword, "Person/mum")
	app := browsertest.App(t, js, "growth", h.base)
	h.client(authz.ClientSpec{ID: "growth", Name: "Growth Chart", Type: authz.TypePublic, RedirectURIs: []string{browsertest.RedirectURI(app)}})
	shots := t.TempDir()
	if os.Getenv("FHIRGATE_SCREENSHOTS") != "" {
		shots = filepath.Join("..", "docs")
	}
	browsertest.Launch{Chrome: chrome, App: app, Auth: h.iss, Username: "mia@example.org", Password: mumPassword, Shots: shots}.Run(t)
}
