package smart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Code systems used by proxy access.
const (
	SystemRoleCode      = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
	SystemActCode       = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	SystemConsentScope  = "http://terminology.hl7.org/CodeSystem/consentscope"
	SystemConsentAction = "http://terminology.hl7.org/CodeSystem/consentaction"
	SystemResourceTypes = "http://hl7.org/fhir/resource-types"
)

// DefaultRelationships are the RelatedPerson.relationship codings (v3
// RoleCode, "system|code") that make a parent or guardian: parent, mother,
// father, guardian, natural parent/mother/father, adoptive
// parent/mother/father, stepparent/stepmother/stepfather.
var DefaultRelationships = []string{
	SystemRoleCode + "|PRN", SystemRoleCode + "|MTH", SystemRoleCode + "|FTH",
	SystemRoleCode + "|GUARD",
	SystemRoleCode + "|NPRN", SystemRoleCode + "|NMTH", SystemRoleCode + "|NFTH",
	SystemRoleCode + "|ADOPTP", SystemRoleCode + "|ADOPTM", SystemRoleCode + "|ADOPTF",
	SystemRoleCode + "|STPPRN", SystemRoleCode + "|STPMTH", SystemRoleCode + "|STPFTH",
}

// DefaultSensitiveLabels are the meta.security labels withheld from proxies
// ("system|code"): v3 ActCode psychiatry (PSY), HIV, substance abuse (ETH),
// sexually transmitted disease (STD), sexuality and reproductive health
// (SEX), and the obligation NOPAT (no disclosure to patient, family or
// caregivers without attending provider's authorization).
var DefaultSensitiveLabels = []string{
	SystemActCode + "|PSY", SystemActCode + "|HIV", SystemActCode + "|ETH",
	SystemActCode + "|STD", SystemActCode + "|SEX", SystemActCode + "|NOPAT",
}

