package main

// Record export through the binary (issue 17, "Record export";
// docs/export.md): an EMR loads a small record, a backend service with a
// `fhirgate token --scope 'system/*.rs'` token runs a Bulk Data Access 2.0
// Group export (kick-off, poll, download every NDJSON file and parse every
// line), and the patient downloads their own record with
// Patient/[id]/$everything.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestExportThroughTheBinary(t *testing.T) {
	c := startBinary(t, withEnv("FHIRGATE_NOTIFY_OFF=true", "FHIRGATE_EXPORT_MAX_LINES=2"))
	emr := c.token("--scope", "system/*.cruds")
	bulk := c.token("--scope", "system/*.rs", "--client", "analytics")
	patient := c.token("--scope", "patient/*.rs", "--patient", "p1", "--fhir-user", "Patient/p1")

	c.do(emr, "PUT", "Patient/p1", `{"resourceType":"Patient","id":"p1","name":[{"family":"One"}]}`, 201)
	c.do(emr, "PUT", "Patient/p2", `{"resourceType":"Patient","id":"p2","name":[{"family":"Two"}]}`, 201)
	c.do(emr, "PUT", "Patient/p3", `{"resourceType":"Patient","id":"p3","name":[{"family":"Three"}]}`, 201)
	c.do(emr, "PUT", "Practitioner/dr", `{"resourceType":"Practitioner","id":"dr","name":[{"family":"Doc"}]}`, 201)
	for _, o := range []struct{ id, patient string }{{"o1", "p1"}, {"o2", "p1"}, {"o3", "p1"}, {"o4", "p2"}, {"o5", "p3"}} {
		c.do(emr, "PUT", "Observation/"+o.id, `{"resourceType":"Observation","id":"`+o.id+`","status":"final","code":{"text":"glucose"},`+
			`"subject":{"reference":"Patient/`+o.patient+`"},"performer":[{"reference":"Practitioner/dr"}],"effectiveDateTime":"2026-01-02"}`, 201)
	}
	c.do(emr, "PUT", "Group/cohort", `{"resourceType":"Group","id":"cohort","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/p1"}},{"entity":{"reference":"Patient/p2"}}]}`, 201)

	// Kick-off: 202 with the status URL outside /fhir.
	resp, _ := c.send(bulk, "GET", c.base+"/Group/cohort/$export?_type=Patient,Observation", "", "Prefer: respond-async", "Accept: application/fhir+json")
	loc := resp.Header.Get("Content-Location")
	if resp.StatusCode != 202 || !strings.HasPrefix(loc, "http://"+c.addr+"/bulk/jobs/") {
		t.Fatalf("kick-off: %d, Content-Location %q", resp.StatusCode, loc)
	}
	get := func(u, tok string) (int, http.Header, []byte) {
		resp, b := c.send(tok, "GET", u, "")
		return resp.StatusCode, resp.Header, b
	}
	// Poll until the manifest.
	var m struct {
		RequiresAccessToken bool `json:"requiresAccessToken"`
		Output              []struct {
			Type, URL string
			Count     int
		} `json:"output"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, hdr, body := get(loc, bulk)
		if st == 202 {
			if hdr.Get("X-Progress") == "" {
				t.Error("202 without X-Progress")
			}
			if time.Now().After(deadline) {
				t.Fatal("the export did not finish")
			}
			continue
		}
		if st != 200 {
			t.Fatalf("status: %d %s", st, body)
		}
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		break
	}
	if !m.RequiresAccessToken {
		t.Error("requiresAccessToken false")
	}
	// Download and verify every line; the patient's token cannot.
	got := map[string][]string{}
	for _, f := range m.Output {
		st, hdr, body := get(f.URL, bulk)
		if st != 200 || hdr.Get("Content-Type") != "application/fhir+ndjson" {
			t.Fatalf("%s: %d %s", f.URL, st, hdr.Get("Content-Type"))
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		n := 0
		for sc.Scan() {
			var res struct{ ResourceType, ID string }
			if err := json.Unmarshal(sc.Bytes(), &res); err != nil || res.ResourceType != f.Type {
				t.Fatalf("%s line %q: %v", f.URL, sc.Text(), err)
			}
			got[f.Type] = append(got[f.Type], res.ID)
			n++
		}
		if n != f.Count || n > 2 {
			t.Errorf("%s: %d lines, count %d, at most 2 a file", f.URL, n, f.Count)
		}
		// A user-facing token is no backend service: 403, whichever job it names.
		if st, _, _ := get(f.URL, patient); st != 403 {
			t.Errorf("the patient's token downloaded a bulk file: %d", st)
		}
	}
	for k := range got {
		sort.Strings(got[k])
	}
	if !slices.Equal(got["Patient"], []string{"p1", "p2"}) || !slices.Equal(got["Observation"], []string{"o1", "o2", "o3", "o4"}) {
		t.Errorf("Group export: %v", got)
	}

	// The patient's own download: their compartment (the Group is in it
	// through Group.member, as in a compartment search) and the
	// Practitioner their results reference.
	e := c.do(patient, "GET", "Patient/p1/$everything", "", 200)
	ids := e.ids()
	sort.Strings(ids)
	if !slices.Equal(ids, []string{"Group/cohort", "Observation/o1", "Observation/o2", "Observation/o3", "Patient/p1", "Practitioner/dr"}) {
		t.Errorf("$everything: %v", ids)
	}
	c.do(patient, "GET", "Patient/p2/$everything", "", 404)
	c.do(patient, "GET", "$export", "", 403, "Prefer: respond-async")
}
