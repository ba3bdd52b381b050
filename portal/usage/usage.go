// Package usage reports how the patient portal is used (issue 17, "Usage
// reporting"; docs/usage.md): registered, active (by day and month) and
// proxy users, secure messages sent and threads answered, results viewed
// and bookings made, computed from the authorization server's accounts,
// the AuditEvents every request leaves (audit package, IHE BALP shape) and
// the secure-messaging Communications (docs/messaging.md).
//
// It serves the numbers three ways: the system operation $usage returning
// a MeasureReport (R4 measurereport.html, type summary, one group per
// measure stratified by day or month), Prometheus gauges beside the
// server's own request metrics (metrics.go), and a small HTML report page
// with an inline SVG chart (report.go).
//
// Every count is built from one aggregate per day (in the report's time
// zone): one index-served scan of that day's successful AuditEvents
// (AuditEvent?date=ge..&date=lt..&outcome=0) and one of that day's secure
// messages (Communication?sent=ge..&sent=lt..). A day is cached once it
// is final (it ended more than Settle ago, so the audit queue has written
// its events); today's aggregate is recomputed at most every Refresh.
// Distinct users are kept per day as 64-bit hashes, so a month's distinct
// count is the union of its days.
package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/store"
)

// Account is what usage needs of one account of the built-in
// authorization server (authz.Account).
type Account struct {
	FHIRUser  string // "Patient/x", "RelatedPerson/y", "Person/z", "Practitioner/w"
	CreatedAt time.Time
	Disabled  bool
}

// Config wires a Service.
type Config struct {
	Store    store.Store
	Registry *search.Registry // parses the AuditEvent and Communication queries
	// Accounts lists the built-in authorization server's accounts; nil
	// when the server trusts external issuers: "registered users" are
	// then the distinct users seen in AuditEvents (Report.Source).
	Accounts func(ctx context.Context) ([]Account, error)
	// Location is the time zone of days and months (nil: UTC).
	Location *time.Location
	// Refresh is the metrics' refresh period (default 5m); $usage and the
	// report page compute today afresh.
	Refresh time.Duration
	// Settle: a day is final, and cached for good, this long after it
	// ends (default 10m: the audit queue has written its events).
	Settle time.Duration
	// MaxDays bounds a report's period (default 400).
	MaxDays int
	// CacheDays bounds the cached day aggregates (default 400).
	CacheDays int
	Now       func() time.Time
	Logger    *slog.Logger
}

// Service computes usage reports.
type Service struct {
	cfg  Config
	seed maphash.Seed

	compute sync.Mutex // one computation at a time (day scans are heavy)
	mu      sync.Mutex
	days    map[int64]*dayAgg // by the day's start (Unix seconds)
	used    int64             // access counter for eviction

	accounts   []Account
	accountsAt time.Time

	metrics *metrics
}

// New returns a Service; it starts nothing (StartRefresh does).
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Registry == nil {
		return nil, errors.New("usage: Store and Registry are required")
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 5 * time.Minute
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 10 * time.Minute
	}
	if cfg.MaxDays <= 0 {
		cfg.MaxDays = 400
	}
	if cfg.CacheDays <= 0 {
		cfg.CacheDays = 400
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{cfg: cfg, seed: maphash.MakeSeed(), days: map[int64]*dayAgg{}}
	s.metrics = newMetrics(s)
	return s, nil
}

// Granularity of a report's strata.
const (
	Day   = "day"
	Month = "month"
)

// Sources of the registered-user counts.
const (
	SourceAccounts = "accounts"     // the built-in authorization server's accounts
	SourceAudit    = "audit-events" // external issuers: distinct users seen in AuditEvents
)

