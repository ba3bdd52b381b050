package fhirpath

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/fhirgate/fhirgate/fhir/model"
)

// Item is one value of a FHIRPath collection (fhirpath.html#collections).
type Item struct {
	// V is the value: a JSON object (map[string]any, or an Object), a
	// string, a bool, a json.Number (as the JSON literal was written, so
	// decimals stay exact), or a Ref (what resolve() yields for a reference
	// it cannot follow). Arrays are never items: navigation flattens them.
	V any
	// T is the FHIR type of V when known ("" otherwise): a type name of the
	// model, or for a backbone element its path ("Patient.contact").
	T string
	// Loc is where V is in the tree, when the Context tracks locations;
	// nil otherwise, and for values that are not in the tree (literals,
	// function results) or are its root.
	Loc *Loc
}

// Loc is the location of an item: Parent[Key], or Parent[Key][Index] when
// the property holds an array.
type Loc struct {
	Parent any    // map[string]any or Object
	Key    string // the JSON property; a choice element's carries the type (valueQuantity)
	Index  int    // -1 when Parent[Key] is not an array
	// Elem is the element definition of Key in the parent's type, nil when
	// the model does not know it.
	Elem *model.Element
}

// Object is a JSON object of a tree other than the decoded values of
// encoding/json (such as an ordered tree that keeps member order for
// editing). Implementations must be pointers.
type Object interface {
	// Get returns the value of property key.
	Get(key string) (any, bool)
	// Keys lists the properties in document order; the caller does not
	// modify the slice.
	Keys() []string
}

// Ref is the result of resolve() for a reference the evaluator cannot
// follow (it has no store): the target's type and id, which is what
// "resolve() is Patient" needs (fhirpath.html#functions, resolve()).
type Ref struct{ Type, ID string }

// Context is what an evaluation runs in.
type Context struct {
	// Model types values and resolves choice elements; required.
	Model *model.Model
	// Root is %resource and %rootResource, against which contained
	// references ("#id") resolve.
	Root Item
	// Strict makes naming an element that the type of an item does not
	// define an error instead of an empty result (strict evaluation,
	// fhirpath.html#type-safety-and-strict-evaluation). Items of unknown
	// type are navigated leniently.
	Strict bool
	// Track records the location of every item navigation selects (Item.Loc).
	Track bool
}

// Eval evaluates e with focus as its input collection (fhirpath.html#evaluation).
func (c *Context) Eval(e Expr, focus []Item) ([]Item, error) { return e.eval(c, focus) }

// Evaluate is Eval of e on a resource: focus, %resource and %rootResource
// are the resource.
func Evaluate(m *model.Model, e Expr, resource map[string]any) ([]Item, error) {
	rt, _ := resource["resourceType"].(string)
	c := &Context{Model: m, Root: Item{V: resource, T: rt}}
	return e.eval(c, []Item{c.Root})
}

func (l *Literal) eval(*Context, []Item) ([]Item, error) { return l.Items, nil }

func (This) eval(_ *Context, focus []Item) ([]Item, error) { return focus, nil }

func (v *Var) eval(c *Context, focus []Item) ([]Item, error) {
	switch v.Name {
	case "resource", "rootResource":
		return []Item{c.Root}, nil
	case "context":
		return focus, nil
	case "ucum":
		return []Item{{V: "http://unitsofmeasure.org", T: "string"}}, nil
	case "sct":
		return []Item{{V: "http://snomed.info/sct", T: "string"}}, nil
	case "loinc":
		return []Item{{V: "http://loinc.org", T: "string"}}, nil
	}
	return nil, fmt.Errorf("unknown variable %%%s", v.Name)
}

// memberInfo is what the model says about a member name of one parent type.
type memberInfo struct {
	t string         // the parent type
	e *model.Element // nil: not an element of t
	// keyType is set when the name is a choice element's typed key
	// ("valueQuantity"): the type it names.
	keyType string
}

