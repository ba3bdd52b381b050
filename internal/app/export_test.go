package app

// End-to-end tests of the record export (docs/export.md):
// Patient/[id]/$everything (R4 patient-operation-everything.html) as a
// patient, a proxy and staff, with release rules and paging; Bulk Data
// Access 2.0 $export (export.html) at the system, Patient and Group
// levels: kick-off rules, status polling, the manifest, NDJSON download,
// cancel, another client's 404, expiry and a restart during a job. On
// FerretDB too: FHIRGATE_TEST_STORE=ferretdb.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/smart/devissuer"
)

// exWorld adds to newWorld what an export names: referenced resources
// (Practitioner, Organization, Location, Medication), an Encounter, a
// MedicationRequest, a Task (linked by Task.for), a held pathology result
// and a Group of pat-a and pat-b.
func exWorld(t *testing.T, opts ...harnessOpt) *world {
	w := newWorld(t, append([]harnessOpt{withPolicy(t)}, opts...)...)
	h := w.h
	put(h, "Practitioner", "dr-1", `{"resourceType":"Practitioner","name":[{"family":"Lee"}]}`)
	put(h, "Practitioner", "dr-unused", `{"resourceType":"Practitioner","name":[{"family":"Nobody"}]}`)
	put(h, "Organization", "org-1", `{"resourceType":"Organization","name":"Clinic"}`)
	put(h, "Location", "loc-1", `{"resourceType":"Location","name":"Room 1"}`)
	put(h, "Medication", "med-1", `{"resourceType":"Medication","code":{"text":"metformin"}}`)
	put(h, "Observation", "perf-a", `{"resourceType":"Observation","status":"final","code":{"text":"bp"},"subject":{"reference":"Patient/pat-a"},`+
		`"effectiveDateTime":"2026-03-01T10:00:00Z","performer":[{"reference":"Practitioner/dr-1"}]}`)
	put(h, "Encounter", "enc-a", `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/pat-a"},`+
		`"period":{"start":"2026-03-01T09:00:00Z","end":"2026-03-01T11:00:00Z"},"serviceProvider":{"reference":"Organization/org-1"},"location":[{"location":{"reference":"Location/loc-1"}}]}`)
	put(h, "MedicationRequest", "mr-a", `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/pat-a"},`+
		`"authoredOn":"2026-03-01","medicationReference":{"reference":"Medication/med-1"}}`)
	put(h, "Task", "task-a", `{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/pat-a"},"authoredOn":"2026-03-02"}`)
	put(h, "Observation", "path-a", pathology(w.pa)) // held 7 days from 2026-06-01 (testPolicy)
	// An attachment (included as the Binary it points at) and, for the
	// child, an HIV document: held by the hiv-manual rule, withheld from
	// the parent with its Binary.
	put(h, "Binary", "bin-doc", binary("Patient/pat-a"))
	put(h, "DocumentReference", "doc", docRef(w.pa, "doc", ""))
	put(h, "Binary", "bin-hiv", binary("Patient/pat-c"))
	put(h, "DocumentReference", "hiv", docRef(w.pc, "hiv", hivLabel))
	put(h, "Group", "g1", `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/pat-a"}},{"entity":{"reference":"Patient/pat-b"}},{"entity":{"reference":"Device/d1"}}]}`)
	return w
}

