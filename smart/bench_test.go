package smart

import (
	"context"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerifyJWT is the per-request cost of a JWT access token once the
// issuer's keys are cached (RS256 signature check plus claim checks).
func BenchmarkVerifyJWT(b *testing.B) {
	o := newTestOP(b)
	ctx := context.Background()
	v, err := NewVerifier(ctx, Config{Issuers: []string{o.URL}, Audience: testAudience})
	if err != nil {
		b.Fatal(err)
	}
	tok := sign(b, jose.RS256, o.private, o.kid, validClaims(o))
	if _, err := v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	d := testDecider()
	p := principal("openid fhirUser launch/patient patient/Observation.rs?category=laboratory patient/Condition.rs patient/*.read user/Practitioner.rs", "123", "Patient/123")
	b.ReportAllocs()
	for b.Loop() {
		if !d.Decide(p, Access{Search, "Observation"}).Allow {
			b.Fatal("denied")
		}
	}
}

func BenchmarkDecideProxy(b *testing.B) {
	d := testDecider()
	d.Now = clock(today)
	p := principal("patient/*.rs", "child", "RelatedPerson/mom")
	grants := []Grant{
		{Patient: "child", Via: ViaRelationship, Until: today.Add(24 * time.Hour)},
		{Patient: "child", Via: ViaConsent, Types: []string{"Appointment"}, Labels: []string{SystemActCode + "|PSY"}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if !d.DecideProxy(p, grants, Access{Search, "Appointment"}).Allow {
			b.Fatal("denied")
		}
	}
}

// BenchmarkGrants is the per-request cost of computing a proxy's grants
// against the in-memory reader (the store adds its own latency).
func BenchmarkGrants(b *testing.B) {
	m := fixture()
	cfg := ProxyConfig{Now: clock(today)}
	b.ReportAllocs()
	for b.Loop() {
		if g, err := Grants(context.Background(), m, cfg, "RelatedPerson/carer"); err != nil || len(g) != 1 {
			b.Fatal(g, err)
		}
		m.searches = m.searches[:0]
	}
}
