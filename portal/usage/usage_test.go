package usage

// Package tests on the in-memory SQLite store with a fixed clock: seeded
// AuditEvents (audit.BuildIndexed, exactly as the server's audit sink
// writes them: IHE BALP shape, R4 auditevent.html), secure-messaging
// Communications (docs/messaging.md: thread header tagged
// message-thread|thread, messages partOf it) and accounts; exact counts per
// day and month, the MeasureReport (R4 measurereport.html) against the R4
// schema, the $usage operation's access rule and parameters (R4
// operations.html), the Prometheus output and the request classes.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server/servertest"
	"github.com/fhirgate/fhirgate/fhir/validate"
	"github.com/fhirgate/fhirgate/portal/usage/usagetest"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

var (
	june1 = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	june2 = june1.AddDate(0, 0, 1)
	june3 = june1.AddDate(0, 0, 2)
	june4 = june1.AddDate(0, 0, 3)
	// now: June 3 at noon; June 1 and 2 are final, June 3 is not.
	now = june3.Add(12 * time.Hour)
)

type fixture struct {
	t   *testing.T
	st  store.Store
	reg *search.Registry
	n   atomic.Int64
	svc *Service
}

func newFixture(t *testing.T, accounts []Account) *fixture {
	t.Helper()
	f := &fixture{t: t, st: servertest.Store(t, sqlite.Options{}), reg: search.Default()}
	cfg := Config{Store: f.st, Registry: f.reg, Now: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if accounts != nil {
		cfg.Accounts = func(context.Context) ([]Account, error) { return accounts, nil }
	}
	var err error
	if f.svc, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

// event appends one AuditEvent as the server's audit sink does.
func (f *fixture) event(e audit.Event) {
	f.t.Helper()
	if e.Outcome == 0 {
		e.Outcome = 200
	}
	if e.UserFHIR != "" && e.UserSubject == "" {
		e.UserSubject, e.UserIssuer = "sub-"+e.UserFHIR, "http://issuer"
	}
	id := fmt.Sprintf("ae%d", f.n.Add(1))
	raw, idx := audit.BuildIndexed(e, id, e.Time, f.reg.NewBuilder("AuditEvent"))
	if err := f.st.Append(context.Background(), []store.Record{{Type: "AuditEvent", ID: id, VersionID: 1, LastUpdated: e.Time, Raw: raw, Index: idx}}); err != nil {
		f.t.Fatal(err)
	}
}

// put stores a resource (extracted with the registry, as the pipeline does).
func (f *fixture) put(typ, id, body string) {
	f.t.Helper()
	body = strings.Replace(body, `{"resourceType":"`+typ+`"`, `{"resourceType":"`+typ+`","id":"`+id+`"`, 1)
	tree, _, err := fhir.ParseJSON([]byte(body))
	if err != nil {
		f.t.Fatal(err)
	}
	idx, err := f.reg.Extract(typ, tree.(map[string]any))
	if err != nil {
		f.t.Fatal(err)
	}
	rec := store.Record{Type: typ, ID: id, VersionID: 1, LastUpdated: now, Raw: []byte(body), Index: idx}
	if err := f.st.Transact(context.Background(), []store.Op{{Kind: store.OpCreate, Record: rec}}); err != nil {
		f.t.Fatal(err)
	}
}

// compute is the report of [start, end) by gran; it fails the test on an error.
func (f *fixture) compute(start, end time.Time, gran string) *Report {
	f.t.Helper()
	rep, err := f.svc.Compute(context.Background(), start, end, gran)
	if err != nil {
		f.t.Fatal(err)
	}
	return rep
}

func at(day time.Time, hm string) time.Time {
	d, _ := time.ParseDuration(strings.Replace(hm, ":", "h", 1) + "m")
	return day.Add(d)
}

const threadTag = `"meta":{"tag":[{"system":"http://fhirgate.dev/CodeSystem/message-thread","code":"thread"}]},`

func msg(sent time.Time, sender, extra string) string {
	return `{"resourceType":"Communication",` + extra + `"status":"completed","subject":{"reference":"Patient/p1"},` +
		`"sender":{"reference":"` + sender + `"},"sent":"` + sent.Format(time.RFC3339) + `","payload":[{"contentString":"x"}]}`
}

// seed writes the scenario the tests count (see the expectations in TestCounts).
func (f *fixture) seed() {
	// Boundaries: just before June 1 (May 31), exactly at June 1.
	f.event(audit.Event{Time: june1.Add(-time.Millisecond), Interaction: "read", UserFHIR: "Patient/p6", Patient: "Patient/p6", Resources: []string{"Observation/o9/_history/1"}})
	f.event(audit.Event{Time: june1, Interaction: "read", UserFHIR: "Patient/p1", Patient: "Patient/p1", Resources: []string{"Observation/o1/_history/1"}})
	// June 1: p1 searches o1 (again: one view) and o2; a proxy sees a report.
	f.event(audit.Event{Time: at(june1, "09:00"), Interaction: "search-type", UserFHIR: "Patient/p1", Patient: "Patient/p1",
		Resources: []string{"Observation/o1/_history/1", "Observation/o2/_history/3"}, Query: "Observation?category=laboratory"})
	f.event(audit.Event{Time: at(june1, "09:30"), Interaction: "search-type", UserFHIR: "RelatedPerson/rp1", Patient: "Patient/p2", Proxy: "RelatedPerson/rp1",
		Resources: []string{"DiagnosticReport/d1/_history/1"}, Query: "DiagnosticReport"})
	// Staff reads are not "results viewed".
	f.event(audit.Event{Time: at(june1, "10:00"), Interaction: "read", UserFHIR: "Practitioner/dr1", Resources: []string{"Observation/o1/_history/1"}})
	// Bookings: a patient's create, a $book with its inner create (one booking), a practitioner's, an EMR's.
	f.event(audit.Event{Time: at(june1, "11:00"), Interaction: "create", UserFHIR: "Patient/p1", Patient: "Patient/p1", Resources: []string{"Appointment/a1/_history/1"}})
	f.event(audit.Event{Time: at(june1, "11:10"), Interaction: "operation", Operation: "$book", UserFHIR: "Patient/p3", Patient: "Patient/p3",
		Resources: []string{"Slot/s1/_history/2", "Appointment/a2/_history/1"}})
	f.event(audit.Event{Time: at(june1, "11:10"), Interaction: "create", UserFHIR: "Patient/p3", Patient: "Patient/p3", Resources: []string{"Appointment/a2/_history/1"}})
	f.event(audit.Event{Time: at(june1, "11:20"), Interaction: "create", UserFHIR: "Practitioner/dr1", Resources: []string{"Appointment/a3/_history/1"}})
	f.event(audit.Event{Time: at(june1, "11:30"), Interaction: "create", ClientID: "emr", UserSubject: "emr", Resources: []string{"Appointment/a4/_history/1"}})
	// A create-on-update (PUT of version 1) is one; an update is not.
	f.event(audit.Event{Time: at(june1, "11:35"), Interaction: "update", UserFHIR: "Practitioner/dr1", Resources: []string{"Appointment/a5/_history/1"}})
	f.event(audit.Event{Time: at(june1, "11:40"), Interaction: "update", UserFHIR: "Patient/p1", Patient: "Patient/p1", Resources: []string{"Appointment/a1/_history/2"}})
	// A refused request does not make anyone active.
	f.event(audit.Event{Time: at(june1, "12:00"), Interaction: "read", Outcome: 404, UserFHIR: "Patient/p4", Patient: "Patient/p4"})
	// A login at the authorization server (operation, no subtype of its own kind).
	f.event(audit.Event{Time: at(june1, "13:00"), Interaction: "operation", Operation: "login", UserFHIR: "Patient/p5", Patient: "Patient/p5"})
	// June 2: p1 views o1 again (one view more: per day); a Person acting through a RelatedPerson.
	f.event(audit.Event{Time: at(june2, "08:00"), Interaction: "vread", UserFHIR: "Patient/p1", Patient: "Patient/p1", Resources: []string{"Observation/o1/_history/1"}})
	f.event(audit.Event{Time: at(june2, "08:30"), Interaction: "read", UserFHIR: "Person/pp1", Patient: "Patient/p2", Proxy: "RelatedPerson/rp2",
		Resources: []string{"Patient/p2/_history/1"}})
	// June 3 (today).
	f.event(audit.Event{Time: at(june3, "07:00"), Interaction: "read", UserFHIR: "Patient/p2", Patient: "Patient/p2", Resources: []string{"Observation/o3/_history/1"}})

	// Messages.
	f.put("Communication", "t1", msg(at(june1, "10:00"), "Patient/p1", threadTag))
	f.put("Communication", "r1", msg(at(june1, "10:00"), "Organization/clinic",
		`"category":[{"coding":[{"system":"http://fhirgate.dev/CodeSystem/message-thread","code":"auto-reply"}]}],"partOf":[{"reference":"Communication/t1"}],`))
	f.put("Communication", "m1", msg(at(june1, "11:00"), "Practitioner/dr1", `"partOf":[{"reference":"Communication/t1"}],`))
	f.put("Communication", "m2", msg(at(june2, "09:00"), "RelatedPerson/rp1", `"partOf":[{"reference":"Communication/t1"}],`))
	f.put("Communication", "m3", msg(at(june2, "10:00"), "Practitioner/dr1", `"partOf":[{"reference":"Communication/t1"}],`))
	f.put("Communication", "t2", msg(at(june2, "12:00"), "Patient/p2", threadTag))
	f.put("Communication", "letter", msg(at(june1, "12:00"), "Practitioner/dr1", "")) // not a portal message
	f.put("Communication", "old", msg(june1.Add(-time.Second), "Patient/p1", threadTag))
}

var accounts = []Account{
	{FHIRUser: "Patient/p1", CreatedAt: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)},
	{FHIRUser: "RelatedPerson/rp1", CreatedAt: time.Date(2026, 5, 15, 0, 0, 0, 0, time.UTC)},
	{FHIRUser: "Practitioner/dr1", CreatedAt: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)},
	{FHIRUser: "Patient/p9", CreatedAt: at(june2, "15:00")},
	{FHIRUser: "Patient/p10", CreatedAt: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), Disabled: true},
	{FHIRUser: "Patient/p11", CreatedAt: time.Date(2026, 6, 10, 0, 0, 0, 0, time.UTC)},
}

