package workflow

// The worklist queries of docs/workflow.md on 10,000 and 100,000 Tasks in
// the SQLite store (store/sqlite serves every query shape from its index
// tables): a page of a specialist's or a pool's worklist costs about the
// same at both sizes (it is driven by the owner's index rows, so its cost
// follows the owner's Tasks, closed ones included, not the table); the
// organisation-wide overdue list reads and sorts its matches.
//
//	go test -run '^$' -bench Worklist -benchtime 100x ./portal/workflow

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

// worklists are the worklist queries: one specialist's, one pool's, and
// the organisation's overdue in-progress Tasks (which grow with the
// organisation: 1% of all Tasks match).
var worklists = []struct{ name, query string }{
	{"owner-requested", "owner=PractitionerRole/spec-7&status=requested&_sort=authored-on"},
	{"pool-open", "owner=CareTeam/pool-3&status=requested,received&_sort=authored-on"},
	{"business-status", "owner=PractitionerRole/spec-7&business-status=" + BusinessStatusSystem + "|info-needed"},
	{"owner-overdue", "owner=PractitionerRole/spec-7&due=lt2026-06-01T12:00:00Z&status=requested,received,accepted,in-progress,on-hold&_sort=due"},
	{"all-overdue-in-progress", "due=lt2026-05-20&status=in-progress&_sort=due"},
}

func loadTasks(b *testing.B, reg *search.Registry, n int) store.Store {
	b.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:", sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close(ctx) })
	states := []string{"requested", "received", "accepted", "in-progress", "on-hold", "completed", "rejected", "cancelled"}
	business := []string{"triage", "info-needed", "info-provided", "appointment-booked", "advice-given"}
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var ops []store.Op
	// h spreads i over k values independently per dimension (salt).
	h := func(i, salt, k int) int {
		x := uint64(i)*0x9E3779B97F4A7C15 ^ uint64(salt)*0xC2B2AE3D27D4EB4F
		x ^= x >> 31
		x *= 0xBF58476D1CE4E5B9
		x ^= x >> 29
		return int(x % uint64(k))
	}
	for i := range n {
		// One specialist per 50 Tasks, one pool per 500: a larger
		// organisation has more specialists, not longer worklists.
		owner := fmt.Sprintf("PractitionerRole/spec-%d", h(i, 1, n/50))
		if h(i, 2, 10) == 0 {
			owner = fmt.Sprintf("CareTeam/pool-%d", h(i, 3, n/500))
		}
		id := fmt.Sprintf("task-%06d", i)
		at := base.Add(time.Duration(h(i, 6, 60*24)) * time.Hour)
		m := map[string]any{
			"resourceType": "Task", "id": id, "meta": map[string]any{"versionId": "1", "lastUpdated": at.Format(time.RFC3339)},
			"status": states[h(i, 4, len(states))], "intent": "order",
			"code":           map[string]any{"coding": []any{map[string]any{"system": TaskCodeSystem, "code": EReferral}}},
			"businessStatus": map[string]any{"coding": []any{map[string]any{"system": BusinessStatusSystem, "code": business[h(i, 5, len(business))]}}},
			"for":            map[string]any{"reference": fmt.Sprintf("Patient/p%d", i%5000)},
			"basedOn":        []any{map[string]any{"reference": "ServiceRequest/sr-" + id}},
			"requester":      map[string]any{"reference": fmt.Sprintf("Practitioner/pcp-%d", i%300)},
			"owner":          map[string]any{"reference": owner},
			"authoredOn":     at.Format(time.RFC3339),
			"restriction":    map[string]any{"period": map[string]any{"end": at.Add(14 * 24 * time.Hour).Format(time.RFC3339)}},
		}
		raw, _ := json.Marshal(m)
		idx, err := reg.Extract("Task", m)
		if err != nil {
			b.Fatal(err)
		}
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: store.Record{Type: "Task", ID: id, VersionID: 1, LastUpdated: at, Raw: raw, Index: idx}})
		if len(ops) == 1000 || i == n-1 {
			if err := st.Transact(ctx, ops); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	return st
}

func BenchmarkWorklist(b *testing.B) {
	reg, err := WithParams(search.Default())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			st := loadTasks(b, reg, n)
			for _, w := range worklists {
				q, _ := url.ParseQuery(w.query)
				p, err := reg.Parse("Task", q, search.ParseOptions{Strict: true})
				if err != nil {
					b.Fatal(err)
				}
				b.Run(w.name, func(b *testing.B) {
					var got int
					for b.Loop() {
						page, err := st.Search(ctx, store.Query{Types: []string{"Task"}, Filter: p.Filter, Sort: p.Sort, Count: 20})
						if err != nil {
							b.Fatal(err)
						}
						got = len(page.Records)
					}
					if got == 0 {
						b.Fatalf("%s matched nothing", w.query)
					}
					b.ReportMetric(float64(got), "results")
				})
			}
		})
	}
}
