package authz

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/audit"
)

// The steps between /authorize and the redirect back to the app, each a
// page that posts to its own endpoint and comes back to /flow:
//
//	login (password, then TOTP when enrolled; or the federated provider)
//	-> patient picker (launch/patient or patient/ scopes: the patients
//	   this user may act for, by the resource server's own rules; skipped
//	   with one choice or with the EHR's launch context)
//	-> approval (skipped when the user approved these scopes for this app
//	   before, until they revoke it)
//	-> redirect with code and state.

// currentSession returns the browser's logged-in session and account
// (nil when none; MFA-pending sessions are not logged in).
func (s *Server) currentSession(ctx context.Context, r *http.Request) (*Session, *Account) {
	v := s.cookie(r, "fg_session")
	if v == "" {
		return nil, nil
	}
	se, err := s.store.GetSession(ctx, hashToken(v))
	if err != nil || !s.now().Before(se.ExpiresAt) || se.MFAPending {
		return nil, nil
	}
	a, err := s.store.GetAccount(ctx, se.AccountID)
	if err != nil || a.Disabled {
		return nil, nil
	}
	return se, a
}

func (s *Server) handleFlow(w http.ResponseWriter, r *http.Request) {
	req, c, ok := s.loadRequest(w, r, r.URL.Query().Get("r"))
	if !ok {
		return
	}
	s.advance(w, r, req, c)
}

// advance shows the next step of req.
func (s *Server) advance(w http.ResponseWriter, r *http.Request, req *AuthRequest, c *Client) {
	ctx := r.Context()
	se, acct := s.currentSession(ctx, r)
	if acct == nil || (req.PromptLogin && se.AuthTime.Before(req.CreatedAt)) {
		if req.PromptNone {
			s.promptNone(w, r, req, "login_required", "the user is not logged in")
			return
		}
		s.renderLogin(w, r, http.StatusOK, req, c, "")
		return
	}
	if !req.PatientChosen {
		done, err := s.patientStep(w, r, req, c, acct)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		if !done {
			return // a page or the denial was written
		}
	}
	ap, err := s.store.GetApproval(ctx, acct.ID, c.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.internalError(w, r, err)
		return
	}
	if ap != nil && subset(req.Scopes, ap.Requested) {
		// Remembered: the user decided on each of these scopes before.
		s.finish(w, r, req, c, acct, se, intersect(req.Scopes, ap.Granted))
		return
	}
	if req.PromptNone {
		s.promptNone(w, r, req, "consent_required", "the user has not approved these scopes for this app")
		return
	}
	s.renderApprove(w, r, req, c, acct)
}

// promptNone ends a prompt=none request that would need a page.
func (s *Server) promptNone(w http.ResponseWriter, r *http.Request, req *AuthRequest, code, desc string) {
	_ = s.store.DeleteAuthRequest(r.Context(), req.ID)
	s.redirectError(w, r, req.RedirectURI, req.State, code, desc)
}

