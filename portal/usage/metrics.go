package usage

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fhirgate/fhirgate/fhir"
)

// metrics is the service's own Prometheus registry (never the global
// one): the server's request metrics and the usage gauges.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge

	registered *prometheus.GaugeVec
	active     *prometheus.GaugeVec
	messages   *prometheus.GaugeVec
	threads    *prometheus.GaugeVec
	results    *prometheus.GaugeVec
	viewers    *prometheus.GaugeVec
	bookings   *prometheus.GaugeVec

	refreshed     prometheus.Gauge
	refreshTime   prometheus.Gauge
	refreshErrors prometheus.Counter

	mu sync.Mutex // one refresh at a time
}

func newMetrics(s *Service) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fhirgate_http_requests_total",
		Help: "HTTP requests by method, class (FHIR interaction or endpoint), FHIR resource type and status code."},
		[]string{"method", "class", "type", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "fhirgate_http_request_duration_seconds",
		Help:    "HTTP request latency by method and class.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
		[]string{"method", "class"})
	m.inflight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fhirgate_http_requests_in_flight", Help: "HTTP requests being served."})
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		f(g)
		return g
	}
	m.registered = gauge("fhirgate_usage_registered_users", "Registered users by kind (patient, proxy, staff, all); source accounts, or audit-events (external issuers: users seen this month).", "kind", "source")
	m.active = gauge("fhirgate_usage_active_users", "Distinct users with a successful AuditEvent today or this month (window) by kind.", "window", "kind")
	m.messages = gauge("fhirgate_usage_messages_sent", "Secure messages sent today or this month, by patients (and proxies) or staff.", "window", "by")
	m.threads = gauge("fhirgate_usage_threads", "Message threads started by patients (state started) or answered by staff (state answered) today or this month.", "window", "state")
	m.results = gauge("fhirgate_usage_results_viewed", "Results (Observation, DiagnosticReport) viewed by patient-facing users, distinct per user and day.", "window")
	m.viewers = gauge("fhirgate_usage_result_viewers", "Distinct patient-facing users who viewed results.", "window")
	m.bookings = gauge("fhirgate_usage_bookings", "Appointments booked today or this month, by patients (and proxies) or staff.", "window", "by")
	m.refreshed = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fhirgate_usage_refresh_timestamp_seconds", Help: "When the usage gauges were last computed (Unix time; 0 before the first refresh)."})
	m.refreshTime = prometheus.NewGauge(prometheus.GaugeOpts{Name: "fhirgate_usage_refresh_duration_seconds", Help: "How long the last usage refresh took."})
	m.refreshErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "fhirgate_usage_refresh_errors_total", Help: "Usage refreshes that failed."})
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight, m.refreshed, m.refreshTime, m.refreshErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

// Registry is the service's Prometheus registry.
func (s *Service) Registry() *prometheus.Registry { return s.metrics.reg }

// RefreshMetrics recomputes the usage gauges: today and this month so far
// (in the service's zone), and the registered users. Scrapes read the
// gauges only; past days come from the cache.
func (s *Service) RefreshMetrics(ctx context.Context) error {
	m := s.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	began := time.Now()
	now := s.cfg.Now()
	today := s.midnight(now)
	month := time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, s.cfg.Location)
	tomorrow := today.AddDate(0, 0, 1)
	var day, mon *Report
	var err error
	if day, err = s.Compute(ctx, today, tomorrow, Day); err == nil {
		// today as just computed; the month's other days from the cache
		mon, err = s.computeAged(ctx, month, tomorrow, Month, s.cfg.Refresh)
	}
	if err != nil {
		m.refreshErrors.Inc()
		return err
	}
	reg := mon.Total
	for k, v := range map[string]int{"all": reg.Registered, "patient": reg.RegisteredPatients, "proxy": reg.RegisteredProxies, "staff": reg.RegisteredStaff} {
		m.registered.WithLabelValues(k, mon.Source).Set(float64(v))
	}
	for w, c := range map[string]Counts{Day: day.Total, Month: mon.Total} {
		for k, v := range map[string]int{"all": c.Active, "patient": c.ActivePatients, "proxy": c.ActiveProxies, "staff": c.ActiveStaff} {
			m.active.WithLabelValues(w, k).Set(float64(v))
		}
		m.messages.WithLabelValues(w, "patients").Set(float64(c.MessagesByPatients))
		m.messages.WithLabelValues(w, "staff").Set(float64(c.MessagesByStaff))
		m.threads.WithLabelValues(w, "started").Set(float64(c.ThreadsStarted))
		m.threads.WithLabelValues(w, "answered").Set(float64(c.ThreadsAnswered))
		m.results.WithLabelValues(w).Set(float64(c.ResultsViewed))
		m.viewers.WithLabelValues(w).Set(float64(c.ResultViewers))
		m.bookings.WithLabelValues(w, "patients").Set(float64(c.BookingsByPatients))
		m.bookings.WithLabelValues(w, "staff").Set(float64(c.BookingsByStaff))
	}
	m.refreshed.Set(float64(now.Unix()))
	m.refreshTime.Set(time.Since(began).Seconds())
	return nil
}

