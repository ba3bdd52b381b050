package authz

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/store"
)

// EHR launch (SMART App Launch app-launch.html#launch-app-ehr-launch). An
// EHR registered with EHRLaunch authenticates as a client (like at the
// token endpoint) and posts the context:
//
//	POST /auth/launch
//	patient=123&encounter=456&user=Practitioner/7&app=growth-chart&need_patient_banner=false
//
// and gets {"launch": "<opaque>", "expires_in": 300}. It opens the app with
// iss=<FHIR base>&launch=<opaque>; the app's authorize request with that
// launch (and the launch scope) gets that context: the token response's
// patient and encounter. The value is random (256 bits), stored as a hash,
// single use and short lived. user (optional) restricts it to the user
// who logs in with that fhirUser; app (optional) to one client.

func (s *Server) handleLaunch(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, err := parseForm(w, r)
	if err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	c, err := s.authenticateClient(ctx, r, form)
	if err == nil && (!c.EHRLaunch || c.Public()) {
		err = &oauthError{Status: http.StatusForbidden, Code: "unauthorized_client", Description: "this client may not create launch contexts"}
	}
	if err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	now := s.now()
	lc := &LaunchContext{CreatedBy: c.ID, ClientID: form.Get("app"), Patient: form.Get("patient"), Encounter: form.Get("encounter"),
		FHIRUser: form.Get("user"), Intent: form.Get("intent"), CreatedAt: now, ExpiresAt: now.Add(s.cfg.LaunchTTL)}
	if b := form.Get("need_patient_banner"); b != "" {
		if lc.Banner, err = strconv.ParseBool(b); err != nil {
			s.writeOAuthError(w, r, errInvalidRequest("need_patient_banner must be true or false"))
			return
		}
	}
	for _, x := range []struct{ typ, id string }{{"Patient", lc.Patient}, {"Encounter", lc.Encounter}} {
		if x.id == "" {
			continue
		}
		if strings.Contains(x.id, "/") {
			s.writeOAuthError(w, r, errInvalidRequest(strings.ToLower(x.typ)+" is a bare id"))
			return
		}
		rec, err := s.cfg.FHIR.Read(ctx, x.typ, x.id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && rec.Deleted) {
			s.writeOAuthError(w, r, errInvalidRequest(x.typ+"/"+x.id+" does not exist"))
			return
		}
		if err != nil {
			s.writeOAuthError(w, r, err)
			return
		}
	}
	if lc.FHIRUser != "" && !strings.Contains(lc.FHIRUser, "/") {
		s.writeOAuthError(w, r, errInvalidRequest("user is a reference like Practitioner/123"))
		return
	}
	if lc.ClientID != "" {
		if _, err := s.store.GetClient(ctx, lc.ClientID); err != nil {
			s.writeOAuthError(w, r, errInvalidRequest("app is not a registered client"))
			return
		}
	}
	v := randomToken()
	lc.Hash = hashToken(v)
	if err := s.store.CreateLaunch(ctx, lc); err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	e := audit.Event{Operation: "launch", Outcome: http.StatusOK, ClientID: c.ID, UserFHIR: lc.FHIRUser}
	if lc.Patient != "" {
		e.Patient = "Patient/" + lc.Patient
	}
	s.audit(r, e)
	noStore(w)
	writeJSON(w, http.StatusOK, map[string]any{"launch": v, "expires_in": int64(s.cfg.LaunchTTL.Seconds())})
}
