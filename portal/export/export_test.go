package export

// Package tests on the in-memory SQLite store and a real pipeline
// (server.New, no HTTP for the FHIR side): R4
// patient-operation-everything.html (segments, paging, care dates) and
// Bulk Data Access 2.0 export.html (kick-off, status, manifest, files,
// owner checks, file splitting), plus the benchmark of an export's memory.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/fhir/server/servertest"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// testBase and testNow are the pipeline's base URL and clock.
const testBase = servertest.Base

var testNow = servertest.T0

type fixture struct {
	srv *server.Server
	st  store.Store
	svc *Service
	reg *search.Registry
	dir string
}

// tokens maps bearer tokens to principals (the tests' Verifier).
type tokens map[string]*smart.Principal

func (v tokens) Verify(_ context.Context, bearer string) (*smart.Principal, error) {
	if p, ok := v[bearer]; ok {
		return p, nil
	}
	return nil, smart.InvalidToken("unknown token")
}

// principal is a caller of client (its Subject and ClientID) issued by
// http://test/auth.
func principal(t testing.TB, scopes, patient, fhirUser, client string) *smart.Principal {
	t.Helper()
	p := servertest.Principal(t, scopes, patient, fhirUser)
	p.Issuer, p.Subject, p.ClientID = "http://test/auth", client, client
	return p
}

func newFixture(t testing.TB, v tokens, tune func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	reg := search.Default()
	srv, st := servertest.New(t, servertest.Options{Registry: reg})
	js, err := newMemStorage()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := Config{Server: srv, Registry: reg, Storage: js, Verifier: v, BaseURL: testBase, Dir: dir,
		Now: func() time.Time { return testNow }}
	if tune != nil {
		tune(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range svc.Operations() {
		srv.RegisterOperation(op)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return &fixture{srv: srv, st: st, svc: svc, reg: reg, dir: dir}
}

func (f *fixture) do(t testing.TB, p *smart.Principal, method, path, body string, hdr ...string) *fhir.Response {
	t.Helper()
	return servertest.Do(smart.WithPrincipal(context.Background(), p), f.srv, method, path, body, hdr...)
}

// serve sends an HTTP request to the bulk endpoints with the bearer
// token tok ("": none).
func (f *fixture) serve(method, u, tok string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, u, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	f.svc.ServeHTTP(w, req)
	return w
}

func (f *fixture) put(t testing.TB, typ, id, body string) {
	t.Helper()
	body = strings.Replace(body, `{"resourceType":"`+typ+`"`, `{"resourceType":"`+typ+`","id":"`+id+`"`, 1)
	emr := principal(t, "system/*.cruds", "", "", "emr")
	if r := f.do(t, emr, "PUT", typ+"/"+id, body); r.Status != 201 && r.Status != 200 {
		t.Fatalf("PUT %s/%s: %d %s", typ, id, r.Status, r.Body)
	}
}

func obsJSON(patient, date string) string {
	return `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patient + `"},"effectiveDateTime":"` + date + `"}`
}

// Every care-date and linked parameter names a parameter of the right
// type in the registry (a typo would silently not filter).
func TestParameterTables(t *testing.T) {
	reg := search.Default()
	for typ, code := range ClinicalDate {
		if dateParam(reg, typ) != code {
			t.Errorf("ClinicalDate %s: %q is not a date parameter of the type", typ, code)
		}
		if len(reg.Compartment(typ)) == 0 && LinkedParam[typ] == "" {
			t.Errorf("ClinicalDate %s: the type is in no patient compartment $everything searches", typ)
		}
	}
	for typ, code := range LinkedParam {
		if linkedParam(reg, typ) != code || len(reg.Compartment(typ)) > 0 {
			t.Errorf("LinkedParam %s: %q", typ, code)
		}
	}
}

// patient-operation-everything.html: paging with _count gives every
// resource of the compartment once, the Patient first; a cursor that
// does not come from the server is 400.
func TestEverythingPaging(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.put(t, "Patient", "a", `{"resourceType":"Patient"}`)
	f.put(t, "Patient", "b", `{"resourceType":"Patient"}`)
	f.put(t, "Practitioner", "dr", `{"resourceType":"Practitioner"}`)
	want := []string{"Patient/a"}
	for i := range 23 {
		id := fmt.Sprintf("o%02d", i)
		f.put(t, "Observation", id, obsJSON("a", fmt.Sprintf("2026-01-%02dT10:00:00Z", i+1)))
		want = append(want, "Observation/"+id)
	}
	f.put(t, "Observation", "ob", obsJSON("b", "2026-01-01T10:00:00Z"))
	f.put(t, "Condition", "c1", `{"resourceType":"Condition","subject":{"reference":"Patient/a"},"asserter":{"reference":"Practitioner/dr"},"onsetDateTime":"2025-01-01"}`)
	want = append(want, "Condition/c1")
	pa := principal(t, "patient/*.rs", "a", "Patient/a", "portal")

	var got, inc []string
	path := "Patient/a/$everything?_count=7"
	pages := 0
	for path != "" {
		r := f.do(t, pa, "GET", path, "")
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", path, r.Status, r.Body)
		}
		pages++
		var b struct {
			Link  []struct{ Relation, URL string }
			Entry []struct {
				Resource struct{ ResourceType, ID string }
				Search   struct{ Mode string }
			}
		}
		_ = json.Unmarshal(r.Body, &b)
		n := 0
		for _, e := range b.Entry {
			k := e.Resource.ResourceType + "/" + e.Resource.ID
			if e.Search.Mode == "include" {
				inc = append(inc, k)
				continue
			}
			n++
			got = append(got, k)
		}
		if n > 7 {
			t.Errorf("page %d holds %d matches, _count=7", pages, n)
		}
		path = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				path = strings.TrimPrefix(l.URL, testBase+"/")
			}
		}
	}
	slices.Sort(want)
	if got[0] != "Patient/a" {
		t.Errorf("first entry %s, want the Patient", got[0])
	}
	slices.Sort(got)
	if !slices.Equal(got, want) || pages != 4 {
		t.Errorf("%d pages: %v\nwant %v", pages, got, want)
	}
	if !slices.Contains(inc, "Practitioner/dr") {
		t.Errorf("the asserter is not included: %v", inc)
	}
	for _, c := range []string{"9.x", "x", "1.notacursor", "-1."} {
		if r := f.do(t, pa, "GET", "Patient/a/$everything?_cursor="+url.QueryEscape(c), ""); r.Status != 400 {
			t.Errorf("_cursor=%s: %d", c, r.Status)
		}
	}
	// Care dates: end=2026-01-05 keeps o00..o04 and the Condition of 2025.
	r := f.do(t, pa, "GET", "Patient/a/$everything?end=2026-01-05&_count=100", "")
	if n := strings.Count(string(r.Body), `"resourceType":"Observation"`); n != 5 || !strings.Contains(string(r.Body), `"id":"c1"`) {
		t.Errorf("end=2026-01-05: %d Observations: %s", n, r.Body)
	}
	// A patient-facing caller on another patient: 404.
	if r := f.do(t, pa, "GET", "Patient/b/$everything", ""); r.Status != 404 {
		t.Errorf("Patient/b/$everything as a: %d", r.Status)
	}
}

