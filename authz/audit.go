package authz

import (
	"net/http"

	"github.com/fhirgate/fhirgate/audit"
)

// Every login, failed login, registration, approval, token issue,
// refresh and revocation is an AuditEvent (restful-interaction
// "operation", the operation named in an entity: login, login-failed,
// register, approve, deny, token, refresh, revoke, revoke-app, launch).
// Events that concern a patient name them (Patient, and Proxy when a
// parent or caregiver acts), so the patient finds them in their audit
// trail (AuditEvent?patient=...): who logged in to my account, which app
// got access to my record, when.

// audit fills the request's fields and logs e.
func (s *Server) audit(r *http.Request, e audit.Event) {
	if s.cfg.Audit == nil {
		return
	}
	e.Interaction = "operation"
	e.Time = s.now()
	e.Server = s.cfg.BaseURL
	e.SourceIP = clientIP(r)
	e.UserAgent = r.Header.Get("User-Agent")
	e.RequestID = r.Header.Get("X-Request-Id")
	if e.UserIssuer == "" && e.UserSubject != "" {
		e.UserIssuer = s.issuer
	}
	if err := s.cfg.Audit.Log(r.Context(), e); err != nil {
		s.cfg.Logger.ErrorContext(r.Context(), "authz: audit event not queued", "err", err, "operation", e.Operation)
	}
}

// principalOf sets the user, and the patient the event concerns: the
// patient in context, or the user themselves when they are a patient. A
// parent or caregiver is the Proxy.
func (s *Server) principalOf(e *audit.Event, fhirUser, subject, patient string) {
	e.UserFHIR, e.UserSubject = fhirUser, subject
	switch {
	case patient != "":
		e.Patient = "Patient/" + patient
		if isProxy(fhirUser) {
			e.Proxy = fhirUser
		}
	case len(fhirUser) > len("Patient/") && fhirUser[:len("Patient/")] == "Patient/":
		e.Patient = fhirUser
	}
}
