package usage

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/smart"
)

// The canonical URLs of the report (no Measure resource is stored: the
// MeasureReport names this one, documented in docs/usage.md).
const (
	MeasureURL   = "http://fhirgate.dev/Measure/portal-usage"
	CodeSystem   = "http://fhirgate.dev/CodeSystem/usage"
	SourceExt    = "http://fhirgate.dev/StructureDefinition/usage-source"
	OperationURL = "http://fhirgate.dev/OperationDefinition/usage"
)

// measure is one group of the MeasureReport.
type measure struct {
	code, display string
	// seen: the code and display with SourceAudit ("" for a measure
	// that does not exist then).
	seenCode, seenDisplay string
	value                 func(Counts) int
}

// Measures lists every group code in report order (docs/usage.md).
var measures = []measure{
	{"registered-users", "Registered users (accounts, not disabled)", "seen-users", "Users seen in AuditEvents (external authorization server: no accounts)", func(c Counts) int { return c.Registered }},
	{"registered-patients", "Registered patients", "seen-patients", "Patients seen in AuditEvents", func(c Counts) int { return c.RegisteredPatients }},
	{"registered-proxies", "Registered proxies (RelatedPerson, Person)", "seen-proxies", "Proxies seen in AuditEvents", func(c Counts) int { return c.RegisteredProxies }},
	{"registered-staff", "Registered staff (Practitioner, PractitionerRole)", "seen-staff", "Staff seen in AuditEvents", func(c Counts) int { return c.RegisteredStaff }},
	{"new-registrations", "Accounts created in the period", "", "", func(c Counts) int { return c.NewRegistrations }},
	{"active-users", "Active users", "active-users", "Active users", func(c Counts) int { return c.Active }},
	{"active-patients", "Active patients", "active-patients", "Active patients", func(c Counts) int { return c.ActivePatients }},
	{"active-proxies", "Active proxies", "active-proxies", "Active proxies", func(c Counts) int { return c.ActiveProxies }},
	{"active-staff", "Active staff", "active-staff", "Active staff", func(c Counts) int { return c.ActiveStaff }},
	{"messages-by-patients", "Messages sent by patients and proxies", "messages-by-patients", "Messages sent by patients and proxies", func(c Counts) int { return c.MessagesByPatients }},
	{"messages-by-staff", "Messages sent by staff", "messages-by-staff", "Messages sent by staff", func(c Counts) int { return c.MessagesByStaff }},
	{"threads-started", "Threads started by patients and proxies", "threads-started", "Threads started by patients and proxies", func(c Counts) int { return c.ThreadsStarted }},
	{"threads-answered", "Threads answered by staff", "threads-answered", "Threads answered by staff", func(c Counts) int { return c.ThreadsAnswered }},
	{"results-viewed", "Results viewed (user and result, per day)", "results-viewed", "Results viewed (user and result, per day)", func(c Counts) int { return c.ResultsViewed }},
	{"result-viewers", "Users who viewed results", "result-viewers", "Users who viewed results", func(c Counts) int { return c.ResultViewers }},
	{"bookings-by-patients", "Appointments booked by patients and proxies", "bookings-by-patients", "Appointments booked by patients and proxies", func(c Counts) int { return c.BookingsByPatients }},
	{"bookings-by-staff", "Appointments booked by staff", "bookings-by-staff", "Appointments booked by staff", func(c Counts) int { return c.BookingsByStaff }},
}

// MeasureReport renders r as an R4 MeasureReport (measurereport.html):
// type summary, status complete (pending while a day of the period still
// receives events), period with inclusive dates, one group per measure
// with its measureScore over the whole period and a stratifier "day" or
// "month" whose strata carry each day's or month's score. The source of
// the registered-user counts is the extension SourceExt (valueCode
// accounts or audit-events) and the group codes (registered-* or seen-*).
func (r *Report) MeasureReport() []byte {
	type coding struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	type concept struct {
		Coding []coding `json:"coding,omitempty"`
		Text   string   `json:"text,omitempty"`
	}
	type quantity struct {
		Value int    `json:"value"`
		Unit  string `json:"unit,omitempty"`
	}
	type stratum struct {
		Value        concept  `json:"value"`
		MeasureScore quantity `json:"measureScore"`
	}
	type stratifier struct {
		Code    []concept `json:"code"`
		Stratum []stratum `json:"stratum"`
	}
	type group struct {
		Code         concept      `json:"code"`
		MeasureScore quantity     `json:"measureScore"`
		Stratifier   []stratifier `json:"stratifier"`
	}
	type ext struct {
		URL       string `json:"url"`
		ValueCode string `json:"valueCode"`
	}
	type period struct {
		Start string `json:"start"`
		End   string `json:"end"`
	}
	out := struct {
		ResourceType string  `json:"resourceType"`
		Extension    []ext   `json:"extension"`
		Status       string  `json:"status"`
		Type         string  `json:"type"`
		Measure      string  `json:"measure"`
		Date         string  `json:"date"`
		Period       period  `json:"period"`
		Group        []group `json:"group"`
	}{
		ResourceType: "MeasureReport", Extension: []ext{{SourceExt, r.Source}}, Status: "complete", Type: "summary",
		Measure: MeasureURL, Date: fhir.Instant(r.Generated),
		Period: period{Start: r.Start.Format("2006-01-02"), End: r.End.AddDate(0, 0, -1).Format("2006-01-02")},
	}
	if !r.Complete {
		out.Status = "pending"
	}
	for _, m := range measures {
		code, display := m.code, m.display
		if r.Source == SourceAudit {
			code, display = m.seenCode, m.seenDisplay
		}
		if code == "" {
			continue
		}
		g := group{Code: concept{Coding: []coding{{CodeSystem, code, display}}, Text: display},
			MeasureScore: quantity{Value: m.value(r.Total)}}
		st := stratifier{Code: []concept{{Coding: []coding{{CodeSystem, r.Granularity, r.Granularity}}, Text: r.Granularity}}, Stratum: []stratum{}}
		for _, s := range r.Strata {
			st.Stratum = append(st.Stratum, stratum{Value: concept{Text: s.Label}, MeasureScore: quantity{Value: m.value(s.Counts)}})
		}
		g.Stratifier = []stratifier{st}
		out.Group = append(out.Group, g)
	}
	b, _ := json.Marshal(out)
	return b
}

