package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/portal/usage"
	"github.com/fhirgate/fhirgate/smart"
)

// UsageOptions configure usage reporting (portal/usage, docs/usage.md):
// $usage, the Prometheus metrics and the report page.
type UsageOptions struct {
	// MetricsToken (FHIRGATE_METRICS_TOKEN, at least 16 characters)
	// serves GET /metrics on the main listener to "Authorization: Bearer
	// <token>". Empty: /metrics is not served there (404).
	MetricsToken string
	// MetricsAddr (FHIRGATE_METRICS_ADDR, e.g. 127.0.0.1:9090) serves
	// /metrics on a separate listener, without a token unless MetricsToken
	// is set too. Empty: no separate listener.
	MetricsAddr string
	// Refresh (FHIRGATE_USAGE_REFRESH, default 5m): the usage gauges'
	// refresh period and how stale today's numbers may be.
	Refresh time.Duration
	// Location (FHIRGATE_USAGE_TIMEZONE, an IANA zone, default UTC): the
	// zone of days and months.
	Location *time.Location
	// MaxDays (FHIRGATE_USAGE_MAX_DAYS, default 400) bounds a report's period.
	MaxDays int
	// Settle (tests): a day is final this long after it ends (default 10m).
	Settle time.Duration
}

// UsageFromEnv reads UsageOptions from the environment.
func UsageFromEnv(getenv func(string) string) (UsageOptions, error) {
	var o UsageOptions
	var errs []error
	o.MetricsToken = getenv("FHIRGATE_METRICS_TOKEN")
	if o.MetricsToken != "" && len(o.MetricsToken) < 16 {
		errs = append(errs, errors.New("FHIRGATE_METRICS_TOKEN: must be at least 16 characters (e.g. openssl rand -hex 32)"))
	}
	if v := getenv("FHIRGATE_METRICS_ADDR"); v != "" {
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("FHIRGATE_METRICS_ADDR: %q is not host:port", v))
		}
		o.MetricsAddr = v
	}
	if v := getenv("FHIRGATE_USAGE_REFRESH"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 24*time.Hour {
			errs = append(errs, fmt.Errorf("FHIRGATE_USAGE_REFRESH: %q is not a duration from 1s to 24h", v))
		}
		o.Refresh = d
	}
	if v := getenv("FHIRGATE_USAGE_TIMEZONE"); v != "" {
		loc, err := time.LoadLocation(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("FHIRGATE_USAGE_TIMEZONE: %q is not a known time zone (IANA name such as America/Toronto)", v))
		}
		o.Location = loc
	}
	if v := getenv("FHIRGATE_USAGE_MAX_DAYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3660 {
			errs = append(errs, fmt.Errorf("FHIRGATE_USAGE_MAX_DAYS: %q is not an integer from 1 to 3660", v))
		}
		o.MaxDays = n
	}
	return o, errors.Join(errs...)
}

// startUsage starts usage reporting: $usage on the pipeline, the report
// page at /usage/report, the metrics' refresh, and the separate metrics
// listener when configured. /metrics on the main listener is served by
// instrument (the REST adapter mounts only prefixes).
func (a *App) startUsage(ctx context.Context, extra map[string]http.Handler) error {
	o := a.Opt
	uo := o.Usage
	cfg := usage.Config{
		Store: a.Store, Registry: a.Registry, Location: uo.Location, Refresh: uo.Refresh, Settle: uo.Settle,
		MaxDays: uo.MaxDays, Now: o.Now, Logger: o.Logger,
	}
	if st := a.AuthzStore; st != nil {
		cfg.Accounts = func(ctx context.Context) ([]usage.Account, error) {
			list, err := st.ListAccounts(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]usage.Account, len(list))
			for i, ac := range list {
				out[i] = usage.Account{FHIRUser: ac.FHIRUser, CreatedAt: ac.CreatedAt, Disabled: ac.Disabled}
			}
			return out, nil
		}
	}
	svc, err := usage.New(cfg)
	if err != nil {
		return err
	}
	a.usage = svc
	a.Server.RegisterOperation(svc.Operation())

	var verify usage.Verifier
	if a.Verifier != nil {
		var v interface {
			Verify(ctx context.Context, bearer string) (*smart.Principal, error)
		} = a.Verifier
		if a.Authz != nil {
			v = a.Authz.CheckRevocation(a.Verifier)
		}
		verify = v.Verify
	}
	extra[usage.PathPrefix] = svc.ReportHandler(verify)

	if uo.MetricsAddr != "" {
		ln, err := net.Listen("tcp", uo.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener (FHIRGATE_METRICS_ADDR): %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", svc.MetricsHandler(uo.MetricsToken))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				o.Logger.Error("metrics listener stopped", "err", err)
			}
		}()
		o.Logger.Info("metrics served on a separate listener", "addr", ln.Addr().String())
		a.closers = append(a.closers, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		})
	}
	if uo.MetricsToken != "" || uo.MetricsAddr != "" {
		// The usage gauges are computed only where someone can scrape
		// them: a refresh reads the day's AuditEvents.
		a.closers = append(a.closers, svc.StartRefresh())
	}
	return nil
}

// instrument wraps the HTTP handler with the request metrics and serves
// GET /metrics on the main listener when FHIRGATE_METRICS_TOKEN is set.
func (a *App) instrument(h http.Handler) http.Handler {
	svc := a.usage
	if svc == nil {
		return h
	}
	var metrics http.Handler
	if tok := a.Opt.Usage.MetricsToken; tok != "" {
		metrics = svc.MetricsHandler(tok)
	}
	return svc.Instrument(h, metrics)
}
