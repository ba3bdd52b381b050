// Package patch applies the two patch formats of the FHIR patch interaction
// (R4 http.html#patch): JSON Patch (RFC 6902, application/json-patch+json)
// and FHIRPath Patch (fhirpatch.html, a Parameters resource).
//
// Both work on an ordered JSON tree: whatever a patch does not touch keeps
// its value exactly, including the member order of objects and the literal
// spelling of numbers (1.50 stays 1.50). Both reject a patch that changes the
// resource's resourceType or id. A malformed patch document is a 400
// (fhir.KindInvalid); a well-formed patch that cannot be applied to this
// resource (missing path, failed test, index out of range) is a 422
// (fhir.KindUnprocessable), as http.html#patch allows. Errors name the
// operation index and its path, and never quote a value of the stored
// resource (a client allowed to patch may not be allowed to read).
//
// Both parse with the fhir package's parser (fhir.ParseJSONOrdered: the
// limits of every other body, duplicate properties refused), take at most
// MaxOperations operations, and bound the patched resource by MaxSize
// (default DefaultMaxSize); beyond a limit is a 413 (fhir.KindTooLarge,
// issue code too-costly: a limit of this server, as for the entries of a
// Bundle), and nothing is returned.
//
// FHIRPath Patch paths are FHIRPath (fhirpath.html, the N1 specification)
// compiled and evaluated by fhir/fhirpath, the engine search extraction
// uses too; the values an operation adds are checked against the R4
// element model of fhir/model (structuredefinition.html).
package patch

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
)

// JSONPatch applies an RFC 6902 JSON Patch document (an array of
// operations: add, remove, replace, move, copy, test) to doc and returns the
// patched JSON. Operations apply in order and atomically: on any error
// nothing is returned. A failed "test" is a 422 that names the operation and
// its path only, never the value found (the client may not be allowed to
// read it). At most MaxOperations operations; the document is bounded by
// MaxSize (default DefaultMaxSize) after every operation: beyond either is
// a 413.
func JSONPatch(doc, patch []byte, opts ...Option) ([]byte, error) {
	lim := newLimits(opts)
	root, err := decode(doc)
	if err != nil {
		return nil, storedError(err)
	}
	p, err := decode(patch)
	if err != nil {
		return nil, fhir.Errorf(fhir.KindInvalid, "the JSON Patch document is not valid: %v", err).Wrap(err)
	}
	ops, ok := p.([]any)
	if !ok {
		return nil, fhir.Errorf(fhir.KindInvalid, "a JSON Patch document must be a JSON array of operations (RFC 6902 section 3)")
	}
	if len(ops) > MaxOperations {
		return nil, tooManyOps("JSON Patch document", len(ops))
	}
	size, _ := sizeOf(root, math.MaxInt)
	g := &growth{limits: lim, size: size}
	orig := clone(root)
	for i, raw := range ops {
		op, err := parseJSONOp(i, raw)
		if err != nil {
			return nil, err
		}
		root, err = op.apply(root, g)
		if err != nil {
			return nil, err
		}
	}
	if err := checkIdentity(orig, root); err != nil {
		return nil, err
	}
	out := encode(root)
	if len(out) > lim.maxSize {
		return nil, lim.tooLarge("JSON Patch")
	}
	return out, nil
}

// storedError is the error for a stored resource the patch functions
// cannot parse (stored before a parser limit existed). Its details, which
// could quote the stored content, go to the log only.
func storedError(err error) *fhir.Error {
	return fhir.Errorf(fhir.KindUnprocessable, "the stored resource cannot be parsed, so it cannot be patched").Wrap(err)
}

// growth keeps an estimate of the size of the document being patched
// (sizeOf) and of what the operations have added, so that copy and add are
// refused before they build a document beyond the limit.
type growth struct {
	limits
	size  int // the document now
	added int // all values and copies added so far
}