// Counts are the measures of one period.
type Counts struct {
	// Registered users at the end of the period (accounts created before
	// it and not disabled now), by the kind of their FHIR user; with
	// SourceAudit, the distinct users seen in the period.
	Registered, RegisteredPatients, RegisteredProxies, RegisteredStaff int
	// NewRegistrations: accounts created in the period (SourceAccounts only).
	NewRegistrations int
	// Active users: distinct FHIR users with a successful AuditEvent in
	// the period; proxies are RelatedPerson/Person users, staff
	// Practitioner/PractitionerRole users.
	Active, ActivePatients, ActiveProxies, ActiveStaff int
	// Secure messages sent in the period (thread headers and messages
	// partOf a thread, by Communication.sent; automatic replies left out),
	// by the patient side (patients and proxies) and by staff.
	MessagesByPatients, MessagesByStaff int
	// ThreadsStarted by the patient side; ThreadsAnswered: distinct
	// threads that received a staff message in the period.
	ThreadsStarted, ThreadsAnswered int
	// ResultsViewed: distinct (user, Observation or DiagnosticReport)
	// pairs read or returned by a search to a patient-facing user, summed
	// over days; ResultViewers: the distinct users among them.
	ResultsViewed, ResultViewers int
	// Bookings: distinct Appointments created (create, or an operation
	// whose name contains "book" naming the Appointment), by the patient
	// side and by staff.
	BookingsByPatients, BookingsByStaff int
}

// Stratum is one day or month of a report.
type Stratum struct {
	Label      string    // "2026-06-01" or "2026-06"
	Start, End time.Time // [Start, End), clipped to the report's period
	Counts
}

// Report is the usage of a period [Start, End).
type Report struct {
	Start, End  time.Time
	Granularity string
	Source      string // SourceAccounts or SourceAudit
	Generated   time.Time
	// Complete: every day of the period is final (none still receiving events).
	Complete bool
	Total    Counts
	Strata   []Stratum
}

// InputError is a report request the service refuses (a bad period or
// granularity), as opposed to a failure to compute it.
type InputError string

func (e InputError) Error() string { return string(e) }

func inputError(msg string) error { return InputError(msg) }

// Period checks and normalises a period: start and end at midnight in
// the service's zone, start before end, at most MaxDays days.
func (s *Service) Period(start, end time.Time) (time.Time, time.Time, error) {
	start, end = s.midnight(start), s.midnight(end)
	if !start.Before(end) {
		return start, end, inputError("the period's start must be before its end")
	}
	if n := s.dayCount(start, end); n > s.cfg.MaxDays {
		return start, end, inputError(fmt.Sprintf("the period covers %d days; at most %d are allowed", n, s.cfg.MaxDays))
	}
	return start, end, nil
}

// DefaultPeriod is the last 30 days including today.
func (s *Service) DefaultPeriod() (time.Time, time.Time) {
	end := s.midnight(s.cfg.Now()).AddDate(0, 0, 1)
	return end.AddDate(0, 0, -30), end
}

func (s *Service) midnight(t time.Time) time.Time {
	t = t.In(s.cfg.Location)
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, s.cfg.Location)
}

func (s *Service) dayCount(start, end time.Time) int {
	n := 0
	for d := start; d.Before(end); d = d.AddDate(0, 0, 1) {
		n++
	}
	return n
}

// Compute builds the report of [start, end) (midnights, Period) with
// strata of granularity Day or Month. Final days come from the cache;
// the others (today, and yesterday until it settles) are scanned again.
func (s *Service) Compute(ctx context.Context, start, end time.Time, granularity string) (*Report, error) {
	return s.computeAged(ctx, start, end, granularity, 0)
}

// computeAged is Compute reusing days that are not final and the
// account list when computed less than maxAge ago.
func (s *Service) computeAged(ctx context.Context, start, end time.Time, granularity string, maxAge time.Duration) (*Report, error) {
	start, end, err := s.Period(start, end)
	if err != nil {
		return nil, err
	}
	if granularity != Day && granularity != Month {
		return nil, inputError(fmt.Sprintf("granularity must be day or month, not %q", granularity))
	}
	var days []*dayAgg
	complete := true
	for d := start; d.Before(end); d = d.AddDate(0, 0, 1) {
		agg, err := s.day(ctx, d, maxAge)
		if err != nil {
			return nil, err
		}
		complete = complete && agg.final
		days = append(days, agg)
	}
	accounts, err := s.listAccounts(ctx, maxAge)
	if err != nil {
		return nil, err
	}
	r := &Report{Start: start, End: end, Granularity: granularity, Generated: s.cfg.Now(), Complete: complete,
		Source: SourceAudit}
	if s.cfg.Accounts != nil {
		r.Source = SourceAccounts
	}
	r.Total = s.counts(days, accounts, start, end)
	for i := 0; i < len(days); {
		j := i + 1
		label := days[i].start.Format("2006-01-02")
		if granularity == Month {
			label = days[i].start.Format("2006-01")
			for j < len(days) && days[j].start.Month() == days[i].start.Month() && days[j].start.Year() == days[i].start.Year() {
				j++
			}
		}
		st, en := days[i].start, days[j-1].start.AddDate(0, 0, 1)
		r.Strata = append(r.Strata, Stratum{Label: label, Start: st, End: en, Counts: s.counts(days[i:j], accounts, st, en)})
		i = j
	}
	return r, nil
}

