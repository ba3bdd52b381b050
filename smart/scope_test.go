package smart

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

// SMART App Launch 2.x scopes-and-launch-context.html: v1 and v2 syntax,
// granular constraints, non-resource scopes; RFC 6749 section 3.3: the
// scope string's separator and token characters.
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

// RFC 6749 section 3.3: scope = scope-token *( SP scope-token ), scope-token
// = 1*( %x21 / %x23-5B / %x5D-7E ). Only U+0020 separates; a token holding
// any other character (tab, newline, U+00A0, U+2003, '"', '\\') is
// malformed and grants nothing.
func TestParseScopesSeparators(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // raw scopes returned
		bad      int      // malformed tokens reported
	}{
		{"spaces, repeated and around", "  openid  patient/*.rs   launch/patient ", []string{"openid", "patient/*.rs", "launch/patient"}, 0},
		{"empty", "", nil, 0},
		{"only spaces", "   ", nil, 0},
		{"tab", "openid\tpatient/*.rs", nil, 1},
		{"newline", "openid patient/Patient.r\nuser/*.cruds", []string{"openid"}, 1},
		{"carriage return", "patient/*.rs\r", nil, 1},
		{"no-break space U+00A0", "patient/Observation.rs\u00a0user/*.cruds launch", []string{"launch"}, 1},
		{"em space U+2003", "patient/Observation.rs\u2003system/*.cruds", nil, 1},
		{"ideographic space U+3000", "openid\u3000fhirUser", nil, 1},
		{"non-ASCII letter", "patient/Observation.rs?code=caf\u00e9", nil, 1},
		{"double quote", `patient/Observation.rs?code="x"`, nil, 1},
		{"backslash", `patient/Observation.rs?code=a\b`, nil, 1},
		{"DEL", "openid\x7f", nil, 1},
		{"NUL", "openid\x00 fhirUser", []string{"fhirUser"}, 1},
		{"every allowed punctuation", "x!#$%&'()*+,-./:;<=>?@[]^_`{|}~ patient/Observation.rs?code=a|b", []string{"x!#$%&'()*+,-./:;<=>?@[]^_`{|}~", "patient/Observation.rs?code=a|b"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseScopes(tt.in)
			var raws []string
			for _, s := range got {
				raws = append(raws, s.Raw)
			}
			if !reflect.DeepEqual(raws, tt.want) {
				t.Fatalf("ParseScopes(%q) = %q, want %q", tt.in, raws, tt.want)
			}
			if tt.bad == 0 {
				if err != nil {
					t.Fatalf("ParseScopes(%q): %v", tt.in, err)
				}
				return
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Kind != fhir.KindInvalid || len(fe.Issues) != tt.bad || fe.Issues[0].Expression[0] != "scope" {
				t.Fatalf("err = %v, want %d invalid issues at scope", err, tt.bad)
			}
			if !strings.Contains(fe.Issues[0].Diagnostics, "RFC 6749 section 3.3") {
				t.Fatalf("diagnostics %q", fe.Issues[0].Diagnostics)
			}
		})
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