// ProxyConfig configures access by parents, guardians and caregivers.
type ProxyConfig struct {
	// Relationships ("system|code") that make a RelatedPerson a parent or
	// guardian; nil means DefaultRelationships.
	Relationships []string
	// MaxChildAge: parental access ends on this birthday of the child
	// (default 12).
	MaxChildAge int
	// SensitiveLabels withheld from proxies; nil means DefaultSensitiveLabels.
	SensitiveLabels []string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Location is the time zone of dates without one (birthDate, date-only
	// periods): a child's 12th birthday starts at local midnight. Default UTC.
	Location *time.Location
}

func (c ProxyConfig) relationships() []string {
	if c.Relationships == nil {
		return DefaultRelationships
	}
	return c.Relationships
}

func (c ProxyConfig) sensitive() []string {
	if c.SensitiveLabels == nil {
		return DefaultSensitiveLabels
	}
	return c.SensitiveLabels
}

func (c ProxyConfig) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Reader is the read access Grants needs (a store.Store satisfies it).
type Reader interface {
	Read(ctx context.Context, typ, id string) (store.Record, error)
	Search(ctx context.Context, q store.Query) (store.Page, error)
}

// Grant is one patient a proxy may act for.
type Grant struct {
	// Patient is the bare id of the patient.
	Patient string
	// Via is "relationship" (parent or guardian of a child) or "consent".
	Via string
	// ID is the Type/id of the resource that grants (RelatedPerson or Consent).
	ID string
	// Types limits the resource types; nil means all.
	Types []string
	// Actions limits the consent actions (consentaction codes: "access" for
	// read and search, "correct" for create, update, patch and delete);
	// nil means all.
	Actions []string
	// Sensitive: every sensitive label is allowed.
	Sensitive bool
	// Labels are the sensitive labels ("system|code") this grant allows
	// when Sensitive is false (Consent.provision.securityLabel).
	Labels []string
	// Until is when the grant ends (exclusive); zero means open-ended.
	Until time.Time
}

const (
	ViaRelationship = "relationship"
	ViaConsent      = "consent"
)

// maxConsentPages bounds the Consent search of one RelatedPerson.
const maxConsentPages = 20

// Grants finds the patients fhirUser ("RelatedPerson/x", "Person/y") may
// act for at cfg.Now. Any other fhirUser has no grants. Call it on every
// request: a withdrawn Consent or an ended relationship ends access at once.
//
// Parent or guardian: an active RelatedPerson (active is not false, now in
// its period if any) with a relationship coding in cfg.Relationships gives
// access to RelatedPerson.patient while that Patient is younger than
// MaxChildAge (from Patient.birthDate; access ends on that birthday; a
// patient without birthDate gives no parental access; a partial birthDate
// is taken at its earliest day).
//
// Delegation (patient-privacy Consent, consent.html): an active Consent
// whose scope is patient-privacy, provision.type permit, one
// provision.actor.reference the RelatedPerson, provision.period containing
// now, and patient the RelatedPerson's patient grants exactly its
// provision.class resource types (codings of
// http://hl7.org/fhir/resource-types; a class without such codings grants
// no type), provision.action actions (absent: all) and
// provision.securityLabel sensitive labels. Consents with nested
// provisions are not evaluated and grant nothing (fail closed). A Consent
// that is inactive, rejected, entered-in-error or whose period ended grants
// nothing.
//
// Consents are found with a store search on Consent with the "actor"
// reference parameter (RefCond, Consent.provision.actor.reference in R4),
// and every condition above is then checked again on the resource JSON, so
// the search only needs to find a superset.
//
// Person: the active Person's link.target RelatedPersons, each as above.
func Grants(ctx context.Context, r Reader, cfg ProxyConfig, fhirUser string) ([]Grant, error) {
	ref, ok := relativeRef(fhirUser)
	if !ok {
		return nil, nil
	}
	typ, id, _ := strings.Cut(ref, "/")
	switch typ {
	case "RelatedPerson":
		return relatedPersonGrants(ctx, r, cfg, id)
	case "Person":
		var person struct {
			Active *bool `json:"active"`
			Link   []struct {
				Target reference `json:"target"`
			} `json:"link"`
		}
		ok, err := readJSON(ctx, r, "Person", id, &person)
		if err != nil || !ok || person.Active != nil && !*person.Active {
			return nil, err
		}
		var out []Grant
		seen := map[string]bool{}
		for _, l := range person.Link {
			t, ok := relativeRef(l.Target.Reference)
			if !ok || !strings.HasPrefix(t, "RelatedPerson/") || seen[t] {
				continue
			}
			seen[t] = true
			gs, err := relatedPersonGrants(ctx, r, cfg, strings.TrimPrefix(t, "RelatedPerson/"))
			if err != nil {
				return nil, err
			}
			out = append(out, gs...)
		}
		return out, nil
	}
	return nil, nil
}

type reference struct {
	Reference string `json:"reference"`
}

type coding struct {
	System string `json:"system"`
	Code   string `json:"code"`
}

func (c coding) key() string { return c.System + "|" + c.Code }

type codeableConcept struct {
	Coding []coding `json:"coding"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// contains reports whether now is inside the period (start inclusive, end
// inclusive at its precision); ok=false when the period is malformed.
func (p *period) contains(now time.Time, loc *time.Location) (in bool, until time.Time, ok bool) {
	if p == nil {
		return true, time.Time{}, true
	}
	if p.Start != "" {
		lo, _, err := parseFHIRTime(p.Start, loc)
		if err != nil {
			return false, time.Time{}, false
		}
		if now.Before(lo) {
			return false, time.Time{}, true
		}
	}
	if p.End != "" {
		_, hi, err := parseFHIRTime(p.End, loc)
		if err != nil {
			return false, time.Time{}, false
		}
		if !now.Before(hi) {
			return false, hi, true
		}
		until = hi
	}
	return true, until, true
}

// readJSON reads the current version of typ/id into v; ok=false when it
// does not exist or is deleted.
func readJSON(ctx context.Context, r Reader, typ, id string, v any) (bool, error) {
	rec, err := r.Read(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("smart: read %s/%s: %w", typ, id, err)
	}
	if rec.Deleted || len(rec.Raw) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(rec.Raw, v); err != nil {
		// Stored resources are validated; an unreadable one grants nothing.
		return false, nil
	}
	return true, nil
}

func relatedPersonGrants(ctx context.Context, r Reader, cfg ProxyConfig, id string) ([]Grant, error) {
	var rp struct {
		Active       *bool             `json:"active"`
		Patient      reference         `json:"patient"`
		Relationship []codeableConcept `json:"relationship"`
		Period       *period           `json:"period"`
	}
	ok, err := readJSON(ctx, r, "RelatedPerson", id, &rp)
	if err != nil || !ok {
		return nil, err
	}
	now := cfg.now()
	if rp.Active != nil && !*rp.Active {
		return nil, nil
	}
	in, rpUntil, ok := rp.Period.contains(now, cfg.Location)
	if !ok || !in {
		return nil, nil
	}
	patient, ok := patientID(rp.Patient.Reference)
	if !ok || !strings.Contains(rp.Patient.Reference, "/") {
		return nil, nil
	}
	self := "RelatedPerson/" + id
	var out []Grant

	if isParent(rp.Relationship, cfg.relationships()) {
		g, err := parentGrant(ctx, r, cfg, patient, now)
		if err != nil {
			return nil, err
		}
		if g != nil {
			g.ID = self
			g.Until = earliest(g.Until, rpUntil)
			out = append(out, *g)
		}
	}

	cons, err := consentGrants(ctx, r, cfg, self, patient, now)
	if err != nil {
		return nil, err
	}
	for _, g := range cons {
		g.Until = earliest(g.Until, rpUntil)
		out = append(out, g)
	}
	return out, nil
}

func isParent(rels []codeableConcept, allowed []string) bool {
	for _, cc := range rels {
		for _, c := range cc.Coding {
			if slices.Contains(allowed, c.key()) {
				return true
			}
		}
	}
	return false
}

// parentGrant gives access to a child younger than MaxChildAge.
func parentGrant(ctx context.Context, r Reader, cfg ProxyConfig, patient string, now time.Time) (*Grant, error) {
	var pt struct {
		Active    *bool  `json:"active"`
		BirthDate string `json:"birthDate"`
	}
	ok, err := readJSON(ctx, r, "Patient", patient, &pt)
	if err != nil || !ok || pt.BirthDate == "" {
		return nil, err
	}
	if pt.Active != nil && !*pt.Active {
		return nil, nil
	}
	born, _, err := parseFHIRTime(pt.BirthDate, cfg.Location)
	if err != nil {
		return nil, nil
	}
	maxAge := cfg.MaxChildAge
	if maxAge <= 0 {
		maxAge = 12
	}
	ends := born.AddDate(maxAge, 0, 0)
	if !now.Before(ends) {
		return nil, nil
	}
	return &Grant{Patient: patient, Via: ViaRelationship, Until: ends}, nil
}

type consentJSON struct {
	Status    string          `json:"status"`
	Scope     codeableConcept `json:"scope"`
	Patient   reference       `json:"patient"`
	Provision *struct {
		Type   string  `json:"type"`
		Period *period `json:"period"`
		Actor  []struct {
			Reference reference `json:"reference"`
		} `json:"actor"`
		Action        []codeableConcept `json:"action"`
		SecurityLabel []coding          `json:"securityLabel"`
		Class         []coding          `json:"class"`
		Provision     []json.RawMessage `json:"provision"`
	} `json:"provision"`
}

func consentGrants(ctx context.Context, r Reader, cfg ProxyConfig, actor, patient string, now time.Time) ([]Grant, error) {
	q := store.Query{
		Types:  []string{"Consent"},
		Filter: search.RefCond{Param: "actor", Targets: []string{actor}},
		Count:  100,
	}
	var out []Grant
	for range maxConsentPages {
		page, err := r.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("smart: search consents of %s: %w", actor, err)
		}
		for _, rec := range page.Records {
			if rec.Deleted || len(rec.Raw) == 0 {
				continue
			}
			var c consentJSON
			if json.Unmarshal(rec.Raw, &c) != nil {
				continue
			}
			if g, ok := consentGrant(c, cfg, actor, patient, now); ok {
				g.ID = "Consent/" + rec.ID
				out = append(out, g)
			}
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	return out, nil
}

func consentGrant(c consentJSON, cfg ProxyConfig, actor, patient string, now time.Time) (Grant, bool) {
	pv := c.Provision
	if c.Status != "active" || pv == nil || pv.Type != "permit" || len(pv.Provision) > 0 {
		return Grant{}, false
	}
	if !slices.ContainsFunc(c.Scope.Coding, func(x coding) bool {
		return x.System == SystemConsentScope && x.Code == "patient-privacy"
	}) {
		return Grant{}, false
	}
	if p, ok := patientID(c.Patient.Reference); !ok || p != patient {
		return Grant{}, false
	}
	if !slices.ContainsFunc(pv.Actor, func(a struct {
		Reference reference `json:"reference"`
	}) bool {
		ref, ok := relativeRef(a.Reference.Reference)
		return ok && ref == actor
	}) {
		return Grant{}, false
	}
	in, until, ok := pv.Period.contains(now, cfg.Location)
	if !ok || !in {
		return Grant{}, false
	}
	g := Grant{Patient: patient, Via: ViaConsent, Until: until}
	if pv.Class != nil {
		g.Types = []string{}
		for _, cl := range pv.Class {
			if cl.System == SystemResourceTypes && validType(cl.Code) && cl.Code != "*" && !slices.Contains(g.Types, cl.Code) {
				g.Types = append(g.Types, cl.Code)
			}
		}
	}
	if pv.Action != nil {
		g.Actions = []string{}
		for _, cc := range pv.Action {
			for _, cd := range cc.Coding {
				if cd.System == SystemConsentAction && !slices.Contains(g.Actions, cd.Code) {
					g.Actions = append(g.Actions, cd.Code)
				}
			}
		}
	}
	sens := cfg.sensitive()
	for _, l := range pv.SecurityLabel {
		if k := l.key(); slices.Contains(sens, k) && !slices.Contains(g.Labels, k) {
			g.Labels = append(g.Labels, k)
		}
	}
	g.Sensitive = len(sens) > 0 && len(g.Labels) == len(sens)
	return g, true
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case b.Before(a):
		return b
	}
	return a
}

// consentAction maps a permission to the consentaction code it needs.
func consentAction(need Perms) string {
	if PermsV1Read.Has(need) {
		return "access"
	}
	return "correct"
}

// DecideProxy decides access for a proxy (fhirUser RelatedPerson or Person)
// from its grants (Grants, computed for this request); for any other
// principal it is Decide.
//
// A proxy token with a patient claim is accepted only while a grant for
// that patient exists; otherwise every access is denied. patient/ scopes
// confine the proxy to that patient, user/ scopes to every patient it has
// a grant for; system/ scopes grant proxies nothing. Per grant, access
// is limited to the grant's types and actions, to the patient's
// compartment (types outside patient compartments are read-only), and
// resources carrying a sensitive label (Decider.SensitiveLabels) that the
// grant does not allow are withheld: Where gets
// Not{SecurityCond{labels}}.
func (d *Decider) DecideProxy(p *Principal, grants []Grant, a Access) Decision {
	if p == nil {
		return Decision{Reason: "no authenticated principal"}
	}
	if !p.IsProxy() {
		return d.Decide(p, a)
	}
	now := d.now()
	var live []Grant
	for _, g := range grants {
		if g.Patient != "" && (g.Until.IsZero() || now.Before(g.Until)) {
			live = append(live, g)
		}
	}
	if p.Patient != "" && !slices.ContainsFunc(live, func(g Grant) bool { return g.Patient == p.Patient }) {
		return Decision{Reason: p.FHIRUser + " has no current grant for Patient/" + p.Patient}
	}
	if len(live) == 0 {
		return Decision{Reason: p.FHIRUser + " has no current grant for any patient"}
	}
	dec := d.decide(p, a, func(s Scope, need Perms) (search.Expr, bool, string) {
		var gs []Grant
		switch s.Context {
		case ContextPatient:
			if p.Patient == "" {
				return nil, false, "patient scope without patient in context"
			}
			for _, g := range live {
				if g.Patient == p.Patient {
					gs = append(gs, g)
				}
			}
		case ContextUser:
			gs = live
		default:
			return nil, false, "system scopes are not for proxies"
		}
		var conds []search.Expr
		var why []string
		for _, g := range gs {
			c, ok, reason := d.grantConstraint(g, a.Type, need)
			if !ok {
				why = append(why, reason)
				continue
			}
			if c == nil {
				return nil, true, ""
			}
			if !containsExpr(conds, c) {
				conds = append(conds, c)
			}
		}
		if len(conds) == 0 {
			return nil, false, strings.Join(why, "; ")
		}
		return union(conds), true, ""
	})
	if !dec.Allow {
		// A scope only helps when a grant would allow the access.
		dec.Scope = ""
		for _, g := range live {
			if _, ok, _ := d.grantConstraint(g, a.Type, a.Interaction.Perm()); ok && (p.Patient == "" || g.Patient == p.Patient) {
				dec.Scope = hintScope(p, a)
				break
			}
		}
	}
	return dec
}

// grantConstraint is what one grant allows on typ for need.
func (d *Decider) grantConstraint(g Grant, typ string, need Perms) (search.Expr, bool, string) {
	src := g.Via + " " + g.ID
	if g.Types != nil && !slices.Contains(g.Types, typ) {
		return nil, false, src + " does not cover " + typ
	}
	if act := consentAction(need); g.Actions != nil && !slices.Contains(g.Actions, act) {
		return nil, false, src + " does not allow " + act
	}
	var conds []search.Expr
	if d.inCompartment(typ) {
		conds = append(conds, search.CompartmentCond{Compartments: []string{"Patient/" + g.Patient}})
	} else if !PermsV1Read.Has(need) {
		return nil, false, typ + " is outside the patient compartment: read-only"
	}
	if !g.Sensitive {
		labels := d.SensitiveLabels
		if labels == nil {
			labels = DefaultSensitiveLabels
		}
		var withhold []string
		for _, l := range labels {
			if !slices.Contains(g.Labels, l) {
				withhold = append(withhold, l)
			}
		}
		if len(withhold) > 0 {
			conds = append(conds, search.Not{Arg: search.SecurityCond{Labels: withhold}})
		}
	}
	return search.AllOf(conds...), true, ""
}
