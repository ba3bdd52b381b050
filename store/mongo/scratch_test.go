package mongo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/store"
)

func TestScratchBig(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, embeddedURI, Options{})
	for _, n := range []int{50, 100, 200} {
		var ops []store.Op
		for i := 0; i < n; i++ {
			ops = append(ops, store.Op{Kind: store.OpCreate, Record: benchRecord(fmt.Sprintf("o%d-%d", n, i))})
		}
		tx := newTx(ops)
		t0 := time.Now()
		if err := s.writeJournal(ctx, tx); err != nil {
			t.Fatal(err)
		}
		t.Logf("n=%d journal %v", n, time.Since(t0)); t0 = time.Now()
		s.lockAll(ctx, tx)
		t.Logf("lock %v", time.Since(t0)); t0 = time.Now()
		s.decide(ctx, tx.id, outcomeCommitted)
		t.Logf("decide %v", time.Since(t0)); t0 = time.Now()
		s.apply(ctx, tx.id, tx.docs, tx.chunks)
		t.Logf("apply %v", time.Since(t0)); t0 = time.Now()
	}
}
