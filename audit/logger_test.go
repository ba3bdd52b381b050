package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Sink that keeps what it was given; fail(n) makes the next
// n calls fail, gate (when set) blocks each call until it can receive.
type recorder struct {
	mu      sync.Mutex
	batches [][]Event
	calls   int
	failN   int
	tried   [][]string // the event IDs of every call, failed ones too
	gate    chan struct{}
	entered chan struct{} // receives once per call, when set
}

func (r *recorder) sink(ctx context.Context, events []Event) error {
	if r.entered != nil {
		r.entered <- struct{}{}
	}
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	var ids []string
	for _, e := range events {
		ids = append(ids, e.ID)
	}
	r.tried = append(r.tried, ids)
	if r.failN > 0 {
		r.failN--
		return errors.New("store unavailable")
	}
	r.batches = append(r.batches, slices.Clone(events))
	return nil
}

// ids returns the RequestIDs written, in order.
func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.batches {
		for _, e := range b {
			out = append(out, e.RequestID)
		}
	}
	return out
}

// logBuffer is a concurrency-safe slog destination.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestLogger(r *recorder, opt Options) (*Logger, *logBuffer) {
	buf := &logBuffer{}
	opt.Logger = slog.New(slog.NewTextHandler(buf, nil))
	return NewLogger(r.sink, opt), buf
}

func ev(i int) Event { return Event{Interaction: "read", RequestID: "r" + strconv.Itoa(i)} }

