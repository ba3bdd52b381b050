package smart

// WriteRule is what a patient-facing app (a patient, or a proxy acting for
// one) may write of one resource type.
type WriteRule struct {
	// Create: the app may create resources of the type.
	Create bool
	// Change: the app may update, patch and delete resources of the type
	// that a patient-facing app wrote (OriginTag), in the patient's record.
	Change bool
	// Owner lists the reference search parameters that name the patient a
	// resource belongs to; one of them must reference the acting patient
	// (being performer, sender or author is not enough). Empty for
	// Patient (the resource itself) and Binary (its securityContext).
	Owner []string
}

// PatientWrites lists the only resource types a patient-facing app may
// write; every other type (AuditEvent, Provenance, Consent, RelatedPerson,
// results, orders...) is refused with 403, so no patient or proxy can
// forge an audit trail, grant themselves proxy access or change what the
// care team recorded. A write lands only in the acting patient's record:
// the new version must be in that patient's compartment and in no other
// patient's, and an Owner parameter must name that patient.
//
//   - Communication, CommunicationRequest: secure messages and requests to
//     the care team (subject = the patient).
//   - QuestionnaireResponse: forms and questionnaires the patient fills in.
//   - Appointment (a request: the patient as participant), AppointmentResponse
//     (accept or decline an appointment).
//   - Observation: patient-reported data (home blood pressure, weight).
//   - DocumentReference, Media, Binary: documents and pictures the patient
//     uploads (a Binary's securityContext must be the patient or a resource
//     of the patient's the app can read).
//   - Subscription: the app's FHIR Subscriptions (notify/subscription;
//     the server links them to the patient, "patient").
//   - Task: requests to correct the patient's record (portal/workflow,
//     docs/workflow.md), create only (for = the patient); the workflow
//     service's write hook refuses every other kind of Task, and a
//     request is withdrawn with Task/[id]/$withdraw, never by an update.
//   - Patient: the patient's own demographics, updates only; the elements
//     that decide identity and proxy access (ProtectedPatientElements)
//     cannot change.
var PatientWrites = map[string]WriteRule{
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
	"Task":                  {Create: true, Owner: []string{"patient"}},
	"Patient":               {Change: true},
}

// ProtectedPatientElements are the Patient elements a patient-facing app
// cannot change: birthDate decides when a parent's access ends, identifier
// and link decide who the record is, active and deceased[x] its state,
// managingOrganization and generalPractitioner its custodian.
var ProtectedPatientElements = []string{
	"birthDate", "identifier", "link", "active", "deceasedBoolean", "deceasedDateTime",
	"managingOrganization", "generalPractitioner",
}

// OriginSystem and OriginPatientApp make the meta.tag the server puts on
// every version a patient-facing app wrote (and removes from every other
// write: no client sets it). EMR conditional writes never match resources
// carrying it, so a patient cannot squat an identifier an EMR relies on,
// and patient-facing apps may change only resources carrying it.
const (
	OriginSystem     = "http://fhirgate.dev/CodeSystem/origin"
	OriginPatientApp = "patient-app"
)
