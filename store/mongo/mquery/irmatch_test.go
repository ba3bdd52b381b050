package mquery

import (
	"regexp"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// irMatch is the reference evaluation of the lowered form (node) in Go,
// field by field exactly as MongoDB evaluates the filter renderExact
// emits (absent fields, $elemMatch per array element, $regex, typed
// comparisons). It was the FerretDB re-check before Match delegated to
// search.Matcher; it stays here as the oracle of the differential test
// (TestMatcherAgreesWithFilterSemantics): the neutral matcher must agree
// with what the rendered filters select.
func irMatch(e search.Expr, r store.Record) (bool, error) {
	n, err := lowerer{}.lower(e)
	if err != nil {
		return false, err
	}
	return evalNode(n, &r), nil
}

var rxCache sync.Map // rx -> *regexp.Regexp

func compiled(r rx) *regexp.Regexp {
	if re, ok := rxCache.Load(r); ok {
		return re.(*regexp.Regexp)
	}
	p := r.Pattern
	if r.Options == "i" {
		p = "(?i)" + p
	}
	re := regexp.MustCompile(p)
	rxCache.Store(r, re)
	return re
}

func evalNode(n node, r *store.Record) bool {
	switch x := n.(type) {
	case constN:
		return bool(x)
	case andN:
		for _, c := range x {
			if !evalNode(c, r) {
				return false
			}
		}
		return true
	case orN:
		for _, c := range x {
			if evalNode(c, r) {
				return true
			}
		}
		return false
	case notN:
		return !evalNode(x.n, r)
	case topN:
		for _, c := range x {
			if !evalTop(c, r) {
				return false
			}
		}
		return true
	case elemN:
		return anyElem(elementsOf(&r.Index, x.path[len("idx."):]), elem(x))
	}
	return false
}

// evalTop evaluates a condition on a top-level document field.
func evalTop(c fcond, r *store.Record) bool {
	var vals []any
	switch c.field {
	case "_id":
		vals = []any{r.Type + "/" + r.ID}
	case "t":
		vals = []any{r.Type}
	case "i":
		vals = []any{r.ID}
	case "lu":
		vals = []any{ms(r.LastUpdated)}
	case "idx.cpt":
		vals = strs(r.Index.Compartments)
	case "idx.sec":
		vals = strs(r.Index.Security)
	case "idx.has":
		vals = strs(r.Index.Has)
	case "rel.p":
		if !r.Release.Patient.IsZero() {
			vals = []any{ms(r.Release.Patient)}
		}
	case "rel.x":
		if !r.Release.Proxy.IsZero() {
			vals = []any{ms(r.Release.Proxy)}
		}
	}
	if c.op == opExists {
		return (len(vals) > 0) == c.val.(bool)
	}
	for _, v := range vals {
		if cmpOp(c, v) {
			return true
		}
	}
	return false
}

func strs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// element is one array element as its BSON fields (absent fields omitted,
// like the omitempty encoding); composites carry their nested index.
type element struct {
	f   map[string]any
	sub *search.Index
}

func elementsOf(x *search.Index, kind string) []element {
	var out []element
	put := func(m map[string]any, k string, v string) {
		if v != "" {
			m[k] = v
		}
	}
	switch kind {
	case "str":
		for _, v := range x.Str {
			m := map[string]any{"p": v.Param, "v": v.Value}
			put(m, "x", v.Exact)
			out = append(out, element{f: m})
		}
	case "tok":
		for _, v := range x.Tok {
			m := map[string]any{"p": v.Param}
			put(m, "s", v.System)
			put(m, "c", v.Code)
			put(m, "t", v.Text)
			put(m, "ts", v.TypeSystem)
			put(m, "tc", v.TypeCode)
			out = append(out, element{f: m})
		}
	case "ref":
		for _, v := range x.Ref {
			m := map[string]any{"p": v.Param}
			put(m, "r", v.Ref)
			put(m, "t", v.Type)
			put(m, "i", v.ID)
			put(m, "v", v.Version)
			put(m, "is", v.IDSystem)
			put(m, "ic", v.IDValue)
			out = append(out, element{f: m})
		}
	case "dt":
		for _, v := range x.Date {
			out = append(out, element{f: map[string]any{"p": v.Param, "lo": ms(v.Lo), "hi": ms(v.Hi)}})
		}
	case "num":
		for _, v := range x.Num {
			out = append(out, element{f: map[string]any{"p": v.Param, "v": v.Value, "lo": v.Lo, "hi": v.Hi}})
		}
	case "qty":
		for _, v := range x.Qty {
			m := map[string]any{"p": v.Param, "v": v.Value, "lo": v.Lo, "hi": v.Hi}
			put(m, "s", v.System)
			put(m, "c", v.Code)
			put(m, "u", v.Unit)
			out = append(out, element{f: m})
		}
	case "uri":
		for _, v := range x.URI {
			out = append(out, element{f: map[string]any{"p": v.Param, "v": v.Value}})
		}
	case "cmp":
		for i := range x.Comp {
			out = append(out, element{f: map[string]any{"p": x.Comp[i].Param}, sub: &x.Comp[i].Parts})
		}
	}
	return out
}

func anyElem(els []element, e elem) bool {
	for _, el := range els {
		if elemMatches(el, e) {
			return true
		}
	}
	return false
}

func elemMatches(el element, e elem) bool {
	for _, c := range e.conds {
		v, ok := el.f[c.field]
		if c.op == opExists {
			if ok != c.val.(bool) {
				return false
			}
			continue
		}
		if !ok || !cmpOp(c, v) {
			return false
		}
	}
	for _, n := range e.nested {
		if el.sub == nil {
			return false
		}
		// nested paths are "x.<kind>" relative to the composite element.
		if !anyElem(elementsOf(el.sub, n.path[len("x."):]), n) {
			return false
		}
	}
	return true
}

// cmpOp applies a comparison like MongoDB does for same-typed values;
// values of different types never compare.
func cmpOp(c fcond, v any) bool {
	switch c.op {
	case opEq:
		return v == c.val
	case opIn:
		s, ok := v.(string)
		if !ok {
			return false
		}
		for _, w := range c.val.([]string) {
			if s == w {
				return true
			}
		}
		return false
	case opRegex:
		s, ok := v.(string)
		return ok && compiled(c.val.(rx)).MatchString(s)
	}
	k, ok := compare(v, c.val)
	if !ok {
		return false
	}
	switch c.op {
	case opGt:
		return k > 0
	case opGte:
		return k >= 0
	case opLt:
		return k < 0
	case opLte:
		return k <= 0
	}
	return false
}

func compare(a, b any) (int, bool) {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case time.Time:
		y, ok := b.(time.Time)
		if !ok {
			return 0, false
		}
		return x.Compare(y), true
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	}
	return 0, false
}
