package main

import (
	"context"
	"fmt"
	"log"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

// crudSQLite is the CRUD phase on the default store: fhirgate on SQLite
// against the same store work issued directly through store/sqlite (the
// statements fhirgate's store issues, on a database of its own in this
// process): same+audit also appends the AuditEvent fhirgate writes for
// every request (batched by 100, as its writer does); same does not.
func crudSQLite(ctx context.Context, dir string) {
	in := start(dir, "bench_crud_sqlite", false, "FHIRGATE_STORE=sqlite")
	defer in.stop()
	direct, err := sqlite.Open(ctx, filepath.Join(dir, "direct.db"), sqlite.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer direct.Close(ctx)
	reg := search.Default()
	var ids []string
	var mu sync.Mutex
	fgCreate := createOp(in, &mu, &ids)
	rate(time.Second, *conc, fgCreate)
	// The record as fhirgate stores it: its JSON, search values and
	// release state, built once (extraction is fhirgate's work, not the store's).
	tree, err := fhir.Decode([]byte(obsTemplate))
	if err != nil {
		log.Fatal(err)
	}
	idx, err := reg.Extract("Observation", tree)
	if err != nil {
		log.Fatal(err)
	}
	record := func(id string, v int64) store.Record {
		raw := strings.Replace(obsTemplate, `{"resourceType":"Observation"`, `{"resourceType":"Observation","id":"`+id+
			`","meta":{"versionId":"`+fmt.Sprint(v)+`","lastUpdated":"`+fhir.Instant(time.Now())+`"}`, 1)
		return store.Record{Type: "Observation", ID: id, VersionID: v, LastUpdated: time.Now().UTC().Truncate(time.Millisecond),
			Raw: []byte(raw), Index: idx}
	}
	var auditN atomic.Int64
	var batch []store.Record
	auditOp := func() bool {
		id := fmt.Sprintf("a%d", auditN.Add(1))
		now := time.Now().UTC().Truncate(time.Millisecond)
		raw, ix := audit.BuildIndexed(audit.Event{Time: now, Interaction: "create", Outcome: 201, Resources: []string{"Observation/x/_history/1"},
			Patients: []string{"Patient/p1"}, Server: in.base, ClientID: "bench"}, id, now, reg.NewBuilder("AuditEvent"))
		mu.Lock()
		batch = append(batch, store.Record{Type: "AuditEvent", ID: id, VersionID: 1, LastUpdated: now, Raw: raw, Index: ix})
		var full []store.Record
		if len(batch) >= 100 {
			full, batch = batch, nil
		}
		mu.Unlock()
		if full != nil {
			return direct.Append(ctx, full) == nil
		}
		return true
	}
	var sameIDs []string
	var round atomic.Int64
	sameCreate := func(w, i int) bool {
		id := fmt.Sprintf("s%d-%d-%d", w, i, round.Add(1))
		err := direct.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: record(id, 1)}})
		mu.Lock()
		sameIDs = append(sameIDs, id)
		mu.Unlock()
		return err == nil
	}
	type row struct {
		op           string
		rates, ratio []float64
		errs         []int64
	}
	var rows []row
	measured := func(op string, fns ...func(w, i int) bool) {
		rates, ratio, errs, _ := interleave(fns...)
		rows = append(rows, row{op, rates, ratio, errs})
	}
	measured("create", fgCreate, func(w, i int) bool { return sameCreate(w, i) && auditOp() }, sameCreate)
	pick := func(xs []string, w, i, p int) string { return xs[(w*p+i)%len(xs)] }
	sameRead := func(w, i int) bool {
		_, err := direct.Read(ctx, "Observation", pick(sameIDs, w, i, 7919))
		return err == nil
	}
	measured("read", func(w, i int) bool { return in.crudDo("GET", "Observation/"+pick(ids, w, i, 7919), nil).Status == 200 },
		func(w, i int) bool { return sameRead(w, i) && auditOp() }, sameRead)
	sameUpd := func(w, i int) bool {
		id := pick(sameIDs, w, i, 104729)
		// The pipeline reads the current version (access, If-Match,
		// release state), then the store writes it conditionally.
		cur, err := direct.Read(ctx, "Observation", id)
		if err != nil {
			return false
		}
		err = direct.Transact(ctx, []store.Op{{Kind: store.OpPut, Record: record(id, cur.VersionID+1), IfVersion: cur.VersionID}})
		return err == nil
	}
	measured("update", func(w, i int) bool {
		id := pick(ids, w, i, 104729)
		body := strings.Replace(obsTemplate, `{"resourceType":"Observation"`, `{"resourceType":"Observation","id":"`+id+`"`, 1)
		return in.crudDo("PUT", "Observation/"+id, []byte(body)).Status == 200
	}, func(w, i int) bool { return sameUpd(w, i) && auditOp() }, sameUpd)
	fmt.Printf("\n== CRUD on SQLite: fhirgate vs the same store work issued directly through store/sqlite (%d clients; %d interleaved rounds of %s per side, medians)\n", *conc, *rounds, *dur)
	fmt.Printf("%-8s %10s %11s %10s %11s %8s\n", "op", "fhirgate/s", "same+aud/s", "same/s", "vs s+audit", "vs same")
	for _, r := range rows {
		fmt.Printf("%-8s %10.0f %11.0f %10.0f %11.2f %8.2f   (errors %d/%d/%d)\n", r.op, r.rates[0], r.rates[1], r.rates[2], r.ratio[0], r.ratio[1], r.errs[0], r.errs[1], r.errs[2])
	}
}