func (c *Context) memberInfo(t, name string) memberInfo {
	mi := memberInfo{t: t}
	if e, ok := c.Model.Element(t, name); ok {
		mi.e = e
	} else if e, typ, ok := c.Model.ChoiceKey(t, name); ok {
		mi.e, mi.keyType = e, typ
	}
	return mi
}

func (n *Member) eval(c *Context, focus []Item) ([]Item, error) {
	in := focus
	if n.X != nil {
		var err error
		if in, err = n.X.eval(c, focus); err != nil {
			return nil, err
		}
	} else if n.Name != "" && n.Name[0] >= 'A' && n.Name[0] <= 'Z' && c.Model.IsType(n.Name) {
		var out []Item
		for _, it := range in {
			if c.Model.IsA(TypeOf(it), n.Name) {
				out = append(out, it)
			}
		}
		return out, nil
	}
	if len(in) == 0 {
		return nil, nil
	}
	var out []Item // sized by the first values appended (appendValue)
	for _, it := range in {
		if it.T == "" {
			out = c.childOf(it, n.Name, nil, out)
			continue
		}
		mi := n.last.Load()
		if mi == nil || mi.t != it.T {
			info := c.memberInfo(it.T, n.Name)
			mi = &info
			n.last.Store(mi)
		}
		if mi.e == nil && c.Strict && c.Model.HasElements(it.T) {
			return nil, fmt.Errorf("%s has no element %q", it.T, n.Name)
		}
		out = c.childOf(it, n.Name, mi, out)
	}
	return out, nil
}

// Child appends the values of element name of it to out (name "value"
// selects valueQuantity of a choice element, typed Quantity).
func (c *Context) Child(it Item, name string, out []Item) []Item {
	if it.T == "" {
		return c.childOf(it, name, nil, out)
	}
	mi := c.memberInfo(it.T, name)
	return c.childOf(it, name, &mi, out)
}

// childOf appends the values of element name of it, with the model's
// answer for (it.T, name) looked up (nil when it.T is unknown).
func (c *Context) childOf(it Item, name string, mi *memberInfo, out []Item) []Item {
	var e *model.Element
	if mi != nil {
		e = mi.e
	}
	switch obj := it.V.(type) {
	case map[string]any:
		if v, ok := obj[name]; ok {
			return c.appendValue(out, v, keyType(it, name, mi), it.V, name, e)
		}
		if e != nil && (!e.Choice || mi.keyType != "") {
			return out
		}
		for k, v := range obj {
			if t := c.choiceType(name, k, e); t != "" {
				out = c.appendValue(out, v, t, it.V, k, e)
			}
		}
	case Object:
		if v, ok := obj.Get(name); ok {
			return c.appendValue(out, v, keyType(it, name, mi), it.V, name, e)
		}
		if e != nil && (!e.Choice || mi.keyType != "") {
			return out
		}
		for _, k := range obj.Keys() {
			if t := c.choiceType(name, k, e); t != "" {
				v, _ := obj.Get(k)
				out = c.appendValue(out, v, t, it.V, k, e)
			}
		}
	}
	return out
}

// keyType is the type of the value of property name, present in it.
func keyType(it Item, name string, mi *memberInfo) string {
	if mi != nil && mi.e != nil {
		switch {
		case mi.keyType != "":
			return mi.keyType
		case !mi.e.Choice && len(mi.e.Types) == 1:
			return mi.e.Types[0]
		}
	}
	switch {
	case name == "extension" || name == "modifierExtension":
		return "Extension"
	case name == "id" || name == "url" && it.T == "Extension":
		return "string"
	}
	return ""
}

