package patch

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// FHIRPathPatch applies a FHIRPath Patch (fhirpatch.html): a Parameters
// resource whose parameters are each named "operation" with the parts type
// (add | insert | delete | replace | move), path (a FHIRPath), name, value
// (value[x], a resource, or for anonymous elements nested parts), index,
// source and destination. Operations apply in order; each path must select a
// single element, except that delete of a path that selects nothing does
// nothing (fhirpatch.html: "Path of the element to delete (if found)").
//
// Values are checked against the R4 element model: the element must exist
// on the type, a value's type must be one the element allows, add to a
// non-repeating element that has a value is refused, and a choice element
// (Observation.value[x]) gets the key of the value's type (valueQuantity).
// Primitive extensions ("_given") stay aligned with their values.
//
// At most MaxOperations operations; the patched resource may not exceed
// MaxSize (default DefaultMaxSize). Unlike JSON Patch, a FHIRPath Patch
// has no copy: what it adds comes from the Parameters, so the result is
// checked once, at the end.
func FHIRPathPatch(doc, parameters []byte, opts ...Option) ([]byte, error) {
	lim := newLimits(opts)
	rootV, err := decode(doc)
	if err != nil {
		return nil, storedError(err)
	}
	root, ok := rootV.(*object)
	if !ok {
		return nil, storedError(fmt.Errorf("the stored resource is %T, not a JSON object", rootV))
	}
	ops, err := parseFHIRPatch(parameters)
	if err != nil {
		return nil, err
	}
	orig := clone(root)
	m := getModel()
	for _, op := range ops {
		if err := op.apply(m, root); err != nil {
			return nil, err
		}
	}
	if err := checkIdentity(orig, root); err != nil {
		return nil, err
	}
	out := encode(root)
	if len(out) > lim.maxSize {
		return nil, lim.tooLarge("FHIRPath Patch")
	}
	return out, nil
}

// pvalue is the value part of an operation.
type pvalue struct {
	typ  string // FHIR type code ("date", "HumanName", "Resource"); "" for anonymous parts
	val  any
	ext  any   // the "_value[x]" primitive extension, or nil
	anon []any // nested parts (anonymous element) when typ == ""
	set  bool
}

type fpOp struct {
	index       int
	typ         string
	rawPath     string
	path        fhirpath.Expr
	name        string
	value       pvalue
	idx         *int
	source      *int
	destination *int
}

func (o *fpOp) expr() string { return fmt.Sprintf("Parameters.parameter[%d]", o.index) }

func (o *fpOp) fail(kind fhir.Kind, format string, args ...any) *fhir.Error {
	return fhir.Errorf(kind, "FHIRPath Patch operation %d (%s %s): %s", o.index, o.typ, o.rawPath, fmt.Sprintf(format, args...)).At(o.expr())
}

