package main

// Usage reporting through the binary (issue 17, docs/usage.md): the build
// `make run` starts, with FHIRGATE_METRICS_TOKEN, a separate metrics
// listener (FHIRGATE_METRICS_ADDR) and a 1 s refresh. A patient, a parent
// and a practitioner use the portal with tokens of `fhirgate token`; then
// $usage (R4 operations.html) answers a MeasureReport valid against the
// R4 schema (measurereport.html), /metrics (Prometheus text exposition,
// parsed with expfmt) carries the usage gauges and the request metrics,
// and /usage/report renders its SVG chart for an administrator.

import (
	"bytes"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/portal/usage/usagetest"
)

func TestUsageThroughTheBinary(t *testing.T) {
	const metricsToken = "binary-metrics-token-0123456789"
	metricsAddr := freeAddr(t)
	c := startBinary(t, withPolicy("version: 1\nmessaging:\n  enabled: true\n  recipients:\n    careTeam: true\n    patientChooses: true\n"),
		withEnv("FHIRGATE_METRICS_TOKEN="+metricsToken, "FHIRGATE_METRICS_ADDR="+metricsAddr, "FHIRGATE_USAGE_REFRESH=1s"))
	emr := c.token("--scope", "system/*.cruds")
	admin := c.token("--scope", "system/AuditEvent.rs")
	ann := c.token("--scope", "patient/*.cruds", "--patient", "ann", "--fhir-user", "Patient/ann")
	mum := c.token("--scope", "patient/*.rs", "--patient", "kid", "--fhir-user", "RelatedPerson/mum")
	dr := c.token("--scope", "user/*.cruds", "--fhir-user", "Practitioner/dr")

	kidBorn := time.Now().AddDate(-5, 0, 0).Format("2006-01-02")
	c.do(emr, "PUT", "Patient/ann", `{"resourceType":"Patient","id":"ann","birthDate":"1980-01-01"}`, 201)
	c.do(emr, "PUT", "Patient/kid", `{"resourceType":"Patient","id":"kid","birthDate":"`+kidBorn+`"}`, 201)
	c.do(emr, "PUT", "RelatedPerson/mum", `{"resourceType":"RelatedPerson","id":"mum","active":true,"patient":{"reference":"Patient/kid"},`+
		`"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"MTH"}]}]}`, 201)
	c.do(emr, "PUT", "Practitioner/dr", `{"resourceType":"Practitioner","id":"dr"}`, 201)
	c.do(emr, "PUT", "CareTeam/ct", `{"resourceType":"CareTeam","id":"ct","status":"active","subject":{"reference":"Patient/ann"},`+
		`"participant":[{"member":{"reference":"Practitioner/dr"}}]}`, 201)
	for _, o := range []struct{ id, patient string }{{"oa", "ann"}, {"ok", "kid"}} {
		c.do(emr, "PUT", "Observation/"+o.id, `{"resourceType":"Observation","id":"`+o.id+`","status":"final","code":{"text":"glucose"},`+
			`"subject":{"reference":"Patient/`+o.patient+`"},"valueQuantity":{"value":5.1,"unit":"mmol/L"}}`, 201)
	}

	// The portal in use.
	c.do(ann, "GET", "Observation/oa", "", 200)
	hid := c.do(ann, "POST", "Communication", `{"resourceType":"Communication","status":"in-progress","subject":{"reference":"Patient/ann"},`+
		`"recipient":[{"reference":"Practitioner/dr"}],"payload":[{"contentString":"Question"}]}`, 201).str("id")
	c.do(mum, "GET", "Observation?subject=Patient/kid", "", 200)
	c.do(dr, "POST", "Communication", `{"resourceType":"Communication","status":"completed","partOf":[{"reference":"Communication/`+hid+`"}],`+
		`"subject":{"reference":"Patient/ann"},"sender":{"reference":"Practitioner/dr"},"payload":[{"contentString":"Answer"}]}`, 201)
	c.do(ann, "GET", "$usage", "", 403)

	// $usage: the audit trail is written asynchronously; poll until it has the three users.
	today := time.Now().UTC()
	q := "$usage?start=" + today.AddDate(0, 0, -1).Format("2006-01-02") + "&end=" + today.AddDate(0, 0, 2).Format("2006-01-02")
	var score map[string]float64
	var body []byte
	for deadline := time.Now().Add(30 * time.Second); ; {
		r := c.do(admin, "GET", q, "", 200)
		body, score = r.body, usageScores(t, r.json)
		if score["active-users"] == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	val, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := val.Validate("MeasureReport", body); err != nil {
		t.Fatalf("MeasureReport not valid R4: %v\n%s", err, body)
	}
	for code, want := range map[string]float64{"active-users": 3, "active-patients": 1, "active-proxies": 1, "active-staff": 1,
		"messages-by-patients": 1, "messages-by-staff": 1, "threads-started": 1, "threads-answered": 1,
		"results-viewed": 2, "result-viewers": 2, "registered-users": 0} {
		if score[code] != want {
			t.Errorf("%s = %v, want %v", code, score[code], want)
		}
	}

	// /metrics on the main listener needs the token; the gauges follow within a refresh.
	scrape := func(url, tok string) (int, map[string]*dto.MetricFamily) {
		t.Helper()
		resp, b := c.send(tok, "GET", url, "")
		if resp.StatusCode != 200 {
			return resp.StatusCode, nil
		}
		mfs, err := usagetest.Parse(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		return 200, mfs
	}
	mainURL := "http://" + c.addr + "/metrics"
	if code, _ := scrape(mainURL, ""); code != 401 {
		t.Errorf("/metrics without the token: %d, want 401", code)
	}
	if code, _ := scrape(mainURL, "wrong-token-wrong-token"); code != 401 {
		t.Errorf("/metrics with a wrong token: %d, want 401", code)
	}
	var mfs map[string]*dto.MetricFamily
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, mfs = scrape(mainURL, metricsToken)
		if usageSample(mfs, "fhirgate_usage_active_users", "window=month", "kind=all") == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"fhirgate_usage_active_users", []string{"window=month", "kind=all"}, 3},
		{"fhirgate_usage_active_users", []string{"window=month", "kind=proxy"}, 1},
		{"fhirgate_usage_messages_sent", []string{"window=month", "by=patients"}, 1},
		{"fhirgate_usage_threads", []string{"window=month", "state=answered"}, 1},
		{"fhirgate_usage_results_viewed", []string{"window=month"}, 2},
		{"fhirgate_usage_registered_users", []string{"kind=all", "source=accounts"}, 0},
		{"fhirgate_http_requests_total", []string{"method=PUT", "class=update", "type=Observation", "code=201"}, 2},
		{"fhirgate_http_requests_total", []string{"method=GET", "class=operation", "code=403"}, 1},
		{"fhirgate_http_requests_total", []string{"class=metrics", "code=401"}, 2},
	} {
		if got := usageSample(mfs, tc.name, tc.kv...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.kv, got, tc.want)
		}
	}
	if usageSample(mfs, "fhirgate_http_request_duration_seconds", "method=GET", "class=read") < 1 || mfs["go_goroutines"] == nil {
		t.Errorf("no latency histogram or Go runtime metrics")
	}
	// The separate listener serves the same registry (with the token, as it is set).
	if code, _ := scrape("http://"+metricsAddr+"/metrics", ""); code != 401 {
		t.Errorf("metrics listener without the token: %d, want 401", code)
	}
	if code, m := scrape("http://"+metricsAddr+"/metrics", metricsToken); code != 200 || m["fhirgate_usage_active_users"] == nil {
		t.Errorf("metrics listener: %d", code)
	}

	// The report page, for the administrator's token.
	resp, page := c.send(admin, "GET", "http://"+c.addr+"/usage/report", "")
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<svg") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("report page: %d %s", resp.StatusCode, page)
	}
}

func usageScores(t *testing.T, mr map[string]any) map[string]float64 {
	t.Helper()
	out, err := usagetest.Scores(mr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// usageSample is family name's sample whose labels include every "k=v"
// of kv (histograms: the count); -1 when there is none.
func usageSample(mfs map[string]*dto.MetricFamily, name string, kv ...string) float64 {
	if v, ok := usagetest.Sample(mfs, name, kv...); ok {
		return v
	}
	return -1
}