func TestCounts(t *testing.T) {
	f := newFixture(t, accounts)
	f.seed()
	rep := f.compute(june1, june4, Day)
	if rep.Source != SourceAccounts || rep.Complete {
		t.Errorf("source %s complete %v, want accounts and not complete (June 3 is today)", rep.Source, rep.Complete)
	}
	want := Counts{
		Registered: 4, RegisteredPatients: 2, RegisteredProxies: 1, RegisteredStaff: 1, NewRegistrations: 1,
		// p1 p2 p3 p5, rp1 pp1, dr1
		Active: 7, ActivePatients: 4, ActiveProxies: 2, ActiveStaff: 1,
		MessagesByPatients: 3, MessagesByStaff: 2, ThreadsStarted: 2, ThreadsAnswered: 1,
		// June 1: p1×o1, p1×o2, rp1×d1; June 2: p1×o1; June 3: p2×o3
		ResultsViewed: 5, ResultViewers: 3,
		BookingsByPatients: 2, BookingsByStaff: 3,
	}
	if rep.Total != want {
		t.Errorf("total\n got %+v\nwant %+v", rep.Total, want)
	}
	days := []Counts{
		{Registered: 3, RegisteredPatients: 1, RegisteredProxies: 1, RegisteredStaff: 1,
			Active: 5, ActivePatients: 3, ActiveProxies: 1, ActiveStaff: 1,
			MessagesByPatients: 1, MessagesByStaff: 1, ThreadsStarted: 1, ThreadsAnswered: 1,
			ResultsViewed: 3, ResultViewers: 2, BookingsByPatients: 2, BookingsByStaff: 3},
		{Registered: 4, RegisteredPatients: 2, RegisteredProxies: 1, RegisteredStaff: 1, NewRegistrations: 1,
			Active: 2, ActivePatients: 1, ActiveProxies: 1,
			MessagesByPatients: 2, MessagesByStaff: 1, ThreadsStarted: 1, ThreadsAnswered: 1,
			ResultsViewed: 1, ResultViewers: 1},
		{Registered: 4, RegisteredPatients: 2, RegisteredProxies: 1, RegisteredStaff: 1,
			Active: 1, ActivePatients: 1, ResultsViewed: 1, ResultViewers: 1},
	}
	if len(rep.Strata) != 3 {
		t.Fatalf("%d strata, want 3", len(rep.Strata))
	}
	for i, s := range rep.Strata {
		if wantLabel := june1.AddDate(0, 0, i).Format("2006-01-02"); s.Label != wantLabel {
			t.Errorf("stratum %d label %s, want %s", i, s.Label, wantLabel)
		}
		if s.Counts != days[i] {
			t.Errorf("%s\n got %+v\nwant %+v", s.Label, s.Counts, days[i])
		}
	}

	// By month: May 31 alone, then June 1-3; p6's read and the "old"
	// thread are May's.
	rep = f.compute(june1.AddDate(0, 0, -1), june4, Month)
	if len(rep.Strata) != 2 || rep.Strata[0].Label != "2026-05" || rep.Strata[1].Label != "2026-06" {
		t.Fatalf("month strata %+v", rep.Strata)
	}
	may, jun := rep.Strata[0].Counts, rep.Strata[1].Counts
	if may.Active != 1 || may.ActivePatients != 1 || may.ThreadsStarted != 1 || may.ResultsViewed != 1 || may.Registered != 3 {
		t.Errorf("May 31: %+v", may)
	}
	if jun != want {
		t.Errorf("June\n got %+v\nwant %+v", jun, want)
	}
	if rep.Total.Active != 8 {
		t.Errorf("distinct active over May 31-June 3: %d, want 8", rep.Total.Active)
	}
}

