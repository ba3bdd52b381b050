// Package browsertest is the real-browser SMART launch shared by the
// authorization server's tests (authz, in-process) and the binary's
// (cmd/fhirgate, the server `make run` starts): the npm package fhirclient
// (the SMART on FHIR JavaScript library) in headless Chromium, driven with
// chromedp (SMART App Launch 2.2, "standalone launch").
//
// It needs Chromium (Debian: apt-get install chromium) and fhirclient
// (fetched with npm into ~/.cache/fhirgate/fhirclient, or
// FHIRGATE_FHIRCLIENT_JS naming fhir-client.js); Require skips the test
// without them.
package browsertest

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
)

// FHIRClientVersion is the fhirclient release the tests run.
const FHIRClientVersion = "2.6.3"

// Chromium returns the path of a Chromium or Chrome binary, "" if none.
func Chromium() string {
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// FHIRClientJS returns the path of fhirclient's browser build, fetching
// it with npm into the cache when needed ("" when it cannot).
func FHIRClientJS(t testing.TB) string {
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
	cmd := exec.Command("npm", "install", "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", cache, "fhirclient@"+FHIRClientVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("npm install fhirclient: %v: %s", err, out)
		return ""
	}
	if _, err := os.Stat(js); err != nil {
		return ""
	}
	return js
}

// Require skips t unless Chromium and fhirclient are available; it returns
// their paths.
func Require(t testing.TB) (chrome, js string) {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: not in -short")
	}
	if chrome = Chromium(); chrome == "" {
		t.Skip("Chromium is not installed (Debian: apt-get install chromium): the fhirclient browser test needs it")
	}
	if js = FHIRClientJS(t); js == "" {
		t.Skip("fhirclient is not available (npm install fhirclient@" + FHIRClientVersion + " failed or npm is missing)")
	}
	return chrome, js
}

// Scopes are what the app asks for.
const Scopes = "openid fhirUser launch/patient offline_access patient/Observation.rs patient/Appointment.rs"

