package app

// End-to-end tests of the Task workflow (issue 17 "eConsult and eReferral"
// and "Corrections", docs/workflow.md) through the real HTTP handler:
// R4 workflow-management.html (a Task basedOn a ServiceRequest, CA:eReC),
// task.html#statemachine (409 on an invalid transition; the owner's and
// the requester's transitions), worklists, what patients and proxies see
// under release rules, and correction requests (PHIPA s. 55: the refusal
// and the patient's statement of disagreement attached to the record).
// FHIRGATE_TEST_STORE=ferretdb runs them on the embedded FerretDB.

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/portal/workflow"
	"github.com/fhirgate/fhirgate/smart/devissuer"
)

type wfWorld struct {
	*world
	pcp, spec, poolDoc, outsider, backend, pt, ptB, mum, carer string // tokens
}

func newWfWorld(t *testing.T, opts ...harnessOpt) *wfWorld {
	w := newWorld(t, opts...)
	h := w.h
	for _, p := range []string{"pcp", "spec", "pool-doc", "outsider"} {
		put(h, "Practitioner", p, `{"resourceType":"Practitioner","name":[{"family":"`+p+`"}]}`)
	}
	put(h, "CareTeam", "cardio-pool", `{"resourceType":"CareTeam","status":"active","name":"Cardiology eReferral intake",`+
		`"participant":[{"member":{"reference":"Practitioner/pool-doc"}},{"member":{"reference":"Practitioner/spec"}}]}`)
	doc := func(p string) string {
		return h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/" + p, Client: "emr"})
	}
	ww := &wfWorld{world: w, pcp: doc("pcp"), spec: doc("spec"), poolDoc: doc("pool-doc"), outsider: doc("outsider"),
		backend: h.token(devissuer.MintOptions{Scope: "system/*.cruds", Client: "ereferral-hub"})}
	ww.pt = w.patientToken(w.pa, "patient/*.cruds")
	ww.ptB = w.patientToken(w.pb, "patient/*.cruds")
	ww.mum = h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent, Client: "portal"})
	ww.carer = h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pa, FHIRUser: "RelatedPerson/" + w.caregiver, Client: "portal"})
	return ww
}

// task reads Task/id as the backend and returns it.
func (w *wfWorld) task(id string) map[string]any {
	return w.h.req("GET", "Task/"+id, nil, w.backend).must(w.h.t, 200).JSON
}

// move writes Task/id with status (and the changes of edit) as token.
func (w *wfWorld) move(id, token, status string, want int, edit func(map[string]any)) res {
	w.h.t.Helper()
	m := w.task(id)
	m["status"] = status
	if edit != nil {
		edit(m)
	}
	return w.h.req("PUT", "Task/"+id, m, token).must(w.h.t, want)
}