// Without accounts (external issuers), registered users are the users seen.
func TestCountsWithoutAccounts(t *testing.T) {
	f := newFixture(t, nil)
	f.seed()
	rep := f.compute(june1, june4, Day)
	c := rep.Total
	if rep.Source != SourceAudit || c.Registered != 7 || c.RegisteredPatients != 4 || c.RegisteredProxies != 2 || c.RegisteredStaff != 1 || c.NewRegistrations != 0 {
		t.Errorf("source %s counts %+v", rep.Source, c)
	}
	mr := string(rep.MeasureReport())
	if !strings.Contains(mr, `"code":"seen-users"`) || strings.Contains(mr, "registered-users") || strings.Contains(mr, "new-registrations") ||
		!strings.Contains(mr, `"valueCode":"audit-events"`) {
		t.Errorf("the MeasureReport does not say the users are seen in AuditEvents: %s", mr)
	}
}

// Final days are cached; today is scanned again.
func TestCacheFinalDays(t *testing.T) {
	f := newFixture(t, accounts)
	f.seed()
	ctx := context.Background()
	if _, err := f.svc.Compute(ctx, june1, june4, Day); err != nil {
		t.Fatal(err)
	}
	f.event(audit.Event{Time: at(june1, "20:00"), Interaction: "read", UserFHIR: "Patient/late1", Patient: "Patient/late1"})
	f.event(audit.Event{Time: at(june3, "08:00"), Interaction: "read", UserFHIR: "Patient/late3", Patient: "Patient/late3"})
	rep, err := f.svc.Compute(ctx, june1, june4, Day)
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Strata[0].Active; got != 5 {
		t.Errorf("June 1 (final, cached): %d active, want 5", got)
	}
	if got := rep.Strata[2].Active; got != 2 {
		t.Errorf("June 3 (today, rescanned): %d active, want 2", got)
	}
}

