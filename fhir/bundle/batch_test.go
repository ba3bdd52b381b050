package bundle

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// inflight wraps a Handler and records how many Handle calls overlapped.
type inflight struct {
	*fake
	mu       sync.Mutex
	now, max int
	order    []string // paths, in the order their calls began
}

func (h *inflight) Handle(ctx context.Context, req *fhir.Request) *fhir.Response {
	h.mu.Lock()
	h.now++
	h.max = max(h.max, h.now)
	h.order = append(h.order, req.Method+" "+req.Path)
	h.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // a store commit's worth
	defer func() { h.mu.Lock(); h.now--; h.mu.Unlock() }()
	return h.fake.Handle(ctx, req)
}

// R4 http.html#brules: batch entries are independent, so fhirgate runs
// its writes several at a time (the store commits them together), except
// that entries naming the same resource keep their Bundle order.
func TestBatchRunsIndependentWritesTogether(t *testing.T) {
	h := &inflight{fake: newFake()}
	var es []string
	for i := range 8 {
		es = append(es, ent("", "PUT", fmt.Sprintf("Patient/p%d", i), fmt.Sprintf(`{"resourceType":"Patient","id":"p%d"}`, i)))
	}
	for _, g := range []string{"male", "female", "other"} {
		es = append(es, ent("", "PUT", "Patient/same", `{"resourceType":"Patient","id":"same","gender":"`+g+`"}`))
	}
	es = append(es, ent("", "GET", "Patient/same", ""))
	resp := Process(context.Background(), h, []byte(bundleOf("batch", es...)), Options{})
	if resp.Status != 200 {
		t.Fatalf("batch: %d %s", resp.Status, resp.Body)
	}
	if h.max < 2 {
		t.Errorf("at most %d entries ran at once, want several", h.max)
	}
	if h.max > batchParallel {
		t.Errorf("%d entries ran at once, want at most %d", h.max, batchParallel)
	}
	if got := string(h.res["Patient/same"]); !strings.Contains(got, `"other"`) {
		t.Errorf("Patient/same is %s, want the last entry's", got)
	}
	if v := h.ver["Patient/same"]; v != 3 {
		t.Errorf("Patient/same at version %d, want 3", v)
	}
	if last := h.order[len(h.order)-1]; last != "GET Patient/same" {
		t.Errorf("last call %q: reads run after the writes", last)
	}
	// The GET entry's response shows the last write.
	if !strings.Contains(string(resp.Body), `"gender":"other"`) {
		t.Errorf("GET entry does not show the last write: %s", resp.Body)
	}
}