func closeNow(t *testing.T, l *Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// A slow sink fills the queue; Log then blocks, and fails only when its
// context ends; a blocked Log succeeds once there is room; nothing is lost.
func TestBackPressure(t *testing.T) {
	r := &recorder{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	l, logs := newTestLogger(r, Options{QueueSize: 2, BatchSize: 1, FlushInterval: time.Hour})
	ctx := context.Background()
	if err := l.Log(ctx, ev(1)); err != nil {
		t.Fatal(err)
	}
	select { // a full batch goes to the sink at once, whatever FlushInterval
	case <-r.entered: // the writer holds event 1 in the (blocked) sink
	case <-time.After(10 * time.Second):
		t.Fatal("full batch not written")
	}
	for i := 2; i <= 3; i++ {
		if err := l.Log(ctx, ev(i)); err != nil {
			t.Fatalf("Log %d: %v", i, err)
		}
	}
	if s := l.Stats(); s.Queued != 3 {
		t.Errorf("Queued = %d, want 3", s.Queued)
	}

	// The queue is full: Log waits while its context lives.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Log(cctx, ev(4)) }()
	select {
	case err := <-done:
		t.Fatalf("Log returned %v with a full queue, want it to block", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	err := <-done
	if !errors.Is(err, ErrQueueFull) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Log = %v, want ErrQueueFull and context.Canceled", err)
	}
	if s := l.Stats(); s.Rejected != 1 || s.Queued != 3 {
		t.Errorf("stats %+v, want 1 rejected, 3 queued", s)
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "RequestID:r4") {
		t.Errorf("rejected event not logged at error with its content:\n%s", out)
	}

	// A blocked Log succeeds when the sink makes room.
	go func() { done <- l.Log(ctx, ev(5)) }()
	go func() {
		for range r.entered {
			r.gate <- struct{}{}
		}
	}()
	r.gate <- struct{}{} // release event 1
	if err := <-done; err != nil {
		t.Fatalf("blocked Log: %v", err)
	}
	closeNow(t, l)
	close(r.entered)
	if got, want := r.ids(), []string{"r1", "r2", "r3", "r5"}; !slices.Equal(got, want) {
		t.Errorf("written %v, want %v", got, want)
	}
	if s := l.Stats(); s.Written != 4 || s.Queued != 0 || s.Failed != 0 {
		t.Errorf("stats %+v", s)
	}
}

// Close writes everything queued, in batches of at most BatchSize, without
// waiting for FlushInterval.
func TestCloseFlushes(t *testing.T) {
	r := &recorder{}
	l, _ := newTestLogger(r, Options{BatchSize: 100, FlushInterval: time.Hour})
	for i := range 250 {
		if err := l.Log(context.Background(), ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	closeNow(t, l)
	if n := len(r.ids()); n != 250 {
		t.Fatalf("%d events written, want 250", n)
	}
	for _, b := range r.batches {
		if len(b) > 100 {
			t.Errorf("batch of %d > BatchSize", len(b))
		}
	}
	if s := l.Stats(); s.Written != 250 || s.Queued != 0 {
		t.Errorf("stats %+v", s)
	}
	if err := l.Log(context.Background(), ev(999)); !errors.Is(err, ErrClosed) {
		t.Errorf("Log after Close = %v, want ErrClosed", err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// A partial batch is written after FlushInterval, not only at Close.
func TestFlushInterval(t *testing.T) {
	r := &recorder{entered: make(chan struct{}, 1)}
	l, _ := newTestLogger(r, Options{BatchSize: 100, FlushInterval: 5 * time.Millisecond})
	defer closeNow(t, l)
	for i := range 3 {
		if err := l.Log(context.Background(), ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-r.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("partial batch never written")
	}
	if s := l.Stats(); s.Written+s.Queued != 3 {
		t.Errorf("stats %+v", s)
	}
	if e := <-waitWritten(l, 3); e != nil {
		t.Fatal(e)
	}
	if got := r.ids(); !slices.Equal(got, []string{"r0", "r1", "r2"}) {
		t.Errorf("written %v", got)
	}
}

// waitWritten reports nil once n events are written (or an error after 10s).
func waitWritten(l *Logger, n int64) <-chan error {
	ch := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for l.Stats().Written < n {
			if time.Now().After(deadline) {
				ch <- fmt.Errorf("written %d, want %d", l.Stats().Written, n)
				return
			}
			time.Sleep(time.Millisecond)
		}
		ch <- nil
	}()
	return ch
}

// A failing sink is retried with the same batch; after Retries failures the
// batch is logged at error level with its events, and retrying goes on.
func TestRetry(t *testing.T) {
	r := &recorder{failN: 4}
	l, logs := newTestLogger(r, Options{BatchSize: 3, FlushInterval: time.Hour, Retries: 2, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	for i := range 3 {
		if err := l.Log(context.Background(), ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	closeNow(t, l)
	if got := r.ids(); !slices.Equal(got, []string{"r0", "r1", "r2"}) {
		t.Errorf("written %v", got)
	}
	if s := l.Stats(); s.Retries != 4 || s.Written != 3 || s.Failed != 0 {
		t.Errorf("stats %+v, want 4 retries, 3 written", s)
	}
	// Every attempt carries the same event ids (a sink that stored part
	// of a batch rewrites, not duplicates, it).
	first := r.tried[0]
	if len(first) != 3 || first[0] == "" || first[0] == first[1] || first[1] == first[2] {
		t.Fatalf("event ids %v: want 3 distinct", first)
	}
	for i, ids := range r.tried {
		if !slices.Equal(ids, first) {
			t.Errorf("attempt %d carried ids %v, attempt 0 %v", i, ids, first)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1 (attempt 1 of Retries 2):\n%s", n, out)
	}
	if n := strings.Count(out, "level=ERROR"); n != 1 || !strings.Contains(out, "RequestID:r2") {
		t.Errorf("want one error naming the events:\n%s", out)
	}
}

// When Close's deadline passes with the sink still failing, the events are
// counted and logged as not recorded, and Close reports it.
func TestCloseDeadline(t *testing.T) {
	r := &recorder{failN: 1 << 30}
	l, logs := newTestLogger(r, Options{BatchSize: 2, Backoff: time.Millisecond})
	for i := range 5 {
		if err := l.Log(context.Background(), ev(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := l.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want DeadlineExceeded", err)
	}
	if s := l.Stats(); s.Failed != 5 || s.Written != 0 || s.Queued != 0 {
		t.Errorf("stats %+v, want 5 failed", s)
	}
	out := logs.String()
	for i := range 5 {
		if !strings.Contains(out, "RequestID:r"+strconv.Itoa(i)+" ") {
			t.Errorf("event r%d not logged:\n%s", i, out)
		}
	}
	if n := strings.Count(out, "audit: event not recorded"); n != 5 {
		t.Errorf("%d 'not recorded' lines, want 5", n)
	}
}

// Many goroutines log through a small queue while Close runs: every Log
// that returned nil is written exactly once; every other got ErrClosed.
func TestConcurrent(t *testing.T) {
	r := &recorder{}
	l, _ := newTestLogger(r, Options{QueueSize: 8, BatchSize: 5, FlushInterval: time.Millisecond})
	var (
		mu       sync.Mutex
		accepted []string
		wg       sync.WaitGroup
	)
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				e := Event{RequestID: fmt.Sprintf("g%d-%d", g, i)}
				err := l.Log(context.Background(), e)
				switch {
				case err == nil:
					mu.Lock()
					accepted = append(accepted, e.RequestID)
					mu.Unlock()
				case !errors.Is(err, ErrClosed):
					t.Errorf("Log: %v", err)
				}
			}
		})
	}
	time.Sleep(5 * time.Millisecond) // let some Logs through before closing
	closeNow(t, l)
	wg.Wait()
	got := r.ids()
	slices.Sort(got)
	slices.Sort(accepted)
	if !slices.Equal(got, accepted) {
		t.Errorf("written %d events, accepted %d", len(got), len(accepted))
	}
	t.Logf("accepted %d of 2400", len(accepted))
	if s := l.Stats(); s.Written != int64(len(accepted)) || s.Queued != 0 || s.Written+s.Rejected != 2400 {
		t.Errorf("stats %+v, accepted %d", s, len(accepted))
	}
}

// Log fills in the time from Options.Now when the event has none.
func TestLogStampsTime(t *testing.T) {
	r := &recorder{}
	l, _ := newTestLogger(r, Options{Now: func() time.Time { return t0 }})
	if err := l.Log(context.Background(), Event{RequestID: "a"}); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	if err := l.Log(context.Background(), Event{RequestID: "b", Time: at}); err != nil {
		t.Fatal(err)
	}
	closeNow(t, l)
	if b := r.batches; len(b) == 0 || len(b[0]) != 2 || !b[0][0].Time.Equal(t0) || !b[0][1].Time.Equal(at) {
		t.Errorf("batches %+v", b)
	}
}

func BenchmarkLog(b *testing.B) {
	l := NewLogger(func(context.Context, []Event) error { return nil }, Options{})
	e := base("read")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Log(ctx, e); err != nil {
				b.Fatal(err)
			}
		}
	})
	if err := l.Close(ctx); err != nil {
		b.Fatal(err)
	}
}
