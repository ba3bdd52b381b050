package smart

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/fhir"
)

// Scope contexts (SMART App Launch 2.x scopes-and-launch-context.html#scopes-for-requesting-fhir-resources).
const (
	ContextPatient = "patient" // confined to the patient in context (the token's patient claim)
	ContextUser    = "user"    // what the user (fhirUser) may access
	ContextSystem  = "system"  // backend services: unconstrained
)

// Perms is a set of SMART v2 permissions (scopes-and-launch-context.html#scopes-for-requesting-fhir-resources):
// c create, r read (read, vread, instance history), u update (update, patch),
// d delete, s search (search, type/system history).
type Perms uint8

const (
	PermCreate Perms = 1 << iota
	PermRead
	PermUpdate
	PermDelete
	PermSearch

	// PermsV1Read is what a v1 ".read" scope means in v2 terms ("rs").
	PermsV1Read = PermRead | PermSearch
	// PermsV1Write is what a v1 ".write" scope means in v2 terms ("cud").
	PermsV1Write = PermCreate | PermUpdate | PermDelete
	// PermsAll is "cruds" (v1 ".*").
	PermsAll = PermsV1Read | PermsV1Write
)

const permLetters = "cruds"

// String renders the set in v2 form ("rs", "cruds").
func (p Perms) String() string {
	var b strings.Builder
	for i := range len(permLetters) {
		if p&(1<<i) != 0 {
			b.WriteByte(permLetters[i])
		}
	}
	return b.String()
}

// Has reports whether every permission of q is in p.
func (p Perms) Has(q Perms) bool { return q != 0 && p&q == q }

// Scope is one parsed OAuth scope. Resource scopes have a Context
// (patient, user, system), a Type (a resource type or "*") and Perms;
// every other scope (openid, fhirUser, launch, launch/patient,
// offline_access, online_access, ...) is kept with an empty Context and
// grants no data access.
type Scope struct {
	// Raw is the scope exactly as it appeared in the token.
	Raw string
	// Context is ContextPatient, ContextUser, ContextSystem, or "" for a
	// non-resource scope.
	Context string
	// Type is the resource type, or "*" for every type.
	Type string
	// Perms are the granted permissions (v1 read/write/* mapped to v2 letters).
	Perms Perms
	// Query is the SMART v2 granular constraint ("?category=...",
	// scopes-and-launch-context.html#finer-grained-resource-constraints-using-search-parameters);
	// nil when absent.
	Query url.Values
	// V1 is true for SMART v1 syntax (.read, .write, .*).
	V1 bool
}

// IsResource reports whether s is a resource scope (patient/, user/, system/).
func (s Scope) IsResource() bool { return s.Context != "" }

// String returns the raw scope.
func (s Scope) String() string { return s.Raw }

// covers reports whether s grants need on resource type typ.
func (s Scope) covers(typ string, need Perms) bool {
	return s.IsResource() && (s.Type == "*" || s.Type == typ) && s.Perms.Has(need)
}

