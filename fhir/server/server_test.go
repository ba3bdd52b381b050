package server_test

// Package tests of the pipeline on the in-memory SQLite store (no HTTP, no
// token verification: the principal is put in the context as the REST
// adapter does). R4 http.html (read, update, delete, If-Match), SMART App
// Launch scopes-and-launch-context.html, and the access rules of
// smart.PatientWrites.

import (
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/server/servertest"
)

func TestPipelineOnMemoryStore(t *testing.T) {
	s, _ := servertest.New(t, servertest.Options{})
	emr := servertest.As(t, "system/*.cruds", "", "")
	for _, c := range []struct{ path, body string }{
		{"Patient/a", `{"resourceType":"Patient","id":"a","birthDate":"1970-01-01"}`},
		{"Patient/b", `{"resourceType":"Patient","id":"b"}`},
		{"Observation/ob", `{"resourceType":"Observation","id":"ob","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/b"}}`},
		{"Observation/oa", `{"resourceType":"Observation","id":"oa","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`},
	} {
		if r := servertest.Do(emr, s, "PUT", c.path, c.body); r.Status != 201 {
			t.Fatalf("PUT %s: %d %s", c.path, r.Status, r.Body)
		}
	}
	pa := servertest.As(t, "patient/*.cruds", "a", "Patient/a")
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
		if r := servertest.Do(pa, s, c.method, c.path, c.body, c.hdr...); r.Status != c.status {
			t.Errorf("%s: %s %s = %d, want %d: %s", c.name, c.method, c.path, r.Status, c.status, r.Body)
		}
	}
	// A stale If-Match on one's own resource is 412 without the version.
	r := servertest.Do(emr, s, "PUT", "Observation/oa", `{"resourceType":"Observation","id":"oa","status":"amended","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`, `If-Match: W/"9"`)
	if r.Status != 412 || strings.Contains(string(r.Body), `W/\"1\"`) {
		t.Errorf("stale If-Match: %d %s", r.Status, r.Body)
	}
	// A batch entry runs exactly like the same request.
	b := servertest.Do(pa, s, "POST", "", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation/ob"}},{"request":{"method":"GET","url":"Observation/oa"}}]}`)
	if b.Status != 200 || !strings.Contains(string(b.Body), `"404`) || !strings.Contains(string(b.Body), `"200`) {
		t.Errorf("batch: %d %s", b.Status, b.Body)
	}
}