func TestMeasureReportValid(t *testing.T) {
	f := newFixture(t, accounts)
	f.seed()
	rep := f.compute(june1, june4, Day)
	b := rep.MeasureReport()
	val, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := val.Validate("MeasureReport", b); err != nil {
		t.Fatalf("not valid R4: %v\n%s", err, b)
	}
	var mr struct {
		Status, Type, Measure string
		Period                struct{ Start, End string }
		Group                 []struct {
			Code struct {
				Coding []struct{ System, Code string }
			}
			MeasureScore struct{ Value float64 }
			Stratifier   []struct {
				Code    []struct{ Text string }
				Stratum []struct {
					Value        struct{ Text string }
					MeasureScore struct{ Value float64 }
				}
			}
		}
	}
	if err := json.Unmarshal(b, &mr); err != nil {
		t.Fatal(err)
	}
	if mr.Status != "pending" || mr.Type != "summary" || mr.Measure != MeasureURL || mr.Period.Start != "2026-06-01" || mr.Period.End != "2026-06-03" {
		t.Errorf("header %+v", mr)
	}
	got := map[string]float64{}
	for _, g := range mr.Group {
		got[g.Code.Coding[0].Code] = g.MeasureScore.Value
		if len(g.Stratifier) != 1 || g.Stratifier[0].Code[0].Text != "day" || len(g.Stratifier[0].Stratum) != 3 {
			t.Errorf("group %s stratifier %+v", g.Code.Coding[0].Code, g.Stratifier)
		}
		if g.Code.Coding[0].Code == "active-users" {
			for i, want := range []float64{5, 2, 1} {
				if s := g.Stratifier[0].Stratum[i]; s.MeasureScore.Value != want || s.Value.Text != june1.AddDate(0, 0, i).Format("2006-01-02") {
					t.Errorf("active-users stratum %d: %+v, want %v", i, s, want)
				}
			}
		}
	}
	for code, want := range map[string]float64{"registered-users": 4, "active-users": 7, "active-proxies": 2, "messages-by-patients": 3,
		"threads-answered": 1, "results-viewed": 5, "bookings-by-patients": 2, "new-registrations": 1} {
		if got[code] != want {
			t.Errorf("%s = %v, want %v", code, got[code], want)
		}
	}
	if len(mr.Group) != len(measures) {
		t.Errorf("%d groups, want %d", len(mr.Group), len(measures))
	}
}

