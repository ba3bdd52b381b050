package authz

import (
	"net/http"

	"github.com/fhirgate/fhirgate/conformance"
)

// Capabilities are the SMART capabilities the server implements
// (conformance.html#capabilities); nothing is listed that does not work.
var Capabilities = []string{
	"launch-ehr", "launch-standalone", "authorize-post",
	"client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
	"sso-openid-connect",
	"context-banner", "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
	"permission-offline", "permission-online", "permission-patient", "permission-user",
	"permission-v1", "permission-v2",
}

// AssertionAlgs are the JWS algorithms accepted in client assertions:
// SMART requires RS384 and ES384; never "none" or HMAC (RFC 8725).
var AssertionAlgs = []string{"RS384", "ES384", "RS256", "RS512", "ES256", "ES512", "PS256", "PS384", "PS512"}

var (
	grantTypes  = []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials}
	authMethods = []string{AuthPrivateKeyJWT, AuthSecretBasic, "client_secret_post"}
)

// Endpoints are the server's endpoint URLs.
func (s *Server) Endpoints() conformance.Endpoints {
	return conformance.Endpoints{
		Issuer: s.issuer, JWKSURI: s.URL("/jwks"), Authorization: s.URL("/authorize"), Token: s.URL("/token"),
		Introspection: s.URL("/introspect"), Revocation: s.URL("/revoke"),
	}
}

// SmartConfiguration is the FHIR server's .well-known/smart-configuration.
func (s *Server) SmartConfiguration() []byte {
	return conformance.SmartConfigurationOf(conformance.AuthorizationServer{
		Endpoints: s.Endpoints(), Capabilities: Capabilities, GrantTypes: grantTypes, AuthMethods: authMethods,
		AuthSigningAlgs: AssertionAlgs, Scopes: conformance.ScopesSupported, ResponseTypes: []string{"code"},
		CodeChallengeMethods: []string{"S256"},
	})
}

// Discovery is the OpenID Provider metadata (OpenID Connect Discovery 1.0
// section 3; RFC 8414).
func (s *Server) Discovery() map[string]any {
	e := s.Endpoints()
	return map[string]any{
		"issuer":                                           e.Issuer,
		"authorization_endpoint":                           e.Authorization,
		"token_endpoint":                                   e.Token,
		"jwks_uri":                                         e.JWKSURI,
		"revocation_endpoint":                              e.Revocation,
		"introspection_endpoint":                           e.Introspection,
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query"},
		"grant_types_supported":                            grantTypes,
		"subject_types_supported":                          []string{"public"},
		"id_token_signing_alg_values_supported":            []string{"RS256"},
		"scopes_supported":                                 conformance.ScopesSupported,
		"token_endpoint_auth_methods_supported":            authMethods,
		"token_endpoint_auth_signing_alg_values_supported": AssertionAlgs,
		"revocation_endpoint_auth_methods_supported":       append([]string{AuthNone}, authMethods...),
		"introspection_endpoint_auth_methods_supported":    authMethods,
		"code_challenge_methods_supported":                 []string{"S256"},
		"claims_supported":                                 []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "azp", "fhirUser"},
		"claims_parameter_supported":                       false,
		"request_parameter_supported":                      false,
		"request_uri_parameter_supported":                  false,
		"authorization_response_iss_parameter_supported":   true,
		"ui_locales_supported":                             []string{"en", "fr"},
	}
}

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, s.Discovery())
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, s.cfg.Signer.PublicKeys())
}
