package workflow

// Package tests of the Task workflow through the real pipeline
// (fhir/server on the in-memory SQLite store, principals in the context
// as the REST adapter puts them): the R4 Task state machine
// (task.html#statemachine) with who may make each transition
// (workflow-management.html: requester and owner), immutable elements,
// eReferral creation (CA:eReC: Task basedOn a ServiceRequest), referral
// pools, Bundle and conditional writes, and patients' correction requests.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/fhir/server/servertest"
	"github.com/fhirgate/fhirgate/smart"
)

type env struct {
	t       *testing.T
	s       *server.Server
	hookOff bool
}

// now is the pipeline's clock.
var now = servertest.T0

func newEnv(t *testing.T, policyYAML string) *env {
	t.Helper()
	s, st := servertest.New(t, servertest.Options{Params: []string{SearchParams}, Policy: policyYAML})
	svc, err := New(Config{Store: st, Base: servertest.Base, Visible: s.Visible, HandleAsService: s.HandleAsService, Handle: s.Handle})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, s: s}
	s.RegisterWriteHook("Task", func(ctx context.Context, w server.WriteCall) error {
		if e.hookOff {
			return nil
		}
		return svc.Hook(ctx, w)
	})
	for _, op := range svc.Operations() {
		s.RegisterOperation(op)
	}
	e.world()
	return e
}

// principal is a caller: scopes, the patient in context, fhirUser.
var principal = servertest.Principal

func (e *env) do(p *smart.Principal, method, path, body string, hdr ...string) *fhir.Response {
	e.t.Helper()
	return servertest.Do(smart.WithPrincipal(context.Background(), p), e.s, method, path, body, hdr...)
}