func parseFHIRPatch(data []byte) ([]*fpOp, error) {
	v, err := decode(data)
	if err != nil {
		return nil, fhir.Errorf(fhir.KindInvalid, "the FHIRPath Patch is not valid: %v", err).Wrap(err)
	}
	p, ok := v.(*object)
	if !ok || p.vals["resourceType"] != "Parameters" {
		return nil, fhir.Invalid("Parameters", "a FHIRPath Patch must be a Parameters resource (fhirpatch.html)")
	}
	params, ok := p.vals["parameter"].([]any)
	if _, present := p.vals["parameter"]; present && !ok {
		return nil, fhir.Invalid("Parameters.parameter", "Parameters.parameter must be an array")
	}
	if len(params) > MaxOperations {
		return nil, tooManyOps("FHIRPath Patch", len(params), "Parameters.parameter")
	}
	var ops []*fpOp
	for i, raw := range params {
		at := fmt.Sprintf("Parameters.parameter[%d]", i)
		po, ok := raw.(*object)
		if !ok {
			return nil, fhir.Invalid(at, "a parameter must be an object")
		}
		if po.vals["name"] != "operation" {
			return nil, fhir.Invalid(at+".name", "FHIRPath Patch parameter %d must be named \"operation\"", i)
		}
		parts, ok := po.vals["part"].([]any)
		if !ok {
			return nil, fhir.Invalid(at+".part", "FHIRPath Patch operation %d has no parts", i)
		}
		op := &fpOp{index: i}
		seen := map[string]bool{}
		for j, praw := range parts {
			pat := fmt.Sprintf("%s.part[%d]", at, j)
			part, ok := praw.(*object)
			if !ok {
				return nil, fhir.Invalid(pat, "a part must be an object")
			}
			name, _ := part.vals["name"].(string)
			if seen[name] {
				return nil, fhir.Invalid(pat, "FHIRPath Patch operation %d: part %q is repeated", i, name)
			}
			seen[name] = true
			switch name {
			case "type", "path", "name":
				s, err := partString(part)
				if err != nil {
					return nil, fhir.Invalid(pat, "FHIRPath Patch operation %d: part %q: %v", i, name, err)
				}
				switch name {
				case "type":
					op.typ = s
				case "path":
					op.rawPath = s
				case "name":
					op.name = s
				}
			case "index", "source", "destination":
				n, err := partInt(part)
				if err != nil {
					return nil, fhir.Invalid(pat, "FHIRPath Patch operation %d: part %q: %v", i, name, err)
				}
				switch name {
				case "index":
					op.idx = &n
				case "source":
					op.source = &n
				case "destination":
					op.destination = &n
				}
			case "value":
				pv, err := partValue(part)
				if err != nil {
					return nil, fhir.Invalid(pat, "FHIRPath Patch operation %d: part \"value\": %v", i, err)
				}
				op.value = pv
			default:
				return nil, fhir.Invalid(pat+".name", "FHIRPath Patch operation %d: unknown part %q", i, name)
			}
		}
		need := func(ok bool, part string) error {
			if !ok {
				return fhir.Invalid(at, "FHIRPath Patch operation %d (%s): part %q is required", i, op.typ, part)
			}
			return nil
		}
		if err := need(op.typ != "", "type"); err != nil {
			return nil, err
		}
		if err := need(op.rawPath != "", "path"); err != nil {
			return nil, err
		}
		var errs []error
		switch op.typ {
		case "add":
			errs = append(errs, need(op.name != "", "name"), need(op.value.set, "value"))
		case "insert":
			errs = append(errs, need(op.value.set, "value"), need(op.idx != nil, "index"))
		case "delete":
		case "replace":
			errs = append(errs, need(op.value.set, "value"))
		case "move":
			errs = append(errs, need(op.source != nil, "source"), need(op.destination != nil, "destination"))
		default:
			return nil, fhir.Invalid(at, "FHIRPath Patch operation %d: unknown type %q (add | insert | delete | replace | move)", i, op.typ)
		}
		if err := firstErr(errs); err != nil {
			return nil, err
		}
		if op.path, err = parsePath(op.rawPath); err != nil {
			return nil, fhir.Invalid(at, "FHIRPath Patch operation %d: path %q: %v", i, op.rawPath, err)
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// partString reads valueString / valueCode (or any string-valued value[x]).
func partString(part *object) (string, error) {
	for _, k := range part.keys {
		if strings.HasPrefix(k, "value") && len(k) > 5 {
			if s, ok := part.vals[k].(string); ok {
				return s, nil
			}
			return "", fmt.Errorf("%s must be a string", k)
		}
	}
	return "", fmt.Errorf("a value[x] is required")
}

func partInt(part *object) (int, error) {
	for _, k := range part.keys {
		if strings.HasPrefix(k, "value") && len(k) > 5 {
			n, ok := part.vals[k].(json.Number)
			if !ok {
				return 0, fmt.Errorf("%s must be an integer", k)
			}
			i, err := strconv.Atoi(string(n))
			if err != nil || i < 0 {
				return 0, fmt.Errorf("%s must be a non-negative integer, not %s", k, n)
			}
			return i, nil
		}
	}
	return 0, fmt.Errorf("valueInteger is required")
}

// partValue reads a value part: value[x] (with its _value[x]), a resource,
// or nested parts (an anonymous element, fhirpatch.html).
func partValue(part *object) (pvalue, error) {
	m := getModel()
	var pv pvalue
	for _, k := range part.keys {
		switch {
		case k == "resource":
			if _, ok := part.vals[k].(*object); !ok {
				return pv, fmt.Errorf("resource must be an object")
			}
			pv = pvalue{typ: "Resource", val: clone(part.vals[k]), set: true}
		case k == "part":
			parts, ok := part.vals[k].([]any)
			if !ok {
				return pv, fmt.Errorf("part must be an array")
			}
			pv = pvalue{anon: parts, set: true}
		case strings.HasPrefix(k, "value") && len(k) > 5:
			t, ok := m.ChoiceType(k[5:])
			if !ok {
				return pv, fmt.Errorf("%s is not a known value[x] type", k)
			}
			pv = pvalue{typ: t, val: clone(part.vals[k]), ext: clone(part.vals["_"+k]), set: true}
			if err := checkShape(m, t, pv.val); err != nil {
				return pv, fmt.Errorf("%s: %v", k, err)
			}
		}
	}
	if !pv.set {
		return pv, fmt.Errorf("a value[x], resource or part is required")
	}
	return pv, nil
}

// checkShape checks that a value's JSON form suits its type (json.html).
func checkShape(m *model, t string, v any) error {
	if m.isPrimitive(t) {
		switch jsonKind(t) {
		case "bool":
			if _, ok := v.(bool); !ok {
				return fmt.Errorf("must be a JSON boolean")
			}
		case "number":
			if _, ok := v.(json.Number); !ok {
				return fmt.Errorf("must be a JSON number")
			}
		default:
			if _, ok := v.(string); !ok {
				return fmt.Errorf("must be a JSON string")
			}
		}
		return nil
	}
	if _, ok := v.(*object); !ok {
		return fmt.Errorf("must be a JSON object")
	}
	return nil
}

// target is where add / insert / move write: the element name of a
// parent object.
type target struct {
	parent *object
	ctx    string
	def    *elemDef
	base   string // element name without type suffix ("value", "identifier")
	key    string // JSON key (choice key resolved for the value's type)
}

func (o *fpOp) apply(m *model, root *object) error {
	switch o.typ {
	case "add":
		return o.add(m, root)
	case "insert", "move":
		return o.listOp(m, root)
	case "delete":
		items, err := o.eval(m, root)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return nil
		}
		if len(items) > 1 {
			return o.fail(fhir.KindUnprocessable, "the path selects %d elements; only a single element can be deleted", len(items))
		}
		it := items[0]
		if it.parent == nil {
			return o.fail(fhir.KindUnprocessable, "the resource itself cannot be deleted")
		}
		removeItem(it.parent, it.key, it.idx)
		return nil
	case "replace":
		items, err := o.eval(m, root)
		if err != nil {
			return err
		}
		if len(items) != 1 {
			return o.fail(fhir.KindUnprocessable, "the path selects %d elements; replace needs exactly one", len(items))
		}
		it := items[0]
		if it.parent == nil {
			return o.fail(fhir.KindUnprocessable, "the resource itself cannot be replaced")
		}
		val, key, ext, err := o.build(m, it.def, it.key)
		if err != nil {
			return err
		}
		if it.idx >= 0 {
			it.parent.vals[it.key].([]any)[it.idx] = val
			setExtAt(it.parent, it.key, it.idx, ext)
			return nil
		}
		if key != it.key {
			it.parent.rename(it.key, key, val)
			it.parent.del("_" + it.key)
		} else {
			it.parent.vals[key] = val
		}
		if ext != nil {
			it.parent.setAfter(key, "_"+key, ext)
		} else {
			it.parent.del("_" + key)
		}
		return nil
	}
	return nil
}

func (o *fpOp) eval(m *model, root *object) ([]item, error) {
	items, err := evalRoot(m, root, o.path)
	if err != nil {
		var ee *evalError
		if errors.As(err, &ee) {
			return nil, o.fail(fhir.KindUnprocessable, "%v", ee)
		}
		return nil, err
	}
	return items, nil
}

// build turns the operation's value into the JSON to store for element def
// (key is the element's current or requested key). It checks the type and
// returns the key the value goes under (a choice key follows the value's
// type) and the primitive extension.
func (o *fpOp) build(m *model, def *elemDef, key string) (val any, outKey string, ext any, err error) {
	pv := o.value
	outKey = key
	if def != nil && def.Choice {
		if pv.typ == "" {
			return nil, "", nil, o.fail(fhir.KindUnprocessable, "a choice element needs a typed value[x], not parts")
		}
		outKey = def.Key(pv.typ)
	}
	if pv.typ == "" {
		elemCtx := m.childCtx(def, "", nil)
		obj, err := o.anonymous(m, elemCtx, pv.anon, fmt.Sprintf("%s.part", o.expr()))
		if err != nil {
			return nil, "", nil, err
		}
		if def != nil && len(def.Types) == 1 && m.isPrimitive(def.Types[0]) {
			return nil, "", nil, o.fail(fhir.KindUnprocessable, "element %s is a %s and needs a value[x], not parts", def.Path, def.Types[0])
		}
		return obj, outKey, nil, nil
	}
	if def != nil && !m.accepts(def, pv.typ) {
		return nil, "", nil, o.fail(fhir.KindUnprocessable, "a %s cannot be stored in %s (type %s)", pv.typ, def.Path, strings.Join(def.Types, " | "))
	}
	return clone(pv.val), outKey, clone(pv.ext), nil
}

// anonymous builds an element from nested parts (each part: name + value[x]
// or further parts) for the model context ctx.
func (o *fpOp) anonymous(m *model, ctx string, parts []any, at string) (*object, error) {
	obj := newObject()
	for j, raw := range parts {
		pat := fmt.Sprintf("%s[%d]", at, j)
		part, ok := raw.(*object)
		if !ok {
			return nil, fhir.Invalid(pat, "a part must be an object")
		}
		name, _ := part.vals["name"].(string)
		if name == "" {
			return nil, fhir.Invalid(pat+".name", "FHIRPath Patch operation %d: a value part needs a name", o.index)
		}
		pv, err := partValue(part)
		if err != nil {
			return nil, fhir.Invalid(pat, "FHIRPath Patch operation %d: part %q: %v", o.index, name, err)
		}
		def := m.child(ctx, name)
		key := name
		if def == nil {
			if d, _ := m.choiceKey(ctx, name); d != nil {
				def = d
			} else if m.known(ctx) {
				return nil, o.fail(fhir.KindUnprocessable, "%s has no element %q", ctx, name).At(pat)
			}
		}
		sub := &fpOp{index: o.index, typ: o.typ, rawPath: o.rawPath, value: pv}
		var val, ext any
		if pv.typ == "" {
			v, err := sub.anonymous(m, m.childCtx(def, "", nil), pv.anon, pat+".part")
			if err != nil {
				return nil, err
			}
			val = v
		} else {
			var err error
			if val, key, ext, err = sub.build(m, def, name); err != nil {
				return nil, err
			}
		}
		many := def != nil && def.Many
		if def == nil {
			_, many = obj.vals[key].([]any)
			if _, exists := obj.vals[key]; exists && !many {
				obj.vals[key] = []any{obj.vals[key]}
				many = true
			}
		}
		if many {
			appendItem(obj, key, val, ext)
			continue
		}
		if _, exists := obj.vals[key]; exists {
			return nil, o.fail(fhir.KindUnprocessable, "element %q is not repeating but is given more than once", name).At(pat)
		}
		obj.set(key, val)
		if ext != nil {
			obj.set("_"+key, ext)
		}
	}
	return obj, nil
}

// add appends the value as element name of the single element the path
// selects (fhirpatch.html: "Add can used for non-repeating elements as long
// as they do not already exist").
func (o *fpOp) add(m *model, root *object) error {
	items, err := o.eval(m, root)
	if err != nil {
		return err
	}
	if len(items) != 1 {
		return o.fail(fhir.KindUnprocessable, "the path selects %d elements; add needs exactly one", len(items))
	}
	it := items[0]
	parent, ok := it.val.(*object)
	if !ok {
		return o.fail(fhir.KindUnprocessable, "the path selects a primitive value; content can only be added to an element")
	}
	def := m.child(it.ctx, o.name)
	key := o.name
	if def == nil {
		if d, _ := m.choiceKey(it.ctx, o.name); d != nil {
			def = d
		} else if m.known(it.ctx) {
			return o.fail(fhir.KindUnprocessable, "%s has no element %q", it.ctx, o.name)
		}
	}
	val, key, ext, err := o.build(m, def, key)
	if err != nil {
		return err
	}
	if def != nil && def.Choice && o.name != key && o.name != def.Name {
		return o.fail(fhir.KindUnprocessable, "name %q does not match the value's type (%s)", o.name, key)
	}
	many := false
	if def != nil {
		many = def.Many
	} else {
		_, many = parent.vals[key].([]any)
	}
	if many {
		if cur, exists := parent.vals[key]; exists {
			if _, isArr := cur.([]any); !isArr {
				return o.fail(fhir.KindUnprocessable, "element %q holds a single value but is repeating", key)
			}
		}
		appendItem(parent, key, val, ext)
		return nil
	}
	if def != nil && def.Choice {
		for _, t := range def.Types {
			if k := def.Key(t); parent.vals[k] != nil {
				return o.fail(fhir.KindUnprocessable, "element %s already has a value (%s); use replace", def.Path, k)
			}
		}
	} else if _, exists := parent.vals[key]; exists {
		return o.fail(fhir.KindUnprocessable, "element %q is not repeating and already has a value; use replace", key)
	}
	parent.set(key, val)
	if ext != nil {
		parent.set("_"+key, ext)
	}
	return nil
}

// listOp runs insert and move: the path names a list (its last step is an
// element name) of the single element the rest of the path selects.
func (o *fpOp) listOp(m *model, root *object) error {
	last, ok := o.path.(*fhirpath.Member)
	if !ok {
		return o.fail(fhir.KindInvalid, "the path of %s must end with the name of a repeating element", o.typ)
	}
	name := last.Name
	rt, _ := root.vals["resourceType"].(string)
	if last.X == nil && name == rt {
		return o.fail(fhir.KindInvalid, "the path of %s must end with the name of a repeating element", o.typ)
	}
	prefix := last.X
	if prefix == nil {
		prefix = fhirpath.This{} // a bare element name is relative to the resource
	}
	parents, err := evalRoot(m, root, prefix)
	if err != nil {
		var ee *evalError
		if errors.As(err, &ee) {
			return o.fail(fhir.KindUnprocessable, "%v", ee)
		}
		return err
	}
	if len(parents) != 1 {
		return o.fail(fhir.KindUnprocessable, "the path selects %d parents of %q; %s needs exactly one", len(parents), name, o.typ)
	}
	parent, ok := parents[0].val.(*object)
	if !ok {
		return o.fail(fhir.KindUnprocessable, "%q is not inside an element", name)
	}
	ctx := parents[0].ctx
	key, def, _ := resolveChild(m, parent, ctx, name)
	if def == nil && m.known(ctx) {
		return o.fail(fhir.KindUnprocessable, "%s has no element %q", ctx, name)
	}
	if key == "" {
		key = name
	}
	if def != nil && !def.Many {
		return o.fail(fhir.KindUnprocessable, "element %s is not repeating", def.Path)
	}
	var list []any
	if cur, exists := parent.vals[key]; exists {
		if list, ok = cur.([]any); !ok {
			return o.fail(fhir.KindUnprocessable, "element %q is not a list", key)
		}
	}
	if o.typ == "insert" {
		if *o.idx > len(list) {
			return o.fail(fhir.KindUnprocessable, "index %d is beyond the end of the list (%d elements)", *o.idx, len(list))
		}
		val, _, ext, err := o.build(m, def, key)
		if err != nil {
			return err
		}
		insertItem(parent, key, *o.idx, val, ext)
		return nil
	}
	src, dst := *o.source, *o.destination
	if src >= len(list) || dst >= len(list) {
		return o.fail(fhir.KindUnprocessable, "source %d / destination %d out of range (%d elements)", src, dst, len(list))
	}
	moveItem(parent, key, src, dst)
	return nil
}

// The helpers below keep a primitive list and its "_name" extension list
// aligned (json.html#primitive).

func extList(parent *object, key string) []any {
	a, _ := parent.vals["_"+key].([]any)
	return a
}

func putExtList(parent *object, key string, ext []any) {
	for _, e := range ext {
		if e != nil {
			parent.setAfter(key, "_"+key, ext)
			return
		}
	}
	parent.del("_" + key)
}

func appendItem(parent *object, key string, val, ext any) {
	list, _ := parent.vals[key].([]any)
	insertItem(parent, key, len(list), val, ext)
}

func insertItem(parent *object, key string, idx int, val, ext any) {
	list, _ := parent.vals[key].([]any)
	n := len(list)
	list = append(list, nil)
	copy(list[idx+1:], list[idx:])
	list[idx] = val
	parent.set(key, list)
	el := extList(parent, key)
	if el == nil && ext == nil {
		return
	}
	for len(el) < n {
		el = append(el, nil)
	}
	el = append(el, nil)
	copy(el[idx+1:], el[idx:])
	el[idx] = ext
	putExtList(parent, key, el)
}

func removeItem(parent *object, key string, idx int) {
	if idx < 0 {
		parent.del(key)
		parent.del("_" + key)
		return
	}
	list := parent.vals[key].([]any)
	list = append(list[:idx:idx], list[idx+1:]...)
	if len(list) == 0 {
		parent.del(key)
	} else {
		parent.vals[key] = list
	}
	if el := extList(parent, key); el != nil {
		if idx < len(el) {
			el = append(el[:idx:idx], el[idx+1:]...)
		}
		if len(list) == 0 {
			el = nil
		}
		putExtList(parent, key, el)
	}
}

func moveItem(parent *object, key string, src, dst int) {
	mv := func(a []any) []any {
		v := a[src]
		a = append(a[:src:src], a[src+1:]...)
		a = append(a, nil)
		copy(a[dst+1:], a[dst:])
		a[dst] = v
		return a
	}
	list := parent.vals[key].([]any)
	parent.vals[key] = mv(list)
	if el := extList(parent, key); el != nil {
		for len(el) < len(list) {
			el = append(el, nil)
		}
		putExtList(parent, key, mv(el))
	}
}

func setExtAt(parent *object, key string, idx int, ext any) {
	el := extList(parent, key)
	if el == nil && ext == nil {
		return
	}
	list, _ := parent.vals[key].([]any)
	for len(el) < len(list) {
		el = append(el, nil)
	}
	el[idx] = ext
	putExtList(parent, key, el)
}
