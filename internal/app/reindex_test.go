package app

// Reindexing (fhirgate reindex): new search definitions and a changed
// release policy apply to data stored before them.

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/smart/devissuer"
)

func TestPolicyChangeAtStartAndCustomParameterReindex(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC)}
	polFile := filepath.Join(dir, "policy.yaml")
	spFile := filepath.Join(dir, "params.json")
	if err := os.WriteFile(spFile, []byte(`{"resourceType":"SearchParameter","url":"http://example.org/sp/obs-note","name":"note-text","status":"active",`+
		`"code":"note-text","base":["Observation"],"type":"string","expression":"Observation.note.text","description":"note text"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(withPolicy, withParams bool) (*harness, func()) {
		ts := httptest.NewUnstartedServer(nil)
		o := Options{BaseURL: "http://" + ts.Listener.Addr().String() + "/fhir", DataDir: dir, Now: clk.Now,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if withPolicy {
			o.PolicyFile = polFile
		}
		if withParams {
			o.SearchParams = spFile
		}
		a, err := New(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		ts.Config.Handler = a.Handler
		ts.Start()
		h := &harness{t: t, app: a, srv: ts, base: o.BaseURL, clock: clk}
		return h, func() { ts.Close(); a.Close(context.Background()) }
	}
	h, stop := open(false, false)
	put(h, "Patient", "pat-a", `{"resourceType":"Patient","birthDate":"1970-01-01"}`)
	put(h, "Observation", "path-a", strings.Replace(pathology("pat-a"), `"valueString"`, `"note":[{"text":"Reviewed by Dr Ng"}],"valueString"`, 1))
	pt := func(h *harness) string {
		return h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: "pat-a", FHIRUser: "Patient/pat-a"})
	}
	h.req("GET", "Observation/path-a", nil, pt(h)).must(t, 200)
	stop()

	// Restart with a custom parameter: it finds nothing until reindex.
	h, stop = open(false, true)
	if n := len(h.req("GET", "Observation?note-text=reviewed", nil, "").must(t, 200).entries()); n != 0 {
		t.Fatalf("custom parameter matched before reindex: %d", n)
	}
	if _, err := h.app.Reindex(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if n := len(h.req("GET", "Observation?note-text=reviewed", nil, "").must(t, 200).entries()); n != 1 {
		t.Errorf("custom parameter after reindex: %d matches, want 1", n)
	}
	stop()

	// Restart with a policy that delays pathology: applied to stored data at start.
	if err := os.WriteFile(polFile, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	h, stop = open(true, true)
	defer stop()
	h.req("GET", "Observation/path-a", nil, pt(h)).must(t, 404)
	caps := h.req("GET", "metadata", nil, "-").must(t, 200)
	if !strings.Contains(string(caps.Body), `"note-text"`) {
		t.Errorf("CapabilityStatement does not list the custom parameter")
	}
}

// With custom AuditEvent parameters the audit writer indexes AuditEvents
// by evaluating the registry's parameters (not audit.BuildIndexed, which
// knows only the default ones): a custom parameter finds new events.
func TestCustomAuditEventParameter(t *testing.T) {
	def, err := New(context.Background(), Options{BaseURL: "http://localhost/fhir", DataDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !def.auditDirect {
		t.Error("default parameters, yet AuditEvents are not indexed from the event")
	}
	def.Close(context.Background())
	dir := t.TempDir()
	spFile := filepath.Join(dir, "params.json")
	if err := os.WriteFile(spFile, []byte(`{"resourceType":"SearchParameter","url":"http://example.org/sp/ae-request","name":"request-id","status":"active",`+
		`"code":"request-id","base":["AuditEvent"],"type":"token","expression":"AuditEvent.entity.what.identifier","description":"X-Request-Id"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	o := Options{BaseURL: "http://" + ts.Listener.Addr().String() + "/fhir", DataDir: dir, SearchParams: spFile,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = a.Handler
	ts.Start()
	defer func() { ts.Close(); a.Close(context.Background()) }()
	if a.auditDirect {
		t.Fatal("custom AuditEvent parameters, yet AuditEvents are indexed from the event")
	}
	h := &harness{t: t, app: a, srv: ts, base: o.BaseURL, clock: &clock{t: time.Now()}}
	h.req("PUT", "Patient/p1", `{"resourceType":"Patient","id":"p1"}`, "", "X-Request-Id: req-custom-1").must(t, 201)
	flush(t, h)
	if n := len(h.req("GET", "AuditEvent?request-id=req-custom-1", nil, "").must(t, 200).entries()); n != 1 {
		t.Errorf("AuditEvent?request-id: %d matches, want 1", n)
	}
}
