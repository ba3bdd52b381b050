package visit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/store"
)

// The invitation pages: server-rendered with html/template, no
// JavaScript, English and French, every form with a CSRF token bound to
// the browser and to the link. Cookies are HttpOnly, SameSite=Strict and,
// on https, Secure with the __Host- prefix. Every page is sent with
// Content-Security-Policy (no script; frame-ancestors 'none'),
// X-Frame-Options DENY, Referrer-Policy no-referrer (the link's token
// never leaks to the visit platform) and Cache-Control no-store.
//
//	GET  /visit/{token}     the PIN form (or why the link cannot be used)
//	POST /visit/{token}     the PIN: right -> the link is used, a session opens, 303 to /visit/session
//	GET  /visit/session     the session's one Appointment: its time and join URL
//	GET  /visit/static/style.css

//go:embed templates/*.html static/style.css
var assets embed.FS

type pages struct {
	t   map[string]map[string]*template.Template // lang -> page -> template
	css []byte
}

var pageNames = []string{"pin", "message", "join"}

func newPages() (*pages, error) {
	p := &pages{t: map[string]map[string]*template.Template{}}
	for _, lang := range []string{"en", "fr"} {
		p.t[lang] = map[string]*template.Template{}
		funcs := template.FuncMap{"t": func(key string) string { return msg(lang, key) }}
		for _, name := range pageNames {
			t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
			if err != nil {
				return nil, fmt.Errorf("visit: template %s: %w", name, err)
			}
			p.t[lang][name] = t
		}
	}
	css, err := assets.ReadFile("static/style.css")
	if err != nil {
		return nil, fmt.Errorf("visit: %w", err)
	}
	p.css = css
	return p, nil
}

// page is what every template gets.
type page struct {
	Lang, Other, OtherURL string
	Title                 string // message key
	Message               string // message key (message page)
	Error                 string // text (already translated)
	CSRF, Action          string // pin page
	Time, JoinURL         string // join page
}

// Cookie names (with __Host- on https).
const (
	sessionCookie = "fg_visit"
	csrfCookie    = "fg_visit_csrf"
)

func (s *Service) cookieName(n string) string {
	if s.secure {
		return "__Host-" + n
	}
	return n
}

func (s *Service) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(name), Value: value, Path: "/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteStrictMode, MaxAge: maxAge})
}

func (s *Service) cookie(r *http.Request, name string) string {
	c, err := r.Cookie(s.cookieName(name))
	if err != nil {
		return ""
	}
	return c.Value
}

