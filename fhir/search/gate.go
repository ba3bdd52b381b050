package search

import (
	"strings"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
	"github.com/fhirgate/fhirgate/fhir/model"
)

// Extraction gates. Most search parameters of a type read elements a given
// resource does not have (an Observation rarely has component, focus,
// specimen, device, hasMember, ...). A gate is the set of top-level
// elements a parameter's expression can read: when the resource has none
// of them, the expression is empty (fhirpath.html#path-selection: a path
// into an absent element selects nothing), so extraction skips it without
// evaluating. Only expressions for which that is certain get a gate; any
// other (functions that make something of nothing, such as exists() or
// iif(), variables, literals) is always evaluated.

// gateName is one top-level element of a gate. prefix: the element is a
// choice (value[x]) or unknown to the type model, so the resource may hold
// it as name + a type suffix (valueQuantity), as child() reads it.
type gateName struct {
	name   string
	prefix bool
}

// gateKind classifies what an expression yields, evaluated on the root.
type gateKind int

const (
	gateUnknown gateKind = iota // may be non-empty whatever the resource holds
	gateRoot                    // the root resource itself
	gateNames                   // empty unless one of the names is present
)

// gateFor returns the gate of e, an expression pruned to resource type t,
// or ok false when e has none.
func gateFor(m *model.Model, e fhirpath.Expr, t string) ([]gateName, bool) {
	kind, names := gateOf(m, e, t)
	if kind != gateNames {
		return nil, false
	}
	out := make([]gateName, 0, len(names))
	seen := map[gateName]bool{}
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, true
}

// member is the gate of a top-level element read by name.
func member(m *model.Model, t, name string) gateName {
	info, known := m.Element(t, name)
	return gateName{name: name, prefix: !known || info.Choice}
}

func gateOf(m *model.Model, e fhirpath.Expr, t string) (gateKind, []gateName) {
	switch x := e.(type) {
	case fhirpath.This:
		return gateRoot, nil
	case *fhirpath.Member:
		if x.X == nil {
			if x.Name != "" && x.Name[0] >= 'A' && x.Name[0] <= 'Z' && m.IsType(x.Name) {
				// A type name selects the focus when it is of that type.
				if m.IsA(t, x.Name) {
					return gateRoot, nil
				}
				return gateUnknown, nil
			}
			return gateNames, []gateName{member(m, t, x.Name)}
		}
		kind, names := gateOf(m, x.X, t)
		switch kind {
		case gateRoot:
			return gateNames, []gateName{member(m, t, x.Name)}
		case gateNames:
			return gateNames, names // a member of nothing is nothing
		}
	case *fhirpath.Index:
		if kind, names := gateOf(m, x.X, t); kind == gateNames {
			return kind, names
		}
	case *fhirpath.TypeOp:
		if x.Op == "as" {
			if names, ok := choiceAs(m, x.X, x.Type, t); ok {
				return gateNames, names
			}
			if kind, names := gateOf(m, x.X, t); kind == gateNames {
				return kind, names
			}
		}
	case *fhirpath.Call:
		if x.X == nil {
			return gateUnknown, nil
		}
		if x.Name == "as" || x.Name == "ofType" {
			if names, ok := choiceAs(m, x.X, x.Type, t); ok {
				return gateNames, names
			}
		}
		// Functions whose result is empty for an empty input
		// (fhirpath.html#functions; the engine's function table says which).
		if fhirpath.PropagatesEmpty(x.Name) {
			if kind, names := gateOf(m, x.X, t); kind == gateNames {
				return kind, names
			}
		}
	case *fhirpath.Binary:
		if x.Op == "|" {
			lk, ln := gateOf(m, x.L, t)
			rk, rn := gateOf(m, x.R, t)
			if lk == gateNames && rk == gateNames {
				return gateNames, append(append([]gateName(nil), ln...), rn...)
			}
		}
	}
	return gateUnknown, nil
}

// choiceAs is the gate of "e as typ" when e is a top-level choice element:
// only the JSON properties of the choice's types that are typ (or derive
// from it) can have a value (json.html#choice: value[x] is sent as
// valueQuantity, ...). The bare name stays, for content the model does not
// expect.
func choiceAs(m *model.Model, e fhirpath.Expr, typ, t string) ([]gateName, bool) {
	mb, ok := e.(*fhirpath.Member)
	if !ok {
		return nil, false
	}
	if mb.X != nil {
		if kind, _ := gateOf(m, mb.X, t); kind != gateRoot {
			return nil, false
		}
	} else if mb.Name == "" || mb.Name[0] < 'a' || mb.Name[0] > 'z' {
		return nil, false
	}
	info, known := m.Element(t, mb.Name)
	if !known || !info.Choice {
		return nil, false
	}
	out := []gateName{{name: mb.Name}}
	for _, ct := range info.Types {
		if ct != "" && m.IsA(ct, typ) {
			out = append(out, gateName{name: mb.Name + strings.ToUpper(ct[:1]) + ct[1:]})
		}
	}
	return out, true
}

// compositeGate is the gate of a composite parameter evaluated on the
// resource itself: a tuple needs a value of every component
// (search.html#composite), so each component's gate must be open. nil: no
// gate (the composite's expression is not the resource, or a component
// has no gate).
func compositeGate(m *model.Model, cp *compiledParam, t string) [][]gateName {
	if kind, _ := gateOf(m, cp.expr, t); kind != gateRoot || len(cp.comps) == 0 {
		return nil
	}
	out := make([][]gateName, len(cp.comps))
	for i, c := range cp.comps {
		g, ok := gateFor(m, c.expr, t)
		if !ok {
			return nil
		}
		out[i] = g
	}
	return out
}

// allOpen reports whether every gate of gates is open.
func allOpen(resource map[string]any, gates [][]gateName) bool {
	for _, g := range gates {
		if !open(resource, g) {
			return false
		}
	}
	return true
}

// open reports whether resource holds any element of the gate.
func open(resource map[string]any, gate []gateName) bool {
	for _, g := range gate {
		if _, ok := resource[g.name]; ok {
			return true
		}
	}
	for _, g := range gate {
		if !g.prefix {
			continue
		}
		for k := range resource {
			if len(k) > len(g.name) && k[len(g.name)] >= 'A' && k[len(g.name)] <= 'Z' && strings.HasPrefix(k, g.name) {
				return true
			}
		}
	}
	return false
}
