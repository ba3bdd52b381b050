package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/audit"
)

// Registration by invitation. Staff verify the person's identity (in
// person, per portal guidelines) and issue a single-use, expiring code
// bound to the person's Patient or RelatedPerson (`fhirgate invite`, or
// Invite); the person registers with the code, a username and a password.
// The code is shown once and stored as a SHA-256 only.

// invitationAlphabet is Crockford's base32 (no I, L, O, U): easy to read
// aloud and to type; 16 characters are 80 bits.
const invitationAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewInvitationCode returns a code like "7KQ2-M9XD-3RTA-F0WE".
func NewInvitationCode() (string, error) {
	b, err := randomBytes(16)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	for i, x := range b {
		if i > 0 && i%4 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(invitationAlphabet[int(x)%32])
	}
	return sb.String(), nil
}

// normalizeCode drops separators and case, and maps the letters people
// confuse (O->0, I and L->1), as Crockford's base32 does.
func normalizeCode(c string) string {
	c = strings.ToUpper(c)
	return strings.Map(func(r rune) rune {
		switch r {
		case '-', ' ', '\t':
			return -1
		case 'O':
			return '0'
		case 'I', 'L':
			return '1'
		}
		return r
	}, c)
}

// Invite creates an invitation for fhirUser ("Patient/x",
// "RelatedPerson/y", "Person/z", "Practitioner/w") valid for ttl and
// returns the code to hand to the person.
func Invite(ctx context.Context, st Storage, fhirUser, createdBy, note string, ttl time.Duration, now time.Time) (string, *Invitation, error) {
	t, id, ok := strings.Cut(fhirUser, "/")
	switch t {
	case "Patient", "RelatedPerson", "Person", "Practitioner":
	default:
		ok = false
	}
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", nil, fmt.Errorf("authz: fhirUser %q is not Patient/, RelatedPerson/, Person/ or Practitioner/ an id", fhirUser)
	}
	if ttl <= 0 || ttl > 90*24*time.Hour {
		return "", nil, errors.New("authz: an invitation lasts between 1s and 90 days")
	}
	code, err := NewInvitationCode()
	if err != nil {
		return "", nil, err
	}
	inv := &Invitation{Hash: hashToken(normalizeCode(code)), FHIRUser: fhirUser, CreatedBy: createdBy, Note: note,
		CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := st.CreateInvitation(ctx, inv); err != nil {
		return "", nil, err
	}
	return code, inv, nil
}

// handleInvitations is the staff API: a confidential client registered
// with Invitations (the registration desk's system) posts
//
//	POST /auth/invitations
//	fhir_user=RelatedPerson/mum&ttl=72h&by=J.%20Doe&note=passport%20checked
//
// after verifying the person's identity, and gets {"code", "fhir_user",
// "expires_at"} to hand to that person. The resource must exist.
func (s *Server) handleInvitations(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, err := parseForm(w, r)
	if err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	c, err := s.authenticateClient(ctx, r, form)
	if err == nil && (!c.Invitations || c.Public()) {
		err = &oauthError{Status: http.StatusForbidden, Code: "unauthorized_client", Description: "this client may not issue invitations"}
	}
	if err != nil {
		s.writeOAuthError(w, r, err)
		return
	}
	ttl := s.cfg.InvitationTTL
	if v := form.Get("ttl"); v != "" {
		if ttl, err = time.ParseDuration(v); err != nil {
			s.writeOAuthError(w, r, errInvalidRequest("ttl is a duration such as 72h"))
			return
		}
	}
	fu := form.Get("fhir_user")
	if t, id, ok := strings.Cut(fu, "/"); ok {
		if rec, err := s.cfg.FHIR.Read(ctx, t, id); err != nil || rec.Deleted {
			s.writeOAuthError(w, r, errInvalidRequest(fu+" does not exist"))
			return
		}
	}
	by := form.Get("by")
	if by == "" {
		by = c.ID
	}
	code, inv, err := Invite(ctx, s.store, fu, by, form.Get("note"), ttl, s.now())
	if err != nil {
		s.writeOAuthError(w, r, errInvalidRequest(strings.TrimPrefix(err.Error(), "authz: ")))
		return
	}
	e := audit.Event{Operation: "invite", Outcome: http.StatusOK, ClientID: c.ID, UserFHIR: fu}
	if strings.HasPrefix(fu, "Patient/") {
		e.Patient = fu
	}
	s.audit(r, e)
	noStore(w)
	writeJSON(w, http.StatusOK, map[string]any{"code": code, "fhir_user": inv.FHIRUser, "expires_at": inv.ExpiresAt.UTC().Format(time.RFC3339)})
}

type registerData struct {
	Code, Username string
}

func (s *Server) handleRegisterPage(w http.ResponseWriter, r *http.Request) {
	p := page{Title: "register.title", Data: registerData{}}
	redirect := ""
	if id := r.URL.Query().Get("r"); id != "" {
		req, _, ok := s.loadRequest(w, r, id)
		if !ok {
			return
		}
		p.Req, redirect = req.ID, req.RedirectURI
	}
	s.render(w, r, http.StatusOK, "register", p, redirect)
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil || !s.checkCSRF(r) {
		s.errorPage(w, r, http.StatusForbidden, "error.csrf")
		return
	}
	req, _, ok := s.optionalRequest(w, r)
	if !ok {
		return
	}
	username := normalizeUsername(r.PostFormValue("username"))
	code := normalizeCode(r.PostFormValue("code"))
	pw := r.PostFormValue("password")
	again := func(status int, key string) {
		p := page{Title: "register.title", Error: key, Data: registerData{Code: r.PostFormValue("code"), Username: username}}
		redirect := ""
		if req != nil {
			p.Req, redirect = req.ID, req.RedirectURI
		}
		s.render(w, r, status, "register", p, redirect)
	}
	if !s.throttle.allow("register|"+clientIP(r), s.now(), s.cfg.LoginsPerWindow) {
		again(http.StatusTooManyRequests, "login.throttled")
		return
	}
	switch {
	case code == "":
		again(http.StatusBadRequest, "register.code_missing")
		return
	case len(username) < 3 || len(username) > 128 || strings.ContainsAny(username, " \t\r\n"):
		again(http.StatusBadRequest, "register.username_invalid")
		return
	case pw != r.PostFormValue("password2"):
		again(http.StatusBadRequest, "register.mismatch")
		return
	}
	if err := checkPasswordPolicy(pw); err != nil {
		again(http.StatusBadRequest, err.Error())
		return
	}
	hash, err := HashPassword(pw, s.cfg.Password)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	now := s.now()
	acct := &Account{ID: randomToken()[:22], Username: username, PasswordHash: hash, CreatedAt: now}
	_, err = s.store.Register(ctx, hashToken(code), acct, now)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUsed), errors.Is(err, ErrExpired):
		s.audit(r, audit.Event{Operation: "register", Outcome: http.StatusBadRequest, OutcomeText: "invalid invitation code: " + err.Error()})
		again(http.StatusBadRequest, "register.code_invalid")
		return
	case errors.Is(err, ErrExists):
		again(http.StatusConflict, "register.username_taken")
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	e := audit.Event{Operation: "register", Outcome: http.StatusOK}
	s.principalOf(&e, acct.FHIRUser, acct.ID, "")
	s.audit(r, e)
	se := &Session{AccountID: acct.ID, AuthTime: now, ExpiresAt: now.Add(s.cfg.SessionTTL), Method: "pwd"}
	if err := s.startSession(ctx, w, se); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.auditLogin(r, acct, http.StatusOK, "")
	s.afterLogin(w, r, req)
}
