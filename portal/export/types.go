package export

import (
	"slices"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
)

// ClinicalDate names, per resource type, the date search parameter that
// $everything's start and end apply to (patient-operation-everything.html:
// "The date range relates to care dates, not record currency dates"). The
// R4 common "clinical-date" parameter (code date) where the type has it,
// else the type's own care date. Types not listed (Patient, Coverage,
// RelatedPerson, Group, Person...) have no care date: start and end do not
// filter them. A resource of a listed type without that date does not
// match a start/end filter (search semantics). Checked against the
// registry by the tests; an entry the registry lacks is ignored.
var ClinicalDate = map[string]string{
	"AllergyIntolerance": "date", "CarePlan": "date", "CareTeam": "date", "ClinicalImpression": "date",
	"Composition": "date", "Consent": "date", "DiagnosticReport": "date", "Encounter": "date",
	"EpisodeOfCare": "date", "FamilyMemberHistory": "date", "Flag": "date", "Immunization": "date",
	"List": "date", "Observation": "date", "Procedure": "date", "RiskAssessment": "date", "SupplyRequest": "date",
	"AdverseEvent": "date", "Appointment": "date", "AuditEvent": "date", "DocumentReference": "date",
	"ImmunizationEvaluation": "date", "ImmunizationRecommendation": "date", "Invoice": "date", "MeasureReport": "date",
	"ResearchSubject": "date",
	"Condition":       "onset-date", "MedicationRequest": "authoredon", "MedicationAdministration": "effective-time",
	"MedicationDispense": "whenhandedover", "MedicationStatement": "effective", "Communication": "sent",
	"CommunicationRequest": "authored", "ServiceRequest": "authored", "DeviceRequest": "authored-on",
	"Specimen": "collected", "ImagingStudy": "started", "Media": "created", "QuestionnaireResponse": "authored",
	"Goal": "start-date", "Claim": "created", "ClaimResponse": "created", "ExplanationOfBenefit": "created",
	"CoverageEligibilityRequest": "created", "CoverageEligibilityResponse": "created", "DocumentManifest": "created",
	"Basic": "created", "DetectedIssue": "identified", "NutritionOrder": "datetime", "VisionPrescription": "datewritten",
	"Provenance": "recorded", "RequestGroup": "authored", "ChargeItem": "entered-date", "Task": "authored-on",
	"Account": "period", "Schedule": "date",
}

// LinkedParam names the reference parameter that links a resource of a
// type outside the Patient CompartmentDefinition to its patient, for the
// types fhirgate puts in a patient's compartment by such a reference
// (Task.for: eReferrals, corrections; Device.patient...). $everything
// searches them by it.
var LinkedParam = map[string]string{
	"Task": "patient", "Device": "patient", "Contract": "patient", "GuidanceResponse": "patient",
}

// compartmentTypes are the types of the Patient CompartmentDefinition
// (without Patient), sorted.
func compartmentTypes(reg *search.Registry) []string {
	var out []string
	for _, t := range fhir.ResourceTypes {
		if t != "Patient" && reg.IsResourceType(t) && len(reg.Compartment(t)) > 0 {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// dateParam is the care-date parameter of typ, when the registry has it.
func dateParam(reg *search.Registry, typ string) string {
	return knownParam(reg, ClinicalDate, typ, search.TypeDate)
}

// linkedParam is the patient reference parameter of a linked type, when
// the registry has it.
func linkedParam(reg *search.Registry, typ string) string {
	return knownParam(reg, LinkedParam, typ, search.TypeReference)
}

// knownParam is the parameter table names for typ, when the registry has
// it with that search parameter type ("" otherwise).
func knownParam(reg *search.Registry, table map[string]string, typ string, paramType search.ParamType) string {
	code, ok := table[typ]
	if !ok {
		return ""
	}
	if p, ok := reg.Lookup(typ, code); ok && p.Type == paramType {
		return code
	}
	return ""
}

// allTypes are the concrete resource types, sorted, Patient first.
func allTypes(reg *search.Registry) []string {
	out := []string{"Patient"}
	var rest []string
	for _, t := range fhir.ResourceTypes {
		if t != "Patient" && reg.IsResourceType(t) {
			rest = append(rest, t)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// patientDataTypes are the types that can hold patient data (everything
// but search.PatientFree), Patient first: what the Patient and Group
// levels export.
func patientDataTypes(reg *search.Registry) []string {
	var out []string
	for _, t := range allTypes(reg) {
		if !search.PatientFree[t] {
			out = append(out, t)
		}
	}
	return out
}
