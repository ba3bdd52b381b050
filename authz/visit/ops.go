package visit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// Operations are the host's FHIR operations on an Appointment, for
// server.RegisterOperation. All are staff only (practitioners and backend
// services; patient-facing apps get 403):
//
//	POST Appointment/[id]/$invite         participant?, name, email, confirmed=true, lang? -> invitation, pin, expires
//	POST Appointment/[id]/$invite-revoke  invitation -> invitation, status
//	POST Appointment/[id]/$invite-resend  invitation -> (revokes it) a new invitation, pin, expires, replaces
//	GET  Appointment/[id]/$invitations    -> one "invitation" part per invitation: id, status, name, participant, times
func (s *Service) Operations() []server.ExtraOperation {
	ops := []server.ExtraOperation{
		{Name: "$invite", Type: "Appointment", Write: true, Staff: true, Run: s.opInvite},
		{Name: "$invite-revoke", Type: "Appointment", Write: true, Staff: true, Run: s.opRevoke},
		{Name: "$invite-resend", Type: "Appointment", Write: true, Staff: true, Run: s.opResend},
		{Name: "$invitations", Type: "Appointment", Staff: true, Run: s.opList},
	}
	for i := range ops {
		name := ops[i].Name[1:]
		ops[i].Definition = "http://fhirgate.dev/OperationDefinition/" + name
		ops[i].Doc = OperationDocs[name] + " (docs/evisit.md)"
	}
	return ops
}

// OperationDocs describe Operations for the CapabilityStatement.
var OperationDocs = map[string]string{
	"invite":        "eVisit invitation: emails a participant a PHI-free single-use link; returns the PIN to give separately (once).",
	"invite-revoke": "Revoke an eVisit invitation (its link and session stop working).",
	"invite-resend": "Revoke an eVisit invitation and send a new one (new link, new PIN).",
	"invitations":   "List an Appointment's eVisit invitations and their status (never a token, PIN or hash).",
}

// params is a decoded Parameters body (parameters.html): the first value
// of each name, as a string.
type params map[string]string

func parseParams(req *fhir.Request) (params, error) {
	out := params{}
	for k, v := range req.Query {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	if len(req.Body) == 0 {
		return out, nil
	}
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name           string `json:"name"`
			ValueString    *string
			ValueCode      *string
			ValueID        *string `json:"valueId"`
			ValueBoolean   *bool
			ValueReference *struct {
				Reference string `json:"reference"`
			}
		} `json:"parameter"`
	}
	if err := json.Unmarshal(req.Body, &p); err != nil || p.ResourceType != "Parameters" {
		return nil, fhir.Invalid("", "the body must be a Parameters resource")
	}
	for _, prm := range p.Parameter {
		if _, seen := out[prm.Name]; seen {
			continue
		}
		switch {
		case prm.ValueString != nil:
			out[prm.Name] = *prm.ValueString
		case prm.ValueCode != nil:
			out[prm.Name] = *prm.ValueCode
		case prm.ValueID != nil:
			out[prm.Name] = *prm.ValueID
		case prm.ValueBoolean != nil:
			out[prm.Name] = fmt.Sprint(*prm.ValueBoolean)
		case prm.ValueReference != nil:
			out[prm.Name] = prm.ValueReference.Reference
		}
	}
	return out, nil
}

// appointment is what the invitations read of an Appointment.
type appointment struct {
	Status          string `json:"status"`
	Start           string `json:"start"`
	End             string `json:"end"`
	MinutesDuration int    `json:"minutesDuration"`
	Extension       []struct {
		URL            string `json:"url"`
		ValueReference *struct {
			Reference string `json:"reference"`
		} `json:"valueReference"`
	} `json:"extension"`
	Contained   []json.RawMessage `json:"contained"`
	Participant []struct {
		Actor *struct {
			Reference string `json:"reference"`
		} `json:"actor"`
	} `json:"participant"`
}

// visitInfo is what the join page shows: the time and the join URL.
type visitInfo struct {
	Status     string
	Start, End time.Time
	JoinURL    string
}

func parseAppointment(raw []byte) (appointment, error) {
	var a appointment
	if err := json.Unmarshal(raw, &a); err != nil {
		return a, fmt.Errorf("visit: appointment: %w", err)
	}
	return a, nil
}

