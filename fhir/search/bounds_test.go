package search

// The bounds of one search request (parse.go: MaxParams, MaxHas,
// MaxChains, MaxChainDepth, MaxIncludes): a query beyond one is a
// *ParamError with issue code too-costly naming the parameter, and the
// parser rejects it without working through the rest.

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

func parseErr(t *testing.T, typ string, q url.Values) *ParamError {
	t.Helper()
	_, err := Default().Parse(typ, q, ParseOptions{Now: func() time.Time { return parseNow }})
	var pe *ParamError
	if !errors.As(err, &pe) {
		t.Fatalf("want a *ParamError, got %v", err)
	}
	return pe
}

func TestSearchBounds(t *testing.T) {
	many := func(n int, name func(i int) string, value string) url.Values {
		q := url.Values{}
		for i := range n {
			q.Add(name(i), value)
		}
		return q
	}
	// Distinct token parameters of Observation, for _has on each.
	tokens := []string{"code", "status", "category", "identifier", "method", "data-absent-reason", "value-concept",
		"component-code", "combo-code", "component-data-absent-reason", "combo-data-absent-reason", "_id"}
	tests := []struct {
		name  string
		typ   string
		q     url.Values
		param string // the parameter named ("" : any)
		msg   string
	}{
		{"_has", "Patient", many(MaxHas+1, func(int) string { return "_has:Observation:patient:code" }, "x"), "_has:Observation:patient:code", "_has"},
		{"_has distinct", "Patient", many(MaxHas+1, func(i int) string { return "_has:Observation:patient:" + tokens[i] }, "x"), "", "_has"},
		{"chains", "Observation", many(MaxChains+1, func(int) string { return "patient.name" }, "x"), "patient.name", "chained"},
		{"chain depth", "Encounter", url.Values{"patient.organization.partof.partof.partof.name": {"x"}}, "patient.organization.partof.partof.partof.name", "nest"},
		{"_has depth", "Patient", url.Values{"_has:Observation:patient:" + strings.Repeat("_has:Provenance:target:", MaxChainDepth) + "agent=x": {"x"}}, "", "nest"},
		{"includes", "Observation", many(MaxIncludes+1, func(int) string { return "_include" }, "Observation:subject"), "_include", "_include"},
		{"includes mixed", "Observation", func() url.Values {
			q := many(MaxIncludes/2+1, func(int) string { return "_revinclude" }, "Provenance:target")
			q["_include:iterate"] = strings.Fields(strings.Repeat("Observation:subject ", MaxIncludes/2))
			return q
		}(), "_revinclude", "_include"},
		{"parameters", "Observation", many(MaxParams+1, func(i int) string { return fmt.Sprintf("code%03d", i) }, "x"), "code100", "parameters"},
		{"repeated values count", "Observation", many(MaxParams+1, func(int) string { return "code" }, "x"), "code", "parameters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pe := parseErr(t, tc.typ, tc.q)
			if pe.Code != "too-costly" || !strings.Contains(pe.Msg, tc.msg) {
				t.Fatalf("error %+v, want too-costly about %s", pe, tc.msg)
			}
			if tc.param != "" && pe.Param != tc.param || pe.Param == "" {
				t.Fatalf("names %q, want %q", pe.Param, tc.param)
			}
		})
	}
	// At the bounds, the query parses.
	ok := url.Values{}
	for i := range MaxHas {
		ok.Add("_has:Observation:patient:code", fmt.Sprint(i))
	}
	for range MaxIncludes {
		ok.Add("_revinclude", "Provenance:target")
	}
	if _, err := Default().Parse("Patient", ok, ParseOptions{}); err != nil {
		t.Fatalf("at the bounds: %v", err)
	}
	if _, err := Default().Parse("Encounter", url.Values{"patient.organization.partof.partof.name": {"x"}}, ParseOptions{}); err != nil {
		t.Fatalf("chain of %d hops: %v", MaxChainDepth, err)
	}
	if _, err := Default().Parse("Patient", url.Values{"_has:Observation:patient:" + strings.Repeat("_has:Provenance:target:", MaxChainDepth-1) + "agent": {"Practitioner/x"}}, ParseOptions{}); err != nil {
		t.Fatalf("_has of %d hops: %v", MaxChainDepth, err)
	}
}

// TestSearchBoundsAreCheap: the 3,000 _has of the issue are rejected in
// far less than the seconds they used to take, repeated or distinct.
func TestSearchBoundsAreCheap(t *testing.T) {
	repeated, distinct := url.Values{}, url.Values{}
	for i := range 3000 {
		repeated.Add("_has:Observation:patient:code", fmt.Sprintf("http://loinc.org|%d", i))
		distinct.Add(fmt.Sprintf("_has:Observation:patient:code%d", i), "http://loinc.org|8867-4")
	}
	for _, q := range []url.Values{repeated, distinct} {
		start := time.Now()
		if pe := parseErr(t, "Patient", q); pe.Code != "too-costly" {
			t.Fatalf("error %+v", pe)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("rejecting took %v", d)
		}
	}
}

// TestParseRejectsInvalidUTF8: a query that is not UTF-8 is a 400, not a
// value the stores would have to compare (or compile into a $regex).
func TestParseRejectsInvalidUTF8(t *testing.T) {
	for _, q := range []url.Values{{"url:below": {"http://a/\xff"}}, {"name\xfe": {"x"}}} {
		pe := parseErr(t, "ValueSet", q)
		if pe.Code != "invalid" || !strings.Contains(pe.Msg, "UTF-8") {
			t.Fatalf("%v: %+v", q, pe)
		}
	}
}
