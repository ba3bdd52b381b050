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
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fhirgate/fhirgate/fhir/validate"
)

func TestUsageThroughTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("version: 1\nmessaging:\n  enabled: true\n  recipients:\n    careTeam: true\n    patientChooses: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const metricsToken = "binary-metrics-token-0123456789"
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	base := "http://" + addr + "/fhir"
	env := append(os.Environ(), "FHIRGATE_ADDR="+addr, "FHIRGATE_BASE_URL="+base, "FHIRGATE_DATA_DIR="+dir,
		"FHIRGATE_LOG_LEVEL=error", "FHIRGATE_POLICY_FILE="+policy, "FHIRGATE_METRICS_TOKEN="+metricsToken,
		"FHIRGATE_METRICS_ADDR="+metricsAddr, "FHIRGATE_USAGE_REFRESH=1s")
	serveBinary(t, bin, env, addr)
	token := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"token"}, args...)...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("token %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	emr := token("--scope", "system/*.cruds")
	admin := token("--scope", "system/AuditEvent.rs")
	ann := token("--scope", "patient/*.cruds", "--patient", "ann", "--fhir-user", "Patient/ann")
	mum := token("--scope", "patient/*.rs", "--patient", "kid", "--fhir-user", "RelatedPerson/mum")
	dr := token("--scope", "user/*.cruds", "--fhir-user", "Practitioner/dr")
	c := binClient{t: t, base: base}

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
		body, score = r.body, usageScores(r.json)
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
		req, _ := http.NewRequest("GET", url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode, nil
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return 200, mfs
	}
	mainURL := "http://" + addr + "/metrics"
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
	for _, c := range []struct {
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
		if got := usageSample(mfs, c.name, c.kv...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.kv, got, c.want)
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
	req, _ := http.NewRequest("GET", "http://"+addr+"/usage/report", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<svg") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("report page: %d %s", resp.StatusCode, page)
	}
}

func usageScores(mr map[string]any) map[string]float64 {
	out := map[string]float64{}
	groups, _ := mr["group"].([]any)
	for _, g := range groups {
		gm, _ := g.(map[string]any)
		code, _ := gm["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)
		out[code], _ = gm["measureScore"].(map[string]any)["value"].(float64)
	}
	return out
}

// sample is the value of family name's sample whose labels include every
// "k=v" of kv (histograms: the count); -1 when there is none.
func usageSample(mfs map[string]*dto.MetricFamily, name string, kv ...string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for _, p := range kv {
			k, v, _ := strings.Cut(p, "=")
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}
