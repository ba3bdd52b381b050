package server_test

// Benchmarks of the secure-messaging inbox queries (docs/messaging.md) on
// the SQLite store with generated threads, at 10,000 and 100,000
// Communications:
//
//	go test ./fhir/server -run '^$' -bench Inbox -benchtime 200x
//
// Each thread is a header and 4 messages, one message every 3 minutes;
// 50 clinicians, three pools receiving 1 thread in 4. As in a running
// clinic, what is still to do is recent: of the last 7 days, 1 message
// in 7 is unread, 1 thread in 10 awaits a reply and 1 thread in 3 is
// closed; everything older was read, answered and closed. So an inbox keeps its size while the history grows 10×, and
// a flat query is one whose cost does not grow with the history. Queries
// are parsed by the real parser (with the server's unread-for parameter)
// and run as the engine runs a first page (20, total bounded at 1,000).
// Each reports its median latency (p50-ms) and the page size.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/fhir/server/servertest"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

var inboxT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// inboxStore builds n Communications into a fresh SQLite store.
func inboxStore(b *testing.B, n int) store.Store {
	b.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "inbox.db"), sqlite.Options{Synchronous: "normal"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(context.Background()) })
	reg := servertest.Registry(b, nil, server.InboxParams...) // with the inbox parameters
	const doctors = 50
	end := inboxT0.Add(time.Duration(n) * 3 * time.Minute)
	recent := func(t time.Time) bool { return end.Sub(t) < 7*24*time.Hour }
	var ops []store.Op
	flush := func() {
		if err := s.Transact(ctx, ops); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	var header string
	for i := range n {
		thread := i / 5
		patient := fmt.Sprintf("Patient/p-%d", thread/3)
		to := fmt.Sprintf("Practitioner/dr-%d", thread%doctors)
		if thread%4 == 0 {
			to = fmt.Sprintf("CareTeam/pool-%d", thread%3)
		}
		sent := inboxT0.Add(time.Duration(i) * 3 * time.Minute)
		m := map[string]any{"resourceType": "Communication", "id": fmt.Sprintf("c-%d", i),
			"subject": map[string]any{"reference": patient}, "sent": sent.Format(time.RFC3339),
			"payload": []any{map[string]any{"contentString": "message"}}}
		var tags []any
		k := i % 5 // 0 the header, 1 and 3 staff replies, 2 and 4 the patient
		if k == 0 {
			header = "Communication/" + m["id"].(string)
			m["status"] = "in-progress"
			if thread%3 == 0 || !recent(sent) {
				m["status"] = "completed"
			}
			tags = append(tags, map[string]any{"system": server.ThreadSystem, "code": server.ThreadCode})
		} else {
			m["status"] = "completed"
			m["partOf"] = []any{map[string]any{"reference": header}}
		}
		if k%2 == 0 { // patient side
			m["sender"] = map[string]any{"reference": patient}
			m["recipient"] = []any{map[string]any{"reference": to}}
			if thread%10 == 1 && recent(sent) {
				tags = append(tags, map[string]any{"system": server.StateSystem, "code": server.AwaitingReply})
			}
		} else {
			m["sender"] = map[string]any{"reference": to}
			m["recipient"] = []any{map[string]any{"reference": patient}}
		}
		if i%7 != 3 || !recent(sent) {
			m["received"] = sent.Add(time.Hour).Format(time.RFC3339)
		}
		if tags != nil {
			m["meta"] = map[string]any{"tag": tags}
		}
		raw, _ := json.Marshal(m)
		idx, err := reg.Extract("Communication", m)
		if err != nil {
			b.Fatal(err)
		}
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: store.Record{Type: "Communication", ID: m["id"].(string),
			VersionID: 1, LastUpdated: sent, Raw: raw, Index: idx}})
		if len(ops) == 500 {
			flush()
		}
	}
	if len(ops) > 0 {
		flush()
	}
	return s
}

func BenchmarkInbox(b *testing.B) {
	reg := servertest.Registry(b, nil, server.InboxParams...) // with the inbox parameters
	for _, n := range []int{10_000, 100_000} {
		s := inboxStore(b, n)
		// Overdue: patient messages awaiting a reply for more than 48 h,
		// "now" being the end of the generated period.
		now := inboxT0.Add(time.Duration(n) * 3 * time.Minute)
		queries := []struct{ name, q string }{
			{"practitioner-unread", "unread-for=Practitioner/dr-7"},
			{"practitioner-open-threads", "open-thread-for=Practitioner/dr-7"},
			{"pool-unread", "unread-for=CareTeam/pool-1"},
			// The same inbox without unread-for: the pool's whole history is read.
			{"pool-unread-missing", "recipient=CareTeam/pool-1&received:missing=true"},
			{"patient-threads", "subject=Patient/p-42&_tag=" + url.QueryEscape(server.ThreadSystem+"|"+server.ThreadCode)},
			{"overdue", "_tag=" + url.QueryEscape(server.StateSystem+"|"+server.AwaitingReply) + "&sent=lt" + now.Add(-48*time.Hour).Format(time.RFC3339)},
		}
		for _, qq := range queries {
			vals, _ := url.ParseQuery(qq.q)
			p, err := reg.Parse("Communication", vals, search.ParseOptions{Strict: true, Now: func() time.Time { return now }})
			if err != nil {
				b.Fatal(err)
			}
			q := store.Query{Types: []string{"Communication"}, Filter: p.Filter, Sort: p.Sort, Count: 20, Total: true, TotalLimit: 1000}
			b.Run(fmt.Sprintf("%s/%d", qq.name, n), func(b *testing.B) {
				ctx := context.Background()
				var lat []time.Duration
				var got int
				for b.Loop() {
					t := time.Now()
					page, err := s.Search(ctx, q)
					if err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t))
					got = len(page.Records)
				}
				if got == 0 {
					b.Fatalf("%s matched nothing", qq.q)
				}
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(got), "page")
			})
		}
	}
}
