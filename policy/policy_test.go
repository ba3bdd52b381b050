package policy

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/store"
)

const (
	v20074   = "http://terminology.hl7.org/CodeSystem/v2-0074"
	actCode  = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	loinc    = "http://loinc.org"
	testFile = "test.yaml"
)

// now is the injected clock of every test.
var now = time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), testFile)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	p.Now = clock
	return p
}

// res decodes a resource the way the server does (UseNumber).
func res(t testing.TB, js string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("bad test resource %s: %v", js, err)
	}
	return m
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// basePolicy exercises every action, anchor and audience.
const basePolicy = `
version: 1
timezone: America/Toronto
valueSets:
  hiv-tests:
    - http://loinc.org|56888-1
    - http://loinc.org|7917-8
  local-sensitive: ["|LOCAL-1", "urn:oid:1.2.3|X"]
rules:
  - name: nopat
    match:
      security: ["http://terminology.hl7.org/CodeSystem/v3-ActCode|NOPAT"]
    action: exclude
  - name: proxy-std
    audience: [proxy]
    match:
      security: ["http://terminology.hl7.org/CodeSystem/v3-ActCode|STD"]
    action: exclude
  - name: hiv
    match:
      resourceType: [Observation, DiagnosticReport]
      code: ["valueset:hiv-tests"]
    action: manual
  - name: pathology-7-days
    match:
      resourceType: [Observation, DiagnosticReport]
      category: ["http://terminology.hl7.org/CodeSystem/v2-0074|SP"]
      status: [final, amended, corrected]
    action: delay
    delay: 168h
    from: issued
  - name: micro-2d
    match:
      category: ["http://terminology.hl7.org/CodeSystem/v2-0074|MB"]
    action: delay
    delay: 2d
    from: effective
  - name: docs-1d
    match:
      resourceType: [DocumentReference, Communication]
    action: delay
    delay: 1d
    from: date
  - name: imaging-3d
    match:
      category: ["http://terminology.hl7.org/CodeSystem/v2-0074|RAD"]
    action: delay
    delay: 3d
  - name: chem
    match:
      category: ["http://terminology.hl7.org/CodeSystem/v2-0074|CH"]
    action: immediate
`

