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
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/fhirgate/fhirgate/fhir/gen"
	"github.com/fhirgate/fhirgate/store/embedded"
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
		ingest(ctx, dir)
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

// crud compares create/read/update through fhirgate with the same store
// work issued directly with the driver, in two forms:
//
//   - "same": the commands and documents fhirgate's store issues for the
//     interaction (on FerretDB): create = InsertOne of the document as
//     fhirgate stores it (raw JSON, search values, release state, copied
//     from one fhirgate wrote); read = FindOne by _id; update = FindOne,
//     the history copy (ReplaceOne upsert) and ReplaceOne, plus the
//     pipeline's own FindOne before them. Without the
//     AuditEvent fhirgate also writes for every request (batched);
//   - "same+audit": "same" plus that AuditEvent: one copy of an AuditEvent
//     document as fhirgate stored it per operation, inserted 100 at a time
//     (fhirgate's audit writer batches up to 100 events per InsertMany);
//   - "min": one command on a minimal document (raw JSON only): what a
//     store without versions, history, search values or audit would do.
func crud(ctx context.Context, dir string) {
	in := start(dir, "bench_crud", false)
	defer in.stop()
	client, err := mongo.Connect(options.Client().ApplyURI(in.storeURI))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Disconnect(ctx)
	// The raw collections get what fhirgate's collections get on the
	// embedded store: the _id expression index FerretDB lacks.
	rawDB := client.Database("bench_raw")
	for _, c := range []string{"resources", "res_Observation", "hist_Observation", "res_AuditEvent"} {
		_ = rawDB.CreateCollection(ctx, c)
	}
	if err := embedded.IndexIDsAt(ctx, filepath.Join(in.data, "ferretdb"), "bench_raw"); err != nil {
		log.Fatal(err)
	}
	minColl, sameColl, sameHist := rawDB.Collection("resources"), rawDB.Collection("res_Observation"), rawDB.Collection("hist_Observation")
	var ids []string
	var mu sync.Mutex
	// Every baseline document is encoded as fhirgate's store encodes its
	// own (bsoncore, no reflection), so the baselines' client costs no more
	// CPU than it must.
	minDoc := func(id string, v int) bson.Raw {
		i, d := bsoncore.AppendDocumentStart(nil)
		d = bsoncore.AppendStringElement(d, "_id", "Observation/"+id)
		d = bsoncore.AppendStringElement(d, "t", "Observation")
		d = bsoncore.AppendStringElement(d, "i", id)
		d = bsoncore.AppendInt64Element(d, "v", int64(v))
		d = bsoncore.AppendDateTimeElement(d, "lu", time.Now().UnixMilli())
		d = bsoncore.AppendStringElement(d, "raw", obsTemplate)
		d, _ = bsoncore.AppendDocumentEnd(d, i)
		return d
	}
	type row struct {
		op    string
		rates []float64 // fhirgate, same+audit, same, min: medians
		ratio []float64 // fhirgate / each baseline: median of the rounds' ratios
		errs  []int64
		cpu   []float64 // the load generator's CPU µs per operation of each side
	}
	var rows []row
	measured := func(op string, fns ...func(w, i int) bool) {
		rates, ratio, errs, cpu := interleave(fns...)
		rows = append(rows, row{op, rates, ratio, errs, cpu})
	}
	// A first run of fhirgate's creates gives the ids read and updated,
	// and the documents the baselines copy.
	fgCreateOp := createOp(in, &mu, &ids)
	rate(time.Second, *conc, fgCreateOp)
	// The document exactly as fhirgate stored it.
	var stored bson.Raw
	if err := client.Database("fhirgate").Collection("res_Observation").FindOne(ctx, bson.D{{Key: "_id", Value: "Observation/" + ids[0]}}).Decode(&stored); err != nil {
		log.Fatalf("read a stored document: %v", err)
	}
	storedElems, err := bsoncore.Document(stored).Elements()
	if err != nil {
		log.Fatal(err)
	}
	// sameDoc is stored with the _id key, the id and version v.
	sameDoc := func(key, id string, v int) bson.Raw {
		return rewrite(storedElems, len(stored), func(d []byte, k string) ([]byte, bool) {
			switch k {
			case "_id":
				return bsoncore.AppendStringElement(d, "_id", key), true
			case "i":
				return bsoncore.AppendStringElement(d, "i", id), true
			case "v":
				return bsoncore.AppendInt64Element(d, "v", int64(v)), true
			case "lu":
				return bsoncore.AppendDateTimeElement(d, "lu", time.Now().UnixMilli()), true
			}
			return d, false
		})
	}
	// An AuditEvent as fhirgate stored it (its writer flushes within 100 ms).
	time.Sleep(300 * time.Millisecond)
	var auditDoc bson.Raw
	if err := client.Database("fhirgate").Collection("res_AuditEvent").FindOne(ctx, bson.D{}).Decode(&auditDoc); err != nil {
		log.Fatalf("read a stored AuditEvent: %v", err)
	}
	auditElems, err := bsoncore.Document(auditDoc).Elements()
	if err != nil {
		log.Fatal(err)
	}
	auditColl := rawDB.Collection("res_AuditEvent")
	var auditBatch []any
	var auditN atomic.Int64
	audit := func() bool {
		id := fmt.Sprintf("AuditEvent/a%d", auditN.Add(1))
		d := rewrite(auditElems, len(auditDoc), func(d []byte, k string) ([]byte, bool) {
			if k == "_id" {
				return bsoncore.AppendStringElement(d, "_id", id), true
			}
			return d, false
		})
		mu.Lock()
		auditBatch = append(auditBatch, d)
		var full []any
		if len(auditBatch) >= 100 {
			full, auditBatch = auditBatch, nil
		}
		mu.Unlock()
		if full != nil {
			_, err := auditColl.InsertMany(ctx, full)
			return err == nil
		}
		return true
	}
	var sameIDs, minIDs []string
	sameCreateOp := func(w, i int) bool {
		id := fmt.Sprintf("s%d-%d", w, i)
		_, err := sameColl.InsertOne(ctx, sameDoc("Observation/"+id, id, 1))
		mu.Lock()
		sameIDs = append(sameIDs, id)
		mu.Unlock()
		return err == nil
	}
	var round atomic.Int64 // distinct ids in every round
	measured("create", fgCreateOp,
		func(w, i int) bool { return sameCreateOp(w, i+int(round.Add(1))<<20) && audit() },
		func(w, i int) bool { return sameCreateOp(w, i+int(round.Add(1))<<20) },
		func(w, i int) bool {
			id := fmt.Sprintf("r%d-%d-%d", w, i, round.Add(1))
			_, err := minColl.InsertOne(ctx, minDoc(id, 1))
			mu.Lock()
			minIDs = append(minIDs, id)
			mu.Unlock()
			return err == nil
		})
	pick := func(xs []string, w, i, p int) string { return xs[(w*p+i)%len(xs)] }
	fgRead := func(w, i int) bool {
		return in.crudDo("GET", "Observation/"+pick(ids, w, i, 7919), nil).Status == 200
	}
	sameReadOp := func(w, i int) bool {
		var out bson.Raw
		return sameColl.FindOne(ctx, bson.D{{Key: "_id", Value: "Observation/" + pick(sameIDs, w, i, 7919)}}).Decode(&out) == nil
	}
	measured("read", fgRead, func(w, i int) bool { return sameReadOp(w, i) && audit() }, sameReadOp,
		func(w, i int) bool {
			var out bson.Raw
			return minColl.FindOne(ctx, bson.D{{Key: "_id", Value: "Observation/" + pick(minIDs, w, i, 7919)}}).Decode(&out) == nil
		})
	fgUpd := func(w, i int) bool {
		id := pick(ids, w, i, 104729)
		body := strings.Replace(obsTemplate, `{"resourceType":"Observation"`, `{"resourceType":"Observation","id":"`+id+`"`, 1)
		return in.crudDo("PUT", "Observation/"+id, []byte(body)).Status == 200
	}
	sameUpdOp := func(w, i int) bool {
		id := pick(sameIDs, w, i, 104729)
		var cur bson.Raw
		// fhirgate reads the current version twice: the request pipeline
		// (access, If-Match, release state), then the store's conditional
		// write (under FerretDB's per-process write mutex).
		for range 2 {
			if err := sameColl.FindOne(ctx, bson.D{{Key: "_id", Value: "Observation/" + id}}).Decode(&cur); err != nil {
				return false
			}
		}
		v, ok := cur.Lookup("v").Int64OK()
		if !ok {
			return false
		}
		hkey := fmt.Sprintf("Observation/%s/%d", id, v)
		if _, err := sameHist.ReplaceOne(ctx, bson.D{{Key: "_id", Value: hkey}}, sameDoc(hkey, id, int(v)), options.Replace().SetUpsert(true)); err != nil {
			return false
		}
		_, err := sameColl.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "Observation/" + id}}, sameDoc("Observation/"+id, id, int(v)+1))
		return err == nil
	}
	measured("update", fgUpd, func(w, i int) bool { return sameUpdOp(w, i) && audit() }, sameUpdOp,
		func(w, i int) bool {
			id := pick(minIDs, w, i, 104729)
			_, err := minColl.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "Observation/" + id}}, minDoc(id, i))
			return err == nil
		})
	fmt.Printf("\n== CRUD: fhirgate vs the direct Mongo driver on the same embedded FerretDB (%d clients; %d interleaved rounds of %s per side, medians)\n", *conc, *rounds, *dur)
	fmt.Printf("same+audit = the store's own commands and documents plus the AuditEvent insert (batched by 100)\n")
	fmt.Printf("same = the same without the AuditEvent; min = one command on a minimal document\n")
	fmt.Printf("%-8s %10s %11s %10s %10s %11s %8s %8s\n", "op", "fhirgate/s", "same+aud/s", "same/s", "min/s", "vs s+audit", "vs same", "vs min")
	for _, r := range rows {
		fmt.Printf("%-8s %10.0f %11.0f %10.0f %10.0f %11.2f %8.2f %8.2f   (errors %d/%d/%d/%d)\n", r.op, r.rates[0], r.rates[1], r.rates[2], r.rates[3],
			r.ratio[0], r.ratio[1], r.ratio[2], r.errs[0], r.errs[1], r.errs[2], r.errs[3])
	}
	fmt.Printf("load generator CPU per operation (µs; the %s HTTP client for fhirgate, the driver for the baselines; same cores as the server):\n", *clientKind)
	for _, r := range rows {
		fmt.Printf("%-8s %10.0f %11.0f %10.0f %10.0f\n", r.op, r.cpu[0], r.cpu[1], r.cpu[2], r.cpu[3])
	}
}

