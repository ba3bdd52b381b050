package patch

import (
	"errors"
	"fmt"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// FHIRPath Patch paths (fhirpatch.html) are FHIRPath expressions
// (fhirpath.html), compiled and evaluated by fhir/fhirpath in strict mode
// (an element the type does not define is an error) with locations
// tracked, so an operation knows where each selected element lives. A path
// must select elements of the resource: it is a chain of element names,
// integer indexers and the functions in pathFunctions, and resolve() is
// refused anywhere in it: a patch path SHALL NOT cross resources. Inside
// their arguments (where(...) criteria) any FHIRPath the engine implements
// may be used.

// pathFunctions are the functions a path may apply to select elements.
var pathFunctions = map[string]bool{
	"where": true, "first": true, "last": true, "tail": true, "skip": true, "take": true,
	"single": true, "extension": true, "ofType": true, "as": true,
}

// parsePath compiles a FHIRPath Patch path.
func parsePath(src string) (fhirpath.Expr, error) {
	e, err := fhirpath.Compile(src)
	if err != nil {
		if se, ok := errors.AsType[*fhirpath.SyntaxError](err); ok {
			return nil, errors.New(se.Msg) // the operation's message quotes the path
		}
		return nil, err
	}
	if err := checkPath(e); err != nil {
		return nil, err
	}
	return e, nil
}

// checkPath checks that e is a path selecting elements.
func checkPath(e fhirpath.Expr) error {
	switch x := e.(type) {
	case fhirpath.This:
		return nil
	case *fhirpath.Member:
		if x.X == nil {
			return nil
		}
		return checkPath(x.X)
	case *fhirpath.Index:
		lit, ok := x.Index.(*fhirpath.Literal)
		if !ok || len(lit.Items) != 1 || lit.Items[0].T != "integer" {
			return fmt.Errorf("an indexer in a patch path must be a non-negative integer")
		}
		return checkPath(x.X)
	case *fhirpath.TypeOp:
		if x.Op == "as" {
			return checkPath(x.X)
		}
	case *fhirpath.Call:
		if x.Name == "resolve" {
			return noResolve(x)
		}
		if !pathFunctions[x.Name] {
			return fmt.Errorf("function %s() is not supported in a patch path (it does not select elements)", x.Name)
		}
		for _, a := range x.Args {
			if err := noResolve(a); err != nil {
				return err
			}
		}
		if x.X == nil {
			return nil
		}
		return checkPath(x.X)
	case *fhirpath.Binary:
		return fmt.Errorf("operator %s is not supported in a patch path (it does not select elements)", x.Op)
	}
	return fmt.Errorf("a patch path must select elements of the resource (%T)", e)
}

// noResolve refuses resolve() anywhere in e.
func noResolve(e fhirpath.Expr) error {
	var sub []fhirpath.Expr
	switch x := e.(type) {
	case *fhirpath.Call:
		if x.Name == "resolve" {
			return fmt.Errorf("resolve() is not allowed in a patch path: it SHALL NOT cross resources (fhirpatch.html)")
		}
		sub = append([]fhirpath.Expr{x.X}, x.Args...)
	case *fhirpath.Member:
		sub = []fhirpath.Expr{x.X}
	case *fhirpath.Index:
		sub = []fhirpath.Expr{x.X, x.Index}
	case *fhirpath.Neg:
		sub = []fhirpath.Expr{x.X}
	case *fhirpath.TypeOp:
		sub = []fhirpath.Expr{x.X}
	case *fhirpath.Binary:
		sub = []fhirpath.Expr{x.L, x.R}
	}
	for _, s := range sub {
		if s == nil {
			continue
		}
		if err := noResolve(s); err != nil {
			return err
		}
	}
	return nil
}

// Get and Keys make *object a fhirpath.Object.
func (o *object) Get(k string) (any, bool) { return o.get(k) }
func (o *object) Keys() []string           { return o.keys }

// item is one node a path selected, with where it lives so an operation
// can change it: parent.vals[key] (or parent.vals[key][idx] when idx >= 0).
type item struct {
	val    any
	parent *object // nil for the root, and for values that are not elements
	key    string  // the JSON key (a choice element's key carries its type: valueQuantity)
	idx    int
	ctx    string   // model context for the children (a type or backbone path)
	def    *elemDef // nil for the root or elements outside the model
}

// evalError is a path that cannot be evaluated against this resource.
type evalError struct{ msg string }

func (e *evalError) Error() string { return e.msg }

func evalErrorf(format string, args ...any) error {
	return &evalError{fmt.Sprintf(format, args...)}
}

// evalRoot evaluates p against the resource root.
func evalRoot(m *model, root *object, p fhirpath.Expr) ([]item, error) {
	rt, _ := root.vals["resourceType"].(string)
	if n := firstName(p); n != "" && n[0] >= 'A' && n[0] <= 'Z' && m.IsType(n) && !m.IsA(rt, n) {
		return nil, evalErrorf("the path starts with %s but the resource is a %s", n, rt)
	}
	c := &fhirpath.Context{Model: m.Model, Root: fhirpath.Item{V: root, T: rt}, Strict: true, Track: true}
	out, err := c.Eval(p, []fhirpath.Item{c.Root})
	if err != nil {
		return nil, &evalError{err.Error()}
	}
	items := make([]item, len(out))
	for i, it := range out {
		items[i] = item{val: it.V, idx: -1, ctx: m.ctxOf(it.T)}
		if l := it.Loc; l != nil {
			items[i].parent, _ = l.Parent.(*object)
			items[i].key, items[i].idx, items[i].def = l.Key, l.Index, l.Elem
		}
	}
	return items, nil
}

// firstName is the name a path starts with ("Patient" of Patient.name), ""
// when it starts otherwise ($this).
func firstName(e fhirpath.Expr) string {
	for {
		switch x := e.(type) {
		case *fhirpath.Member:
			if x.X == nil {
				return x.Name
			}
			e = x.X
		case *fhirpath.Call:
			if x.X == nil {
				return ""
			}
			e = x.X
		case *fhirpath.Index:
			e = x.X
		case *fhirpath.TypeOp:
			e = x.X
		default:
			return ""
		}
	}
}
