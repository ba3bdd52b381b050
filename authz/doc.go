// Package authz is fhirgate's own SMART App Launch 2.2 authorization
// server: a concept of its own beside the resource server (package smart),
// with its own storage, pages and administration. It runs when no external
// OpenID provider is configured (FHIRGATE_OIDC_ISSUER empty), at
// <origin>/auth, which is also its issuer.
//
// Specifications: SMART App Launch 2.2 (app-launch, scopes-and-launch-
// context, backend-services, client-confidential-asymmetric,
// token-introspection, conformance), OpenID Connect Core 1.0 and Discovery
// 1.0, RFC 6749 (OAuth 2.0), RFC 7636 (PKCE), RFC 7009 (revocation), RFC
// 7662 (introspection), RFC 7523 (JWT client assertions), RFC 9068 (JWT
// access tokens), RFC 9207 (iss in the authorization response), RFC 8725
// (JWT best practices), the OAuth 2.0 Security Best Current Practice.
//
// Endpoints (all below /auth):
//
//	GET  /.well-known/openid-configuration   discovery (and the FHIR server's .well-known/smart-configuration)
//	GET  /jwks                               the signing key (RS256)
//	GET|POST /authorize                      authorization code + PKCE S256; launch (EHR), aud, state
//	POST /token                              authorization_code, refresh_token (rotated), client_credentials
//	POST /revoke, /introspect                RFC 7009, RFC 7662 (SMART fields)
//	POST /launch                             an EHR creates a launch context
//	POST /invitations                        a registration desk issues an invitation
//	/login, /login/otp, /register, /pick, /approve, /apps, /logout, /federated/...   the pages
//
// The resource server keeps verifying access tokens exactly as with an
// external provider (smart.Verifier: discovery, JWKS, iss, aud, exp); the
// one addition is CheckRevocation, a wrapper that refuses revoked tokens of
// this issuer, so a revocation takes effect on the next FHIR request.
//
// Choices worth knowing (README.md in this folder has the reasons):
//
//   - Hand-written handlers on go-jose and the standard library rather than
//     zitadel/oidc's op or ory/fosite: SMART's launch context, proxy-aware
//     patient picker, aud check, S256-only PKCE, refresh families with reuse
//     detection and private_key_jwt with jti replay are most of the work
//     either way, and each rule here is a few lines next to its test.
//   - Opaque values (codes, refresh tokens, launch values, sessions,
//     invitation codes) are 256-bit random (invitations 80-bit) and stored
//     as SHA-256 only. Everything issued from one authorization is a
//     family: a replayed code or rotated refresh token revokes it whole.
//   - The patient picker calls smart.Grants, the resource server's own
//     proxy rules, so the picker never offers what the API would refuse.
//   - Storage is an interface (Storage) with one implementation on SQLite
//     (authz/sqlitestore) and a conformance suite (authz/storagetest).
package authz
