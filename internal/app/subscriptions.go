package app

// FHIR Subscriptions for apps (docs/notifications.md#subscriptions): R4
// rest-hook Subscriptions with the Subscriptions Backport IG's empty /
// id-only payloads, delivered by the notification outbox. The engine is
// notify/subscription; this file wires it to the pipeline (a write hook
// on Subscription, the search constraint of the owner), the change feed
// and the delivery worker.

import (
	"context"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/notify/subscription"
	"github.com/fhirgate/fhirgate/store"
)

// withSubscriptionParams adds the Subscription "patient" search parameter
// (subscription.PatientParam): a patient app's Subscription is in its
// patient's compartment. A site's own SearchParameters load after it.
func withSubscriptionParams(reg *search.Registry) (*search.Registry, error) {
	return search.LoadCustom(reg, []byte(subscription.PatientParam))
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