// patientStep settles req.Patient. It returns true when the flow may go
// on; otherwise it wrote a page (picker) or the denial.
func (s *Server) patientStep(w http.ResponseWriter, r *http.Request, req *AuthRequest, c *Client, acct *Account) (bool, error) {
	ctx := r.Context()
	if lc := req.Launch; lc != nil {
		if lc.FHIRUser != "" && lc.FHIRUser != acct.FHIRUser {
			s.deny(w, r, req, "this launch was created for another user")
			return false, nil
		}
		if lc.Patient != "" {
			if patientFacing(acct.FHIRUser) {
				ok, err := s.mayActFor(ctx, acct.FHIRUser, lc.Patient)
				if err != nil {
					return false, err
				}
				if !ok {
					s.deny(w, r, req, "the user may not act for the launch's patient")
					return false, nil
				}
			}
			req.Patient, req.PatientChosen = lc.Patient, true
			return true, s.store.UpdateAuthRequest(ctx, req)
		}
	}
	if !needsPatient(req.Scopes) {
		req.PatientChosen = true
		return true, s.store.UpdateAuthRequest(ctx, req)
	}
	if !patientFacing(acct.FHIRUser) {
		s.deny(w, r, req, "choose the patient in the EHR (EHR launch); there is no patient search here")
		return false, nil
	}
	choices, err := s.choices(ctx, acct.FHIRUser)
	if err != nil {
		return false, err
	}
	switch len(choices) {
	case 0:
		s.deny(w, r, req, "the user may not act for any patient")
		return false, nil
	case 1:
		req.Patient, req.PatientChosen = choices[0].ID, true
		return true, s.store.UpdateAuthRequest(ctx, req)
	}
	if req.PromptNone {
		s.promptNone(w, r, req, "interaction_required", "the user must choose a patient")
		return false, nil
	}
	s.render(w, r, http.StatusOK, "picker", page{Title: "picker.title", Req: req.ID, LoggedIn: true,
		Data: pickerData{App: c.Name, Choices: choices}}, req.RedirectURI)
	return false, nil
}

// handlePick records the chosen patient; it must be one of the choices.
func (s *Server) handlePick(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !s.checkCSRF(r) {
		s.errorPage(w, r, http.StatusForbidden, "error.csrf")
		return
	}
	req, c, ok := s.loadRequest(w, r, r.PostFormValue("r"))
	if !ok {
		return
	}
	_, acct := s.currentSession(ctx, r)
	if acct == nil {
		s.renderLogin(w, r, http.StatusOK, req, c, "")
		return
	}
	if r.PostFormValue("action") == "cancel" {
		s.deny(w, r, req, "the user cancelled")
		return
	}
	if req.PatientChosen {
		s.advance(w, r, req, c)
		return
	}
	choices, err := s.choices(ctx, acct.FHIRUser)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	id := r.PostFormValue("patient")
	if !slices.ContainsFunc(choices, func(ch choice) bool { return ch.ID == id }) {
		s.render(w, r, http.StatusBadRequest, "picker", page{Title: "picker.title", Req: req.ID, LoggedIn: true,
			Error: "picker.choose", Data: pickerData{App: c.Name, Choices: choices}}, req.RedirectURI)
		return
	}
	req.Patient, req.PatientChosen = id, true
	if err := s.store.UpdateAuthRequest(ctx, req); err != nil {
		s.internalError(w, r, err)
		return
	}
	http.Redirect(w, r, PathPrefix+"/flow?r="+url.QueryEscape(req.ID), http.StatusSeeOther)
}

// handleApprove records the user's decision: the scopes they kept (a
// subset of those requested) or a denial.
func (s *Server) handleApprove(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !s.checkCSRF(r) {
		s.errorPage(w, r, http.StatusForbidden, "error.csrf")
		return
	}
	req, c, ok := s.loadRequest(w, r, r.PostFormValue("r"))
	if !ok {
		return
	}
	se, acct := s.currentSession(ctx, r)
	if acct == nil {
		s.renderLogin(w, r, http.StatusOK, req, c, "")
		return
	}
	if !req.PatientChosen {
		s.advance(w, r, req, c)
		return
	}
	e := audit.Event{ClientID: c.ID, Outcome: http.StatusOK}
	s.principalOf(&e, acct.FHIRUser, acct.ID, req.Patient)
	if r.PostFormValue("action") != "approve" {
		e.Operation, e.Outcome, e.OutcomeText = "deny", http.StatusForbidden, "the user denied access"
		s.audit(r, e)
		s.deny(w, r, req, "the user denied access")
		return
	}
	kept := r.PostForm["scope"]
	var granted []string
	for _, sc := range req.Scopes {
		if slices.Contains(contextScopes, sc) || slices.Contains(kept, sc) {
			granted = append(granted, sc)
		}
	}
	if err := s.store.PutApproval(ctx, &Approval{AccountID: acct.ID, ClientID: c.ID, Requested: req.Scopes,
		Granted: granted, CreatedAt: s.now()}); err != nil {
		s.internalError(w, r, err)
		return
	}
	e.Operation = "approve"
	e.Query = "scope=" + url.QueryEscape(strings.Join(granted, " "))
	s.audit(r, e)
	s.finish(w, r, req, c, acct, se, granted)
}