func TestPeriodChecks(t *testing.T) {
	f := newFixture(t, accounts)
	ctx := context.Background()
	for _, c := range []struct {
		name       string
		start, end time.Time
		gran       string
	}{
		{"empty", june2, june2, Day},
		{"reversed", june3, june1, Day},
		{"too long", june1.AddDate(-2, 0, 0), june1, Day},
		{"granularity", june1, june2, "week"},
	} {
		if _, err := f.svc.Compute(ctx, c.start, c.end, c.gran); err == nil {
			t.Errorf("%s: no error", c.name)
		} else if _, ok := err.(InputError); !ok {
			t.Errorf("%s: %T %v, want an InputError", c.name, err, err)
		}
	}
}

// The $usage operation on a real pipeline: who may run it, its parameters.
func TestUsageOperation(t *testing.T) {
	f := newFixture(t, accounts)
	f.seed()
	srv, _ := servertest.New(t, servertest.Options{Store: f.st, Registry: f.reg, Now: func() time.Time { return now }})
	srv.RegisterOperation(f.svc.Operation())
	as := func(scopes, patient, fhirUser string) context.Context {
		return servertest.As(t, scopes, patient, fhirUser)
	}
	call := func(ctx context.Context, method, query, body string) *fhir.Response {
		return servertest.Do(ctx, srv, method, "$usage?"+query, body)
	}
	for _, c := range []struct {
		name                     string
		ctx                      context.Context
		method, query, body      string
		status                   int
		wantActive, wantStrata   int
		wantPeriodStart, wantEnd string
	}{
		{"backend", as("system/AuditEvent.rs", "", ""), "GET", "start=2026-06-01&end=2026-06-04", "", 200, 7, 3, "2026-06-01", "2026-06-03"},
		{"backend all types", as("system/*.read", "", ""), "GET", "start=2026-06-01&end=2026-06-04&granularity=month", "", 200, 7, 1, "2026-06-01", "2026-06-03"},
		{"practitioner", as("user/AuditEvent.rs", "", "Practitioner/dr1"), "GET", "start=2026-06-02&end=2026-06-03", "", 200, 2, 1, "2026-06-02", "2026-06-02"},
		{"parameters body", as("system/AuditEvent.rs", "", ""), "POST", "",
			`{"resourceType":"Parameters","parameter":[{"name":"start","valueDate":"2026-06"},{"name":"granularity","valueCode":"month"}]}`, 200, 7, 1, "2026-06-01", "2026-06-30"},
		{"default period", as("system/AuditEvent.rs", "", ""), "GET", "", "", 200, 8, 30, "2026-05-05", "2026-06-03"},
		{"practitioner without AuditEvent", as("user/Observation.rs", "", "Practitioner/dr1"), "GET", "", "", 403, 0, 0, "", ""},
		{"granular scope", as("system/AuditEvent.rs?outcome=0", "", ""), "GET", "", "", 403, 0, 0, "", ""},
		{"read only", as("system/AuditEvent.r", "", ""), "GET", "", "", 403, 0, 0, "", ""},
		{"patient", as("patient/*.rs", "p1", "Patient/p1"), "GET", "", "", 403, 0, 0, "", ""},
		{"proxy with user scopes", as("user/*.rs", "p2", "RelatedPerson/rp1"), "GET", "", "", 403, 0, 0, "", ""},
		{"bad date", as("system/AuditEvent.rs", "", ""), "GET", "start=June", "", 400, 0, 0, "", ""},
		{"bad granularity", as("system/AuditEvent.rs", "", ""), "GET", "granularity=week", "", 400, 0, 0, "", ""},
		{"too long", as("system/AuditEvent.rs", "", ""), "GET", "start=2020-01-01&end=2026-01-01", "", 400, 0, 0, "", ""},
		{"bad body", as("system/AuditEvent.rs", "", ""), "POST", "", `{"resourceType":"Patient"}`, 400, 0, 0, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := call(c.ctx, c.method, c.query, c.body)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if c.status != 200 {
				if !strings.Contains(string(r.Body), `"OperationOutcome"`) {
					t.Errorf("no OperationOutcome: %s", r.Body)
				}
				return
			}
			var mr struct {
				ResourceType string
				Period       struct{ Start, End string }
				Group        []struct {
					Code struct {
						Coding []struct{ Code string }
					}
					MeasureScore struct{ Value int }
					Stratifier   []struct{ Stratum []any }
				}
			}
			if err := json.Unmarshal(r.Body, &mr); err != nil {
				t.Fatal(err)
			}
			if mr.ResourceType != "MeasureReport" || mr.Period.Start != c.wantPeriodStart || mr.Period.End != c.wantEnd {
				t.Errorf("%s period %+v", mr.ResourceType, mr.Period)
			}
			for _, g := range mr.Group {
				if g.Code.Coding[0].Code == "active-users" && (g.MeasureScore.Value != c.wantActive || len(g.Stratifier[0].Stratum) != c.wantStrata) {
					t.Errorf("active-users %d with %d strata, want %d with %d", g.MeasureScore.Value, len(g.Stratifier[0].Stratum), c.wantActive, c.wantStrata)
				}
			}
		})
	}
}