// exEverything pages through $everything and returns the match and
// include keys, and the number of pages.
func exEverything(t *testing.T, h *harness, path, token string) (matches, included []string, pages int) {
	t.Helper()
	for next := path; next != ""; {
		r := h.req("GET", next, nil, token).must(t, 200)
		if r.JSON["type"] != "searchset" {
			t.Fatalf("$everything answered a %v Bundle", r.JSON["type"])
		}
		pages++
		for _, e := range r.entries() {
			res, _ := e["resource"].(map[string]any)
			key := fmt.Sprint(res["resourceType"], "/", res["id"])
			switch e["search"].(map[string]any)["mode"] {
			case "match":
				if has(matches, key) {
					t.Errorf("%s: %s returned twice", path, key)
				}
				matches = append(matches, key)
			case "include":
				if !has(included, key) {
					included = append(included, key)
				}
			}
		}
		next = ""
		for _, l := range r.JSON["link"].([]any) {
			if l := l.(map[string]any); l["relation"] == "next" {
				next = strings.TrimPrefix(l["url"].(string), h.base+"/")
				if !strings.HasPrefix(next, "Patient/") || !strings.Contains(next, "/$everything?") || !strings.Contains(next, "_cursor=") {
					t.Fatalf("next link %q does not come back to $everything", next)
				}
			}
		}
		if pages > 200 {
			t.Fatal("paging does not end")
		}
	}
	sort.Strings(matches)
	sort.Strings(included)
	return matches, included, pages
}

