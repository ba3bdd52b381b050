package main

import (
	"context"
	"fmt"
	"log"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/store/embedded"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// The CRUD phase on FerretDB: fhirgate against the same store commands
// issued directly with the Mongo driver, in interleaved rounds.

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