func gather(t *testing.T, s *Service) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	return usagetest.ByName(mfs)
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, accounts)
	f.seed()
	if err := f.svc.RefreshMetrics(context.Background()); err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, f.svc)
	for _, c := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"fhirgate_usage_registered_users", []string{"kind=all", "source=accounts"}, 4},
		{"fhirgate_usage_registered_users", []string{"kind=proxy"}, 1},
		{"fhirgate_usage_active_users", []string{"window=day", "kind=all"}, 1},   // June 3: p2
		{"fhirgate_usage_active_users", []string{"window=month", "kind=all"}, 7}, // June 1-3
		{"fhirgate_usage_active_users", []string{"window=month", "kind=proxy"}, 2},
		{"fhirgate_usage_messages_sent", []string{"window=month", "by=patients"}, 3},
		{"fhirgate_usage_messages_sent", []string{"window=month", "by=staff"}, 2},
		{"fhirgate_usage_threads", []string{"window=month", "state=answered"}, 1},
		{"fhirgate_usage_results_viewed", []string{"window=month"}, 5},
		{"fhirgate_usage_results_viewed", []string{"window=day"}, 1},
		{"fhirgate_usage_bookings", []string{"window=month", "by=patients"}, 2},
		{"fhirgate_usage_refresh_timestamp_seconds", nil, float64(now.Unix())},
	} {
		if got := usagetest.Value(t, mfs, c.name, c.kv...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.kv, got, c.want)
		}
	}

	// Request metrics and the protected /metrics.
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir/Patient/x" {
			http.Error(w, "nope", http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte("{}"))
	})
	const token = "0123456789abcdef0123"
	ts := httptest.NewServer(f.svc.Instrument(inner, f.svc.MetricsHandler(token)))
	defer ts.Close()
	get := func(path, auth string) *http.Response {
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	get("/fhir/Patient/x", "")
	get("/fhir/Observation?code=1", "")
	get("/fhir/Observation?code=2", "")
	for _, c := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer wrong-token-wrong-token", 401}, {"Bearer " + token, 200}} {
		if r := get("/metrics", c.auth); r.StatusCode != c.status {
			t.Errorf("/metrics with %q: %d, want %d", c.auth, r.StatusCode, c.status)
		}
	}
	mfs = gather(t, f.svc)
	for _, c := range []struct {
		kv   []string
		want float64
	}{
		{[]string{"method=GET", "class=read", "type=Patient", "code=404"}, 1},
		{[]string{"method=GET", "class=search", "type=Observation", "code=200"}, 2},
		{[]string{"class=metrics", "code=401"}, 2},
	} {
		if got := usagetest.Value(t, mfs, "fhirgate_http_requests_total", c.kv...); got != c.want {
			t.Errorf("requests%v = %v, want %v", c.kv, got, c.want)
		}
	}
	if got := usagetest.Value(t, mfs, "fhirgate_http_request_duration_seconds", "method=GET", "class=search"); got != 2 {
		t.Errorf("search latency samples %v, want 2", got)
	}
	if got := usagetest.Value(t, mfs, "fhirgate_http_requests_in_flight"); got != 0 {
		t.Errorf("in flight %v, want 0", got)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct{ method, path, class, typ string }{
		{"GET", "/fhir/Patient/1", "read", "Patient"},
		{"PUT", "/fhir/Patient/1", "update", "Patient"},
		{"PATCH", "/fhir/Patient/1", "patch", "Patient"},
		{"DELETE", "/fhir/Patient/1", "delete", "Patient"},
		{"GET", "/fhir/Patient/1/_history/2", "vread", "Patient"},
		{"GET", "/fhir/Patient/1/_history", "history", "Patient"},
		{"GET", "/fhir/Patient", "search", "Patient"},
		{"POST", "/fhir/Patient", "create", "Patient"},
		{"POST", "/fhir/Patient/_search", "search", "Patient"},
		{"GET", "/fhir/Patient/1/Observation", "search", "Patient"},
		{"POST", "/fhir/Appointment/1/$invite", "operation", "Appointment"},
		{"GET", "/fhir/Patient/$everything", "operation", "Patient"},
		{"GET", "/fhir/$usage", "operation", ""},
		{"POST", "/fhir", "batch", ""},
		{"GET", "/fhir", "search", ""},
		{"GET", "/fhir/metadata", "capabilities", ""},
		{"GET", "/fhir/_history", "history", ""},
		{"GET", "/fhir/NotAType/1", "other", ""},
		{"GET", "/auth/authorize", "auth", ""},
		{"GET", "/metrics", "metrics", ""},
		{"GET", "/healthz", "health", ""},
		{"GET", "/usage/report", "usage", ""},
		{"GET", "/favicon.ico", "other", ""},
	} {
		if class, typ := Classify(c.method, c.path); class != c.class || typ != c.typ {
			t.Errorf("%s %s: %s %q, want %s %q", c.method, c.path, class, typ, c.class, c.typ)
		}
	}
}

