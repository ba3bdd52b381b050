package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/smart/devissuer"
)

// clock is an injectable, settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// harness runs the whole fhirgate (embedded FerretDB, development issuer,
// real gin engine) behind an httptest server.
type harness struct {
	t     *testing.T
	app   *App
	srv   *httptest.Server
	base  string
	clock *clock
	tok   string // default token: system/*.cruds
}

type harnessOpt func(*Options)

func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String() + "/fhir"
	clk := &clock{t: time.Now().UTC()}
	o := Options{
		BaseURL: base, DataDir: t.TempDir(), MaxBody: 1 << 20, Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	// FHIRGATE_TEST_STORE runs the whole end-to-end suite on another
	// embedded store ("ferretdb"; `make test` runs it on both).
	o.Store = os.Getenv("FHIRGATE_TEST_STORE")
	if os.Getenv("FHIRGATE_TEST_LOG") != "" {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, f := range opts {
		f(&o)
	}
	a, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("app: %v", err)
	}
	ts.Config.Handler = a.Handler
	ts.Start()
	h := &harness{t: t, app: a, srv: ts, base: base, clock: clk}
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Close(ctx)
	})
	if a.DevIssuer != nil {
		h.tok = h.token(devissuer.MintOptions{Scope: "system/*.cruds", Client: "test-emr"})
	}
	return h
}

func (h *harness) token(o devissuer.MintOptions) string {
	h.t.Helper()
	if o.TTL == 0 {
		o.TTL = time.Hour
	}
	tok, err := h.app.DevIssuer.Mint(o)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// res is a response with its body decoded.
type res struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

// req sends method path (relative to the FHIR base) with body and headers
// ("Key: value" strings); token "" means the default token, "-" none.
func (h *harness) req(method, path string, body any, token string, headers ...string) res {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	u := h.base
	if path != "" {
		u += "/" + strings.TrimPrefix(path, "/")
	}
	r, err := http.NewRequest(method, u, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if rd != nil {
		r.Header.Set("Content-Type", "application/fhir+json")
	}
	for _, hv := range headers {
		k, v, _ := strings.Cut(hv, ":")
		r.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	switch token {
	case "-":
	case "":
		if h.app.DevIssuer != nil {
			// Minted now, on the harness clock, so clock changes never expire it.
			r.Header.Set("Authorization", "Bearer "+h.token(devissuer.MintOptions{Scope: "system/*.cruds", Client: "test-emr"}))
		}
	default:
		r.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := res{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if len(b) > 0 {
		_ = json.Unmarshal(b, &out.JSON)
	}
	return out
}

// must asserts the status.
func (r res) must(t *testing.T, status int) res {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body: %s", r.Status, status, truncate(r.Body))
	}
	return r
}

func truncate(b []byte) string {
	if len(b) > 1500 {
		return string(b[:1500]) + "..."
	}
	return string(b)
}

// outcome asserts an OperationOutcome body and returns its first issue.
func (r res) outcome(t *testing.T) map[string]any {
	t.Helper()
	if r.JSON["resourceType"] != "OperationOutcome" {
		t.Fatalf("body is not an OperationOutcome: %s", truncate(r.Body))
	}
	issues, _ := r.JSON["issue"].([]any)
	if len(issues) == 0 {
		t.Fatalf("OperationOutcome without issues: %s", r.Body)
	}
	return issues[0].(map[string]any)
}

func (r res) str(path ...string) string {
	var cur any = r.JSON
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	s, _ := cur.(string)
	return s
}

// total returns Bundle.total (or -1) and the entry count.
func (r res) entries() []map[string]any {
	es, _ := r.JSON["entry"].([]any)
	out := make([]map[string]any, 0, len(es))
	for _, e := range es {
		out = append(out, e.(map[string]any))
	}
	return out
}