// StartRefresh refreshes the usage gauges now and every Refresh until the
// returned stop is called (it waits for a refresh under way).
func (s *Service) StartRefresh() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.Refresh)
		defer t.Stop()
		for {
			if err := s.RefreshMetrics(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Error("usage: metrics refresh failed", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// MetricsHandler serves the registry in the Prometheus text format. A
// non-empty token is required as "Authorization: Bearer <token>"
// (compared in constant time); an empty token serves without one (the
// separate metrics listener).
func (s *Service) MetricsHandler(token string) http.Handler {
	h := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	if token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !bearerIs(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate-metrics"`)
			http.Error(w, "a bearer token is required (FHIRGATE_METRICS_TOKEN)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func bearerIs(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) == 1
}

// Instrument wraps the server's HTTP handler: request counts by method,
// class, resource type and status; latency by method and class; requests
// in flight. With metrics set, GET /metrics is answered by it (the REST
// adapter mounts only prefixes).
func (s *Service) Instrument(next, metricsHandler http.Handler) http.Handler {
	m := s.metrics
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		class, typ := Classify(r.Method, r.URL.Path)
		method := methodLabel(r.Method)
		m.inflight.Inc()
		began := time.Now()
		rec := &statusWriter{ResponseWriter: w}
		defer func() {
			m.inflight.Dec()
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			m.requests.WithLabelValues(method, class, typ, strconv.Itoa(status)).Inc()
			m.duration.WithLabelValues(method, class).Observe(time.Since(began).Seconds())
		}()
		if metricsHandler != nil && r.URL.Path == "/metrics" {
			metricsHandler.ServeHTTP(rec, r)
			return
		}
		next.ServeHTTP(rec, r)
	})
}

// statusWriter records the response status.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// Classify derives a request's class (the FHIR interaction of R4
// http.html, or the endpoint) and resource type from its method and path
// alone (no parsing of bodies or queries), so label values stay bounded:
// types are R4 resource types or "".
func Classify(method, path string) (class, typ string) {
	switch {
	case path == "/fhir" || strings.HasPrefix(path, "/fhir/"):
	case path == "/metrics":
		return "metrics", ""
	case path == "/healthz" || path == "/readyz":
		return "health", ""
	case path == "/.well-known/smart-configuration":
		return "discovery", ""
	case strings.HasPrefix(path, "/auth/") || path == "/auth":
		return "auth", ""
	case strings.HasPrefix(path, "/visit/"):
		return "visit", ""
	case strings.HasPrefix(path, "/usage/"):
		return "usage", ""
	default:
		return "other", ""
	}
	rest := strings.Trim(strings.TrimPrefix(path, "/fhir"), "/")
	if rest == "" {
		if method == http.MethodPost {
			return "batch", ""
		}
		return "search", ""
	}
	seg := strings.Split(rest, "/")
	switch {
	case seg[0] == "metadata":
		return "capabilities", ""
	case seg[0] == ".well-known":
		return "discovery", ""
	case seg[0] == "_history":
		return "history", ""
	case seg[0] == "_search":
		return "search", ""
	case strings.HasPrefix(seg[0], "$"):
		return "operation", ""
	case !fhir.IsResourceType(seg[0]):
		return "other", ""
	}
	typ = seg[0]
	write := func() string {
		switch method {
		case http.MethodPut:
			return "update"
		case http.MethodPatch:
			return "patch"
		case http.MethodDelete:
			return "delete"
		case http.MethodPost:
			return "create"
		}
		return "read"
	}
	switch {
	case len(seg) == 1:
		if method == http.MethodGet || method == http.MethodHead {
			return "search", typ
		}
		return write(), typ
	case seg[1] == "_search":
		return "search", typ
	case seg[1] == "_history":
		return "history", typ
	case strings.HasPrefix(seg[1], "$"):
		return "operation", typ
	case len(seg) == 2:
		return write(), typ
	case seg[2] == "_history" && len(seg) == 4:
		return "vread", typ
	case seg[2] == "_history":
		return "history", typ
	case strings.HasPrefix(seg[2], "$"):
		return "operation", typ
	}
	return "search", typ // compartment search
}
