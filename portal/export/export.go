// Package export is fhirgate's record export (issue 17, "Record export"):
//
//   - Patient/[id]/$everything (R4 patient-operation-everything.html): a
//     patient's own download, one searchset page at a time, through the
//     pipeline's search as the caller, so access, proxy limits, sensitive
//     labels and release rules apply exactly as in search, and the
//     AuditEvent names what each page returned (everything.go);
//   - Bulk Data Access 2.0 $export (export.html) at the system, Patient
//     and Group levels for backend services: kick-off (bulk.go), jobs run
//     in the background and streamed page by page into NDJSON files
//     (jobs.go), status polling, cancel and file download outside /fhir
//     at /bulk (http.go), job state durable in Storage.
//
// The package is layer 4: it uses the pipeline (fhir/server) and never
// the store directly for what a caller receives.
package export

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/smart"
)

// PathPrefix is where the status and file endpoints are mounted (outside
// /fhir: they answer JSON manifests and NDJSON, not FHIR resources).
const PathPrefix = "/bulk"

// Verifier checks bearer tokens (smart.Verifier, or the authorization
// server's revocation-checking wrapper).
type Verifier interface {
	Verify(ctx context.Context, bearer string) (*smart.Principal, error)
}

// Config wires the service.
type Config struct {
	Server   *server.Server
	Registry *search.Registry
	Storage  Storage
	// Verifier checks the status and file requests' tokens; nil:
	// authorization is disabled (requiresAccessToken false).
	Verifier Verifier
	Audit    *audit.Logger
	// BaseURL is the FHIR base ("http://host/fhir"); Origin serves /bulk.
	BaseURL, Origin string
	// Dir holds the files, one directory per job.
	Dir string
	// MaxJobs run at once (default 2); more wait queued.
	MaxJobs int
	// MaxQueued bounds the unfinished jobs of one client (default 5): a
	// kick-off beyond it is 429 with Retry-After.
	MaxQueued int
	// MaxLines per NDJSON file (default 100,000); a type with more is split.
	MaxLines int
	// PageSize is the page the store is walked by (default 1,000).
	PageSize int
	// TTL: a finished job and its files are deleted this long after it
	// finished (default 24 h).
	TTL time.Duration
	// RetryAfter is suggested to pollers (default 2 s).
	RetryAfter time.Duration
	// SweepEvery: how often expired jobs are deleted (default 1 min).
	SweepEvery time.Duration
	// MaxAttempts: a job found running at start-up is run again this many
	// times at most, then failed (default 3).
	MaxAttempts int
	// BeforePage, when set, runs before every page a job writes (tests
	// hold a job there; an error fails the page).
	BeforePage func(ctx context.Context, job string) error
	Now        func() time.Time
	Logger     *slog.Logger
}