func TestReportPage(t *testing.T) {
	f := newFixture(t, accounts)
	f.seed()
	verify := func(_ context.Context, tok string) (*smart.Principal, error) {
		switch tok {
		case "admin":
			sc, _ := smart.ParseScopes("system/AuditEvent.rs")
			return &smart.Principal{Scopes: sc, ExpiresAt: time.Now().Add(time.Hour)}, nil
		case "patient":
			sc, _ := smart.ParseScopes("patient/*.rs")
			return &smart.Principal{Scopes: sc, FHIRUser: "Patient/p1", Patient: "p1"}, nil
		}
		return nil, fmt.Errorf("bad token")
	}
	ts := httptest.NewServer(f.svc.ReportHandler(verify))
	defer ts.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(req *http.Request) (*http.Response, string) {
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	u := ts.URL + "/usage/report?start=2026-06-01&end=2026-06-04"

	req, _ := http.NewRequest("GET", u, nil)
	resp, body := do(req)
	if resp.StatusCode != 200 || !strings.Contains(body, `name="token"`) || strings.Contains(body, "<svg") {
		t.Errorf("without a token: %d, want the sign-in form: %s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, styleHash) {
		t.Errorf("CSP %q", csp)
	}
	req.Header.Set("Authorization", "Bearer patient")
	if resp, body = do(req); resp.StatusCode != 401 || strings.Contains(body, "<svg") {
		t.Errorf("patient token: %d %s", resp.StatusCode, body)
	}
	req.Header.Set("Authorization", "Bearer admin")
	resp, body = do(req)
	if resp.StatusCode != 200 || !strings.Contains(body, "<svg") || strings.Count(body, "<rect") != 3 ||
		!strings.Contains(body, "<td>Active users</td><td>active-users</td><td class=\"n\">7</td>") {
		t.Errorf("admin: %d %s", resp.StatusCode, body)
	}
	// The form: the token once, then the cookie.
	form := url.Values{"token": {"admin"}, "start": {"2026-06-01"}, "end": {"2026-06-04"}, "granularity": {"day"}}
	req, _ = http.NewRequest("POST", ts.URL+"/usage/report", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body = do(req)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			cookie = c
		}
	}
	if resp.StatusCode != 200 || cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || !strings.Contains(body, "<svg") {
		t.Fatalf("form: %d cookie %+v", resp.StatusCode, cookie)
	}
	req, _ = http.NewRequest("GET", ts.URL+"/usage/report?start=2026-06&end=2026-07&granularity=month", nil)
	req.AddCookie(cookie)
	if resp, body = do(req); resp.StatusCode != 200 || strings.Count(body, "<rect") != 1 {
		t.Errorf("with the cookie, by month: %d %s", resp.StatusCode, body)
	}
	// A cross-site form post is refused.
	req, _ = http.NewRequest("POST", ts.URL+"/usage/report", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp, _ = do(req); resp.StatusCode != 403 {
		t.Errorf("cross-origin post: %d, want 403", resp.StatusCode)
	}
	// A bad period is a 400 with the form.
	req, _ = http.NewRequest("GET", ts.URL+"/usage/report?start=2026-06-04&end=2026-06-01", nil)
	req.Header.Set("Authorization", "Bearer admin")
	if resp, body = do(req); resp.StatusCode != 400 || !strings.Contains(body, "before its end") {
		t.Errorf("bad period: %d %s", resp.StatusCode, body)
	}
}
