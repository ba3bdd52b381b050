package smart

import (
	"errors"
	"net/url"
	"reflect"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

// SMART App Launch 2.x scopes-and-launch-context.html: v1 and v2 syntax,
// granular constraints, non-resource scopes.
func TestParseScopes(t *testing.T) {
	tests := []struct {
		in   string
		want Scope
	}{
		{"patient/Observation.read", Scope{Context: "patient", Type: "Observation", Perms: PermRead | PermSearch, V1: true}},
		{"patient/Observation.write", Scope{Context: "patient", Type: "Observation", Perms: PermCreate | PermUpdate | PermDelete, V1: true}},
		{"user/*.*", Scope{Context: "user", Type: "*", Perms: PermsAll, V1: true}},
		{"patient/Observation.rs", Scope{Context: "patient", Type: "Observation", Perms: PermRead | PermSearch}},
		{"system/*.cruds", Scope{Context: "system", Type: "*", Perms: PermsAll}},
		{"user/Appointment.cu", Scope{Context: "user", Type: "Appointment", Perms: PermCreate | PermUpdate}},
		{"patient/Patient.r", Scope{Context: "patient", Type: "Patient", Perms: PermRead}},
		{"patient/Observation.s", Scope{Context: "patient", Type: "Observation", Perms: PermSearch}},
		{"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
			Scope{Context: "patient", Type: "Observation", Perms: PermRead | PermSearch,
				Query: url.Values{"category": {"http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}}}},
		{"patient/Condition.rs?category=problem-list-item&clinical-status=active",
			Scope{Context: "patient", Type: "Condition", Perms: PermRead | PermSearch,
				Query: url.Values{"category": {"problem-list-item"}, "clinical-status": {"active"}}}},
		{"openid", Scope{}},
		{"fhirUser", Scope{}},
		{"launch", Scope{}},
		{"launch/patient", Scope{}},
		{"offline_access", Scope{}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseScopes(tt.in)
			if err != nil {
				t.Fatalf("ParseScopes(%q): %v", tt.in, err)
			}
			tt.want.Raw = tt.in
			if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Fatalf("ParseScopes(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseScopesMalformed(t *testing.T) {
	for _, in := range []string{
		"patient/Observation",          // no permissions
		"patient/Observation.",         // empty permissions
		"patient/Observation.sr",       // not in cruds order
		"patient/Observation.rr",       // repeated
		"patient/Observation.rx",       // unknown letter
		"patient/Observation.readx",    // unknown v1
		"patient/observation.rs",       // not a type
		"patient/.rs",                  // empty type
		"user/Obs-ervation.rs",         // not a type
		"patient/Observation.read?x=1", // v1 with query
		"patient/Observation.rs?",      // empty query
		"patient/Observation.rs?a=%zz", // bad escape
	} {
		t.Run(in, func(t *testing.T) {
			got, err := ParseScopes("openid " + in + " patient/Patient.rs")
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Kind != fhir.KindInvalid || len(fe.Issues) != 1 || fe.Issues[0].Expression[0] != "scope" {
				t.Fatalf("err = %v, want one invalid issue at scope", err)
			}
			if len(got) != 2 || got[0].Raw != "openid" || got[1].Raw != "patient/Patient.rs" {
				t.Fatalf("well-formed scopes must be kept, got %+v", got)
			}
		})
	}
}

func TestParseScopesWhitespace(t *testing.T) {
	got, err := ParseScopes("  openid\tpatient/*.rs \n launch/patient ")
	if err != nil || len(got) != 3 || got[1].Type != "*" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if got, _ := ParseScopes(""); len(got) != 0 {
		t.Fatalf("empty: %+v", got)
	}
}

func TestPermsString(t *testing.T) {
	if s := PermsAll.String(); s != "cruds" {
		t.Fatalf("%q", s)
	}
	if s := PermsV1Read.String(); s != "rs" {
		t.Fatalf("%q", s)
	}
	if (PermRead).Has(0) {
		t.Fatal("empty set must not count as held")
	}
}
