package authz

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/audit"
)

// Local login: username and argon2id password, then a TOTP code when the
// account has one. Failures never say whether the username exists (same
// message, and an unknown user costs one argon2id like a wrong password).
// MaxFailedLogins consecutive failures (password or code) lock the account
// for Lockout; every address is throttled too (LoginsPerWindow attempts
// per ThrottleWindow, logins and registrations together). Every success and
// failure is audited; a failure on a known account names its user, so the
// patient sees attempts on their account.

type loginData struct {
	App        string
	Username   string
	Federation string // the provider's button label, "" when not configured
	Register   string // link to the registration page
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, req *AuthRequest, c *Client, errKey string) {
	p := page{Title: "login.title", Error: errKey}
	d := loginData{Register: PathPrefix + "/register"}
	redirect := ""
	if req != nil {
		p.Req = req.ID
		d.Register += "?r=" + url.QueryEscape(req.ID)
		redirect = req.RedirectURI
	}
	if c != nil {
		d.App = c.Name
	}
	if s.fed != nil {
		d.Federation = s.fed.cfg.Name
	}
	if status == http.StatusOK && r.Method == http.MethodPost {
		d.Username = r.PostFormValue("username")
	}
	if errKey != "" {
		d.Username = r.PostFormValue("username")
	}
	p.Data = d
	s.render(w, r, status, "login", p, redirect)
}

func (s *Server) handleLoginPage(w http.ResponseWriter, r *http.Request) {
	if id := r.URL.Query().Get("r"); id != "" {
		req, c, ok := s.loadRequest(w, r, id)
		if !ok {
			return
		}
		s.renderLogin(w, r, http.StatusOK, req, c, "")
		return
	}
	s.renderLogin(w, r, http.StatusOK, nil, nil, "")
}

// optionalRequest loads the request named by the form, if any.
func (s *Server) optionalRequest(w http.ResponseWriter, r *http.Request) (*AuthRequest, *Client, bool) {
	id := r.PostFormValue("r")
	if id == "" {
		return nil, nil, true
	}
	return s.loadRequest(w, r, id)
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil || !s.checkCSRF(r) {
		s.errorPage(w, r, http.StatusForbidden, "error.csrf")
		return
	}
	req, c, ok := s.optionalRequest(w, r)
	if !ok {
		return
	}
	username := normalizeUsername(r.PostFormValue("username"))
	if !s.allowLogin(r, username) {
		s.audit(r, audit.Event{Operation: "login-failed", Outcome: http.StatusTooManyRequests, OutcomeText: "too many attempts from this address"})
		s.renderLogin(w, r, http.StatusTooManyRequests, req, c, "login.throttled")
		return
	}
	password := r.PostFormValue("password")
	acct, err := s.store.AccountByUsername(ctx, username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.internalError(w, r, err)
		return
	}
	now := s.now()
	if acct == nil || acct.PasswordHash == "" {
		VerifyPassword(password, dummyHash) // same cost as a real check
		s.audit(r, audit.Event{Operation: "login", Outcome: http.StatusUnauthorized, OutcomeText: "unknown username"})
		s.renderLogin(w, r, http.StatusUnauthorized, req, c, "login.failed")
		return
	}
	failed := func(reason string) {
		acct.FailedLogins++
		if acct.FailedLogins >= s.cfg.MaxFailedLogins {
			acct.LockedUntil, acct.FailedLogins = now.Add(s.cfg.Lockout), 0
			reason += "; account locked until " + acct.LockedUntil.UTC().Format(time.RFC3339)
		}
		if err := s.store.UpdateAccount(ctx, acct); err != nil {
			s.cfg.Logger.ErrorContext(ctx, "authz: account not updated", "err", err)
		}
		s.auditLogin(r, acct, http.StatusUnauthorized, reason)
	}
	if now.Before(acct.LockedUntil) {
		VerifyPassword(password, dummyHash)
		s.auditLogin(r, acct, http.StatusUnauthorized, "account locked")
		s.renderLogin(w, r, http.StatusUnauthorized, req, c, "login.failed")
		return
	}
	if acct.Disabled || !VerifyPassword(password, acct.PasswordHash) {
		failed("wrong password")
		s.renderLogin(w, r, http.StatusUnauthorized, req, c, "login.failed")
		return
	}
	se := &Session{AccountID: acct.ID, AuthTime: now, ExpiresAt: now.Add(s.cfg.SessionTTL), Method: "pwd"}
	if acct.TOTPSecret != "" {
		se.MFAPending, se.ExpiresAt = true, now.Add(5*time.Minute)
	}
	if err := s.startSession(ctx, w, se); err != nil {
		s.internalError(w, r, err)
		return
	}
	if se.MFAPending {
		s.renderOTP(w, r, http.StatusOK, req, "")
		return
	}
	acct.FailedLogins = 0
	_ = s.store.UpdateAccount(ctx, acct)
	s.auditLogin(r, acct, http.StatusOK, "")
	s.afterLogin(w, r, req)
}

// startSession creates se with a new random id and sets the cookie (a
// new id on every login: no session fixation).
func (s *Server) startSession(ctx context.Context, w http.ResponseWriter, se *Session) error {
	v := randomToken()
	se.Hash = hashToken(v)
	if err := s.store.CreateSession(ctx, se); err != nil {
		return err
	}
	s.setCookie(w, "fg_session", v, se.ExpiresAt)
	return nil
}

