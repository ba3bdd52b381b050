package sqlite

// Benchmarks of the SQLite store (make bench; numbers in README.md):
//
//	go test ./store/sqlite -run '^$' -bench . -benchtime 2s
//
// Search benchmarks run on generated data sets (fhir/gen, search values
// extracted with the real registry) of 10,000 and 100,000 Observations
// (FHIRGATE_BENCH_OBS lists other sizes, e.g. "10000,100000,1000000"),
// built once into the temporary directory and reused while the schema
// version is the same. Each reports its median latency (p50-ms) besides
// ns/op. Queries are parsed by the real parser (fhir/search) as the
// pipeline sends them.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/gen"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

const (
	labelHIV = "http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV"
	labelR   = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"
)

// benchRecords generates resources up to nObs Observations and extracts
// their search values (in parallel). Every 20th Observation carries the
// HIV label, every 7th the restricted confidentiality label.
func benchRecords(tb testing.TB, nObs int, seed int64, prefix string) []store.Record {
	tb.Helper()
	patients := nObs*100/1363 + 1
	rs := gen.Generate(seed, patients, gen.Options{IDPrefix: prefix})
	obs := 0
	var keep []gen.Resource
	for _, r := range rs {
		if r.Type == "Observation" {
			if obs == nObs {
				continue
			}
			obs++
		}
		keep = append(keep, r)
	}
	out := make([]store.Record, len(keep))
	reg := search.Default()
	lu := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	var next atomic.Int64
	var obsSeen atomic.Int64
	workers := runtime.GOMAXPROCS(0)
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keep) {
					return
				}
				r := keep[i]
				dec := json.NewDecoder(bytes.NewReader(r.JSON))
				dec.UseNumber()
				var m map[string]any
				if err := dec.Decode(&m); err != nil {
					errs <- err
					return
				}
				raw := r.JSON
				if r.Type == "Observation" {
					// Security labels in meta.security, as an EMR sends them.
					n := obsSeen.Add(1)
					var sec []any
					if n%20 == 0 {
						sec = append(sec, map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"})
					}
					if n%7 == 0 {
						sec = append(sec, map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"})
					}
					if sec != nil {
						m["meta"] = map[string]any{"security": sec}
						b, err := json.Marshal(m)
						if err != nil {
							errs <- err
							return
						}
						raw = b
					}
				}
				idx, err := reg.Extract(r.Type, m)
				if err != nil {
					errs <- err
					return
				}
				out[i] = store.Record{Type: r.Type, ID: r.ID, VersionID: 1, LastUpdated: lu.Add(time.Duration(i) * time.Millisecond),
					Raw: raw, Index: idx}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
	return out
}

func creates(recs []store.Record) []store.Op {
	ops := make([]store.Op, len(recs))
	for i, r := range recs {
		ops[i] = store.Op{Kind: store.OpCreate, Record: r}
	}
	return ops
}

var benchDBs sync.Map // size -> *Store

func benchSizes() []int {
	v := os.Getenv("FHIRGATE_BENCH_OBS")
	if v == "" {
		return []int{10_000, 100_000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// benchDB opens the data set of nObs Observations, building it first
// when the temporary directory has none of this schema version.
func benchDB(b *testing.B, nObs int) *Store {
	if s, ok := benchDBs.Load(nObs); ok {
		return s.(*Store)
	}
	dir := filepath.Join(os.TempDir(), "fhirgate-sqlite-bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	// Named by a hash of the schema: a changed layout builds anew.
	h := sha256.Sum256([]byte(strings.Join(schema, ";")))
	path := filepath.Join(dir, fmt.Sprintf("obs%d-%x.db", nObs, h[:6]))
	done := path + ".done"
	if _, err := os.Stat(done); err != nil {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suffix)
		}
		start := time.Now()
		recs := benchRecords(b, nObs, 1, "")
		extracted := time.Since(start)
		s, err := Open(context.Background(), path, Options{Synchronous: "normal"})
		if err != nil {
			b.Fatal(err)
		}
		ops := creates(recs)
		for i := 0; i < len(ops); i += 100 {
			if err := s.Transact(context.Background(), ops[i:min(i+100, len(ops))]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.w.conn.ExecContext(context.Background(), "ANALYZE"); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		fi, _ := os.Stat(path)
		b.Logf("built %s: %d resources (%d Observations), extracted in %v, stored in %v, %d MiB",
			path, len(recs), nObs, extracted.Round(time.Millisecond), (time.Since(start) - extracted).Round(time.Millisecond), fi.Size()>>20)
		if err := os.WriteFile(done, nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	benchDBs.Store(nObs, s)
	return s
}

// benchQuery is one search of the benchmarks.
type benchQuery struct {
	name  string
	typ   string // "" with types: system search
	query string // URL query, parsed by the real parser
	extra func(patient string) search.Expr
}

func compartment(patient string) search.Expr {
	return search.CompartmentCond{Compartments: []string{"Patient/" + patient}}
}

// patientApp is the access filter of a patient-facing app (fhir/server/access.go).
func patientApp(patient string) search.Expr {
	return search.AllOf(compartment(patient),
		search.ReleaseCond{Audience: "patient", Now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		search.Not{Arg: search.SecurityCond{Labels: []string{labelHIV, "http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY"}}})
}

// A patient in the middle of the data set, a practitioner, a code.
var benchQueries = []benchQuery{
	{name: "obs-code-date", typ: "Observation", query: "code=http://loinc.org|2345-7&date=ge2024&_count=20"},
	{name: "obs-code-date-total", typ: "Observation", query: "code=http://loinc.org|2345-7&date=ge2024&_count=20&_total=accurate"},
	{name: "patient-name-prefix", typ: "Patient", query: "name=smi&_count=20"},
	{name: "patient-name-exact", typ: "Patient", query: "name:exact=Smith&_count=20"},
	{name: "obs-security", typ: "Observation", query: "_security=" + url.QueryEscape(labelHIV) + "&_count=20"},
	{name: "obs-not-security", typ: "Observation", query: "_security:not=" + url.QueryEscape(labelHIV) + "&_count=20"},
	{name: "worklist-requester-status-sorted", typ: "ServiceRequest", query: "requester=Practitioner/prac-3&status=completed&_sort=-authored&_count=20"},
	{name: "obs-sort-date-desc", typ: "Observation", query: "_sort=-date&_count=20"},
	{name: "patient-obs/patient=X", typ: "Observation", query: "patient=PAT&_count=50"},
	{name: "patient-obs/patient=Patient-X", typ: "Observation", query: "patient=Patient/PAT&_count=50"},
	{name: "patient-obs/subject=Patient-X", typ: "Observation", query: "subject=Patient/PAT&_count=50"},
	{name: "patient-obs/subject=X", typ: "Observation", query: "subject=PAT&_count=50"},
	{name: "patient-obs/compartment", typ: "Observation", query: "_count=50", extra: compartment},
	{name: "patient-everything/compartment", query: "_count=50", extra: compartment},
	// A patient's app: its compartment, released results, no sensitive labels.
	{name: "patient-app/obs-lab", typ: "Observation", query: "category=laboratory&_sort=-date&_count=20", extra: patientApp},
	{name: "patient-obs-lab-sorted", typ: "Observation", query: "patient=PAT&category=laboratory&_sort=-date&_count=20"},
}

func (bq benchQuery) parse(b testing.TB, patient string) store.Query {
	q, err := url.ParseQuery(strings.ReplaceAll(bq.query, "PAT", patient))
	if err != nil {
		b.Fatal(err)
	}
	p, err := search.Default().Parse(bq.typ, q, search.ParseOptions{})
	if err != nil {
		b.Fatalf("%s: %v", bq.name, err)
	}
	f := p.Filter
	if bq.extra != nil {
		f = search.AllOf(f, bq.extra(patient))
	}
	// The first page of a search over HTTP: a total, counted exactly with
	// _total=accurate, else up to fhir/engine's DefaultTotalLimit (1,000).
	q2 := store.Query{Types: p.Types, Filter: f, Sort: p.Sort, Count: p.Count, Total: true}
	if p.Total != "accurate" {
		q2.TotalLimit = 1000
	}
	return q2
}

// BenchmarkSearch runs each query at each size; p50-ms is the median.
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchSizes() {
		s := benchDB(b, n)
		patients := n * 100 / 1363
		patient := fmt.Sprintf("pat-%d", patients/2)
		for _, bq := range benchQueries {
			q := bq.parse(b, patient)
			b.Run(fmt.Sprintf("obs=%d/%s", n, bq.name), func(b *testing.B) {
				var lat []time.Duration
				hits := 0
				for b.Loop() {
					t0 := time.Now()
					p, err := s.Search(ctx, q)
					if err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
					hits = len(p.Records)
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(hits), "hits")
			})
		}
	}
}

func benchStore(b *testing.B, sync string) *Store {
	return openTest(b, filepath.Join(b.TempDir(), "fhirgate.db"), Options{Synchronous: sync})
}

var (
	benchRecsOnce sync.Once
	benchRecs     []store.Record
)

// ingestRecords is a generated data set of about 20,000 resources.
func ingestRecords(b *testing.B) []store.Record {
	benchRecsOnce.Do(func() { benchRecs = benchRecords(b, 10_000, 2, "i") })
	return benchRecs
}

// BenchmarkTransactBundle100 is a transaction Bundle of 100 creates of
// generated resources (rps: resources per second).
func BenchmarkTransactBundle100(b *testing.B) {
	ctx := context.Background()
	recs := ingestRecords(b)
	for _, sync := range []string{"normal", "full"} {
		b.Run("synchronous="+sync, func(b *testing.B) {
			s := benchStore(b, sync)
			all := recs[:len(recs)/100*100]
			k := 0
			start := time.Now()
			for b.Loop() {
				off := k * 100 % len(all)
				round := k * 100 / len(all)
				ops := creates(all[off : off+100])
				for i := range ops {
					ops[i].Record.ID = fmt.Sprintf("%s-%d", ops[i].Record.ID, round)
				}
				if err := s.Transact(ctx, ops); err != nil {
					b.Fatal(err)
				}
				k++
			}
			b.ReportMetric(float64(b.N*100)/time.Since(start).Seconds(), "resources/s")
		})
	}
}

// BenchmarkCRUD: one create, read, update at a time; and concurrent
// creates (group commit).
func BenchmarkCRUD(b *testing.B) {
	ctx := context.Background()
	recs := ingestRecords(b)
	obs := slices.DeleteFunc(slices.Clone(recs), func(r store.Record) bool { return r.Type != "Observation" })
	for _, sync := range []string{"normal", "full"} {
		s := benchStore(b, sync)
		b.Run("create/synchronous="+sync, func(b *testing.B) {
			i := 0
			for b.Loop() {
				r := obs[i%len(obs)]
				r.ID = fmt.Sprintf("c%d", i)
				if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: r}}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		var seq atomic.Int64
		b.Run("create-concurrent-8/synchronous="+sync, func(b *testing.B) {
			b.SetParallelism(8 / max(1, runtime.GOMAXPROCS(0)))
			tx0, req0 := s.w.txs.Load(), s.w.reqN.Load()
			defer func() {
				if tx := s.w.txs.Load() - tx0; tx > 0 {
					b.ReportMetric(float64(s.w.reqN.Load()-req0)/float64(tx), "creates/commit")
				}
			}()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(seq.Add(1))
					r := obs[i%len(obs)]
					r.ID = fmt.Sprintf("p%d", i)
					if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: r}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		// 1,000 resources to read and update.
		var ops []store.Op
		for i := range 1000 {
			r := obs[i%len(obs)]
			r.ID = fmt.Sprintf("u%d", i)
			ops = append(ops, store.Op{Kind: store.OpCreate, Record: r})
		}
		if err := s.Transact(ctx, ops); err != nil {
			b.Fatal(err)
		}
		b.Run("read/synchronous="+sync, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, err := s.Read(ctx, "Observation", fmt.Sprintf("u%d", i%1000)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run("update/synchronous="+sync, func(b *testing.B) {
			vers := make([]int64, 1000)
			for i := range vers {
				vers[i] = 1
			}
			i := 0
			for b.Loop() {
				k := i % 1000
				r := ops[k].Record
				r.VersionID = vers[k] + 1
				if err := s.Transact(ctx, []store.Op{{Kind: store.OpPut, Record: r, IfVersion: vers[k]}}); err != nil {
					b.Fatal(err)
				}
				vers[k]++
				i++
			}
		})
	}
}