// Allowed reports whether p may see usage reports: a backend service
// with system/AuditEvent.rs, or a practitioner (fhirUser Practitioner or
// PractitionerRole) with user/AuditEvent.rs (or the * type; no granular
// ?query constraint), i.e. whoever may already read the whole audit
// trail. nil (authorization disabled) is allowed. A patient-facing
// token (a Patient, RelatedPerson or Person fhirUser, or a patient launch
// context) never is, whatever its scopes: the report counts every
// patient's activity, and the $usage operation refuses such callers too.
func Allowed(p *smart.Principal) bool {
	if p == nil {
		return true
	}
	if k := kindOf(p.FHIRUser); k == kindPatient || k == kindProxy || p.Patient != "" {
		return false
	}
	for _, sc := range p.Scopes {
		if sc.Query != nil || sc.Type != "AuditEvent" && sc.Type != "*" || !sc.Perms.Has(smart.PermRead|smart.PermSearch) {
			continue
		}
		switch sc.Context {
		case smart.ContextSystem:
			return true
		case smart.ContextUser:
			if k := kindOf(p.FHIRUser); k == kindStaff {
				return true
			}
		}
	}
	return false
}

// Operation is the system-level $usage operation (GET or POST
// [base]/$usage?start=2026-06-01&end=2026-07-01&granularity=day).
func (s *Service) Operation() server.ExtraOperation {
	return server.ExtraOperation{
		Name: "$usage", Level: server.SystemLevel, Staff: true, Definition: OperationURL,
		Doc: "Portal usage (registered, active and proxy users, messages, results viewed, bookings) as a MeasureReport; " +
			"start, end (dates, end exclusive; default the last 30 days), granularity day|month; needs system/ or user/AuditEvent.rs",
		Run: func(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
			if !Allowed(call.Principal) {
				return nil, fhir.Errorf(fhir.KindForbidden, "$usage needs system/AuditEvent.rs, or user/AuditEvent.rs for a practitioner")
			}
			start, end, gran, err := s.params(call.Request)
			if err != nil {
				return nil, err
			}
			rep, err := s.Compute(ctx, start, end, gran)
			if err != nil {
				return nil, err
			}
			h := http.Header{}
			h.Set("Cache-Control", "no-store")
			return &fhir.Response{Status: http.StatusOK, Header: h, Body: rep.MeasureReport()}, nil
		},
	}
}

var (
	dateRE  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	monthRE = regexp.MustCompile(`^\d{4}-\d{2}$`)
)

// ParseDate reads a FHIR date of day ("2026-06-01") or month ("2026-06")
// precision as that midnight in the service's zone.
func (s *Service) ParseDate(v string) (time.Time, bool) {
	layout := ""
	switch {
	case dateRE.MatchString(v):
		layout = "2006-01-02"
	case monthRE.MatchString(v):
		layout = "2006-01"
	default:
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(layout, v, s.cfg.Location)
	return t, err == nil
}

// params reads start, end and granularity from the query or a Parameters
// body (fhir.ReadParams).
func (s *Service) params(req *fhir.Request) (start, end time.Time, gran string, err error) {
	ps, err := fhir.ReadParams(req)
	if err != nil {
		return start, end, "", err
	}
	vals := map[string]string{}
	for _, k := range []string{"start", "end", "granularity"} {
		vals[k] = ps.Get(k)
	}
	gran = vals["granularity"]
	if gran == "" {
		gran = Day
	}
	if gran != Day && gran != Month {
		return start, end, "", fhir.Invalid("Parameters.parameter.granularity", "granularity must be day or month, not %q", gran)
	}
	start, end = s.DefaultPeriod()
	if v := vals["end"]; v != "" {
		t, ok := s.ParseDate(v)
		if !ok {
			return start, end, "", fhir.Invalid("Parameters.parameter.end", "end must be a date (YYYY-MM-DD or YYYY-MM), not %q", v)
		}
		end = t
		if vals["start"] == "" {
			start = end.AddDate(0, 0, -30)
		}
	}
	if v := vals["start"]; v != "" {
		t, ok := s.ParseDate(v)
		if !ok {
			return start, end, "", fhir.Invalid("Parameters.parameter.start", "start must be a date (YYYY-MM-DD or YYYY-MM), not %q", v)
		}
		start = t
		if vals["end"] == "" {
			end = start.AddDate(0, 0, 30)
			if gran == Month {
				end = start.AddDate(0, 1, 0)
			}
		}
	}
	if _, _, err := s.Period(start, end); err != nil {
		return start, end, "", fhir.Invalid("Parameters.parameter.end", "%s", err.Error())
	}
	return start, end, gran, nil
}
