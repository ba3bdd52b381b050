// Package workflow is fhirgate's eConsult / eReferral and record-correction
// service (docs/workflow.md), built on FHIR Workflow's Task-based pattern
// (R4 workflow-management.html, "Option E: ... Task", and Canada's CA:eReC
// guide: a Task basedOn a ServiceRequest, status + businessStatus, notes as
// Communication).
//
//   - A write hook on Task (Hook, registered with
//     server.RegisterWriteHook) enforces the R4 Task state machine
//     (task.html#statemachine, Transitions) on every write path — create,
//     update, conditional update, patch, batch and transaction entries —
//     with a 409 naming both states on an invalid transition; only the
//     owner (or a member of the owner's pool) makes the owner's transitions
//     and only the requester the requester's; for, basedOn, requester, code
//     and focus never change after creation (422).
//   - Patients and proxies may create correction requests (a Task coded
//     TaskCodeSystem|correction-request, focus = a resource of their record
//     they can see, input = the proposed correction) and nothing else; the
//     clinician amends the resource and completes the Task (output: the
//     amended version), or refuses it (rejected, statusReason, output: a
//     DocumentReference attached to the record, PHIPA s. 55(9)-(11)); the
//     patient withdraws a request with Task/[id]/$withdraw.
//   - SearchParams adds the worklist parameters the R4 core lacks (Task
//     "due": restriction.period.end; ServiceRequest "supporting-info").
package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/bundle"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// Code systems of the service (fhirgate's own; docs/workflow.md lists their
// concepts).
const (
	// TaskCodeSystem codes Task.code: EConsult, EReferral, CorrectionRequest.
	TaskCodeSystem    = "https://fhirgate.dev/fhir/CodeSystem/task-code"
	EConsult          = "econsult"
	EReferral         = "ereferral"
	CorrectionRequest = "correction-request"

	// ParameterSystem codes Task.input.type / Task.output.type and the
	// DocumentReference.type of the documents a correction produces.
	ParameterSystem = "https://fhirgate.dev/fhir/CodeSystem/task-parameter"
	// ProposedCorrection: the patient's proposed correction (valueString).
	ProposedCorrection = "proposed-correction"
	// StatementOfDisagreement: the patient's statement, if the request is
	// refused (valueString on the request; a DocumentReference after).
	StatementOfDisagreement = "statement-of-disagreement"
	// AmendedResource: the amended version (output valueReference).
	AmendedResource = "amended-resource"
	// CorrectionRefusal: the refusal attached to the record (output
	// valueReference to a DocumentReference of this type).
	CorrectionRefusal = "correction-refusal"

	// BusinessStatusSystem codes Task.businessStatus (CA:eReC's idea of a
	// business status beside the state machine's status; not enforced).
	BusinessStatusSystem = "https://fhirgate.dev/fhir/CodeSystem/task-business-status"
)

// SearchParams are the service's SearchParameters (search.LoadCustom):
// Task "due" (Task.restriction.period.end, the date a Task is due by:
// overdue worklists) and ServiceRequest "supporting-info" (attachments and
// QuestionnaireResponses of a referral: _include).
const SearchParams = `{"resourceType":"Bundle","type":"collection","entry":[` +
	`{"resource":{"resourceType":"SearchParameter","url":"https://fhirgate.dev/fhir/SearchParameter/Task-due",` +
	`"name":"due","code":"due","status":"active","base":["Task"],"type":"date",` +
	`"expression":"Task.restriction.period.end",` +
	`"description":"The date the Task should be done by (Task.restriction.period.end): overdue worklists."}},` +
	`{"resource":{"resourceType":"SearchParameter","url":"https://fhirgate.dev/fhir/SearchParameter/ServiceRequest-supporting-info",` +
	`"name":"supporting-info","code":"supporting-info","status":"active","base":["ServiceRequest"],"type":"reference",` +
	`"expression":"ServiceRequest.supportingInfo",` +
	`"description":"Additional information of the request (documents, QuestionnaireResponses)."}}]}`

// WithParams adds SearchParams to reg.
func WithParams(reg *search.Registry) (*search.Registry, error) {
	return search.LoadCustom(reg, []byte(SearchParams))
}

