package search

import "time"

// Subject is what a Matcher needs of one stored version.
type Subject struct {
	Type, ID    string
	LastUpdated time.Time
	Index       *Index
	// PatientVisible / ProxyVisible: release instants (zero: immediate).
	PatientVisible, ProxyVisible time.Time
}

// Eval decides in memory whether s matches e, with the same semantics as a
// store compiling e (it is Match; see match.go). The pipeline uses it for
// single-resource decisions (read, vread, and checking that a write lands
// inside the caller's reach). Expressions no store compiles return an
// error; callers must fail closed.
func Eval(e Expr, s Subject) (bool, error) { return Match(e, s) }
