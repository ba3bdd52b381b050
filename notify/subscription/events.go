package subscription

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// EventLog is how many of a Subscription's latest events $events can
// return (older ones are overwritten: a ring in notify storage).
const EventLog = 1000

// MaxEvents bounds the events one $events answer holds.
const MaxEvents = 100

// loggedEvent is one event as the log keeps it: what it named, not the
// content.
type loggedEvent struct {
	N       int64     `json:"n"`
	Type    string    `json:"type"`
	ID      string    `json:"id"`
	Vid     int64     `json:"vid"`
	Deleted bool      `json:"deleted,omitempty"`
	At      time.Time `json:"at"`
}

func eventState(id string, n int64) string {
	return "subscription/" + id + "/event/" + strconv.FormatInt(n%EventLog, 10)
}

func (e *Engine) logEvent(ctx context.Context, id string, n int64, ev loggedEvent) error {
	ev.N = n
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("subscription: event log: %w", err)
	}
	return e.c.Storage.SetState(ctx, eventState(id, n), b)
}

// loggedAt returns event n of Subscription id (ok false when it was
// overwritten or never logged).
func (e *Engine) loggedAt(ctx context.Context, id string, n int64) (loggedEvent, bool, error) {
	b, err := e.c.Storage.State(ctx, eventState(id, n))
	if err != nil || b == nil {
		return loggedEvent{}, false, err
	}
	var ev loggedEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return loggedEvent{}, false, fmt.Errorf("subscription: event log: %w", err)
	}
	return ev, ev.N == n, nil
}

// current parses a stored Subscription version for the operations.
func (e *Engine) current(rec store.Record) (*sub, error) {
	s, err := e.parse(rec.Raw)
	if err != nil {
		return nil, unprocessable("Subscription", "this Subscription is not one the server can report on: %v", err)
	}
	s.ID, s.Vid = rec.ID, rec.VersionID
	if s.Status == "active" && s.ended(e.c.Now()) {
		s.Status = "off"
	}
	return s, nil
}

// Status answers Subscription/[id]/$status (Subscriptions Backport IG,
// OperationDefinition backport-subscription-status): a searchset Bundle
// holding the SubscriptionStatus (type query-status) of rec, the
// Subscription's current version the caller may read.
func (e *Engine) Status(ctx context.Context, rec store.Record) ([]byte, error) {
	s, err := e.current(rec)
	if err != nil {
		return nil, err
	}
	n, err := e.counter(ctx, s.ID)
	if err != nil {
		return nil, err
	}
	return e.bundleWith(s, "query-status", s.Status, n, nil, Empty, "searchset", e.c.Now())
}

// Events answers Subscription/[id]/$events (backport-subscription-events):
// the events numbered since..until (0: from/to the latest; at most
// MaxEvents, the earliest first) as a history Bundle whose
// SubscriptionStatus has type query-event. content is empty or id-only
// (default: the Subscription's own, never more than it); an event whose
// resource the caller p could not find by a search now is reported
// without its focus. Events older than the log (EventLog) are left out.
func (e *Engine) Events(ctx context.Context, rec store.Record, p *smart.Principal, since, until int64, content string) ([]byte, error) {
	s, err := e.current(rec)
	if err != nil {
		return nil, err
	}
	switch content {
	case "":
		content = s.Content
	case Empty, IDOnly:
		if content == IDOnly && s.Content == Empty {
			return nil, fhir.Invalid("content", "this Subscription's notifications are empty: its events are too")
		}
	case "full-resource":
		return nil, fhir.Invalid("content", "full-resource is not supported (no health information is sent): use id-only or empty")
	default:
		return nil, fhir.Invalid("content", "unknown content %q (empty, id-only)", content)
	}
	n, err := e.counter(ctx, s.ID)
	if err != nil {
		return nil, err
	}
	if until <= 0 || until > n {
		until = n
	}
	if since <= 0 {
		since = max(1, until-MaxEvents+1)
	}
	if since < until-EventLog+1 {
		since = until - EventLog + 1
	}
	if until-since+1 > MaxEvents {
		until = since + MaxEvents - 1
	}
	var evs []eventRef
	for k := since; k <= until; k++ {
		ev, ok, err := e.loggedAt(ctx, s.ID, k)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		ref := eventRef{N: ev.N, Type: ev.Type, ID: ev.ID, Vid: ev.Vid, Deleted: ev.Deleted, At: ev.At}
		if content == IDOnly {
			seen, err := e.visibleEvent(ctx, p, ev)
			if err != nil {
				return nil, err
			}
			if !seen {
				ref.Type = "" // reported without its focus
			}
		}
		evs = append(evs, ref)
	}
	return e.bundleWith(s, "query-event", s.Status, n, evs, content, "history", e.c.Now())
}

// visibleEvent reports whether p could find the version an event named
// (for a deletion, the version it ended) by a search now.
func (e *Engine) visibleEvent(ctx context.Context, p *smart.Principal, ev loggedEvent) (bool, error) {
	vid := ev.Vid
	if ev.Deleted {
		vid--
	}
	if vid < 1 {
		return false, nil
	}
	rec, err := e.c.Store.VRead(ctx, ev.Type, ev.ID, vid)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return e.c.Visible(ctx, p, rec)
}
