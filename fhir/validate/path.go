package validate

import "github.com/fhirgate/fhirgate/fhir"

// MaxDepth is the deepest nesting accepted (fhir.MaxDepth; the parser is
// package fhir's, shared with every write).
const MaxDepth = fhir.MaxDepth

// seg is one step of a path inside a resource: an element name or an array index.
type seg = fhir.Step

// path is a location inside a resource (fhir.Path).
type path = fhir.Path

// problem is one finding before it becomes a fhir.Issue.
type problem struct {
	at   path
	code string // OperationOutcome issue code (codesystem-issue-type)
	msg  string
	// secondary problems (schema findings) are dropped when the structure
	// check reported the same location.
	secondary bool
}
