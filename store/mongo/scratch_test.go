package mongo

import (
	"context"
	"testing"
	"time"
)

func TestScratchTiming(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, embeddedURI, Options{})
	for k := 1; k <= 5; k++ {
		t0 := time.Now()
		if err := s.Transact(ctx, crashOps(k)); err != nil {
			t.Fatal(err)
		}
		t.Logf("tx %d: %v", k, time.Since(t0))
	}
	t0 := time.Now()
	tx := &tx{id: randomID()}
	for _, op := range crashOps(6) {
		d := toDoc(op.Record)
		tx.docs = append(tx.docs, d)
		tx.keys = append(tx.keys, jkey{K: d.ID, If: op.IfVersion})
	}
	s.writeJournal(ctx, tx)
	t.Logf("journal %v", time.Since(t0))
	t0 = time.Now()
	s.lockAll(ctx, tx)
	t.Logf("lock %v", time.Since(t0))
	t0 = time.Now()
	s.commit(ctx, tx)
	t.Logf("commit+apply %v", time.Since(t0))
	t0 = time.Now()
}