// choiceType is the type of property k when it is the choice element name
// with a type suffix (formats.html#choice: value -> valueQuantity), "" when
// it is not. e is the choice element, or nil when the model does not know
// the element (then any type name is accepted as the suffix).
func (c *Context) choiceType(name, k string, e *model.Element) string {
	if len(k) <= len(name) || !strings.HasPrefix(k, name) {
		return ""
	}
	suffix := k[len(name):]
	if suffix[0] < 'A' || suffix[0] > 'Z' {
		return ""
	}
	if e == nil {
		t, _ := c.Model.ChoiceType(suffix)
		return t
	}
	for _, ct := range e.Types {
		if len(ct) == len(suffix) && ct[1:] == suffix[1:] && unicode.ToUpper(rune(ct[0])) == rune(suffix[0]) {
			return ct
		}
	}
	return ""
}

// appendValue appends the value v of parent[key], flattening arrays; a
// resource held by an element of type Resource is typed by its resourceType.
func (c *Context) appendValue(out []Item, v any, t string, parent any, key string, e *model.Element) []Item {
	if a, ok := v.([]any); ok {
		if cap(out)-len(out) < len(a) {
			out = slices.Grow(out, len(a))
		}
		for i, x := range a {
			out = c.appendOne(out, x, t, parent, key, i, e)
		}
		return out
	}
	return c.appendOne(out, v, t, parent, key, -1, e)
}

func (c *Context) appendOne(out []Item, v any, t string, parent any, key string, idx int, e *model.Element) []Item {
	switch v.(type) {
	case nil:
		return out // null in a primitive array whose extensions are in "_key"
	case []any:
		return out // not FHIR JSON
	}
	if t == "" || t == "Resource" || t == "DomainResource" {
		if rt, ok := member(v, "resourceType").(string); ok {
			t = rt
		}
	}
	it := Item{V: v, T: t}
	if c.Track {
		it.Loc = &Loc{Parent: parent, Key: key, Index: idx, Elem: e}
	}
	return append(out, it)
}

// member is property key of v when v is an object (nil otherwise).
func member(v any, key string) any {
	switch o := v.(type) {
	case map[string]any:
		return o[key]
	case Object:
		x, _ := o.Get(key)
		return x
	}
	return nil
}

// TypeOf is the item's FHIR type: T, or when unknown the type the JSON
// value stands for (a primitive, a resource by its resourceType).
func TypeOf(it Item) string {
	if it.T != "" {
		return it.T
	}
	if t, ok := PrimitiveType(it.V); ok {
		return t
	}
	switch x := it.V.(type) {
	case Ref:
		return x.Type
	default:
		if rt, ok := member(x, "resourceType").(string); ok {
			return rt
		}
	}
	return ""
}

// PrimitiveType is the FHIR primitive type a JSON scalar stands for
// (json.html#primitive): string, boolean, decimal or integer.
func PrimitiveType(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return "string", true
	case bool:
		return "boolean", true
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return "decimal", true
		}
		return "integer", true
	case float64:
		return "decimal", true
	}
	return "", false
}

func (n *Index) eval(c *Context, focus []Item) ([]Item, error) {
	in, err := n.X.eval(c, focus)
	if err != nil {
		return nil, err
	}
	ix, err := n.Index.eval(c, focus)
	if err != nil {
		return nil, err
	}
	i, ok := intOf(ix)
	if !ok {
		return nil, fmt.Errorf("indexer needs an integer")
	}
	if i < 0 || i >= len(in) {
		return nil, nil
	}
	return in[i : i+1], nil
}

func (n *Neg) eval(c *Context, focus []Item) ([]Item, error) {
	in, err := n.X.eval(c, focus)
	if err != nil || len(in) == 0 {
		return nil, err
	}
	if len(in) != 1 {
		return nil, fmt.Errorf("unary minus needs a single number")
	}
	x, ok := numOf(in[0].V)
	if !ok {
		return nil, fmt.Errorf("unary minus needs a number")
	}
	return []Item{{V: negate(x), T: numType(in[0])}}, nil
}

