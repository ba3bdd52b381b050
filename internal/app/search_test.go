package app

// Search through HTTP (search.html): GET and POST _search, unknown and
// malformed parameters, paging links, compartment search.

import (
	"strings"
	"testing"
)

func TestSearchHTTP(t *testing.T) {
	w := newWorld(t)
	h := w.h
	// search.html#errors: unknown parameters are ignored and reported; strict makes them 400.
	r := h.req("GET", "Observation?foo=bar", nil, "").must(t, 200)
	if !strings.Contains(string(r.Body), `"outcome"`) || !strings.Contains(string(r.Body), "foo") {
		t.Errorf("unknown parameter not reported: %s", truncate(r.Body))
	}
	s := h.req("GET", "Observation?foo=bar", nil, "", "Prefer: handling=strict").must(t, 400)
	if ex := s.outcome(t)["expression"]; ex == nil || !strings.Contains(strings.Join(toStrings(ex), ","), "foo") {
		t.Errorf("strict error does not name the parameter: %s", s.Body)
	}
	bad := h.req("GET", "Observation?date=2020-13-45", nil, "").must(t, 400)
	if !strings.Contains(string(bad.Body), "date") {
		t.Errorf("malformed date: %s", bad.Body)
	}
	// POST _search with a form body equals GET.
	g := h.req("GET", "Observation?code=http://loinc.org|2160-0", nil, "").must(t, 200)
	p := h.req("POST", "Observation/_search", "code=http://loinc.org%7C2160-0", "", "Content-Type: application/x-www-form-urlencoded").must(t, 200)
	if len(g.entries()) != 2 || len(p.entries()) != len(g.entries()) {
		t.Errorf("GET %d entries, POST _search %d", len(g.entries()), len(p.entries()))
	}
	// Compartment search and paging.
	c := h.req("GET", "Patient/pat-a/Observation?_count=1", nil, "").must(t, 200)
	if len(c.entries()) != 1 || !strings.Contains(string(c.Body), `"next"`) {
		t.Errorf("compartment paging: %s", truncate(c.Body))
	}
	// _summary=count and _total.
	cnt := h.req("GET", "Observation?_summary=count", nil, "").must(t, 200)
	if cnt.JSON["total"].(float64) != 4 || len(cnt.entries()) != 0 {
		t.Errorf("_summary=count: %s", cnt.Body)
	}
	// A cursor that the server did not issue.
	h.req("GET", "Observation?_cursor=garbage", nil, "").must(t, 400)
}

func toStrings(v any) []string {
	var out []string
	if xs, ok := v.([]any); ok {
		for _, x := range xs {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}
