package search

import "testing"

// SameParams tells a registry with custom parameters of a type from the
// default one, and ignores other types' custom parameters.
func TestSameParams(t *testing.T) {
	core := Default()
	if !core.WithBase("https://x.example/fhir").SameParams(core, "AuditEvent") {
		t.Error("the base URL made AuditEvent's parameters differ")
	}
	patientOnly, err := LoadCustom(core, []byte(customMaidenName))
	if err != nil {
		t.Fatal(err)
	}
	if !patientOnly.SameParams(core, "AuditEvent") || patientOnly.SameParams(core, "Patient") {
		t.Error("a Patient parameter: AuditEvent must stay the same, Patient must not")
	}
	ae, err := LoadCustom(core, []byte(`{"resourceType":"SearchParameter","url":"http://fhirgate.example/sp/ae","code":"request-id",
		"base":["AuditEvent"],"type":"token","expression":"AuditEvent.entity.what.identifier"}`))
	if err != nil {
		t.Fatal(err)
	}
	if ae.SameParams(core, "AuditEvent") {
		t.Error("a custom AuditEvent parameter went unnoticed")
	}
	if core.SameParams(core, "Frobnicator") {
		t.Error("an unknown type has the same parameters")
	}
}
