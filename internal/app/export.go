package app

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/portal/export"
	"github.com/fhirgate/fhirgate/portal/export/mongostore"
	"github.com/fhirgate/fhirgate/portal/export/sqlitestore"
)

// ExportOptions configure Patient/$everything and the Bulk Data $export
// (portal/export, docs/export.md).
type ExportOptions struct {
	// Dir (FHIRGATE_EXPORT_DIR, default <data dir>/exports) holds the
	// NDJSON files, one directory per job.
	Dir string
	// MaxJobs (FHIRGATE_EXPORT_MAX_JOBS, default 2): jobs run at once.
	MaxJobs int
	// MaxQueued (FHIRGATE_EXPORT_MAX_QUEUED, default 5): unfinished jobs
	// per client; a kick-off beyond is 429.
	MaxQueued int
	// MaxLines (FHIRGATE_EXPORT_MAX_LINES, default 100000): resources per
	// NDJSON file.
	MaxLines int
	// TTL (FHIRGATE_EXPORT_TTL, default 24h): a finished job's files are
	// deleted this long after it finished.
	TTL time.Duration

	// Tuning, for tests: the store page size, the sweep period, a hook
	// before every page a job writes; zero: the defaults.
	PageSize   int
	SweepEvery time.Duration
	BeforePage func(ctx context.Context, job string) error
}

// ExportFromEnv reads ExportOptions from the environment.
func ExportFromEnv(getenv func(string) string) (ExportOptions, error) {
	o := ExportOptions{Dir: getenv("FHIRGATE_EXPORT_DIR")}
	for _, d := range []struct {
		name   string
		to     *int
		lo, hi int
	}{
		{"FHIRGATE_EXPORT_MAX_JOBS", &o.MaxJobs, 1, 64},
		{"FHIRGATE_EXPORT_MAX_QUEUED", &o.MaxQueued, 1, 1000},
		{"FHIRGATE_EXPORT_MAX_LINES", &o.MaxLines, 1, 100_000_000},
	} {
		if v := getenv(d.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < d.lo || n > d.hi {
				return o, fmt.Errorf("%s: %q is not an integer from %d to %d", d.name, v, d.lo, d.hi)
			}
			*d.to = n
		}
	}
	if v := getenv("FHIRGATE_EXPORT_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("FHIRGATE_EXPORT_TTL: %q is not a positive duration", v)
		}
		o.TTL = d
	}
	return o, nil
}

// startExport registers Patient/$everything and the three $export
// kick-offs on the pipeline, mounts the status and file endpoints at
// /bulk, opens the job storage beside the store (the export_jobs table
// of fhirgate.db, or collection of the MongoDB database) and starts the
// workers; jobs left running by the previous process run again.
func (a *App) startExport(ctx context.Context, extra map[string]http.Handler) error {
	o := a.Opt
	eo := o.Export
	st, err := openBesideStore(ctx, a,
		func(ctx context.Context, path string) (export.Storage, error) { return sqlitestore.Open(ctx, path) },
		func(ctx context.Context, uri, db string) (export.Storage, error) {
			return mongostore.Open(ctx, uri, db)
		})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	var verifier export.Verifier
	if a.Verifier != nil {
		verifier = a.Verifier
		if a.Authz != nil {
			verifier = a.Authz.CheckRevocation(a.Verifier) // a revoked token cannot download
		}
	}
	dir := eo.Dir
	if dir == "" {
		dir = filepath.Join(o.DataDir, "exports")
	}
	svc, err := export.New(export.Config{
		Server: a.Server, Registry: a.Registry, Storage: st, Verifier: verifier, Audit: a.Audit,
		BaseURL: o.BaseURL, Origin: OriginOf(o.BaseURL), Dir: dir,
		MaxJobs: eo.MaxJobs, MaxQueued: eo.MaxQueued, MaxLines: eo.MaxLines, TTL: eo.TTL,
		PageSize: eo.PageSize, SweepEvery: eo.SweepEvery, BeforePage: eo.BeforePage,
		Now: o.Now, Logger: o.Logger,
	})
	if err != nil {
		_ = st.Close()
		return fmt.Errorf("export: %w", err)
	}
	a.register("", nil, svc.Operations())
	if err := svc.Start(ctx); err != nil {
		_ = st.Close()
		return fmt.Errorf("export: %w", err)
	}
	extra[export.PathPrefix] = svc
	a.closers = append(a.closers, func() {
		svc.Close()
		_ = st.Close()
	})
	return nil
}