func (s *Server) afterLogin(w http.ResponseWriter, r *http.Request, req *AuthRequest) {
	if req != nil {
		http.Redirect(w, r, PathPrefix+"/flow?r="+url.QueryEscape(req.ID), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, PathPrefix+"/apps", http.StatusSeeOther)
}

func (s *Server) auditLogin(r *http.Request, acct *Account, status int, reason string) {
	op := "login"
	if status != http.StatusOK {
		op = "login-failed"
	}
	e := audit.Event{Operation: op, Outcome: status, OutcomeText: reason}
	s.principalOf(&e, acct.FHIRUser, acct.ID, "")
	s.audit(r, e)
}

func (s *Server) renderOTP(w http.ResponseWriter, r *http.Request, status int, req *AuthRequest, errKey string) {
	p := page{Title: "otp.title", Error: errKey}
	redirect := ""
	if req != nil {
		p.Req, redirect = req.ID, req.RedirectURI
	}
	s.render(w, r, status, "otp", p, redirect)
}

func (s *Server) handleOTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !s.checkCSRF(r) {
		s.errorPage(w, r, http.StatusForbidden, "error.csrf")
		return
	}
	req, c, ok := s.optionalRequest(w, r)
	if !ok {
		return
	}
	now := s.now()
	v := s.cookie(r, "fg_session")
	se, err := s.store.GetSession(ctx, hashToken(v))
	if v == "" || err != nil || !se.MFAPending || !now.Before(se.ExpiresAt) {
		s.renderLogin(w, r, http.StatusOK, req, c, "login.again")
		return
	}
	acct, err := s.store.GetAccount(ctx, se.AccountID)
	if err != nil {
		s.renderLogin(w, r, http.StatusOK, req, c, "login.again")
		return
	}
	if !s.allowLogin(r, acct.Username) || now.Before(acct.LockedUntil) {
		s.auditLogin(r, acct, http.StatusUnauthorized, "second factor refused: locked or throttled")
		_ = s.store.DeleteSession(ctx, se.Hash)
		s.renderLogin(w, r, http.StatusUnauthorized, req, c, "login.failed")
		return
	}
	step, ok := verifyTOTP(acct.TOTPSecret, r.PostFormValue("code"), now, acct.TOTPLastStep)
	if !ok {
		acct.FailedLogins++
		reason := "wrong one-time code"
		if acct.FailedLogins >= s.cfg.MaxFailedLogins {
			acct.LockedUntil, acct.FailedLogins = now.Add(s.cfg.Lockout), 0
			reason += "; account locked"
			_ = s.store.DeleteSession(ctx, se.Hash)
		}
		_ = s.store.UpdateAccount(ctx, acct)
		s.auditLogin(r, acct, http.StatusUnauthorized, reason)
		if !acct.LockedUntil.IsZero() && now.Before(acct.LockedUntil) {
			s.renderLogin(w, r, http.StatusUnauthorized, req, c, "login.failed")
			return
		}
		s.renderOTP(w, r, http.StatusUnauthorized, req, "otp.failed")
		return
	}
	acct.TOTPLastStep, acct.FailedLogins = step, 0
	if err := s.store.UpdateAccount(ctx, acct); err != nil {
		s.internalError(w, r, err)
		return
	}
	// A fresh session id for the fully logged-in session.
	_ = s.store.DeleteSession(ctx, se.Hash)
	full := &Session{AccountID: acct.ID, AuthTime: now, ExpiresAt: now.Add(s.cfg.SessionTTL), Method: "pwd otp"}
	if err := s.startSession(ctx, w, full); err != nil {
		s.internalError(w, r, err)
		return
	}
	s.auditLogin(r, acct, http.StatusOK, "")
	s.afterLogin(w, r, req)
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if !s.checkCSRF(r) {
		s.errorPage(w, r, http.StatusForbidden, "error.csrf")
		return
	}
	if v := s.cookie(r, "fg_session"); v != "" {
		// online_access refresh tokens end with the session.
		_ = s.store.DeleteSession(r.Context(), hashToken(v))
	}
	s.clearCookie(w, "fg_session")
	http.Redirect(w, r, PathPrefix+"/login", http.StatusSeeOther)
}

// allowLogin throttles attempts per address and username (LoginsPerWindow)
// and per address (ten times as many): behind a reverse proxy every user
// shares the proxy's address, so the address alone would lock everyone out.
func (s *Server) allowLogin(r *http.Request, username string) bool {
	now, ip := s.now(), clientIP(r)
	a := s.throttle.allow(ip+"|"+username, now, s.cfg.LoginsPerWindow)
	b := s.throttle.allow(ip, now, 10*s.cfg.LoginsPerWindow)
	return a && b
}

func normalizeUsername(u string) string {
	return strings.ToLower(strings.TrimSpace(u))
}

// throttle limits attempts per key in a fixed window.
type throttle struct {
	mu     sync.Mutex
	window time.Duration
	seen   map[string]*window
}

type window struct {
	start time.Time
	n     int
}

func newThrottle(d time.Duration) *throttle {
	return &throttle{window: d, seen: map[string]*window{}}
}

func (t *throttle) allow(key string, now time.Time, limit int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.seen) > 100_000 {
		for k, w := range t.seen {
			if now.Sub(w.start) >= t.window {
				delete(t.seen, k)
			}
		}
	}
	w := t.seen[key]
	if w == nil || now.Sub(w.start) >= t.window {
		w = &window{start: now}
		t.seen[key] = w
	}
	w.n++
	return w.n <= limit
}
