package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/authz/visit"
	"github.com/fhirgate/fhirgate/authz/visit/mongostore"
	"github.com/fhirgate/fhirgate/authz/visit/sqlitestore"
	"github.com/fhirgate/fhirgate/notify"
)

// VisitOptions configure eVisit invitations (authz/visit, docs/evisit.md).
// The emails go through the notification outbox (notify.go: durable,
// retried, FHIRGATE_SMTP_URL), template "invitation".
type VisitOptions struct {
	// Grace (FHIRGATE_VISIT_GRACE, default 30m): invitations expire this
	// long after the Appointment's end.
	Grace time.Duration
	// SessionTTL (FHIRGATE_VISIT_SESSION_TTL, default 2h) bounds the
	// session the PIN opens (never past the invitation's expiry).
	SessionTTL time.Duration
	// MaxAttempts (FHIRGATE_VISIT_MAX_ATTEMPTS, default 5): wrong PINs
	// before an invitation locks.
	MaxAttempts int
	// Outbox, when set, sends the emails instead of the App's outbox.
	Outbox notify.Outbox
}

// VisitFromEnv reads VisitOptions from the environment.
func VisitFromEnv(getenv func(string) string) (VisitOptions, error) {
	var o VisitOptions
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"FHIRGATE_VISIT_GRACE", &o.Grace}, {"FHIRGATE_VISIT_SESSION_TTL", &o.SessionTTL}} {
		if v := getenv(d.name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x <= 0 {
				return o, fmt.Errorf("%s: %q is not a positive duration", d.name, v)
			}
			*d.to = x
		}
	}
	if v := getenv("FHIRGATE_VISIT_MAX_ATTEMPTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10 {
			return o, fmt.Errorf("FHIRGATE_VISIT_MAX_ATTEMPTS: %q is not an integer from 1 to 10", v)
		}
		o.MaxAttempts = n
	}
	return o, nil
}

// appOutbox is the App's notification outbox, looked up when an
// invitation is sent (startNotify runs after startVisit).
type appOutbox struct{ a *App }

func (o appOutbox) Enqueue(ctx context.Context, ns ...notify.Notification) error {
	n := o.a.Notify
	if n == nil || n.Worker == nil {
		return errors.New("app: the notification outbox is not running")
	}
	return n.Outbox().Enqueue(ctx, ns...)
}

// visitParts is the running invitations service.
type visitParts struct {
	svc *visit.Service
	st  visit.Storage
}

// startVisit starts eVisit invitations: their storage in the store's
// database, the Appointment operations on the pipeline, the pages at
// /visit.
func (a *App) startVisit(ctx context.Context, extra map[string]http.Handler) error {
	o := a.Opt
	vo := o.Visit
	var outbox notify.Outbox = appOutbox{a}
	if vo.Outbox != nil {
		outbox = vo.Outbox
	}
	st, err := a.openVisitStorage(ctx)
	if err != nil {
		return fmt.Errorf("evisit invitations: %w", err)
	}
	a.visit.st = st
	svc, err := visit.New(visit.Config{
		Storage: st, Outbox: outbox, FHIR: a.Store, Audit: a.Audit, Origin: OriginOf(o.BaseURL), BaseURL: o.BaseURL,
		Grace: vo.Grace, SessionTTL: vo.SessionTTL, MaxAttempts: vo.MaxAttempts, Now: o.Now, Logger: o.Logger,
	})
	if err != nil {
		return fmt.Errorf("evisit invitations: %w", err)
	}
	a.visit.svc = svc
	a.register("", nil, svc.Operations())
	extra[visit.PathPrefix] = svc
	return nil
}

// openVisitStorage opens the invitations where the store keeps its data:
// the visit_invitations table of fhirgate.db (SQLite), or the
// visit_invitations collection of the store's database (MongoDB, the
// embedded FerretDB).
func (a *App) openVisitStorage(ctx context.Context) (visit.Storage, error) {
	return openBesideStore(ctx, a,
		func(ctx context.Context, path string) (visit.Storage, error) { return sqlitestore.Open(ctx, path) },
		func(ctx context.Context, uri, db string) (visit.Storage, error) { return mongostore.Open(ctx, uri, db) })
}

func (a *App) closeVisit() {
	if a.visit.st != nil {
		_ = a.visit.st.Close()
	}
}
