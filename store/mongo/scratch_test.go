package mongo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"github.com/fhirgate/fhirgate/store"
)

func TestScratchSteps(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, embeddedURI, Options{})
	var tj, tl, tc, th, tr, td time.Duration
	N := 100
	for i := 0; i < N; i++ {
		tx := newTx([]store.Op{{Kind: store.OpCreate, Record: benchRecord(fmt.Sprintf("o%d", i))}})
		t0 := time.Now()
		s.writeJournal(ctx, tx)
		tj += time.Since(t0); t0 = time.Now()
		s.lockAll(ctx, tx)
		tl += time.Since(t0); t0 = time.Now()
		s.updateIf(ctx, s.txlog, tx.id, []cond{eq("state", statePrepared)}, bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: stateCommitted}}}})
		tc += time.Since(t0); t0 = time.Now()
		s.hist.InsertMany(ctx, []any{tx.docs[0].historyDoc()})
		th += time.Since(t0); t0 = time.Now()
		cur := tx.docs[0]
		s.writeEach(ctx, s.res, []condWrite{{ID: cur.ID, If: []cond{eq("tx", tx.id)}, Replace: cur}})
		tr += time.Since(t0); t0 = time.Now()
		s.deleteJournal(ctx, tx.id)
		td += time.Since(t0)
	}
	d := time.Duration(N)
	t.Logf("journal %v lock %v commit %v hist %v replace %v deljournal %v", tj/d, tl/d, tc/d, th/d, tr/d, td/d)
}
