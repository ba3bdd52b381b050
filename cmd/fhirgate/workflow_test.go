package main

// The Task workflow through the binary (issue 17 "eConsult and eReferral"
// and "Corrections", docs/workflow.md), with tokens from `fhirgate token`:
// an eReferral accepted by the specialist, put on hold for more
// information, resumed and completed; an invalid transition is a 409
// OperationOutcome naming both states; a patient's correction request is
// refused with the refusal attached to the record, the patient adds a
// statement of disagreement, and both are visible with the record.

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestWorkflowThroughTheBinary(t *testing.T) {
	c := startBinary(t)
	emr := c.token("--scope", "system/*.cruds")
	pcp := c.token("--scope", "user/*.cruds", "--fhir-user", "Practitioner/pcp")
	spec := c.token("--scope", "user/*.cruds", "--fhir-user", "Practitioner/spec")
	ann := c.token("--scope", "patient/*.cruds", "--patient", "ann", "--fhir-user", "Patient/ann")
	move := func(tok, id, status string, want int, edit func(map[string]any)) binRes {
		t.Helper()
		m := c.do(emr, "GET", "Task/"+id, "", 200).json
		m["status"] = status
		if edit != nil {
			edit(m)
		}
		return c.do(tok, "PUT", "Task/"+id, wfJSON(m), want)
	}
	c.do(emr, "PUT", "Patient/ann", `{"resourceType":"Patient","id":"ann","name":[{"family":"Ann"}],"birthDate":"1980-01-01"}`, 201)
	for _, p := range []string{"pcp", "spec"} {
		c.do(emr, "PUT", "Practitioner/"+p, `{"resourceType":"Practitioner","id":"`+p+`"}`, 201)
	}
	c.do(emr, "PUT", "ServiceRequest/ref1", `{"resourceType":"ServiceRequest","id":"ref1","status":"active","intent":"order","code":{"text":"Cardiology"},`+
		`"subject":{"reference":"Patient/ann"},"requester":{"reference":"Practitioner/pcp"}}`, 201)

	// 1. The eReferral.
	task := c.do(pcp, "POST", "Task", `{"resourceType":"Task","status":"requested","intent":"order",`+
		`"code":{"coding":[{"system":"https://fhirgate.dev/fhir/CodeSystem/task-code","code":"ereferral"}]},`+
		`"basedOn":[{"reference":"ServiceRequest/ref1"}],"focus":{"reference":"ServiceRequest/ref1"},"for":{"reference":"Patient/ann"},`+
		`"requester":{"reference":"Practitioner/pcp"},"owner":{"reference":"Practitioner/spec"},"restriction":{"period":{"end":"2099-01-01"}}}`, 201)
	id := task.str("id")
	list := c.do(spec, "GET", "Task?owner=Practitioner/spec&status=requested", "", 200)
	if !strings.Contains(wfJSON(list.json), `"id":"`+id+`"`) {
		t.Fatalf("the specialist's worklist: %s", wfJSON(list.json))
	}
	oo := move(spec, id, "completed", 409, nil)
	if s := wfJSON(oo.json); !strings.Contains(s, "OperationOutcome") || !strings.Contains(s, `\"requested\"`) || !strings.Contains(s, `\"completed\"`) {
		t.Fatalf("409 body: %s", s)
	}
	move(pcp, id, "accepted", 403, nil)
	move(spec, id, "accepted", 200, nil)
	move(spec, id, "in-progress", 200, nil)
	move(spec, id, "on-hold", 200, func(m map[string]any) {
		m["businessStatus"] = map[string]any{"coding": []any{map[string]any{"system": "https://fhirgate.dev/fhir/CodeSystem/task-business-status", "code": "info-needed"}}}
	})
	move(pcp, id, "in-progress", 200, nil)
	move(spec, id, "completed", 200, nil)
	if s := c.do(ann, "GET", "Task/"+id, "", 200).str("status"); s != "completed" {
		t.Errorf("Ann sees her referral %v", s)
	}

	// 2. A correction request, refused, with Ann's statement.
	c.do(emr, "PUT", "Observation/bp1", `{"resourceType":"Observation","id":"bp1","status":"final","code":{"text":"Blood pressure"},`+
		`"subject":{"reference":"Patient/ann"},"valueString":"150/95"}`, 201)
	corr := c.do(ann, "POST", "Task", `{"resourceType":"Task","status":"requested","intent":"order",`+
		`"code":{"coding":[{"system":"https://fhirgate.dev/fhir/CodeSystem/task-code","code":"correction-request"}]},`+
		`"focus":{"reference":"Observation/bp1"},"for":{"reference":"Patient/ann"},`+
		`"input":[{"type":{"coding":[{"system":"https://fhirgate.dev/fhir/CodeSystem/task-parameter","code":"proposed-correction"}]},"valueString":"It was 130/85"}]}`, 201)
	cid := corr.str("id")
	m := c.do(emr, "GET", "Task/"+cid, "", 200).json
	m["status"] = "rejected"
	m["statusReason"] = map[string]any{"text": "The reading was taken and recorded by the nurse"}
	m["output"] = []any{map[string]any{"type": map[string]any{"coding": []any{map[string]any{"system": "https://fhirgate.dev/fhir/CodeSystem/task-parameter", "code": "correction-refusal"}}},
		"valueReference": map[string]any{"reference": "urn:uuid:4a0e8a7d-0003-4b4b-9c9c-000000000001"}}}
	refusal := `{"resourceType":"DocumentReference","status":"current","type":{"coding":[{"system":"https://fhirgate.dev/fhir/CodeSystem/task-parameter","code":"correction-refusal"}]},` +
		`"subject":{"reference":"Patient/ann"},"context":{"related":[{"reference":"Observation/bp1"},{"reference":"Task/` + cid + `"}]},` +
		`"content":[{"attachment":{"contentType":"text/plain","data":"UmVmdXNlZA=="}}]}`
	c.do(spec, "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[`+
		`{"fullUrl":"urn:uuid:4a0e8a7d-0003-4b4b-9c9c-000000000001","resource":`+refusal+`,"request":{"method":"POST","url":"DocumentReference"}},`+
		`{"resource":`+wfJSON(m)+`,"request":{"method":"PUT","url":"Task/`+cid+`"}}]}`, 200)
	got := c.do(ann, "GET", "Task/"+cid, "", 200).json
	if got["status"] != "rejected" || !strings.Contains(wfJSON(got), "recorded by the nurse") {
		t.Fatalf("Ann sees %s", wfJSON(got))
	}
	c.do(ann, "POST", "DocumentReference", `{"resourceType":"DocumentReference","status":"current",`+
		`"type":{"coding":[{"system":"https://fhirgate.dev/fhir/CodeSystem/task-parameter","code":"statement-of-disagreement"}]},`+
		`"subject":{"reference":"Patient/ann"},"context":{"related":[{"reference":"Observation/bp1"},{"reference":"Task/`+cid+`"}]},`+
		`"content":[{"attachment":{"contentType":"text/plain","data":"SSBkaXNhZ3JlZQ=="}}]}`, 201)
	for _, tok := range []string{spec, ann} {
		rec := wfJSON(c.do(tok, "GET", "Observation?_id=bp1&_revinclude=DocumentReference:related", "", 200).json)
		if !strings.Contains(rec, "correction-refusal") || !strings.Contains(rec, "statement-of-disagreement") {
			t.Errorf("the record with its attached documents: %s", rec)
		}
	}
}

func wfJSON(m map[string]any) string {
	b, _ := json.Marshal(m)
	return string(b)
}