// counts merges day aggregates into the measures of [start, end).
func (s *Service) counts(days []*dayAgg, accounts []Account, start, end time.Time) Counts {
	var c Counts
	users := map[uint64]kind{}
	viewers := map[uint64]bool{}
	answered := map[uint64]bool{}
	for _, d := range days {
		for u, k := range d.users {
			users[u] = k
		}
		for u := range d.viewers {
			viewers[u] = true
		}
		for t := range d.answered {
			answered[t] = true
		}
		c.MessagesByPatients += d.msgPatients
		c.MessagesByStaff += d.msgStaff
		c.ThreadsStarted += d.threads
		c.ResultsViewed += d.resultViews
		c.BookingsByPatients += d.bookPatients
		c.BookingsByStaff += d.bookStaff
	}
	for _, k := range users {
		c.Active++
		switch k {
		case kindPatient:
			c.ActivePatients++
		case kindProxy:
			c.ActiveProxies++
		case kindStaff:
			c.ActiveStaff++
		}
	}
	c.ResultViewers, c.ThreadsAnswered = len(viewers), len(answered)
	if s.cfg.Accounts == nil {
		c.Registered, c.RegisteredPatients, c.RegisteredProxies, c.RegisteredStaff = c.Active, c.ActivePatients, c.ActiveProxies, c.ActiveStaff
		return c
	}
	for _, a := range accounts {
		if !a.CreatedAt.Before(end) {
			continue
		}
		if !a.CreatedAt.Before(start) {
			c.NewRegistrations++
		}
		if a.Disabled {
			continue
		}
		c.Registered++
		switch kindOf(a.FHIRUser) {
		case kindPatient:
			c.RegisteredPatients++
		case kindProxy:
			c.RegisteredProxies++
		case kindStaff:
			c.RegisteredStaff++
		}
	}
	return c
}

// listAccounts is the account list, at most maxAge old.
func (s *Service) listAccounts(ctx context.Context, maxAge time.Duration) ([]Account, error) {
	if s.cfg.Accounts == nil {
		return nil, nil
	}
	s.mu.Lock()
	if age := s.cfg.Now().Sub(s.accountsAt); !s.accountsAt.IsZero() && age >= 0 && age < maxAge {
		a := s.accounts
		s.mu.Unlock()
		return a, nil
	}
	s.mu.Unlock()
	a, err := s.cfg.Accounts(ctx)
	if err != nil {
		return nil, fmt.Errorf("usage: accounts: %w", err)
	}
	s.mu.Lock()
	s.accounts, s.accountsAt = a, s.cfg.Now()
	s.mu.Unlock()
	return a, nil
}

// kind is the kind of a FHIR user.
type kind uint8

const (
	kindOther kind = iota
	kindPatient
	kindProxy
	kindStaff
)

func kindOf(fhirUser string) kind {
	typ, id, _ := strings.Cut(fhirUser, "/")
	if id == "" {
		return kindOther
	}
	switch typ {
	case "Patient":
		return kindPatient
	case "RelatedPerson", "Person":
		return kindProxy
	case "Practitioner", "PractitionerRole":
		return kindStaff
	}
	return kindOther
}

// dayAgg is the aggregate of one day.
type dayAgg struct {
	start    time.Time
	final    bool
	computed time.Time
	used     int64

	users    map[uint64]kind // distinct active FHIR users
	viewers  map[uint64]bool // distinct patient-facing users who viewed results
	answered map[uint64]bool // distinct threads with a staff message

	resultViews             int
	bookPatients, bookStaff int
	msgPatients, msgStaff   int
	threads                 int
}

