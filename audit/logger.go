package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// Sink stores a batch of events, e.g. as AuditEvent resources. On error
// the whole batch is retried, so a Sink that may store part of a batch
// before failing must skip, not duplicate, what it stored (fhirgate's
// gives each event its id before the first attempt). It must not keep
// events after it returns.
type Sink func(ctx context.Context, events []Event) error

// Errors of Log. Log wraps them together with the context's error, so
// errors.Is(err, context.DeadlineExceeded) also holds when it applies.
var (
	// ErrQueueFull: the queue stayed full until the caller's context ended.
	// The interaction must fail (503): it cannot be audited.
	ErrQueueFull = errors.New("audit: queue full")
	// ErrClosed: Log was called after Close.
	ErrClosed = errors.New("audit: logger closed")
)

// Options configures a Logger; zero fields take the defaults.
type Options struct {
	QueueSize     int           // events waiting for the writer (default 10000)
	BatchSize     int           // events per Sink call (default 100)
	FlushInterval time.Duration // longest wait for a batch to fill (default 100ms)
	Logger        *slog.Logger  // default slog.Default()
	Now           func() time.Time
	// Retries is how many failed Sink calls of one batch are logged as
	// warnings; then the batch is logged at error level, with its events,
	// and retried every MaxBackoff until it succeeds or Close gives up
	// (default 5).
	Retries int
	// Backoff is the wait after the first failure, doubled after each
	// further failure up to MaxBackoff (defaults 100ms and 5s).
	Backoff, MaxBackoff time.Duration
}

// Stats counts events since NewLogger.
type Stats struct {
	Queued   int64 // in the queue or the sink, or waiting in Log for room
	Written  int64 // accepted by the Sink
	Failed   int64 // accepted by Log but never written (Close gave up); each logged
	Rejected int64 // refused by Log (queue full until ctx ended, or closed); each logged
	Retries  int64 // failed Sink calls
}

// Logger queues events and writes them to a Sink in batches from one
// goroutine. It never drops an event silently: when the queue is full Log
// waits, and every event that cannot be written is counted and logged at
// error level with its content.
type Logger struct {
	sink Sink
	opt  Options
	log  *slog.Logger

	queue   chan Event
	closing chan struct{} // closed by Close: drain and stop
	stopped chan struct{} // closed when the writer has exited
	once    sync.Once
	// sinkCtx is passed to the sink; cancelled when Close's context ends.
	sinkCtx    context.Context
	cancelSink context.CancelFunc
	// inflight counts Log calls between their closed-check and their
	// enqueue, so the writer's final drain cannot miss an event.
	inflight atomic.Int64

	queued, written, failed, rejected, retries atomic.Int64
}

