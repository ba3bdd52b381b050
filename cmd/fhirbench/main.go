// Command fhirbench is the load run of `make bench`: it starts the real
// fhirgate binary on an embedded FerretDB and measures, side by side in the
// same run, fhirgate's requests/s against the same store operations issued
// directly with the Mongo driver (the ratio is fhirgate's overhead), the
// cost of authorization, Bundle ingest, search latency, and release rules.
//
// Each fhirgate runs on its own embedded store (FerretDB in-process, as
// `make run` does) listening on FHIRGATE_EMBEDDED_ADDR, so the direct driver
// calls reach the very same store.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fhirgate/fhirgate/fhir/gen"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

var (
	bin          = flag.String("bin", "bin/fhirgate", "fhirgate binary")
	dur          = flag.Duration("d", 3*time.Second, "duration of each throughput phase")
	conc         = flag.Int("c", 4, "concurrent clients")
	phases       = flag.String("phases", "crud,auth,ingest,search,policy", "phases to run")
	searchNs     = flag.String("search-obs", "10000,100000", "Observations per search-phase data set (comma separated): generated patients with labs, vitals, documents, appointments, messages, referrals until the count is reached")
	samples      = flag.Int("samples", 7, "requests per search latency measurement")
	rounds       = flag.Int("rounds", 5, "interleaved rounds of each CRUD measurement; the medians are reported")
	verbose      = flag.Bool("v", false, "print every round's rates")
	ingestStores = flag.String("ingest-stores", "sqlite,ferretdb", "embedded stores the ingest phase runs on, one after the other (sqlite: the default; ferretdb: the previous default)")
	searchStores = flag.String("search-stores", "sqlite,ferretdb", "embedded stores the search phase runs on, side by side (sqlite: the default; ferretdb: the previous default)")
	clientKind   = flag.String("client", "lean", "HTTP client of the CRUD phase: lean (httpc.go, kept-alive HTTP/1.1 written and parsed by hand) or nethttp (Go's net/http client)")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *clientKind != "lean" && *clientKind != "nethttp" {
		log.Fatalf("-client: %q is neither lean nor nethttp", *clientKind)
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "fhirbench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	want := map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		want[strings.TrimSpace(p)] = true
	}
	fmt.Printf("fhirbench: %d concurrent clients, %s per phase, GOMAXPROCS machine: %d cores\n", *conc, *dur, numCPU())
	if want["crud"] {
		crud(ctx, dir)
	}
	if want["crud-sqlite"] {
		crudSQLite(ctx, dir)
	}
	if want["auth"] {
		auth(ctx, dir)
	}
	if want["ingest"] {
		for _, st := range strings.Split(*ingestStores, ",") {
			if st = strings.TrimSpace(st); st != "" {
				ingest(ctx, dir, st)
			}
		}
	}
	if want["search"] {
		searchPhase(ctx, dir)
	}
	if want["policy"] {
		policyPhase(ctx, dir)
	}
}

