package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/store"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// versionHeaders sets ETag and Last-Modified of rec (http.html#versioning).
func versionHeaders(h http.Header, rec store.Record) {
	h.Set("ETag", fhir.ETag(rec.VersionID))
	h.Set("Last-Modified", rec.LastUpdated.UTC().Format(http.TimeFormat))
}

// written is the response to a create/update/patch: Location, ETag,
// Last-Modified and the body chosen by Prefer: return= (http.html#ops).
func (s *Server) written(req *fhir.Request, status int, rec store.Record) *fhir.Response {
	h := http.Header{}
	versionHeaders(h, rec)
	h.Set("Location", s.cfg.Base+"/"+rec.Type+"/"+rec.ID+"/_history/"+itoa(rec.VersionID))
	resp := &fhir.Response{Status: status, Header: h}
	switch preferReturn(req) {
	case "minimal":
	case "OperationOutcome":
		b, _ := json.Marshal(fhir.InfoOutcome(fhir.Issue{Severity: "information", Code: "informational",
			Diagnostics: "ok: " + rec.Type + "/" + rec.ID + " version " + itoa(rec.VersionID)}))
		resp.Body = b
	default:
		resp.Body = rec.Raw
	}
	return resp
}

// found is the response of a read/vread.
func found(rec store.Record) *fhir.Response {
	h := http.Header{}
	versionHeaders(h, rec)
	return &fhir.Response{Status: http.StatusOK, Header: h, Body: rec.Raw}
}

