package fhirpath

import (
	"reflect"
	"strings"
)

// Equality, equivalence, ordering and collection union (fhirpath.html#
// equality, #comparison, #union-operator).

// union merges two collections (fhirpath.html#union). Duplicates are
// removed for small collections only: large code lists would make
// pairwise comparison quadratic (and search extraction deduplicates index
// values anyway).
func union(l, r []Item) []Item {
	switch {
	case len(r) == 0:
		return l
	case len(l) == 0:
		return r
	}
	out := make([]Item, 0, len(l)+len(r))
	if len(l)+len(r) > 32 {
		return append(append(out, l...), r...)
	}
	for _, it := range l {
		out = appendDistinct(out, it)
	}
	for _, it := range r {
		out = appendDistinct(out, it)
	}
	return out
}

func appendDistinct(out []Item, it Item) []Item {
	for _, o := range out {
		if same(o, it) {
			return out
		}
	}
	return append(out, it)
}

// same is a cheap identity test for union: the same primitive value, or
// the same JSON object (by pointer).
func same(a, b Item) bool {
	switch a.V.(type) {
	case map[string]any, Object:
		return isObject(b.V) && samePointer(a.V, b.V)
	}
	return equal(a, b)
}

func isObject(v any) bool {
	switch v.(type) {
	case map[string]any, Object:
		return true
	}
	return false
}

func samePointer(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if va.Type() != vb.Type() {
		return false
	}
	switch va.Kind() {
	case reflect.Map, reflect.Pointer:
		return va.UnsafePointer() == vb.UnsafePointer()
	}
	return false
}

// equal is '=' on two items (fhirpath.html#equality): primitives by value
// (numbers by their decimal value: 1.50 = 1.5), objects member by member.
func equal(a, b Item) bool {
	switch x := a.V.(type) {
	case string:
		y, ok := b.V.(string)
		return ok && x == y
	case bool:
		y, ok := b.V.(bool)
		return ok && x == y
	case Ref:
		y, ok := b.V.(Ref)
		return ok && x == y
	case map[string]any, Object:
		return isObject(b.V) && jsonEqual(a.V, b.V)
	}
	if x, ok := numOf(a.V); ok {
		y, ok := numOf(b.V)
		if !ok {
			return false
		}
		c, ok := compareNum(x, y)
		return ok && c == 0
	}
	return false
}

// equivalent is '~' (fhirpath.html#equivalence): strings ignoring case,
// accents and surrounding or repeated whitespace.
func equivalent(a, b Item) bool {
	if x, ok := a.V.(string); ok {
		y, ok := b.V.(string)
		return ok && fold(x) == fold(y)
	}
	return equal(a, b)
}

// fold normalizes a string for equivalence.
func fold(s string) string {
	return strings.ToLower(strings.Join(strings.Fields(s), " "))
}

func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		if y, ok := b.(map[string]any); ok {
			if len(x) != len(y) {
				return false
			}
			for k, v := range x {
				if w, ok := y[k]; !ok || !jsonEqual(v, w) {
					return false
				}
			}
			return true
		}
		return objectEqual(x, b)
	case Object:
		return objectEqual(x, b)
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return equal(Item{V: a}, Item{V: b})
}

// objectEqual compares two objects of which one at least is an Object.
func objectEqual(a, b any) bool {
	if !isObject(b) {
		return false
	}
	ka, kb := keys(a), keys(b)
	if len(ka) != len(kb) {
		return false
	}
	for _, k := range ka {
		w, ok := get(b, k)
		if !ok {
			return false
		}
		v, _ := get(a, k)
		if !jsonEqual(v, w) {
			return false
		}
	}
	return true
}

func get(o any, k string) (any, bool) {
	switch x := o.(type) {
	case map[string]any:
		v, ok := x[k]
		return v, ok
	case Object:
		return x.Get(k)
	}
	return nil, false
}

func keys(o any) []string {
	switch x := o.(type) {
	case map[string]any:
		out := make([]string, 0, len(x))
		for k := range x {
			out = append(out, k)
		}
		return out
	case Object:
		return x.Keys()
	}
	return nil
}

// compare orders two items for < > <= >= (fhirpath.html#comparison):
// numbers by value, strings (and dates and times, as their text) by code
// point; ok is false when they are not comparable.
func compare(a, b Item) (int, bool) {
	if x, ok := numOf(a.V); ok {
		y, ok := numOf(b.V)
		if !ok {
			return 0, false
		}
		return compareNum(x, y)
	}
	x, ok1 := a.V.(string)
	y, ok2 := b.V.(string)
	if !ok1 || !ok2 {
		return 0, false
	}
	return strings.Compare(x, y), true
}
