package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/bundle"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

func (s *Server) capabilities() (*fhir.Response, error) {
	if s.cfg.Capabilities == nil {
		return nil, fhir.Errorf(fhir.KindNotFound, "no CapabilityStatement configured")
	}
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: s.cfg.Capabilities()}, nil
}

// Operations are the extended operations fhirgate runs (operations.html),
// listed in the CapabilityStatement from this table.
var Operations = []struct {
	Name, Definition, Doc string
	Instance              bool
	Write                 bool
	Types                 []string // the resource types it is defined on; nil: every type
}{
	{"release", "http://fhirgate.dev/OperationDefinition/release", "Release a held or delayed resource to the patient and proxies now, optionally with a note (annotate and release). Records a Provenance and an AuditEvent.", true, true, nil},
	{"hold", "http://fhirgate.dev/OperationDefinition/hold", "Hold a resource back from patient-facing access again, with a reason.", true, true, nil},
	{"release-status", "http://fhirgate.dev/OperationDefinition/release-status", "Which release rule applies, held until when, released by whom.", true, false, nil},
	{"escalate", "http://fhirgate.dev/OperationDefinition/escalate", "Communication threads only (docs/messaging.md): a clinician turns a secure-messaging thread into an eConsult or a visit request (kind econsult | visit, note, close); creates a ServiceRequest and a Task referencing the thread in one transaction. Secure messaging is not for emergencies — call 911.", true, true, []string{"Communication"}},
}

func (s *Server) operation(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if x.rt.id == "" {
		if op, ok := s.registered(x); ok {
			return s.extraOperation(ctx, x, op)
		}
		return nil, fhir.Errorf(fhir.KindNotFound, "operation %s is not supported at this level", x.rt.op)
	}
	switch x.rt.op {
	case "$release", "$hold":
		if x.req.Method != http.MethodPost {
			return nil, notAllowed(x.req.Method)
		}
		return s.releaseOp(ctx, x)
	case "$escalate":
		return s.escalate(ctx, x) // messaging.go
	case "$release-status":
		if x.req.Method != http.MethodGet && x.req.Method != http.MethodPost {
			return nil, notAllowed(x.req.Method)
		}
		return s.releaseStatus(ctx, x)
	}
	if op, ok := s.registered(x); ok {
		return s.extraOperation(ctx, x, op)
	}
	return nil, fhir.Errorf(fhir.KindNotFound, "operation %s is not supported", x.rt.op)
}

// clinician checks that the caller may run release operations: a
// practitioner or backend service with write access to the type.
func (s *Server) clinician(x *exchange) error {
	c := x.c
	if c == nil || c.p == nil {
		return nil
	}
	if c.audience != audienceNone {
		return fhir.Errorf(fhir.KindForbidden, "only practitioners and backend services may release or hold results")
	}
	if strings.HasPrefix(c.p.FHIRUser, "Patient/") || strings.HasPrefix(c.p.FHIRUser, "RelatedPerson/") || strings.HasPrefix(c.p.FHIRUser, "Person/") {
		return fhir.Errorf(fhir.KindForbidden, "only practitioners and backend services may release or hold results")
	}
	_, err := s.allow(c, "update", x.rt.typ)
	return err
}