func TestExportEverything(t *testing.T) {
	w := exWorld(t)
	h := w.h
	pt := w.patientToken(w.pa, "patient/*.rs")

	// Paging through every page (2 a page) gives exactly the patient's
	// compartment search (as the same caller: no AuditEvent, the trail
	// is not the record) plus the resources it references.
	matches, included, pages := exEverything(t, h, "Patient/pat-a/$everything?_count=2", pt)
	var want []string
	for _, k := range ids(h.req("GET", "Patient/pat-a/*?_count=1000", nil, pt).must(t, 200)) {
		if !strings.HasPrefix(k, "AuditEvent/") {
			want = append(want, k)
		}
	}
	sort.Strings(want)
	if !slices.Equal(matches, want) {
		t.Errorf("$everything matches\n %v\nwant the compartment search\n %v", matches, want)
	}
	if pages < len(want)/2 {
		t.Errorf("%d matches in %d pages of 2", len(matches), pages)
	}
	for _, k := range []string{"Patient/pat-a", "Observation/lab-a", "Observation/perf-a", "Encounter/enc-a", "MedicationRequest/mr-a", "Task/task-a", "Appointment/appt-a", "Communication/comm-a"} {
		if !has(matches, k) {
			t.Errorf("$everything lacks %s: %v", k, matches)
		}
	}
	wantInc := []string{"Binary/bin-doc", "Location/loc-1", "Medication/med-1", "Organization/org-1", "Practitioner/dr-1"}
	if !slices.Equal(included, wantInc) {
		t.Errorf("included %v, want the referenced %v", included, wantInc)
	}
	// The held result and another patient's data never appear.
	for _, k := range []string{"Observation/path-a", "Observation/lab-b", "Patient/pat-b", "Observation/lab-c", "Practitioner/dr-unused"} {
		if has(matches, k) || has(included, k) {
			t.Errorf("$everything of the patient returned %s", k)
		}
	}

	// Staff see the held result; the same paging gives the same set plus it.
	staff, _, _ := exEverything(t, h, "Patient/pat-a/$everything?_count=3", "")
	if !has(staff, "Observation/path-a") || !has(staff, "Observation/lab-a") || has(staff, "Observation/lab-b") {
		t.Errorf("staff $everything: %v", staff)
	}

	// Only oneself: another patient's record is 404, like a missing one.
	h.req("GET", "Patient/pat-b/$everything", nil, pt).must(t, 404)
	h.req("GET", "Patient/nobody/$everything", nil, pt).must(t, 404)
	// A parent on the child they act for; not on anyone else.
	mum := h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent})
	child, _, _ := exEverything(t, h, "Patient/pat-c/$everything", mum)
	if !has(child, "Observation/lab-c") || !has(child, "Patient/pat-c") || has(child, "Observation/lab-a") || has(child, "DocumentReference/hiv") {
		t.Errorf("the parent's $everything of the child: %v", child)
	}
	if _, inc, _ := exEverything(t, h, "Patient/pat-c/$everything", mum); has(inc, "Binary/bin-hiv") {
		t.Errorf("the parent got the HIV document's Binary: %v", inc)
	}
	if m, inc, _ := exEverything(t, h, "Patient/pat-c/$everything", ""); !has(m, "DocumentReference/hiv") || !has(inc, "Binary/bin-hiv") {
		t.Errorf("staff $everything of the child: %v + %v", m, inc)
	}
	h.req("GET", "Patient/pat-a/$everything", nil, mum).must(t, 404)
	// The caregiver's Consent allows Appointments and Communications only:
	// not the Patient resource, so not its $everything.
	carer := h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: w.pa, FHIRUser: "RelatedPerson/" + w.caregiver})
	h.req("GET", "Patient/pat-a/$everything", nil, carer).must(t, h.req("GET", "Patient/pat-a", nil, carer).Status)

	// start/end (care dates), _type, _since, POST with Parameters.
	m, _, _ := exEverything(t, h, "Patient/pat-a/$everything?start=2026-02-01&end=2026-12-31", pt)
	if has(m, "Observation/lab-a") || !has(m, "Observation/perf-a") || !has(m, "Encounter/enc-a") || !has(m, "Patient/pat-a") {
		t.Errorf("start=2026-02-01: %v (lab-a is of 2026-01-02)", m)
	}
	m, inc, _ := exEverything(t, h, "Patient/pat-a/$everything?_type=Observation", pt)
	if !slices.Equal(m, []string{"Observation/lab-a", "Observation/perf-a", "Observation/vital-a"}) || !slices.Equal(inc, []string{"Practitioner/dr-1"}) {
		t.Errorf("_type=Observation: %v + %v", m, inc)
	}
	h.clock.Set(h.clock.Now().Add(time.Hour))
	since := h.clock.Now().Format(time.RFC3339)
	put(h, "Observation", w.vitalA, obs(w.pa, "vital-signs", "8867-4"))
	m, _, _ = exEverything(t, h, "Patient/pat-a/$everything?_since="+since, pt)
	if !slices.Equal(m, []string{"Observation/vital-a"}) {
		t.Errorf("_since: %v, want only the updated vital-a", m)
	}
	r := h.req("POST", "Patient/pat-a/$everything", `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Encounter"},{"name":"start","valueDate":"2026-03-01"}]}`, pt).must(t, 200)
	if got := ids(r); !slices.Equal(got, []string{"Encounter/enc-a", "Organization/org-1", "Location/loc-1"}) && !slices.Equal(got, []string{"Encounter/enc-a", "Location/loc-1", "Organization/org-1"}) {
		t.Errorf("POST $everything: %v", got)
	}
	for _, bad := range []string{"start=yesterday", "_since=2026-01-01", "_type=Nope", "_count=0", "_elements=id", "_cursor=zz"} {
		if r := h.req("GET", "Patient/pat-a/$everything?"+bad, nil, pt); r.Status != 400 {
			t.Errorf("%s: %d, want 400", bad, r.Status)
		}
	}

	// The AuditEvents of the calls name what they returned, in the patient's trail.
	if err := h.app.Audit.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ae := h.req("GET", "AuditEvent?entity=Observation/perf-a&_count=100", nil, "").must(t, 200)
	if len(ae.entries()) == 0 || !strings.Contains(string(ae.Body), "$everything") {
		t.Errorf("no AuditEvent of $everything names perf-a: %s", truncate(ae.Body))
	}
	if strings.Contains(string(h.req("GET", "AuditEvent?entity=Observation/path-a&_count=100", nil, pt).must(t, 200).Body), "$everything") {
		t.Error("the patient's audit trail names the held result")
	}
}

// exBulk is a backend client of the Bulk Data tests.
type exBulk struct {
	h     *harness
	token string
}

func (b exBulk) kick(t *testing.T, method, path string, body any, headers ...string) res {
	t.Helper()
	hs := append([]string{"Prefer: respond-async", "Accept: application/fhir+json"}, headers...)
	return b.h.req(method, path, body, b.token, hs...)
}

