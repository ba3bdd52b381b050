package server

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/bundle"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// Audiences of release rules (policy package).
const (
	audienceNone    = ""        // practitioners, backend services: see everything
	audiencePatient = "patient" // the patient themselves
	audienceProxy   = "proxy"   // a parent or caregiver acting for the patient
)

// caller is the resolved identity of a request: the SMART principal, whether
// release rules apply to it, and, for proxies, what they may act on.
type caller struct {
	p        *smart.Principal // nil: authorization disabled
	audience string
	proxy    string // "RelatedPerson/9" or "Person/3" acting
	grants   []smart.Grant
	// onBehalf, with p nil, is a service call (HandleAsService): the
	// server's own authority, audited as this principal's.
	onBehalf *smart.Principal
}

type callerKey struct{}

func withCaller(ctx context.Context, c *caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// caller resolves (once per request; bundle entries reuse it) who is calling.
func (s *Server) caller(ctx context.Context) (*caller, error) {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return c, nil
	}
	if s.cfg.AuthDisabled {
		return &caller{}, nil
	}
	p := smart.PrincipalFrom(ctx)
	if p == nil {
		return nil, smart.MissingToken()
	}
	c := &caller{p: p}
	typ, _, _ := strings.Cut(p.FHIRUser, "/")
	patientScopes := false
	for _, sc := range p.Scopes {
		if sc.Context == "patient" {
			patientScopes = true
		}
	}
	switch {
	case typ == "RelatedPerson" || typ == "Person":
		c.audience = audienceProxy
		c.proxy = p.FHIRUser
		grants, err := smart.Grants(ctx, s.cfg.Store, s.proxyConfig(), p.FHIRUser)
		if err != nil {
			return nil, err
		}
		c.grants = grants
		if p.Patient != "" {
			ok := false
			for _, g := range grants {
				if g.Patient == p.Patient || g.Patient == "Patient/"+p.Patient {
					ok = true
				}
			}
			if !ok {
				return nil, fhir.Errorf(fhir.KindForbidden, "%s may not act for patient %s", p.FHIRUser, p.Patient)
			}
		}
	case typ == "Patient" || patientScopes && typ != "Practitioner" && typ != "PractitionerRole":
		// A clinician's app launched in a patient's context (patient/
		// scopes, fhirUser a Practitioner) is confined to that patient
		// by the scopes, but is not patient-facing.
		c.audience = audiencePatient
	}
	return c, nil
}

func (s *Server) proxyConfig() smart.ProxyConfig {
	pc := s.cfg.Proxy
	if pc.Now == nil {
		pc.Now = s.cfg.Now
	}
	return pc
}

// allow decides interaction on typ for the caller and returns the
// constraint every matching resource must satisfy (nil: none). Read-like
// interactions of patient-facing callers also get the release constraint.
func (s *Server) allow(c *caller, interaction smart.Interaction, typ string) (search.Expr, error) {
	if c == nil || c.p == nil {
		return nil, nil
	}
	a := smart.Access{Interaction: interaction, Type: typ}
	var d smart.Decision
	if c.audience == audienceProxy {
		d = s.cfg.Decider.DecideProxy(c.p, c.grants, a)
	} else {
		d = s.cfg.Decider.Decide(c.p, a)
	}
	if !d.Allow {
		return nil, smart.InsufficientScope(d.Scope)
	}
	where := d.Where
	if c.audience != audienceNone {
		// What carries several patients' data is no patient's to see.
		where = search.AllOf(where, search.Not{Arg: search.SecurityCond{Labels: []string{search.MultiPatientLabel}}})
		if isReadLike(interaction) {
			where = search.AllOf(where, search.ReleaseCond{Audience: c.audience, Now: s.cfg.Now()})
		}
	}
	return where, nil
}

func isReadLike(i smart.Interaction) bool {
	switch i {
	case smart.Read, smart.VRead, smart.Search, smart.History, smart.HistoryType:
		return true
	}
	return false
}

