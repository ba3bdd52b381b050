package smart

import (
	"context"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
)

// Realm is the realm of every WWW-Authenticate challenge (RFC 6750 section 3).
const Realm = "fhirgate"

// MissingToken is the 401 for a request without credentials: a plain
// challenge without error code (RFC 6750 section 3.1: "If the request lacks
// any authentication information ... the resource server SHOULD NOT include
// an error code").
func MissingToken() error {
	e := fhir.Errorf(fhir.KindUnauthorized, "authentication required: send an OAuth 2.0 bearer token (SMART App Launch)")
	e.Header = map[string]string{"WWW-Authenticate": `Bearer realm="` + Realm + `"`}
	return e
}

// InvalidToken is the 401 for a token that is malformed, expired, revoked,
// for another audience or not signed by a trusted issuer (RFC 6750 section
// 3.1, error="invalid_token"). desc is shown to the client; keep details
// for the log in the cause (Wrap).
func InvalidToken(desc string) *fhir.Error {
	e := fhir.Errorf(fhir.KindUnauthorized, "invalid access token: %s", desc)
	e.Header = map[string]string{"WWW-Authenticate": `Bearer realm="` + Realm + `", error="invalid_token", error_description="` + quoteSafe(desc) + `"`}
	return e
}

// InsufficientScope is the 403 for a valid token whose scopes do not allow
// the request (RFC 6750 section 3.1, error="insufficient_scope"). scope is
// the scope that would grant the access (Decision.Scope); empty when no
// scope would help (e.g. a proxy without a grant for the patient).
func InsufficientScope(scope string) error {
	var e *fhir.Error
	h := `Bearer realm="` + Realm + `", error="insufficient_scope"`
	if scope != "" {
		e = fhir.Errorf(fhir.KindForbidden, "insufficient scope: this request needs %s", scope)
		h += `, error_description="the request needs scope ` + quoteSafe(scope) + `", scope="` + quoteSafe(scope) + `"`
	} else {
		e = fhir.Errorf(fhir.KindForbidden, "access denied: the token does not allow this request")
		h += `, error_description="the token does not allow this request"`
	}
	e.Header = map[string]string{"WWW-Authenticate": h}
	return e
}

// quoteSafe keeps only characters RFC 6750 section 3 allows inside
// error_description and scope (%x20-21 / %x23-5B / %x5D-7E).
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '?'
		}
		return r
	}, s)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal of ctx, nil if none.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
