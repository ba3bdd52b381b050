package server

import (
	"context"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// Audiences of release rules (policy package).
const (
	audienceNone    = ""        // practitioners, backend services: see everything
	audiencePatient = "patient" // the patient themselves
	audienceProxy   = "proxy"   // a parent or caregiver acting for the patient
)

// caller is the resolved identity of a request: the SMART principal, whether
// release rules apply to it, and, for proxies, what they may act on.
type caller struct {
	p        *smart.Principal // nil: authorization disabled
	audience string
	proxy    string // "RelatedPerson/9" or "Person/3" acting
	grants   []smart.Grant
}

type callerKey struct{}

func withCaller(ctx context.Context, c *caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// caller resolves (once per request; bundle entries reuse it) who is calling.
func (s *Server) caller(ctx context.Context) (*caller, error) {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return c, nil
	}
	if s.cfg.AuthDisabled {
		return &caller{}, nil
	}
	p := smart.PrincipalFrom(ctx)
	if p == nil {
		return nil, smart.MissingToken()
	}
	c := &caller{p: p}
	typ, _, _ := strings.Cut(p.FHIRUser, "/")
	patientScopes := false
	for _, sc := range p.Scopes {
		if sc.Context == "patient" {
			patientScopes = true
		}
	}
	switch {
	case typ == "RelatedPerson" || typ == "Person":
		c.audience = audienceProxy
		c.proxy = p.FHIRUser
		grants, err := smart.Grants(ctx, s.cfg.Store, s.proxyConfig(), p.FHIRUser)
		if err != nil {
			return nil, err
		}
		c.grants = grants
		if p.Patient != "" {
			ok := false
			for _, g := range grants {
				if g.Patient == p.Patient || g.Patient == "Patient/"+p.Patient {
					ok = true
				}
			}
			if !ok {
				return nil, fhir.Errorf(fhir.KindForbidden, "%s may not act for patient %s", p.FHIRUser, p.Patient)
			}
		}
	case typ == "Patient" || patientScopes:
		c.audience = audiencePatient
	}
	return c, nil
}

func (s *Server) proxyConfig() smart.ProxyConfig {
	pc := s.cfg.Proxy
	if pc.Now == nil {
		pc.Now = s.cfg.Now
	}
	return pc
}

// allow decides interaction on typ for the caller and returns the
// constraint every matching resource must satisfy (nil: none). Read-like
// interactions of patient-facing callers also get the release constraint.
func (s *Server) allow(c *caller, interaction smart.Interaction, typ string) (search.Expr, error) {
	if c == nil || c.p == nil {
		return nil, nil
	}
	a := smart.Access{Interaction: interaction, Type: typ}
	var d smart.Decision
	if c.audience == audienceProxy {
		d = s.cfg.Decider.DecideProxy(c.p, c.grants, a)
	} else {
		d = s.cfg.Decider.Decide(c.p, a)
	}
	if !d.Allow {
		return nil, smart.InsufficientScope(d.Scope)
	}
	where := d.Where
	if c.audience != audienceNone && isReadLike(interaction) {
		where = search.AllOf(where, search.ReleaseCond{Audience: c.audience, Now: s.cfg.Now()})
	}
	return where, nil
}

func isReadLike(i smart.Interaction) bool {
	switch i {
	case smart.Read, smart.VRead, smart.Search, smart.History, smart.HistoryType:
		return true
	}
	return false
}

// constrain returns the per-type constraint function the search engine ANDs
// into every store query; types the caller may not search are Const{false}.
func (s *Server) constrain(c *caller) func(string) search.Expr {
	if c == nil || c.p == nil {
		return nil
	}
	cache := map[string]search.Expr{}
	return func(typ string) search.Expr {
		if e, ok := cache[typ]; ok {
			return e
		}
		e, err := s.allow(c, "search", typ)
		if err != nil {
			e = search.Const{Value: false}
		} else if e == nil {
			e = search.Const{Value: true}
		}
		cache[typ] = e
		return e
	}
}

// visible reports whether rec satisfies where (in memory, fail closed).
func visible(where search.Expr, rec store.Record) bool {
	if where == nil {
		return true
	}
	ok, err := search.Eval(where, subject(rec))
	return ok && err == nil
}

func subject(rec store.Record) search.Subject {
	return search.Subject{
		Type: rec.Type, ID: rec.ID, LastUpdated: rec.LastUpdated, Index: &rec.Index,
		PatientVisible: rec.Release.Patient, ProxyVisible: rec.Release.Proxy,
	}
}