func (n *TypeOp) eval(c *Context, focus []Item) ([]Item, error) {
	in, err := n.X.eval(c, focus)
	if err != nil {
		return nil, err
	}
	if n.Op == "is" {
		return isType(c, in, n.Type, "'is'")
	}
	// "as" on a collection filters it; R4 expressions use it on repeating
	// elements (e.g. useContext.value as Quantity), so be lenient.
	return ofType(c, in, n.Type), nil
}

func isType(c *Context, in []Item, typ, what string) ([]Item, error) {
	switch len(in) {
	case 0:
		return nil, nil
	case 1:
		return boolItem(c.Model.IsA(TypeOf(in[0]), typ)), nil
	}
	return nil, fmt.Errorf("%s needs a single item, got %d", what, len(in))
}

func ofType(c *Context, in []Item, typ string) []Item {
	var out []Item
	for _, it := range in {
		if c.Model.IsA(TypeOf(it), typ) {
			out = append(out, it)
		}
	}
	return out
}

var (
	trueItems  = []Item{{V: true, T: "boolean"}}
	falseItems = []Item{{V: false, T: "boolean"}}
)

// boolItem is the singleton collection of b; callers must not modify it.
func boolItem(b bool) []Item {
	if b {
		return trueItems
	}
	return falseItems
}

func (n *Binary) eval(c *Context, focus []Item) ([]Item, error) {
	l, err := n.L.eval(c, focus)
	if err != nil {
		return nil, err
	}
	switch n.Op {
	case "and", "or", "xor", "implies":
		return n.logic(c, focus, l)
	}
	r, err := n.R.eval(c, focus)
	if err != nil {
		return nil, err
	}
	switch n.Op {
	case "|":
		return union(l, r), nil
	case "=", "!=", "~", "!~":
		if (n.Op == "=" || n.Op == "!=") && (len(l) == 0 || len(r) == 0) {
			return nil, nil
		}
		eq := len(l) == len(r)
		for i := 0; eq && i < len(l); i++ {
			if n.Op == "~" || n.Op == "!~" {
				eq = equivalent(l[i], r[i])
			} else {
				eq = equal(l[i], r[i])
			}
		}
		if n.Op == "!=" || n.Op == "!~" {
			eq = !eq
		}
		return boolItem(eq), nil
	case "<", ">", "<=", ">=":
		if len(l) == 0 || len(r) == 0 {
			return nil, nil
		}
		if len(l) != 1 || len(r) != 1 {
			return nil, fmt.Errorf("%s needs single items", n.Op)
		}
		cmp, ok := compare(l[0], r[0])
		if !ok {
			return nil, nil
		}
		switch n.Op {
		case "<":
			return boolItem(cmp < 0), nil
		case ">":
			return boolItem(cmp > 0), nil
		case "<=":
			return boolItem(cmp <= 0), nil
		}
		return boolItem(cmp >= 0), nil
	case "in", "contains":
		elem, coll := l, r
		if n.Op == "contains" {
			elem, coll = r, l
		}
		if len(elem) == 0 {
			return nil, nil
		}
		if len(elem) != 1 {
			return nil, fmt.Errorf("%s needs a single item", n.Op)
		}
		for _, it := range coll {
			if equal(it, elem[0]) {
				return boolItem(true), nil
			}
		}
		return boolItem(false), nil
	case "&":
		ls, _ := stringOf(l)
		rs, _ := stringOf(r)
		return []Item{{V: ls + rs, T: "string"}}, nil
	case "+", "-", "*", "/", "div", "mod":
		return arith(n.Op, l, r)
	}
	return nil, fmt.Errorf("unsupported operator %s", n.Op)
}

