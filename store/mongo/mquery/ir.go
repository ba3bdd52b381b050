package mquery

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// The compiler lowers search.Expr into a small intermediate form (node)
// that has two back ends: the exact MongoDB filter ($elemMatch) and the
// FerretDB filter (dot notation, a superset). The Go re-check of the supersets (Match) is search.Matcher;
// the differential test evaluates this form field by field (irMatch) and
// holds the matcher to it.

// op is a field comparison.
type op int

const (
	opEq     op = iota
	opIn        // val []string
	opGt        // val float64 | time.Time
	opGte       //
	opLt        //
	opLte       //
	opExists    // val bool
	opRegex     // val rx
)

// rx is a regular expression with its MongoDB options. Patterns are built
// from regexp.QuoteMeta and fixed text; Go never compiles them (the Go
// re-check is search.Matcher, which matches the same literals directly).
type rx struct {
	Pattern string
	Options string // "" or "i"
}

// mkrx builds a regular expression condition.
func mkrx(pattern, options string) rx { return rx{Pattern: pattern, Options: options} }

// fcond is one condition on a field (a top-level document field, or a
// field of an array element relative to the array).
type fcond struct {
	field string
	op    op
	val   any
}

// elem matches documents whose array at path has one element satisfying
// every cond and, for each nested elem, one element of the nested array
// (relative path) of that same element (composites).
type elem struct {
	path   string
	conds  []fcond
	nested []elem
}

type (
	andN   []node
	orN    []node
	notN   struct{ n node }
	constN bool
	// topN: every cond holds on top-level fields; an array field (idx.cpt,
	// idx.sec, idx.has) satisfies a cond when one element does.
	topN  []fcond
	elemN elem
)

type node interface{}

// lowerer carries the compile options that change the lowering.
type lowerer struct {
	history bool
}