// The app's two pages (fhirclient's standard launch.html / index.html pair).
const launchHTML = `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>launch</title>
<script src="/fhir-client.js"></script></head><body><p>Launching…</p>
<script>FHIR.oauth2.authorize({clientId: %q, scope: %q, iss: %q, redirectUri: "index.html", pkceMode: "required"});</script>
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

// App serves fhirclient and the app's pages on an origin of its own;
// register RedirectURI(app) as the client's redirect URI.
func App(t testing.TB, js, clientID, iss string) *httptest.Server {
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	mux.HandleFunc("/fhir-client.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, js) })
	mux.HandleFunc("/launch.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, launchHTML, clientID, Scopes, iss)
	})
	mux.HandleFunc("/index.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, indexHTML)
	})
	return srv
}

// RedirectURI is the app's redirect URI.
func RedirectURI(app *httptest.Server) string { return app.URL + "/index.html" }

// Birthdate is the birth date of someone years old at now.
func Birthdate(now time.Time, years int) string {
	return now.AddDate(-years, 0, -10).Format("2006-01-02")
}

// Family is the scenario's data: Mia (Person/mum) is the mother of Emma
// (8) and Tom (14), and Ann (76) delegated her appointments to Mia by
// Consent; one Observation each, Ann's appointment, a practitioner and an
// encounter of Emma's.
func Family(now time.Time) []map[string]any {
	mth := map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}}}
	return []map[string]any{
		{"resourceType": "Patient", "id": "emma", "birthDate": Birthdate(now, 8), "name": []any{map[string]any{"given": []any{"Emma"}, "family": "Lee"}}},
		{"resourceType": "Patient", "id": "tom", "birthDate": Birthdate(now, 14), "name": []any{map[string]any{"given": []any{"Tom"}, "family": "Lee"}}},
		{"resourceType": "Patient", "id": "ann", "birthDate": "1950-02-03", "name": []any{map[string]any{"given": []any{"Ann"}, "family": "Roy"}}},
		{"resourceType": "Patient", "id": "mia", "birthDate": "1990-05-06", "name": []any{map[string]any{"given": []any{"Mia"}, "family": "Lee"}}},
		{"resourceType": "RelatedPerson", "id": "mum-emma", "active": true, "patient": map[string]any{"reference": "Patient/emma"}, "relationship": []any{mth}},
		{"resourceType": "RelatedPerson", "id": "mum-tom", "active": true, "patient": map[string]any{"reference": "Patient/tom"}, "relationship": []any{mth}},
		{"resourceType": "RelatedPerson", "id": "mum-ann", "active": true, "patient": map[string]any{"reference": "Patient/ann"}},
		{"resourceType": "Person", "id": "mum", "active": true, "name": []any{map[string]any{"given": []any{"Mia"}, "family": "Lee"}},
			"link": []any{
				map[string]any{"target": map[string]any{"reference": "RelatedPerson/mum-emma"}},
				map[string]any{"target": map[string]any{"reference": "RelatedPerson/mum-tom"}},
				map[string]any{"target": map[string]any{"reference": "RelatedPerson/mum-ann"}},
			}},
		{"resourceType": "Consent", "id": "ann-to-mum", "status": "active",
			"scope":    map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}},
			"category": []any{map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "59284-0"}}}},
			"patient":  map[string]any{"reference": "Patient/ann"},
			"provision": map[string]any{"type": "permit",
				"actor": []any{map[string]any{
					"role":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "code": "AGNT"}}},
					"reference": map[string]any{"reference": "RelatedPerson/mum-ann"}}},
				"class": []any{map[string]any{"system": "http://hl7.org/fhir/resource-types", "code": "Appointment"}}}},
		{"resourceType": "Practitioner", "id": "drno", "name": []any{map[string]any{"family": "No"}}},
		{"resourceType": "Encounter", "id": "visit-1", "status": "in-progress", "class": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
			"subject": map[string]any{"reference": "Patient/emma"}},
		Observation("obs-emma", "emma"), Observation("obs-tom", "tom"), Observation("obs-ann", "ann"), Observation("obs-mia", "mia"),
		{"resourceType": "Appointment", "id": "appt-ann", "status": "booked", "participant": []any{map[string]any{
			"actor": map[string]any{"reference": "Patient/ann"}, "status": "accepted"}}},
	}
}

// Observation is a body height of the patient.
func Observation(id, patient string) map[string]any {
	return map[string]any{"resourceType": "Observation", "id": id, "status": "final",
		"code":              map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "8302-2"}}},
		"subject":           map[string]any{"reference": "Patient/" + patient},
		"valueQuantity":     map[string]any{"value": 120, "unit": "cm"},
		"effectiveDateTime": "2026-01-01"}
}

// Launch is one run of the scenario.
type Launch struct {
	Chrome string
	App    *httptest.Server // App(...)
	// Auth is the authorization server's base (the issuer, ".../auth"):
	// its /apps page revokes approvals.
	Auth               string
	Username, Password string // Mia's account, fhirUser Person/mum
	// Shots, when set, is the directory the login, picker and approval
	// screenshots are written to (authz-login.png, ...).
	Shots string
}

// Run performs the mother's standalone launch: log in, pick Emma (8; Tom,
// 14, is not offered), approve, read Emma's Observations only; refresh
// (the refresh token rotates); revoke the app on the approved-apps page
// (its next read fails); launch again for Ann, whose Consent delegates
// appointments only (her Observations stay hidden).
func (l Launch) Run(t testing.TB) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(l.Chrome), chromedp.NoSandbox, chromedp.DisableGPU,
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
	// text reads an element's text, waiting while the page is replaced
	// (a redirect that lands just after the awaited condition held).
	text := func(sel string) string {
		t.Helper()
		var err error
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var s string
			if s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel))); err == nil {
				return s
			}
		}
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("text %s: %v (at %s)", sel, err, loc)
		return ""
	}
	// out is the app's result line, once it has one (fhirclient may load
	// the page again while it completes the authorization).
	out := func() string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			do("the app's result", appDone)
			if s := text("#out"); s != "waiting" || time.Now().After(deadline) {
				return s
			}
		}
	}
	shot := func(name string) {
		t.Helper()
		if l.Shots == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join(l.Shots, "authz-"+name+".png"), png, 0o644); err != nil {
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
	do("launch", chromedp.Navigate(l.App.URL+"/launch.html"), chromedp.WaitVisible(chromedp.CSS(`form[action="/auth/login"]`)))
	shot("login")
	do("login",
		chromedp.SendKeys(chromedp.CSS("#username"), l.Username),
		chromedp.SendKeys(chromedp.CSS("#password"), l.Password),
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
	do("approve", chromedp.Click(chromedp.CSS(`button[value="approve"]`)), appDone)
	if o := out(); !strings.HasPrefix(o, "patient=emma ok:") || !strings.Contains(o, "obs-emma") || strings.Contains(o, "obs-tom") {
		t.Fatalf("the app reads Emma's Observations only: %q", o)
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
	do("apps", chromedp.Navigate(l.Auth+"/apps"), chromedp.WaitVisible(chromedp.CSS(`form[action="/auth/apps/revoke"]`)))
	do("revoke", chromedp.Click(chromedp.CSS(`form[action="/auth/apps/revoke"] button`)),
		waitJS(`document.readyState === "complete" && !document.querySelector('form[action="/auth/apps/revoke"]') && !!document.querySelector('form[action="/auth/logout"]')`))
	do("back to the app", chromedp.Navigate(l.App.URL+"/index.html"), appDone)
	if r := eval(`window.read("Observation?_count=50")`); !strings.HasPrefix(r, "error:") {
		t.Fatalf("after revocation the app still reads: %q", r)
	}

	// The caregiver's view: Ann delegated appointments only.
	do("launch for Ann", chromedp.Navigate(l.App.URL+"/launch.html"), chromedp.WaitVisible(chromedp.CSS(`form[action="/auth/pick"]`)),
		chromedp.Click(chromedp.CSS(`input[value="ann"]`)), chromedp.Click(chromedp.CSS(`button[value="pick"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/auth/approve"]`)),
		chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
		appDone)
	if o := out(); !strings.HasPrefix(o, "patient=ann") || strings.Contains(o, "obs-ann") {
		t.Fatalf("the caregiver must not see Ann's Observations: %q", o)
	}
	if r := eval(`window.read("Appointment")`); r != "ok:appt-ann" {
		t.Fatalf("the caregiver sees Ann's appointments: %q", r)
	}
}