// day returns the aggregate of the day starting at d: cached when final,
// or computed less than maxAge ago.
func (s *Service) day(ctx context.Context, d time.Time, maxAge time.Duration) (*dayAgg, error) {
	key := d.Unix()
	now := s.cfg.Now()
	fresh := func() *dayAgg {
		s.mu.Lock()
		defer s.mu.Unlock()
		agg := s.days[key]
		if agg == nil {
			return nil
		}
		if age := now.Sub(agg.computed); !agg.final && (age < 0 || age >= maxAge) {
			return nil
		}
		s.used++
		agg.used = s.used
		return agg
	}
	if agg := fresh(); agg != nil {
		return agg, nil
	}
	s.compute.Lock()
	defer s.compute.Unlock()
	if agg := fresh(); agg != nil { // computed while waiting
		return agg, nil
	}
	end := d.AddDate(0, 0, 1)
	agg := &dayAgg{start: d, computed: now, final: !now.Before(end.Add(s.cfg.Settle)),
		users: map[uint64]kind{}, viewers: map[uint64]bool{}, answered: map[uint64]bool{}}
	if d.Before(now) { // a future day has nothing yet
		if err := s.scanAudit(ctx, agg, d, end); err != nil {
			return nil, err
		}
		if err := s.scanMessages(ctx, agg, d, end); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used++
	agg.used = s.used
	s.days[key] = agg
	for len(s.days) > s.cfg.CacheDays {
		var oldest int64
		var min int64 = -1
		for k, a := range s.days {
			if min < 0 || a.used < min {
				oldest, min = k, a.used
			}
		}
		delete(s.days, oldest)
	}
	return agg, nil
}

func (s *Service) hash(v string) uint64 { return maphash.String(s.seed, v) }

// walk pages through the current resources of typ matching q.
func (s *Service) walk(ctx context.Context, typ string, q url.Values, fn func(store.Record) error) error {
	p, err := s.cfg.Registry.Parse(typ, q, search.ParseOptions{Strict: true, Now: s.cfg.Now})
	if err != nil {
		return fmt.Errorf("usage: %s query: %w", typ, err)
	}
	cursor := ""
	for {
		page, err := s.cfg.Store.Search(ctx, store.Query{Types: []string{typ}, Filter: p.Filter, Count: 1000, Cursor: cursor})
		if err != nil {
			return fmt.Errorf("usage: %s search: %w", typ, err)
		}
		for _, r := range page.Records {
			if err := fn(r); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		cursor = page.Next
	}
}

// rangeQuery is a date parameter's values for [start, end).
func rangeQuery(start, end time.Time) []string {
	return []string{"ge" + start.UTC().Format(time.RFC3339), "lt" + end.UTC().Format(time.RFC3339)}
}

// Code systems of the AuditEvents (audit package) and messages.
const (
	sysParticipation = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	sysSCT           = "http://snomed.info/sct"
	codeAdvocate     = "429577009" // BALP "Patient advocate": a proxy
)

// auditView is what usage reads of an AuditEvent.
type auditView struct {
	Subtype []struct {
		Code string `json:"code"`
	} `json:"subtype"`
	Agent []struct {
		Type *struct {
			Coding []struct {
				System string `json:"system"`
				Code   string `json:"code"`
			} `json:"coding"`
		} `json:"type"`
		Who *struct {
			Reference string `json:"reference"`
		} `json:"who"`
		Requestor bool `json:"requestor"`
	} `json:"agent"`
	Entity []struct {
		What *struct {
			Reference string `json:"reference"`
		} `json:"what"`
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"entity"`
}

// scanAudit adds the successful AuditEvents recorded in [start, end).
func (s *Service) scanAudit(ctx context.Context, agg *dayAgg, start, end time.Time) error {
	q := url.Values{"date": rangeQuery(start, end), "outcome": {"0"}}
	bookings := map[string]bool{}
	views := map[string]bool{}
	return s.walk(ctx, "AuditEvent", q, func(r store.Record) error {
		var ae auditView
		if err := json.Unmarshal(r.Raw, &ae); err != nil {
			s.cfg.Logger.Warn("usage: unreadable AuditEvent skipped", "id", r.ID, "err", err)
			return nil
		}
		user, proxy := "", false
		for _, a := range ae.Agent {
			if a.Type == nil || a.Who == nil {
				continue
			}
			for _, c := range a.Type.Coding {
				switch {
				case c.System == sysParticipation && (c.Code == "IRCP" || c.Code == "AUT") && a.Requestor && user == "":
					user = a.Who.Reference
				case c.System == sysSCT && c.Code == codeAdvocate:
					proxy = true
				}
			}
		}
		// Backend services and users without fhirUser are nobody's
		// activity; their bookings count as the staff's.
		k := kindOf(user)
		uh := s.hash(user)
		if k != kindOther {
			agg.users[uh] = k
		}
		patientSide := k == kindPatient || k == kindProxy || proxy
		interaction := ""
		if len(ae.Subtype) > 0 {
			interaction = ae.Subtype[0].Code
		}
		operation := ""
		for _, e := range ae.Entity {
			if e.Description == "operation" {
				operation = e.Name
			}
		}
		for _, e := range ae.Entity {
			if e.What == nil {
				continue
			}
			typ, rest, _ := strings.Cut(e.What.Reference, "/")
			id, version, _ := strings.Cut(rest, "/")
			if id == "" {
				continue
			}
			// A new Appointment: a create, a create-on-update (PUT of
			// version 1), or a booking operation ($book) naming it.
			created := interaction == "create" || (interaction == "update" || interaction == "patch") && version == "_history/1" ||
				interaction == "operation" && strings.Contains(strings.ToLower(operation), "book")
			switch {
			case (typ == "Observation" || typ == "DiagnosticReport") && patientSide && viewing(interaction):
				key := user + " " + typ + "/" + id
				if !views[key] {
					views[key] = true
					agg.resultViews++
				}
				agg.viewers[uh] = true
			case typ == "Appointment" && created:
				if bookings[id] {
					continue
				}
				bookings[id] = true
				if patientSide {
					agg.bookPatients++
				} else {
					agg.bookStaff++
				}
			}
		}
		return nil
	})
}

// viewing reports whether a restful-interaction code shows resources.
func viewing(interaction string) bool {
	switch interaction {
	case "read", "vread", "search", "search-type", "search-system":
		return true
	}
	return false
}

// messageView is what usage reads of a Communication.
type messageView struct {
	Meta struct {
		Tag []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"tag"`
	} `json:"meta"`
	Category []struct {
		Coding []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"coding"`
	} `json:"category"`
	PartOf []struct {
		Reference string `json:"reference"`
	} `json:"partOf"`
	Sender *struct {
		Reference string `json:"reference"`
	} `json:"sender"`
}

// scanMessages adds the secure messages sent in [start, end)
// (docs/messaging.md: a thread header tagged message-thread|thread,
// messages partOf it; automatic replies are category auto-reply).
func (s *Service) scanMessages(ctx context.Context, agg *dayAgg, start, end time.Time) error {
	q := url.Values{"sent": rangeQuery(start, end)}
	return s.walk(ctx, "Communication", q, func(r store.Record) error {
		var m messageView
		if err := json.Unmarshal(r.Raw, &m); err != nil {
			return nil
		}
		for _, c := range m.Category {
			for _, cd := range c.Coding {
				if cd.System == server.ThreadSystem && cd.Code == server.AutoReplyCode {
					return nil
				}
			}
		}
		header := false
		for _, t := range m.Meta.Tag {
			header = header || t.System == server.ThreadSystem && t.Code == server.ThreadCode
		}
		thread := ""
		for _, p := range m.PartOf {
			if strings.HasPrefix(p.Reference, "Communication/") {
				thread = p.Reference
			}
		}
		if !header && thread == "" {
			return nil // not a portal message
		}
		sender := ""
		if m.Sender != nil {
			sender = m.Sender.Reference
		}
		switch kindOf(sender) {
		case kindPatient, kindProxy:
			agg.msgPatients++
			if header {
				agg.threads++
			}
		default:
			agg.msgStaff++
			if thread != "" {
				agg.answered[s.hash(thread)] = true
			}
		}
		return nil
	})
}