func obs(category, extra string) string {
	s := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},
	"category":[{"coding":[{"system":"` + v20074 + `","code":"` + category + `"}]}]`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

// TestEvaluate covers each action and each anchor element. Spec:
// observation.html (issued, effective[x]), documentreference.html (date),
// communication.html (sent), resource.html#Meta (lastUpdated).
func TestEvaluate(t *testing.T) {
	p := mustParse(t, basePolicy)
	lu := ts("2024-03-09T08:00:00Z")
	never := store.Never
	tests := []struct {
		name     string
		typ      string
		js       string
		lu       time.Time
		patient  time.Time
		proxy    time.Time
		rule     string
		state    string
		wantZero bool
	}{
		{name: "no rule matches: immediate", js: `{"resourceType":"Patient"}`, lu: lu, state: "immediate"},
		{name: "immediate rule", js: obs("CH", ""), lu: lu, rule: "chem", state: "immediate"},
		{name: "delay from issued", js: obs("SP", `"issued":"2024-03-08T10:00:00-05:00"`), lu: lu,
			patient: ts("2024-03-15T15:00:00Z"), proxy: ts("2024-03-15T15:00:00Z"), rule: "pathology-7-days", state: "delay"},
		{name: "issued with fraction rounds up to ms", js: obs("SP", `"issued":"2024-03-08T10:00:00.0004Z"`), lu: lu,
			patient: ts("2024-03-15T10:00:00.001Z"), proxy: ts("2024-03-15T10:00:00.001Z"), rule: "pathology-7-days", state: "delay"},
		{name: "issued absent: falls back to lastUpdated", js: obs("SP", ""), lu: lu,
			patient: lu.Add(168 * time.Hour), proxy: lu.Add(168 * time.Hour), rule: "pathology-7-days", state: "delay"},
		{name: "issued unparseable: falls back to lastUpdated", js: obs("SP", `"issued":"yesterday"`), lu: lu,
			patient: lu.Add(168 * time.Hour), proxy: lu.Add(168 * time.Hour), rule: "pathology-7-days", state: "delay"},
		{name: "status not in rule: no delay", js: strings.Replace(obs("SP", ""), `"final"`, `"preliminary"`, 1), lu: lu, state: "immediate"},
		{name: "effectiveDateTime", js: obs("MB", `"effectiveDateTime":"2024-03-01T09:30:00Z","issued":"2024-03-05T00:00:00Z"`), lu: lu,
			patient: ts("2024-03-03T09:30:00Z"), proxy: ts("2024-03-03T09:30:00Z"), rule: "micro-2d", state: "delay"},
		{name: "effectivePeriod.start", js: obs("MB", `"effectivePeriod":{"start":"2024-03-02T00:00:00Z","end":"2024-03-04T00:00:00Z"}`), lu: lu,
			patient: ts("2024-03-04T00:00:00Z"), proxy: ts("2024-03-04T00:00:00Z"), rule: "micro-2d", state: "delay"},
		{name: "effectiveInstant", js: obs("MB", `"effectiveInstant":"2024-03-02T06:00:00.5Z"`), lu: lu,
			patient: ts("2024-03-04T06:00:00.5Z"), proxy: ts("2024-03-04T06:00:00.5Z"), rule: "micro-2d", state: "delay"},
		{name: "effective on DiagnosticReport", typ: "DiagnosticReport",
			js: `{"resourceType":"DiagnosticReport","status":"final","category":[{"coding":[{"system":"` + v20074 + `","code":"MB"}]}],"effectiveDateTime":"2024-03-01T00:00:00Z"}`,
			lu: lu, patient: ts("2024-03-03T00:00:00Z"), proxy: ts("2024-03-03T00:00:00Z"), rule: "micro-2d", state: "delay"},
		{name: "partial date: end of the day in the policy time zone", js: obs("MB", `"effectiveDateTime":"2024-03-01"`), lu: lu,
			// 2024-03-02T00:00 America/Toronto (EST, -05:00) + 2 days
			patient: ts("2024-03-04T05:00:00Z"), proxy: ts("2024-03-04T05:00:00Z"), rule: "micro-2d", state: "delay"},
		{name: "partial month", js: obs("MB", `"effectiveDateTime":"2024-02"`), lu: lu,
			patient: ts("2024-03-03T05:00:00Z"), proxy: ts("2024-03-03T05:00:00Z"), rule: "micro-2d", state: "delay"},
		{name: "effective absent: lastUpdated", js: obs("MB", ""), lu: lu,
			patient: lu.Add(48 * time.Hour), proxy: lu.Add(48 * time.Hour), rule: "micro-2d", state: "delay"},
		{name: "DocumentReference.date", typ: "DocumentReference",
			js: `{"resourceType":"DocumentReference","status":"current","date":"2024-03-05T10:00:00Z"}`, lu: lu,
			patient: ts("2024-03-06T10:00:00Z"), proxy: ts("2024-03-06T10:00:00Z"), rule: "docs-1d", state: "delay"},
		{name: "Communication.sent", js: `{"resourceType":"Communication","status":"completed","sent":"2024-03-07T10:00:00Z"}`, lu: lu,
			patient: ts("2024-03-08T10:00:00Z"), proxy: ts("2024-03-08T10:00:00Z"), rule: "docs-1d", state: "delay"},
		{name: "date absent: lastUpdated", js: `{"resourceType":"DocumentReference","status":"current"}`, lu: lu,
			patient: lu.Add(24 * time.Hour), proxy: lu.Add(24 * time.Hour), rule: "docs-1d", state: "delay"},
		{name: "default anchor lastUpdated", js: obs("RAD", `"issued":"2024-01-01T00:00:00Z"`), lu: lu,
			patient: lu.Add(72 * time.Hour), proxy: lu.Add(72 * time.Hour), rule: "imaging-3d", state: "delay"},
		{name: "lastUpdated from meta when Input.LastUpdated is zero", js: obs("RAD", `"meta":{"lastUpdated":"2024-03-01T00:00:00Z"}`),
			patient: ts("2024-03-04T00:00:00Z"), proxy: ts("2024-03-04T00:00:00Z"), rule: "imaging-3d", state: "delay"},
		{name: "no lastUpdated at all: the clock", js: obs("RAD", ""),
			patient: now.Add(72 * time.Hour), proxy: now.Add(72 * time.Hour), rule: "imaging-3d", state: "delay"},
		{name: "manual via value set", js: `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"7917-8"}]}}`,
			lu: lu, patient: never, proxy: never, rule: "hiv", state: "manual"},
		{name: "exclude", js: obs("CH", `"meta":{"security":[{"system":"`+actCode+`","code":"NOPAT"}]}`), lu: lu,
			patient: never, proxy: never, rule: "nopat", state: "exclude"},
		{name: "audiences decided by different rules", js: obs("CH", `"meta":{"security":[{"system":"`+actCode+`","code":"STD"}]}`), lu: lu,
			patient: time.Time{}, proxy: never, rule: "patient:chem proxy:proxy-std", state: "exclude"},
		{name: "proxy-only rule, no patient rule", js: `{"resourceType":"Condition","meta":{"security":[{"system":"` + actCode + `","code":"STD"}]}}`, lu: lu,
			proxy: never, rule: "patient: proxy:proxy-std", state: "exclude"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Evaluate(Input{Type: tc.typ, Resource: res(t, tc.js), LastUpdated: tc.lu})
			want := store.Release{Patient: tc.patient, Proxy: tc.proxy, Rule: tc.rule, State: tc.state}
			if !got.Patient.Equal(want.Patient) || !got.Proxy.Equal(want.Proxy) || got.Rule != want.Rule || got.State != want.State {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestFirstMatchWins: rules are tried in file order, per audience.
func TestFirstMatchWins(t *testing.T) {
	p := mustParse(t, `
version: 1
rules:
  - name: first
    match: {resourceType: [Observation]}
    action: delay
    delay: 1h
  - name: second
    match: {resourceType: [Observation], status: [final]}
    action: exclude
  - name: proxy-first
    audience: [proxy]
    match: {resourceType: [DiagnosticReport]}
    action: manual
  - name: both
    match: {resourceType: [DiagnosticReport]}
    action: exclude
`)
	got := p.Evaluate(Input{Resource: res(t, `{"resourceType":"Observation","status":"final"}`), LastUpdated: now})
	if got.Rule != "first" || !got.Patient.Equal(now.Add(time.Hour)) {
		t.Errorf("Observation: got %+v, want rule first", got)
	}
	got = p.Evaluate(Input{Resource: res(t, `{"resourceType":"DiagnosticReport"}`), LastUpdated: now})
	if got.Rule != "patient:both proxy:proxy-first" || got.State != "exclude" || !got.Patient.Equal(store.Never) || !got.Proxy.Equal(store.Never) {
		t.Errorf("DiagnosticReport: got %+v", got)
	}
}

// TestMatchKeys covers each match key and the token forms of
// search.html#token (system|code, |code, code, system|).
func TestMatchKeys(t *testing.T) {
	p := mustParse(t, `
