package authz

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The HTML pages: server-rendered with html/template, no JavaScript,
// English and French. Every form carries a CSRF token bound to the
// browser; cookies are HttpOnly, SameSite=Lax (the app's redirect to
// /authorize is a cross-site top-level navigation that must carry the
// session) and, on https, Secure with the __Host- prefix. Every page is
// sent with Content-Security-Policy (frame-ancestors 'none': no
// clickjacking of the approval button; no script at all), X-Frame-Options
// DENY, no-referrer and no-store.

//go:embed templates/*.html static/style.css
var assets embed.FS

var languages = []string{"en", "fr"}

type pages struct {
	t   map[string]map[string]*template.Template // lang -> page -> template
	css []byte
}

var pageNames = []string{"login", "otp", "register", "picker", "approve", "apps", "error"}

func newPages() (*pages, error) {
	p := &pages{t: map[string]map[string]*template.Template{}}
	for _, lang := range languages {
		p.t[lang] = map[string]*template.Template{}
		funcs := template.FuncMap{
			"t":  func(key string) string { return msg(lang, key) },
			"tf": func(key string, args ...any) string { return fmt.Sprintf(msg(lang, key), args...) },
			"typenames": func(ts []string) string {
				names := make([]string, len(ts))
				for i, t := range ts {
					names[i] = typeName(lang, t)
				}
				return strings.Join(names, ", ")
			},
		}
		for _, name := range pageNames {
			t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
			if err != nil {
				return nil, fmt.Errorf("authz: template %s: %w", name, err)
			}
			p.t[lang][name] = t
		}
	}
	css, err := assets.ReadFile("static/style.css")
	if err != nil {
		return nil, err
	}
	p.css = css
	return p, nil
}

// page is what every template gets; Data is the page's own.
type page struct {
	Lang      string
	Title     string // message key
	CSRF      string
	Req       string // the authorization request id, "" outside a flow
	Error     string // message key
	Other     string // the other language
	OtherURL  string
	LoggedIn  bool
	Data      any
	StyleHref string
}

func (s *Server) cookieName(n string) string {
	if s.secure {
		return "__Host-" + n
	}
	return n
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	c := &http.Cookie{Name: s.cookieName(name), Value: value, Path: "/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteLaxMode}
	if !expires.IsZero() {
		c.Expires = expires
		c.MaxAge = int(time.Until(expires).Seconds())
		if c.MaxAge <= 0 {
			c.MaxAge = -1
		}
	}
	http.SetCookie(w, c)
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(name), Value: "", Path: "/", HttpOnly: true, Secure: s.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

func (s *Server) cookie(r *http.Request, name string) string {
	c, err := r.Cookie(s.cookieName(name))
	if err != nil {
		return ""
	}
	return c.Value
}

// browser returns the browser's id (the fg_browser cookie), setting a new
// one if absent. CSRF tokens and authorization requests are bound to it.
func (s *Server) browser(w http.ResponseWriter, r *http.Request) string {
	if b := s.cookie(r, "fg_browser"); len(b) == 43 {
		return b
	}
	b := randomToken()
	s.setCookie(w, "fg_browser", b, time.Time{})
	// Visible to the rest of this request (a page rendered right now).
	r.AddCookie(&http.Cookie{Name: s.cookieName("fg_browser"), Value: b})
	return b
}

func (s *Server) csrfToken(browser string) string {
	m := hmac.New(sha256.New, s.csrfKey)
	m.Write([]byte("csrf|" + browser))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF verifies the form's csrf field against the browser cookie.
func (s *Server) checkCSRF(r *http.Request) bool {
	b := s.cookie(r, "fg_browser")
	if b == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrfToken(b))) == 1
}

// lang picks the page language: ?lang=, then the fg_lang cookie, then
// Accept-Language; English by default.
func (s *Server) lang(w http.ResponseWriter, r *http.Request) string {
	if l := r.URL.Query().Get("lang"); l == "en" || l == "fr" {
		http.SetCookie(w, &http.Cookie{Name: "fg_lang", Value: l, Path: "/", HttpOnly: true, Secure: s.secure,
			SameSite: http.SameSiteLaxMode, MaxAge: 365 * 24 * 3600})
		return l
	}
	if c, err := r.Cookie("fg_lang"); err == nil && (c.Value == "en" || c.Value == "fr") {
		return c.Value
	}
	if l := r.URL.Query().Get("ui_locales"); l != "" {
		for _, x := range strings.Fields(l) {
			if x = strings.ToLower(x[:min(2, len(x))]); x == "en" || x == "fr" {
				return x
			}
		}
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

// formOrigin is a CSP source for the app's redirect URI: after a form
// post the browser follows our redirect to the app, and form-action
// covers the redirect too.
func formOrigin(redirect string) string {
	u, err := url.Parse(redirect)
	if err != nil || u.Scheme == "" {
		return ""
	}
	if u.Scheme == "http" || u.Scheme == "https" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + ":"
}

func securityHeaders(w http.ResponseWriter, formTargets ...string) {
	fa := "'self'"
	for _, t := range formTargets {
		if t != "" && !strings.ContainsAny(t, " ;,'\"") {
			fa += " " + t
		}
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action "+fa+
		"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// render writes page name with status. redirect is the app's redirect
// URI when the page is part of an authorization (for form-action).
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page, redirect string) {
	p.Lang = s.lang(w, r)
	p.CSRF = s.csrfToken(s.browser(w, r))
	p.StyleHref = PathPrefix + "/static/style.css"
	p.Other = "fr"
	if p.Lang == "fr" {
		p.Other = "en"
	}
	if p.OtherURL == "" {
		p.OtherURL = otherLangURL(r, p.Req, p.Other)
	}
	var buf bytes.Buffer
	if err := s.pages.t[p.Lang][name].ExecuteTemplate(&buf, "layout", p); err != nil {
		s.cfg.Logger.ErrorContext(r.Context(), "authz: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	securityHeaders(w, formOrigin(redirect))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// otherLangURL is the link to this page in the other language: the same
// URL for a GET; after a POST, the GET page the form came from.
func otherLangURL(r *http.Request, req, lang string) string {
	if r.Method == http.MethodGet && r.URL.Path == PathPrefix+"/authorize" {
		q := r.URL.Query()
		q.Set("lang", lang)
		return r.URL.Path + "?" + q.Encode()
	}
	if r.Method == http.MethodGet && r.URL.Path != PathPrefix+"/federated/callback" {
		// Only the flow id travels: never a code or state in a link.
		q := url.Values{"lang": {lang}}
		if id := r.URL.Query().Get("r"); id != "" {
			q.Set("r", id)
		}
		return r.URL.Path + "?" + q.Encode()
	}
	q := url.Values{"lang": {lang}}
	if req != "" {
		q.Set("r", req)
	}
	switch r.URL.Path {
	case PathPrefix + "/login", PathPrefix + "/register":
		return r.URL.Path + "?" + q.Encode()
	}
	if req != "" {
		return PathPrefix + "/flow?" + q.Encode()
	}
	return PathPrefix + "/apps?" + q.Encode()
}

// errorPage shows an error to the user (never redirecting to an
// unverified redirect URI).
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, key string) {
	s.render(w, r, status, "error", page{Title: "error.title", Error: key}, "")
}

func (s *Server) handleCSS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(s.pages.css)
}