// admit accounts for adding v under the member or array slot tok,
// replacing old when hasOld. It reports false, having changed nothing,
// when the document or the sum of additions would exceed the limit.
func (g *growth) admit(v any, tok string, old any, hasOld bool) bool {
	oldSize := 0
	if hasOld {
		oldSize, _ = sizeOf(old, math.MaxInt)
	}
	extra := len(tok) + 3
	budget := min(g.maxSize-(g.size-oldSize), g.maxSize-g.added) - extra
	n, ok := sizeOf(v, budget)
	if !ok {
		return false
	}
	g.size += n + extra - oldSize
	g.added += n + extra
	return true
}

// removed accounts for the removal of v.
func (g *growth) removed(v any) {
	n, _ := sizeOf(v, math.MaxInt)
	g.size -= n
}

// displaced is the value an add at path replaces: the root, or an existing
// member of an object (an add into an array inserts, replacing nothing).
func displaced(root any, path []string) (any, bool) {
	if len(path) == 0 {
		return root, true
	}
	parent, err := lookup(root, path[:len(path)-1])
	if err != nil {
		return nil, false
	}
	if o, ok := parent.(*object); ok {
		return o.get(path[len(path)-1])
	}
	return nil, false
}

func lastToken(path []string) string {
	if len(path) == 0 {
		return ""
	}
	return path[len(path)-1]
}

type jsonOp struct {
	index    int
	op       string
	path     []string
	from     []string
	value    any
	rawPath  string
	rawFrom  string
	hasValue bool
}

func (o *jsonOp) errorf(kind fhir.Kind, format string, args ...any) *fhir.Error {
	return fhir.Errorf(kind, "JSON Patch operation %d (%s %s): %s", o.index, o.op, o.rawPath, fmt.Sprintf(format, args...))
}

func parseJSONOp(i int, raw any) (*jsonOp, error) {
	obj, ok := raw.(*object)
	if !ok {
		return nil, fhir.Errorf(fhir.KindInvalid, "JSON Patch operation %d: not a JSON object", i)
	}
	o := &jsonOp{index: i}
	str := func(name string) (string, bool, error) {
		v, ok := obj.get(name)
		if !ok {
			return "", false, nil
		}
		s, ok := v.(string)
		if !ok {
			return "", true, fhir.Errorf(fhir.KindInvalid, "JSON Patch operation %d: member %q must be a string", i, name)
		}
		return s, true, nil
	}
	op, has, err := str("op")
	if err != nil {
		return nil, err
	}
	if !has {
		return nil, fhir.Errorf(fhir.KindInvalid, "JSON Patch operation %d: member \"op\" is required", i)
	}
	o.op = op
	path, has, err := str("path")
	if err != nil {
		return nil, err
	}
	if !has {
		return nil, fhir.Errorf(fhir.KindInvalid, "JSON Patch operation %d (%s): member \"path\" is required", i, op)
	}
	o.rawPath = path
	if o.path, err = parsePointer(path); err != nil {
		return nil, o.errorf(fhir.KindInvalid, "path: %v", err)
	}
	switch op {
	case "add", "replace", "test":
		o.value, o.hasValue = obj.get("value")
		if !o.hasValue {
			return nil, o.errorf(fhir.KindInvalid, "member \"value\" is required")
		}
	case "move", "copy":
		from, has, err := str("from")
		if err != nil {
			return nil, err
		}
		if !has {
			return nil, o.errorf(fhir.KindInvalid, "member \"from\" is required")
		}
		o.rawFrom = from
		if o.from, err = parsePointer(from); err != nil {
			return nil, o.errorf(fhir.KindInvalid, "from: %v", err)
		}
	case "remove":
	default:
		return nil, o.errorf(fhir.KindInvalid, "unknown operation %q (RFC 6902 section 4: add, remove, replace, move, copy, test)", op)
	}
	return o, nil
}