// instance is one running fhirgate process.
type instance struct {
	cmd      *exec.Cmd
	base     string
	token    string
	db       string
	data     string
	storeURI string
	lean     *leanClient // the CRUD phase's client (httpc.go)
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs fhirgate on its embedded store (data dir named after db);
// auth false sets FHIRGATE_AUTH_DISABLED.
func start(dir, db string, auth bool, extraEnv ...string) *instance {
	addr := freePort()
	storeAddr := freePort()
	base := "http://" + addr + "/fhir"
	data := filepath.Join(dir, "data-"+db)
	env := append(os.Environ(), "FHIRGATE_ADDR="+addr, "FHIRGATE_BASE_URL="+base, "FHIRGATE_EMBEDDED_ADDR="+storeAddr,
		"FHIRGATE_DATABASE=fhirgate", "FHIRGATE_DATA_DIR="+data, "FHIRGATE_LOG_LEVEL=warn",
		fmt.Sprintf("FHIRGATE_AUTH_DISABLED=%v", !auth))
	// The direct driver runs beside fhirgate on its FerretDB (the default
	// embedded store is SQLite), unless a MongoDB URI is given.
	env = append(env, "FHIRGATE_STORE=ferretdb")
	for _, e := range extraEnv {
		if strings.HasPrefix(e, "FHIRGATE_MONGODB_URI=") {
			env = append(env, "FHIRGATE_STORE=")
		}
	}
	env = append(env, extraEnv...)
	cmd := exec.Command(*bin, "serve")
	cmd.Env = env
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	in := &instance{cmd: cmd, base: base, db: db, data: data, storeURI: "mongodb://" + storeAddr + "/", lean: newLeanClient(addr)}
	for i := 0; i < 200; i++ {
		if r, err := http.Get("http://" + addr + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if auth {
		out, err := exec.Command(*bin, "token", "--scope", "system/*.cruds", "--data-dir", data, "--base-url", base).Output()
		if err != nil {
			log.Fatalf("token: %v", err)
		}
		in.token = strings.TrimSpace(string(out))
	}
	return in
}

func (in *instance) stop() {
	in.lean.close()
	_ = in.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = in.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = in.cmd.Process.Kill()
	}
}

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}

func (in *instance) do(method, path string, body []byte, token string) (int, []byte) {
	st, _, b := in.doHeader(method, path, body, token)
	return st, b
}

// doHeader is do also returning the response headers.
func (in *instance) doHeader(method, path string, body []byte, token string) (int, http.Header, []byte) {
	req, _ := http.NewRequest(method, in.base+"/"+path, bytes.NewReader(body))
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// crudDo is do through the CRUD phase's client (-client; path relative
// to the FHIR base).
func (in *instance) crudDo(method, path string, body []byte) leanResponse {
	if *clientKind == "nethttp" {
		st, h, b := in.doHeader(method, path, body, in.token)
		return leanResponse{Status: st, Location: h.Get("Location"), Body: b}
	}
	r, err := in.lean.Do(method, "/fhir/"+path, body, in.token)
	if err != nil {
		return leanResponse{}
	}
	return r
}

// rate runs fn from conc goroutines for d and returns operations/s and errors.
func rate(d time.Duration, conc int, fn func(worker, i int) bool) (float64, int64) {
	r, errs, _ := rateCPU(d, conc, fn)
	return r, errs
}

// rateCPU is rate also returning the CPU time this process (the load
// generator) spent per operation, in µs.
func rateCPU(d time.Duration, conc int, fn func(worker, i int) bool) (float64, int64, float64) {
	cpu0 := processCPU()
	var n, errs atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				if fn(w, i) {
					n.Add(1)
				} else {
					errs.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	cpu := processCPU() - cpu0
	return float64(n.Load()) / el.Seconds(), errs.Load(), float64(cpu.Microseconds()) / float64(max(1, n.Load()+errs.Load()))
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const obsTemplate = `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2160-0","display":"Creatinine"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2025-03-01T10:00:00Z","issued":"2025-03-01T12:00:00Z","valueQuantity":{"value":1.02,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"}}`

// auth compares read and search with and without authorization.
func auth(ctx context.Context, dir string) {
	off := start(dir, "bench_auth_off", false)
	on := start(dir, "bench_auth_on", true)
	defer off.stop()
	defer on.stop()
	var ids []string
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("obs-%d", i)
		body := []byte(strings.Replace(obsTemplate, `{"resourceType":"Observation"`, `{"resourceType":"Observation","id":"`+id+`"`, 1))
		st1, _ := off.do("PUT", "Observation/"+id, body, "")
		st2, _ := on.do("PUT", "Observation/"+id, body, on.token)
		if st1 == 201 && st2 == 201 {
			ids = append(ids, id)
		}
	}
	fmt.Printf("\n== Authorization overhead (two fhirgate instances, same data; token: system/*.cruds JWT, RS256)\n")
	// Alternate short rounds so machine noise hits both sides alike.
	var offN, onN float64
	rounds := 4
	for r := 0; r < rounds; r++ {
		a, _ := rate(*dur/time.Duration(rounds), *conc, func(w, i int) bool {
			st, _ := off.do("GET", "Observation/"+ids[(w*31+i)%len(ids)], nil, "")
			return st == 200
		})
		b, _ := rate(*dur/time.Duration(rounds), *conc, func(w, i int) bool {
			st, _ := on.do("GET", "Observation/"+ids[(w*31+i)%len(ids)], nil, on.token)
			return st == 200
		})
		offN += a / float64(rounds)
		onN += b / float64(rounds)
	}
	fmt.Printf("  read:   %6.0f req/s without auth, %6.0f req/s with a token (ratio %.2f)\n", offN, onN, onN/offN)
	q := "Observation?code=2160-0&_count=10"
	a50, _, _ := latency(off, q, "", *samples)
	b50, _, _ := latency(on, q, on.token, *samples)
	fmt.Printf("  search: p50 %s without auth, %s with a token (ratio %.2f)   %s\n", a50.Round(time.Millisecond), b50.Round(time.Millisecond), float64(b50)/float64(a50), q)
}

// ingest posts transaction and batch Bundles of ~100 generated resources
// to fhirgate on the embedded store st (sqlite or ferretdb).
func ingest(ctx context.Context, dir, st string) {
	if st != "sqlite" && st != "ferretdb" {
		log.Fatalf("unknown store %q in -ingest-stores", st)
	}
	in := start(dir, "bench_ingest_"+st, false, "FHIRGATE_STORE="+st)
	defer in.stop()
	fmt.Printf("\n== Ingest on the embedded %s store: Bundles of 100 generated resources (400 patients with labs, vitals, documents, appointments, messages, referrals per run)\n", st)
	// Each run loads a data set of its own (another seed: other ids), so
	// every run creates; the last one re-sends the previous batch run's
	// Bundles, as an EMR does after a timeout: every entry an update.
	type run struct {
		kind   string
		c      int
		seed   int64
		resend bool
	}
	var prev [][]byte
	var prevN []int
	for _, r := range []run{{"transaction", 1, 42, false}, {"transaction", 4, 43, false}, {"batch", 1, 44, false}, {"batch", 4, 45, false}, {"batch", 4, 45, true}} {
		bodies, sizes := prev, prevN
		if !r.resend {
			groups := gen.Chunks(gen.Generate(r.seed, 400, gen.Options{IDPrefix: fmt.Sprintf("s%d-", r.seed)}), 100)
			bodies, sizes = make([][]byte, len(groups)), make([]int, len(groups))
			for i, g := range groups {
				sizes[i] = len(g)
				if r.kind == "batch" {
					// A batch cannot resolve urn:uuid references between its
					// entries (http.html#brules): upsert with client ids instead.
					bodies[i] = gen.Upsert(g, "batch")
				} else {
					bodies[i] = gen.Transaction(g)
				}
			}
			prev, prevN = bodies, sizes
		}
		var next atomic.Int64
		var resources, failed atomic.Int64
		startT := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < r.c; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(bodies) {
						return
					}
					st, b := in.do("POST", "", bodies[i], "")
					if st != 200 {
						failed.Add(1)
						if failed.Load() == 1 {
							fmt.Printf("   first failure: %d %s\n", st, truncate(b))
						}
						continue
					}
					resources.Add(int64(sizes[i]))
				}
			}()
		}
		wg.Wait()
		el := time.Since(startT)
		label := r.kind
		if r.resend {
			label = "batch re-sent (updates)"
		}
		fmt.Printf("%-24s %d client(s): %6.0f resources/s  (%d resources in %s, %d failed Bundles)\n",
			label, r.c, float64(resources.Load())/el.Seconds(), resources.Load(), el.Round(time.Millisecond), failed.Load())
	}
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300])
	}
	return string(b)
}