// info resolves the Appointment's time and its virtual service's join URL.
func (s *Service) info(ctx context.Context, a appointment) (visitInfo, error) {
	v := visitInfo{Status: a.Status}
	var err error
	if v.Start, err = time.Parse(time.RFC3339, a.Start); err != nil {
		return v, fhir.Invalid("Appointment.start", "the Appointment needs a start instant")
	}
	switch {
	case a.End != "":
		if v.End, err = time.Parse(time.RFC3339, a.End); err != nil {
			return v, fhir.Invalid("Appointment.end", "Appointment.end is not an instant")
		}
	case a.MinutesDuration > 0:
		v.End = v.Start.Add(time.Duration(a.MinutesDuration) * time.Minute)
	default:
		return v, fhir.Invalid("Appointment.end", "the Appointment needs an end (or minutesDuration): invitations expire after it")
	}
	ref := ""
	for _, e := range a.Extension {
		if e.URL == VirtualServiceExtension && e.ValueReference != nil {
			ref = e.ValueReference.Reference
		}
	}
	if ref == "" {
		return v, fhir.Invalid("Appointment.extension", "the Appointment has no virtual service (extension %s naming an Endpoint)", VirtualServiceExtension)
	}
	var ep struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Status       string `json:"status"`
		Address      string `json:"address"`
	}
	if id, ok := strings.CutPrefix(ref, "#"); ok {
		for _, c := range a.Contained {
			ep.ResourceType = ""
			if json.Unmarshal(c, &ep) == nil && ep.ResourceType == "Endpoint" && ep.ID == id {
				break
			}
			ep.ResourceType = ""
		}
	} else if id, ok := strings.CutPrefix(ref, "Endpoint/"); ok && fhir.ValidID(id) {
		rec, err := s.cfg.FHIR.Read(ctx, "Endpoint", id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return v, err
		}
		if err == nil && !rec.Deleted {
			_ = json.Unmarshal(rec.Raw, &ep)
		}
	}
	if ep.ResourceType != "Endpoint" {
		return v, fhir.Invalid("Appointment.extension", "the virtual service %q is not an Endpoint this server holds", ref)
	}
	if ep.Status != "" && ep.Status != "active" {
		return v, fhir.Errorf(fhir.KindUnprocessable, "the virtual service Endpoint is %s", ep.Status)
	}
	if !strings.HasPrefix(ep.Address, "https://") && !strings.HasPrefix(ep.Address, "http://") {
		return v, fhir.Invalid("Endpoint.address", "the virtual service's join URL must be an http(s) URL")
	}
	v.JoinURL = ep.Address
	return v, nil
}

// closedStatuses are Appointment statuses nobody is invited to.
var closedStatuses = map[string]bool{"cancelled": true, "noshow": true, "entered-in-error": true, "fulfilled": true}

func actorOf(p *smart.Principal) string {
	switch {
	case p == nil:
		return "anonymous (authorization disabled)"
	case p.FHIRUser != "":
		return p.FHIRUser
	}
	return "client:" + p.ClientID
}

func (s *Service) opInvite(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	p, err := parseParams(call.Request)
	if err != nil {
		return nil, err
	}
	name := strings.TrimSpace(p["name"])
	if name == "" || utf8.RuneCountInString(name) > 200 {
		return nil, fhir.Invalid("Parameters.parameter.name", "name is required (at most 200 characters): the invitee's name, as confirmed with them")
	}
	email := strings.TrimSpace(p["email"])
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email || len(email) > 254 || addr.Name != "" {
		return nil, fhir.Invalid("Parameters.parameter.email", "email must be a plain email address")
	}
	if p["confirmed"] != "true" {
		return nil, fhir.Invalid("Parameters.parameter.confirmed",
			"the sender must confirm the recipient's name and email with them: send confirmed=true")
	}
	lang := p["lang"]
	if lang == "" {
		lang = "en"
	}
	if lang != "en" && lang != "fr" {
		return nil, fhir.Invalid("Parameters.parameter.lang", "lang must be en or fr")
	}
	a, err := parseAppointment(call.Resource.Raw)
	if err != nil {
		return nil, err
	}
	participant := p["participant"]
	if participant != "" {
		typ, id, _ := strings.Cut(participant, "/")
		if (typ != "Patient" && typ != "RelatedPerson" && typ != "Practitioner") || !fhir.ValidID(id) {
			return nil, fhir.Invalid("Parameters.parameter.participant", "participant must be a Patient, RelatedPerson or Practitioner reference (none for an interpreter)")
		}
		found := false
		for _, pt := range a.Participant {
			if pt.Actor != nil && (pt.Actor.Reference == participant || strings.HasSuffix(pt.Actor.Reference, "/"+participant)) {
				found = true
			}
		}
		if !found {
			return nil, fhir.Invalid("Parameters.parameter.participant", "%s is not a participant of the Appointment", participant)
		}
	}
	inv := Invitation{Appointment: call.Resource.Type + "/" + call.Resource.ID, Participant: participant,
		Name: name, Email: email, Lang: lang, InvitedBy: actorOf(call.Principal)}
	out, pin, err := s.issue(ctx, a, inv)
	if err != nil {
		return nil, err
	}
	s.auditOp(ctx, call, "evisit-invite", out, "")
	return invitationResponse(out, pin, ""), nil
}

