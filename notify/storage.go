package notify

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Storage is the durable outbox and the notification state beside it, in
// the store's database (notify/sqlitestore: notify_* tables of
// <data dir>/fhirgate.db; notify/mongostore: notify_* collections). Every
// backend passes notify/storagetest.
//
// Delivery is at least once, never concurrent: Claim leases an item to one
// caller (across processes) until the lease ends; the holder then calls
// Delivered, Retry or Finish with the Item it was given, which fail with
// ErrLeaseLost when another caller claimed the item since (the lease
// ended first: keep deliveries shorter than the lease).
type Storage interface {
	// Enqueue stores each notification as a pending item due at its
	// NotBefore (now when zero). A key stored before, in any state, is
	// left as it is: added[i] reports whether ns[i] was new.
	Enqueue(ctx context.Context, now time.Time, ns []Notification) (added []bool, err error)
	// Claim leases up to max pending items due at now whose lease ended,
	// oldest due first, for lease. Each returned Item's Seq identifies
	// the lease.
	Claim(ctx context.Context, now time.Time, lease time.Duration, max int) ([]Item, error)
	// Delivered marks a claimed item delivered.
	Delivered(ctx context.Context, it Item, now time.Time) error
	// Retry records a failed attempt (Attempts+1, LastError) and makes the
	// item due again at due, lease released.
	Retry(ctx context.Context, it Item, due time.Time, msg string) error
	// Finish ends a claimed item without delivery: Failed (attempts or
	// time exhausted, kept for the operator) or Skipped (no longer
	// relevant, e.g. a cancelled appointment).
	Finish(ctx context.Context, it Item, st State, now time.Time, msg string) error
	// Item returns the item of key (ErrNotFound).
	Item(ctx context.Context, key string) (Item, error)
	// Items lists up to limit items in state st ("" any), oldest first.
	Items(ctx context.Context, st State, limit int) ([]Item, error)

	// Prefs returns a person's preferences ("Patient/7"); ok false when
	// none were ever set.
	Prefs(ctx context.Context, person string) (p Prefs, ok bool, err error)
	SetPrefs(ctx context.Context, person string, p Prefs) error

	// State returns a named state document (nil when absent): the change
	// feed's cursor, the release scheduler's last run, subscription
	// counters. Only the holder of the producer's lock writes them.
	State(ctx context.Context, name string) ([]byte, error)
	SetState(ctx context.Context, name string, b []byte) error

	Close() error
}

// State is the state of an outbox item.
type State string

const (
	Pending   State = "pending"
	Delivered State = "delivered"
	Failed    State = "failed"  // gave up: attempts exhausted or expired
	Skipped   State = "skipped" // no longer relevant at delivery time
)

// Item is a notification in the outbox.
type Item struct {
	Notification
	State     State
	Due       time.Time // next attempt
	Attempts  int       // failed attempts so far
	LastError string
	Created   time.Time
	Done      time.Time // delivered, failed or skipped at
	// Seq is the lease number: Claim increments it, and the Delivered,
	// Retry and Finish of a claim apply only while it is current.
	Seq        int64
	LeaseUntil time.Time
}

// Prefs are one person's notification preferences: opt-in per kind
// ("message", "result", "reminder"; absent: the site's default) and the
// language of the emails ("en", "fr"; "": the person's
// Patient.communication, else English).
type Prefs struct {
	Kinds   map[string]bool `json:"kinds,omitempty"`
	Lang    string          `json:"lang,omitempty"`
	Updated time.Time       `json:"updated,omitzero"`
}

// OptedIn reports whether kind is on, def when never set.
func (p Prefs) OptedIn(kind string, def bool) bool {
	if v, ok := p.Kinds[kind]; ok {
		return v
	}
	return def
}

var (
	ErrNotFound  = errors.New("notify: not found")
	ErrLeaseLost = errors.New("notify: lease lost (the item was claimed again or finished)")
)

// Backoff is the delay before attempt n+1 after n failed attempts:
// exponential from base, capped at max, with full jitter in its upper
// half (so retries of many items spread out), never below base.
func Backoff(n int, base, max time.Duration) time.Duration {
	if n < 1 {
		n = 1
	}
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	d = half + time.Duration(rand.Int64N(int64(half)+1))
	if d < base {
		d = base
	}
	return d
}