// latency measures p50/p95 of n sequential GETs.
func latency(in *instance, path, token string, n int) (time.Duration, time.Duration, int) {
	var ds []time.Duration
	st := 0
	for i := 0; i < n; i++ {
		t := time.Now()
		st, _ = in.do("GET", path, nil, token)
		ds = append(ds, time.Since(t))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], ds[len(ds)*95/100], st
}

// searchPhase loads generated data sets (transaction Bundles, as an EMR
// would, 4 at a time) and measures the queries at each size:
// p50/p95 of each query, of a page walk with _include (every page of a
// patient's Observations, 10 per page, with their Patient), and how each
// grows from one size to the next.
func searchPhase(ctx context.Context, dir string) {
	for _, st := range strings.Split(*searchStores, ",") {
		switch st = strings.TrimSpace(st); st {
		case "sqlite":
			searchOn(ctx, dir, "embedded SQLite (the default)", "", "FHIRGATE_STORE=sqlite")
		case "ferretdb":
			searchOn(ctx, dir, "embedded FerretDB", "", "FHIRGATE_STORE=ferretdb")
		case "":
		default:
			log.Fatalf("unknown store %q in -search-stores", st)
		}
	}
	// The same on MongoDB when one is given (FHIRGATE_TEST_MONGO_URI, as
	// for the store's tests): a fresh database per size, dropped after.
	if uri := os.Getenv("FHIRGATE_TEST_MONGO_URI"); uri != "" {
		searchOn(ctx, dir, "the FHIRGATE_TEST_MONGO_URI server", uri, "")
	}
}

