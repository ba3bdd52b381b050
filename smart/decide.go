package smart

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// Interaction is a FHIR RESTful interaction (http.html) as far as access
// control distinguishes them.
type Interaction string

// Interactions and the SMART v2 permission each needs
// (scopes-and-launch-context.html#scopes-for-requesting-fhir-resources).
const (
	Read        Interaction = "read"         // r
	VRead       Interaction = "vread"        // r
	Search      Interaction = "search"       // s (type or system level; call Decide per type)
	History     Interaction = "history"      // r: instance-level history
	HistoryType Interaction = "history-type" // s: type- or system-level history
	Create      Interaction = "create"       // c
	Update      Interaction = "update"       // u
	Patch       Interaction = "patch"        // u
	Delete      Interaction = "delete"       // d
)

// Perm is the permission the interaction needs (0 for an unknown interaction).
func (i Interaction) Perm() Perms {
	switch i {
	case Read, VRead, History:
		return PermRead
	case Search, HistoryType:
		return PermSearch
	case Create:
		return PermCreate
	case Update, Patch:
		return PermUpdate
	case Delete:
		return PermDelete
	}
	return 0
}

// hintPerms is the permission string suggested in insufficient_scope:
// "rs" for reading (what a v1 .read means), otherwise the one letter.
func (i Interaction) hintPerms() string {
	switch p := i.Perm(); p {
	case PermRead, PermSearch:
		return "rs"
	default:
		return p.String()
	}
}

// Access is what a request wants to do: an interaction on a resource type.
type Access struct {
	Interaction Interaction
	Type        string
}

// Decision is the outcome of an access decision.
type Decision struct {
	Allow bool
	// Where constrains the allowed access; nil means unconstrained. For
	// search and history it is ANDed into the query. For read/vread and for
	// writes the caller must check that the resource (for update, patch
	// and delete: the current version and the new content; for create:
	// the new content) matches Where, and answer 404 (reads) or 403
	// (writes) when it does not.
	Where search.Expr
	// Reason explains the decision (for the audit log, not for the client).
	Reason string
	// Scope is, on a deny, the scope that would grant the access (for
	// InsufficientScope); empty when no scope would help.
	Scope string
}

// Decider decides SMART App Launch 2.x access (scopes-and-launch-context.html).
type Decider struct {
	// CompileQuery compiles the search constraint of a granular v2 scope
	// ("patient/Observation.rs?category=...") through the search engine.
	// A scope with a query is ignored (grants nothing) when CompileQuery is
	// nil or fails.
	CompileQuery func(resourceType string, q url.Values) (search.Expr, error)
	// PatientFree reports whether resources of the type hold no patient
	// data (Practitioner, Organization, Location, Medication, conformance
	// resources: search.PatientFree). Patient-facing scopes may read such
	// types unconstrained; every other type is confined to the patient's
	// compartment, which extraction computes for compartment types from
	// CompartmentDefinition-patient and for the others from what links them
	// to a patient (Task.for, Device.patient, Binary.securityContext, a
	// Bundle's entries). When nil every type is compartment-bound (fail
	// closed: Practitioner etc. are then only readable with user/ or system/ scopes).
	PatientFree func(resourceType string) bool
	// SensitiveLabels are withheld from proxies (DecideProxy) unless their
	// grant allows them; nil means DefaultSensitiveLabels. Use the same
	// list as ProxyConfig.SensitiveLabels.
	SensitiveLabels []string
	// Now is the clock for Grant.Until (default time.Now).
	Now func() time.Time
}

func (d *Decider) inCompartment(typ string) bool {
	if d.PatientFree == nil {
		return true
	}
	return !d.PatientFree(typ)
}