version: 1
valueSets:
  vs: ["http://loinc.org|1-1", "urn:oid:1.2|Z"]
rules:
  - {name: sec, match: {security: ["`+actCode+`|HIV"]}, action: exclude}
  - {name: noSystem, match: {code: ["|LOCAL"]}, action: exclude}
  - {name: anySystem, match: {code: ["ANY"]}, action: exclude}
  - {name: systemOnly, match: {category: ["urn:oid:9.9|"]}, action: exclude}
  - {name: vs-key, match: {valueSet: [vs]}, action: exclude}
  - {name: vs-category, match: {category: ["valueset:vs"]}, action: exclude}
  - {name: doc-category-type, match: {resourceType: [DocumentReference], category: ["http://loinc.org|11488-4"]}, action: exclude}
  - {name: perf, match: {performer: [Practitioner/p1]}, action: exclude}
  - {name: org, match: {organization: [Organization/lab1]}, action: exclude}
  - {name: docstatus, match: {status: [preliminary]}, action: exclude}
  - {name: conf, match: {security: ["http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"]}, action: exclude}
`)
	tests := []struct {
		name, js, rule string
	}{
		{"meta.security", `{"resourceType":"Observation","meta":{"security":[{"system":"` + actCode + `","code":"HIV"}]}}`, "sec"},
		{"securityLabel", `{"resourceType":"DocumentReference","securityLabel":[{"coding":[{"system":"` + actCode + `","code":"HIV"}]}]}`, "sec"},
		{"security label with another system does not match", `{"resourceType":"Observation","meta":{"security":[{"system":"urn:x","code":"HIV"}]}}`, ""},
		{"Composition.confidentiality", `{"resourceType":"Composition","confidentiality":"R"}`, "conf"},
		{"|code matches a code without system", `{"resourceType":"Observation","code":{"coding":[{"code":"LOCAL"}]}}`, "noSystem"},
		{"|code does not match a code with a system", `{"resourceType":"Observation","code":{"coding":[{"system":"urn:x","code":"LOCAL"}]}}`, ""},
		{"code matches any system", `{"resourceType":"Observation","code":{"coding":[{"system":"urn:x","code":"ANY"}]}}`, "anySystem"},
		{"system| matches any code of the system", `{"resourceType":"ServiceRequest","category":[{"coding":[{"system":"urn:oid:9.9","code":"q"}]}]}`, "systemOnly"},
		{"match.valueSet on code", `{"resourceType":"Observation","code":{"coding":[{"system":"urn:oid:1.2","code":"Z"}]}}`, "vs-key"},
		{"valueset: in category", `{"resourceType":"Communication","category":[{"coding":[{"system":"http://loinc.org","code":"1-1"}]}]}`, "vs-category"},
		{"DocumentReference.type is a category too", `{"resourceType":"DocumentReference","type":{"coding":[{"system":"http://loinc.org","code":"11488-4"}]}}`, "doc-category-type"},
		{"DocumentReference.type is the code", `{"resourceType":"DocumentReference","type":{"coding":[{"system":"http://loinc.org","code":"1-1"}]}}`, "vs-key"},
		{"performer reference", `{"resourceType":"Observation","performer":[{"reference":"Practitioner/p1"}]}`, "perf"},
		{"performer absolute versioned reference", `{"resourceType":"Observation","performer":[{"reference":"https://emr.example/fhir/Practitioner/p1/_history/3"}]}`, "perf"},
		{"Procedure.performer.actor", `{"resourceType":"Procedure","performer":[{"actor":{"reference":"Practitioner/p1"}}]}`, "perf"},
		{"DocumentReference.author", `{"resourceType":"DocumentReference","author":[{"reference":"Practitioner/p1"}]}`, "perf"},
		{"organization as performer", `{"resourceType":"DiagnosticReport","performer":[{"reference":"Organization/lab1"}]}`, "org"},
		{"DocumentReference.custodian", `{"resourceType":"DocumentReference","custodian":{"reference":"Organization/lab1"}}`, "org"},
		{"performer.onBehalfOf", `{"resourceType":"Procedure","performer":[{"actor":{"reference":"Practitioner/x"},"onBehalfOf":{"reference":"Organization/lab1"}}]}`, "org"},
		{"contained reference ignored", `{"resourceType":"Observation","performer":[{"reference":"#p1"}]}`, ""},
		{"docStatus", `{"resourceType":"DocumentReference","status":"current","docStatus":"preliminary"}`, "docstatus"},
		{"nothing", `{"resourceType":"Observation","status":"final"}`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Evaluate(Input{Resource: res(t, tc.js), LastUpdated: now})
			if got.Rule != tc.rule {
				t.Errorf("rule = %q, want %q", got.Rule, tc.rule)
			}
		})
	}
}

// TestMatchAND: every key must hold; a rule with code and valueSet needs both.
func TestMatchAND(t *testing.T) {
	p := mustParse(t, `
version: 1
valueSets: {vs: ["http://loinc.org|1-1"]}
rules:
  - name: both
    match:
      resourceType: [Observation]
      code: ["http://loinc.org|1-1", "http://loinc.org|2-2"]
      valueSet: [vs]
      security: ["`+actCode+`|PSY"]
    action: exclude
