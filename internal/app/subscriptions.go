package app

// FHIR Subscriptions for apps (docs/notifications.md#subscriptions): R4
// rest-hook Subscriptions with the Subscriptions Backport IG's empty /
// id-only payloads, delivered by the notification outbox. The engine is
// notify/subscription; this file wires it to the pipeline (a write hook
// on Subscription, the search constraint of the owner), the change feed
// and the delivery worker.

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/notify/subscription"
	"github.com/fhirgate/fhirgate/store"
)

// withSubscriptionParams adds the Subscription "patient" search parameter
// (subscription.PatientParam): a patient app's Subscription is in its
// patient's compartment; and Communication "unread-for" and
// "open-thread-for" (server.InboxParams) for the messaging inboxes. A site's own
// SearchParameters load after them.
func withSubscriptionParams(reg *search.Registry) (*search.Registry, error) {
	reg, err := search.LoadCustom(reg, []byte(subscription.PatientParam))
	if err != nil {
		return nil, err
	}
	// And the secure-messaging inboxes' (server.InboxParams).
	for _, p := range server.InboxParams {
		if reg, err = search.LoadCustom(reg, []byte(p)); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// subscriptions connects the engine to the worker and the feed; the
// worker and the feed are built before the engine (which enqueues into
// the worker), so they call it through these methods.
type subscriptions struct {
	a   *App
	st  notify.Storage
	eng *subscription.Engine
}

func (a *App) newSubscriptions(st notify.Storage) *subscriptions {
	return &subscriptions{a: a, st: st}
}

// start builds the engine on the worker's outbox and registers the
// Subscription write hook (before the app serves).
func (s *subscriptions) start(out notify.Outbox) {
	a := s.a
	s.eng = subscription.New(subscription.Config{
		Store: a.Store, Storage: s.st, Outbox: out, Registry: a.Registry, Base: a.Opt.BaseURL,
		Visible: a.Server.Visible, Derive: a.Server.Derive, Now: a.Opt.Now, Logger: a.Opt.Logger,
	})
	a.Server.RegisterWriteHook("Subscription", func(ctx context.Context, w server.WriteCall) error {
		return s.eng.Prepare(ctx, subscription.Write{ID: w.ID, Object: w.Object, Principal: w.Principal,
			PatientFacing: w.PatientFacing, Patients: w.Patients})
	})
	// Subscriptions Backport IG operations, on a Subscription the caller
	// may read.
	a.Server.RegisterOperation(server.ExtraOperation{Name: "$status", Type: "Subscription",
		Definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
		Doc:        "The Subscription's status and its number of events since it started (a searchset of SubscriptionStatus Parameters, Subscriptions Backport IG).",
		Run: func(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
			b, err := s.eng.Status(ctx, call.Resource)
			return bundleResponse(b, err)
		}})
	a.Server.RegisterOperation(server.ExtraOperation{Name: "$events", Type: "Subscription",
		Definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
		Doc: "The Subscription's events eventsSinceNumber..eventsUntilNumber (at most 100 a call, the latest 1,000 kept), content empty or id-only; " +
			"an event the caller could not read now has no focus (Subscriptions Backport IG).",
		Run: func(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
			ps, err := fhir.ReadParams(call.Request)
			if err != nil {
				return nil, err
			}
			var since, until int64
			for _, p := range []struct {
				name string
				to   *int64
			}{{"eventsSinceNumber", &since}, {"eventsUntilNumber", &until}} {
				if v := ps.Get(p.name); v != "" {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil || n < 1 {
						return nil, fhir.Invalid(p.name, "%s must be a positive integer, not %q", p.name, v)
					}
					*p.to = n
				}
			}
			if since > 0 && until > 0 && until < since {
				return nil, fhir.Invalid("eventsUntilNumber", "eventsUntilNumber is before eventsSinceNumber")
			}
			b, err := s.eng.Events(ctx, call.Resource, call.Principal, since, until, ps.Get("content"))
			return bundleResponse(b, err)
		}})
}

func bundleResponse(b []byte, err error) (*fhir.Response, error) {
	if err != nil {
		return nil, err
	}
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: b}, nil
}

// onVersion is the feed's Subscriptions callback.
func (s *subscriptions) onVersion(ctx context.Context, rec store.Record) error {
	if s.eng == nil {
		return nil
	}
	return s.eng.OnVersion(ctx, rec)
}

// done is the worker's Done callback.
func (s *subscriptions) done(ctx context.Context, it notify.Item, st notify.State, err error) {
	if s.eng != nil {
		s.eng.Done(ctx, it, st, err)
	}
}

// check decides the Cond of subscription notifications ("Subscription/...")
// and leaves the others to next.
func (s *subscriptions) check(next func(context.Context, notify.Notification) (bool, error)) func(context.Context, notify.Notification) (bool, error) {
	return func(ctx context.Context, n notify.Notification) (bool, error) {
		if strings.HasPrefix(n.Cond, "Subscription/") {
			if s.eng == nil {
				return false, nil
			}
			return s.eng.Check(ctx, n)
		}
		return next(ctx, n)
	}
}