func (d *Decider) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Decide decides access for principals that are not proxies (see
// DecideProxy for RelatedPerson and Person users; Decide denies them).
//
// Scopes are a union: each resource scope that covers the type and the
// needed permission contributes a constraint; an unconstrained one wins,
// otherwise Where is the Or of all constraints. A scope's constraint is
// its context's constraint ANDed with its granular query:
//
//   - patient/: the token's patient compartment, CompartmentCond
//     {"Patient/<patient>"}, for every type that can carry patient data.
//     Types that hold none (PatientFree: Practitioner, Organization,
//     Location, Medication, ...) are readable (r, s only) when the scope
//     covers them; writing them is denied.
//     A patient/ scope without a patient claim grants nothing.
//   - user/: by fhirUser. Practitioner or PractitionerRole: unconstrained
//     (the scopes are the limit); Patient: like patient/ with the user's
//     own id; any other or no fhirUser: nothing.
//   - system/: unconstrained (backend services, SMART Backend Services).
func (d *Decider) Decide(p *Principal, a Access) Decision {
	if p == nil {
		return Decision{Reason: "no authenticated principal"}
	}
	if p.IsProxy() {
		return Decision{Reason: "fhirUser " + p.FHIRUser + " acts for patients: decided by DecideProxy with grants"}
	}
	return d.decide(p, a, func(s Scope, need Perms) (search.Expr, bool, string) {
		return d.contextConstraint(p, s, a.Type, need)
	})
}

// decide is the union over scopes; ctxCond gives one scope's context
// constraint (ok=false: the scope grants nothing here).
func (d *Decider) decide(p *Principal, a Access, ctxCond func(Scope, Perms) (search.Expr, bool, string)) Decision {
	need := a.Interaction.Perm()
	if need == 0 {
		return Decision{Reason: fmt.Sprintf("unknown interaction %q", a.Interaction)}
	}
	if !validType(a.Type) || a.Type == "*" {
		return Decision{Reason: fmt.Sprintf("invalid resource type %q", a.Type)}
	}
	var conds []search.Expr
	var why []string
	for _, s := range p.Scopes {
		if !s.covers(a.Type, need) {
			continue
		}
		c, ok, reason := ctxCond(s, need)
		if !ok {
			why = append(why, s.Raw+": "+reason)
			continue
		}
		if s.Query != nil {
			q, err := d.compileQuery(a.Type, s.Query)
			if err != nil {
				why = append(why, s.Raw+": "+err.Error())
				continue
			}
			c = search.AllOf(c, q)
		}
		if c == nil {
			return Decision{Allow: true, Reason: "granted by " + s.Raw}
		}
		if !containsExpr(conds, c) {
			conds = append(conds, c)
		}
		why = append(why, "granted by "+s.Raw)
	}
	if len(conds) == 0 {
		reason := fmt.Sprintf("no scope grants %s on %s", a.Interaction, a.Type)
		if len(why) > 0 {
			reason += " (" + strings.Join(why, "; ") + ")"
		}
		return Decision{Reason: reason, Scope: hintScope(p, a)}
	}
	return Decision{Allow: true, Where: union(conds), Reason: strings.Join(why, "; ")}
}

// union is the Or of conds without members that another member subsumes
// (And{A, B} is dropped next to A: A ∨ (A ∧ B) = A).
func union(conds []search.Expr) search.Expr {
	var keep []search.Expr
	for i, c := range conds {
		subsumed := false
		if a, ok := c.(search.And); ok {
			for j, o := range conds {
				if j != i && containsExpr(a.Args, o) {
					subsumed = true
					break
				}
			}
		}
		if !subsumed {
			keep = append(keep, c)
		}
	}
	if len(keep) == 1 {
		return keep[0]
	}
	return search.Or{Args: keep}
}

func (d *Decider) compileQuery(typ string, q url.Values) (search.Expr, error) {
	if d.CompileQuery == nil {
		return nil, fmt.Errorf("granular scopes are not supported")
	}
	x, err := d.CompileQuery(typ, q)
	if err != nil {
		return nil, fmt.Errorf("scope constraint: %w", err)
	}
	if x == nil {
		// An empty compiled constraint must not widen access silently.
		return nil, fmt.Errorf("scope constraint compiled to nothing")
	}
	return x, nil
}

// contextConstraint is the constraint of a non-proxy principal's scope.
func (d *Decider) contextConstraint(p *Principal, s Scope, typ string, need Perms) (search.Expr, bool, string) {
	switch s.Context {
	case ContextSystem:
		return nil, true, ""
	case ContextPatient:
		if p.Patient == "" {
			return nil, false, "patient scope without patient in context"
		}
		return d.patientConstraint(p.Patient, typ, need)
	case ContextUser:
		typeOf, id, _ := strings.Cut(p.FHIRUser, "/")
		switch typeOf {
		case "Practitioner", "PractitionerRole":
			return nil, true, ""
		case "Patient":
			return d.patientConstraint(id, typ, need)
		case "":
			return nil, false, "user scope without fhirUser"
		}
		return nil, false, "user scope not supported for fhirUser type " + typeOf
	}
	return nil, false, "not a resource scope"
}

// patientConstraint confines access to one patient's compartment; types
// outside patient compartments are read-only and unconstrained.
func (d *Decider) patientConstraint(patient, typ string, need Perms) (search.Expr, bool, string) {
	if d.inCompartment(typ) {
		return search.CompartmentCond{Compartments: []string{"Patient/" + patient}}, true, ""
	}
	if PermsV1Read.Has(need) {
		return nil, true, ""
	}
	return nil, false, typ + " is outside the patient compartment: read-only"
}

// hintScope is the scope to suggest in insufficient_scope.
func hintScope(p *Principal, a Access) string {
	ctx := ContextSystem
	switch {
	case p.Patient != "":
		ctx = ContextPatient
	case p.FHIRUser != "":
		ctx = ContextUser
	}
	return ctx + "/" + a.Type + "." + a.Interaction.hintPerms()
}

func containsExpr(xs []search.Expr, x search.Expr) bool {
	for _, y := range xs {
		if reflect.DeepEqual(x, y) {
			return true
		}
	}
	return false
}