// issue stores a new invitation (fresh token, PIN and expiry) and sends
// its email; it returns the invitation and the PIN.
func (s *Service) issue(ctx context.Context, a appointment, inv Invitation) (Invitation, string, error) {
	if closedStatuses[a.Status] {
		return inv, "", fhir.Errorf(fhir.KindUnprocessable, "the Appointment is %s: nobody can be invited to it", a.Status)
	}
	v, err := s.info(ctx, a)
	if err != nil {
		return inv, "", err
	}
	now := s.cfg.Now().UTC()
	inv.ExpiresAt = v.End.Add(s.cfg.Grace).UTC()
	if !now.Before(inv.ExpiresAt) {
		return inv, "", fhir.Errorf(fhir.KindUnprocessable, "the Appointment ended more than %s ago: an invitation would have expired already", s.cfg.Grace)
	}
	token, pin := newToken(), newPIN(s.cfg.PINDigits)
	inv.ID = server.NewID()
	inv.TokenHash = hashToken(token)
	inv.PINSalt = randomBytes(16)
	inv.PINHash = hashPIN(pin, inv.PINSalt)
	inv.CreatedAt = now
	if err := s.cfg.Storage.Create(ctx, inv); err != nil {
		return inv, "", err
	}
	n := notify.Notification{Key: "invitation/" + inv.ID, Channel: notify.Email, To: inv.Email, Template: "invitation",
		Lang: inv.Lang, Link: s.Link(token), Expires: inv.ExpiresAt}
	if err := s.cfg.Outbox.Enqueue(ctx, n); err != nil {
		// No email, no invitation: the host sees the failure and tries again.
		if rerr := s.cfg.Storage.Revoke(ctx, inv.ID, "", now); rerr != nil {
			s.cfg.Logger.ErrorContext(ctx, "visit: unsent invitation not revoked", "id", inv.ID, "err", rerr)
		}
		return inv, "", fhir.Errorf(fhir.KindUnavailable, "the invitation email could not be queued; try again").Wrap(err)
	}
	return inv, pin, nil
}

// Link is the invitation link of a token.
func (s *Service) Link(token string) string {
	return strings.TrimRight(s.cfg.Origin, "/") + PathPrefix + "/" + token
}

// invitationOf finds the Parameters' invitation among the Appointment's.
func (s *Service) invitationOf(ctx context.Context, call server.OperationCall) (Invitation, error) {
	p, err := parseParams(call.Request)
	if err != nil {
		return Invitation{}, err
	}
	id := p["invitation"]
	if id == "" {
		return Invitation{}, fhir.Invalid("Parameters.parameter.invitation", "invitation (the id $invite returned) is required")
	}
	inv, err := s.cfg.Storage.Get(ctx, id)
	if errors.Is(err, ErrNotFound) || err == nil && inv.Appointment != call.Resource.Type+"/"+call.Resource.ID {
		return Invitation{}, fhir.Errorf(fhir.KindNotFound, "no invitation %q for this Appointment", id)
	}
	return inv, err
}

func (s *Service) opRevoke(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	inv, err := s.invitationOf(ctx, call)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC()
	if err := s.cfg.Storage.Revoke(ctx, inv.ID, "", now); err != nil {
		return nil, err
	}
	if inv, err = s.cfg.Storage.Get(ctx, inv.ID); err != nil {
		return nil, err
	}
	s.auditOp(ctx, call, "evisit-revoke", inv, "")
	return listResponse([]Invitation{inv}, now), nil
}

func (s *Service) opResend(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	old, err := s.invitationOf(ctx, call)
	if err != nil {
		return nil, err
	}
	a, err := parseAppointment(call.Resource.Raw)
	if err != nil {
		return nil, err
	}
	inv := Invitation{Appointment: old.Appointment, Participant: old.Participant, Name: old.Name, Email: old.Email,
		Lang: old.Lang, InvitedBy: actorOf(call.Principal)}
	out, pin, err := s.issue(ctx, a, inv)
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Storage.Revoke(ctx, old.ID, out.ID, s.cfg.Now().UTC()); err != nil {
		return nil, err
	}
	s.auditOp(ctx, call, "evisit-resend", out, old.ID)
	return invitationResponse(out, pin, old.ID), nil
}

