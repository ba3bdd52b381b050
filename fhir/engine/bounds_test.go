package engine

// The cost bounds of one search (search.html leaves them to the server):
// the parser's (search.MaxHas, MaxChains, MaxChainDepth, MaxIncludes,
// MaxParams) reach the client as a 400 too-costly naming the parameter;
// the engine's bound the inner matches of chains and _has, each and all
// together, and the resources one _has resolves into. A request whose
// context ends stops and reports the context's error (fhir.AsError makes
// it a 499 or a 503, not a 500).

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

func TestParseBoundsAre400(t *testing.T) {
	e := newEngine(t)
	q := url.Values{}
	for i := range 3000 {
		q.Add("_has:Observation:patient:code", fmt.Sprintf("http://loinc.org|%d", i))
	}
	start := time.Now()
	_, err := e.Search(context.Background(), Request{Types: []string{"Patient"}, Params: q})
	assertInvalid(t, err, "_has:Observation:patient:code", "too-costly")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("3,000 _has took %v to reject", d)
	}
	status, oo := fhir.Outcome(err)
	if status != 400 || len(oo.Issue) != 1 || oo.Issue[0].Expression[0] != "_has:Observation:patient:code" {
		t.Fatalf("outcome %d %+v", status, oo)
	}
	// Conditional operations parse the same way.
	_, err = e.Match(context.Background(), "Patient", q, nil, 2)
	assertInvalid(t, err, "_has:Observation:patient:code", "too-costly")
	// At the bound, the search runs.
	q = url.Values{}
	for i := range search.MaxHas {
		q.Add("_has:Observation:patient:code", fmt.Sprintf("http://loinc.org|%d", i))
	}
	if _, err := e.Search(context.Background(), Request{Types: []string{"Patient"}, Params: q}); err != nil {
		t.Fatalf("%d _has: %v", search.MaxHas, err)
	}
}

func TestInnerBounds(t *testing.T) {
	e := newEngine(t)
	hr := "_has:Observation:patient:code=http://loinc.org|8867-4" // 25 heart rates of Patient/pg
	// Each inner search within MaxInner, but together beyond MaxInnerTotal.
	e2 := *e
	e2.MaxInnerTotal = 40
	_, err := e2.Search(context.Background(), Request{Types: []string{"Patient"}, Params: query(t, hr+"&_has:Observation:subject:code=http://loinc.org|8867-4")})
	assertInvalid(t, err, "_has:Observation:subject:code", "too-costly")
	if _, oo := fhir.Outcome(err); !strings.Contains(oo.Issue[0].Diagnostics, "together") {
		t.Fatalf("diagnostics %q, want the total bound", oo.Issue[0].Diagnostics)
	}
	if _, err := e2.Search(context.Background(), Request{Types: []string{"Patient"}, Params: query(t, hr)}); err != nil {
		t.Fatalf("one _has within the total: %v", err)
	}
	// A chain is bounded the same way.
	e3 := *e
	e3.MaxInner = 1
	_, err = e3.Search(context.Background(), Request{Types: []string{"Observation"}, Params: query(t, "patient.gender=female,male")})
	assertInvalid(t, err, "patient.gender", "too-costly")
}

// TestHasResolvesBounded: one inner match that refers to many resources
// (a Group's members) is bounded by MaxInner too.
func TestHasResolvesBounded(t *testing.T) {
	st := openStore(t, "hasbound")
	raw := `{"resourceType":"Group","id":"g1","type":"person","actual":true,"member":[`
	for i := range 5 {
		if i > 0 {
			raw += ","
		}
		raw += fmt.Sprintf(`{"entity":{"reference":"Patient/m%d"}}`, i)
	}
	raw += `]}`
	load(t, st, []store.Record{record(t, []byte(raw), fixedNow)})
	e := &Engine{Store: st, Registry: search.Default().WithBase(testBase), Base: testBase, Now: func() time.Time { return fixedNow }, MaxInner: 3}
	_, err := e.Search(context.Background(), Request{Types: []string{"Patient"}, Params: query(t, "_has:Group:member:_id=g1")})
	assertInvalid(t, err, "_has:Group:member:_id", "too-costly")
	e.MaxInner = 5
	if _, err := e.Search(context.Background(), Request{Types: []string{"Patient"}, Params: query(t, "_has:Group:member:_id=g1")}); err != nil {
		t.Fatalf("5 members within MaxInner 5: %v", err)
	}
}

// TestContextEnd: a search whose client went away, or whose deadline
// passed, fails with the context's error, which the one error mapping
// turns into 499 / 503, never 500.
func TestContextEnd(t *testing.T) {
	e := newEngine(t)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	late, stop := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer stop()
	for _, tc := range []struct {
		ctx    context.Context
		want   error
		status int
	}{
		{cancelled, context.Canceled, fhir.StatusClientClosed},
		{late, context.DeadlineExceeded, 503},
	} {
		for _, q := range []string{"code=http://loinc.org|8867-4", "patient.gender=female", "_has:Observation:patient:code=http://loinc.org|8867-4"} {
			typ := "Observation"
			if q[0] == '_' {
				typ = "Patient"
			}
			_, err := e.Search(tc.ctx, Request{Types: []string{typ}, Params: query(t, q)})
			if !errors.Is(err, tc.want) {
				t.Fatalf("%s?%s: %v, want %v", typ, q, err, tc.want)
			}
			if status, _ := fhir.Outcome(err); status != tc.status {
				t.Fatalf("%s?%s: status %d, want %d", typ, q, status, tc.status)
			}
		}
	}
}
