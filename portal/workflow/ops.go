package workflow

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/server"
)

// WithdrawDefinition is the canonical URL of Task/[id]/$withdraw.
const WithdrawDefinition = "https://fhirgate.dev/fhir/OperationDefinition/Task-withdraw"

// Operations are the service's operations: Task/[id]/$withdraw.
func (s *Service) Operations() []server.ExtraOperation {
	return []server.ExtraOperation{{
		Name: "$withdraw", Type: "Task", Level: server.Instance, Write: true, Definition: WithdrawDefinition,
		Doc: "Withdraw (cancel) a request: a patient or proxy their correction request, staff a Task they requested. " +
			"Parameter reason (string, optional) becomes statusReason.",
		Run: s.opWithdraw,
	}}
}

// opWithdraw is POST Task/[id]/$withdraw: the requester cancels a Task
// that is not final (task.html#statemachine: any non-final state →
// cancelled). Patient-facing apps cannot update Tasks
// (smart.PatientWrites), so for them the service checks that the Task is
// a correction request for the patient the app acts for, requested by the
// patient or this proxy, and commits the change with the server's
// authority (audited as the caller); staff callers' cancellation runs as
// an ordinary update, under the write hook's rules.
func (s *Service) opWithdraw(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	cur := call.Resource
	tree, err := fhir.Decode(cur.Raw)
	if err != nil {
		return nil, err
	}
	reason, err := reasonParam(call.Request)
	if err != nil {
		return nil, err
	}
	status, _ := tree["status"].(string)
	if Allowed(status, "cancelled") == 0 {
		return nil, fhir.Errorf(fhir.KindConflict, "invalid Task transition from %q to %q (task.html#statemachine): the Task is closed", status, "cancelled").
			At("Task.status").WithCode("business-rule")
	}
	if call.PatientFacing {
		patient := s.norm(ref(tree["for"]))
		requester := s.norm(ref(tree["requester"]))
		mine := requester == patient || call.Principal != nil && requester == call.Principal.FHIRUser
		if Kind(tree) != CorrectionRequest || !slices.Contains(call.Patients, patient) || !mine {
			return nil, fhir.Errorf(fhir.KindForbidden, "a patient-facing app may withdraw only the correction requests it made for the patient it acts for")
		}
	}
	obj, err := fhir.ParseObject(cur.Raw)
	if err != nil {
		return nil, err
	}
	if err := obj.Set("status", json.RawMessage(`"cancelled"`)); err != nil {
		return nil, err
	}
	if reason != "" {
		b, _ := json.Marshal(map[string]string{"text": reason})
		if err := obj.Set("statusReason", b, "status"); err != nil {
			return nil, err
		}
	}
	req := &fhir.Request{Method: http.MethodPut, Path: "Task/" + cur.ID, Body: obj.Bytes(), Entry: -1,
		Header: http.Header{"Content-Type": {"application/fhir+json"}, "If-Match": {`W/"` + strconv.FormatInt(cur.VersionID, 10) + `"`}}}
	var resp *fhir.Response
	if call.PatientFacing {
		resp = s.cfg.HandleAsService(ctx, call.Principal, req)
	} else {
		resp = s.cfg.Handle(ctx, req)
	}
	if resp.Err != nil {
		return nil, resp.Err
	}
	return resp, nil
}

// reasonParam reads the optional "reason" (query or Parameters body).
func reasonParam(req *fhir.Request) (string, error) {
	ps, err := fhir.ReadParams(req)
	if err != nil {
		return "", err
	}
	return ps.Get("reason"), nil
}