func coding(system, code string) map[string]any {
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

// An eReferral from the family physician to the cardiology pool: the
// referral (ServiceRequest with a document and a questionnaire in
// supportingInfo) and its Task in one transaction; the pool's worklist;
// a pool member claims and accepts it; "more information needed"
// (on-hold); the physician answers (a note as Communication partOf the
// Task) and resumes it; the specialist completes it. Invalid transitions
// are 409, the wrong party's 403; the patient follows the status, another
// patient sees nothing.
func TestWorkflowEReferral(t *testing.T) {
	w := newWfWorld(t)
	h := w.h
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000001","resource":{"resourceType":"Binary","contentType":"application/pdf","data":"JVBERi0xLjQ="},"request":{"method":"POST","url":"Binary"}},
	 {"fullUrl":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000002","resource":{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/pat-a"},
	   "type":{"text":"ECG"},"content":[{"attachment":{"contentType":"application/pdf","url":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000001"}}]},"request":{"method":"POST","url":"DocumentReference"}},
	 {"fullUrl":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000003","resource":{"resourceType":"QuestionnaireResponse","status":"completed","subject":{"reference":"Patient/pat-a"},
	   "item":[{"linkId":"1","text":"Chest pain on exertion?","answer":[{"valueBoolean":true}]}]},"request":{"method":"POST","url":"QuestionnaireResponse"}},
	 {"fullUrl":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000004","resource":{"resourceType":"ServiceRequest","status":"active","intent":"order",
	   "code":{"text":"Cardiology consultation"},"subject":{"reference":"Patient/pat-a"},"requester":{"reference":"Practitioner/pcp"},
	   "supportingInfo":[{"reference":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000002"},{"reference":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000003"}]},"request":{"method":"POST","url":"ServiceRequest"}},
	 {"fullUrl":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000005","resource":{"resourceType":"Task","status":"requested","intent":"order",
	   "code":{"coding":[{"system":"` + workflow.TaskCodeSystem + `","code":"ereferral"}]},
	   "basedOn":[{"reference":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000004"}],"focus":{"reference":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000004"},
	   "for":{"reference":"Patient/pat-a"},"authoredOn":"2026-06-01T10:00:00Z","requester":{"reference":"Practitioner/pcp"},"owner":{"reference":"CareTeam/cardio-pool"},
	   "restriction":{"period":{"end":"2026-06-15T00:00:00Z"}},
	   "input":[{"type":{"text":"ECG"},"valueReference":{"reference":"urn:uuid:6f1d7a52-0001-4c3e-9a41-000000000002"}}]},"request":{"method":"POST","url":"Task"}}]}`
	r := h.req("POST", "", tx, w.pcp).must(t, 200)
	var taskID, srID string
	for _, e := range r.entries() {
		loc := strings.TrimPrefix(e["response"].(map[string]any)["location"].(string), h.base+"/")
		if strings.HasPrefix(loc, "Task/") {
			taskID = strings.Split(loc, "/")[1]
		}
		if strings.HasPrefix(loc, "ServiceRequest/") {
			srID = strings.Split(loc, "/")[1]
		}
	}
	if taskID == "" || srID == "" {
		t.Fatalf("transaction answered %s", truncate(r.Body))
	}
	// Worklists: the pool's new referrals, by due date.
	pool := ids(h.req("GET", "Task?owner=CareTeam/cardio-pool&status=requested&_sort=authored-on", nil, w.poolDoc).must(t, 200))
	if !has(pool, "Task/"+taskID) {
		t.Fatalf("the pool's worklist: %v", pool)
	}
	if got := ids(h.req("GET", "Task?due=lt2026-06-10&status="+strings.Join(workflow.Open, ","), nil, w.backend).must(t, 200)); has(got, "Task/"+taskID) {
		t.Errorf("due on the 15th, overdue on the 10th: %v", got)
	}
	// The specialist sees the referral's attachments and questionnaire.
	inc := h.req("GET", "ServiceRequest?_id="+srID+"&_include=ServiceRequest:supporting-info", nil, w.poolDoc).must(t, 200)
	if s := string(inc.Body); !strings.Contains(s, `"resourceType":"DocumentReference"`) || !strings.Contains(s, `"resourceType":"QuestionnaireResponse"`) {
		t.Errorf("the referral's supporting information: %s", truncate(inc.Body))
	}
	// Wrong party, wrong transition.
	w.move(taskID, w.outsider, "accepted", 403, nil)
	w.move(taskID, w.pcp, "accepted", 403, nil) // the requester does not accept its own referral
	bad := w.move(taskID, w.poolDoc, "completed", 409, nil)
	if d := fmt.Sprint(bad.outcome(t)["diagnostics"]); !strings.Contains(d, `"requested"`) || !strings.Contains(d, `"completed"`) {
		t.Errorf("409 diagnostics %q", d)
	}
	// A pool member claims and accepts it, then starts.
	w.move(taskID, w.poolDoc, "accepted", 200, func(m map[string]any) {
		m["owner"] = map[string]any{"reference": "Practitioner/pool-doc"}
		m["businessStatus"] = coding(workflow.BusinessStatusSystem, "triaged")
	})
	if got := ids(h.req("GET", "Task?owner=Practitioner/pool-doc&status=accepted", nil, w.poolDoc).must(t, 200)); !has(got, "Task/"+taskID) {
		t.Errorf("the specialist's accepted worklist: %v", got)
	}
	w.move(taskID, w.spec, "in-progress", 403, nil) // no longer the pool's
	w.move(taskID, w.poolDoc, "in-progress", 200, nil)
	w.move(taskID, w.poolDoc, "on-hold", 200, func(m map[string]any) {
		m["businessStatus"] = coding(workflow.BusinessStatusSystem, "info-needed")
	})
	waiting := ids(h.req("GET", "Task?requester=Practitioner/pcp&business-status="+url.QueryEscape(workflow.BusinessStatusSystem+"|info-needed"), nil, w.pcp).must(t, 200))
	if !has(waiting, "Task/"+taskID) {
		t.Errorf("the physician's 'information needed' list: %v", waiting)
	}
	// The question and the answer: Communications partOf the Task, without
	// a subject (clinician to clinician: not in the patient's record).
	h.req("POST", "Communication", `{"resourceType":"Communication","status":"completed","partOf":[{"reference":"Task/`+taskID+`"}],`+
		`"sender":{"reference":"Practitioner/pool-doc"},"recipient":[{"reference":"Practitioner/pcp"}],"payload":[{"contentString":"Please send the latest lipid panel"}]}`, w.poolDoc).must(t, 201)
	h.req("POST", "Communication", `{"resourceType":"Communication","status":"completed","partOf":[{"reference":"Task/`+taskID+`"}],`+
		`"sender":{"reference":"Practitioner/pcp"},"recipient":[{"reference":"Practitioner/pool-doc"}],"payload":[{"contentString":"Attached"}]}`, w.pcp).must(t, 201)
	if n := len(h.req("GET", "Communication?part-of=Task/"+taskID, nil, w.poolDoc).must(t, 200).entries()); n != 2 {
		t.Errorf("the Task's notes: %d", n)
	}
	if n := len(h.req("GET", "Communication?part-of=Task/"+taskID, nil, w.pt).must(t, 200).entries()); n != 0 {
		t.Errorf("the patient sees %d clinician notes", n)
	}
	// The requester answers and resumes it; the specialist completes it.
	w.move(taskID, w.pcp, "in-progress", 200, func(m map[string]any) {
		m["businessStatus"] = coding(workflow.BusinessStatusSystem, "info-provided")
	})
	w.move(taskID, w.poolDoc, "completed", 200, func(m map[string]any) {
		m["output"] = []any{map[string]any{"type": map[string]any{"text": "consult note"}, "valueString": "Start a statin; no further tests"}}
	})
	w.move(taskID, w.poolDoc, "in-progress", 409, nil)
	w.move(taskID, w.pcp, "cancelled", 409, nil)
	// The immutable parts.
	w.move(taskID, w.backend, "completed", 422, func(m map[string]any) { m["for"] = map[string]any{"reference": "Patient/pat-b"} })

	// The patient follows their referral; another patient sees nothing.
	pr := h.req("GET", "Task/"+taskID, nil, w.pt).must(t, 200)
	if pr.str("status") != "completed" {
		t.Errorf("the patient sees status %q", pr.str("status"))
	}
	if got := ids(h.req("GET", "Task?patient=Patient/pat-a", nil, w.pt).must(t, 200)); !has(got, "Task/"+taskID) {
		t.Errorf("the patient's Tasks: %v", got)
	}
	h.req("GET", "Task/"+taskID, nil, w.ptB).must(t, 404)
	if got := ids(h.req("GET", "Task", nil, w.ptB).must(t, 200)); has(got, "Task/"+taskID) {
		t.Errorf("patient B sees A's referral")
	}
	// Patients never write a referral.
	h.req("POST", "Task", `{"resourceType":"Task","status":"requested","intent":"order","code":{"coding":[{"system":"`+workflow.TaskCodeSystem+`","code":"ereferral"}]},`+
		`"basedOn":[{"reference":"ServiceRequest/`+srID+`"}],"for":{"reference":"Patient/pat-a"}}`, w.pt).must(t, 403)
}

// Release rules apply to Tasks as to any resource: a rule holding
// referrals labelled as mental-health hides the Task from the patient
// until a clinician releases it.
func TestWorkflowReleaseRules(t *testing.T) {
	w := newWfWorld(t, withMessaging(t, "version: 1\nrules:\n  - name: psych-referrals\n    match:\n      resourceType: Task\n"+
		"      security: [\"http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY\"]\n    action: manual\n"))
	h := w.h
	put(h, "ServiceRequest", "sr-psy", `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/pat-a"},"code":{"text":"Psychiatry"}}`)
	task := `{"resourceType":"Task","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},` +
		`"status":"requested","intent":"order","code":{"coding":[{"system":"` + workflow.TaskCodeSystem + `","code":"ereferral"}]},` +
		`"basedOn":[{"reference":"ServiceRequest/sr-psy"}],"for":{"reference":"Patient/pat-a"},"requester":{"reference":"Practitioner/pcp"}}`
	id := h.req("POST", "Task", task, w.pcp).must(t, 201).str("id")
	h.req("GET", "Task/"+id, nil, w.pt).must(t, 404)
	h.req("POST", "Task/"+id+"/$release", nil, w.pcp).must(t, 200)
	h.req("GET", "Task/"+id, nil, w.pt).must(t, 200)
}

