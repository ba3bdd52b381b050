package mongo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Store against the bare driver on the same embedded server:
//
//	go test ./store/mongo -run '^$' -bench . -benchtime 2s
//
// "store" is the store.Store call, "driver" the single InsertOne / FindOne
// of an equivalent document that an unsafe, journal-less store would do.

func benchRecord(id string) store.Record {
	raw := fmt.Sprintf(`{"resourceType":"Observation","id":%q,"meta":{"versionId":"1","lastUpdated":"2024-03-01T10:00:00.123Z"},`+
		`"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],`+
		`"code":{"coding":[{"system":"http://loinc.org","code":"2339-0","display":"Glucose [Mass/volume] in Blood"}]},`+
		`"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-03-01T09:30:00Z",`+
		`"valueQuantity":{"value":6.3,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}}`, id)
	return store.Record{
		Type: "Observation", ID: id, VersionID: 1, LastUpdated: time.Date(2024, 3, 1, 10, 0, 0, 123e6, time.UTC), Raw: []byte(raw),
		Index: search.Index{
			Tok:          []search.TokValue{{Param: "code", System: "http://loinc.org", Code: "2339-0"}, {Param: "status", Code: "final"}},
			Ref:          []search.RefValue{{Param: "subject", Ref: "Patient/p1", Type: "Patient", ID: "p1"}},
			Compartments: []string{"Patient/p1"},
		},
	}
}

func benchStore(b *testing.B) *Store {
	return openTest(b, embeddedURI, Options{})
}

func BenchmarkCreate(b *testing.B) {
	ctx := context.Background()
	b.Run("store", func(b *testing.B) {
		s := benchStore(b)
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			r := benchRecord(fmt.Sprintf("o%d", i))
			if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: r}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("driver", func(b *testing.B) {
		s := benchStore(b)
		coll := s.db.Collection("raw")
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			d := toDoc(benchRecord(fmt.Sprintf("o%d", i)))
			if _, err := coll.InsertOne(ctx, d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRead(b *testing.B) {
	ctx := context.Background()
	const n = 500
	s := benchStore(b)
	coll := s.db.Collection("raw")
	var ops []store.Op
	var docs []any
	for i := 0; i < n; i++ {
		r := benchRecord(fmt.Sprintf("o%d", i))
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: r})
		docs = append(docs, toDoc(r))
	}
	for i := 0; i < n; i += 100 {
		if err := s.Transact(ctx, ops[i:i+100]); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := coll.InsertMany(ctx, docs); err != nil {
		b.Fatal(err)
	}
	b.Run("store", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := s.Read(ctx, "Observation", fmt.Sprintf("o%d", i%n)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("driver", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			var d doc
			if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("Observation/o%d", i%n)}}).Decode(&d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTransact20 is a transaction bundle of 20 updates.
func BenchmarkTransact20(b *testing.B) {
	ctx := context.Background()
	s := benchStore(b)
	var ops []store.Op
	for i := 0; i < 20; i++ {
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: benchRecord(fmt.Sprintf("o%d", i))})
	}
	if err := s.Transact(ctx, ops); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for v := int64(2); b.Loop(); v++ {
		for i := range ops {
			ops[i].Kind, ops[i].IfVersion, ops[i].Record.VersionID = store.OpPut, v-1, v
		}
		if err := s.Transact(ctx, ops); err != nil {
			b.Fatal(err)
		}
	}
}
