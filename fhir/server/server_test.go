package server

// Package tests of the pipeline on the in-memory SQLite store (no HTTP, no
// token verification: the principal is put in the context as the REST
// adapter does). R4 http.html (read, update, delete, If-Match), SMART App
// Launch scopes-and-launch-context.html, and the access rules of
// smart.PatientWrites.

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

func newServer(t *testing.T) *Server {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(ctx) })
	val, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	reg := search.Default()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	return New(Config{
		Store: st, Registry: reg, Validator: val, Base: "http://test/fhir", Now: func() time.Time { return now },
		Decider: &smart.Decider{
			CompileQuery: func(typ string, q url.Values) (search.Expr, error) {
				p, err := reg.Parse(typ, q, search.ParseOptions{Strict: true})
				if err != nil {
					return nil, err
				}
				return p.Filter, nil
			},
			PatientFree: func(typ string) bool { return search.PatientFree[typ] },
		},
	})
}

func as(t *testing.T, scopes, patient, fhirUser string) context.Context {
	t.Helper()
	sc, err := smart.ParseScopes(scopes)
	if err != nil {
		t.Fatal(err)
	}
	return smart.WithPrincipal(context.Background(), &smart.Principal{Scopes: sc, Patient: patient, FHIRUser: fhirUser, Subject: "s", ClientID: "c"})
}

func do(ctx context.Context, s *Server, method, path, body string, hdr ...string) *fhir.Response {
	h := http.Header{}
	if body != "" {
		h.Set("Content-Type", "application/fhir+json")
	}
	for _, kv := range hdr {
		k, v, _ := strings.Cut(kv, ":")
		h.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	p, q, _ := strings.Cut(path, "?")
	query, _ := url.ParseQuery(q)
	return s.Handle(ctx, &fhir.Request{Method: method, Path: p, Query: query, Header: h, Body: []byte(body), Entry: -1})
}

func TestPipelineOnMemoryStore(t *testing.T) {
	s := newServer(t)
	emr := as(t, "system/*.cruds", "", "")
	for _, c := range []struct{ path, body string }{
		{"Patient/a", `{"resourceType":"Patient","id":"a","birthDate":"1970-01-01"}`},
		{"Patient/b", `{"resourceType":"Patient","id":"b"}`},
		{"Observation/ob", `{"resourceType":"Observation","id":"ob","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/b"}}`},
		{"Observation/oa", `{"resourceType":"Observation","id":"oa","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`},
	} {
		if r := do(emr, s, "PUT", c.path, c.body); r.Status != 201 {
			t.Fatalf("PUT %s: %d %s", c.path, r.Status, r.Body)
		}
	}
	pa := as(t, "patient/*.cruds", "a", "Patient/a")
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
	}{
		{"own read", "GET", "Observation/oa", "", nil, 200},
		{"other's read", "GET", "Observation/ob", "", nil, 404},
		{"other's update with If-Match", "PUT", "Observation/ob", `{"resourceType":"Observation","id":"ob","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`, []string{`If-Match: W/"1"`}, 404},
		{"missing update", "PUT", "Observation/nope", `{"resourceType":"Observation","id":"nope","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`, []string{`If-Match: W/"1"`}, 404},
		{"other's delete", "DELETE", "Observation/ob", "", nil, 404},
		{"missing delete", "DELETE", "Observation/nope", "", nil, 404},
		{"care team's result", "DELETE", "Observation/oa", "", nil, 403},
		{"AuditEvent create", "POST", "AuditEvent", `{"resourceType":"AuditEvent"}`, nil, 403},
		{"own birthDate", "PUT", "Patient/a", `{"resourceType":"Patient","id":"a","birthDate":"2020-01-01"}`, nil, 403},
		{"own message", "POST", "Communication", `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/a"}}`, nil, 201},
	}
	for _, c := range cases {
		if r := do(pa, s, c.method, c.path, c.body, c.hdr...); r.Status != c.status {
			t.Errorf("%s: %s %s = %d, want %d: %s", c.name, c.method, c.path, r.Status, c.status, r.Body)
		}
	}
	// A stale If-Match on one's own resource is 412 without the version.
	r := do(emr, s, "PUT", "Observation/oa", `{"resourceType":"Observation","id":"oa","status":"amended","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`, `If-Match: W/"9"`)
	if r.Status != 412 || strings.Contains(string(r.Body), `W/\"1\"`) {
		t.Errorf("stale If-Match: %d %s", r.Status, r.Body)
	}
	// A batch entry runs exactly like the same request.
	b := do(pa, s, "POST", "", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation/ob"}},{"request":{"method":"GET","url":"Observation/oa"}}]}`)
	if b.Status != 200 || !strings.Contains(string(b.Body), `"404`) || !strings.Contains(string(b.Body), `"200`) {
		t.Errorf("batch: %d %s", b.Status, b.Body)
	}
}
