package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Sender sends one email message (Mailer).
type Sender interface {
	Send(ctx context.Context, to string, msg []byte) error
	From() string
}

// Options configure the delivery worker.
type Options struct {
	Storage Storage
	// Mailer sends the emails; nil: email notifications stay pending
	// (FHIRGATE_SMTP_URL unset) until a server with a mailer runs.
	Mailer Sender
	// HTTPClient posts rest-hooks (default: a client with HookTimeout).
	HTTPClient  *http.Client
	HookTimeout time.Duration // default 10 s
	// Check decides a notification's Cond at delivery time (nil: every
	// Cond holds).
	Check func(ctx context.Context, n Notification) (bool, error)
	// Done is told of each item that ended (delivered, failed, skipped),
	// e.g. to set a Subscription's status.
	Done func(ctx context.Context, it Item, st State, err error)

	Now         func() time.Time
	Logger      *slog.Logger
	Poll        time.Duration // default 1 s
	Lease       time.Duration // default 2 min; keep above a delivery's time
	Batch       int           // items per claim, default 20
	MaxAttempts int           // default 8
	BackoffBase time.Duration // default 30 s
	BackoffMax  time.Duration // default 1 h
	// MaxAge gives up on an item this long after it was due (default 72 h).
	MaxAge time.Duration
}

// Worker delivers the outbox: it claims due items, sends them, and
// records the outcome, retrying failures with exponential backoff and
// jitter. Several workers (processes) may run on one Storage. It is the
// Outbox the rest of fhirgate enqueues into.
type Worker struct {
	o      Options
	wake   chan struct{}
	stop   context.CancelFunc
	done   chan struct{}
	closed sync.Once
}

var _ Outbox = (*Worker)(nil)

// NewWorker returns a worker; Start runs it.
func NewWorker(o Options) *Worker {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HookTimeout == 0 {
		o.HookTimeout = 10 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.HookTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	if o.Lease == 0 {
		o.Lease = 2 * time.Minute
	}
	if o.Batch == 0 {
		o.Batch = 20
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 8
	}
	if o.BackoffBase == 0 {
		o.BackoffBase = 30 * time.Second
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = time.Hour
	}
	if o.MaxAge == 0 {
		o.MaxAge = 72 * time.Hour
	}
	return &Worker{o: o, wake: make(chan struct{}, 1)}
}

// Enqueue implements Outbox: the notifications are stored, then the
// worker is woken.
func (w *Worker) Enqueue(ctx context.Context, ns ...Notification) error {
	if len(ns) == 0 {
		return nil
	}
	for _, n := range ns {
		if n.Key == "" || n.To == "" || (n.Channel != Email && n.Channel != RestHook) {
			return fmt.Errorf("notify: enqueue: key, to and channel (email, rest-hook) are required (key %q)", n.Key)
		}
	}
	if _, err := w.o.Storage.Enqueue(ctx, w.o.Now(), ns); err != nil {
		return err
	}
	w.Wake()
	return nil
}

// Wake makes the worker look for due items now.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Start runs the worker until Close.
func (w *Worker) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.stop, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		t := time.NewTicker(w.o.Poll)
		defer t.Stop()
		for {
			for {
				n, err := w.RunOnce(ctx)
				if err != nil && ctx.Err() == nil {
					w.o.Logger.Error("notifications: delivery pass failed", "err", err)
				}
				if n == 0 || ctx.Err() != nil {
					break
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-w.wake:
			}
		}
	}()
}

// Close stops the worker, letting the deliveries under way finish (they
// are bounded by the SMTP and hook timeouts); what is not done stays in
// the outbox for the next start.
func (w *Worker) Close() {
	w.closed.Do(func() {
		if w.stop != nil {
			w.stop()
			<-w.done
		}
	})
}

// RunOnce claims one batch of due items and delivers them; it returns
// how many it claimed.
//
// A claim under way when ctx ends (Close) finishes, and what it claimed
// is delivered: a claim is several writes on some stores (store/mongo:
// one lease per item), and an item leased by a claim cut short would
// wait for its lease to end (Lease, 2 min) after a restart.
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil // closing: claim nothing more
	}
	now := w.o.Now()
	its, err := w.o.Storage.Claim(context.WithoutCancel(ctx), now, w.o.Lease, w.o.Batch)
	var errs []error
	if err != nil {
		errs = append(errs, err) // the items claimed before it are still delivered
	}
	for _, it := range its {
		// A delivery under way finishes even when Close is called.
		if err := w.deliver(context.WithoutCancel(ctx), it); err != nil {
			errs = append(errs, err)
		}
	}
	return len(its), errors.Join(errs...)
}