// logic implements three-valued and/or/xor/implies (fhirpath.html#boolean-logic).
func (n *Binary) logic(c *Context, focus []Item, l []Item) ([]Item, error) {
	lb, lok, err := boolOf(l)
	if err != nil {
		return nil, err
	}
	// Short-circuit where the result is known.
	switch {
	case n.Op == "and" && lok && !lb:
		return boolItem(false), nil
	case n.Op == "or" && lok && lb:
		return boolItem(true), nil
	case n.Op == "implies" && lok && !lb:
		return boolItem(true), nil
	}
	r, err := n.R.eval(c, focus)
	if err != nil {
		return nil, err
	}
	rb, rok, err := boolOf(r)
	if err != nil {
		return nil, err
	}
	switch n.Op {
	case "and":
		if rok && !rb {
			return boolItem(false), nil
		}
		if lok && rok {
			return boolItem(true), nil
		}
	case "or":
		if rok && rb {
			return boolItem(true), nil
		}
		if lok && rok {
			return boolItem(false), nil
		}
	case "xor":
		if lok && rok {
			return boolItem(lb != rb), nil
		}
	case "implies":
		if rok && rb {
			return boolItem(true), nil
		}
		if lok && rok {
			return boolItem(!rb), nil
		}
	}
	return nil, nil
}

// boolOf converts a collection to a boolean (fhirpath.html#singleton):
// ok is false for the empty collection.
func boolOf(items []Item) (val, ok bool, err error) {
	switch len(items) {
	case 0:
		return false, false, nil
	case 1:
		if b, isBool := items[0].V.(bool); isBool {
			return b, true, nil
		}
		return true, true, nil
	}
	return false, false, fmt.Errorf("expected a single boolean, got %d items", len(items))
}

// stringOf is the string form of a singleton primitive (toString()).
func stringOf(items []Item) (string, bool) {
	if len(items) != 1 {
		return "", false
	}
	switch x := items[0].V.(type) {
	case string:
		return x, true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	}
	if n, ok := numOf(items[0].V); ok {
		return string(n), true
	}
	return "", false
}

// Resolve follows a Reference (or a canonical or uri) as far as the
// evaluator can without a store: a contained reference ("#id") yields the
// contained resource of the Root, a resource its own value, others a Ref
// carrying the target type and id (fhirpath.html#functions, resolve()).
func (c *Context) Resolve(it Item) (Item, bool) {
	var ref, typ string
	switch x := it.V.(type) {
	case string:
		ref = x
	case map[string]any, Object:
		if rt, ok := member(x, "resourceType").(string); ok {
			return Item{V: x, T: rt}, true
		}
		ref, _ = member(x, "reference").(string)
		typ, _ = member(x, "type").(string)
	default:
		return Item{}, false
	}
	if id, ok := strings.CutPrefix(ref, "#"); ok {
		contained, _ := member(c.Root.V, "contained").([]any)
		for _, r := range contained {
			if member(r, "id") == id {
				rt, _ := member(r, "resourceType").(string)
				return Item{V: r, T: rt}, true
			}
		}
		return Item{}, false
	}
	rt, id := ReferenceTypeID(ref)
	if rt == "" || !c.Model.IsResource(rt) {
		rt = typ
	}
	if rt == "" {
		return Item{}, false
	}
	return Item{V: Ref{Type: rt, ID: id}, T: rt}, true
}

// ReferenceTypeID extracts Type and id from "Type/id", "Type/id/_history/v"
// or an absolute URL ending in one of these (references.html#literal); a
// canonical's "|version" is ignored. Both are "" when ref is none of these.
func ReferenceTypeID(ref string) (typ, id string) {
	ref, _, _ = strings.Cut(ref, "|")
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	ref = strings.TrimSuffix(ref, "/")
	slash := strings.LastIndexByte(ref, '/')
	if slash <= 0 {
		return "", ""
	}
	id = ref[slash+1:]
	rest := ref[:slash]
	typ = rest[strings.LastIndexByte(rest, '/')+1:]
	if typ == "" || typ[0] < 'A' || typ[0] > 'Z' || id == "" {
		return "", ""
	}
	return typ, id
}
