// Package smart is fhirgate's SMART App Launch 2.x authorization as a
// resource server (https://hl7.org/fhir/smart-app-launch/).
//
// fhirgate does not log anyone in: an OpenID provider issues access tokens
// and fhirgate verifies them (Verifier: JWT access tokens against the
// issuer's discovery document and JWKS, or opaque tokens through RFC 7662
// introspection), then decides every request from the token's scopes and
// launch context (Decider.Decide), for parents, guardians and caregivers
// from the proxy grants found in the data (Grants, Decider.DecideProxy).
// Decisions are pure functions returning a search.Expr that the REST layer
// ANDs into queries, so access control and search share one engine.
//
// Choices worth knowing:
//
//   - Only asymmetric JWS algorithms are accepted (RS*, PS*, ES*, EdDSA);
//     "none" and HS* are refused even if a key would "match" (RFC 8725).
//   - Malformed resource scopes in a token are dropped (they grant nothing);
//     the token itself stays valid.
//   - patient/ scopes also let the caller read resource types that are in
//     no Patient compartment (Practitioner, Organization, Location,
//     Medication, ...): they carry no patient data and apps need them to
//     render references. They are read-only through patient/ scopes.
//   - A token whose fhirUser is a RelatedPerson or Person is a proxy: Decide
//     denies it, DecideProxy decides it from Grants computed on every
//     request, so ended relationships and withdrawn Consents take effect
//     at once. Proxies never see sensitive labels their grant does not
//     allow.
//   - Grants finds Consents with a store search on the Consent "actor"
//     reference parameter and then re-checks every condition on the JSON
//     (see Grants).
//
// The development issuer (package smart/devissuer) is for development only.
package smart
