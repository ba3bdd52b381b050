package mquery

import (
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Match evaluates e (nil: true) against one stored version exactly as the
// MongoDB filter of Filter would, in Go. A store on a server that cannot
// run the exact filter (Compile reports exact=false) keeps only the
// documents for which Match is true.
//
// It is search.Match, the one in-memory evaluation of the search AST (the
// pipeline's access decisions use it too); the differential test of this
// package holds it to the semantics of the lowered filters.
func Match(e search.Expr, r store.Record) (bool, error) {
	return search.Match(e, subject(&r))
}

// Matcher is a compiled Match for many records.
type Matcher struct{ m *search.Matcher }

// NewMatcher compiles e for repeated Match calls.
func NewMatcher(e search.Expr) (*Matcher, error) {
	m, err := search.NewMatcher(e)
	if err != nil {
		return nil, err
	}
	return &Matcher{m}, nil
}

// Match reports whether r matches.
func (m *Matcher) Match(r store.Record) bool { return m.m.Match(subject(&r)) }

// subject is the part of r a search.Matcher reads.
func subject(r *store.Record) search.Subject {
	return search.Subject{
		Type: r.Type, ID: r.ID, LastUpdated: r.LastUpdated, Index: &r.Index,
		PatientVisible: r.Release.Patient, ProxyVisible: r.Release.Proxy,
	}
}
