package authz_test

// A real SMART client in a real browser: the npm package fhirclient
// (SMART on FHIR JavaScript library) in headless Chromium, driven with
// chromedp, performs a standalone launch against fhirgate: a mother logs
// in, picks her 8-year-old (her 14-year-old is not offered), approves,
// and the app reads the child's Observations; the app refreshes its
// token; revoking the app on the approved-apps page ends its access; the
// mother then opens the record a patient delegated to her by Consent and
// sees only what the Consent allows (appointments).
//
// It needs Chromium (Debian: apt-get install chromium) and fhirclient
// (fetched with npm into ~/.cache/fhirgate/fhirclient, or
// FHIRGATE_FHIRCLIENT_JS naming fhir-client.js); without them it skips.
// FHIRGATE_SCREENSHOTS=1 rewrites docs/authz-login.png, authz-picker.png
// and authz-approval.png.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fhirgate/fhirgate/authz"
)

const fhirclientVersion = "2.6.3"

func chromiumPath() string {
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// fhirclientJS returns the path of fhirclient's browser build, fetching
// it with npm into the cache when needed ("" when it cannot).
func fhirclientJS(t *testing.T) string {
	if p := os.Getenv("FHIRGATE_FHIRCLIENT_JS"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	cache := filepath.Join(home, ".cache", "fhirgate", "fhirclient")
	js := filepath.Join(cache, "node_modules", "fhirclient", "build", "fhir-client.min.js")
	if _, err := os.Stat(js); err == nil {
		return js
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return ""
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return ""
	}
	cmd := exec.Command("npm", "install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", cache, "fhirclient@"+fhirclientVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("npm install fhirclient: %v: %s", err, out)
		return ""
	}
	if _, err := os.Stat(js); err != nil {
		return ""
	}
	return js
}

const appScopes = "openid fhirUser launch/patient offline_access patient/Observation.rs patient/Appointment.rs"

// The app's two pages (fhirclient's standard launch.html / index.html pair).
const launchHTML = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>launch</title>
<script src="/fhir-client.js"></script></head><body><p>Launching…</p>
<script>FHIR.oauth2.authorize({clientId: "growth", scope: %q, iss: %q, redirectUri: "index.html", pkceMode: "required"});</script>
</body></html>`

const indexHTML = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Growth chart</title>
<script src="/fhir-client.js"></script></head><body><pre id="out">waiting</pre>
<script>
window.app = FHIR.oauth2.ready();
window.read = (q) => window.app.then(c => c.request(q)).then(b => "ok:" + (b.entry || []).map(e => e.resource.id).sort().join(","))
  .catch(e => "error:" + (e.status || e.statusCode || e.message));
window.app.then(c => window.read("Observation?_count=50").then(r => {
  document.getElementById("out").textContent = "patient=" + c.patient.id + " " + r;
})).catch(e => { document.getElementById("out").textContent = "error:" + e.message; });
</script></body></html>`

func TestBrowserStandaloneLaunchWithFHIRClient(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short")
	}
	chrome := chromiumPath()
	if chrome == "" {
		t.Skip("Chromium is not installed (Debian: apt-get install chromium): the fhirclient browser test needs it")
	}
	js := fhirclientJS(t)
	if js == "" {
		t.Skip("fhirclient is not available (npm install fhirclient@" + fhirclientVersion + " failed or npm is missing)")
	}
	h := newHarness(t)
	h.seed()
	h.account("mia@example.org", mumPassword, "Person/mum")

	// The app: another origin, serving fhirclient and its two pages.
	mux := http.NewServeMux()
	appSrv := httptest.NewServer(mux)
	defer appSrv.Close()
	mux.HandleFunc("/fhir-client.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, js) })
	mux.HandleFunc("/launch.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, launchHTML, appScopes, h.base)
	})
	mux.HandleFunc("/index.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, indexHTML)
	})
	h.client(authz.ClientSpec{ID: "growth", Name: "Growth Chart", Type: authz.TypePublic, RedirectURIs: []string{appSrv.URL + "/index.html"}})

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1000, 900), chromedp.Flag("lang", "en-US"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("%s: %v (at %s): %s", what, err, loc, html)
		}
	}
	// waitJS waits until expr is true; the page may navigate meanwhile
	// (fhirclient cleans the code off the URL, a form post loads a page).
	waitJS := func(expr string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				ok, err := chromedp.Evaluate[bool](expr)(ctx, tg)
				if err == nil && ok {
					return chromedp.Void{}, nil
				}
			}
			return chromedp.Void{}, fmt.Errorf("timeout waiting for %s", expr)
		}
	}
	appDone := waitJS(`!!document.getElementById("out") && document.getElementById("out").textContent !== "waiting"`)
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		dir := t.TempDir()
		if os.Getenv("FHIRGATE_SCREENSHOTS") != "" {
			dir = filepath.Join("..", "docs")
		}
		if err := os.WriteFile(filepath.Join(dir, "authz-"+name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}

	// Standalone launch: fhirclient discovers the server, sends the user
	// to the authorization endpoint; the login page.
	do("launch", chromedp.Navigate(appSrv.URL+"/launch.html"), chromedp.WaitVisible(chromedp.CSS(`form[action="/auth/login"]`)))
	shot("login")
	do("login",
		chromedp.SendKeys(chromedp.CSS("#username"), "mia@example.org"),
		chromedp.SendKeys(chromedp.CSS("#password"), mumPassword),
		chromedp.Click(chromedp.CSS(`form[action="/auth/login"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/auth/pick"]`)))
	picker := text("fieldset")
	if !strings.Contains(picker, "Emma Lee") || !strings.Contains(picker, "Ann Roy") || strings.Contains(picker, "Tom") {
		t.Fatalf("picker: %q (Emma and Ann offered, not Tom, 14)", picker)
	}
	shot("picker")
	do("pick", chromedp.Click(chromedp.CSS(`input[value="emma"]`)),
		chromedp.Click(chromedp.CSS(`button[value="pick"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/auth/approve"]`)))
	if a := text("main"); !strings.Contains(a, "Growth Chart") || !strings.Contains(a, "Emma Lee") {
		t.Fatalf("approval page: %q", a)
	}
	shot("approval")
	do("approve", chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
		appDone)
	out := text("#out")
	if !strings.HasPrefix(out, "patient=emma ok:") || !strings.Contains(out, "obs-emma") || strings.Contains(out, "obs-tom") {
		t.Fatalf("the app reads Emma's Observations only: %q", out)
	}

	// Refresh.
	before := eval(`window.app.then(c => c.state.tokenResponse.refresh_token)`)
	if r := eval(`window.app.then(c => c.refresh()).then(() => window.read("Observation?_count=50"))`); r != "ok:obs-emma" {
		t.Fatalf("after refresh: %q", r)
	}
	if after := eval(`window.app.then(c => c.state.tokenResponse.refresh_token)`); after == before || after == "" {
		t.Fatal("the refresh token was not rotated")
	}

	// Revoke on the approved-apps page: the app's next request fails.
	do("apps", chromedp.Navigate(h.iss+"/apps"), chromedp.WaitVisible(chromedp.CSS(`form[action="/auth/apps/revoke"]`)))
	do("revoke", chromedp.Click(chromedp.CSS(`form[action="/auth/apps/revoke"] button`)),
		waitJS(`document.readyState === "complete" && !document.querySelector('form[action="/auth/apps/revoke"]') && !!document.querySelector('form[action="/auth/logout"]')`))
	do("back to the app", chromedp.Navigate(appSrv.URL+"/index.html"),
		appDone)
	if r := eval(`window.read("Observation?_count=50")`); !strings.HasPrefix(r, "error:") {
		t.Fatalf("after revocation the app still reads: %q", r)
	}

	// The caregiver's view: Ann delegated appointments only.
	do("launch for Ann", chromedp.Navigate(appSrv.URL+"/launch.html"), chromedp.WaitVisible(chromedp.CSS(`form[action="/auth/pick"]`)),
		chromedp.Click(chromedp.CSS(`input[value="ann"]`)), chromedp.Click(chromedp.CSS(`button[value="pick"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/auth/approve"]`)),
		chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
		appDone)
	if out := text("#out"); !strings.HasPrefix(out, "patient=ann") || strings.Contains(out, "obs-ann") {
		t.Fatalf("the caregiver must not see Ann's Observations: %q", out)
	}
	if r := eval(`window.read("Appointment")`); r != "ok:appt-ann" {
		t.Fatalf("the caregiver sees Ann's appointments: %q", r)
	}
}
