package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/notify/feed"
	"github.com/fhirgate/fhirgate/notify/mongostore"
	"github.com/fhirgate/fhirgate/notify/sqlitestore"
)

// NotifyOptions configure notifications (docs/notifications.md).
type NotifyOptions struct {
	// SMTPURL is FHIRGATE_SMTP_URL (notify.ParseSMTPURL); empty: emails
	// wait in the outbox until a server with one runs.
	SMTPURL string
	// PortalURL is FHIRGATE_PORTAL_URL, the patient portal the emails link to.
	PortalURL string
	// ReminderLead is how long before an appointment its reminder goes (24 h).
	ReminderLead time.Duration
	// DefaultOptIn: kinds a person never set are on (default off).
	DefaultOptIn bool
	// Off: no change feed and no delivery in this process (the outbox
	// still accepts notifications).
	Off bool

	// Tuning, for tests: delivery poll, feed poll, scheduler period,
	// first retry delay, maximum attempts; zero: the defaults.
	Poll, FeedPoll, SchedulePoll, BackoffBase time.Duration
	MaxAttempts                               int
	HTTPClient                                *http.Client
}

// Notifier is the running notification machinery of an App.
type Notifier struct {
	Storage  notify.Storage
	Worker   *notify.Worker
	Producer *feed.Producer
}

// Outbox is where other parts enqueue notifications (nil before New ends).
func (n *Notifier) Outbox() notify.Outbox { return n.Worker }

// openNotifyStorage opens the outbox in the store's database: the
// notify_* tables of <data dir>/fhirgate.db, or the notify_* collections
// of the MongoDB (embedded FerretDB) database.
func (a *App) openNotifyStorage(ctx context.Context) (notify.Storage, error) {
	return openBesideStore(ctx, a,
		func(ctx context.Context, path string) (notify.Storage, error) { return sqlitestore.Open(ctx, path) },
		func(ctx context.Context, uri, db string) (notify.Storage, error) {
			return mongostore.Open(ctx, uri, db)
		})
}

// openBesideStore opens a service's storage where the store keeps its
// data: tables of <data dir>/fhirgate.db (SQLite), or collections of the
// store's MongoDB database (the embedded FerretDB's new collections get
// its _id index too).
func openBesideStore[T io.Closer](ctx context.Context, a *App,
	openSQLite func(ctx context.Context, path string) (T, error),
	openMongo func(ctx context.Context, uri, database string) (T, error)) (T, error) {
	o := a.Opt
	uri := o.MongoURI
	if a.embedded != nil {
		uri = a.embedded.URI
	}
	if uri == "" {
		return openSQLite(ctx, filepath.Join(o.DataDir, SQLiteFile))
	}
	st, err := openMongo(ctx, uri, o.Database)
	if err != nil {
		return st, err
	}
	if a.embedded != nil {
		if err := a.embedded.IndexIDs(ctx, o.Database); err != nil {
			st.Close()
			var zero T
			return zero, err
		}
	}
	return st, nil
}

// startNotify opens the outbox and starts its delivery worker and the
// change feed.
func (a *App) startNotify(ctx context.Context) error {
	o := a.Opt
	no := o.Notify
	st, err := a.openNotifyStorage(ctx)
	if err != nil {
		return fmt.Errorf("notifications: %w", err)
	}
	n := &Notifier{Storage: st}
	a.Notify = n
	var mailer notify.Sender
	if no.SMTPURL != "" {
		c, err := notify.ParseSMTPURL(no.SMTPURL)
		if err != nil {
			return err
		}
		mailer = notify.NewMailer(c)
	} else if !no.Off {
		o.Logger.Warn("FHIRGATE_SMTP_URL is not set: notification emails are kept in the outbox, not sent")
	}
	subs := a.newSubscriptions(st) // FHIR Subscriptions (subscriptions.go)
	n.Worker = notify.NewWorker(notify.Options{
		Storage: st, Mailer: mailer, HTTPClient: no.HTTPClient, Check: subs.check(feed.Check(a.Store)), Done: subs.done,
		Now: o.Now, Logger: o.Logger, Poll: no.Poll, BackoffBase: no.BackoffBase, MaxAttempts: no.MaxAttempts,
	})
	portal := no.PortalURL
	if portal == "" {
		portal = OriginOf(o.BaseURL) // links must be absolute in an email
	}
	n.Producer = feed.New(feed.Config{
		Store: a.Store, Storage: st, Outbox: n.Worker, Proxy: o.Proxy, PortalURL: portal,
		ReminderLead: no.ReminderLead, DefaultOptIn: no.DefaultOptIn, Now: o.Now, Logger: o.Logger,
		Poll: no.FeedPoll, SchedulePoll: no.SchedulePoll, Subscriptions: subs.onVersion,
	})
	subs.start(n.Worker)
	a.registerPrefsOps(st, no.DefaultOptIn)
	if err := n.Producer.Init(ctx); err != nil {
		return fmt.Errorf("notifications: %w", err)
	}
	if !no.Off {
		n.Worker.Start()
		n.Producer.Start()
	}
	return nil
}

// stopNotify stops the feed and the worker (deliveries under way finish)
// and closes the outbox.
func (a *App) stopNotify() {
	n := a.Notify
	if n == nil {
		return
	}
	if n.Producer != nil {
		n.Producer.Close()
	}
	if n.Worker != nil {
		n.Worker.Close()
	}
	if n.Storage != nil {
		_ = n.Storage.Close()
	}
}

// NotifyFromEnv reads the notification settings (docs/notifications.md):
// FHIRGATE_SMTP_URL, FHIRGATE_PORTAL_URL, FHIRGATE_REMINDER_LEAD (a
// duration, default 24h) and FHIRGATE_NOTIFY_DEFAULT_OPT_IN (true: kinds
// a person never set are on; default false).
func NotifyFromEnv(getenv func(string) string) (NotifyOptions, error) {
	var n NotifyOptions
	var errs []error
	n.SMTPURL = getenv("FHIRGATE_SMTP_URL")
	if n.SMTPURL != "" {
		if _, err := notify.ParseSMTPURL(n.SMTPURL); err != nil {
			errs = append(errs, fmt.Errorf("FHIRGATE_SMTP_URL: %w", err))
		}
	}
	n.PortalURL = strings.TrimRight(getenv("FHIRGATE_PORTAL_URL"), "/")
	if n.PortalURL != "" {
		if u, err := url.Parse(n.PortalURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
			errs = append(errs, fmt.Errorf("FHIRGATE_PORTAL_URL: %q is not an absolute http(s) URL", n.PortalURL))
		}
	} else if n.SMTPURL != "" {
		errs = append(errs, errors.New("FHIRGATE_PORTAL_URL: required with FHIRGATE_SMTP_URL (the emails link to the portal)"))
	}
	if v := getenv("FHIRGATE_REMINDER_LEAD"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 30*24*time.Hour {
			errs = append(errs, fmt.Errorf("FHIRGATE_REMINDER_LEAD: %q is not a duration from 1s to 720h", v))
		}
		n.ReminderLead = d
	}
	if v := getenv("FHIRGATE_NOTIFY_OFF"); v != "" {
		off, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("FHIRGATE_NOTIFY_OFF: %q is not true or false", v))
		}
		n.Off = off
	}
	if v := getenv("FHIRGATE_NOTIFY_DEFAULT_OPT_IN"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("FHIRGATE_NOTIFY_DEFAULT_OPT_IN: %q is not true or false", v))
		}
		n.DefaultOptIn = b
	}
	return n, errors.Join(errs...)
}