func preferReturn(req *fhir.Request) string {
	for _, p := range req.Header.Values("Prefer") {
		for _, part := range strings.Split(p, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && strings.EqualFold(k, "return") {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

// preferStrict reports Prefer: handling=strict (search.html#errors).
func preferStrict(req *fhir.Request) bool {
	for _, p := range req.Header.Values("Prefer") {
		for _, part := range strings.Split(p, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && strings.EqualFold(k, "handling") && strings.EqualFold(strings.Trim(v, `"`), "strict") {
				return true
			}
		}
	}
	return false
}

// fail turns err into the error Response (the one place: fhir.Outcome),
// logs internal detail and audits the failure.
func (s *Server) fail(ctx context.Context, req *fhir.Request, c *caller, err error, x *exchange) *fhir.Response {
	status, oo := fhir.Outcome(err)
	fe := fhir.AsError(err)
	if status >= 500 {
		s.cfg.Logger.ErrorContext(ctx, "request failed", "method", req.Method, "path", req.Path, "err", err)
	} else {
		s.cfg.Logger.DebugContext(ctx, "request rejected", "method", req.Method, "path", req.Path, "status", status, "err", err)
	}
	b, _ := json.Marshal(oo)
	h := http.Header{}
	for k, v := range fe.Header {
		h.Set(k, v)
	}
	resp := &fhir.Response{Status: status, Header: h, Body: b, Err: err}
	if x == nil {
		x = &exchange{req: req, c: c}
	}
	s.audit(ctx, x, resp)
	return resp
}

// audit records the interaction (audit package); nil logger: off.
func (s *Server) audit(ctx context.Context, x *exchange, resp *fhir.Response) {
	if s.cfg.Audit == nil || x.interaction == "capabilities" {
		return
	}
	if x.interaction == "" {
		x.interaction = "operation"
	}
	if entryAuditFrom(ctx).collect(x, resp) {
		return // a Bundle entry: audited when the Bundle ends (bundleaudit.go)
	}
	e := audit.Event{
		Time: s.cfg.Now(), Interaction: x.interaction, Operation: x.operation, Outcome: resp.Status,
		Resources: x.resources, Patients: x.patients, Query: x.query, Server: s.cfg.Base,
		RequestID: x.req.Header.Get("X-Request-Id"), SourceIP: x.req.Header.Get("X-Forwarded-For"),
		UserAgent: x.req.Header.Get("User-Agent"),
	}
	if resp.Err != nil {
		_, oo := fhir.Outcome(resp.Err)
		if len(oo.Issue) > 0 {
			e.OutcomeText = oo.Issue[0].Diagnostics
		}
	}
	if c := x.c; c != nil && (c.p != nil || c.onBehalf != nil) {
		p := c.p
		if p == nil {
			p = c.onBehalf
		}
		e.UserFHIR, e.UserSubject, e.UserIssuer, e.ClientID = p.FHIRUser, p.Subject, p.Issuer, p.ClientID
		if p.Patient != "" {
			e.Patient = "Patient/" + strings.TrimPrefix(p.Patient, "Patient/")
		} else if strings.HasPrefix(p.FHIRUser, "Patient/") {
			e.Patient = p.FHIRUser
		}
		e.Proxy = c.proxy
		if c.p == nil && p.IsProxy() {
			e.Proxy = p.FHIRUser
		}
	}
	e.Seq = x.seq
	for _, ev := range splitByPatient(e, x) {
		if err := s.cfg.Audit.Log(ctx, ev); err != nil {
			s.cfg.Logger.ErrorContext(ctx, "audit event not queued", "err", err, "interaction", e.Interaction)
		}
	}
}

// splitByPatient records one AuditEvent per patient whose data was touched
// (IHE BALP: one event per patient), each naming only that patient's
// resources, so no patient's audit view shows another patient's data.
// Resources in no patient compartment go in every event. A patient's
// resources are further split by their security labels: the event naming
// a sensitive resource carries its labels (withheld from proxies like the
// resource), the others stay visible. Each event is released when
// everything it names is. The query of an event is the caller's own when a
// patient-facing app searched for that patient; otherwise values that
// name other patients (or chains and _has, which can) are redacted.
func splitByPatient(e audit.Event, x *exchange) []audit.Event {
	patients := x.patients
	if len(patients) <= 1 {
		patients = []string{""} // one event naming everything
	}
	var out []audit.Event
	for _, p := range patients {
		base := e
		base.Resources = nil
		if p != "" {
			base.Patients = []string{p}
		}
		owner := p
		if owner == "" && len(x.patients) == 1 {
			owner = x.patients[0]
		}
		if owner != "" && !(x.c.patientFacing() && contains(x.c.actingPatients(), owner)) {
			base.Query = redactQuery(e.Query, owner)
		}
		groups := map[string]int{} // label set -> index in out
		start := len(out)
		for i, r := range x.resources {
			if p != "" && len(x.owners[i]) > 0 && !contains(x.owners[i], p) {
				continue
			}
			labels := slices.Clone(x.labels[i])
			slices.Sort(labels)
			key := strings.Join(labels, " ")
			g, ok := groups[key]
			if !ok {
				ev := base
				ev.Labels = labels
				out = append(out, ev)
				g = len(out) - 1
				groups[key] = g
			}
			ev := &out[g]
			ev.Resources = append(ev.Resources, r)
			if h := x.held[i]; h.Patient.After(ev.HeldUntilPatient) {
				ev.HeldUntilPatient = h.Patient
			}
			if h := x.held[i]; h.Proxy.After(ev.HeldUntilProxy) {
				ev.HeldUntilProxy = h.Proxy
			}
		}
		if len(out) == start {
			out = append(out, base)
		}
	}
	return out
}

// redactQuery keeps of query what concerns patient ("Patient/1"): values
// that reference another Patient, or an id under a parameter that names
// patients, are dropped, and chained and _has parameters (whose values
// can name anyone) are replaced by "[redacted]".
func redactQuery(query, patient string) string {
	q, err := url.ParseQuery(query)
	if err != nil {
		return ""
	}
	id := strings.TrimPrefix(patient, "Patient/")
	out := url.Values{}
	for k, vs := range q {
		name, _, _ := strings.Cut(k, ":")
		if strings.HasPrefix(k, "_has") || strings.Contains(k, ".") {
			out[k] = []string{"[redacted]"}
			continue
		}
		names := name == "patient" || name == "subject" || name == "_id" || name == "link" || name == "actor" || name == "beneficiary"
		for _, v := range vs {
			var keep []string
			for _, part := range strings.Split(v, ",") {
				other := false
				if i := strings.LastIndex(part, "Patient/"); i >= 0 {
					other = part[i+len("Patient/"):] != id
				} else if names && !strings.Contains(part, "/") {
					other = part != id
				}
				if !other {
					keep = append(keep, part)
				}
			}
			if len(keep) == 0 {
				keep = []string{"[redacted]"}
			}
			out[k] = append(out[k], strings.Join(keep, ","))
		}
	}
	return out.Encode()
}