// createOp is fhirgate's create of the CRUD phases: it records each new
// id, read as a client reads it, from Location (http.html#create).
func createOp(in *instance, mu *sync.Mutex, ids *[]string) func(w, i int) bool {
	return func(w, i int) bool {
		r := in.crudDo("POST", "Observation", []byte(obsTemplate))
		_, rest, ok := strings.Cut(r.Location, "/Observation/")
		id, _, _ := strings.Cut(rest, "/")
		if r.Status != 201 || !ok || id == "" {
			return false
		}
		mu.Lock()
		*ids = append(*ids, id)
		mu.Unlock()
		return true
	}
}

// rewrite encodes the document of elems (size bytes as stored), each
// element passed to set first: set appends a replacement and returns true,
// or returns false to keep the element as it is.
func rewrite(elems []bsoncore.Element, size int, set func(d []byte, key string) ([]byte, bool)) bson.Raw {
	i, d := bsoncore.AppendDocumentStart(make([]byte, 0, size+64))
	for _, e := range elems {
		var ok bool
		if d, ok = set(d, e.Key()); !ok {
			d = append(d, e...)
		}
	}
	d, _ = bsoncore.AppendDocumentEnd(d, i)
	return d
}

// interleave measures each of fns (fhirgate first, then its baselines)
// for *dur, *rounds times in turn (in rotating order), so the machine's
// noise falls on all of them alike. It returns each one's median rate, the median over the
// rounds of fhirgate's rate divided by each baseline's, the errors, and
// each one's median CPU per operation of this process (the clients).
func interleave(fns ...func(w, i int) bool) (rates, ratios []float64, errs []int64, cpu []float64) {
	per := make([][]float64, len(fns))
	perCPU := make([][]float64, len(fns))
	ratioRounds := make([][]float64, len(fns)-1)
	errs = make([]int64, len(fns))
	for round := range max(1, *rounds) {
		got := make([]float64, len(fns))
		// Each round starts with another side, so what one side leaves
		// behind (the audit writer's last batch, a WAL to checkpoint) falls
		// on each of the others in turn.
		for j := range fns {
			k := (j + round) % len(fns)
			r, e, c := rateCPU(*dur, *conc, fns[k])
			got[k] = r
			per[k] = append(per[k], r)
			perCPU[k] = append(perCPU[k], c)
			errs[k] += e
		}
		for k := 1; k < len(fns); k++ {
			ratioRounds[k-1] = append(ratioRounds[k-1], got[0]/got[k])
		}
		if *verbose {
			fmt.Printf("  round: %.0f\n", got)
		}
	}
	for k, xs := range per {
		rates = append(rates, median(xs))
		cpu = append(cpu, median(perCPU[k]))
	}
	for _, xs := range ratioRounds {
		ratios = append(ratios, median(xs))
	}
	return rates, ratios, errs, cpu
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

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

// ingest posts transaction and batch Bundles of ~100 generated resources.
func ingest(ctx context.Context, dir string) {
	in := start(dir, "bench_ingest", false)
	defer in.stop()
	fmt.Printf("\n== Ingest: Bundles of 100 generated resources (400 patients with labs, vitals, documents, appointments, messages, referrals per run)\n")
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
		}
		for qi, q := range queries {
			p50, p95, st := latency(in, q, "", *samples)
			fmt.Printf("  p50 %8s  p95 %8s  [%d]  %s\n", p50.Round(time.Millisecond), p95.Round(time.Millisecond), st, q)
			key := []string{"patient+category+sort", "code+date", "name", "patient=id", "subject=Patient/id", "security", "walk"}[qi]
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
