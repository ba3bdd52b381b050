package app

// End-to-end tests of usage reporting (issue 17, docs/usage.md): real
// requests of a patient, a caregiver, a parent and a practitioner through
// the handler (secure messaging of docs/messaging.md, result reads,
// appointments), then the system operation $usage (R4 operations.html)
// returning a MeasureReport (R4 measurereport.html, checked against the
// R4 schema) and the Prometheus text exposition at /metrics. Also on
// FerretDB: FHIRGATE_TEST_STORE=ferretdb.

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/portal/usage/usagetest"
	"github.com/fhirgate/fhirgate/smart/devissuer"
)

const usageToken = "metrics-token-0123456789"

func TestUsageEndToEnd(t *testing.T) {
	w := newUsageWorld(t, func(o *Options) { o.Usage.MetricsToken = usageToken })
	h := w.h
	ctx := context.Background()
	now := h.clock.Now()

	// Two portal accounts (the authorization server's storage).
	for i, fu := range []string{"Patient/" + w.pa, "RelatedPerson/" + w.parent} {
		if err := h.app.AuthzStore.CreateAccount(ctx, &authz.Account{ID: "acc" + string(rune('1'+i)), Username: "user" + string(rune('1'+i)),
			FHIRUser: fu, CreatedAt: now.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}

	// The patient views results and starts a thread to dr-a.
	h.req("GET", "Observation/"+w.labA, nil, w.pt).must(t, 200)
	h.req("GET", "Observation", nil, w.pt).must(t, 200) // lab-a again, vital-a
	hdr := h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), w.pt).must(t, 201)
	hid := hdr.str("id")
	// The caregiver writes in the thread; the mother views her child's result.
	h.req("POST", "Communication", message(w.pa, hid, ""), w.carer).must(t, 201)
	h.req("GET", "Observation/"+w.labC, nil, w.mum).must(t, 200)
	// Dr A answers and books an appointment.
	h.req("POST", "Communication", message(w.pa, hid, `"sender":{"reference":"Practitioner/dr-a"},`), w.doc).must(t, 201)
	h.req("POST", "Appointment", `{"resourceType":"Appointment","status":"booked","participant":[{"actor":{"reference":"Patient/pat-a"},"status":"accepted"}]}`, w.doc).must(t, 201)
	// The patient asks for an appointment (a patient-facing Appointment
	// create; the booking rules decide whether it is accepted).
	patientBooking := 0
	if r := h.req("POST", "Appointment", `{"resourceType":"Appointment","status":"proposed","participant":[{"actor":{"reference":"Patient/pat-a"},"status":"needs-action"}]}`, w.pt); r.Status == 201 {
		patientBooking = 1
	} else {
		t.Logf("the patient's Appointment request was refused (%d): no patient booking expected", r.Status)
	}

	// Patient-facing callers may not run $usage.
	h.req("GET", "$usage", nil, w.pt).must(t, 403)
	h.req("GET", "$usage", nil, w.carer).must(t, 403)
	if err := h.app.Audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	admin := h.token(devissuer.MintOptions{Scope: "system/AuditEvent.rs", Client: "reports"})
	r := h.req("GET", "$usage?start=2026-06-01&end=2026-06-02", nil, admin).must(t, 200)
	val, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := val.Validate("MeasureReport", r.Body); err != nil {
		t.Fatalf("MeasureReport not valid R4: %v\n%s", err, r.Body)
	}
	if r.str("status") != "pending" || r.str("type") != "summary" || r.str("period", "start") != "2026-06-01" || r.str("period", "end") != "2026-06-01" {
		t.Errorf("MeasureReport header: %s", truncate(r.Body))
	}
	got, err := usagetest.Scores(r.JSON)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"registered-users": 2, "registered-patients": 1, "registered-proxies": 1, "new-registrations": 2,
		// pat-a, rp-care, rp-mother, dr-a
		"active-users": 4, "active-patients": 1, "active-proxies": 2, "active-staff": 1,
		"messages-by-patients": 2, "messages-by-staff": 1, "threads-started": 1, "threads-answered": 1,
		// pat-a: lab-a, vital-a; rp-mother: lab-c
		"results-viewed": 3, "result-viewers": 2,
		// the world's appt-a (PUT by the EMR: create-on-update) and dr-a's
		"bookings-by-staff": 2, "bookings-by-patients": float64(patientBooking),
	}
	for code, v := range want {
		if got[code] != v {
			t.Errorf("%s = %v, want %v", code, got[code], v)
		}
	}

	// /metrics: refused without the token; the gauges after a refresh.
	svc := h.app.usage
	if err := svc.RefreshMetrics(ctx); err != nil {
		t.Fatal(err)
	}
	if code := scrape(t, h, "").StatusCode; code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d", code)
	}
	mfs := parseMetrics(t, h)
	for _, c := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"fhirgate_usage_active_users", []string{"window=day", "kind=all"}, 4},
		{"fhirgate_usage_active_users", []string{"window=month", "kind=proxy"}, 2},
		{"fhirgate_usage_registered_users", []string{"kind=all", "source=accounts"}, 2},
		{"fhirgate_usage_messages_sent", []string{"window=day", "by=patients"}, 2},
		{"fhirgate_usage_threads", []string{"window=month", "state=answered"}, 1},
		{"fhirgate_usage_results_viewed", []string{"window=day"}, 3},
		{"fhirgate_usage_bookings", []string{"window=day", "by=staff"}, 2},
		{"fhirgate_http_requests_total", []string{"method=GET", "class=read", "type=Observation", "code=200"}, 2},
		{"fhirgate_http_requests_total", []string{"method=POST", "class=create", "type=Communication", "code=201"}, 3},
		{"fhirgate_http_requests_total", []string{"method=GET", "class=operation", "code=403"}, 2},
		{"fhirgate_http_requests_total", []string{"class=metrics", "code=401"}, 1},
	} {
		if got := usagetest.Value(t, mfs, c.name, c.kv...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.kv, got, c.want)
		}
	}
	if usagetest.Value(t, mfs, "fhirgate_http_request_duration_seconds", "method=POST", "class=create") < 5 {
		t.Errorf("the latency histogram misses creates")
	}

	// The report page renders the chart for an administrator's token.
	req, _ := http.NewRequest("GET", h.srv.URL+"/usage/report?start=2026-06-01&end=2026-06-02", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	_, _ = page.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(page.String(), "<svg") || !strings.Contains(page.String(), `<td class="n">4</td>`) {
		t.Errorf("report page: %d %s", resp.StatusCode, truncate(page.Bytes()))
	}
	req.Header.Set("Authorization", "Bearer "+w.pt)
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("report page with a patient's token: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

// newUsageWorld is newMsgWorld's world (messaging policy, dr-a on
// pat-a's care team, the caregiver's Consent) with more options.
func newUsageWorld(t *testing.T, opts ...harnessOpt) *msgWorld {
	w := newWorld(t, append([]harnessOpt{withMessaging(t, messagingPolicy)}, opts...)...)
	h := w.h
	put(h, "Organization", "clinic", `{"resourceType":"Organization","name":"Clinic"}`)
	put(h, "Practitioner", "dr-a", `{"resourceType":"Practitioner","name":[{"family":"A"}]}`)
	put(h, "CareTeam", "ct-a", `{"resourceType":"CareTeam","status":"active","subject":{"reference":"Patient/`+w.pa+`"},"participant":[{"member":{"reference":"Practitioner/dr-a"}}]}`)
	mw := &msgWorld{world: w}
	mw.mint()
	return mw
}

// A practitioner needs user/AuditEvent.rs (or user/*.rs); patient-facing
// callers never run $usage, whatever their scopes.
func TestUsageAccess(t *testing.T) {
	w := newWorld(t)
	h := w.h
	for _, c := range []struct {
		name, scope, patient, fhirUser string
		status                         int
	}{
		{"backend", "system/AuditEvent.rs", "", "", 200},
		{"practitioner", "user/AuditEvent.rs", "", "Practitioner/dr-a", 200},
		{"practitioner, other types", "user/Observation.rs user/Patient.cruds", "", "Practitioner/dr-a", 403},
		{"patient with every scope", "patient/*.cruds user/*.cruds", w.pa, "Patient/" + w.pa, 403},
		{"parent", "user/*.rs", w.pc, "RelatedPerson/" + w.parent, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			tok := h.token(devissuer.MintOptions{Scope: c.scope, Patient: c.patient, FHIRUser: c.fhirUser, Client: "x"})
			r := h.req("GET", "$usage?granularity=month", nil, tok).must(t, c.status)
			if c.status == 200 && r.str("resourceType") != "MeasureReport" {
				t.Errorf("not a MeasureReport: %s", truncate(r.Body))
			}
		})
	}
	// Without FHIRGATE_METRICS_TOKEN, /metrics is not served.
	if code := scrape(t, h, "").StatusCode; code != http.StatusNotFound {
		t.Errorf("/metrics without a configured token: %d, want 404", code)
	}
}

func TestUsageFromEnv(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	o, err := UsageFromEnv(env(map[string]string{"FHIRGATE_METRICS_TOKEN": usageToken, "FHIRGATE_METRICS_ADDR": "127.0.0.1:9090",
		"FHIRGATE_USAGE_REFRESH": "30s", "FHIRGATE_USAGE_TIMEZONE": "UTC", "FHIRGATE_USAGE_MAX_DAYS": "31"}))
	if err != nil || o.MetricsToken != usageToken || o.MetricsAddr != "127.0.0.1:9090" || o.Refresh != 30*time.Second || o.Location == nil || o.MaxDays != 31 {
		t.Errorf("%+v %v", o, err)
	}
	_, err = UsageFromEnv(env(map[string]string{"FHIRGATE_METRICS_TOKEN": "short", "FHIRGATE_METRICS_ADDR": "nope",
		"FHIRGATE_USAGE_REFRESH": "1ms", "FHIRGATE_USAGE_TIMEZONE": "Mars/Olympus", "FHIRGATE_USAGE_MAX_DAYS": "0"}))
	for _, name := range []string{"FHIRGATE_METRICS_TOKEN", "FHIRGATE_METRICS_ADDR", "FHIRGATE_USAGE_REFRESH", "FHIRGATE_USAGE_TIMEZONE", "FHIRGATE_USAGE_MAX_DAYS"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func scrape(t *testing.T, h *harness, token string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", h.srv.URL+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func parseMetrics(t *testing.T, h *harness) map[string]*dto.MetricFamily {
	t.Helper()
	resp := scrape(t, h, usageToken)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics with the token: %d", resp.StatusCode)
	}
	mfs, err := usagetest.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}