// Service is the running export service.
type Service struct {
	cfg Config

	mu      sync.Mutex
	queue   []string
	wake    chan struct{}
	running map[string]*run
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// run is a job under way in this process.
type run struct {
	cancel   context.CancelFunc
	progress string
}

// New builds the service; Start starts its workers.
func New(cfg Config) (*Service, error) {
	if cfg.Server == nil || cfg.Registry == nil || cfg.Storage == nil || cfg.Dir == "" {
		return nil, errors.New("export: Server, Registry, Storage and Dir are required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.MaxJobs, 2)
	def(&cfg.MaxQueued, 5)
	def(&cfg.MaxLines, 100_000)
	def(&cfg.PageSize, 1000)
	def(&cfg.MaxAttempts, 3)
	cfg.PageSize = min(cfg.PageSize, search.MaxCount)
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&cfg.TTL, 24*time.Hour)
	defd(&cfg.RetryAfter, 2*time.Second)
	defd(&cfg.SweepEvery, time.Minute)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Origin == "" {
		cfg.Origin = cfg.BaseURL
		if i := strings.Index(cfg.BaseURL, "://"); i >= 0 {
			if j := strings.Index(cfg.BaseURL[i+3:], "/"); j >= 0 {
				cfg.Origin = cfg.BaseURL[:i+3+j]
			}
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Service{cfg: cfg, wake: make(chan struct{}, 1), running: map[string]*run{}, ctx: ctx, stop: stop}, nil
}

// Definitions of the operations (CapabilityStatement rest.operation).
const (
	everythingDef = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
	exportDef     = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
	patientDef    = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
	groupDef      = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
)

// Operations are the operations to register on the pipeline.
func (s *Service) Operations() []server.ExtraOperation {
	kick := func(level string) func(context.Context, server.OperationCall) (*fhir.Response, error) {
		return func(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
			return s.kickOff(ctx, call, level)
		}
	}
	const bulkDoc = "Bulk Data Access 2.0 export for backend services (system/ scopes only; docs/export.md): Prefer: respond-async, " +
		"_outputFormat (application/fhir+ndjson), _type, _since, patient; 202 with Content-Location of the status URL."
	return []server.ExtraOperation{
		{Name: "$everything", Type: "Patient", Level: server.Instance, Definition: everythingDef,
			Doc: "The patient's record (start, end, _since, _type, _count, paging): the patient compartment, the Patient and the resources they reference, as the caller may see them (docs/export.md).",
			Run: s.everything},
		{Name: "$export", Level: server.SystemLevel, Staff: true, Definition: exportDef, Doc: bulkDoc, Run: kick(LevelSystem)},
		{Name: "$export", Type: "Patient", Level: server.TypeLevel, Staff: true, Definition: patientDef, Doc: bulkDoc, Run: kick(LevelPatient)},
		{Name: "$export", Type: "Group", Level: server.Instance, Staff: true, Definition: groupDef, Doc: bulkDoc, Run: kick(LevelGroup)},
	}
}

// Start recovers the jobs left by the previous process (queued jobs are
// queued again; running ones run again from the start, at most
// MaxAttempts times; expired ones are deleted), removes orphaned files and
// starts the workers and the sweeper.
func (s *Service) Start(ctx context.Context) error {
	jobs, err := s.cfg.Storage.List(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	now := s.cfg.Now()
	for _, j := range jobs {
		known[j.ID] = true
		switch j.Status {
		case StatusRunning:
			if j.Attempts >= s.cfg.MaxAttempts {
				s.finish(ctx, &j, errors.New("the export was interrupted by server restarts too often"))
				continue
			}
			j.Status = StatusQueued
			j.Notes = append(j.Notes, "the server restarted during the export at "+now.UTC().Format(time.RFC3339)+"; the export was run again from the start")
			if err := s.cfg.Storage.Put(ctx, j); err != nil {
				return err
			}
			s.enqueue(j.ID)
		case StatusQueued:
			s.enqueue(j.ID)
		}
	}
	if entries, err := os.ReadDir(s.cfg.Dir); err == nil {
		for _, e := range entries {
			if e.IsDir() && !known[e.Name()] {
				_ = os.RemoveAll(filepath.Join(s.cfg.Dir, e.Name()))
			}
		}
	}
	if err := s.Sweep(ctx); err != nil {
		s.cfg.Logger.Warn("export: sweep", "err", err)
	}
	for range s.cfg.MaxJobs {
		s.wg.Add(1)
		go s.worker()
	}
	s.wg.Add(1)
	go s.sweeper()
	return nil
}

// Close stops the workers: running jobs stay "running" in Storage and run
// again at the next start.
func (s *Service) Close() {
	s.stop()
	s.wg.Wait()
}

func (s *Service) enqueue(id string) {
	s.mu.Lock()
	if !slices.Contains(s.queue, id) {
		s.queue = append(s.queue, id)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) next() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return "", false
	}
	id := s.queue[0]
	s.queue = s.queue[1:]
	if len(s.queue) > 0 {
		select { // another worker may take the next one
		case s.wake <- struct{}{}:
		default:
		}
	}
	return id, true
}

func (s *Service) worker() {
	defer s.wg.Done()
	for {
		if id, ok := s.next(); ok {
			s.runJob(id)
			continue
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
	}
}

func (s *Service) sweeper() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			if err := s.Sweep(s.ctx); err != nil && s.ctx.Err() == nil {
				s.cfg.Logger.Warn("export: sweep", "err", err)
			}
		}
	}
}

// Sweep deletes the finished jobs whose files expired, and their files.
func (s *Service) Sweep(ctx context.Context) error {
	jobs, err := s.cfg.Storage.List(ctx)
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	for _, j := range jobs {
		if (j.Status == StatusComplete || j.Status == StatusFailed) && !j.Expires.IsZero() && !now.Before(j.Expires) {
			if err := s.cfg.Storage.Delete(ctx, j.ID); err != nil {
				return err
			}
			_ = os.RemoveAll(s.jobDir(j.ID))
			s.cfg.Logger.Info("export: expired job deleted", "job", j.ID)
		}
	}
	return nil
}

func (s *Service) jobDir(id string) string { return filepath.Join(s.cfg.Dir, id) }

// progress is the live progress of a running job ("" if not running here).
func (s *Service) progress(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.running[id]
	if !ok {
		return "", false
	}
	return r.progress, true
}

func (s *Service) setProgress(id, p string) {
	s.mu.Lock()
	if r, ok := s.running[id]; ok {
		r.progress = p
	}
	s.mu.Unlock()
}

// cancel stops a job under way here (its worker removes the files).
func (s *Service) cancel(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = slices.DeleteFunc(s.queue, func(q string) bool { return q == id })
	if r, ok := s.running[id]; ok {
		r.cancel()
		return true
	}
	return false
}

// auditEvent records a status or file request the service served.
func (s *Service) auditEvent(ctx context.Context, r *http.Request, p *smart.Principal, e audit.Event) {
	if s.cfg.Audit == nil {
		return
	}
	e.Interaction, e.Time, e.Server = "operation", s.cfg.Now(), s.cfg.BaseURL
	e.RequestID, e.UserAgent = r.Header.Get("X-Request-Id"), r.UserAgent()
	e.SourceIP, _, _ = strings.Cut(r.RemoteAddr, ":")
	if i := strings.LastIndex(r.RemoteAddr, ":"); i > 0 {
		e.SourceIP = strings.Trim(r.RemoteAddr[:i], "[]")
	}
	if p != nil {
		e.UserFHIR, e.UserSubject, e.UserIssuer, e.ClientID = p.FHIRUser, p.Subject, p.Issuer, p.ClientID
	}
	if err := s.cfg.Audit.Log(ctx, e); err != nil {
		s.cfg.Logger.ErrorContext(ctx, "export: audit event not queued", "err", err)
	}
}