// must asserts the status of r.
func (e *env) must(r *fhir.Response, status int, what string) map[string]any {
	e.t.Helper()
	if r.Status != status {
		e.t.Fatalf("%s: %d, want %d: %s", what, r.Status, status, r.Body)
	}
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

var (
	sysP   *smart.Principal
	pcpP   *smart.Principal
	specP  *smart.Principal
	poolP  *smart.Principal
	orgDoc *smart.Principal
	other  *smart.Principal
)

// seed PUTs typ/id as a backend service with the Task hook off (to put a
// Task in any state).
func (e *env) seed(typ, id, body string) {
	e.t.Helper()
	e.hookOff = true
	defer func() { e.hookOff = false }()
	if !strings.Contains(body, `"id":"`+id+`"`) {
		body = strings.Replace(body, `{"resourceType":"`+typ+`"`, `{"resourceType":"`+typ+`","id":"`+id+`"`, 1)
	}
	r := e.do(sysP, "PUT", typ+"/"+id, body)
	if r.Status != 200 && r.Status != 201 {
		e.t.Fatalf("seed %s/%s: %d %s", typ, id, r.Status, r.Body)
	}
}

func (e *env) world() {
	t := e.t
	sysP = principal(t, "system/*.cruds", "", "")
	pcpP = principal(t, "user/*.cruds", "", "Practitioner/pcp")
	specP = principal(t, "user/*.cruds", "", "Practitioner/spec")
	poolP = principal(t, "user/*.cruds", "", "Practitioner/pool-doc")
	orgDoc = principal(t, "user/*.cruds", "", "Practitioner/org-doc")
	other = principal(t, "user/*.cruds", "", "Practitioner/other")
	e.seed("Patient", "p1", `{"resourceType":"Patient","name":[{"family":"One"}]}`)
	e.seed("Patient", "p2", `{"resourceType":"Patient","name":[{"family":"Two"}]}`)
	for _, p := range []string{"pcp", "spec", "pool-doc", "org-doc", "other"} {
		e.seed("Practitioner", p, `{"resourceType":"Practitioner","name":[{"family":"`+p+`"}]}`)
	}
	e.seed("Organization", "clinic", `{"resourceType":"Organization","name":"Cardiology clinic"}`)
	e.seed("PractitionerRole", "org-doc-role", `{"resourceType":"PractitionerRole","active":true,"practitioner":{"reference":"Practitioner/org-doc"},"organization":{"reference":"Organization/clinic"}}`)
	e.seed("CareTeam", "pool", `{"resourceType":"CareTeam","status":"active","name":"Cardiology intake","participant":[{"member":{"reference":"Practitioner/pool-doc"}}]}`)
	e.seed("ServiceRequest", "sr1", `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/p1"},"requester":{"reference":"Practitioner/pcp"},"code":{"text":"Cardiology referral"}}`)
	e.seed("ServiceRequest", "sr2", `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/p2"},"code":{"text":"Referral"}}`)
	e.seed("Observation", "obs1", obsJSON("p1", ""))
	e.seed("Observation", "obs2", obsJSON("p2", ""))
}

func obsJSON(patient, extra string) string {
	return `{"resourceType":"Observation",` + extra + `"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]},` +
		`"subject":{"reference":"Patient/` + patient + `"},"valueQuantity":{"value":1.5,"unit":"mg/dL"}}`
}

// referral is an eReferral Task for p1 from the PCP to owner ("" none).
func referral(status, owner string) string {
	o := ""
	if owner != "" {
		o = `"owner":{"reference":"` + owner + `"},`
	}
	return `{"resourceType":"Task","status":"` + status + `","intent":"order",` +
		`"code":{"coding":[{"system":"` + TaskCodeSystem + `","code":"` + EReferral + `"}]},` +
		`"basedOn":[{"reference":"ServiceRequest/sr1"}],"focus":{"reference":"ServiceRequest/sr1"},"for":{"reference":"Patient/p1"},` +
		`"authoredOn":"2026-06-01T10:00:00Z","requester":{"reference":"Practitioner/pcp"},` + o +
		`"restriction":{"period":{"end":"2026-06-15"}}}`
}

func setStatus(body, status string) string {
	var m map[string]any
	_ = json.Unmarshal([]byte(body), &m)
	m["status"] = status
	b, _ := json.Marshal(m)
	return string(b)
}

// Every pair of task-status codes, made by the requester, the owner, an
// unrelated practitioner and a backend service: an allowed transition
// succeeds for its party and the organisation and is a 403 for the
// others; anything else is a 409 naming both states, for everybody.
func TestTransitionsThroughThePipeline(t *testing.T) {
	e := newEnv(t, "")
	actors := []struct {
		name  string
		p     *smart.Principal
		party Party
		org   bool
	}{{"requester", pcpP, Requester, false}, {"owner", specP, Owner, false}, {"outsider", other, 0, false}, {"backend", sysP, 0, true}}
	n := 0
	for _, from := range statuses {
		for _, to := range statuses {
			if from == to {
				continue
			}
			need := Allowed(from, to)
			for _, a := range actors {
				n++
				id := fmt.Sprintf("t%d", n)
				if n == 1 {
					defer func() { t.Logf("%d writes checked", n) }()
				}
				body := referral(from, "Practitioner/spec")
				e.seed("Task", id, body)
				want := http.StatusOK
				switch {
				case need == 0:
					want = http.StatusConflict
				case !a.org && need&a.party == 0:
					want = http.StatusForbidden
				}
				r := e.do(a.p, "PUT", "Task/"+id, setStatus(strings.Replace(body, `{"resourceType":"Task"`, `{"resourceType":"Task","id":"`+id+`"`, 1), to))
				if r.Status != want {
					t.Errorf("%s → %s by the %s: %d, want %d: %s", from, to, a.name, r.Status, want, r.Body)
					continue
				}
				if want == http.StatusConflict && !strings.Contains(string(r.Body), fmt.Sprintf(`from \"%s\" to \"%s\"`, from, to)) {
					t.Errorf("%s → %s: the OperationOutcome does not name both states: %s", from, to, r.Body)
				}
				if want != http.StatusOK {
					if got := e.must(e.do(sysP, "GET", "Task/"+id, ""), 200, "read")["status"]; got != from {
						t.Errorf("%s → %s refused, but the Task is now %v", from, to, got)
					}
				}
			}
		}
	}
}

// A Task is created in draft or requested; an eReferral is basedOn a
// known ServiceRequest about the same patient; the server names the
// practitioner who creates it as requester when none is given.
func TestCreateRules(t *testing.T) {
	e := newEnv(t, "")
	for _, st := range []string{"received", "accepted", "in-progress", "completed"} {
		e.must(e.do(sysP, "POST", "Task", referral(st, "")), 422, "create in "+st)
	}
	e.must(e.do(pcpP, "POST", "Task", strings.Replace(referral("requested", ""), "ServiceRequest/sr1\"}]", "ServiceRequest/nope\"}]", 1)), 422, "unknown basedOn")
	e.must(e.do(pcpP, "POST", "Task", strings.Replace(referral("requested", ""), `"basedOn":[{"reference":"ServiceRequest/sr1"}],`, "", 1)), 422, "no basedOn")
	e.must(e.do(pcpP, "POST", "Task", strings.Replace(referral("requested", ""), "ServiceRequest/sr1\"}]", "ServiceRequest/sr2\"}]", 1)), 422, "basedOn another patient's request")
	noReq := strings.Replace(referral("requested", "CareTeam/pool"), `"requester":{"reference":"Practitioner/pcp"},`, "", 1)
	m := e.must(e.do(pcpP, "POST", "Task", noReq), 201, "create without requester")
	if ref(m["requester"]) != "Practitioner/pcp" {
		t.Errorf("requester = %v, want the creating practitioner", m["requester"])
	}
	e.must(e.do(sysP, "POST", "Task", noReq), 422, "a backend's eReferral without requester")
	e.must(e.do(pcpP, "POST", "Task", referral("draft", "")), 201, "draft")
	// A Task of no workflow kind follows the state machine too.
	e.must(e.do(sysP, "POST", "Task", `{"resourceType":"Task","status":"completed","intent":"order","for":{"reference":"Patient/p1"}}`), 422, "generic Task created completed")
}

// for, basedOn, requester, code and focus never change (422); a display
// added to a reference is no change.
func TestImmutableElements(t *testing.T) {
	e := newEnv(t, "")
	body := referral("requested", "Practitioner/spec")
	e.seed("Task", "imm", body)
	withID := strings.Replace(body, `{"resourceType":"Task"`, `{"resourceType":"Task","id":"imm"`, 1)
	for _, c := range []struct{ el, from, to string }{
		{"for", `"for":{"reference":"Patient/p1"}`, `"for":{"reference":"Patient/p2"}`},
		{"basedOn", `"basedOn":[{"reference":"ServiceRequest/sr1"}]`, `"basedOn":[{"reference":"ServiceRequest/sr2"}]`},
		{"requester", `"requester":{"reference":"Practitioner/pcp"}`, `"requester":{"reference":"Practitioner/other"}`},
		{"code", `"code":"` + EReferral + `"`, `"code":"` + EConsult + `"`},
		{"focus", `"focus":{"reference":"ServiceRequest/sr1"}`, `"focus":{"reference":"ServiceRequest/sr2"}`},
	} {
		for _, p := range []*smart.Principal{sysP, specP} {
			r := e.do(p, "PUT", "Task/imm", strings.Replace(withID, c.from, c.to, 1))
			if r.Status != 422 || !strings.Contains(string(r.Body), "Task."+c.el) {
				t.Errorf("changing %s by %s: %d %s", c.el, p.FHIRUser, r.Status, r.Body)
			}
		}
	}
	e.must(e.do(specP, "PUT", "Task/imm", strings.Replace(withID, `"for":{"reference":"Patient/p1"}`, `"for":{"reference":"Patient/p1","display":"P. One"}`, 1)), 200, "display added")
	// JSON Patch goes through the same hook.
	e.must(e.do(specP, "PATCH", "Task/imm", `[{"op":"replace","path":"/for/reference","value":"Patient/p2"}]`, "Content-Type: application/json-patch+json"), 422, "patch for")
	e.must(e.do(specP, "PATCH", "Task/imm", `[{"op":"replace","path":"/status","value":"completed"}]`, "Content-Type: application/json-patch+json"), 409, "patch requested → completed")
	e.must(e.do(specP, "PATCH", "Task/imm", `[{"op":"replace","path":"/status","value":"accepted"}]`, "Content-Type: application/json-patch+json"), 200, "patch requested → accepted")
}

// Referral pools: a CareTeam's members, an Organization's practitioners
// (PractitionerRole.organization); an unassigned Task is claimed by the
// practitioner who accepts it; only the owner (or the requester before
// acceptance) reassigns.
func TestPoolsAndClaiming(t *testing.T) {
	e := newEnv(t, "")
	for _, c := range []struct {
		name, owner string
		member      *smart.Principal
	}{{"care team", "CareTeam/pool", poolP}, {"organization", "Organization/clinic", orgDoc}} {
		id := "pool-" + strings.ReplaceAll(c.name, " ", "-")
		body := strings.Replace(referral("requested", c.owner), `{"resourceType":"Task"`, `{"resourceType":"Task","id":"`+id+`"`, 1)
		e.seed("Task", id, body)
		e.must(e.do(other, "PUT", "Task/"+id, setStatus(body, "accepted")), 403, c.name+": outsider accepts")
		e.must(e.do(specP, "PUT", "Task/"+id, setStatus(body, "accepted")), 403, c.name+": another specialist accepts")
		// The member claims it from the pool and accepts it.
		claimed := strings.Replace(setStatus(body, "accepted"), c.owner, c.member.FHIRUser, 1)
		m := e.must(e.do(c.member, "PUT", "Task/"+id, claimed), 200, c.name+": member accepts")
		if ref(m["owner"]) != c.member.FHIRUser {
			t.Errorf("%s: owner %v after the claim", c.name, m["owner"])
		}
	}
	// Unassigned ($escalate's Tasks have no owner): any practitioner may
	// take it, and becomes its owner.
	body := strings.Replace(referral("requested", ""), `{"resourceType":"Task"`, `{"resourceType":"Task","id":"free"`, 1)
	e.seed("Task", "free", body)
	m := e.must(e.do(other, "PUT", "Task/free", setStatus(body, "received")), 200, "claim an unassigned Task")
	if ref(m["owner"]) != "Practitioner/other" {
		t.Errorf("owner after claiming: %v", m["owner"])
	}
	// Reassignment: the requester may redirect before acceptance, an outsider never.
	body = strings.Replace(referral("requested", "Practitioner/spec"), `{"resourceType":"Task"`, `{"resourceType":"Task","id":"redirect"`, 1)
	e.seed("Task", "redirect", body)
	e.must(e.do(other, "PUT", "Task/redirect", strings.Replace(body, "Practitioner/spec", "Practitioner/other", 1)), 403, "outsider takes a Task")
	e.must(e.do(pcpP, "PUT", "Task/redirect", strings.Replace(body, "Practitioner/spec", "CareTeam/pool", 1)), 200, "requester redirects to the pool")
	// A PractitionerRole fhirUser acts as its practitioner.
	role := principal(t, "user/*.cruds", "", "PractitionerRole/org-doc-role")
	body = strings.Replace(referral("requested", "Practitioner/org-doc"), `{"resourceType":"Task"`, `{"resourceType":"Task","id":"by-role"`, 1)
	e.seed("Task", "by-role", body)
	e.must(e.do(role, "PUT", "Task/by-role", setStatus(body, "accepted")), 200, "the owner's PractitionerRole accepts")
}

// A transaction Bundle and a conditional update go through the hook: an
// invalid transition fails the whole transaction (nothing stored).
func TestBundleAndConditionalWrites(t *testing.T) {
	e := newEnv(t, "")
	body := strings.Replace(referral("requested", "Practitioner/spec"), `{"resourceType":"Task"`, `{"resourceType":"Task","id":"bx"`, 1)
	e.seed("Task", "bx", body)
	tx := func(to string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[` +
			`{"fullUrl":"urn:uuid:8c5e2f9a-1111-4a1a-9b7e-000000000001","resource":{"resourceType":"Communication","status":"completed","payload":[{"contentString":"note"}],"partOf":[{"reference":"Task/bx"}]},"request":{"method":"POST","url":"Communication"}},` +
			`{"resource":` + setStatus(body, to) + `,"request":{"method":"PUT","url":"Task/bx"}}]}`
	}
	e.must(e.do(specP, "POST", "", tx("completed")), 409, "transaction with requested → completed")
	if n := e.must(e.do(sysP, "GET", "Communication?_summary=count", ""), 200, "count")["total"]; n != 0.0 {
		t.Fatalf("the failed transaction stored %v Communications", n)
	}
	e.must(e.do(specP, "POST", "", tx("accepted")), 200, "transaction with requested → accepted")
	e.must(e.do(specP, "PUT", "Task?_id=bx", setStatus(body, "requested")), 409, "conditional update accepted → requested")
	e.must(e.do(specP, "PUT", "Task?_id=bx", setStatus(body, "in-progress")), 200, "conditional update accepted → in-progress")
}

// correction is a correction request for patient about focus.
func correction(patient, focus, extra string) string {
	return `{"resourceType":"Task","status":"requested","intent":"order",` + extra +
		`"code":{"coding":[{"system":"` + TaskCodeSystem + `","code":"` + CorrectionRequest + `"}]},` +
		`"focus":{"reference":"` + focus + `"},"for":{"reference":"Patient/` + patient + `"},` +
		`"input":[{"type":{"coding":[{"system":"` + ParameterSystem + `","code":"` + ProposedCorrection + `"}]},"valueString":"The value was taken after a meal"}]}`
}

// Patients create correction requests only, for themselves, about what
// they can see (else 404, the same answer as a missing resource); the
// server names them requester; they never update a Task.
func TestPatientCorrectionRequests(t *testing.T) {
	e := newEnv(t, "version: 1\nrules:\n  - name: held\n    match:\n      code: [\"http://loinc.org|9999-9\"]\n    action: manual\n")
	e.seed("Observation", "held", strings.Replace(obsJSON("p1", ""), "2160-0", "9999-9", 1))
	pt := principal(t, "patient/*.cruds", "p1", "Patient/p1")
	m := e.must(e.do(pt, "POST", "Task", correction("p1", "Observation/obs1", "")), 201, "correction request")
	if ref(m["requester"]) != "Patient/p1" {
		t.Errorf("requester %v", m["requester"])
	}
	id := m["id"].(string)
	missing := e.do(pt, "POST", "Task", correction("p1", "Observation/nope", ""))
	for _, c := range []struct {
		name, body string
		status     int
	}{
		{"another patient's resource", correction("p1", "Observation/obs2", ""), 404},
		{"a held result", correction("p1", "Observation/held", ""), 404},
		{"a missing resource", correction("p1", "Observation/nope", ""), 404},
		{"for another patient", correction("p2", "Observation/obs2", ""), 403},
		{"an eReferral", strings.Replace(referral("requested", ""), `"requester":{"reference":"Practitioner/pcp"},`, "", 1), 403},
		{"a generic Task", `{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/p1"}}`, 403},
		{"someone else as requester", correction("p1", "Observation/obs1", `"requester":{"reference":"Practitioner/pcp"},`), 403},
		{"already accepted", strings.Replace(correction("p1", "Observation/obs1", ""), `"status":"requested"`, `"status":"accepted"`, 1), 422},
		{"no proposed correction", strings.Replace(correction("p1", "Observation/obs1", ""), ProposedCorrection, "other", 1), 422},
		{"with an output", correction("p1", "Observation/obs1", `"output":[{"type":{"text":"x"},"valueString":"done"}],`), 422},
	} {
		r := e.do(pt, "POST", "Task", c.body)
		if r.Status != c.status {
			t.Errorf("%s: %d, want %d: %s", c.name, r.Status, c.status, r.Body)
		}
		if c.status == 404 && strings.ReplaceAll(string(r.Body), "obs2", "nope") != string(missing.Body) && c.name == "another patient's resource" {
			t.Errorf("another patient's resource answers differently from a missing one:\n%s\n%s", r.Body, missing.Body)
		}
	}
	// Never an update, even of their own request: $withdraw cancels it.
	e.must(e.do(pt, "PUT", "Task/"+id, strings.Replace(correction("p1", "Observation/obs1", `"id":"`+id+`",`), "requested", "completed", 1)), 403, "patient completes")
	e.must(e.do(pt, "DELETE", "Task/"+id, ""), 403, "patient deletes")
	other := principal(t, "patient/*.cruds", "p2", "Patient/p2")
	e.must(e.do(other, "POST", "Task/"+id+"/$withdraw", ""), 404, "another patient withdraws")
	e.must(e.do(other, "GET", "Task/"+id, ""), 404, "another patient reads")
	w := e.must(e.do(pt, "POST", "Task/"+id+"/$withdraw", `{"resourceType":"Parameters","parameter":[{"name":"reason","valueString":"sorted out by phone"}]}`), 200, "withdraw")
	if w["status"] != "cancelled" {
		t.Errorf("after $withdraw: %v", w["status"])
	}
	e.must(e.do(pt, "POST", "Task/"+id+"/$withdraw", ""), 409, "withdraw twice")
}

// A clinician closes a correction request: completed points at the
// amended resource; a refusal has a statusReason and the refusal document
// attached to the record (DocumentReference about the patient, related to
// the focus), here created in the same transaction.
func TestCorrectionOutcome(t *testing.T) {
	e := newEnv(t, "")
	pt := principal(t, "patient/*.cruds", "p1", "Patient/p1")
	id := e.must(e.do(pt, "POST", "Task", correction("p1", "Observation/obs1", "")), 201, "request")["id"].(string)
	cur := func() map[string]any { return e.must(e.do(sysP, "GET", "Task/"+id, ""), 200, "read") }
	put := func(p *smart.Principal, m map[string]any, want int, what string) map[string]any {
		b, _ := json.Marshal(m)
		return e.must(e.do(p, "PUT", "Task/"+id, string(b)), want, what)
	}
	m := cur()
	m["status"] = "accepted"
	put(specP, m, 200, "accept")
	m = cur()
	if ref(m["owner"]) != "Practitioner/spec" {
		t.Fatalf("owner %v", m["owner"])
	}
	m["status"] = "in-progress"
	put(specP, m, 200, "start")
	m = cur()
	m["status"] = "completed"
	put(specP, m, 422, "completed without the amended resource")
	m["output"] = []any{map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": ParameterSystem, "code": AmendedResource}}},
		"valueReference": map[string]any{"reference": "Observation/obs2/_history/1"}}}
	put(specP, m, 422, "completed pointing at another resource")
	m["output"].([]any)[0].(map[string]any)["valueReference"] = map[string]any{"reference": "Observation/obs1/_history/2"}
	put(specP, m, 200, "completed")

	// Refusal.
	id = e.must(e.do(pt, "POST", "Task", correction("p1", "Observation/obs1", "")), 201, "request 2")["id"].(string)
	m = cur()
	m["status"] = "rejected"
	put(specP, m, 422, "rejected without a reason")
	m["statusReason"] = map[string]any{"text": "The value is what the laboratory reported"}
	put(specP, m, 422, "rejected without the refusal document")
	m["id"] = id
	m["output"] = []any{map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": ParameterSystem, "code": CorrectionRefusal}}},
		"valueReference": map[string]any{"reference": "urn:uuid:0d3c1c9e-2222-4b2b-8c8c-000000000002"}}}
	task, _ := json.Marshal(m)
	doc := `{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"` + ParameterSystem + `","code":"` + CorrectionRefusal + `"}]},` +
		`"subject":{"reference":"Patient/p1"},"context":{"related":[{"reference":"Observation/obs1"},{"reference":"Task/` + id + `"}]},` +
		`"content":[{"attachment":{"contentType":"text/plain","data":"UmVmdXNlZA=="}}]}`
	bad := strings.Replace(doc, `{"reference":"Observation/obs1"},`, "", 1)
	txOf := func(doc string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[` +
			`{"fullUrl":"urn:uuid:0d3c1c9e-2222-4b2b-8c8c-000000000002","resource":` + doc + `,"request":{"method":"POST","url":"DocumentReference"}},` +
			`{"resource":` + string(task) + `,"request":{"method":"PUT","url":"Task/` + id + `"}}]}`
	}
	e.must(e.do(specP, "POST", "", txOf(bad)), 422, "refusal document not related to the focus")
	e.must(e.do(specP, "POST", "", txOf(doc)), 200, "refusal with its document")
	if cur()["status"] != "rejected" {
		t.Fatal("not rejected")
	}
	// The patient sees the outcome and the refusal attached to the record.
	got := e.must(e.do(pt, "GET", "Task/"+id, ""), 200, "patient reads the outcome")
	if got["status"] != "rejected" || !strings.Contains(fmt.Sprint(got["statusReason"]), "laboratory") {
		t.Errorf("the patient sees %v %v", got["status"], got["statusReason"])
	}
	rb := e.must(e.do(pt, "GET", "DocumentReference?related=Observation/obs1", ""), 200, "refusals of obs1")
	if es, _ := rb["entry"].([]any); len(es) != 1 {
		t.Errorf("DocumentReference?related=Observation/obs1: %d entries", len(es))
	}
}
