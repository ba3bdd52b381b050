package conformance

import "encoding/json"

// ScopesSupported are the scopes fhirgate enforces (SMART App Launch 2.x
// scopes-and-launch-context): v1 and v2 grammars at patient, user and system level.
var ScopesSupported = []string{
	"openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
	"patient/*.rs", "patient/*.cruds", "patient/*.read", "patient/*.write",
	"user/*.rs", "user/*.cruds", "user/*.read", "user/*.write",
	"system/*.rs", "system/*.cruds", "system/*.read", "system/*.write",
	"patient/Observation.rs", "patient/DocumentReference.rs", "patient/Appointment.rs",
	"patient/Communication.cruds", "patient/ServiceRequest.rs", "patient/AuditEvent.rs",
}

// Capabilities are the SMART capabilities true of this resource server.
var Capabilities = []string{
	"launch-standalone", "client-public", "client-confidential-asymmetric", "client-confidential-symmetric",
	"context-standalone-patient", "sso-openid-connect",
	"permission-patient", "permission-user", "permission-v1", "permission-v2",
}

// SmartConfiguration renders /.well-known/smart-configuration (SMART App
// Launch 2.x conformance.html) from the issuer's endpoints.
func SmartConfiguration(e Endpoints) []byte {
	m := map[string]any{
		"grant_types_supported":                            []string{"authorization_code", "client_credentials", "refresh_token"},
		"token_endpoint_auth_methods_supported":            []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS256", "RS384", "ES256", "ES384"},
		"response_types_supported":                         []string{"code"},
		"scopes_supported":                                 ScopesSupported,
		"capabilities":                                     Capabilities,
		"code_challenge_methods_supported":                 []string{"S256"},
	}
	// Endpoints come from the issuer's discovery; the development issuer
	// has none for authorization and tokens, so absent ones are omitted
	// rather than advertised empty.
	for k, v := range map[string]string{"issuer": e.Issuer, "jwks_uri": e.JWKSURI,
		"authorization_endpoint": e.Authorization, "token_endpoint": e.Token} {
		if v != "" {
			m[k] = v
		}
	}
	if e.Introspection != "" {
		m["introspection_endpoint"] = e.Introspection
	}
	if e.Revocation != "" {
		m["revocation_endpoint"] = e.Revocation
	}
	if e.Registration != "" {
		m["registration_endpoint"] = e.Registration
	}
	if e.Management != "" {
		m["management_endpoint"] = e.Management
	}
	b, _ := json.Marshal(m)
	return b
}

// AuthorizationServer is a SMART authorization server whose abilities are
// known exactly: fhirgate's own (package authz). Its smart-configuration
// lists every endpoint and only what works.
type AuthorizationServer struct {
	Endpoints
	Capabilities         []string
	GrantTypes           []string
	AuthMethods          []string // token_endpoint_auth_methods_supported
	AuthSigningAlgs      []string // token_endpoint_auth_signing_alg_values_supported
	Scopes               []string
	ResponseTypes        []string
	CodeChallengeMethods []string
}

// SmartConfigurationOf renders /.well-known/smart-configuration (SMART App
// Launch 2.2 conformance.html) of an AuthorizationServer.
func SmartConfigurationOf(a AuthorizationServer) []byte {
	m := map[string]any{
		"issuer":                                a.Issuer,
		"jwks_uri":                              a.JWKSURI,
		"authorization_endpoint":                a.Authorization,
		"token_endpoint":                        a.Token,
		"grant_types_supported":                 a.GrantTypes,
		"token_endpoint_auth_methods_supported": a.AuthMethods,
		"response_types_supported":              a.ResponseTypes,
		"scopes_supported":                      a.Scopes,
		"capabilities":                          a.Capabilities,
		"code_challenge_methods_supported":      a.CodeChallengeMethods,
	}
	if len(a.AuthSigningAlgs) > 0 {
		m["token_endpoint_auth_signing_alg_values_supported"] = a.AuthSigningAlgs
	}
	for k, v := range map[string]string{"introspection_endpoint": a.Introspection, "revocation_endpoint": a.Revocation,
		"registration_endpoint": a.Registration, "management_endpoint": a.Management} {
		if v != "" {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	return b
}
