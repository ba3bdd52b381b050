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
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/browsertest"
)

func TestBrowserLaunchAgainstTheBinary(t *testing.T) {
	chrome, js := browsertest.Require(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr + "/fhir"
	env := append(os.Environ(), "FHIRGATE_ADDR="+addr, "FHIRGATE_BASE_URL="+base, "FHIRGATE_DATA_DIR="+dir, "FHIRGATE_LOG_LEVEL=error")
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fhirgate %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}

	serveBinary(t, bin, env, addr)

	// The EMR's data, over HTTP with a development token.
	token := cli("token", "--scope", "system/*.cruds")
	for _, r := range browsertest.Family(time.Now()) {
		b, _ := json.Marshal(r)
		req, _ := http.NewRequest(http.MethodPut, base+"/"+r["resourceType"].(string)+"/"+r["id"].(string), bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 && resp.StatusCode != 201 {
			t.Fatalf("PUT %s/%s: %d", r["resourceType"], r["id"], resp.StatusCode)
		}
	}

	// The account and the app, with the admin commands while the server runs.
	app := browsertest.App(t, js, "growth", base)
	const password = "a long passphrase for Mia 2026"
	cli("account", "add", "--username", "mia@example.org", "--password", password, "--fhir-user", "Person/mum")
	cli("client", "add", "--id", "growth", "--name", "Growth Chart", "--type", "public", "--redirect-uri", browsertest.RedirectURI(app))

	browsertest.Launch{Chrome: chrome, App: app, Auth: "http://" + addr + "/auth", Username: "mia@example.org", Password: password}.Run(t)
}

// serveBinary starts `bin serve` with env, waits until addr's /readyz
// answers and stops it with SIGINT when the test ends.
func serveBinary(t *testing.T, bin string, env []string, addr string) {
	t.Helper()
	srv := exec.Command(bin, "serve")
	srv.Env = env
	var stderr bytes.Buffer
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Signal(os.Interrupt)
		_ = srv.Wait()
	})
	ready := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !ready; time.Sleep(20 * time.Millisecond) {
		if r, err := http.Get("http://" + addr + "/readyz"); err == nil {
			r.Body.Close()
			ready = r.StatusCode == 200
		}
	}
	if !ready {
		t.Fatalf("server did not become ready: %s", stderr.String())
	}
}
