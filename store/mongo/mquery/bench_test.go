package mquery

import (
	"testing"

	"github.com/fhirgate/fhirgate/fhir/search"
)

var benchExpr = search.And{Args: []search.Expr{
	search.CompartmentCond{Compartments: []string{"Patient/p1"}},
	search.TokenCond{Param: "code", System: sp(loinc), Code: sp("8480-6")},
	search.DateCond{Param: "date", Prefix: search.Ge, Lo: day("2020-01-01"), Hi: day("2020-01-02")},
	search.ReleaseCond{Audience: "patient", Now: day("2021-02-01")},
}}

// BenchmarkCompile compiles a typical access-controlled query for FerretDB.
func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Compile(benchExpr, Options{Dialect: FerretDB}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatch is the per-candidate cost of the FerretDB post-filter.
func BenchmarkMatch(b *testing.B) {
	m, err := NewMatcher(benchExpr)
	if err != nil {
		b.Fatal(err)
	}
	r := fixtures()[0]
	b.ReportAllocs()
	for b.Loop() {
		if !m.Match(r) {
			b.Fatal("no match")
		}
	}
}