// $escalate (fhir/server/messaging.go) still makes an eConsult Task the
// hook accepts afterwards: unassigned, claimed by the specialist who
// accepts it.
func TestWorkflowEscalatedEConsult(t *testing.T) {
	w := newWfWorld(t, withMessaging(t, messagingPolicy))
	h := w.h
	put(h, "Organization", "clinic", `{"resourceType":"Organization","name":"Clinic"}`)
	put(h, "CareTeam", "pool-nurses", `{"resourceType":"CareTeam","status":"active","name":"Nurses"}`)
	hid := h.req("POST", "Communication", thread(w.pa, "CareTeam/pool-nurses", ""), w.pt).must(t, 201).str("id")
	r := h.req("POST", "Communication/"+hid+"/$escalate", `{"resourceType":"Parameters"}`, w.pcp).must(t, 200)
	taskID := ""
	for _, p := range r.JSON["parameter"].([]any) {
		if p := p.(map[string]any); p["name"] == "task" {
			taskID = strings.TrimPrefix(p["valueReference"].(map[string]any)["reference"].(string), "Task/")
		}
	}
	w.move(taskID, w.spec, "completed", 409, nil)
	w.move(taskID, w.spec, "accepted", 200, nil)
	if o := w.task(taskID)["owner"]; fmt.Sprint(o) != "map[reference:Practitioner/spec]" {
		t.Errorf("owner after the claim: %v", o)
	}
	w.move(taskID, w.outsider, "in-progress", 403, nil)
	w.move(taskID, w.backend, "in-progress", 200, nil) // the organisation: any valid transition
}

