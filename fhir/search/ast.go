// Package search holds the backend-neutral search model of fhirgate
// (R4 search.html): the parameter registry, value extraction at write time
// (Index), and the query AST that a store compiles (Expr).
//
// The AST that reaches a store contains only leaf conditions over values a
// resource carries in its own Index: chains, _has and _include are resolved
// by the engine above the store into ID/Ref conditions, so any backend that
// can compile these nodes supports the full search feature set. Match
// evaluates the same AST in memory with the store's semantics (access
// decisions on single resources). Parameter expressions are evaluated by
// the one FHIRPath engine, fhir/fhirpath (fhirpath.html), over the one R4
// model, fhir/model.
package search

import (
	"strings"
	"time"
)

// Expr is a node of a search filter.
type Expr interface{ isExpr() }

// And matches when every argument matches (repeated parameters, search.html#combining).
type And struct{ Args []Expr }

// Or matches when any argument matches (comma-separated values).
type Or struct{ Args []Expr }

// Not negates its argument (the :not modifier, "ne" prefixes).
type Not struct{ Arg Expr }

// Const is a constant true/false (e.g. an empty chain result is Const{false}).
type Const struct{ Value bool }

// StringMode selects string matching (search.html#string).
type StringMode int

const (
	StringStartsWith StringMode = iota // default: case/accent-insensitive prefix
	StringExact                        // :exact, exact and case-sensitive
	StringContains                     // :contains, case/accent-insensitive substring
)

// StringCond matches Index.Str entries of Param.
// Value is already normalised with Fold for StartsWith/Contains.
type StringCond struct {
	Param string
	Value string
	Mode  StringMode
}

// TokenCond matches Index.Tok entries of Param (search.html#token).
// System nil: any system. System "" (non-nil): no system ("|code").
// Code nil: any code ("system|"). Text non-empty: the :text modifier
// (folded prefix match against display/text). OfType: :of-type
// (identifier type system|code in TypeSystem/TypeCode, value in Code).
type TokenCond struct {
	Param      string
	System     *string
	Code       *string
	Text       string
	OfType     bool
	TypeSystem string
	TypeCode   string
	// CodeFold: match the code case-insensitively (used by some systems); default exact.
	CodeFold bool
}

// RefCond matches Index.Ref entries of Param (search.html#reference).
// Any of Targets ("Type/id"), any of URLs (absolute or canonical URL, with
// Version for canonical "url|version"), or, with Identifier, a
// Reference.identifier (:identifier) matched like a token.
type RefCond struct {
	Param      string
	Targets    []string // "Patient/123"
	Types      []string // restrict to these target types (":Patient" with a bare id)
	IDs        []string // bare ids (any type unless Types set)
	URLs       []string // absolute / canonical
	Version    string
	Identifier *TokenCond // :identifier (Param ignored inside)
	// Below: canonical url prefix (":below" on canonical references)
	Below bool
}

// RefAlternatives is a RefCond normalised into the alternatives every
// backend answers the same way (search.html#reference): one of Exact as
// the whole reference ("Type/id" restricted to Types, or a URL), one of
// AnyTypeIDs as the id of a reference of any type, a reference starting
// with one of Below (canonical :below), or one of Versioned with the
// version Version. Identifier is matched separately.
type RefAlternatives struct {
	Exact, AnyTypeIDs, Below, Versioned []string
}

// Alternatives normalises x (the matcher and every store use it, so they
// cannot disagree on what a reference condition means).
func (x RefCond) Alternatives() RefAlternatives {
	var a RefAlternatives
	typeOK := func(t string) bool {
		if len(x.Types) == 0 {
			return true
		}
		for _, want := range x.Types {
			if want == t {
				return true
			}
		}
		return false
	}
	for _, t := range x.Targets {
		typ, _, _ := strings.Cut(t, "/")
		if typeOK(typ) {
			a.Exact = append(a.Exact, t)
		}
	}
	if len(x.Types) > 0 {
		for _, id := range x.IDs {
			for _, t := range x.Types {
				a.Exact = append(a.Exact, t+"/"+id)
			}
		}
	} else {
		a.AnyTypeIDs = x.IDs
	}
	switch {
	case len(x.URLs) == 0:
	case x.Below:
		a.Below = x.URLs
	case x.Version != "":
		a.Versioned = x.URLs
	default:
		a.Exact = append(a.Exact, x.URLs...)
	}
	return a
}

// Prefix is a comparison prefix (search.html#prefix).
type Prefix string