`)
	psy := `"meta":{"security":[{"system":"` + actCode + `","code":"PSY"}]}`
	for _, tc := range []struct {
		js   string
		want string
	}{
		{`{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"1-1"}]},` + psy + `}`, "both"},
		{`{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"2-2"}]},` + psy + `}`, ""},
		{`{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"1-1"}]}}`, ""},
		{`{"resourceType":"DiagnosticReport","code":{"coding":[{"system":"http://loinc.org","code":"1-1"}]},` + psy + `}`, ""},
	} {
		if got := p.Evaluate(Input{Resource: res(t, tc.js), LastUpdated: now}); got.Rule != tc.want {
			t.Errorf("%s: rule %q, want %q", tc.js, got.Rule, tc.want)
		}
	}
}

// TestNewVersions: a new version keeps what was already released when it is
// a correction decided by the same rule; a hold persists.
func TestNewVersions(t *testing.T) {
	p := mustParse(t, basePolicy)
	past := now.Add(-time.Hour)
	future := now.Add(time.Hour)
	path := func(status, issued string) map[string]any {
		s := strings.Replace(obs("SP", `"issued":"`+issued+`"`), `"final"`, `"`+status+`"`, 1)
		return res(t, s)
	}
	hiv := func(status string) map[string]any {
		return res(t, `{"resourceType":"Observation","status":"`+status+`","code":{"coding":[{"system":"http://loinc.org","code":"7917-8"}]}}`)
	}
	released := store.Release{Patient: past, Proxy: past, Rule: "hiv", State: "released", By: "Practitioner/1", At: past, Note: "discussed"}
	tests := []struct {
		name string
		in   Input
		want store.Release
	}{
		{"amended after delay elapsed keeps release",
			Input{Resource: path("amended", "2024-03-09T00:00:00Z"), LastUpdated: now,
				Previous: &store.Release{Patient: past, Proxy: past, Rule: "pathology-7-days", State: "delay"}},
			store.Release{Patient: past, Proxy: past, Rule: "pathology-7-days", State: "delay"}},
		{"amended before delay elapsed: new instants",
			Input{Resource: path("amended", "2024-03-09T00:00:00Z"), LastUpdated: now,
				Previous: &store.Release{Patient: future, Proxy: future, Rule: "pathology-7-days", State: "delay"}},
			store.Release{Patient: ts("2024-03-16T00:00:00Z"), Proxy: ts("2024-03-16T00:00:00Z"), Rule: "pathology-7-days", State: "delay"}},
		{"correction decided by another rule: re-evaluated",
			Input{Resource: path("corrected", "2024-03-09T00:00:00Z"), LastUpdated: now,
				Previous: &store.Release{Rule: "", State: "immediate"}},
			store.Release{Patient: ts("2024-03-16T00:00:00Z"), Proxy: ts("2024-03-16T00:00:00Z"), Rule: "pathology-7-days", State: "delay"}},
		{"clinician release kept for a final correction",
			Input{Resource: hiv("amended"), LastUpdated: now, Previous: &released},
			released},
		{"clinician release not kept for a preliminary version",
			Input{Resource: hiv("preliminary"), LastUpdated: now, Previous: &released},
			store.Release{Patient: store.Never, Proxy: store.Never, Rule: "hiv", State: "manual"}},
		{"clinician release not kept for entered-in-error",
			Input{Resource: hiv("entered-in-error"), LastUpdated: now, Previous: &released},
			store.Release{Patient: store.Never, Proxy: store.Never, Rule: "hiv", State: "manual"}},
		{"release kept per audience",
			Input{Resource: res(t, obs("CH", `"status":"amended","meta":{"security":[{"system":"`+actCode+`","code":"STD"}]}`)), LastUpdated: now,
				Previous: &store.Release{Patient: time.Time{}, Proxy: store.Never, Rule: "patient:chem proxy:proxy-std", State: "exclude"}},
			store.Release{Patient: time.Time{}, Proxy: store.Never, Rule: "patient:chem proxy:proxy-std", State: "exclude"}},
		{"hold persists across versions",
			Input{Resource: res(t, obs("CH", "")), LastUpdated: now,
				Previous: &store.Release{Patient: store.Never, Proxy: store.Never, Rule: "chem", State: "held", By: "Practitioner/9", At: past, Note: "call first"}},
			store.Release{Patient: store.Never, Proxy: store.Never, Rule: "chem", State: "held", By: "Practitioner/9", At: past, Note: "call first"}},
		{"lastUpdated delay is not restarted by a new version",
			Input{Resource: res(t, obs("RAD", "")), LastUpdated: now,
				Previous: &store.Release{Patient: future, Proxy: future, Rule: "imaging-3d", State: "delay"}},
			store.Release{Patient: future, Proxy: future, Rule: "imaging-3d", State: "delay"}},
		{"lastUpdated delay kept per audience",
			Input{Resource: res(t, obs("RAD", `"meta":{"security":[{"system":"`+actCode+`","code":"STD"}]}`)), LastUpdated: now,
				Previous: &store.Release{Patient: future, Proxy: store.Never, Rule: "patient:imaging-3d proxy:proxy-std", State: "exclude"}},
			store.Release{Patient: future, Proxy: store.Never, Rule: "patient:imaging-3d proxy:proxy-std", State: "exclude"}},
		{"lastUpdated delay restarts after a clinician release and a non-correction",
			Input{Resource: res(t, strings.Replace(obs("RAD", ""), `"final"`, `"preliminary"`, 1)), LastUpdated: now,
				Previous: &store.Release{Patient: past, Proxy: past, Rule: "imaging-3d", State: "released", By: "P/1", At: past}},
			store.Release{Patient: now.Add(72 * time.Hour), Proxy: now.Add(72 * time.Hour), Rule: "imaging-3d", State: "delay"}},
		{"lastUpdated delay of another rule is not carried",
			Input{Resource: res(t, obs("RAD", "")), LastUpdated: now,
				Previous: &store.Release{Patient: future, Proxy: future, Rule: "docs-1d", State: "delay"}},
			store.Release{Patient: now.Add(72 * time.Hour), Proxy: now.Add(72 * time.Hour), Rule: "imaging-3d", State: "delay"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Evaluate(tc.in)
			if !sameRelease(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func sameRelease(a, b store.Release) bool {
	return a.Patient.Equal(b.Patient) && a.Proxy.Equal(b.Proxy) && a.Rule == b.Rule && a.State == b.State &&
		a.By == b.By && a.At.Equal(b.At) && a.Note == b.Note
}

// TestReleaseHold: $release makes a version visible now to both audiences,
// $hold hides it until $release.
func TestReleaseHold(t *testing.T) {
	p := mustParse(t, basePolicy)
	manual := store.Release{Patient: store.Never, Proxy: store.Never, Rule: "hiv", State: "manual"}
	rel := p.Release(manual, "Practitioner/1", "discussed by phone", now)
	want := store.Release{Patient: now, Proxy: now, Rule: "hiv", State: "released", By: "Practitioner/1", At: now, Note: "discussed by phone"}
	if !sameRelease(rel, want) {
		t.Errorf("Release: got %+v, want %+v", rel, want)
	}
	early := now.Add(-48 * time.Hour)
	rel = p.Release(store.Release{Patient: early, Proxy: now.Add(time.Hour), Rule: "x", State: "delay"}, "Practitioner/1", "", now)
	if !rel.Patient.Equal(early) || !rel.Proxy.Equal(now) {
		t.Errorf("Release keeps an earlier visible instant: got %+v", rel)
	}
	held := p.Hold(store.Release{Rule: "chem", State: "immediate"}, "Practitioner/2", "abnormal, call first")
	want = store.Release{Patient: store.Never, Proxy: store.Never, Rule: "chem", State: "held", By: "Practitioner/2", At: now, Note: "abnormal, call first"}
	if !sameRelease(held, want) {
		t.Errorf("Hold: got %+v, want %+v", held, want)
	}
	for _, a := range Audiences {
		if Visible(held, a, now.Add(1000*time.Hour)) {
			t.Errorf("held version visible to %s", a)
		}
	}
	back := p.Release(held, "Practitioner/2", "called", now.Add(time.Hour))
	if !Visible(back, Patient, now.Add(time.Hour)) || !Visible(back, Proxy, now.Add(time.Hour)) || Visible(back, Patient, now) {
		t.Errorf("released hold: %+v", back)
	}
}

func TestExplain(t *testing.T) {
	rel := store.Release{Patient: ts("2024-03-15T15:00:00Z"), Proxy: store.Never, Rule: "patient:path proxy:std", State: "exclude"}
	got := Explain(rel, now)
	want := map[string]any{
		"rule": "patient:path proxy:std", "state": "exclude",
		"patient": map[string]any{"rule": "path", "visibleFrom": "2024-03-15T15:00:00Z", "visibleNow": false},
		"proxy":   map[string]any{"rule": "std", "visibleFrom": "never", "visibleNow": false},
	}
	if !jsonEqual(got, want) {
		t.Errorf("Explain:\n got %s\nwant %s", toJSON(got), toJSON(want))
	}
	got = Explain(store.Release{Patient: now, Proxy: now, Rule: "hiv", State: "released", By: "Practitioner/1", At: now, Note: "ok"}, now)
	want = map[string]any{
		"rule": "hiv", "state": "released", "releasedBy": "Practitioner/1", "releasedAt": "2024-03-10T12:00:00Z", "note": "ok",
		"patient": map[string]any{"rule": "hiv", "visibleFrom": "2024-03-10T12:00:00Z", "visibleNow": true},
		"proxy":   map[string]any{"rule": "hiv", "visibleFrom": "2024-03-10T12:00:00Z", "visibleNow": true},
	}
	if !jsonEqual(got, want) {
		t.Errorf("Explain released:\n got %s\nwant %s", toJSON(got), toJSON(want))
	}
	got = Explain(store.Release{}, now)
	want = map[string]any{"rule": "", "state": "immediate",
		"patient": map[string]any{"visibleFrom": "immediate", "visibleNow": true},
		"proxy":   map[string]any{"visibleFrom": "immediate", "visibleNow": true}}
	if !jsonEqual(got, want) {
		t.Errorf("Explain zero:\n got %s\nwant %s", toJSON(got), toJSON(want))
	}
	got = Explain(store.Release{Patient: store.Never, Proxy: store.Never, State: "held", By: "P/1", At: now, Note: "wait"}, now)
	if got["heldBy"] != "P/1" || got["reason"] != "wait" || got["heldAt"] != "2024-03-10T12:00:00Z" {
		t.Errorf("Explain held: %s", toJSON(got))
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func jsonEqual(a, b any) bool { return toJSON(a) == toJSON(b) }

// TestNilPolicy: no policy file releases everything immediately; a hold
// still persists.
func TestNilPolicy(t *testing.T) {
	var p *Policy
	in := Input{Resource: res(t, obs("SP", `"meta":{"security":[{"system":"`+actCode+`","code":"NOPAT"}]}`)), LastUpdated: now}
	got := p.Evaluate(in)
	if !sameRelease(got, store.Release{State: "immediate"}) {
		t.Errorf("nil Evaluate: %+v", got)
	}
	in.Previous = &store.Release{Patient: store.Never, Proxy: store.Never, State: "held", By: "P/1"}
	if got := p.Evaluate(in); got.State != "held" || !got.Patient.Equal(store.Never) {
		t.Errorf("nil Evaluate with a hold: %+v", got)
	}
	if p.Hash() != mustParse(t, "version: 1\n").Hash() {
		t.Error("a nil policy and a policy without rules should hash alike")
	}
	if p.Rules() != nil || p.Source() != "" {
		t.Error("nil Rules/Source")
	}
	if h := p.Hold(store.Release{}, "P/1", "r"); h.State != "held" {
		t.Errorf("nil Hold: %+v", h)
	}
}

// TestHash: formatting, comments, descriptions, list order and value-set
// names do not change the hash; effective content does.
func TestHash(t *testing.T) {
	a := mustParse(t, `
