package engine

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// BenchmarkSearch runs a patient's access-controlled Observation query
// (code, date range, newest first, one page) on the embedded FerretDB
// holding 300 Observations of 20 patients.
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	st := openStore(b, "bench")
	defer st.Close(ctx)
	var recs []store.Record
	lu := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 300; i++ {
		code := []string{"8867-4", "8480-6", "8462-4", "29463-7"}[i%4]
		raw := fmt.Sprintf(`{"resourceType":"Observation","id":"o%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":%q}]},`+
			`"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2020-%02d-%02dT08:00:00Z","valueQuantity":{"value":%d,"system":"http://unitsofmeasure.org","code":"/min"}}`,
			i, code, i%20, 1+i%12, 1+i%28, 50+i%50)
		recs = append(recs, record(b, []byte(raw), lu.Add(time.Duration(i)*time.Second)))
	}
	t0 := time.Now()
	for i := 0; i < len(recs); i += 20 {
		load(b, st, recs[i:i+20])
	}
	b.Logf("loaded %d resources in %v", len(recs), time.Since(t0))
	e := &Engine{Store: st, Registry: search.Default(), Base: testBase}
	q, _ := url.ParseQuery("code=http://loinc.org|8867-4&date=ge2020-03-01&_sort=-date&_count=20")
	req := Request{Types: []string{"Observation"}, Params: q, SelfPath: "Observation",
		Constrain: func(string) search.Expr {
			return search.CompartmentCond{Compartments: []string{"Patient/p4"}}
		}}
	b.ResetTimer()
	for b.Loop() {
		res, err := e.Search(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Matches) == 0 {
			b.Fatal("no matches")
		}
	}
}