func (s *Service) opList(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	invs, err := s.cfg.Storage.List(ctx, call.Resource.Type+"/"+call.Resource.ID)
	if err != nil {
		return nil, err
	}
	return listResponse(invs, s.cfg.Now()), nil
}

func param(name, kind string, v any) map[string]any {
	return map[string]any{"name": name, kind: v}
}

func parametersResponse(ps []any) *fhir.Response {
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": ps})
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: b}
}

// invitationResponse is the $invite / $invite-resend answer: the only
// place the PIN ever appears.
func invitationResponse(inv Invitation, pin, replaces string) *fhir.Response {
	ps := []any{
		param("invitation", "valueString", inv.ID),
		param("pin", "valueString", pin),
		param("expires", "valueInstant", fhir.Instant(inv.ExpiresAt)),
		param("status", "valueCode", string(StatusPending)),
	}
	if replaces != "" {
		ps = append(ps, param("replaces", "valueString", replaces))
	}
	return parametersResponse(ps)
}

// listResponse renders invitations without any secret or hash (and
// without the email address: the host has it).
func listResponse(invs []Invitation, now time.Time) *fhir.Response {
	ps := make([]any, 0, len(invs))
	for _, inv := range invs {
		parts := []any{
			param("id", "valueString", inv.ID),
			param("status", "valueCode", string(inv.Status(now))),
			param("name", "valueString", inv.Name),
			param("created", "valueInstant", fhir.Instant(inv.CreatedAt)),
			param("expires", "valueInstant", fhir.Instant(inv.ExpiresAt)),
			param("invitedBy", "valueString", inv.InvitedBy),
			param("failedAttempts", "valueInteger", inv.Attempts),
		}
		if inv.Participant != "" {
			parts = append(parts, param("participant", "valueReference", map[string]string{"reference": inv.Participant}))
		}
		for _, t := range []struct {
			name string
			at   time.Time
		}{{"used", inv.UsedAt}, {"locked", inv.LockedAt}, {"revoked", inv.RevokedAt}} {
			if !t.at.IsZero() {
				parts = append(parts, param(t.name, "valueInstant", fhir.Instant(t.at)))
			}
		}
		if inv.ReplacedBy != "" {
			parts = append(parts, param("replacedBy", "valueString", inv.ReplacedBy))
		}
		ps = append(ps, map[string]any{"name": "invitation", "part": parts})
	}
	return parametersResponse(ps)
}

// auditOp records a host action: who invited whom (the invitee by name
// and participant reference, never the email), on which Appointment.
func (s *Service) auditOp(ctx context.Context, call server.OperationCall, op string, inv Invitation, replaces string) {
	e := audit.Event{Operation: op, Outcome: http.StatusOK, Resources: []string{inv.Appointment}, Patients: call.Resource.Index.Compartments,
		Query: detail(inv, replaces), RequestID: call.Request.Header.Get("X-Request-Id"),
		SourceIP: call.Request.Header.Get("X-Forwarded-For"), UserAgent: call.Request.Header.Get("User-Agent")}
	if inv.Participant != "" {
		e.Resources = append(e.Resources, inv.Participant)
	}
	if p := call.Principal; p != nil {
		e.UserFHIR, e.UserSubject, e.UserIssuer, e.ClientID = p.FHIRUser, p.Subject, p.Issuer, p.ClientID
	}
	s.audit(ctx, e)
}

// detail is the event's query entity: the invitation and the invitee's name.
func detail(inv Invitation, replaces string) string {
	q := url.Values{"invitation": {inv.ID}, "invitee": {inv.Name}}
	if inv.Participant != "" {
		q.Set("participant", inv.Participant)
	}
	if replaces != "" {
		q.Set("replaces", replaces)
	}
	return q.Encode()
}

func (s *Service) audit(ctx context.Context, e audit.Event) {
	if s.cfg.Audit == nil {
		return
	}
	e.Interaction = "operation"
	e.Time = s.cfg.Now()
	e.Server = s.cfg.BaseURL
	if err := s.cfg.Audit.Log(ctx, e); err != nil {
		s.cfg.Logger.ErrorContext(ctx, "visit: audit event not queued", "err", err, "operation", e.Operation)
	}
}