version: 1
valueSets: {x: ["http://loinc.org|1-1", "http://loinc.org|2-2"]}
rules:
  - name: r
    description: one
    match: {resourceType: [Observation, DiagnosticReport], code: ["valueset:x"]}
    action: delay
    delay: 7d
`)
	b := mustParse(t, `# a comment
version: 1
valueSets:
  other-name: ["http://loinc.org|2-2", "http://loinc.org|1-1"]
rules:
  - name: r
    description: two
    action: delay
    delay: 168h      # same duration
    from: lastUpdated # the default
    audience: [proxy, patient]
    match:
      code: [valueset:other-name]
      resourceType: [DiagnosticReport, Observation]
`)
	if a.Hash() != b.Hash() || !strings.HasPrefix(a.Hash(), "sha256:") {
		t.Errorf("equivalent policies hash differently: %s %s", a.Hash(), b.Hash())
	}
	for _, changed := range []string{
		strings.Replace(basePolicy, "delay: 2d", "delay: 3d", 1),
		strings.Replace(basePolicy, "from: effective", "from: issued", 1),
		strings.Replace(basePolicy, "audience: [proxy]", "audience: [patient]", 1),
		strings.Replace(basePolicy, "- http://loinc.org|7917-8", "- http://loinc.org|7918-6", 1),
		strings.Replace(basePolicy, "timezone: America/Toronto", "timezone: America/Vancouver", 1),
		strings.Replace(basePolicy, "name: chem", "name: chemistry", 1),
	} {
		if mustParse(t, changed).Hash() == mustParse(t, basePolicy).Hash() {
			t.Errorf("hash unchanged after an effective change")
		}
	}
}

func TestParseDelay(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"168h", 168 * time.Hour, false},
		{"7d", 168 * time.Hour, false},
		{"2w", 14 * 24 * time.Hour, false},
		{"1w2d", 9 * 24 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"90m", 90 * time.Minute, false},
		{"1d0h", 24 * time.Hour, false},
		{"1d-1h", 0, true},
		{"0h", 0, true},
		{"0d", 0, true},
		{"-1h", 0, true},
		{"1.5d", 0, true},
		{"7", 0, true},
		{"d", 0, true},
		{"99999999999d", 0, true},
		{"50000d2000000h", 0, true},
		{"", 0, true},
	} {
		got, err := parseDelay(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseDelay(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestLoadErrors: every bad file gives a message with file:line and the rule.
func TestLoadErrors(t *testing.T) {
	rule := func(body string) string { return "version: 1\nrules:\n  - name: r1\n" + body }
	tests := []struct {
		name string
		src  string
		want []string // substrings of the error
	}{
		{"empty file", "", []string{"test.yaml: the file is empty"}},
		{"yaml syntax", "version: 1\nrules: [\n", []string{"test.yaml:2: YAML syntax error"}},
		{"top level not a mapping", "- a\n- b\n", []string{"test.yaml:1: the top level must be a mapping"}},
		{"two documents", "version: 1\n---\nversion: 1\n", []string{"only one YAML document"}},
		{"missing version", "rules: []\n", []string{"test.yaml:1: version is required"}},
		{"bad version", "version: 2\n", []string{`test.yaml:1: unsupported version "2"`}},
		{"unknown top key", "version: 1\nrule: []\n", []string{`test.yaml:2: unknown key "rule" in top level (did you mean "rules"?)`}},
		{"bad timezone", "version: 1\ntimezone: Mars/Olympus\n", []string{`test.yaml:2: timezone "Mars/Olympus"`}},
		{"rules not a list", "version: 1\nrules: {a: 1}\n", []string{"test.yaml:2: rules must be a list"}},
		{"missing name", "version: 1\nrules:\n  - action: immediate\n", []string{"test.yaml:3: rule #1: name is required"}},
		{"bad name", "version: 1\nrules:\n  - name: two words\n    action: immediate\n", []string{`test.yaml:3: rule "two words": name "two words"`}},
		{"duplicate name", rule("    action: immediate\n    match: {status: [a]}\n  - name: r1\n    action: exclude\n"),
			[]string{`test.yaml:6: rule "r1": duplicate rule name "r1" (first at line 3)`}},
		{"unknown rule key", rule("    action: immediate\n    dealy: 2d\n"),
			[]string{`test.yaml:5: rule "r1": unknown key "dealy" in rule (did you mean "delay"?)`}},
		{"duplicate key", rule("    action: immediate\n    action: exclude\n"),
			[]string{`test.yaml:5: rule "r1": duplicate key "action" in rule (first at line 4)`}},
		{"missing action", rule("    match: {status: [final]}\n"), []string{`test.yaml:3: rule "r1": action is required`}},
		{"unknown action", rule("    action: hide\n"), []string{`test.yaml:4: rule "r1": unknown action "hide"`}},
		{"delay without duration", rule("    action: delay\n"), []string{`test.yaml:3: rule "r1": action delay needs a delay`}},
		{"bad duration", rule("    action: delay\n    delay: soon\n"), []string{`test.yaml:5: rule "r1": delay "soon": not a duration`}},
		{"zero duration", rule("    action: delay\n    delay: 0s\n"), []string{`test.yaml:5: rule "r1": delay "0s": must be greater than zero`}},
		{"delay with other action", rule("    action: manual\n    delay: 1d\n"),
			[]string{`test.yaml:5: rule "r1": delay is only allowed with action delay`}},
		{"unknown from", rule("    action: delay\n    delay: 1d\n    from: collected\n"), []string{`test.yaml:6: rule "r1": unknown from "collected"`}},
		{"from with other action", rule("    action: exclude\n    from: issued\n"), []string{`test.yaml:5: rule "r1": from is only allowed with action delay`}},
		{"unknown audience", rule("    action: exclude\n    audience: [parent]\n"), []string{`test.yaml:5: rule "r1": unknown audience "parent"`}},
		{"empty audience", rule("    action: exclude\n    audience: []\n"), []string{`test.yaml:5: rule "r1": audience is empty`}},
		{"unknown match key", rule("    action: exclude\n    match:\n      codes: [x]\n"),
			[]string{`test.yaml:6: rule "r1": unknown key "codes" in match (did you mean "code"?)`}},
		{"match not a mapping", rule("    action: exclude\n    match: [x]\n"), []string{`test.yaml:5: rule "r1": match must be a mapping`}},
		{"bad resource type", rule("    action: exclude\n    match: {resourceType: [Observaton]}\n"),
			[]string{`test.yaml:5: rule "r1": match.resourceType: "Observaton" is not an R4 resource type (did you mean "Observation"?)`}},
		{"system not a URI", rule("    action: exclude\n    match:\n      code: [\"loinc|2160-0\"]\n"),
			[]string{`test.yaml:6: rule "r1": match.code: "loinc|2160-0": the system "loinc" must be an absolute URI`}},
		{"two bars", rule("    action: exclude\n    match:\n      security: [\"a:b|c|d\"]\n"), []string{`test.yaml:6: rule "r1": match.security: "a:b|c|d" has more than one '|'`}},
		{"empty token", rule("    action: exclude\n    match:\n      category: [\"|\"]\n"), []string{`test.yaml:6: rule "r1": match.category: "|" is not a code`}},
		{"code with spaces", rule("    action: exclude\n    match:\n      code: [\" x\"]\n"), []string{`test.yaml:6: rule "r1": match.code: " x"`}},
		{"undefined value set", rule("    action: exclude\n    match:\n      code: [\"valueset:nope\"]\n"),
			[]string{`test.yaml:6: rule "r1": match.code: value set "nope" is not defined`}},
		{"undefined match.valueSet", rule("    action: exclude\n    match:\n      valueSet: [nope]\n"),
			[]string{`test.yaml:6: rule "r1": match.valueSet: value set "nope" is not defined`}},
		{"bad status", rule("    action: exclude\n    match:\n      status: [\"a|b\"]\n"), []string{`test.yaml:6: rule "r1": match.status: "a|b"`}},
		{"bad performer", rule("    action: exclude\n    match:\n      performer: [Dr Smith]\n"),
			[]string{`test.yaml:6: rule "r1": match.performer: "Dr Smith" is not a reference`}},
		{"organization of wrong type", rule("    action: exclude\n    match:\n      organization: [Practitioner/1]\n"),
			[]string{`test.yaml:6: rule "r1": match.organization: "Practitioner/1" must be a reference to Organization`}},
		{"empty match list", rule("    action: exclude\n    match:\n      code:\n"), []string{`test.yaml:6: rule "r1": match.code is empty`}},
		{"nested list", rule("    action: exclude\n    match:\n      code: [[a]]\n"), []string{`test.yaml:6: rule "r1": match.code: every value must be a plain string`}},
		{"bad value set code", "version: 1\nvalueSets:\n  x: [\"bad system|1\"]\n", []string{`test.yaml:3: valueSets.x: "bad system|1"`}},
		{"value set not a mapping", "version: 1\nvalueSets: [a]\n", []string{`test.yaml:2: valueSets must be a mapping`}},
		{"unreachable after catch-all", "version: 1\nrules:\n  - name: all\n    action: immediate\n  - name: later\n    match: {status: [final]}\n    action: exclude\n",
			[]string{`test.yaml:5: rule "later": can never apply: rule "all" (line 3)`}},
		{"several problems, all reported", "version: 1\nrules:\n  - name: a\n    action: nope\n  - name: b\n    action: delay\n",
			[]string{"test.yaml: 2 problems:", `test.yaml:4: rule "a": unknown action "nope"`, `test.yaml:5: rule "b": action delay needs a delay`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.src), testFile)
			if err == nil {
				t.Fatalf("Parse succeeded (%d rules), want error containing %q", len(p.rules), tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nwant it to contain\n%s", err, w)
				}
			}
			if _, ok := err.(*LoadError); !ok {
				t.Errorf("error type %T, want *LoadError", err)
			}
		})
	}
}

// TestLoadAccepts checks flexible but valid forms.
func TestLoadAccepts(t *testing.T) {
	p := mustParse(t, `