// opNote reads the note/reason of $release / $hold: a Parameters body with a
// "note" or "reason" string, or the query parameter of the same name.
func opNote(req *fhir.Request, name string) (string, error) {
	if v := req.Query.Get(name); v != "" {
		return v, nil
	}
	if len(req.Body) == 0 {
		return "", nil
	}
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name        string `json:"name"`
			ValueString string `json:"valueString"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(req.Body, &p); err != nil || p.ResourceType != "Parameters" {
		return "", fhir.Invalid("", "the body must be a Parameters resource")
	}
	for _, prm := range p.Parameter {
		if prm.Name == name || prm.Name == "note" || prm.Name == "reason" {
			return prm.ValueString, nil
		}
	}
	return "", nil
}

func (s *Server) releaseOp(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if err := s.clinician(x); err != nil {
		return nil, err
	}
	release := x.rt.op == "$release"
	name := "reason"
	if release {
		name = "note"
	}
	note, err := opNote(x.req, name)
	if err != nil {
		return nil, err
	}
	if !release && note == "" {
		return nil, fhir.Invalid("Parameters.parameter.reason", "$hold needs a reason")
	}
	cur, ok, err := s.currentFor(ctx, x.c, smart.Update, x.rt.typ, x.rt.id)
	if err != nil {
		return nil, err
	}
	if !ok || cur.Deleted {
		return nil, fhir.NotFound(x.rt.typ, x.rt.id)
	}
	if !release {
		// Requests that began before the hold ends have their AuditEvents
		// re-checked by the writer (RecheckHeld).
		s.holding.Add(1)
		defer func() {
			s.holdEnd.Store(s.seq.Load())
			s.holding.Add(-1)
		}()
	}
	by := "unknown"
	if x.c != nil && x.c.p != nil {
		by = x.c.p.FHIRUser
		if by == "" {
			by = "client:" + x.c.p.ClientID
		}
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	var rel store.Release
	if release {
		rel = s.Policy().Release(cur.Release, by, note, now)
	} else {
		rel = s.Policy().Hold(cur.Release, by, note)
		rel.At = now
	}
	if release && note != "" && annotatable[cur.Type] {
		// Annotate and release: the note becomes part of the result, in a
		// new version that carries the released state explicitly.
		annotated, err := s.annotate(ctx, cur, by, note, now, rel)
		if err != nil {
			return nil, err
		}
		cur = annotated
	} else {
		if err := s.cfg.Store.SetDerived(ctx, cur.Type, cur.ID, cur.VersionID, nil, &rel); err != nil {
			return nil, err
		}
		cur.Release = rel
	}
	if err := s.releaseVersions(ctx, cur, rel, release); err != nil {
		return nil, err
	}
	s.releaseAudit(ctx, cur)
	if err := s.provenance(ctx, x, cur, by, note, now, release); err != nil {
		return nil, err
	}
	x.touched(cur)
	return s.statusResponse(cur, now)
}

// annotatable lists the R4 resource types with a note (Annotation) element.
var annotatable = map[string]bool{
	"AllergyIntolerance": true, "CarePlan": true, "CareTeam": true, "ClinicalImpression": true, "Communication": true,
	"CommunicationRequest": true, "Condition": true, "DeviceRequest": true, "FamilyMemberHistory": true, "Goal": true,
	"ImagingStudy": true, "Immunization": true, "List": true, "Media": true, "MedicationAdministration": true,
	"MedicationDispense": true, "MedicationRequest": true, "MedicationStatement": true, "NutritionOrder": true,
	"Observation": true, "Procedure": true, "RiskAssessment": true, "ServiceRequest": true, "Specimen": true, "Task": true,
}

// annotate writes a new version of cur with note appended to its notes.
func (s *Server) annotate(ctx context.Context, cur store.Record, by, note string, now time.Time, rel store.Release) (store.Record, error) {
	obj, err := fhir.ParseObject(cur.Raw)
	if err != nil {
		return store.Record{}, err
	}
	var notes []json.RawMessage
	if raw, ok := obj.Get("note"); ok {
		if err := json.Unmarshal(raw, &notes); err != nil {
			return store.Record{}, fmt.Errorf("server: annotate %s: %w", cur.Key(), err)
		}
	}
	ann := map[string]any{"time": fhir.Instant(now), "text": note}
	if strings.Contains(by, "/") && !strings.HasPrefix(by, "client:") {
		ann["authorReference"] = map[string]any{"reference": by}
	} else {
		ann["authorString"] = by
	}
	b, _ := json.Marshal(ann)
	notes = append(notes, b)
	nb, _ := json.Marshal(notes)
	if err := obj.Set("note", nb); err != nil {
		return store.Record{}, fmt.Errorf("server: annotate %s: %w", cur.Key(), err)
	}
	rec, err := s.version(cur.Type, cur.ID, cur.VersionID+1, obj, &cur)
	if err != nil {
		return store.Record{}, err
	}
	rec.Release = rel
	if err := s.cfg.Store.Transact(ctx, []store.Op{{Kind: store.OpPut, Record: rec, IfVersion: cur.VersionID}}); err != nil {
		return store.Record{}, err // a conflict is a 409 (fhir.AsError)
	}
	return rec, nil
}

// releaseVersions gives the earlier versions of cur the state of a
// $hold (every one: a held resource hides its whole history, vread
// included) or of a $release (those a $hold had held).
func (s *Server) releaseVersions(ctx context.Context, cur store.Record, rel store.Release, release bool) error {
	for v := cur.VersionID - 1; v >= 1; v-- {
		old, err := s.cfg.Store.VRead(ctx, cur.Type, cur.ID, v)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if old.Deleted || release && old.Release.State != policy.StateHeld {
			continue
		}
		r := rel
		if err := s.cfg.Store.SetDerived(ctx, cur.Type, cur.ID, v, nil, &r); err != nil {
			return err
		}
	}
	return nil
}

// RecheckHeld reports whether the AuditEvent of request seq must take its
// release state from the store when it is written (HeldUntil) rather than
// from what the request saw: a $hold was under way or ended after the
// request began, so what it saw may have been held since.
func (s *Server) RecheckHeld(seq int64) bool {
	return s.holding.Load() > 0 || seq <= s.holdEnd.Load()
}

// HeldUntil is the release state an AuditEvent naming keys ("Type/id" or
// "Type/id/_history/n") inherits: visible to patient-facing callers only
// when every resource it names is.
func (s *Server) HeldUntil(ctx context.Context, keys []string) store.Release {
	var out store.Release
	for _, k := range keys {
		parts := strings.Split(k, "/")
		if len(parts) < 2 || !fhir.IsResourceType(parts[0]) || !fhir.ValidID(parts[1]) {
			continue
		}
		r, err := s.cfg.Store.Read(ctx, parts[0], parts[1])
		if err != nil {
			continue
		}
		if r.Deleted {
			if prev, err := s.cfg.Store.VRead(ctx, r.Type, r.ID, r.VersionID-1); err == nil {
				r = prev
			}
		}
		if r.Release.Patient.After(out.Patient) {
			out.Patient, out.Rule, out.State = r.Release.Patient, r.Release.Rule, r.Release.State
		}
		if r.Release.Proxy.After(out.Proxy) {
			out.Proxy = r.Release.Proxy
		}
	}
	if !out.Patient.IsZero() || !out.Proxy.IsZero() {
		out.State = "follows-subject"
	}
	return out
}

// releaseAudit gives every AuditEvent that names rec the release state of
// everything it names (HeldUntil), so a patient's audit view reveals a
// held resource only once it is released. Events still queued are written
// first (audit.Logger.Flush), so none escapes; events of requests that
// began before the hold ends are re-checked by the writer (RecheckHeld).
func (s *Server) releaseAudit(ctx context.Context, rec store.Record) {
	if s.cfg.Audit != nil {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := s.cfg.Audit.Flush(fctx); err != nil {
			s.cfg.Logger.ErrorContext(ctx, "release: audit queue not flushed", "err", err)
		}
		cancel()
	}
	q := store.Query{Types: []string{"AuditEvent"},
		Filter: search.RefCond{Param: "entity", Targets: []string{rec.Key()}}, Count: 1000}
	for {
		page, err := s.cfg.Store.Search(ctx, q)
		if err != nil {
			s.cfg.Logger.ErrorContext(ctx, "release: audit events not updated", "err", err)
			return
		}
		for _, ae := range page.Records {
			var keys []string
			for _, r := range ae.Index.Ref {
				if r.Param == "entity" && r.Ref != "" {
					keys = append(keys, r.Ref)
				}
			}
			rel := s.HeldUntil(ctx, keys)
			if err := s.cfg.Store.SetDerived(ctx, ae.Type, ae.ID, ae.VersionID, nil, &rel); err != nil {
				s.cfg.Logger.ErrorContext(ctx, "release: audit event not updated", "id", ae.ID, "err", err)
			}
		}
		if page.Next == "" {
			return
		}
		q.Cursor = page.Next
	}
}

// provenance records who released or held a resource, and why (provenance.html).
func (s *Server) provenance(ctx context.Context, x *exchange, rec store.Record, by, note string, now time.Time, release bool) error {
	activity := "release"
	if !release {
		activity = "hold"
	}
	prov := map[string]any{
		"resourceType": "Provenance",
		"target":       []any{map[string]any{"reference": rec.Type + "/" + rec.ID + "/_history/" + itoa(rec.VersionID)}},
		"recorded":     fhir.Instant(now),
		"activity": map[string]any{"coding": []any{map[string]any{
			"system": "http://fhirgate.dev/CodeSystem/release-activity", "code": activity}}},
		"agent": []any{map[string]any{"who": whoRef(by)}},
	}
	if note != "" {
		prov["reason"] = []any{map[string]any{"text": note}}
	}
	body, _ := json.Marshal(prov)
	obj, err := fhir.ParseObject(body)
	if err != nil {
		return err
	}
	prec, err := s.version("Provenance", s.cfg.NewID(), 1, obj, nil)
	if err != nil {
		return err
	}
	return s.cfg.Store.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: prec}})
}

func whoRef(by string) map[string]any {
	if strings.Contains(by, "/") && !strings.HasPrefix(by, "client:") {
		return map[string]any{"reference": by}
	}
	return map[string]any{"display": by}
}

func (s *Server) releaseStatus(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if err := s.clinician(x); err != nil {
		return nil, err
	}
	cur, ok, err := s.currentFor(ctx, x.c, smart.Update, x.rt.typ, x.rt.id)
	if err != nil {
		return nil, err
	}
	if !ok || cur.Deleted {
		return nil, fhir.NotFound(x.rt.typ, x.rt.id)
	}
	x.touched(cur)
	return s.statusResponse(cur, s.cfg.Now())
}

// statusResponse renders the release state as a Parameters resource.
func (s *Server) statusResponse(rec store.Record, now time.Time) (*fhir.Response, error) {
	info := policy.Explain(rec.Release, now)
	params := []any{map[string]any{"name": "resource", "valueReference": map[string]any{"reference": rec.Type + "/" + rec.ID + "/_history/" + itoa(rec.VersionID)}}}
	for _, k := range sortedKeys(info) {
		v := info[k]
		var p map[string]any
		switch t := v.(type) {
		case bool:
			p = map[string]any{"name": k, "valueBoolean": t}
		case time.Time:
			if t.IsZero() {
				continue
			}
			p = map[string]any{"name": k, "valueInstant": fhir.Instant(t)}
		case string:
			if t == "" {
				continue
			}
			p = map[string]any{"name": k, "valueString": t}
		default:
			b, _ := json.Marshal(t)
			p = map[string]any{"name": k, "valueString": string(b)}
		}
		params = append(params, p)
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: b}, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// bundle runs a batch or transaction Bundle (http.html#transaction).
func (s *Server) bundle(ctx context.Context, x *exchange) (*fhir.Response, error) {
	x.interaction = "batch"
	if strings.Contains(string(x.req.Body), `"transaction"`) {
		x.interaction = "transaction"
	}
	ea := &entryAudit{}
	resp := bundle.Process(context.WithValue(ctx, entryAuditKey{}, ea), bundleHandler{s}, x.req.Body, bundle.Options{MaxEntries: s.cfg.MaxEntries, Base: s.cfg.Base, Now: s.cfg.Now, Prefer: x.req.Header.Get("Prefer")})
	s.flushEntryAudit(ctx, ea, x.req, x.interaction != "transaction" || (resp.Err == nil && resp.Status < 400))
	if resp.Err != nil {
		return nil, resp.Err
	}
	return resp, nil
}

// bundleHandler adapts Server to bundle.Handler.
type bundleHandler struct{ s *Server }

func (h bundleHandler) Handle(ctx context.Context, req *fhir.Request) *fhir.Response {
	return h.s.Handle(ctx, req)
}

func (h bundleHandler) Commit(ctx context.Context, tx *bundle.Tx) error {
	if len(tx.Ops) > 0 {
		if err := h.s.cfg.Store.Transact(ctx, tx.Ops); err != nil {
			return err // a conflict is a 409 (fhir.AsError)
		}
	}
	for _, f := range tx.After {
		f(ctx)
	}
	return nil
}

func (h bundleHandler) Match(ctx context.Context, typ string, q url.Values) ([]string, error) {
	c, _ := ctx.Value(callerKey{}).(*caller)
	recs, err := h.s.match(ctx, c, typ, q, "condition")
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(recs))
	for i, r := range recs {
		keys[i] = r.Key()
	}
	return keys, nil
}

func (h bundleHandler) Lock(ctx context.Context, key string) (func(), error) {
	return h.s.cfg.Store.Lock(ctx, key, lockTTL)
}

func (h bundleHandler) NewID() string { return h.s.cfg.NewID() }
