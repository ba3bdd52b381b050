package authz

import (
	"net/http"
	"strings"
)

// CORS (Fetch standard) for browser apps: SMART apps running in a browser
// read the discovery documents, exchange codes and refresh tokens, and
// call the FHIR API from their own origin. Every one of these endpoints
// is authenticated by what the request carries (a bearer token, a code
// with its PKCE verifier, client credentials), never by cookies, so any
// origin may call them ("*", without credentials). The HTML pages of the
// authorization server (login, picker, approval) get no CORS headers: they
// use cookies and are only ever top-level navigations.

// corsPath reports whether p is an endpoint browser apps call cross-origin.
func corsPath(p string) bool {
	switch p {
	case PathPrefix + "/token", PathPrefix + "/revoke", PathPrefix + "/introspect", PathPrefix + "/jwks",
		PathPrefix + "/.well-known/openid-configuration",
		"/.well-known/smart-configuration":
		return true
	}
	return p == "/fhir" || strings.HasPrefix(p, "/fhir/")
}

const (
	corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
	corsHeaders = "Authorization, Content-Type, Accept, Accept-Language, If-Match, If-None-Match, If-None-Exist, " +
		"If-Modified-Since, Prefer, X-Request-Id"
	corsExpose = "Location, Content-Location, ETag, Last-Modified, WWW-Authenticate, X-Request-Id"
)

// preflight adds the CORS response headers to a cross-origin request and
// answers a preflight itself (true: the response is written).
func preflight(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Origin") == "" {
		return false
	}
	h := w.Header()
	if h.Get("Access-Control-Allow-Origin") == "" { // not yet set by an outer CORS
		h.Set("Access-Control-Allow-Origin", "*")
		h.Add("Vary", "Origin")
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", corsMethods)
		h.Set("Access-Control-Allow-Headers", corsHeaders)
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	h.Set("Access-Control-Expose-Headers", corsExpose)
	return false
}

// CORS wraps the whole server (the FHIR API, its discovery documents and
// the authorization server) with the CORS rules above.
func CORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if corsPath(r.URL.Path) && preflight(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}