// Corrections: a patient asks for a correction of a result, a parent for
// their child's; neither sees the other's request; requests about what
// the caller cannot see are 404 and other Task kinds 403. A clinician
// amends one result and completes the request; refuses the other with
// the refusal attached to the record; the patient adds their statement
// of disagreement and reads the outcome; the clinician reading the record
// sees both.
func TestWorkflowCorrections(t *testing.T) {
	w := newWfWorld(t)
	h := w.h
	corr := func(patient, focus, text string) string {
		return `{"resourceType":"Task","status":"requested","intent":"order",` +
			`"code":{"coding":[{"system":"` + workflow.TaskCodeSystem + `","code":"correction-request"}],"text":"Correction request"},` +
			`"focus":{"reference":"` + focus + `"},"for":{"reference":"Patient/` + patient + `"},"authoredOn":"2026-06-01T12:00:00Z",` +
			`"input":[{"type":{"coding":[{"system":"` + workflow.ParameterSystem + `","code":"proposed-correction"}]},"valueString":"` + text + `"}]}`
	}
	own := h.req("POST", "Task", corr(w.pa, "Observation/"+w.labA, "This test was done fasting"), w.pt).must(t, 201)
	if own.str("requester", "reference") != "Patient/pat-a" {
		t.Errorf("requester %s", own.str("requester", "reference"))
	}
	ownID := own.str("id")
	hidden := h.req("POST", "Task", corr(w.pa, "Observation/"+w.labB, "x"), w.pt).must(t, 404)
	missing := h.req("POST", "Task", corr(w.pa, "Observation/no-such", "x"), w.pt).must(t, 404)
	if strings.ReplaceAll(string(hidden.Body), w.labB, "no-such") != string(missing.Body) {
		t.Errorf("another patient's result and a missing one answer differently:\n%s\n%s", hidden.Body, missing.Body)
	}
	h.req("POST", "Task", corr(w.pb, "Observation/"+w.labB, "x"), w.pt).must(t, 403) // for someone else
	h.req("POST", "Task", `{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/pat-a"}}`, w.pt).must(t, 403)
	// The caregiver's Consent covers Appointment and Communication only.
	h.req("POST", "Task", corr(w.pa, "Observation/"+w.labA, "x"), w.carer).must(t, 403)
	// A mother for her 9-year-old.
	child := h.req("POST", "Task", corr(w.pc, "Observation/"+w.labC, "Wrong child: this is her brother's result"), w.mum).must(t, 201)
	if child.str("requester", "reference") != "RelatedPerson/"+w.parent {
		t.Errorf("the proxy's request names %s", child.str("requester", "reference"))
	}
	childID := child.str("id")
	h.req("GET", "Task/"+childID, nil, w.pt).must(t, 404)
	h.req("GET", "Task/"+ownID, nil, w.mum).must(t, 404)
	h.req("GET", "Task/"+ownID, nil, w.ptB).must(t, 404)
	if got := ids(h.req("GET", "Task?code="+url.QueryEscape(workflow.TaskCodeSystem+"|correction-request"), nil, w.ptB).must(t, 200)); len(got) != 0 {
		t.Errorf("patient B sees correction requests %v", got)
	}
	// Patients cannot accept or complete anything.
	m := w.task(ownID)
	m["status"] = "completed"
	h.req("PUT", "Task/"+ownID, m, w.pt).must(t, 403)
	// The clinicians' worklist of correction requests.
	list := ids(h.req("GET", "Task?code="+url.QueryEscape(workflow.TaskCodeSystem+"|correction-request")+"&status=requested", nil, w.spec).must(t, 200))
	if !has(list, "Task/"+ownID) || !has(list, "Task/"+childID) {
		t.Errorf("correction worklist %v", list)
	}

	// The child's result is amended; the request completes with it.
	w.move(childID, w.spec, "accepted", 200, nil)
	w.move(childID, w.spec, "in-progress", 200, nil)
	am := h.req("GET", "Observation/"+w.labC, nil, w.spec).must(t, 200).JSON
	am["status"] = "amended"
	am["note"] = []any{map[string]any{"text": "Corrected at the parent's request: result belonged to a sibling"}}
	vid := h.req("PUT", "Observation/"+w.labC, am, w.spec).must(t, 200).str("meta", "versionId")
	w.move(childID, w.spec, "completed", 422, nil)
	w.move(childID, w.spec, "completed", 200, func(m map[string]any) {
		m["output"] = []any{map[string]any{"type": coding(workflow.ParameterSystem, "amended-resource"),
			"valueReference": map[string]any{"reference": "Observation/" + w.labC + "/_history/" + vid}}}
	})
	if s := h.req("GET", "Task/"+childID, nil, w.mum).must(t, 200).str("status"); s != "completed" {
		t.Errorf("the mother sees %s", s)
	}

	// A's request is refused: the refusal attached to the record in the
	// same transaction.
	w.move(ownID, w.spec, "rejected", 422, func(m map[string]any) { m["statusReason"] = map[string]any{"text": "x"} })
	m = w.task(ownID)
	m["status"] = "rejected"
	m["statusReason"] = map[string]any{"text": "The laboratory confirmed the sample was not fasting"}
	m["owner"] = map[string]any{"reference": "Practitioner/spec"}
	m["output"] = []any{map[string]any{"type": coding(workflow.ParameterSystem, "correction-refusal"),
		"valueReference": map[string]any{"reference": "urn:uuid:1b8e2c44-0002-4d5e-8f60-000000000001"}}}
	refusal := map[string]any{"resourceType": "DocumentReference", "status": "current",
		"type": coding(workflow.ParameterSystem, "correction-refusal"), "subject": map[string]any{"reference": "Patient/pat-a"},
		"description": "Refusal of a correction request",
		"context":     map[string]any{"related": []any{map[string]any{"reference": "Observation/" + w.labA}, map[string]any{"reference": "Task/" + ownID}}},
		"content":     []any{map[string]any{"attachment": map[string]any{"contentType": "text/plain", "data": "VGhlIGxhYm9yYXRvcnkgY29uZmlybWVkIHRoZSBzYW1wbGUgd2FzIG5vdCBmYXN0aW5n"}}}}
	bundle := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		map[string]any{"fullUrl": "urn:uuid:1b8e2c44-0002-4d5e-8f60-000000000001", "resource": refusal, "request": map[string]any{"method": "POST", "url": "DocumentReference"}},
		map[string]any{"resource": m, "request": map[string]any{"method": "PUT", "url": "Task/" + ownID}},
	}}
	h.req("POST", "", bundle, w.spec).must(t, 200)
	got := h.req("GET", "Task/"+ownID, nil, w.pt).must(t, 200)
	if got.str("status") != "rejected" || !strings.Contains(got.str("statusReason", "text"), "not fasting") {
		t.Errorf("the patient sees %s %s", got.str("status"), got.str("statusReason", "text"))
	}
	// The patient's statement of disagreement, attached to the same record.
	stmt := `{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"` + workflow.ParameterSystem + `","code":"statement-of-disagreement"}]},` +
		`"subject":{"reference":"Patient/pat-a"},"description":"Statement of disagreement",` +
		`"context":{"related":[{"reference":"Observation/` + w.labA + `"},{"reference":"Task/` + ownID + `"}]},` +
		`"content":[{"attachment":{"contentType":"text/plain","data":"SSB3YXMgZmFzdGluZyBmb3IgMTIgaG91cnM="}}]}`
	h.req("POST", "DocumentReference", stmt, w.pt).must(t, 201)
	// A reader of the record sees the result with both documents.
	rec := h.req("GET", "Observation?_id="+w.labA+"&_revinclude=DocumentReference:related", nil, w.spec).must(t, 200)
	var kinds []string
	for _, e := range rec.entries() {
		if r := e["resource"].(map[string]any); r["resourceType"] == "DocumentReference" {
			kinds = append(kinds, fmt.Sprint(r["type"]))
		}
	}
	if len(kinds) != 2 || !strings.Contains(strings.Join(kinds, " "), "correction-refusal") || !strings.Contains(strings.Join(kinds, " "), "statement-of-disagreement") {
		t.Errorf("the record's attached documents: %v", kinds)
	}
	if n := len(h.req("GET", "DocumentReference?related=Observation/"+w.labA, nil, w.pt).must(t, 200).entries()); n != 2 {
		t.Errorf("the patient sees %d documents attached to the result", n)
	}
	// A request the patient withdraws.
	third := h.req("POST", "Task", corr(w.pa, "Observation/"+w.vitalA, "Wrong arm"), w.pt).must(t, 201).str("id")
	h.req("POST", "Task/"+third+"/$withdraw", nil, w.ptB).must(t, 404)
	h.req("POST", "Task/"+third+"/$withdraw", nil, w.pt).must(t, 200)
	if s := w.task(third)["status"]; s != "cancelled" {
		t.Errorf("withdrawn request: %v", s)
	}
	h.req("POST", "Task/"+ownID+"/$withdraw", nil, w.pt).must(t, 409) // already rejected
}