// constrain returns the per-type constraint function the search engine ANDs
// into every store query; types the caller may not search are Const{false}.
// Patient-facing callers read a Binary by id only (the attachment URL of a
// resource they can see): its link to a patient is decided per read
// (binaryLinked), not by a query.
func (s *Server) constrain(c *caller) func(string) search.Expr {
	if c == nil || c.p == nil {
		return nil
	}
	cache := map[string]search.Expr{}
	return func(typ string) search.Expr {
		if e, ok := cache[typ]; ok {
			return e
		}
		e, err := s.allow(c, "search", typ)
		if err != nil || typ == "Binary" && c.patientFacing() {
			e = search.Const{Value: false}
		} else if e == nil {
			e = search.Const{Value: true}
		}
		cache[typ] = e
		return e
	}
}

// visible reports whether rec satisfies where (in memory, fail closed).
func visible(where search.Expr, rec store.Record) bool {
	if where == nil {
		return true
	}
	ok, err := search.Eval(where, subject(rec))
	return ok && err == nil
}

func subject(rec store.Record) search.Subject {
	return search.Subject{
		Type: rec.Type, ID: rec.ID, LastUpdated: rec.LastUpdated, Index: &rec.Index,
		PatientVisible: rec.Release.Patient, ProxyVisible: rec.Release.Proxy,
	}
}

// patientFacing reports whether release rules apply to the caller: a
// patient's or a proxy's app.
func (c *caller) patientFacing() bool { return c != nil && c.p != nil && c.audience != audienceNone }