type approveData struct {
	App      string
	Patient  string // display name, "" when none
	Info     []scopeLine
	Choices  []scopeLine
	Offline  bool
	Redirect string
}

type scopeLine struct {
	Scope string
	Text  string
}

func (s *Server) renderApprove(w http.ResponseWriter, r *http.Request, req *AuthRequest, c *Client, acct *Account) {
	lang := s.lang(w, r)
	d := approveData{App: c.Name, Redirect: formOrigin(req.RedirectURI)}
	if req.Patient != "" {
		d.Patient = s.patientName(r.Context(), req.Patient)
	}
	for _, sc := range req.Scopes {
		line := scopeLine{Scope: sc, Text: describeScope(lang, sc, d.Patient)}
		if slices.Contains(contextScopes, sc) {
			d.Info = append(d.Info, line)
		} else {
			d.Choices = append(d.Choices, line)
		}
	}
	s.render(w, r, http.StatusOK, "approve", page{Title: "approve.title", Req: req.ID, LoggedIn: true, Data: d}, req.RedirectURI)
}

// The approved apps page: what the user approved, and revocation.

type appsData struct {
	Apps []appLine
	User string
}

type appLine struct {
	ClientID string
	Name     string
	Since    string
	Scopes   []string
}

func (s *Server) handleApps(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, acct := s.currentSession(ctx, r)
	if acct == nil {
		s.renderLogin(w, r, http.StatusOK, nil, nil, "")
		return
	}
	s.renderApps(w, r, acct, "")
}

func (s *Server) renderApps(w http.ResponseWriter, r *http.Request, acct *Account, notice string) {
	ctx := r.Context()
	lang := s.lang(w, r)
	aps, err := s.store.ListApprovals(ctx, acct.ID)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	d := appsData{User: acct.Username}
	for _, ap := range aps {
		name := ap.ClientID
		if c, err := s.store.GetClient(ctx, ap.ClientID); err == nil && c.Name != "" {
			name = c.Name
		}
		l := appLine{ClientID: ap.ClientID, Name: name, Since: ap.CreatedAt.Format("2006-01-02")}
		for _, sc := range ap.Granted {
			l.Scopes = append(l.Scopes, describeScope(lang, sc, ""))
		}
		d.Apps = append(d.Apps, l)
	}
	s.render(w, r, http.StatusOK, "apps", page{Title: "apps.title", LoggedIn: true, Error: notice, Data: d}, "")
}

// handleAppRevoke forgets the approval and revokes every token the app
// holds for the user: access tokens are refused on the next request.
func (s *Server) handleAppRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !s.checkCSRF(r) {
		s.errorPage(w, r, http.StatusForbidden, "error.csrf")
		return
	}
	_, acct := s.currentSession(ctx, r)
	if acct == nil {
		s.renderLogin(w, r, http.StatusOK, nil, nil, "")
		return
	}
	cid := r.PostFormValue("client_id")
	if err := s.store.DeleteApproval(ctx, acct.ID, cid); err != nil && !errors.Is(err, ErrNotFound) {
		s.internalError(w, r, err)
		return
	}
	if err := s.revokeGrants(ctx, acct.ID, cid); err != nil {
		s.internalError(w, r, err)
		return
	}
	e := audit.Event{Operation: "revoke-app", Outcome: http.StatusOK, ClientID: cid}
	s.principalOf(&e, acct.FHIRUser, acct.ID, "")
	s.audit(r, e)
	http.Redirect(w, r, PathPrefix+"/apps", http.StatusSeeOther)
}
