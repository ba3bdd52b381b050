package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/store"
)

// The WAL is checkpointed beside the writer (checkpoint.go): a long run of
// writes leaves it reused from its start, not grown to their size, though
// the writer's own automatic checkpoint waits for backstopPages (200 MB)
// and a background checkpoint under load never finds every frame copied.
func TestCheckpointsBesideTheWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fhirgate.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	s.ckpt.restart = 1024 // 4 MiB, before the first commit
	pad := strings.Repeat("x", 8000)
	const total = 40 << 20 // bytes of resources written
	written, n := 0, 0
	for written < total {
		ops := make([]store.Op, 50)
		for i := range ops {
			n++
			raw := fmt.Sprintf(`{"resourceType":"Basic","id":"b%d","code":{"text":"%s"}}`, n, pad)
			ops[i] = store.Op{Kind: store.OpCreate, Record: store.Record{Type: "Basic", ID: fmt.Sprintf("b%d", n), VersionID: 1, LastUpdated: time.Now(), Raw: []byte(raw)}}
			written += len(raw)
		}
		if err := s.Transact(ctx, ops); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // a load, not one burst: the checkpointer runs every 250 ms
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > total/2 {
		t.Errorf("WAL is %d MB after %d MB written: not checkpointed beside the writer", fi.Size()>>20, total>>20)
	}
	t.Logf("WAL %d MB after %d MB written, %d background checkpoints", fi.Size()>>20, total>>20, s.ckpt.runs.Load())
}