// FHIRGATE_WORKFLOW_* settings: defaults, both switches, a bad value.
func TestWorkflowFromEnv(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	o, err := WorkflowFromEnv(env(nil))
	if err != nil || o.OnlyWorkflowTasks || o.NoPatientCorrections {
		t.Fatalf("defaults: %+v %v", o, err)
	}
	o, err = WorkflowFromEnv(env(map[string]string{"FHIRGATE_WORKFLOW_ALL_TASKS": "false", "FHIRGATE_WORKFLOW_CORRECTIONS": "false"}))
	if err != nil || !o.OnlyWorkflowTasks || !o.NoPatientCorrections {
		t.Fatalf("both off: %+v %v", o, err)
	}
	if _, err := WorkflowFromEnv(env(map[string]string{"FHIRGATE_WORKFLOW_CORRECTIONS": "maybe"})); err == nil || !strings.Contains(err.Error(), "FHIRGATE_WORKFLOW_CORRECTIONS") {
		t.Fatalf("bad value: %v", err)
	}
}

// FHIRGATE_WORKFLOW_ALL_TASKS=false: an EMR loads a completed Task of
// its own; FHIRGATE_WORKFLOW_CORRECTIONS=false: patients make none.
func TestWorkflowSwitches(t *testing.T) {
	w := newWfWorld(t, func(o *Options) { o.Workflow = WorkflowOptions{OnlyWorkflowTasks: true, NoPatientCorrections: true} })
	h := w.h
	h.req("POST", "Task", `{"resourceType":"Task","status":"completed","intent":"order","for":{"reference":"Patient/pat-a"}}`, w.backend).must(t, 201)
	h.req("POST", "Task", `{"resourceType":"Task","status":"completed","intent":"order","code":{"coding":[{"system":"`+workflow.TaskCodeSystem+`","code":"econsult"}]},"for":{"reference":"Patient/pat-a"}}`, w.backend).must(t, 422)
	h.req("POST", "Task", `{"resourceType":"Task","status":"requested","intent":"order","code":{"coding":[{"system":"`+workflow.TaskCodeSystem+`","code":"correction-request"}]},`+
		`"focus":{"reference":"Observation/lab-a"},"for":{"reference":"Patient/pat-a"},"input":[{"type":{"coding":[{"system":"`+workflow.ParameterSystem+`","code":"proposed-correction"}]},"valueString":"x"}]}`, w.pt).must(t, 403)
}
