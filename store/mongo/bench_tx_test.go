package mongo

import (
	"context"
	"fmt"
	"testing"

	"github.com/fhirgate/fhirgate/store"
)

// Transact on embedded FerretDB as fhirgate runs it (RecoverAll, _id
// index of store/embedded.IndexIDs):
//
//	go test ./store/mongo -run '^$' -bench 'Transact(Create|Update)' -benchtime 2s

func benchIndexedStore(b *testing.B) *Store {
	b.Helper()
	ctx := context.Background()
	var s *Store
	s = openTest(b, embeddedURI, Options{RecoverAll: true, IndexedIDs: true,
		// As fhirgate does: each type's new tables get the _id index.
		OnNewCollection: func(ctx context.Context) error {
			if s == nil {
				return nil // at Open: indexed below
			}
			return embeddedSrv.IndexIDs(ctx, s.db.Name())
		}})
	if err := s.EnsureCollections(ctx); err != nil {
		b.Fatal(err)
	}
	if err := embeddedSrv.IndexIDs(ctx, s.db.Name()); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkTransactCreate1: one create per Transact (an HTTP create).
func BenchmarkTransactCreate1(b *testing.B) {
	ctx := context.Background()
	s := benchIndexedStore(b)
	for i := 0; b.Loop(); i++ {
		r := benchRecord(fmt.Sprintf("o%d", i))
		if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: r}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransactCreate100: a transaction Bundle of 100 creates; see
// resources/s for the ingest rate.
func BenchmarkTransactCreate100(b *testing.B) {
	ctx := context.Background()
	s := benchIndexedStore(b)
	n := 0
	for i := 0; b.Loop(); i++ {
		ops := make([]store.Op, 100)
		for j := range ops {
			ops[j] = store.Op{Kind: store.OpCreate, Record: benchRecord(fmt.Sprintf("o%d-%d", i, j))}
		}
		if err := s.Transact(ctx, ops); err != nil {
			b.Fatal(err)
		}
		n += len(ops)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkTransactUpdate1: one update per Transact (an HTTP update) of
// one of 200 resources.
func BenchmarkTransactUpdate1(b *testing.B) {
	ctx := context.Background()
	s := benchIndexedStore(b)
	const pool = 200
	ops := make([]store.Op, pool)
	for j := range ops {
		ops[j] = store.Op{Kind: store.OpCreate, Record: benchRecord(fmt.Sprintf("o%d", j))}
	}
	if err := s.Transact(ctx, ops); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		op := ops[i%pool]
		op.Kind, op.IfVersion, op.Record.VersionID = store.OpPut, op.Record.VersionID, op.Record.VersionID+1
		if err := s.Transact(ctx, []store.Op{op}); err != nil {
			b.Fatal(err)
		}
		ops[i%pool] = op
	}
}