// Config wires a Service.
type Config struct {
	Store store.Store
	// Base is the public FHIR base URL: absolute references under it are
	// local.
	Base string
	// Visible reports whether principal p could read rec now
	// (server.Server.Visible): a correction's focus must be.
	Visible func(ctx context.Context, p *smart.Principal, rec store.Record) (bool, error)
	// HandleAsService commits a patient's withdrawal with the server's
	// authority, audited as the patient (server.Server.HandleAsService);
	// Handle runs a request as the caller in ctx (server.Server.Handle).
	HandleAsService func(ctx context.Context, on *smart.Principal, req *fhir.Request) *fhir.Response
	Handle          func(ctx context.Context, req *fhir.Request) *fhir.Response
	// OnlyWorkflowTasks: the state machine and the owner/requester rules
	// apply only to Tasks coded TaskCodeSystem (and $escalate's eConsults);
	// false (the default): to every Task. Patient-facing rules always apply.
	OnlyWorkflowTasks bool
	// NoPatientCorrections: patient-facing apps may not create any Task.
	NoPatientCorrections bool
	Now                  func() time.Time
}

// Service is the running workflow service.
type Service struct{ cfg Config }

// New builds a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Visible == nil || cfg.HandleAsService == nil || cfg.Handle == nil {
		return nil, errors.New("workflow: Store, Visible, HandleAsService and Handle are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}, nil
}

// Kind is what a Task is for ("" for a Task of no kind of this service).
func Kind(task map[string]any) string {
	cc, _ := task["code"].(map[string]any)
	for _, c := range maps(cc["coding"]) {
		sys, _ := c["system"].(string)
		code, _ := c["code"].(string)
		switch {
		case sys == TaskCodeSystem && (code == EConsult || code == EReferral || code == CorrectionRequest):
			return code
		case sys == server.EscalationSystem && code == EConsult:
			return EConsult
		}
	}
	return ""
}

// otherKind reports whether task's code also carries a code of this
// service's systems other than correction-request (e.g. ereferral beside
// it): a patient's correction request must not also be found by the
// eConsult / eReferral worklists (Task?code=...|ereferral).
func otherKind(task map[string]any) bool {
	cc, _ := task["code"].(map[string]any)
	for _, c := range maps(cc["coding"]) {
		sys, _ := c["system"].(string)
		code, _ := c["code"].(string)
		if (sys == TaskCodeSystem || sys == server.EscalationSystem) && code != CorrectionRequest {
			return true
		}
	}
	return false
}

// Hook is the Task write hook (server.RegisterWriteHook("Task", s.Hook)).
func (s *Service) Hook(ctx context.Context, w server.WriteCall) error {
	tree := w.Object.Tree()
	var prev map[string]any
	if w.Previous != nil {
		var err error
		if prev, err = fhir.Decode(w.Previous.Raw); err != nil {
			return err
		}
	}
	if w.PatientFacing {
		return s.patientWrite(ctx, w, tree, prev)
	}
	kind := Kind(tree)
	if prev != nil {
		kind = Kind(prev)
	}
	if s.cfg.OnlyWorkflowTasks && kind == "" && Kind(tree) == "" {
		return nil
	}
	act, err := s.actorOf(ctx, w.Principal)
	if err != nil {
		return err
	}
	if prev == nil {
		return s.create(ctx, w, act, kind, tree)
	}
	return s.update(ctx, w, act, kind, prev, tree)
}

