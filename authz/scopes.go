package authz

import (
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/smart"
)

// Non-resource scopes (SMART App Launch scopes-and-launch-context.html,
// OpenID Connect Core 5.4).
const (
	scopeOpenID        = "openid"
	scopeFHIRUser      = "fhirUser"
	scopeLaunch        = "launch"
	scopeLaunchPatient = "launch/patient"
	scopeOffline       = "offline_access"
	scopeOnline        = "online_access"
)

// contextScopes are shown on the approval page as information, not as
// choices: they carry who the user is and the launch context, no data.
var contextScopes = []string{scopeOpenID, scopeFHIRUser, scopeLaunch, scopeLaunchPatient}

// splitScopes splits a scope parameter on spaces (RFC 6749 section 3.3)
// without duplicates.
func splitScopes(s string) []string {
	var out []string
	for _, t := range strings.Split(s, " ") {
		if t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// flow is who a token is for.
type flow int

const (
	flowUser    flow = iota // authorization code: an app acting for a user
	flowBackend             // client_credentials: a backend service
)

// allowedScopes filters requested scopes down to what the client may be
// granted in the flow (granted is always a subset of requested):
// malformed and unknown scopes are dropped; a user's app gets patient/ and
// user/ scopes, never system/; a backend service only system/ scopes;
// "launch" only with a launch value; online_access is dropped beside
// offline_access; the client's registered scopes bound everything.
func allowedScopes(c *Client, requested []string, f flow, withLaunch bool) []string {
	var out []string
	for _, raw := range requested {
		ps, err := smart.ParseScopes(raw)
		if err != nil || len(ps) != 1 {
			continue
		}
		sc := ps[0]
		switch {
		case sc.IsResource():
			if (f == flowBackend) != (sc.Context == smart.ContextSystem) {
				continue
			}
		case f == flowBackend:
			continue
		default:
			switch raw {
			case scopeOpenID, scopeFHIRUser, scopeLaunchPatient, scopeOffline:
			case scopeOnline:
				if slices.Contains(requested, scopeOffline) {
					continue
				}
			case scopeLaunch:
				if !withLaunch {
					continue
				}
			default:
				continue // launch/encounter (no encounter picker), profile, anything unknown
			}
		}
		if len(c.Scopes) > 0 && !slices.ContainsFunc(c.Scopes, func(b string) bool { return within(sc, b) }) {
			continue
		}
		out = append(out, raw)
	}
	return out
}

// within reports whether scope s is covered by the registered scope
// bound: the same non-resource scope, or a resource scope of the same
// context whose type is the bound's (or the bound's is "*"), whose
// permissions are among the bound's and whose query is the bound's (a
// bound without query allows any).
func within(s smart.Scope, bound string) bool {
	if !s.IsResource() {
		return s.Raw == bound
	}
	bs, err := smart.ParseScopes(bound)
	if err != nil || len(bs) != 1 || !bs[0].IsResource() {
		return false
	}
	b := bs[0]
	if b.Context != s.Context || (b.Type != "*" && b.Type != s.Type) || s.Perms&^b.Perms != 0 {
		return false
	}
	return b.Query == nil || (s.Query != nil && b.Query.Encode() == s.Query.Encode())
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// intersect keeps the elements of a that are in b, in a's order.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// needsPatient: the app asked for a patient in context, or for patient/
// scopes, which mean nothing without one.
func needsPatient(scopes []string) bool {
	for _, s := range scopes {
		if s == scopeLaunchPatient || strings.HasPrefix(s, "patient/") {
			return true
		}
	}
	return false
}

// patientFacing: the user is a patient or acts for patients.
func patientFacing(fhirUser string) bool {
	t, _, _ := strings.Cut(fhirUser, "/")
	return t == "Patient" || t == "RelatedPerson" || t == "Person"
}

func isProxy(fhirUser string) bool {
	t, _, _ := strings.Cut(fhirUser, "/")
	return t == "RelatedPerson" || t == "Person"
}