// parsePointer splits an RFC 6901 JSON Pointer into unescaped tokens.
func parsePointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("JSON Pointer %q must be empty or start with \"/\"", p)
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		for j := 0; j < len(s); j++ {
			if s[j] == '~' && (j+1 == len(s) || (s[j+1] != '0' && s[j+1] != '1')) {
				return nil, fmt.Errorf("JSON Pointer %q: \"~\" must be followed by 0 or 1", p)
			}
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// arrayIndex parses an RFC 6901 array index (no leading zeros, no sign).
func arrayIndex(tok string, n int, allowEnd bool) (int, error) {
	if tok == "-" {
		if allowEnd {
			return n, nil
		}
		return 0, fmt.Errorf("index \"-\" (past the end) is only allowed for add")
	}
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return 0, fmt.Errorf("%q is not an array index", tok)
	}
	for _, c := range tok {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not an array index", tok)
		}
	}
	i, err := strconv.Atoi(tok)
	if err != nil {
		return 0, fmt.Errorf("%q is not an array index", tok)
	}
	max := n - 1
	if allowEnd {
		max = n
	}
	if i > max {
		return 0, fmt.Errorf("array index %d is out of bounds (length %d)", i, n)
	}
	return i, nil
}

// lookup returns the value at path.
func lookup(root any, path []string) (any, error) {
	cur := root
	for i, tok := range path {
		switch c := cur.(type) {
		case *object:
			v, ok := c.get(tok)
			if !ok {
				return nil, fmt.Errorf("member %q does not exist at %s", tok, pointerString(path[:i]))
			}
			cur = v
		case []any:
			idx, err := arrayIndex(tok, len(c), false)
			if err != nil {
				return nil, fmt.Errorf("%v at %s", err, pointerString(path[:i]))
			}
			cur = c[idx]
		default:
			return nil, fmt.Errorf("%s is not an object or array", pointerString(path[:i]))
		}
	}
	return cur, nil
}

