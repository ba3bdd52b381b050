package authz

import (
	"strings"
	"testing"
	"time"
)

func TestEveryMessageInBothLanguages(t *testing.T) {
	for k, m := range messages {
		if m[0] == "" || m[1] == "" {
			t.Errorf("message %q lacks a language: %q", k, m)
		}
		if strings.Count(m[0], "%s") != strings.Count(m[1], "%s") {
			t.Errorf("message %q: the languages take different arguments", k)
		}
	}
	for k, m := range typeNames {
		if m[0] == "" || m[1] == "" {
			t.Errorf("type %q lacks a language", k)
		}
	}
}

func TestDescribeScope(t *testing.T) {
	for _, tc := range []struct{ lang, scope, patient, want string }{
		{"en", "patient/Observation.rs", "Emma Lee", "See results and measurements (lab results, vital signs) in Emma Lee's record"},
		{"fr", "patient/Observation.rs", "Emma Lee", "Voir les résultats et mesures (analyses, signes vitaux) dans le dossier de Emma Lee"},
		{"en", "patient/Communication.cruds", "", "See, add, change and delete messages in the record"},
		{"en", "user/*.read", "", "See your whole health record that you have access to"},
		{"en", "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", "",
			"See results and measurements (lab results, vital signs) in the record (only where category = laboratory)"},
		{"en", "offline_access", "", "Keep access when you are not using it, until you revoke it"},
		{"fr", "launch/patient", "", "Savoir quel dossier est ouvert"},
		{"en", "patient/Flag.rs", "", "See Flag in the record"},
	} {
		if got := describeScope(tc.lang, tc.scope, tc.patient); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.lang, tc.scope, got, tc.want)
		}
	}
}

func TestAllowedScopes(t *testing.T) {
	c := &Client{}
	bounded := &Client{Scopes: []string{"patient/*.rs", "openid", "launch/patient"}}
	for _, tc := range []struct {
		c      *Client
		req    string
		f      flow
		launch bool
		want   string
	}{
		{c, "openid fhirUser launch/patient patient/Observation.rs system/*.rs profile launch/encounter", flowUser, false, "openid fhirUser launch/patient patient/Observation.rs"},
		{c, "launch patient/*.rs", flowUser, false, "patient/*.rs"},
		{c, "launch patient/*.rs", flowUser, true, "launch patient/*.rs"},
		{c, "offline_access online_access", flowUser, false, "offline_access"},
		{c, "online_access", flowUser, false, "online_access"},
		{c, "patient/Observation.bogus patient/Obs?x", flowUser, false, ""},
		{bounded, "patient/Observation.read patient/Observation.cruds user/*.rs openid fhirUser launch/patient", flowUser, false, "patient/Observation.read openid launch/patient"},
		{&Client{Scopes: []string{"system/Observation.rs?category=laboratory"}}, "system/Observation.rs system/Observation.rs?category=laboratory system/Observation.r?category=laboratory", flowBackend, false,
			"system/Observation.rs?category=laboratory system/Observation.r?category=laboratory"},
		{c, "system/*.rs patient/*.rs openid", flowBackend, false, "system/*.rs"},
	} {
		if got := strings.Join(allowedScopes(tc.c, splitScopes(tc.req), tc.f, tc.launch), " "); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.req, got, tc.want)
		}
	}
}

func TestTOTPVector(t *testing.T) {
	// RFC 6238 appendix B, SHA1 secret "12345678901234567890" (6 digits of 94287082 at T=59).
	secret := "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	key := []byte("12345678901234567890")
	if got := hotp(key, 59/30); got != "287082" {
		t.Fatalf("hotp %s", got)
	}
	if _, ok := verifyTOTP(secret, "287082", unix(59), 0); !ok {
		t.Fatal("verify")
	}
	if _, ok := verifyTOTP(secret, "287082", unix(59), 1); ok {
		t.Fatal("a used step is refused")
	}
}

func unix(s int64) time.Time { return time.Unix(s, 0) }
