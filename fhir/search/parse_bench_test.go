package search

import (
	"net/url"
	"testing"
)

// BenchmarkParse parses a typical patient-portal query.
func BenchmarkParse(b *testing.B) {
	q, _ := url.ParseQuery("patient=Patient/123&code=http://loinc.org|8867-4,http://loinc.org|8480-6&date=ge2020-01-01&_sort=-date&_count=50&_include=Observation:performer")
	r := Default()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Parse("Observation", q, ParseOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