// create checks a new Task written by staff or a backend service.
func (s *Service) create(ctx context.Context, w server.WriteCall, act *actor, kind string, tree map[string]any) error {
	status, _ := tree["status"].(string)
	if !slices.Contains(Initial, status) {
		return fhir.Errorf(fhir.KindUnprocessable, "a Task starts in draft or requested, not %q (task.html#statemachine)", status).At("Task.status")
	}
	forRef := ref(tree["for"])
	switch kind {
	case EConsult, EReferral:
		if !strings.HasPrefix(s.norm(forRef), "Patient/") {
			return fhir.Errorf(fhir.KindUnprocessable, "an %s Task is for a Patient", kind).At("Task.for")
		}
		var sr *store.Record
		for _, b := range refs(tree["basedOn"]) {
			if typ, id, ok := s.local(b); ok && typ == "ServiceRequest" {
				rec, found, err := s.lookup(ctx, typ, id)
				if err != nil {
					return err
				}
				if !found {
					return fhir.Errorf(fhir.KindUnprocessable, "Task.basedOn %s is not known", b).At("Task.basedOn")
				}
				sr = &rec
				break
			}
		}
		if sr == nil {
			return fhir.Errorf(fhir.KindUnprocessable, "an %s Task is basedOn the ServiceRequest it fulfils", kind).At("Task.basedOn")
		}
		srt, err := fhir.Decode(sr.Raw)
		if err != nil {
			return err
		}
		if s.norm(ref(srt["subject"])) != s.norm(forRef) {
			return fhir.Errorf(fhir.KindUnprocessable, "Task.for must be the ServiceRequest's subject (%s)", ref(srt["subject"])).At("Task.for")
		}
	case CorrectionRequest:
		if !strings.HasPrefix(s.norm(forRef), "Patient/") {
			return fhir.Errorf(fhir.KindUnprocessable, "a correction request is for a Patient").At("Task.for")
		}
		if ref(tree["focus"]) == "" {
			return fhir.Errorf(fhir.KindUnprocessable, "a correction request names the resource to correct in focus").At("Task.focus")
		}
	}
	if ref(tree["requester"]) == "" && kind != "" {
		if !act.staff() {
			return fhir.Errorf(fhir.KindUnprocessable, "an %s Task names its requester", kind).At("Task.requester")
		}
		return setRef(w.Object, "requester", act.user)
	}
	return nil
}

// update checks a new version of an existing Task written by staff or a
// backend service: immutable elements, the transition and who makes it.
func (s *Service) update(ctx context.Context, w server.WriteCall, act *actor, kind string, prev, tree map[string]any) error {
	for _, el := range []string{"for", "basedOn", "requester", "code", "focus"} {
		if !s.same(el, prev[el], tree[el]) {
			return fhir.Errorf(fhir.KindUnprocessable, "Task.%s cannot change after the Task is created", el).At("Task." + el)
		}
	}
	from, _ := prev["status"].(string)
	to, _ := tree["status"].(string)
	if from != to {
		need := Allowed(from, to)
		if need == 0 {
			return fhir.Errorf(fhir.KindConflict, "invalid Task transition from %q to %q (task.html#statemachine)", from, to).
				At("Task.status").WithCode("business-rule")
		}
		ok, err := s.may(ctx, act, need, prev)
		if err != nil {
			return err
		}
		if !ok {
			return fhir.Errorf(fhir.KindForbidden, "only the Task's %s may move it from %q to %q", need, from, to).At("Task.status")
		}
	} else {
		ok, err := s.may(ctx, act, Requester|Owner, prev)
		if err != nil {
			return err
		}
		if !ok {
			return fhir.Errorf(fhir.KindForbidden, "only the Task's requester or owner may change it")
		}
	}
	prevOwner, newOwner := s.norm(ref(prev["owner"])), s.norm(ref(tree["owner"]))
	if prevOwner != newOwner {
		ok := act.org || prevOwner == "" && act.staff()
		if !ok {
			var err error
			if ok, err = s.is(ctx, act, prevOwner); err != nil {
				return err
			}
		}
		if !ok && slices.Contains([]string{"draft", "requested", "received"}, from) {
			var err error
			if ok, err = s.is(ctx, act, ref(prev["requester"])); err != nil {
				return err
			}
		}
		if !ok {
			return fhir.Errorf(fhir.KindForbidden, "only the Task's owner (or, before it is accepted, its requester) may reassign it").At("Task.owner")
		}
	}
	if from != to && Allowed(from, to)&Owner != 0 && prevOwner == "" && newOwner == "" && act.staff() {
		// An unassigned Task: the practitioner who acts on it claims it.
		if err := setRef(w.Object, "owner", act.user); err != nil {
			return err
		}
	}
	if kind == CorrectionRequest && from != to {
		return s.correctionOutcome(ctx, to, tree)
	}
	return nil
}