version: 1
rules:
  - name: single-values
    match:
      resourceType: Observation      # a single value is a one-item list
      code: 12345                    # numeric-looking codes stay text
      security: "|LOCAL"
    action: delay
    delay: 1w
    audience: patient
  - name: catch-all-proxy
    audience: [proxy]
    action: manual
`)
	rules := p.Rules()
	if len(rules) != 2 || rules[0].Delay != 7*24*time.Hour || rules[0].From != FromLastUpdated ||
		len(rules[0].Audience) != 1 || rules[0].Match["code"][0] != "12345" || rules[1].Line != 12 {
		t.Errorf("Rules() = %+v", rules)
	}
	got := p.Evaluate(Input{Resource: res(t, `{"resourceType":"Observation","code":{"coding":[{"system":"urn:x","code":"12345"}]},"meta":{"security":[{"code":"LOCAL"}]}}`), LastUpdated: now})
	if got.Rule != "patient:single-values proxy:catch-all-proxy" || got.State != "manual" {
		t.Errorf("got %+v", got)
	}
	if _, err := Load("testdata/does-not-exist.yaml"); err == nil || !strings.Contains(err.Error(), "does-not-exist.yaml") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// TestOntarioExample: the shipped example loads and decides as documented.
func TestOntarioExample(t *testing.T) {
	p, err := Load("ontario-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p.Now = clock
	issued := `"issued":"2024-03-08T10:00:00Z"`
	cat := func(code string) string {
		return `"category":[{"coding":[{"system":"` + v20074 + `","code":"` + code + `"}]}]`
	}
	label := func(code string) string {
		return `"meta":{"security":[{"system":"` + actCode + `","code":"` + code + `"}]}`
	}
	day := 24 * time.Hour
	at := ts("2024-03-08T10:00:00Z")
	tests := []struct {
		name, js, rule, state string
		patient, proxy        time.Time
	}{
		{"chemistry", `{"resourceType":"Observation","status":"final",` + cat("CH") + `,` + issued + `}`, "general-labs-immediate", "immediate", time.Time{}, time.Time{}},
		{"unlisted lab", `{"resourceType":"Observation","status":"final",` + cat("SR") + `}`, "", "immediate", time.Time{}, time.Time{}},
		{"surgical pathology", `{"resourceType":"DiagnosticReport","status":"final",` + cat("SP") + `,` + issued + `}`, "pathology-7-days", "delay", at.Add(7 * day), at.Add(7 * day)},
		{"cytopathology", `{"resourceType":"DiagnosticReport","status":"final",` + cat("CP") + `,` + issued + `}`, "pathology-7-days", "delay", at.Add(7 * day), at.Add(7 * day)},
		{"genetics", `{"resourceType":"DiagnosticReport","status":"final",` + cat("GE") + `,` + issued + `}`, "genetics-14-days", "delay", at.Add(14 * day), at.Add(14 * day)},
		{"microbiology", `{"resourceType":"Observation","status":"final",` + cat("MB") + `,` + issued + `}`, "microbiology-2-days", "delay", at.Add(2 * day), at.Add(2 * day)},
		{"imaging report", `{"resourceType":"DiagnosticReport","status":"final",` + cat("RAD") + `,` + issued + `}`, "imaging-reports-2-days", "delay", at.Add(2 * day), at.Add(2 * day)},
		{"imaging document", `{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"http://loinc.org","code":"18748-4"}]},"date":"2024-03-08T10:00:00Z"}`,
			"imaging-documents-2-days", "delay", at.Add(2 * day), at.Add(2 * day)},
		{"HIV test", `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"56888-1"}]},` + cat("SR") + `}`,
			"hiv-tests-manual", "manual", store.Never, store.Never},
		{"HIV labelled: manual for the patient, excluded for proxies", `{"resourceType":"Observation","status":"final",` + label("HIV") + `}`,
			"patient:hiv-labelled-manual proxy:proxy-sensitive-exclude", "exclude", store.Never, store.Never},
		{"STD labelled chemistry: proxies excluded", `{"resourceType":"Observation","status":"final",` + cat("CH") + `,` + label("STD") + `}`,
			"patient:general-labs-immediate proxy:proxy-sensitive-exclude", "exclude", time.Time{}, store.Never},
		{"NOPAT", `{"resourceType":"DiagnosticReport","status":"final",` + cat("CH") + `,` + label("NOPAT") + `}`, "nopat-exclude", "exclude", store.Never, store.Never},
		{"psychiatry progress note", `{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"http://loinc.org","code":"28627-8"}]}}`,
			"mental-health-notes-exclude", "exclude", store.Never, store.Never},
		{"consult note labelled PSY", `{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"http://loinc.org","code":"11488-4"}]},"securityLabel":[{"coding":[{"system":"` + actCode + `","code":"PSY"}]}]}`,
			"psychiatric-consult-notes-exclude", "exclude", store.Never, store.Never},
		{"consult note without label", `{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"http://loinc.org","code":"11488-4"}]}}`,
			"", "immediate", time.Time{}, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Evaluate(Input{Resource: res(t, tc.js), LastUpdated: now})
			want := store.Release{Patient: tc.patient, Proxy: tc.proxy, Rule: tc.rule, State: tc.state}
			if !sameRelease(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestLoadErrorFormat(t *testing.T) {
	_, err := Parse([]byte("version: 1\nrules:\n  - name: x\n    action: nope\n"), "/etc/fhirgate/policy.yaml")
	want := `policy: /etc/fhirgate/policy.yaml:4: rule "x": unknown action "nope" (known: immediate, delay, manual, exclude)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if !bytes.Contains([]byte(err.Error()), []byte("policy.yaml:4")) {
		t.Error("no line")
	}
}

// TestReadmeExample keeps the quick example of README.md loadable.
func TestReadmeExample(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	if !ok {
		t.Fatal("no yaml block in README.md")
	}
	src, _, _ := strings.Cut(rest, "```")
	p := mustParse(t, src)
	if len(p.Rules()) != 3 {
		t.Errorf("README example has %d rules", len(p.Rules()))
	}
}