func searchOn(ctx context.Context, dir, backend, mongoURI, storeEnv string) {
	type result struct{ p50, p95 time.Duration }
	var sizes []int
	results := map[string][]result{}
	var order []string
	for _, ns := range strings.Split(*searchNs, ",") {
		var want int
		fmt.Sscan(ns, &want)
		// Observations per generated patient, from a sample.
		perPatient := 0
		for _, r := range gen.Generate(7, 50, gen.Options{}) {
			if r.Type == "Observation" {
				perPatient++
			}
		}
		patients := max(1, (want*50+perPatient-1)/perPatient)
		var extra []string
		dbName := fmt.Sprintf("fhirbench_%d_%d", time.Now().Unix(), want)
		if mongoURI != "" {
			extra = []string{"FHIRGATE_MONGODB_URI=" + mongoURI, "FHIRGATE_DATABASE=" + dbName}
		}
		if storeEnv != "" {
			extra = append(extra, storeEnv) // the last value of a key wins (os/exec)
		}
		in := start(dir, fmt.Sprintf("bench_search_%t_%s_%d", mongoURI != "", strings.TrimPrefix(storeEnv, "FHIRGATE_STORE="), want), false, extra...)
		rs := gen.Generate(7, patients, gen.Options{})
		chunks := gen.Chunks(rs, 100)
		t0 := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(chunks) {
						return
					}
					if st, b := in.do("POST", "", gen.Transaction(chunks[i]), ""); st != 200 {
						log.Fatalf("load: %d %s", st, truncate(b))
					}
				}
			}()
		}
		wg.Wait()
		load := time.Since(t0)
		count := func(q string) int {
			_, b := in.do("GET", q, nil, "")
			var m struct{ Total int }
			_ = json.Unmarshal(b, &m)
			return m.Total
		}
		_, b := in.do("GET", "Observation?category=laboratory&_count=1&_elements=subject", nil, "")
		var bm struct {
			Entry []struct {
				Resource struct {
					Subject struct{ Reference string }
				}
			}
		}
		_ = json.Unmarshal(b, &bm)
		pref := "Patient/unknown"
		if len(bm.Entry) > 0 {
			pref = bm.Entry[0].Resource.Subject.Reference
		}
		// Let the audit writer store the load's AuditEvents first: the
		// queries measure searches, not searches beside a write backlog.
		for prev, i := -1, 0; i < 600; i++ {
			n := count("AuditEvent?_summary=count")
			if prev >= 0 && n-prev <= 1 { // this count's own AuditEvent
				break
			}
			prev = n
			time.Sleep(time.Second)
		}
		nObs := count("Observation?_summary=count")
		sizes = append(sizes, nObs)
		fmt.Printf("\n== Search latency: %d Observations (%d resources, %d patients; %d AuditEvents) loaded in %s (%.0f resources/s), %s\n",
			nObs, len(rs), patients, count("AuditEvent?_summary=count"), load.Round(time.Second), float64(len(rs))/load.Seconds(), backend)
		queries := []string{
			"Observation?patient=" + pref + "&category=laboratory&_sort=-date",
			"Observation?code=http://loinc.org|2160-0&date=ge2024",
			"Patient?name=smi",
			"Observation?patient=" + strings.TrimPrefix(pref, "Patient/") + "&_count=20",
			"Observation?subject=" + pref + "&_count=20",
			"Observation?_security=http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV&_count=20",
			"ServiceRequest?requester=Practitioner/prac-1&status=completed&_sort=-authored&_count=20",
		}
		for qi, q := range queries {
			p50, p95, st := latency(in, q, "", *samples)
			fmt.Printf("  p50 %8s  p95 %8s  [%d]  %s\n", p50.Round(time.Millisecond), p95.Round(time.Millisecond), st, q)
			key := []string{"patient+category+sort", "code+date", "name", "patient=id", "subject=Patient/id", "security", "worklist"}[qi]
			if len(sizes) == 1 {
				order = append(order, key)
			}
			results[key] = append(results[key], result{p50, p95})
		}
		walk := "Observation?patient=" + pref + "&_include=Observation:patient&_count=10"
		p50, p95, pages := pageWalk(in, walk, *samples)
		fmt.Printf("  p50 %8s  p95 %8s  [%d pages]  page walk: %s\n", p50.Round(time.Millisecond), p95.Round(time.Millisecond), pages, walk)
		if len(sizes) == 1 {
			order = append(order, "walk")
		}
		results["walk"] = append(results["walk"], result{p50, p95})
		in.stop()
		if mongoURI != "" {
			if c, err := mongo.Connect(options.Client().ApplyURI(mongoURI)); err == nil {
				_ = c.Database(dbName).Drop(ctx)
				_ = c.Disconnect(ctx)
			}
		}
	}
	if len(sizes) > 1 {
		fmt.Printf("\n  %s: growth of p50 from %d to %d Observations (x%.1f data):", backend, sizes[0], sizes[len(sizes)-1], float64(sizes[len(sizes)-1])/float64(sizes[0]))
		for _, k := range order {
			r := results[k]
			fmt.Printf("  %s x%.1f", k, float64(r[len(r)-1].p50)/float64(r[0].p50))
		}
		fmt.Println()
	}
}