// correctionOutcome checks what closing a correction request carries: a
// completed one points at the amended resource; a refused one (rejected,
// failed) has a statusReason and points at the refusal document attached
// to the record (a DocumentReference about the patient whose
// context.related names the focus).
func (s *Service) correctionOutcome(ctx context.Context, to string, tree map[string]any) error {
	focus := s.norm(ref(tree["focus"]))
	switch to {
	case "completed":
		for _, o := range parameters(tree["output"], AmendedResource) {
			r := ref(o["valueReference"])
			if typ, id, ok := s.local(r); ok && typ+"/"+id == focus {
				if _, found, err := s.lookup(ctx, typ, id); err != nil || found {
					return err
				}
			}
		}
		return fhir.Errorf(fhir.KindUnprocessable, "a completed correction request has an output of type %s|%s referencing the amended %s", ParameterSystem, AmendedResource, focus).At("Task.output")
	case "rejected", "failed":
		if tree["statusReason"] == nil {
			return fhir.Errorf(fhir.KindUnprocessable, "a refused correction request says why (statusReason)").At("Task.statusReason")
		}
		patient := s.norm(ref(tree["for"]))
		for _, o := range parameters(tree["output"], CorrectionRefusal) {
			typ, id, ok := s.local(ref(o["valueReference"]))
			if !ok || typ != "DocumentReference" {
				continue
			}
			rec, found, err := s.lookup(ctx, typ, id)
			if err != nil {
				return err
			}
			if !found {
				continue
			}
			doc, err := fhir.Decode(rec.Raw)
			if err != nil {
				return err
			}
			ctxm, _ := doc["context"].(map[string]any)
			related := false
			for _, r := range refs(ctxm["related"]) {
				related = related || s.norm(r) == focus
			}
			if s.norm(ref(doc["subject"])) == patient && related {
				return nil
			}
		}
		return fhir.Errorf(fhir.KindUnprocessable, "a refused correction request has an output of type %s|%s referencing a DocumentReference "+
			"about %s whose context.related names %s: the refusal (and the patient's statement of disagreement) attached to the record",
			ParameterSystem, CorrectionRefusal, patient, focus).At("Task.output")
	}
	return nil
}

// patientWrite checks a Task a patient-facing app writes: only correction
// requests, created (never changed: smart.PatientWrites), for the patient
// the app acts for, about a resource of that patient's record the app can
// read (else 404, as for a resource that does not exist), with the
// proposed correction, requested by the patient or the proxy.
func (s *Service) patientWrite(ctx context.Context, w server.WriteCall, tree, prev map[string]any) error {
	if prev != nil {
		return fhir.Errorf(fhir.KindForbidden, "patient-facing apps may not change Tasks; withdraw a correction request with Task/[id]/$withdraw")
	}
	if s.cfg.NoPatientCorrections {
		return fhir.Errorf(fhir.KindForbidden, "this organisation does not take correction requests through the portal")
	}
	if Kind(tree) != CorrectionRequest || otherKind(tree) {
		return fhir.Errorf(fhir.KindForbidden, "patient-facing apps may create only correction requests (Task.code %s|%s)", TaskCodeSystem, CorrectionRequest).At("Task.code")
	}
	patient := s.norm(ref(tree["for"]))
	if !strings.HasPrefix(patient, "Patient/") || !slices.Contains(w.Patients, patient) {
		return fhir.Errorf(fhir.KindForbidden, "a correction request is for the patient this app acts for").At("Task.for")
	}
	if st, _ := tree["status"].(string); st != "requested" {
		return fhir.Errorf(fhir.KindUnprocessable, "a correction request is created requested, not %q", st).At("Task.status")
	}
	for _, el := range []string{"output", "partOf", "basedOn"} {
		if tree[el] != nil {
			return fhir.Errorf(fhir.KindUnprocessable, "a patient's correction request has no %s", el).At("Task." + el)
		}
	}
	requester := patient
	if p := w.Principal; p != nil && p.FHIRUserType() == "RelatedPerson" {
		requester = p.FHIRUser
	}
	if given := s.norm(ref(tree["requester"])); given != "" && given != requester {
		return fhir.Errorf(fhir.KindForbidden, "the requester of a correction request is %s: the server sets it", requester).At("Task.requester")
	}
	if tree["owner"] != nil {
		// The organisation routes correction requests (its health records
		// or privacy office works the correction-request worklist): a
		// patient may not drop one into a clinician's or a pool's queue.
		return fhir.Errorf(fhir.KindUnprocessable, "the owner of a correction request is the organisation's to set: leave Task.owner out").At("Task.owner")
	}
	proposed := false
	for _, in := range parameters(tree["input"], ProposedCorrection) {
		if v, _ := in["valueString"].(string); strings.TrimSpace(v) != "" {
			proposed = true
		}
	}
	if !proposed {
		return fhir.Errorf(fhir.KindUnprocessable, "a correction request carries the proposed correction: an input of type %s|%s with a valueString", ParameterSystem, ProposedCorrection).At("Task.input")
	}
	focus := ref(tree["focus"])
	typ, id, ok := s.local(focus)
	if !ok {
		return fhir.Errorf(fhir.KindNotFound, "the resource to correct (Task.focus %q) is not known", focus).At("Task.focus")
	}
	rec, found, err := s.lookup(ctx, typ, id)
	if err != nil {
		return err
	}
	if found && w.Principal != nil {
		if found, err = s.cfg.Visible(ctx, w.Principal, rec); err != nil {
			return err
		}
	}
	if found && typ != "Patient" {
		found = slices.Contains(rec.Index.Compartments, patient)
	} else if found {
		found = "Patient/"+id == patient
	}
	if !found {
		return fhir.NotFound(typ, id).At("Task.focus")
	}
	if tree["requester"] == nil {
		return setRef(w.Object, "requester", requester)
	}
	return nil
}