// csrf is the form token for a browser (its csrf cookie) and a link: a
// cross-site page can neither read the cookie nor compute the token.
func csrf(browser, tokenHash string) string {
	h := sha256.Sum256([]byte("visit-csrf|" + browser + "|" + tokenHash))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// lang: ?lang=, then the invitation's language, then Accept-Language.
func lang(r *http.Request, invLang string) string {
	if l := r.URL.Query().Get("lang"); l == "en" || l == "fr" {
		return l
	}
	if invLang == "en" || invLang == "fr" {
		return invLang
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag := strings.ToLower(strings.TrimSpace(strings.Split(part, ";")[0]))
		if strings.HasPrefix(tag, "fr") {
			return "fr"
		}
		if strings.HasPrefix(tag, "en") {
			return "en"
		}
	}
	return "en"
}

func (s *Service) render(w http.ResponseWriter, r *http.Request, status int, name, lng string, p page) {
	p.Lang = lng
	p.Other = "fr"
	if lng == "fr" {
		p.Other = "en"
	}
	p.OtherURL = r.URL.Path + "?lang=" + p.Other
	var buf bytes.Buffer
	if err := s.pages.t[lng][name].ExecuteTemplate(&buf, "layout", p); err != nil {
		s.cfg.Logger.ErrorContext(r.Context(), "visit: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Service) message(w http.ResponseWriter, r *http.Request, status int, lng, title, key string) {
	s.render(w, r, status, "message", lng, page{Title: title, Message: key})
}

// ServeHTTP serves the pages under PathPrefix.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, PathPrefix+"/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch {
	case rest == "static/style.css" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(s.pages.css)
	case rest == "session" && r.Method == http.MethodGet:
		s.handleSession(w, r)
	case !strings.Contains(rest, "/") && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		s.handleLink(w, r, rest)
	default:
		w.Header().Set("Allow", "GET, POST")
		s.message(w, r, http.StatusNotFound, lang(r, ""), "invalid.title", "invalid.body")
	}
}

// refuse shows why a link cannot be used. An unknown and a revoked link
// get the same page and status (no oracle for who revoked what).
func (s *Service) refuse(w http.ResponseWriter, r *http.Request, inv *Invitation, now time.Time) {
	l := ""
	if inv != nil {
		l = inv.Lang
	}
	lng := lang(r, l)
	st := StatusRevoked
	if inv != nil {
		st = inv.Status(now)
	}
	switch st {
	case StatusUsed:
		s.message(w, r, http.StatusGone, lng, "used.title", "used.body")
	case StatusExpired:
		s.message(w, r, http.StatusGone, lng, "expired.title", "expired.body")
	case StatusLocked:
		s.message(w, r, http.StatusLocked, lng, "locked.title", "locked.body")
	default:
		s.message(w, r, http.StatusNotFound, lang(r, ""), "invalid.title", "invalid.body")
	}
}

func (s *Service) handleLink(w http.ResponseWriter, r *http.Request, token string) {
	ctx := r.Context()
	now := s.cfg.Now()
	if !validToken(token) {
		s.refuse(w, r, nil, now)
		return
	}
	th := hashToken(token)
	if r.Method == http.MethodPost && !s.limiter.allow(th, now) {
		w.Header().Set("Retry-After", "60")
		s.message(w, r, http.StatusTooManyRequests, lang(r, ""), "throttled.title", "throttled.body")
		return
	}
	inv, err := s.cfg.Storage.ByToken(ctx, th)
	if errors.Is(err, ErrNotFound) {
		s.refuse(w, r, nil, now)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if inv.Status(now) != StatusPending {
		s.refuse(w, r, &inv, now)
		return
	}
	lng := lang(r, inv.Lang)
	browser := s.cookie(r, csrfCookie)
	if !validToken(browser) {
		browser = newToken()
		s.setCookie(w, csrfCookie, browser, 0)
	}
	form := page{Title: "pin.title", CSRF: csrf(browser, th), Action: PathPrefix + "/" + token}
	if r.Method == http.MethodGet {
		s.render(w, r, http.StatusOK, "pin", lng, form)
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(csrf(s.cookie(r, csrfCookie), th))) != 1 ||
		s.cookie(r, csrfCookie) == "" {
		form.Error = msg(lng, "pin.csrf")
		s.render(w, r, http.StatusForbidden, "pin", lng, form)
		return
	}
	if !checkPIN(inv, r.PostFormValue("pin")) {
		after, err := s.cfg.Storage.Fail(ctx, inv.ID, s.cfg.MaxAttempts, now)
		if errors.Is(err, ErrNotPending) {
			s.refreshRefuse(w, r, inv.ID, now)
			return
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if !after.LockedAt.IsZero() {
			s.auditPage(ctx, r, "evisit-locked", http.StatusLocked, after, "too many wrong PINs: invitation locked")
			s.message(w, r, http.StatusLocked, lng, "locked.title", "locked.body")
			return
		}
		s.auditPage(ctx, r, "evisit-pin-failed", http.StatusForbidden, after, "wrong PIN ("+strconv.Itoa(after.Attempts)+" of "+strconv.Itoa(s.cfg.MaxAttempts)+")")
		form.Error = fmt.Sprintf(msg(lng, "pin.wrong"), s.cfg.MaxAttempts-after.Attempts)
		s.render(w, r, http.StatusForbidden, "pin", lng, form)
		return
	}
	session := newToken()
	expires := now.Add(s.cfg.SessionTTL)
	if inv.ExpiresAt.Before(expires) {
		expires = inv.ExpiresAt
	}
	if err := s.cfg.Storage.Use(ctx, inv.ID, hashToken(session), expires.UTC(), now.UTC()); errors.Is(err, ErrNotPending) {
		s.refreshRefuse(w, r, inv.ID, now)
		return
	} else if err != nil {
		s.internal(w, r, err)
		return
	}
	inv.UsedAt = now
	s.auditPage(ctx, r, "evisit-join", http.StatusOK, inv, "")
	s.setCookie(w, sessionCookie, session, int(expires.Sub(now).Seconds()))
	s.setCookie(w, csrfCookie, "", -1)
	securityHeaders(w)
	http.Redirect(w, r, PathPrefix+"/session?lang="+lng, http.StatusSeeOther)
}

// refreshRefuse shows the page of an invitation that stopped being
// pending while this request ran (another browser won, or it locked).
func (s *Service) refreshRefuse(w http.ResponseWriter, r *http.Request, id string, now time.Time) {
	inv, err := s.cfg.Storage.Get(r.Context(), id)
	if err != nil {
		s.refuse(w, r, nil, now)
		return
	}
	s.refuse(w, r, &inv, now)
}

func (s *Service) handleSession(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := s.cfg.Now()
	tok := s.cookie(r, sessionCookie)
	ended := func() {
		s.message(w, r, http.StatusForbidden, lang(r, ""), "ended.title", "ended.body")
	}
	if !validToken(tok) {
		ended()
		return
	}
	inv, err := s.cfg.Storage.BySession(ctx, hashToken(tok))
	if errors.Is(err, ErrNotFound) || err == nil && (!inv.RevokedAt.IsZero() || !now.Before(inv.SessionExpires)) {
		s.setCookie(w, sessionCookie, "", -1)
		ended()
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	lng := lang(r, inv.Lang)
	_, id, _ := strings.Cut(inv.Appointment, "/")
	rec, err := s.cfg.FHIR.Read(ctx, "Appointment", id)
	if errors.Is(err, store.ErrNotFound) || err == nil && rec.Deleted {
		s.message(w, r, http.StatusGone, lng, "cancelled.title", "cancelled.body")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	a, err := parseAppointment(rec.Raw)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if a.Status == "cancelled" || a.Status == "entered-in-error" || a.Status == "noshow" {
		s.message(w, r, http.StatusGone, lng, "cancelled.title", "cancelled.body")
		return
	}
	v, err := s.info(ctx, a)
	if err != nil {
		s.message(w, r, http.StatusConflict, lng, "unavailable.title", "unavailable.body")
		return
	}
	s.render(w, r, http.StatusOK, "join", lng, page{Title: "join.title", Time: visitTime(v), JoinURL: v.JoinURL})
}

// visitTime is the Appointment's time in its own offset, language-neutral
// (ISO 8601 date, 24-hour clock).
func visitTime(v visitInfo) string {
	end := v.End.In(v.Start.Location())
	out := v.Start.Format("2006-01-02 15:04") + "–"
	if end.Format("2006-01-02") != v.Start.Format("2006-01-02") {
		out += end.Format("2006-01-02 ")
	}
	return out + end.Format("15:04") + " (UTC" + v.Start.Format("-07:00") + ")"
}

func (s *Service) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.cfg.Logger.ErrorContext(r.Context(), "visit: page failed", "err", err)
	s.message(w, r, http.StatusInternalServerError, lang(r, ""), "error.title", "error.body")
}

// auditPage records what happened on an invitation page: who (the
// invitee: their participant reference and name), from where, on which
// Appointment; the patients of the Appointment find it in their trail.
func (s *Service) auditPage(ctx context.Context, r *http.Request, op string, status int, inv Invitation, why string) {
	e := audit.Event{Operation: op, Outcome: status, OutcomeText: why, Resources: []string{inv.Appointment},
		Query: detail(inv, ""), UserAgent: r.Header.Get("User-Agent"), RequestID: r.Header.Get("X-Request-Id")}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		e.SourceIP = host
	}
	switch typ, _, _ := strings.Cut(inv.Participant, "/"); typ {
	case "Patient":
		e.Patient = inv.Participant
	case "RelatedPerson":
		e.Proxy = inv.Participant
	}
	e.UserFHIR = inv.Participant
	if _, id, ok := strings.Cut(inv.Appointment, "/"); ok {
		if rec, err := s.cfg.FHIR.Read(ctx, "Appointment", id); err == nil {
			e.Patients = rec.Index.Compartments
		}
	}
	s.audit(ctx, e)
}