func pointerString(path []string) string {
	if len(path) == 0 {
		return `"" (the document root)`
	}
	var b strings.Builder
	for _, t := range path {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// setIn rewrites the container at parent path with fn; fn gets the parent
// value and returns the (possibly new) parent value. Arrays are values, so
// the new array is stored back into its own parent.
func setIn(root any, parent []string, fn func(any) (any, error)) (any, error) {
	if len(parent) == 0 {
		return fn(root)
	}
	tok := parent[0]
	switch c := root.(type) {
	case *object:
		v, ok := c.get(tok)
		if !ok {
			return nil, fmt.Errorf("member %q does not exist", tok)
		}
		nv, err := setIn(v, parent[1:], fn)
		if err != nil {
			return nil, err
		}
		c.vals[tok] = nv
		return c, nil
	case []any:
		idx, err := arrayIndex(tok, len(c), false)
		if err != nil {
			return nil, err
		}
		nv, err := setIn(c[idx], parent[1:], fn)
		if err != nil {
			return nil, err
		}
		c[idx] = nv
		return c, nil
	}
	return nil, fmt.Errorf("%q: parent is not an object or array", tok)
}

func addAt(root any, path []string, value any) (any, error) {
	if len(path) == 0 {
		return value, nil
	}
	last := path[len(path)-1]
	return setIn(root, path[:len(path)-1], func(parent any) (any, error) {
		switch c := parent.(type) {
		case *object:
			c.set(last, value)
			return c, nil
		case []any:
			idx, err := arrayIndex(last, len(c), true)
			if err != nil {
				return nil, err
			}
			c = append(c, nil)
			copy(c[idx+1:], c[idx:])
			c[idx] = value
			return c, nil
		}
		return nil, fmt.Errorf("the target's parent is not an object or array")
	})
}

func removeAt(root any, path []string) (any, error) {
	if len(path) == 0 {
		return nil, fmt.Errorf("cannot remove the document root")
	}
	last := path[len(path)-1]
	return setIn(root, path[:len(path)-1], func(parent any) (any, error) {
		switch c := parent.(type) {
		case *object:
			if !c.del(last) {
				return nil, fmt.Errorf("member %q does not exist", last)
			}
			return c, nil
		case []any:
			idx, err := arrayIndex(last, len(c), false)
			if err != nil {
				return nil, err
			}
			return append(c[:idx:idx], c[idx+1:]...), nil
		}
		return nil, fmt.Errorf("the target's parent is not an object or array")
	})
}

func replaceAt(root any, path []string, value any) (any, error) {
	if len(path) == 0 {
		return value, nil
	}
	last := path[len(path)-1]
	return setIn(root, path[:len(path)-1], func(parent any) (any, error) {
		switch c := parent.(type) {
		case *object:
			if _, ok := c.get(last); !ok {
				return nil, fmt.Errorf("member %q does not exist", last)
			}
			c.vals[last] = value
			return c, nil
		case []any:
			idx, err := arrayIndex(last, len(c), false)
			if err != nil {
				return nil, err
			}
			c[idx] = value
			return c, nil
		}
		return nil, fmt.Errorf("the target's parent is not an object or array")
	})
}

func (o *jsonOp) apply(root any, g *growth) (any, error) {
	var err error
	var out any
	tooLarge := func() error {
		return o.errorf(fhir.KindTooLarge, "the patched resource would be larger than %d bytes", g.maxSize)
	}
	switch o.op {
	case "add":
		old, hasOld := displaced(root, o.path)
		if !g.admit(o.value, lastToken(o.path), old, hasOld) {
			return nil, tooLarge()
		}
		out, err = addAt(root, o.path, clone(o.value))
	case "remove":
		v, lerr := lookup(root, o.path)
		if out, err = removeAt(root, o.path); err == nil && lerr == nil {
			g.removed(v)
		}
	case "replace":
		old, lerr := lookup(root, o.path)
		if lerr == nil && !g.admit(o.value, lastToken(o.path), old, true) {
			return nil, tooLarge()
		}
		out, err = replaceAt(root, o.path, clone(o.value))
	case "move":
		if isProperPrefix(o.from, o.path) {
			return nil, o.errorf(fhir.KindUnprocessable, "\"from\" %s is a proper prefix of \"path\" (RFC 6902 section 4.4)", o.rawFrom)
		}
		var v any
		if v, err = lookup(root, o.from); err != nil {
			return nil, o.errorf(fhir.KindUnprocessable, "from: %v", err)
		}
		if root, err = removeAt(root, o.from); err != nil {
			return nil, o.errorf(fhir.KindUnprocessable, "from: %v", err)
		}
		// The value only changes place; what it displaces leaves.
		if old, hasOld := displaced(root, o.path); hasOld {
			g.removed(old)
		}
		out, err = addAt(root, o.path, v)
	case "copy":
		var v any
		if v, err = lookup(root, o.from); err != nil {
			return nil, o.errorf(fhir.KindUnprocessable, "from: %v", err)
		}
		old, hasOld := displaced(root, o.path)
		if !g.admit(v, lastToken(o.path), old, hasOld) {
			return nil, tooLarge()
		}
		out, err = addAt(root, o.path, clone(v))
	case "test":
		var v any
		if v, err = lookup(root, o.path); err != nil {
			return nil, o.errorf(fhir.KindUnprocessable, "test failed: %v", err)
		}
		if !equal(v, o.value) {
			// Only the operation and its path: the value found is not
			// echoed, since a client allowed to patch may not be allowed to
			// read it.
			return nil, o.errorf(fhir.KindUnprocessable, "test failed: the value at the path is not the given value (RFC 6902 section 4.6)")
		}
		return root, nil
	}
	if err != nil {
		return nil, o.errorf(fhir.KindUnprocessable, "%v", err)
	}
	return out, nil
}

func isProperPrefix(a, b []string) bool {
	if len(a) >= len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkIdentity rejects a patch that changed resourceType or id
// (http.html#patch: the patched resource is still the same resource).
func checkIdentity(before, after any) error {
	bo, ok := before.(*object)
	if !ok {
		return nil
	}
	ao, ok := after.(*object)
	if !ok {
		return fhir.Errorf(fhir.KindUnprocessable, "the patch replaced the resource by a value that is not a JSON object")
	}
	for _, k := range []string{"resourceType", "id"} {
		bv, bok := bo.get(k)
		av, aok := ao.get(k)
		if bok != aok || (bok && !equal(bv, av)) {
			expr := k
			if rt, ok := bv.(string); ok && k == "resourceType" {
				expr = rt
			} else if rt, ok := bo.vals["resourceType"].(string); ok {
				expr = rt + "." + k
			}
			return fhir.Errorf(fhir.KindUnprocessable, "a patch must not change the resource's %s", k).At(expr)
		}
	}
	return nil
}
