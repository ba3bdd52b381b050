package main

// The SMART standalone launch in a real browser against the binary that
// `make run` starts (SMART App Launch 2.2; issue "fhirgate as its own
// SMART authorization server"): the same `go build` of ./cmd/fhirgate,
// `fhirgate serve` on the embedded SQLite store with the built-in
// authorization server, data loaded over HTTP with a `fhirgate token`
// token, the account and the app registered with the admin commands while
// the server runs, then npm fhirclient in headless Chromium
// (internal/browsertest): a mother picks her 8-year-old, approves, reads
// her Observations; refresh; revoke; a caregiver's Consent-limited view.

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/browsertest"
)

func TestBrowserLaunchAgainstTheBinary(t *testing.T) {
	chrome, js := browsertest.Require(t)
	c := startBinary(t)

	// The EMR's data, over HTTP with a development token.
	token := c.token("--scope", "system/*.cruds")
	for _, r := range browsertest.Family(time.Now()) {
		b, _ := json.Marshal(r)
		resp, _ := c.send(token, http.MethodPut, c.base+"/"+r["resourceType"].(string)+"/"+r["id"].(string), string(b), "Content-Type: application/fhir+json")
		if resp.StatusCode != 200 && resp.StatusCode != 201 {
			t.Fatalf("PUT %s/%s: %d", r["resourceType"], r["id"], resp.StatusCode)
		}
	}

	// The account and the app, with the admin commands while the server runs.
	app := browsertest.App(t, js, "growth", c.base)
	const password = "a long passphrase for Mia 2026"
	c.run("account", "add", "--username", "mia@example.org", "--password", password, "--fhir-user", "Person/mum")
	c.run("client", "add", "--id", "growth", "--name", "Growth Chart", "--type", "public", "--redirect-uri", browsertest.RedirectURI(app))

	browsertest.Launch{Chrome: chrome, App: app, Auth: "http://" + c.addr + "/auth", Username: "mia@example.org", Password: password}.Run(t)
}