// raw sends a request outside /fhir (the status and file URLs are absolute).
func exRaw(t *testing.T, method, u, token string) (int, http.Header, []byte) {
	t.Helper()
	r, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

type exManifest struct {
	TransactionTime     string `json:"transactionTime"`
	Request             string `json:"request"`
	RequiresAccessToken bool   `json:"requiresAccessToken"`
	Output              []struct {
		Type  string `json:"type"`
		URL   string `json:"url"`
		Count int    `json:"count"`
	} `json:"output"`
	Error []struct {
		Type, URL string
	} `json:"error"`
}

// exPoll polls a status URL until it is no longer 202.
func exPoll(t *testing.T, statusURL, token string) exManifest {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, hdr, body := exRaw(t, "GET", statusURL, token)
		if st == 202 {
			if hdr.Get("X-Progress") == "" || hdr.Get("Retry-After") == "" {
				t.Errorf("in-progress status without X-Progress or Retry-After: %v", hdr)
			}
			if time.Now().After(deadline) {
				t.Fatalf("export did not finish; progress %q", hdr.Get("X-Progress"))
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if st != 200 {
			t.Fatalf("status %d: %s", st, body)
		}
		if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("manifest Content-Type %q", ct)
		}
		var m exManifest
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
}

// exDownload fetches every output file, parses every line and returns
// the resource keys by type; each file's count must equal its lines.
func exDownload(t *testing.T, m exManifest, token string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, f := range m.Output {
		st, hdr, body := exRaw(t, "GET", f.URL, token)
		if st != 200 || hdr.Get("Content-Type") != "application/fhir+ndjson" {
			t.Fatalf("file %s: %d %s", f.URL, st, hdr.Get("Content-Type"))
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(nil, 1<<20)
		n := 0
		for sc.Scan() {
			var r struct{ ResourceType, ID string }
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("file %s line %d: %v", f.URL, n+1, err)
			}
			if r.ResourceType != f.Type {
				t.Errorf("file of %s holds a %s", f.Type, r.ResourceType)
			}
			out[f.Type] = append(out[f.Type], r.ResourceType+"/"+r.ID)
			n++
		}
		if n != f.Count {
			t.Errorf("file %s: count %d, %d lines", f.URL, f.Count, n)
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

func exStoreIDs(t *testing.T, h *harness, typ string) []string {
	t.Helper()
	got := ids(h.req("GET", typ+"?_count=1000", nil, "").must(t, 200))
	sort.Strings(got)
	return got
}

func TestExportBulk(t *testing.T) {
	w := exWorld(t, func(o *Options) { o.Export.MaxLines = 2; o.Export.PageSize = 2 })
	h := w.h
	b := exBulk{h, h.token(devissuer.MintOptions{Scope: "system/*.rs", Client: "bulk-1"})}

	// Kick-off rules (export.html#bulk-data-kick-off-request).
	h.req("GET", "$export", nil, b.token).must(t, 400) // no Prefer: respond-async
	for _, tok := range []string{
		w.patientToken(w.pa, "patient/*.rs"),
		h.token(devissuer.MintOptions{Scope: "user/*.rs", FHIRUser: "Practitioner/dr-1"}),
		h.token(devissuer.MintOptions{Scope: "system/*.rs user/*.rs", Client: "mixed"}),
	} {
		exBulk{h, tok}.kick(t, "GET", "$export", nil).must(t, 403)
	}
	for _, bad := range []string{"_outputFormat=text/csv", "_since=yesterday", "_type=Nope", "_typeFilter=Observation%3Fcode%3Dx", "patient=Patient/pat-a"} {
		if r := b.kick(t, "GET", "$export?"+bad, nil); r.Status != 400 {
			t.Errorf("$export?%s: %d, want 400", bad, r.Status)
		}
	}
	b.kick(t, "GET", "Patient/$export?_type=Practitioner", nil).must(t, 400) // no patient data
	b.kick(t, "GET", "Group/nope/$export", nil).must(t, 404)

	// System level, two types, split at 2 lines a file.
	r := b.kick(t, "GET", "$export?_type=Patient,Observation&_outputFormat=application/fhir%2Bndjson", nil).must(t, 202)
	loc := r.Header.Get("Content-Location")
	if !strings.HasPrefix(loc, strings.TrimSuffix(h.base, "/fhir")+"/bulk/jobs/") {
		t.Fatalf("Content-Location %q", loc)
	}
	m := exPoll(t, loc, b.token)
	if !m.RequiresAccessToken || !strings.HasSuffix(m.Request, "/fhir/$export?_outputFormat=application%2Ffhir%2Bndjson&_type=Patient%2CObservation") || m.TransactionTime == "" {
		t.Errorf("manifest: %+v", m)
	}
	got := exDownload(t, m, b.token)
	for _, typ := range []string{"Patient", "Observation"} {
		if want := exStoreIDs(t, h, typ); !slices.Equal(got[typ], want) {
			t.Errorf("system export of %s: %v, want the store's %v", typ, got[typ], want)
		}
	}
	if len(got) != 2 || len(m.Output) < 4 {
		t.Errorf("types %v in %d files (at most 2 lines each)", got, len(m.Output))
	}
	// The files are the client's: no token 401, another client 404.
	other := h.token(devissuer.MintOptions{Scope: "system/*.rs", Client: "bulk-2"})
	if st, _, _ := exRaw(t, "GET", loc, ""); st != 401 {
		t.Errorf("status without a token: %d", st)
	}
	for _, u := range []string{loc, m.Output[0].URL} {
		if st, _, _ := exRaw(t, "GET", u, other); st != 404 {
			t.Errorf("another client's GET %s: %d, want 404", u, st)
		}
	}
	if st, _, _ := exRaw(t, "DELETE", loc, other); st != 404 {
		t.Errorf("another client's DELETE: %d", st)
	}

	// Scopes bound the export: system/Observation.rs gets Observations only.
	obsOnly := exBulk{h, h.token(devissuer.MintOptions{Scope: "system/Observation.rs", Client: "bulk-obs"})}
	m = exPoll(t, obsOnly.kick(t, "GET", "$export", nil).must(t, 202).Header.Get("Content-Location"), obsOnly.token)
	got = exDownload(t, m, obsOnly.token)
	if len(got) != 1 || !slices.Equal(got["Observation"], exStoreIDs(t, h, "Observation")) {
		t.Errorf("system/Observation.rs export: %v", got)
	}
	obsOnly.kick(t, "GET", "$export?_type=Patient", nil).must(t, 403)

	// Patient level with _since: only what changed after it.
	h.clock.Set(h.clock.Now().Add(time.Hour))
	since := h.clock.Now().Format(time.RFC3339)
	put(h, "Observation", w.labA, obs(w.pa, "laboratory", "2160-0"))
	m = exPoll(t, b.kick(t, "GET", "Patient/$export?_type=Patient,Observation&_since="+since, nil).must(t, 202).Header.Get("Content-Location"), b.token)
	got = exDownload(t, m, b.token)
	if len(got) != 1 || !slices.Equal(got["Observation"], []string{"Observation/lab-a"}) {
		t.Errorf("Patient/$export?_since: %v, want only lab-a", got)
	}
	// Patient level, all types: every patient's compartment, no
	// patient-free type, nothing outside a compartment.
	m = exPoll(t, b.kick(t, "POST", "Patient/$export", `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Patient,Observation,Task"}]}`).must(t, 202).Header.Get("Content-Location"), b.token)
	got = exDownload(t, m, b.token)
	if !slices.Equal(got["Patient"], exStoreIDs(t, h, "Patient")) || !slices.Equal(got["Observation"], exStoreIDs(t, h, "Observation")) || !slices.Equal(got["Task"], []string{"Task/task-a"}) {
		t.Errorf("Patient/$export: %v", got)
	}

	// Group level: the members' compartments only (pat-a, pat-b; not pat-c),
	// the Device member noted in the error file.
	m = exPoll(t, b.kick(t, "GET", "Group/g1/$export?_type=Patient,Observation", nil).must(t, 202).Header.Get("Content-Location"), b.token)
	got = exDownload(t, m, b.token)
	if !slices.Equal(got["Patient"], []string{"Patient/pat-a", "Patient/pat-b"}) ||
		!slices.Equal(got["Observation"], []string{"Observation/lab-a", "Observation/lab-b", "Observation/path-a", "Observation/perf-a", "Observation/vital-a"}) {
		t.Errorf("Group/g1/$export: %v", got)
	}
	if len(m.Error) != 1 || m.Error[0].Type != "OperationOutcome" {
		t.Errorf("error files %v, want the note on Device/d1", m.Error)
	} else if st, _, body := exRaw(t, "GET", m.Error[0].URL, b.token); st != 200 || !strings.Contains(string(body), "Device/d1") {
		t.Errorf("error file: %d %s", st, body)
	}
	// The patient parameter narrows the group.
	m = exPoll(t, b.kick(t, "POST", "Group/g1/$export", `{"resourceType":"Parameters","parameter":[{"name":"_type","valueString":"Observation"},{"name":"patient","valueReference":{"reference":"Patient/pat-b"}}]}`).must(t, 202).Header.Get("Content-Location"), b.token)
	if got = exDownload(t, m, b.token); !slices.Equal(got["Observation"], []string{"Observation/lab-b"}) {
		t.Errorf("Group/g1/$export patient=pat-b: %v", got)
	}

	// Every download was audited.
	if err := h.app.Audit.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ae := h.req("GET", "AuditEvent?entity-name=$export-download&_total=accurate&_count=0", nil, "").must(t, 200); ae.JSON["total"] == nil || ae.JSON["total"].(float64) < 6 {
		t.Errorf("download AuditEvents: %v", ae.JSON["total"])
	}
	// And each patient sees, in their own audit trail, every export that
	// held their data (one event per patient, naming nobody else): pat-b
	// was in the system, Observation-only, Patient-level and both Group
	// exports, not in the _since one.
	pb := h.req("GET", "AuditEvent?entity-name=$export&_count=100", nil, w.patientToken(w.pb, "patient/*.rs")).must(t, 200)
	jobs := 0
	for _, e := range pb.entries() {
		if strings.Contains(fmt.Sprint(e), base64.StdEncoding.EncodeToString([]byte("job="))[:5]) { // the Query entity "job=<id>"
			jobs++
		}
	}
	if jobs != 5 {
		t.Errorf("pat-b's job AuditEvents: %d, want 5: %s", jobs, pb.Body)
	}
	for _, other := range []string{"pat-a", "pat-c"} {
		if strings.Contains(string(pb.Body), "Patient/"+other) {
			t.Errorf("pat-b's export AuditEvents name %s", other)
		}
	}
}

func TestExportCancelExpireRestart(t *testing.T) {
	release := make(chan struct{})
	dir := t.TempDir()
	clk := ntClock()
	hold := func(o *Options) {
		o.Export.BeforePage = func(ctx context.Context, job string) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		o.Export.SweepEvery = 10 * time.Millisecond
		o.Export.TTL = time.Hour
	}
	h, stop := exApp(t, dir, "127.0.0.1:0", clk, hold)
	put(h, "Patient", "p1", `{"resourceType":"Patient"}`)
	put(h, "Observation", "o1", obs("p1", "laboratory", "1-1"))
	b := exBulk{h, h.token(devissuer.MintOptions{Scope: "system/*.rs", Client: "bulk-1"})}
	running := func(h *harness, loc string) {
		ntEventually(t, "the job to run", func() bool {
			st, hdr, _ := exRaw(t, "GET", loc, b.token)
			return st == 202 && hdr.Get("X-Progress") != "queued"
		})
	}

	// DELETE cancels a running job: 202, then 404, its files gone.
	loc := b.kick(t, "GET", "$export", nil).must(t, 202).Header.Get("Content-Location")
	running(h, loc)
	if st, _, body := exRaw(t, "DELETE", loc, b.token); st != 202 {
		t.Fatalf("DELETE: %d %s", st, body)
	}
	if st, _, _ := exRaw(t, "GET", loc, b.token); st != 404 {
		t.Errorf("a cancelled job: %d, want 404", st)
	}
	id := loc[strings.LastIndex(loc, "/")+1:]
	ntEventually(t, "the cancelled job's files to go", func() bool {
		_, err := os.Stat(filepath.Join(dir, "exports", id))
		return os.IsNotExist(err)
	})

	// A restart during a job: the next process runs it again to the end.
	loc = b.kick(t, "GET", "$export?_type=Patient,Observation", nil).must(t, 202).Header.Get("Content-Location")
	id = loc[strings.LastIndex(loc, "/")+1:]
	running(h, loc)
	stop()
	// The same address and data directory: the same issuer and key, so
	// the client's token still verifies and names the job's owner.
	h2, _ := exApp(t, dir, h.srv.Listener.Addr().String(), clk, func(o *Options) { o.Export.SweepEvery = 10 * time.Millisecond; o.Export.TTL = time.Hour })
	loc2 := strings.TrimSuffix(h2.base, "/fhir") + "/bulk/jobs/" + id
	if loc2 != loc {
		t.Fatalf("status URL %s after the restart, was %s", loc2, loc)
	}
	m := exPoll(t, loc2, b.token)
	got := exDownload(t, m, b.token)
	if !slices.Equal(got["Patient"], []string{"Patient/p1"}) || !slices.Equal(got["Observation"], []string{"Observation/o1"}) {
		t.Errorf("after the restart: %v", got)
	}
	if len(m.Error) != 1 {
		t.Errorf("no note of the restart: %+v", m.Error)
	} else if _, _, body := exRaw(t, "GET", m.Error[0].URL, b.token); !strings.Contains(string(body), "restarted") {
		t.Errorf("error file: %s", body)
	}

	// A finished job expires: its status is 404 and its files are gone.
	clk.Set(clk.Now().Add(2 * time.Hour))
	fresh := h2.token(devissuer.MintOptions{Scope: "system/*.rs", Client: "bulk-1"})
	if st, _, _ := exRaw(t, "GET", m.Output[0].URL, b.token); st != 401 {
		t.Errorf("a download with an expired token: %d, want 401", st)
	}
	ntEventually(t, "the job to expire", func() bool {
		st, _, _ := exRaw(t, "GET", loc2, fresh)
		return st == 404
	})
	if _, err := os.Stat(filepath.Join(dir, "exports", id)); !os.IsNotExist(err) {
		t.Errorf("expired job's files remain: %v", err)
	}
	close(release)
}

// exApp starts the app on dataDir listening on addr (a restart reuses the
// address, so the issuer stays the same); stop is idempotent.
func exApp(t *testing.T, dataDir, addr string, clk *clock, opts ...harnessOpt) (*harness, func()) {
	t.Helper()
	return appOn(t, dataDir, addr, clk, opts...)
}

func TestExportFromEnv(t *testing.T) {
	env := map[string]string{"FHIRGATE_EXPORT_MAX_JOBS": "3", "FHIRGATE_EXPORT_MAX_LINES": "500", "FHIRGATE_EXPORT_TTL": "2h", "FHIRGATE_EXPORT_DIR": "/x"}
	o, err := ExportFromEnv(func(k string) string { return env[k] })
	if err != nil || o.MaxJobs != 3 || o.MaxLines != 500 || o.TTL != 2*time.Hour || o.Dir != "/x" {
		t.Errorf("%+v %v", o, err)
	}
	for k, v := range map[string]string{"FHIRGATE_EXPORT_MAX_JOBS": "0", "FHIRGATE_EXPORT_MAX_LINES": "x", "FHIRGATE_EXPORT_TTL": "-1h", "FHIRGATE_EXPORT_MAX_QUEUED": "1001"} {
		if _, err := ExportFromEnv(func(n string) string {
			if n == k {
				return v
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}