// pageWalk follows the next links of path to the end, n times; it returns
// the p50 and p95 of the whole walk and the number of pages.
func pageWalk(in *instance, path string, n int) (time.Duration, time.Duration, int) {
	var ds []time.Duration
	pages := 0
	for i := 0; i < n; i++ {
		t := time.Now()
		next := in.base + "/" + path
		pages = 0
		for next != "" && pages < 1000 {
			st, b := in.do("GET", strings.TrimPrefix(next, in.base+"/"), nil, "")
			if st != 200 {
				log.Fatalf("page walk: %d %s", st, truncate(b))
			}
			pages++
			var bundle struct {
				Link []struct{ Relation, URL string }
			}
			_ = json.Unmarshal(b, &bundle)
			next = ""
			for _, l := range bundle.Link {
				if l.Relation == "next" {
					next = l.URL
				}
			}
		}
		ds = append(ds, time.Since(t))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], ds[len(ds)*95/100], pages
}

// policyPhase compares a patient's search latency with 20 rules vs none.
func policyPhase(ctx context.Context, dir string) {
	polFile := filepath.Join(dir, "policy20.yaml")
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	for i := 0; i < 19; i++ {
		fmt.Fprintf(&b, "  - name: rule-%d\n    match:\n      code: [\"http://loinc.org|9999-%d\"]\n    action: delay\n    delay: 72h\n    from: issued\n", i, i)
	}
	b.WriteString("  - name: pathology\n    match:\n      category: [\"http://terminology.hl7.org/CodeSystem/v2-0074|SP\"]\n    action: delay\n    delay: 168h\n    from: issued\n")
	_ = os.WriteFile(polFile, []byte(b.String()), 0o600)
	none := start(dir, "bench_policy_none", true)
	with := start(dir, "bench_policy_20", true, "FHIRGATE_POLICY_FILE="+polFile)
	defer none.stop()
	defer with.stop()
	rs := gen.Generate(11, 40, gen.Options{})
	pid := ""
	for _, r := range rs {
		if r.Type == "Patient" && pid == "" {
			pid = r.ID
		}
	}
	for _, in := range []*instance{none, with} {
		for _, g := range gen.Chunks(rs, 500) {
			in.do("POST", "", gen.Upsert(g, "batch"), in.token)
		}
	}
	tok := func(in *instance) string {
		out, err := exec.Command(*bin, "token", "--scope", "patient/*.rs", "--patient", pid, "--fhir-user", "Patient/"+pid,
			"--data-dir", in.data, "--base-url", in.base).Output()
		if err != nil {
			log.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	q := "Observation?patient=Patient/" + pid + "&_sort=-date"
	a50, a95, _ := latency(none, q, tok(none), max(*samples, 41))
	b50, b95, _ := latency(with, q, tok(with), max(*samples, 41))
	fmt.Printf("\n== Release rules: patient-token search %s (%d resources)\n", q, len(rs))
	fmt.Printf("  no policy:  p50 %s p95 %s\n  20 rules:   p50 %s p95 %s   (p50 ratio %.2f)\n",
		a50.Round(time.Microsecond), a95.Round(time.Microsecond), b50.Round(time.Microsecond), b95.Round(time.Microsecond), float64(b50)/float64(a50))
}

func numCPU() int { return runtime.NumCPU() }
