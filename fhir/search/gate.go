package search

import "strings"

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
func gateFor(m *typeModel, e fpExpr, t string) ([]gateName, bool) {
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
func member(m *typeModel, t, name string) gateName {
	info, known := m.lookup(t, name)
	return gateName{name: name, prefix: !known || info.choice}
}

func gateOf(m *typeModel, e fpExpr, t string) (gateKind, []gateName) {
	switch x := e.(type) {
	case fpThis:
		return gateRoot, nil
	case *fpMember:
		if x.x == nil {
			if x.name != "" && x.name[0] >= 'A' && x.name[0] <= 'Z' && m.isType(x.name) {
				// A type name selects the focus when it is of that type.
				if m.isA(t, x.name) {
					return gateRoot, nil
				}
				return gateUnknown, nil
			}
			return gateNames, []gateName{member(m, t, x.name)}
		}
		kind, names := gateOf(m, x.x, t)
		switch kind {
		case gateRoot:
			return gateNames, []gateName{member(m, t, x.name)}
		case gateNames:
			return gateNames, names // a member of nothing is nothing
		}
	case *fpIndex:
		if kind, names := gateOf(m, x.x, t); kind == gateNames {
			return kind, names
		}
	case *fpTypeOp:
		if x.op == "as" {
			if names, ok := choiceAs(m, x.x, x.typ, t); ok {
				return gateNames, names
			}
			if kind, names := gateOf(m, x.x, t); kind == gateNames {
				return kind, names
			}
		}
	case *fpCall:
		if x.x == nil {
			return gateUnknown, nil
		}
		if x.name == "as" || x.name == "ofType" {
			if names, ok := choiceAs(m, x.x, x.typ, t); ok {
				return gateNames, names
			}
		}
		switch x.name {
		// Functions whose result is empty for an empty input
		// (fhirpath.html#functions).
		case "where", "select", "first", "last", "tail", "skip", "take", "single", "distinct",
			"ofType", "as", "resolve", "extension":
			if kind, names := gateOf(m, x.x, t); kind == gateNames {
				return kind, names
			}
		}
	case *fpBinary:
		if x.op == "|" {
			lk, ln := gateOf(m, x.l, t)
			rk, rn := gateOf(m, x.r, t)
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
func choiceAs(m *typeModel, e fpExpr, typ, t string) ([]gateName, bool) {
	mb, ok := e.(*fpMember)
	if !ok {
		return nil, false
	}
	if mb.x != nil {
		if kind, _ := gateOf(m, mb.x, t); kind != gateRoot {
			return nil, false
		}
	} else if mb.name == "" || mb.name[0] < 'a' || mb.name[0] > 'z' {
		return nil, false
	}
	info, known := m.lookup(t, mb.name)
	if !known || !info.choice {
		return nil, false
	}
	out := []gateName{{name: mb.name}}
	for _, ct := range info.types {
		if ct != "" && m.isA(ct, typ) {
			out = append(out, gateName{name: mb.name + strings.ToUpper(ct[:1]) + ct[1:]})
		}
	}
	return out, true
}

// compositeGate is the gate of a composite parameter evaluated on the
// resource itself: a tuple needs a value of every component
// (search.html#composite), so each component's gate must be open. nil: no
// gate (the composite's expression is not the resource, or a component
// has no gate).
func compositeGate(m *typeModel, cp *compiledParam, t string) [][]gateName {
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