const (
	Eq Prefix = "eq"
	Ne Prefix = "ne"
	Gt Prefix = "gt"
	Lt Prefix = "lt"
	Ge Prefix = "ge"
	Le Prefix = "le"
	Sa Prefix = "sa"
	Eb Prefix = "eb"
	Ap Prefix = "ap"
)

// DateCond compares the search range [Lo, Hi) with the indexed ranges of
// Param (search.html#date). Lo/Hi come from the precision of the value.
type DateCond struct {
	Param  string
	Prefix Prefix
	Lo, Hi time.Time // inclusive low, exclusive high
}

// NumberCond compares numbers (search.html#number): Value is the given
// number, [Lo, Hi) its implicit precision range.
type NumberCond struct {
	Param         string
	Prefix        Prefix
	Value, Lo, Hi float64
}

// QuantityCond compares quantities (search.html#quantity). System/Code
// empty: any unit; Code set and System empty: unit matches code or unit text.
type QuantityCond struct {
	Param         string
	Prefix        Prefix
	Value, Lo, Hi float64
	System, Code  string
}

// URIMode selects uri matching (search.html#uri).
type URIMode int

const (
	URIExact URIMode = iota
	URIBelow         // :below, value is a prefix of the stored uri
	URIAbove         // :above, stored uri is a prefix of value
)

// URICond matches Index.URI entries of Param.
type URICond struct {
	Param string
	Value string
	Mode  URIMode
}

// CompositeCond matches one Index.Comp entry of Param whose components
// satisfy every Parts[i] (search.html#composite). Each part is a leaf
// condition whose Param is the component index ("0", "1", ...).
type CompositeCond struct {
	Param string
	Parts []Expr
}

// MissingCond is :missing (search.html#missing): Missing=true matches
// resources with no value for Param.
type MissingCond struct {
	Param   string
	Missing bool
}

// IDCond matches the logical id (_id) of the resource.
type IDCond struct{ IDs []string }

// KeyCond matches resources by "Type/id" (used for _include targets and
// resolved chains across several types).
type KeyCond struct{ Keys []string }

// TypeCond matches resources of any of the given types (system-level
// history and search combine per-type access constraints with it).
type TypeCond struct{ Types []string }

// LastUpdatedCond compares meta.lastUpdated (the _lastUpdated parameter).
type LastUpdatedCond struct {
	Prefix Prefix
	Lo, Hi time.Time
}

// CompartmentCond matches resources in any of the given compartments
// ("Patient/123"), per Index.Compartments (compartmentdefinition.html).
// It is how access control confines a caller to patients.
type CompartmentCond struct{ Compartments []string }

// ReleaseCond matches resources whose release state makes them visible to
// Audience ("patient" or "proxy") at Now (release rules, policy package).
type ReleaseCond struct {
	Audience string
	Now      time.Time
}

// SecurityCond matches resources carrying any of the given meta.security
// labels ("system|code"). Used with Not to withhold sensitive data.
type SecurityCond struct{ Labels []string }

func (And) isExpr()             {}
func (Or) isExpr()              {}
func (Not) isExpr()             {}
func (Const) isExpr()           {}
func (StringCond) isExpr()      {}
func (TokenCond) isExpr()       {}
func (RefCond) isExpr()         {}
func (DateCond) isExpr()        {}
func (NumberCond) isExpr()      {}
func (QuantityCond) isExpr()    {}
func (URICond) isExpr()         {}
func (CompositeCond) isExpr()   {}
func (MissingCond) isExpr()     {}
func (IDCond) isExpr()          {}
func (KeyCond) isExpr()         {}
func (TypeCond) isExpr()        {}
func (LastUpdatedCond) isExpr() {}
func (CompartmentCond) isExpr() {}
func (ReleaseCond) isExpr()     {}
func (SecurityCond) isExpr()    {}

// SortKey is one _sort key (search.html#sort). Param "_id" and
// "_lastUpdated" are special; others sort by Index.Sort[Param].
type SortKey struct {
	Param string
	Desc  bool
}

// AllOf builds an And, flattening nils.
func AllOf(xs ...Expr) Expr {
	var args []Expr
	for _, x := range xs {
		if x == nil {
			continue
		}
		if a, ok := x.(And); ok {
			args = append(args, a.Args...)
			continue
		}
		args = append(args, x)
	}
	switch len(args) {
	case 0:
		return nil
	case 1:
		return args[0]
	}
	return And{Args: args}
}
