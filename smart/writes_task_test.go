package smart

// smart.PatientWrites' Task rule (docs/workflow.md, "Corrections"):
// patient-facing apps may create Tasks — the workflow service's write hook
// lets only correction requests through — and never update, patch or
// delete one; the Task must name the acting patient as its "patient"
// (Task.for). Every other rule of the table is as before.

import (
	"reflect"
	"testing"
)

func TestPatientWritesTask(t *testing.T) {
	got, ok := PatientWrites["Task"]
	if !ok {
		t.Fatal("Task is not writable by patient-facing apps")
	}
	if want := (WriteRule{Create: true, Owner: []string{"patient"}}); !reflect.DeepEqual(got, want) {
		t.Fatalf("Task rule %+v, want %+v (create only, owner Task.for)", got, want)
	}
	before := map[string]WriteRule{
		"Communication":         {Create: true, Change: true, Owner: []string{"subject"}},
		"CommunicationRequest":  {Create: true, Change: true, Owner: []string{"subject"}},
		"QuestionnaireResponse": {Create: true, Change: true, Owner: []string{"subject"}},
		"Appointment":           {Create: true, Change: true, Owner: []string{"actor"}},
		"AppointmentResponse":   {Create: true, Change: true, Owner: []string{"actor"}},
		"Observation":           {Create: true, Change: true, Owner: []string{"subject"}},
		"DocumentReference":     {Create: true, Change: true, Owner: []string{"subject"}},
		"Media":                 {Create: true, Change: true, Owner: []string{"subject"}},
		"Binary":                {Create: true, Change: true},
		"Subscription":          {Create: true, Change: true, Owner: []string{"patient"}},
		"Patient":               {Change: true},
	}
	for typ, want := range before {
		if rule := PatientWrites[typ]; !reflect.DeepEqual(rule, want) {
			t.Errorf("%s: %+v, want %+v", typ, rule, want)
		}
	}
}