func (l lowerer) lower(e search.Expr) (node, error) {
	switch x := e.(type) {
	case nil:
		return constN(true), nil
	case search.And:
		out := make(andN, 0, len(x.Args))
		for _, a := range x.Args {
			n, err := l.lower(a)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return simplifyAnd(out), nil
	case *search.And:
		return l.lower(*x)
	case search.Or:
		out := make(orN, 0, len(x.Args))
		for _, a := range x.Args {
			n, err := l.lower(a)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return simplifyOr(out), nil
	case *search.Or:
		return l.lower(*x)
	case search.Not:
		n, err := l.lower(x.Arg)
		if err != nil {
			return nil, err
		}
		if c, ok := n.(constN); ok {
			return !c, nil
		}
		return notN{n}, nil
	case *search.Not:
		return l.lower(*x)
	case search.Const:
		return constN(x.Value), nil
	case search.IDCond:
		if len(x.IDs) == 0 {
			return constN(false), nil
		}
		return topN{in("i", x.IDs)}, nil
	case search.KeyCond:
		return l.keys(x.Keys), nil
	case search.TypeCond:
		if len(x.Types) == 0 {
			return constN(false), nil
		}
		return topN{in("t", x.Types)}, nil
	case search.LastUpdatedCond:
		return dateNode(x.Prefix, x.Lo, x.Hi, func(alt []rcond) node {
			t := topN{}
			for _, c := range alt {
				// lu is an instant: the target range is [lu, lu+1ms) at
				// BSON's millisecond precision, so "hi > X" is "lu >= X"
				// and "hi <= X" is "lu < X".
				o := c.op
				if c.hi {
					switch o {
					case opGt:
						o = opGte
					case opLte:
						o = opLt
					}
				}
				t = append(t, fcond{"lu", o, c.val})
			}
			return t
		})
	case search.CompartmentCond:
		if len(x.Compartments) == 0 {
			return constN(false), nil
		}
		return topN{in("idx.cpt", x.Compartments)}, nil
	case search.SecurityCond:
		if len(x.Labels) == 0 {
			return constN(false), nil
		}
		return topN{in("idx.sec", x.Labels)}, nil
	case search.ReleaseCond:
		var f string
		switch x.Audience {
		case "patient":
			f = "rel.p"
		case "proxy":
			f = "rel.x"
		default:
			return nil, fmt.Errorf("mquery: release audience %q", x.Audience)
		}
		return orN{topN{{f, opExists, false}}, topN{{f, opLte, ms(x.Now)}}}, nil
	case search.MissingCond:
		has := topN{{"idx.has", opEq, x.Param}}
		if x.Missing {
			return notN{has}, nil
		}
		return has, nil
	case search.StringCond, search.TokenCond, search.RefCond, search.DateCond, search.NumberCond,
		search.QuantityCond, search.URICond, search.CompositeCond:
		alts, err := leafAlts("idx", e)
		if err != nil {
			return nil, err
		}
		return altsNode(alts), nil
	}
	return nil, errUnsupported(e)
}

func in(field string, vals []string) fcond {
	if len(vals) == 1 {
		return fcond{field, opEq, vals[0]}
	}
	return fcond{field, opIn, dedup(vals)}
}

func dedup(vals []string) []string {
	seen := make(map[string]bool, len(vals))
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// keys compiles KeyCond: _id in the current collection; {t, i} pairs in
// history, whose _id carries the version.
func (l lowerer) keys(keys []string) node {
	if !l.history {
		if len(keys) == 0 {
			return constN(false)
		}
		return topN{in("_id", keys)}
	}
	byType := map[string][]string{}
	var types []string
	for _, k := range keys {
		t, id, ok := strings.Cut(k, "/")
		if !ok || t == "" || id == "" {
			continue
		}
		if _, seen := byType[t]; !seen {
			types = append(types, t)
		}
		byType[t] = append(byType[t], id)
	}
	out := orN{}
	for _, t := range types {
		out = append(out, topN{{"t", opEq, t}, in("i", byType[t])})
	}
	return simplifyOr(out)
}

func altsNode(alts []elem) node {
	switch len(alts) {
	case 0:
		return constN(false)
	case 1:
		return elemN(alts[0])
	}
	out := make(orN, len(alts))
	for i, a := range alts {
		out[i] = elemN(a)
	}
	return out
}

func simplifyAnd(a andN) node {
	out := andN{}
	for _, n := range a {
		switch x := n.(type) {
		case constN:
			if !x {
				return constN(false)
			}
			continue
		case andN:
			out = append(out, x...)
			continue
		}
		out = append(out, n)
	}
	switch len(out) {
	case 0:
		return constN(true)
	case 1:
		return out[0]
	}
	return out
}

func simplifyOr(o orN) node {
	out := orN{}
	for _, n := range o {
		switch x := n.(type) {
		case constN:
			if x {
				return constN(true)
			}
			continue
		case orN:
			out = append(out, x...)
			continue
		}
		out = append(out, n)
	}
	switch len(out) {
	case 0:
		return constN(false)
	case 1:
		return out[0]
	}
	return out
}

// ms truncates t to BSON's millisecond precision, in UTC.
func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// rcond is a condition on the low (hi=false) or high end of a target range.
type rcond struct {
	hi  bool
	op  op
	val any
}

// rangeAlts returns the alternatives (OR of AND) that implement prefix p
// for the search range [lo, hi) against target ranges [tlo, thi)
// (search.html#prefix, R4 table):
//
//	eq  the search range fully contains the target range
//	ne  it does not
//	gt  the range above the search value intersects the target
//	lt  the range below the search value intersects the target
//	ge  gt or eq;  le  lt or eq
//	sa  the target starts after the search range (tlo >= hi)
//	eb  the target ends before the search range (thi <= lo)
//	ap  the target overlaps the (already widened) search range
func rangeAlts(p search.Prefix, lo, hi any) ([][]rcond, error) {
	eq := []rcond{{false, opGte, lo}, {true, opLte, hi}}
	switch p {
	case search.Eq, "":
		return [][]rcond{eq}, nil
	case search.Ne:
		return [][]rcond{{{false, opLt, lo}}, {{true, opGt, hi}}}, nil
	case search.Gt:
		return [][]rcond{{{true, opGt, hi}}}, nil
	case search.Lt:
		return [][]rcond{{{false, opLt, lo}}}, nil
	case search.Ge:
		return [][]rcond{{{true, opGt, hi}}, eq}, nil
	case search.Le:
		return [][]rcond{{{false, opLt, lo}}, eq}, nil
	case search.Sa:
		return [][]rcond{{{false, opGte, hi}}}, nil
	case search.Eb:
		return [][]rcond{{{true, opLte, lo}}}, nil
	case search.Ap:
		return [][]rcond{{{false, opLt, hi}, {true, opGt, lo}}}, nil
	}
	return nil, fmt.Errorf("mquery: unknown prefix %q", p)
}

func dateNode(p search.Prefix, lo, hi time.Time, mk func([]rcond) node) (node, error) {
	alts, err := rangeAlts(p, ms(lo), ms(hi))
	if err != nil {
		return nil, err
	}
	out := orN{}
	for _, a := range alts {
		out = append(out, mk(a))
	}
	return simplifyOr(out), nil
}

// leafAlts lowers a leaf condition on the index at base ("idx", or "x"
// inside a composite) to alternatives of one element match each.
func leafAlts(base string, e search.Expr) ([]elem, error) {
	switch x := e.(type) {
	case search.StringCond:
		path := base + ".str"
		switch x.Mode {
		case search.StringExact:
			return []elem{
				{path: path, conds: []fcond{{"p", opEq, x.Param}, {"x", opEq, x.Value}}},
				// X is omitted when it equals V (already folded).
				{path: path, conds: []fcond{{"p", opEq, x.Param}, {"x", opExists, false}, {"v", opEq, x.Value}}},
			}, nil
		case search.StringContains:
			return []elem{{path: path, conds: []fcond{{"p", opEq, x.Param}, {"v", opRegex, mkrx(regexp.QuoteMeta(x.Value), "")}}}}, nil
		default:
			c := []fcond{{"p", opEq, x.Param}}
			if x.Value != "" {
				c = append(c, fcond{"v", opRegex, mkrx("^"+regexp.QuoteMeta(x.Value), "")})
			}
			return []elem{{path: path, conds: c}}, nil
		}
	case search.TokenCond:
		return []elem{{path: base + ".tok", conds: tokenConds(x)}}, nil
	case search.RefCond:
		return refAlts(base+".ref", x), nil
	case search.DateCond:
		alts, err := rangeAlts(x.Prefix, ms(x.Lo), ms(x.Hi))
		if err != nil {
			return nil, err
		}
		var out []elem
		for _, a := range alts {
			c := []fcond{{"p", opEq, x.Param}}
			// lo conditions first: the index is {p, lo, hi}.
			for _, r := range a {
				if !r.hi {
					c = append(c, fcond{"lo", r.op, r.val})
				}
			}
			for _, r := range a {
				if r.hi {
					c = append(c, fcond{"hi", r.op, r.val})
				}
			}
			out = append(out, elem{path: base + ".dt", conds: c})
		}
		return out, nil
	case search.NumberCond:
		alts, err := numberAlts(x.Prefix, x.Value, x.Lo, x.Hi)
		if err != nil {
			return nil, err
		}
		var out []elem
		for _, a := range alts {
			out = append(out, elem{path: base + ".num", conds: append([]fcond{{"p", opEq, x.Param}}, a...)})
		}
		return out, nil
	case search.QuantityCond:
		alts, err := numberAlts(x.Prefix, x.Value, x.Lo, x.Hi)
		if err != nil {
			return nil, err
		}
		var units [][]fcond
		switch {
		case x.System != "" && x.Code != "":
			units = [][]fcond{{{"s", opEq, x.System}, {"c", opEq, x.Code}}}
		case x.System != "":
			units = [][]fcond{{{"s", opEq, x.System}}}
		case x.Code != "":
			// search.html#quantity: "||code" matches the code or the unit.
			units = [][]fcond{{{"c", opEq, x.Code}}, {{"u", opEq, x.Code}}}
		default:
			units = [][]fcond{nil}
		}
		var out []elem
		for _, a := range alts {
			for _, u := range units {
				c := append([]fcond{{"p", opEq, x.Param}}, a...)
				out = append(out, elem{path: base + ".qty", conds: append(c, u...)})
			}
		}
		return out, nil
	case search.URICond:
		path := base + ".uri"
		switch x.Mode {
		case search.URIBelow:
			return []elem{{path: path, conds: []fcond{{"p", opEq, x.Param}, {"v", opRegex, mkrx("^"+regexp.QuoteMeta(x.Value), "")}}}}, nil
		case search.URIAbove:
			return []elem{{path: path, conds: []fcond{{"p", opEq, x.Param}, in("v", uriAncestors(x.Value))}}}, nil
		default:
			return []elem{{path: path, conds: []fcond{{"p", opEq, x.Param}, {"v", opEq, x.Value}}}}, nil
		}
	case search.CompositeCond:
		outer := []elem{{path: base + ".cmp", conds: []fcond{{"p", opEq, x.Param}}}}
		for _, part := range x.Parts {
			palts, err := leafAlts("x", part)
			if err != nil {
				return nil, err
			}
			var next []elem
			for _, o := range outer {
				for _, pa := range palts {
					n := o
					n.nested = append(append([]elem(nil), o.nested...), pa)
					next = append(next, n)
				}
			}
			outer = next
		}
		return outer, nil
	}
	return nil, errUnsupported(e)
}

func tokenConds(x search.TokenCond) []fcond {
	c := []fcond{{"p", opEq, x.Param}}
	if x.Code != nil {
		if x.CodeFold {
			c = append(c, fcond{"c", opRegex, mkrx("^"+regexp.QuoteMeta(*x.Code)+"$", "i")})
		} else {
			c = append(c, fcond{"c", opEq, *x.Code})
		}
	}
	if x.System != nil {
		if *x.System == "" {
			c = append(c, fcond{"s", opExists, false})
		} else {
			c = append(c, fcond{"s", opEq, *x.System})
		}
	}
	if x.OfType {
		c = append(c, fcond{"ts", opEq, x.TypeSystem}, fcond{"tc", opEq, x.TypeCode})
	}
	if x.Text != "" {
		// :text is string-like (search.html#modifiers): a folded prefix of
		// any word of the display / text.
		c = append(c, fcond{"t", opRegex, mkrx("(^| )"+regexp.QuoteMeta(x.Text), "")})
	}
	return c
}

func refAlts(path string, x search.RefCond) []elem {
	p := fcond{"p", opEq, x.Param}
	var out []elem
	a := x.Alternatives()
	exact := a.Exact
	if len(a.AnyTypeIDs) > 0 {
		out = append(out, elem{path: path, conds: []fcond{p, in("i", a.AnyTypeIDs)}})
	}
	for _, u := range a.Below {
		out = append(out, elem{path: path, conds: []fcond{p, {"r", opRegex, mkrx("^"+regexp.QuoteMeta(u), "")}}})
	}
	if len(a.Versioned) > 0 {
		out = append(out, elem{path: path, conds: []fcond{p, in("r", a.Versioned), {"v", opEq, x.Version}}})
	}
	if len(exact) > 0 {
		out = append([]elem{{path: path, conds: []fcond{p, in("r", exact)}}}, out...)
	}
	if id := x.Identifier; id != nil {
		c := []fcond{p}
		if id.Code != nil {
			c = append(c, fcond{"ic", opEq, *id.Code})
		}
		if id.System != nil {
			if *id.System == "" {
				c = append(c, fcond{"is", opExists, false})
			} else {
				c = append(c, fcond{"is", opEq, *id.System})
			}
		}
		if id.Code == nil && id.System == nil {
			c = append(c, fcond{"ic", opExists, true})
		}
		out = append(out, elem{path: path, conds: c})
	}
	return out
}

// numberAlts implements the prefixes for numbers and quantities
// (search.html#number): eq / ne use the implicit precision range [lo, hi)
// of the search value, the others compare with the value itself; ap uses
// [lo, hi] as widened by the parser.
func numberAlts(p search.Prefix, v, lo, hi float64) ([][]fcond, error) {
	switch p {
	case search.Eq, "":
		return [][]fcond{{{"v", opGte, lo}, {"v", opLt, hi}}}, nil
	case search.Ne:
		return [][]fcond{{{"v", opLt, lo}}, {{"v", opGte, hi}}}, nil
	case search.Gt, search.Sa:
		return [][]fcond{{{"v", opGt, v}}}, nil
	case search.Lt, search.Eb:
		return [][]fcond{{{"v", opLt, v}}}, nil
	case search.Ge:
		return [][]fcond{{{"v", opGte, v}}}, nil
	case search.Le:
		return [][]fcond{{{"v", opLte, v}}}, nil
	case search.Ap:
		return [][]fcond{{{"v", opGte, lo}, {"v", opLte, hi}}}, nil
	}
	return nil, fmt.Errorf("mquery: unknown prefix %q", p)
}

// uriAncestors lists u and every ancestor path of it (search.html#uri,
// :above), as search.URIAncestors, which the Go matcher uses.
func uriAncestors(u string) []string { return search.URIAncestors(u) }