// export.html: kick-off, status (202 then the manifest), files, owners.
func TestBulkJobLifecycle(t *testing.T) {
	emr := principal(t, "system/*.rs", "", "", "emr")
	other := principal(t, "system/*.rs", "", "", "other")
	v := tokens{"emr": emr, "other": other}
	f := newFixture(t, v, func(c *Config) { c.MaxLines = 3; c.PageSize = 4 })
	f.put(t, "Patient", "a", `{"resourceType":"Patient"}`)
	for i := range 10 {
		// Pretty-printed as sent: each resource is still one NDJSON line.
		f.put(t, "Observation", fmt.Sprintf("o%d", i), strings.ReplaceAll(obsJSON("a", "2026-01-01T00:00:00Z"), `,"`, ",\n  \""))
	}
	r := f.do(t, emr, "GET", "$export?_type=Observation", "")
	if r.Status != 400 {
		t.Errorf("without Prefer: %d", r.Status)
	}
	r = f.do(t, emr, "GET", "$export?_type=Observation", "", "Prefer: respond-async")
	if r.Status != 202 {
		t.Fatalf("kick-off: %d %s", r.Status, r.Body)
	}
	loc := r.Header.Get("Content-Location")
	if !strings.HasPrefix(loc, "http://test/bulk/jobs/") {
		t.Fatalf("Content-Location %q", loc)
	}
	get := f.serve
	var m manifest
	deadline := time.Now().Add(20 * time.Second)
	for {
		w := get("GET", loc, "emr")
		if w.Code == 200 {
			_ = json.Unmarshal(w.Body.Bytes(), &m)
			break
		}
		if w.Code != 202 || time.Now().After(deadline) {
			t.Fatalf("status %d %s", w.Code, w.Body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(m.Output) != 4 || m.Output[0].Count != 3 || m.Output[3].Count != 1 || !strings.HasSuffix(m.Output[3].URL, "/Observation-4.ndjson") {
		t.Fatalf("manifest output %+v, want 10 Observations in files of 3", m.Output)
	}
	if m.Request != testBase+"/$export?_type=Observation" || !m.RequiresAccessToken || m.TransactionTime != "2026-06-01T12:00:00.000Z" {
		t.Errorf("manifest %+v", m)
	}
	seen := map[string]bool{}
	for _, o := range m.Output {
		w := get("GET", o.URL, "emr")
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/fhir+ndjson" {
			t.Fatalf("file: %d %s", w.Code, w.Header())
		}
		sc := bufio.NewScanner(w.Body)
		for sc.Scan() {
			var res struct{ ResourceType, ID string }
			if err := json.Unmarshal(sc.Bytes(), &res); err != nil || res.ResourceType != "Observation" {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			seen[res.ID] = true
		}
	}
	if len(seen) != 10 {
		t.Errorf("%d distinct Observations downloaded", len(seen))
	}
	for _, c := range []struct {
		method, url, tok string
		status           int
	}{
		{"GET", loc, "", 401},
		{"GET", loc, "forged", 401},
		{"GET", loc, "other", 404},
		{"GET", m.Output[0].URL, "other", 404},
		{"GET", loc + "/files/../../x", "emr", 404},
		{"GET", loc + "/files/nope.ndjson", "emr", 404},
		{"PUT", loc, "emr", 405},
		{"DELETE", loc, "other", 404},
		{"DELETE", loc, "emr", 202},
		{"GET", loc, "emr", 404},
	} {
		if w := get(c.method, c.url, c.tok); w.Code != c.status {
			t.Errorf("%s %s as %q: %d, want %d", c.method, c.url, c.tok, w.Code, c.status)
		}
	}
	if entries, _ := os.ReadDir(f.dir); len(entries) != 0 {
		t.Errorf("files left after DELETE: %v", entries)
	}
}

// A job that fails reports it (500 OperationOutcome) without its files.
func TestBulkJobFails(t *testing.T) {
	emr := principal(t, "system/*.rs", "", "", "emr")
	f := newFixture(t, tokens{"emr": emr}, func(c *Config) {
		c.BeforePage = func(ctx context.Context, job string) error { return fhir.Invalid("", "disk full (test)") }
	})
	f.put(t, "Patient", "a", `{"resourceType":"Patient"}`)
	r := f.do(t, emr, "GET", "Patient/$export", "", "Prefer: respond-async")
	if r.Status != 202 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	loc := r.Header.Get("Content-Location")
	deadline := time.Now().Add(20 * time.Second)
	for {
		w := f.serve("GET", loc, "emr")
		if w.Code == 500 {
			if !strings.Contains(w.Body.String(), "disk full (test)") {
				t.Errorf("failure body: %s", w.Body)
			}
			break
		}
		if w.Code != 202 || time.Now().After(deadline) {
			t.Fatalf("status %d %s", w.Code, w.Body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	id := loc[strings.LastIndex(loc, "/")+1:]
	if _, err := os.Stat(filepath.Join(f.dir, id)); !os.IsNotExist(err) {
		t.Errorf("a failed job's files remain: %v", err)
	}
}

// At most MaxQueued unfinished jobs per client: the next kick-off is 429.
func TestBulkAdmission(t *testing.T) {
	emr := principal(t, "system/*.rs", "", "", "emr")
	block := make(chan struct{})
	defer close(block)
	f := newFixture(t, tokens{"emr": emr}, func(c *Config) {
		c.MaxQueued, c.MaxJobs = 2, 1
		c.BeforePage = func(ctx context.Context, job string) error {
			select {
			case <-block:
			case <-ctx.Done():
			}
			return ctx.Err()
		}
	})
	f.put(t, "Patient", "a", `{"resourceType":"Patient"}`)
	for i, want := range []int{202, 202, 429} {
		if r := f.do(t, emr, "GET", "$export?_type=Patient", "", "Prefer: respond-async"); r.Status != want {
			t.Errorf("kick-off %d: %d, want %d", i, r.Status, want)
		} else if want == 429 && r.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	// Another client is not counted against this one.
	if r := f.do(t, principal(t, "system/*.rs", "", "", "x"), "GET", "$export?_type=Patient", "", "Prefer: respond-async"); r.Status != 202 {
		t.Errorf("another client: %d", r.Status)
	}
}

// memStorage is a Storage in memory for the package tests (the real
// backends run storagetest in their packages).
type memStorage struct {
	mu   chan struct{}
	jobs map[string]Job
	seq  []string
}

func newMemStorage() (*memStorage, error) {
	m := &memStorage{mu: make(chan struct{}, 1), jobs: map[string]Job{}}
	return m, nil
}

func (m *memStorage) lock()   { m.mu <- struct{}{} }
func (m *memStorage) unlock() { <-m.mu }

func (m *memStorage) Create(_ context.Context, j Job) error {
	m.lock()
	defer m.unlock()
	if _, ok := m.jobs[j.ID]; ok {
		return fmt.Errorf("exists")
	}
	m.jobs[j.ID] = j
	m.seq = append(m.seq, j.ID)
	return nil
}

func (m *memStorage) Get(_ context.Context, id string) (Job, error) {
	m.lock()
	defer m.unlock()
	j, ok := m.jobs[id]
	if !ok {
		return Job{}, ErrNotFound
	}
	return j, nil
}

func (m *memStorage) Put(_ context.Context, j Job) error {
	m.lock()
	defer m.unlock()
	if _, ok := m.jobs[j.ID]; !ok {
		return ErrNotFound
	}
	m.jobs[j.ID] = j
	return nil
}

func (m *memStorage) Delete(_ context.Context, id string) error {
	m.lock()
	defer m.unlock()
	delete(m.jobs, id)
	return nil
}

func (m *memStorage) List(context.Context) ([]Job, error) {
	m.lock()
	defer m.unlock()
	var out []Job
	for _, id := range m.seq {
		if j, ok := m.jobs[id]; ok {
			out = append(out, j)
		}
	}
	return out, nil
}

func (m *memStorage) Close() error { return nil }

// BenchmarkExport exports 5,000 and 20,000 Observations (about 3 and 14
// MB of NDJSON) and reports the live heap (after a GC) at every page: an
// export holds one page, not the export, so the peak does not grow with
// the export's size.
func BenchmarkExport(b *testing.B) {
	for _, n := range []int{5_000, 20_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) { benchExport(b, n) })
	}
}

func benchExport(b *testing.B, n int) {
	emr := principal(b, "system/*.rs", "", "", "emr")
	var peak atomic.Uint64
	f := newFixture(b, tokens{"emr": emr}, func(c *Config) {
		c.BeforePage = func(ctx context.Context, job string) error {
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			for {
				p := peak.Load()
				if ms.HeapAlloc <= p || peak.CompareAndSwap(p, ms.HeapAlloc) {
					break
				}
			}
			return ctx.Err()
		}
	})
	ctx := context.Background()
	var recs []store.Record
	var bytesOut int64
	for i := range n {
		id := fmt.Sprintf("o%05d", i)
		raw := []byte(`{"resourceType":"Observation","id":"` + id + `","meta":{"versionId":"1","lastUpdated":"2026-06-01T11:00:00.000Z"},"status":"final",` +
			`"code":{"coding":[{"system":"http://loinc.org","code":"2160-0","display":"Creatinine [Mass/volume] in Serum or Plasma"}]},` +
			`"subject":{"reference":"Patient/p` + fmt.Sprint(i%500) + `"},"effectiveDateTime":"2026-01-02T10:00:00Z","issued":"2026-01-02T12:00:00Z",` +
			`"valueQuantity":{"value":1.5,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"},"note":[{"text":"` + strings.Repeat("x", 200) + `"}]}`)
		bytesOut += int64(len(raw)) + 1
		tree, err := fhir.Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		rec, err := f.srv.Indexed("Observation", id, 1, testNow.Add(-time.Hour), raw, tree)
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, rec)
		if len(recs) == 1000 {
			if err := f.st.Append(ctx, recs); err != nil {
				b.Fatal(err)
			}
			recs = nil
		}
	}
	recs = nil
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	b.ResetTimer()
	for range b.N {
		peak.Store(0)
		r := f.do(b, emr, "GET", "$export?_type=Observation", "", "Prefer: respond-async")
		if r.Status != 202 {
			b.Fatalf("%d %s", r.Status, r.Body)
		}
		loc := r.Header.Get("Content-Location")
		for {
			w := f.serve("GET", loc, "emr")
			if w.Code == 200 {
				var m manifest
				_ = json.Unmarshal(w.Body.Bytes(), &m)
				var total int64
				for _, o := range m.Output {
					total += o.Count
				}
				if total != int64(n) {
					b.Fatalf("exported %d", total)
				}
				break
			}
			if w.Code != 202 {
				b.Fatalf("status %d %s", w.Code, w.Body)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(bytesOut)/1e6, "ndjson-MB")
	b.ReportMetric(float64(base.HeapAlloc)/1e6, "live-before-MB")
	b.ReportMetric(float64(peak.Load())/1e6, "peak-live-MB")
}