// ParseScopes parses a space-separated scope string (RFC 6749 section 3.3)
// into scopes, SMART App Launch v1 and v2 syntax
// (scopes-and-launch-context.html):
//
//	patient/Observation.read   v1: read = rs, write = cud, * = cruds
//	user/*.cruds               v2: any non-empty ordered subset of "cruds"
//	patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory
//	                           v2 granular scope; the query is kept as url.Values
//	openid fhirUser launch/patient offline_access
//	                           non-resource scopes, kept but grant no data
//
// Tokens are separated by U+0020 only (RFC 6749 section 3.3: scope =
// scope-token *( SP scope-token )); repeated spaces are tolerated. A token
// with a character outside scope-token's set (%x21 / %x23-5B / %x5D-7E: no
// tab, newline, '"', '\\', non-ASCII such as U+00A0), and a scope starting
// with patient/, user/ or system/ that is not well formed, is reported in
// the returned *fhir.Error (one issue per token, expression "scope") and
// left out; every well-formed scope is still returned, so a caller may
// choose to ignore malformed scopes (they grant nothing).
func ParseScopes(s string) ([]Scope, error) {
	tokens := strings.Split(s, " ")
	out := make([]Scope, 0, len(tokens))
	var bad *fhir.Error
	for _, raw := range tokens {
		if raw == "" {
			continue
		}
		var sc Scope
		var err error
		if r, ok := badScopeRune(raw); ok {
			err = fmt.Errorf("character %U is not allowed in a scope (RFC 6749 section 3.3)", r)
		} else {
			sc, err = parseScope(raw)
		}
		if err != nil {
			issue := fhir.Issue{Severity: "error", Code: "invalid", Diagnostics: fmt.Sprintf("malformed scope %q: %v", raw, err), Expression: []string{"scope"}}
			if bad == nil {
				bad = &fhir.Error{Kind: fhir.KindInvalid}
			}
			bad.Issues = append(bad.Issues, issue)
			continue
		}
		out = append(out, sc)
	}
	if bad != nil {
		return out, bad
	}
	return out, nil
}

// badScopeRune returns the first character of tok outside scope-token
// (RFC 6749 section 3.3: %x21 / %x23-5B / %x5D-7E).
func badScopeRune(tok string) (rune, bool) {
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			if c >= 0x80 {
				r, _ := utf8.DecodeRuneInString(tok[i:])
				return r, true
			}
			return rune(c), true
		}
	}
	return 0, false
}

func parseScope(raw string) (Scope, error) {
	ctx, rest, ok := strings.Cut(raw, "/")
	if !ok || (ctx != ContextPatient && ctx != ContextUser && ctx != ContextSystem) {
		return Scope{Raw: raw}, nil // openid, launch/patient, fhirUser, ...
	}
	sc := Scope{Raw: raw, Context: ctx}
	rest, query, hasQuery := strings.Cut(rest, "?")
	typ, perm, ok := strings.Cut(rest, ".")
	if !ok {
		return sc, fmt.Errorf("expected <context>/<type>.<permissions>")
	}
	if !validType(typ) {
		return sc, fmt.Errorf("%q is not a resource type or *", typ)
	}
	sc.Type = typ
	switch perm {
	case "read":
		sc.Perms, sc.V1 = PermsV1Read, true
	case "write":
		sc.Perms, sc.V1 = PermsV1Write, true
	case "*":
		sc.Perms, sc.V1 = PermsAll, true
	default:
		p, err := parsePerms(perm)
		if err != nil {
			return sc, err
		}
		sc.Perms = p
	}
	if hasQuery {
		if sc.V1 {
			return sc, fmt.Errorf("a search constraint needs v2 permissions (cruds), not .%s", perm)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return sc, fmt.Errorf("bad search constraint: %w", err)
		}
		if len(q) == 0 {
			return sc, fmt.Errorf("empty search constraint")
		}
		sc.Query = q
	}
	return sc, nil
}

// parsePerms parses a v2 permission string: a non-empty subset of "cruds"
// in that order, without repeats.
func parsePerms(s string) (Perms, error) {
	if s == "" {
		return 0, fmt.Errorf("no permissions")
	}
	var p Perms
	last := -1
	for i := range len(s) {
		j := strings.IndexByte(permLetters, s[i])
		if j < 0 {
			return 0, fmt.Errorf("permission %q is not one of c, r, u, d, s", s[i:i+1])
		}
		if j <= last {
			return 0, fmt.Errorf("permissions %q are not an ordered subset of \"cruds\"", s)
		}
		last = j
		p |= 1 << j
	}
	return p, nil
}

// validType accepts "*" and names shaped like FHIR resource types.
func validType(t string) bool {
	if t == "*" {
		return true
	}
	if t == "" || len(t) > 64 || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for i := range len(t) {
		c := t[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