func (w *Worker) deliver(ctx context.Context, it Item) error {
	st := w.o.Storage
	now := w.o.Now()
	finish := func(s State, msg string, cause error) error {
		if err := st.Finish(ctx, it, s, now, msg); err != nil {
			return err
		}
		w.o.Logger.Info("notification ended undelivered", "key", it.Key, "state", s, "reason", msg)
		if w.o.Done != nil {
			w.o.Done(ctx, it, s, cause)
		}
		return nil
	}
	if !it.Expires.IsZero() && now.After(it.Expires) {
		return finish(Failed, "expired before delivery", nil)
	}
	if it.Cond != "" && w.o.Check != nil {
		ok, err := w.o.Check(ctx, it.Notification)
		if err != nil {
			return w.retry(ctx, it, now, fmt.Errorf("condition: %w", err))
		}
		if !ok {
			return finish(Skipped, "no longer applies ("+it.Cond+")", nil)
		}
	}
	var err error
	switch it.Channel {
	case Email:
		if w.o.Mailer == nil {
			// No SMTP server configured: keep it for one that has.
			return st.Retry(ctx, it, now.Add(w.o.BackoffMax), "no SMTP server configured (FHIRGATE_SMTP_URL)")
		}
		err = w.sendEmail(ctx, it)
	case RestHook:
		err = w.postHook(ctx, it)
	default:
		return finish(Failed, "unknown channel "+string(it.Channel), nil)
	}
	if err == nil {
		if err := st.Delivered(ctx, it, w.o.Now()); err != nil {
			return err
		}
		if w.o.Done != nil {
			w.o.Done(ctx, it, Delivered, nil)
		}
		return nil
	}
	return w.retry(ctx, it, now, err)
}

// retry reschedules a failed item, or gives up after MaxAttempts or MaxAge.
func (w *Worker) retry(ctx context.Context, it Item, now time.Time, cause error) error {
	attempts := it.Attempts + 1
	since := it.Created
	if it.NotBefore.After(since) {
		since = it.NotBefore
	}
	if attempts >= w.o.MaxAttempts || now.Sub(since) > w.o.MaxAge {
		msg := fmt.Sprintf("gave up after %d attempts: %v", attempts, cause)
		if err := w.o.Storage.Finish(ctx, it, Failed, now, msg); err != nil {
			return err
		}
		w.o.Logger.Error("notification failed", "key", it.Key, "attempts", attempts, "err", cause)
		if w.o.Done != nil {
			w.o.Done(ctx, it, Failed, cause)
		}
		return nil
	}
	due := now.Add(Backoff(attempts, w.o.BackoffBase, w.o.BackoffMax))
	w.o.Logger.Warn("notification not delivered; retrying", "key", it.Key, "attempt", attempts, "next", due, "err", cause)
	return w.o.Storage.Retry(ctx, it, due, cause.Error())
}

func (w *Worker) sendEmail(ctx context.Context, it Item) error {
	e, err := Render(it.Template, it.Lang, it.Link)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(it.Key))
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	msgID := "<" + hex.EncodeToString(sum[:12]) + "." + hex.EncodeToString(rnd[:]) + "@fhirgate>"
	msg := e.Message(w.o.Mailer.From(), it.To, w.o.Now().UTC().Format(time.RFC1123Z), msgID)
	return w.o.Mailer.Send(ctx, it.To, msg)
}

// postHook POSTs a rest-hook (R4 subscription.html#rest-hook): 2xx is
// delivered; anything else, or no answer within HookTimeout, is retried.
func (w *Worker) postHook(ctx context.Context, it Item) error {
	ctx, cancel := context.WithTimeout(ctx, w.o.HookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, it.To, bytes.NewReader(it.Body))
	if err != nil {
		return fmt.Errorf("rest-hook: %w", err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	for k, v := range it.Headers {
		req.Header.Set(k, v)
	}
	resp, err := w.o.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("rest-hook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("rest-hook: %s answered %s", it.To, resp.Status)
	}
	return nil
}