// actingPatients lists the patients ("Patient/1") a patient-facing caller
// acts for: the token's patient, else the fhirUser patient, else (a proxy
// with user/ scopes) every patient a current grant names.
func (c *caller) actingPatients() []string {
	if c.p.Patient != "" {
		return []string{"Patient/" + strings.TrimPrefix(c.p.Patient, "Patient/")}
	}
	if strings.HasPrefix(c.p.FHIRUser, "Patient/") {
		return []string{c.p.FHIRUser}
	}
	var out []string
	for _, g := range c.grants {
		p := "Patient/" + strings.TrimPrefix(g.Patient, "Patient/")
		if g.Patient != "" && !contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// canSee reports whether the caller may read version rec: its read
// scopes, the patient compartment, release rules and sensitive labels,
// evaluated exactly as a search would. A Binary seen by a patient-facing
// caller follows what links it to a patient (binaryLinked). Every write
// to an existing resource asks this first, so a resource the caller
// cannot read answers exactly as one that does not exist (404).
func (s *Server) canSee(ctx context.Context, c *caller, rec store.Record) (bool, error) {
	if c == nil || c.p == nil {
		return true, nil
	}
	where, err := s.allow(c, smart.Read, rec.Type)
	if err != nil {
		return false, nil // no read scope: nothing of the type is visible
	}
	if rec.Type == "Binary" && c.patientFacing() {
		linked, ok, err := s.binaryLinked(ctx, c, rec)
		if err != nil || !ok {
			return false, err
		}
		rec = linked
	}
	return visible(where, rec), nil
}

// reach reports whether rec is within the caller's reach for
// interaction: readable (canSee), or, for an EMR or practitioner, covered
// by the scope of the interaction itself (a write or release scope
// without read).
func (s *Server) reach(ctx context.Context, c *caller, interaction smart.Interaction, rec store.Record) (bool, error) {
	ok, err := s.canSee(ctx, c, rec)
	if err != nil || ok || c.patientFacing() || interaction == smart.Read {
		return ok, err
	}
	where, err := s.allow(c, interaction, rec.Type)
	return err == nil && visible(where, rec), nil
}

// maxBinaryLinks bounds the resources a Binary's visibility is decided
// from; a Binary carried by more is not shown to patient-facing callers.
const maxBinaryLinks = 50

// binaryLinked decides what links Binary rec to a patient for a
// patient-facing caller (binary.html#security: securityContext), and
// returns rec in the compartments of those links:
//   - Binary.securityContext: the Patient itself, or a resource the caller
//     must be able to read (so the Binary of a held or excluded result is
//     held or excluded with it, and a Binary of an HIV result is withheld
//     from proxies like the result);
//   - every resource whose Attachment.url points at it (search.BinaryLinkParam):
//     each must be readable by the caller, so naming someone else's Binary
//     in one's own DocumentReference does not reveal it.
//
// ok is false when nothing links it, or a link is out of the caller's reach.
func (s *Server) binaryLinked(ctx context.Context, c *caller, rec store.Record) (store.Record, bool, error) {
	// owner: what decides the Binary's compartment — its securityContext
	// when it has one (binary.html: the Binary is treated as that
	// resource), else every resource carrying it.
	var owner, carriers []store.Record
	hasContext := false
	if len(rec.Raw) > 0 {
		tree, err := fhir.Decode(rec.Raw)
		if err != nil {
			return rec, false, err
		}
		if ref := securityContext(tree); ref != "" {
			hasContext = true
			typ, id, _ := strings.Cut(ref, "/")
			switch {
			case typ == "Patient" && fhir.ValidID(id):
				owner = append(owner, store.Record{Type: "Patient", ID: id,
					Index: search.Index{Compartments: []string{"Patient/" + id}}})
			case typ == "Binary" || !fhir.IsResourceType(typ) || !fhir.ValidID(id):
				return rec, false, nil
			default:
				t, err := s.cfg.Store.Read(ctx, typ, id)
				if errors.Is(err, store.ErrNotFound) || err == nil && t.Deleted {
					return rec, false, nil
				}
				if err != nil {
					return rec, false, err
				}
				owner = append(owner, t)
			}
		}
	}
	page, err := s.cfg.Store.Search(ctx, store.Query{
		Filter: search.RefCond{Param: search.BinaryLinkParam, Targets: []string{"Binary/" + rec.ID}},
		Count:  maxBinaryLinks + 1,
	})
	if err != nil {
		return rec, false, err
	}
	if len(page.Records) > maxBinaryLinks {
		return rec, false, nil
	}
	for _, r := range page.Records {
		if r.Type != "Binary" {
			carriers = append(carriers, r)
		}
	}
	if !hasContext {
		owner = carriers
	}
	if len(owner) == 0 {
		return rec, false, nil
	}
	// Every link must be within the caller's reach: the securityContext
	// (a Patient is checked by the compartment below) and every carrier,
	// so a Binary of an excluded or withheld resource is withheld too.
	for _, l := range append(slices.Clone(owner), carriers...) {
		if l.Type == "Patient" && len(l.Raw) == 0 {
			continue
		}
		where, err := s.allow(c, smart.Read, l.Type)
		if err != nil || !visible(where, l) {
			return rec, false, nil
		}
	}
	idx := rec.Index
	idx.Compartments = nil
	idx.Security = slices.Clone(idx.Security)
	for _, l := range owner {
		for _, cpt := range l.Index.Compartments {
			if !slices.Contains(idx.Compartments, cpt) {
				idx.Compartments = append(idx.Compartments, cpt)
			}
		}
	}
	for _, l := range append(slices.Clone(owner), carriers...) {
		for _, lbl := range l.Index.Security {
			if !slices.Contains(idx.Security, lbl) {
				idx.Security = append(idx.Security, lbl)
			}
		}
	}
	rec.Index = idx
	return rec, true, nil
}

// securityContext is Binary.securityContext.reference ("" for none).
func securityContext(tree map[string]any) string {
	sc, _ := tree["securityContext"].(map[string]any)
	ref, _ := sc["reference"].(string)
	return ref
}

// writerOrigin is the code of the origin tag (smart.OriginSystem) a write
// by c carries: patient-facing apps' writes are marked, nobody else's.
func writerOrigin(c *caller) string {
	if c.patientFacing() {
		return smart.OriginPatientApp
	}
	return ""
}

// patientAuthored reports whether rec was written by a patient-facing app.
func patientAuthored(rec store.Record) bool {
	for _, t := range rec.Index.Tok {
		if t.Param == "_tag" && t.System == smart.OriginSystem && t.Code == smart.OriginPatientApp {
			return true
		}
	}
	return false
}

// notPatientAuthored is the condition EMR and practitioner conditional
// writes add: they never match what a patient-facing app wrote.
func notPatientAuthored() search.Expr {
	sys, code := smart.OriginSystem, smart.OriginPatientApp
	return search.Not{Arg: search.TokenCond{Param: "_tag", System: &sys, Code: &code}}
}

// allowWrite is allow for a write interaction, with the type-level rule
// of patient-facing apps (checkPatientType) first.
func (s *Server) allowWrite(c *caller, interaction smart.Interaction, typ string) (search.Expr, error) {
	where, err := s.allow(c, interaction, typ)
	if err != nil {
		return nil, err
	}
	return where, checkPatientType(c, interaction, typ)
}

// checkPatientType refuses, before anything is read, a write a
// patient-facing app may never make to typ (smart.PatientWrites): 403.
func checkPatientType(c *caller, interaction smart.Interaction, typ string) error {
	if !c.patientFacing() {
		return nil
	}
	rule, ok := smart.PatientWrites[typ]
	switch {
	case !ok:
		return fhir.Errorf(fhir.KindForbidden, "patient-facing apps may not write %s resources", typ)
	case interaction == smart.Create && !rule.Create:
		return fhir.Errorf(fhir.KindForbidden, "patient-facing apps may not create %s resources", typ)
	case interaction != smart.Create && !rule.Change:
		return fhir.Errorf(fhir.KindForbidden, "patient-facing apps may not change %s resources", typ)
	case typ == "Patient" && interaction == smart.Delete:
		return fhir.Errorf(fhir.KindForbidden, "patient-facing apps may not delete Patient resources")
	}
	return nil
}

// existingForWrite resolves the current version of typ/id for an update,
// patch or delete by c: a resource the caller cannot read answers exactly
// as one that does not exist (404), before any precondition is looked at,
// and a patient-facing app may change only what such an app wrote (and a
// patient their own Patient resource). cur is the store's answer.
func (s *Server) existingForWrite(ctx context.Context, c *caller, interaction smart.Interaction, typ, id string, cur store.Record) error {
	if c == nil || c.p == nil {
		return nil
	}
	if cur.Deleted {
		prev, err := s.cfg.Store.VRead(ctx, typ, id, cur.VersionID-1)
		if err != nil {
			return fhir.NotFound(typ, id)
		}
		cur = prev
	}
	ok, err := s.reach(ctx, c, interaction, cur)
	if err != nil {
		return err
	}
	if !ok {
		return fhir.NotFound(typ, id)
	}
	if !c.patientFacing() {
		return nil
	}
	if s.messagingOn(typ) {
		return s.messagingExisting(string(interaction)) // messaging.go: read receipts on any message
	}
	if typ == "Patient" {
		if !contains(c.actingPatients(), "Patient/"+id) {
			return fhir.Errorf(fhir.KindForbidden, "a patient-facing app may change only the Patient resource of the patient it acts for")
		}
		return nil
	}
	if !patientAuthored(cur) {
		return fhir.Errorf(fhir.KindForbidden, "%s/%s was recorded by the care team; a patient-facing app may change only what patient-facing apps wrote", typ, id)
	}
	return nil
}

// checkPatientContent checks the new version rec a patient-facing app
// writes (tree is its content, cur the version it replaces, nil for a
// create): it lands in exactly one acting patient's record and in no
// other patient's, an owner parameter (smart.WriteRule.Owner) names that
// patient, every Binary it points at is one the caller can read, and a
// Patient keeps its protected elements.
func (s *Server) checkPatientContent(ctx context.Context, c *caller, rec store.Record, tree map[string]any, cur *store.Record) error {
	if !c.patientFacing() {
		return nil
	}
	outside := func(why string) error {
		return fhir.Errorf(fhir.KindForbidden, "%s would be outside the record this app may write: %s", rec.Type, why)
	}
	acting := c.actingPatients()
	if rec.Type == "Patient" {
		if !contains(acting, "Patient/"+rec.ID) {
			return outside("it is another patient's record")
		}
		return s.checkPatientElements(ctx, c, rec, tree, cur)
	}
	cpts := rec.Index.Compartments
	if rec.Type == "Binary" {
		ref := securityContext(tree)
		if ref == "" {
			return outside("a Binary written by a patient-facing app needs a securityContext (the patient, or a resource of the patient's)")
		}
		linked, ok, err := s.binaryLinked(ctx, c, rec)
		if err != nil {
			return err
		}
		if !ok {
			return outside("its securityContext is not a resource this app can read")
		}
		cpts = linked.Index.Compartments
	}
	if len(cpts) == 0 {
		return outside("it names no patient")
	}
	owner := cpts[0]
	for _, p := range cpts {
		if p != owner {
			return outside("it names more than one patient")
		}
	}
	if !contains(acting, owner) {
		return outside("it belongs to another patient")
	}
	rule := smart.PatientWrites[rec.Type]
	if len(rule.Owner) > 0 {
		named := false
		for _, r := range rec.Index.Ref {
			if r.Type == "Patient" && "Patient/"+r.ID == owner && slices.Contains(rule.Owner, r.Param) {
				named = true
			}
		}
		if !named {
			return outside("its " + strings.Join(rule.Owner, " or ") + " must be the patient")
		}
	}
	return s.checkPatientElements(ctx, c, rec, tree, cur)
}

// checkPatientElements checks what any patient-facing write carries
// besides its owner: the Binaries it points at, and a Patient's protected
// elements.
func (s *Server) checkPatientElements(ctx context.Context, c *caller, rec store.Record, tree map[string]any, cur *store.Record) error {
	for _, r := range rec.Index.Ref {
		if r.Param != search.BinaryLinkParam {
			continue
		}
		b, err := s.cfg.Store.Read(ctx, "Binary", r.ID)
		if errors.Is(err, store.ErrNotFound) {
			// A Binary created earlier in the same transaction.
			if rec, ok := pending(ctx, "Binary", r.ID); ok {
				b, err = rec, nil
			}
		}
		if err == nil && !b.Deleted {
			ok, err := s.canSee(ctx, c, b)
			if err != nil {
				return err
			}
			if ok {
				continue
			}
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fhir.Errorf(fhir.KindForbidden, "%s points at %s, which this app cannot read", rec.Type, r.Ref)
	}
	if rec.Type == "Patient" && cur != nil {
		old, err := fhir.Decode(cur.Raw)
		if err != nil {
			return err
		}
		for _, k := range smart.ProtectedPatientElements {
			if !reflect.DeepEqual(old[k], tree[k]) || !reflect.DeepEqual(old["_"+k], tree["_"+k]) {
				return fhir.Errorf(fhir.KindForbidden, "a patient-facing app may not change Patient.%s", k).At("Patient." + k)
			}
		}
	}
	return nil
}

// pending is the version of typ/id an earlier entry of the transaction
// under way will write (bundle.Tx), if any.
func pending(ctx context.Context, typ, id string) (store.Record, bool) {
	tx := bundle.TxFrom(ctx)
	if tx == nil {
		return store.Record{}, false
	}
	for i := len(tx.Ops) - 1; i >= 0; i-- {
		if r := tx.Ops[i].Record; r.Type == typ && r.ID == id {
			return r, true
		}
	}
	return store.Record{}, false
}