// lookup reads typ/id: the version an earlier entry of the transaction
// under way writes, else the store's live version.
func (s *Service) lookup(ctx context.Context, typ, id string) (store.Record, bool, error) {
	if tx := bundle.TxFrom(ctx); tx != nil {
		for i := len(tx.Ops) - 1; i >= 0; i-- {
			if r := tx.Ops[i].Record; r.Type == typ && r.ID == id {
				return r, !r.Deleted && tx.Ops[i].Kind != store.OpDelete, nil
			}
		}
	}
	rec, err := s.cfg.Store.Read(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	return rec, !rec.Deleted, nil
}

// local parses a reference to a resource of this server ("Type/id",
// "Type/id/_history/n", or an absolute URL under Base).
func (s *Service) local(r string) (typ, id string, ok bool) {
	r = s.norm(r)
	typ, id, ok = strings.Cut(r, "/")
	if !ok || id == "" || strings.Contains(id, "/") || !fhir.IsResourceType(typ) {
		return "", "", false
	}
	return typ, id, true
}

// norm is a reference relative to the server and without its version.
func (s *Service) norm(r string) string {
	if b := strings.TrimSuffix(s.cfg.Base, "/"); b != "" {
		r = strings.TrimPrefix(r, b+"/")
	}
	if i := strings.Index(r, "/_history/"); i >= 0 {
		r = r[:i]
	}
	return r
}

// same compares an immutable element's two versions: references by their
// target, codes by system|code, so a display added or changed is no change.
func (s *Service) same(el string, a, b any) bool {
	switch el {
	case "code":
		return slices.Equal(codings(a), codings(b))
	case "basedOn":
		x, y := refs(a), refs(b)
		for i := range x {
			x[i] = s.norm(x[i])
		}
		for i := range y {
			y[i] = s.norm(y[i])
		}
		slices.Sort(x)
		slices.Sort(y)
		return slices.Equal(x, y)
	}
	return s.norm(ref(a)) == s.norm(ref(b))
}

// parameters are the Task.input or Task.output entries of type
// ParameterSystem|code.
func parameters(v any, code string) []map[string]any {
	var out []map[string]any
	for _, p := range maps(v) {
		t, _ := p["type"].(map[string]any)
		if slices.Contains(codings(t), ParameterSystem+"|"+code) {
			out = append(out, p)
		}
	}
	return out
}

func maps(v any) []map[string]any {
	switch x := v.(type) {
	case []any:
		out := make([]map[string]any, 0, len(x))
		for _, e := range x {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
		return out
	case map[string]any:
		return []map[string]any{x}
	}
	return nil
}

// ref is a Reference's reference ("" when none).
func ref(v any) string {
	m, _ := v.(map[string]any)
	r, _ := m["reference"].(string)
	return r
}

func refs(v any) []string {
	var out []string
	for _, m := range maps(v) {
		if r := ref(m); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// codings are a CodeableConcept's codings as sorted system|code strings.
func codings(v any) []string {
	cc, _ := v.(map[string]any)
	var out []string
	for _, c := range maps(cc["coding"]) {
		sys, _ := c["system"].(string)
		code, _ := c["code"].(string)
		out = append(out, sys+"|"+code)
	}
	slices.Sort(out)
	return out
}

// setRef sets Task.<el> to a Reference to target.
func setRef(o *fhir.Object, el, target string) error {
	b, _ := json.Marshal(map[string]string{"reference": target})
	if err := o.Set(el, b, "authoredOn", "requester", "intent", "status"); err != nil {
		return fmt.Errorf("workflow: set %s: %w", el, err)
	}
	return nil
}