// NewLogger starts a Logger writing to sink.
func NewLogger(sink Sink, opt Options) *Logger {
	if opt.QueueSize <= 0 {
		opt.QueueSize = 10000
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 100
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = 100 * time.Millisecond
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Retries <= 0 {
		opt.Retries = 5
	}
	if opt.Backoff <= 0 {
		opt.Backoff = 100 * time.Millisecond
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 5 * time.Second
	}
	opt.MaxBackoff = max(opt.MaxBackoff, opt.Backoff)
	l := &Logger{
		sink:    sink,
		opt:     opt,
		log:     opt.Logger,
		queue:   make(chan Event, opt.QueueSize),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	l.sinkCtx, l.cancelSink = context.WithCancel(context.Background())
	go l.run()
	return l
}

// Log enqueues e (filling e.Time when zero). It returns at once while the
// queue has room; when it is full, Log waits for room (back-pressure) until
// ctx ends and then returns an error wrapping ErrQueueFull: the caller must
// fail the interaction. A rejected event is counted and logged at error level.
func (l *Logger) Log(ctx context.Context, e Event) error {
	if e.Time.IsZero() {
		e.Time = l.opt.Now()
	}
	if e.ID == "" {
		e.ID = fhir.NewID()
	}
	l.inflight.Add(1)
	defer l.inflight.Add(-1)
	select {
	case <-l.closing:
		return l.reject(e, ErrClosed)
	default:
	}
	l.queued.Add(1) // before the send, so Queued never goes negative
	select {
	case l.queue <- e:
		return nil
	default:
	}
	select {
	case l.queue <- e:
		return nil
	case <-ctx.Done():
		l.queued.Add(-1)
		return l.reject(e, fmt.Errorf("%w: %w", ErrQueueFull, context.Cause(ctx)))
	}
}

func (l *Logger) reject(e Event, err error) error {
	l.rejected.Add(1)
	l.log.Error("audit: event rejected", "err", err, "event", e)
	return err
}

// Close stops accepting events and writes everything queued, waiting for
// the Sink (graceful shutdown). When ctx ends first, the Sink is abandoned:
// every event not written is counted as failed and logged at error level,
// and Close returns an error. Close may be called more than once.
func (l *Logger) Close(ctx context.Context) error {
	l.once.Do(func() { close(l.closing) })
	select {
	case <-l.stopped:
	case <-ctx.Done():
		l.cancelSink()
		<-l.stopped
	}
	l.cancelSink()
	if n := l.failed.Load(); n > 0 {
		err := ctx.Err()
		if err == nil { // an earlier Close gave up
			err = context.Canceled
		}
		return fmt.Errorf("audit: close: %d events not recorded: %w", n, err)
	}
	return nil
}

// Flush waits until every event queued before it was called has been
// handed to the sink (or ctx ends). $hold uses it so that events of
// requests that saw a resource before it was held are stored, and then
// found and held with it.
func (l *Logger) Flush(ctx context.Context) error {
	done := make(chan struct{})
	l.inflight.Add(1)
	select {
	case <-l.closing:
		l.inflight.Add(-1)
		<-l.stopped
		return nil
	default:
	}
	select {
	case l.queue <- Event{flush: done}:
		l.inflight.Add(-1)
	case <-ctx.Done():
		l.inflight.Add(-1)
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-l.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns the current counters.
func (l *Logger) Stats() Stats {
	return Stats{
		Queued:   l.queued.Load(),
		Written:  l.written.Load(),
		Failed:   l.failed.Load(),
		Rejected: l.rejected.Load(),
		Retries:  l.retries.Load(),
	}
}

// run is the writer: it collects up to BatchSize events, waiting at most
// FlushInterval after the first, and writes them. On Close it drains.
func (l *Logger) run() {
	defer close(l.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var batch []Event
	for {
		if len(batch) == 0 {
			select {
			case e := <-l.queue:
				if e.flush != nil {
					close(e.flush)
					continue
				}
				batch = append(make([]Event, 0, l.opt.BatchSize), e)
				timer.Reset(l.opt.FlushInterval)
			case <-l.closing:
				l.drain(nil)
				return
			}
		}
		if len(batch) < l.opt.BatchSize {
			select {
			case e := <-l.queue:
				if e.flush != nil {
					timer.Stop()
					l.write(batch)
					batch = nil
					close(e.flush)
					continue
				}
				batch = append(batch, e)
				continue
			case <-timer.C:
			case <-l.closing:
				l.drain(batch)
				return
			}
		}
		timer.Stop()
		l.write(batch)
		batch = nil
	}
}

// drain writes batch and what is left in the queue once closing is closed,
// in full batches. A Log call that passed its closed-check before Close is
// counted in inflight until it has enqueued or given up, so "queue empty
// and nothing in flight" is final.
func (l *Logger) drain(batch []Event) {
	for {
		select {
		case e := <-l.queue:
			if e.flush != nil {
				if len(batch) > 0 {
					l.write(batch)
					batch = nil
				}
				close(e.flush)
				continue
			}
			batch = append(batch, e)
			if len(batch) >= l.opt.BatchSize {
				l.write(batch)
				batch = nil
			}
			continue
		default:
		}
		if l.inflight.Load() == 0 && len(l.queue) == 0 {
			break
		}
		time.Sleep(time.Millisecond) // a Log call is between its check and its send
	}
	if len(batch) > 0 {
		l.write(batch)
	}
}

// write hands batch to the sink until it succeeds or Close gives up. The
// sink's context is cancelled when Close's context ends.
func (l *Logger) write(batch []Event) {
	ctx := l.sinkCtx
	wait := l.opt.Backoff
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			l.giveUp(batch, ctx.Err())
			return
		}
		err := l.sink(ctx, batch)
		if err == nil {
			l.written.Add(int64(len(batch)))
			l.queued.Add(-int64(len(batch)))
			return
		}
		l.retries.Add(1)
		switch {
		case attempt < l.opt.Retries:
			l.log.Warn("audit: sink failed, retrying", "err", err, "attempt", attempt, "events", len(batch), "wait", wait)
		case attempt == l.opt.Retries:
			l.log.Error("audit: sink keeps failing; events held and retried until shutdown",
				"err", err, "attempt", attempt, "events", batch)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait = min(2*wait, l.opt.MaxBackoff)
	}
}

// giveUp records that batch will never be written.
func (l *Logger) giveUp(batch []Event, err error) {
	l.failed.Add(int64(len(batch)))
	l.queued.Add(-int64(len(batch)))
	for _, e := range batch {
		l.log.Error("audit: event not recorded", "err", err, "event", e)
	}
}
