package search

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// This file is the one in-memory evaluation of the search AST. A Matcher
// decides whether one stored version satisfies an Expr with exactly the
// semantics a store compiles the Expr to (search.html): the pipeline uses it
// for single-resource access decisions (read, vread, writes), and
// store/mongo/mquery uses it as the Go re-check of its superset filters on
// FerretDB, so the two can never disagree. mquery's differential test holds
// it to the MongoDB filter semantics, node by node and prefix by prefix.
//
// The rules, per node (fields of an Index entry that are "" count as absent,
// as in the stored documents, so a condition asking for "" never holds on
// them):
//
//	StringCond    default: Str.Value has the (folded) Value as a prefix; :contains:
//	              Str.Value contains Value; :exact: Str.Exact (Str.Value when Exact is absent)
//	              equals Value
//	TokenCond     code equal (CodeFold: equal under Unicode case folding);
//	              System nil any system, "" no system, else equal; :of-type
//	              Tok.TypeSystem|TypeCode equal; :text a word of Tok.Text starts with Text
//	RefCond       Ref.Ref in Targets (filtered by Types) or in Types x IDs; Ref.ID
//	              in IDs (no Types); URLs: Ref.Ref equal (Version: and Ref.Version
//	              equal; Below: Ref.Ref has the URL as a prefix); Identifier:
//	              Ref.IDSystem|IDValue like a token (neither: any identifier value)
//	DateCond      the prefix compares [Lo, Hi) with each [Date.Lo, Date.Hi) at
//	              millisecond precision (see rangeMatch)
//	NumberCond    eq/ne: Num.Value inside/outside [Lo, Hi); ap: inside [Lo, Hi];
//	              gt/sa, lt/eb, ge, le: Num.Value against Value
//	QuantityCond  as NumberCond on Qty.Value, plus the unit: System|Code both
//	              equal, System alone equal, Code alone equal to Qty.Code or Qty.Unit
//	URICond       equal; :below Value is a prefix; :above URI.Value is Value or
//	              one of its ancestor paths (URIAncestors)
//	CompositeCond one Comp tuple of Param satisfies every part
//	MissingCond   Index.Has lacks (Missing) / holds the parameter
//	_lastUpdated  as DateCond with the target [lastUpdated, +1 ms)
//	IDCond, KeyCond, TypeCond, CompartmentCond, SecurityCond  membership;
//	              an empty list matches nothing
//	ReleaseCond   the release instant of the audience is unset or not after Now
//	              ("patient" and "proxy" only)

// Matcher is an Expr compiled for repeated in-memory matching.
type Matcher struct {
	match func(*Subject) bool
}

// NewMatcher compiles e (nil: match everything). It fails for nodes and
// values no store compiles (an unknown node type, prefix or release
// audience, a non-leaf part in a composite): callers must fail closed.
func NewMatcher(e Expr) (*Matcher, error) {
	f, err := compileExpr(e)
	if err != nil {
		return nil, err
	}
	return &Matcher{match: f}, nil
}

// Match reports whether s satisfies the compiled Expr.
func (m *Matcher) Match(s Subject) bool {
	if s.Index == nil {
		s.Index = &Index{}
	}
	return m.match(&s)
}

// Match compiles e and matches s once (see NewMatcher).
func Match(e Expr, s Subject) (bool, error) {
	m, err := NewMatcher(e)
	if err != nil {
		return false, err
	}
	return m.Match(s), nil
}

type (
	pred     func(*Subject) bool
	leafPred func(*Index) bool
)

func always(*Subject) bool { return true }
func never(*Subject) bool  { return false }

func compileExpr(e Expr) (pred, error) {
	switch x := e.(type) {
	case nil:
		return always, nil
	case *And:
		if x == nil {
			return nil, fmt.Errorf("search: cannot match a nil %T", e)
		}
		return compileExpr(*x)
	case *Or:
		if x == nil {
			return nil, fmt.Errorf("search: cannot match a nil %T", e)
		}
		return compileExpr(*x)
	case *Not:
		if x == nil {
			return nil, fmt.Errorf("search: cannot match a nil %T", e)
		}
		return compileExpr(*x)
	case And:
		args, err := compileAll(x.Args)
		if err != nil {
			return nil, err
		}
		switch len(args) {
		case 0:
			return always, nil
		case 1:
			return args[0], nil
		}
		return func(s *Subject) bool {
			for _, a := range args {
				if !a(s) {
					return false
				}
			}
			return true
		}, nil
	case Or:
		args, err := compileAll(x.Args)
		if err != nil {
			return nil, err
		}
		switch len(args) {
		case 0:
			return never, nil
		case 1:
			return args[0], nil
		}
		return func(s *Subject) bool {
			for _, a := range args {
				if a(s) {
					return true
				}
			}
			return false
		}, nil
	case Not:
		a, err := compileExpr(x.Arg)
		if err != nil {
			return nil, err
		}
		return func(s *Subject) bool { return !a(s) }, nil
	case Const:
		if x.Value {
			return always, nil
		}
		return never, nil
	case IDCond:
		in := stringSet(x.IDs)
		return func(s *Subject) bool { return in(s.ID) }, nil
	case KeyCond:
		in := stringSet(x.Keys)
		return func(s *Subject) bool { return in(s.Type + "/" + s.ID) }, nil
	case TypeCond:
		in := stringSet(x.Types)
		return func(s *Subject) bool { return in(s.Type) }, nil
	case CompartmentCond:
		in := stringSet(x.Compartments)
		return func(s *Subject) bool { return slices.ContainsFunc(s.Index.Compartments, in) }, nil
	case SecurityCond:
		in := stringSet(x.Labels)
		return func(s *Subject) bool { return slices.ContainsFunc(s.Index.Security, in) }, nil
	case ReleaseCond:
		now := ms(x.Now)
		visible := func(at time.Time) bool { return at.IsZero() || !ms(at).After(now) }
		switch x.Audience {
		case "patient":
			return func(s *Subject) bool { return visible(s.PatientVisible) }, nil
		case "proxy":
			return func(s *Subject) bool { return visible(s.ProxyVisible) }, nil
		}
		return nil, fmt.Errorf("search: release audience %q", x.Audience)
	case MissingCond:
		return func(s *Subject) bool { return slices.Contains(s.Index.Has, x.Param) != x.Missing }, nil
	case LastUpdatedCond:
		r, err := rangeMatch(x.Prefix, x.Lo, x.Hi)
		if err != nil {
			return nil, err
		}
		// An instant is the range [lu, lu+1ms) at the stored millisecond
		// precision (search.html#date: an instant has no implicit range).
		return func(s *Subject) bool {
			lu := ms(s.LastUpdated)
			return r(lu, lu.Add(time.Millisecond))
		}, nil
	case StringCond, TokenCond, RefCond, DateCond, NumberCond, QuantityCond, URICond, CompositeCond:
		l, err := compileLeaf(e)
		if err != nil {
			return nil, err
		}
		return func(s *Subject) bool { return l(s.Index) }, nil
	}
	return nil, fmt.Errorf("search: cannot match %T", e)
}

func compileAll(es []Expr) ([]pred, error) {
	out := make([]pred, 0, len(es))
	for _, a := range es {
		p, err := compileExpr(a)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// compileLeaf compiles a condition on the values of an Index (the
// resource's own, or one composite tuple's).
func compileLeaf(e Expr) (leafPred, error) {
	switch x := e.(type) {
	case StringCond:
		return stringLeaf(x), nil
	case TokenCond:
		tok := tokenPred(x)
		return func(ix *Index) bool {
			for i := range ix.Tok {
				if ix.Tok[i].Param == x.Param && tok(&ix.Tok[i]) {
					return true
				}
			}
			return false
		}, nil
	case RefCond:
		return refLeaf(x), nil
	case DateCond:
		r, err := rangeMatch(x.Prefix, x.Lo, x.Hi)
		if err != nil {
			return nil, err
		}
		return func(ix *Index) bool {
			for _, d := range ix.Date {
				if d.Param == x.Param && r(ms(d.Lo), ms(d.Hi)) {
					return true
				}
			}
			return false
		}, nil
	case NumberCond:
		n, err := numberMatch(x.Prefix, x.Value, x.Lo, x.Hi)
		if err != nil {
			return nil, err
		}
		return func(ix *Index) bool {
			for _, v := range ix.Num {
				if v.Param == x.Param && n(v.Value) {
					return true
				}
			}
			return false
		}, nil
	case QuantityCond:
		n, err := numberMatch(x.Prefix, x.Value, x.Lo, x.Hi)
		if err != nil {
			return nil, err
		}
		unit := quantityUnit(x.System, x.Code)
		return func(ix *Index) bool {
			for i := range ix.Qty {
				q := &ix.Qty[i]
				if q.Param == x.Param && n(q.Value) && unit(q) {
					return true
				}
			}
			return false
		}, nil
	case URICond:
		return uriLeaf(x), nil
	case CompositeCond:
		parts := make([]leafPred, len(x.Parts))
		for i, part := range x.Parts {
			p, err := compileLeaf(part)
			if err != nil {
				return nil, err
			}
			parts[i] = p
		}
		return func(ix *Index) bool {
		tuples:
			for i := range ix.Comp {
				c := &ix.Comp[i]
				if c.Param != x.Param {
					continue
				}
				for _, p := range parts {
					if !p(&c.Parts) {
						continue tuples
					}
				}
				return true
			}
			return false
		}, nil
	}
	return nil, fmt.Errorf("search: cannot match %T in a composite or as a value condition", e)
}

// stringLeaf: search.html#string.
func stringLeaf(x StringCond) leafPred {
	var ok func(*StrValue) bool
	switch x.Mode {
	case StringExact:
		// X is stored only when it differs from V (already folded).
		ok = func(v *StrValue) bool {
			if v.Exact != "" {
				return v.Exact == x.Value
			}
			return v.Value == x.Value
		}
	case StringContains:
		ok = func(v *StrValue) bool { return strings.Contains(v.Value, x.Value) }
	default:
		ok = func(v *StrValue) bool { return strings.HasPrefix(v.Value, x.Value) }
	}
	return func(ix *Index) bool {
		for i := range ix.Str {
			if ix.Str[i].Param == x.Param && ok(&ix.Str[i]) {
				return true
			}
		}
		return false
	}
}

// tokenPred is the condition on one token value of the parameter
// (search.html#token).
func tokenPred(x TokenCond) func(*TokValue) bool {
	var checks []func(*TokValue) bool
	if x.Code != nil {
		code := *x.Code
		if x.CodeFold {
			checks = append(checks, func(t *TokValue) bool { return t.Code != "" && strings.EqualFold(t.Code, code) })
		} else {
			checks = append(checks, func(t *TokValue) bool { return t.Code != "" && t.Code == code })
		}
	}
	if x.System != nil {
		sys := *x.System
		checks = append(checks, func(t *TokValue) bool { return t.System == sys })
	}
	if x.OfType {
		checks = append(checks, func(t *TokValue) bool {
			return t.TypeSystem != "" && t.TypeSystem == x.TypeSystem && t.TypeCode != "" && t.TypeCode == x.TypeCode
		})
	}
	if x.Text != "" {
		// :text is string-like (search.html#modifiers): a folded prefix of
		// any word of the display / text.
		word := " " + x.Text
		checks = append(checks, func(t *TokValue) bool {
			return strings.HasPrefix(t.Text, x.Text) || strings.Contains(t.Text, word)
		})
	}
	return func(t *TokValue) bool {
		for _, c := range checks {
			if !c(t) {
				return false
			}
		}
		return true
	}
}

// refLeaf: search.html#reference, the alternatives of a RefCond.
func refLeaf(x RefCond) leafPred {
	var alts []func(*RefValue) bool
	a := x.Alternatives()
	exact := a.Exact
	if len(a.AnyTypeIDs) > 0 {
		ids := stringSet(a.AnyTypeIDs)
		alts = append(alts, func(r *RefValue) bool { return r.ID != "" && ids(r.ID) })
	}
	if len(a.Below) > 0 {
		urls := slices.Clone(a.Below)
		alts = append(alts, func(r *RefValue) bool {
			if r.Ref == "" {
				return false
			}
			for _, u := range urls {
				if strings.HasPrefix(r.Ref, u) {
					return true
				}
			}
			return false
		})
	}
	if len(a.Versioned) > 0 {
		urls := stringSet(a.Versioned)
		alts = append(alts, func(r *RefValue) bool { return r.Ref != "" && urls(r.Ref) && r.Version == x.Version })
	}
	if len(exact) > 0 {
		in := stringSet(exact)
		alts = append(alts, func(r *RefValue) bool { return r.Ref != "" && in(r.Ref) })
	}
	if id := x.Identifier; id != nil {
		var checks []func(*RefValue) bool
		if id.Code != nil {
			code := *id.Code
			checks = append(checks, func(r *RefValue) bool { return r.IDValue != "" && r.IDValue == code })
		}
		if id.System != nil {
			sys := *id.System
			checks = append(checks, func(r *RefValue) bool { return r.IDSystem == sys })
		}
		if id.Code == nil && id.System == nil {
			checks = append(checks, func(r *RefValue) bool { return r.IDValue != "" })
		}
		alts = append(alts, func(r *RefValue) bool {
			for _, c := range checks {
				if !c(r) {
					return false
				}
			}
			return true
		})
	}
	if len(alts) == 0 {
		return func(*Index) bool { return false }
	}
	return func(ix *Index) bool {
		for i := range ix.Ref {
			r := &ix.Ref[i]
			if r.Param != x.Param {
				continue
			}
			for _, a := range alts {
				if a(r) {
					return true
				}
			}
		}
		return false
	}
}

// uriLeaf: search.html#uri.
func uriLeaf(x URICond) leafPred {
	var ok func(string) bool
	switch x.Mode {
	case URIBelow:
		ok = func(v string) bool { return strings.HasPrefix(v, x.Value) }
	case URIAbove:
		ok = stringSet(URIAncestors(x.Value))
	default:
		ok = func(v string) bool { return v == x.Value }
	}
	return func(ix *Index) bool {
		for _, u := range ix.URI {
			if u.Param == x.Param && ok(u.Value) {
				return true
			}
		}
		return false
	}
}

// quantityUnit is the unit condition of search.html#quantity: "||code"
// matches the code or the unit text.
func quantityUnit(system, code string) func(*QtyValue) bool {
	switch {
	case system != "" && code != "":
		return func(q *QtyValue) bool { return q.System == system && q.Code == code }
	case system != "":
		return func(q *QtyValue) bool { return q.System == system }
	case code != "":
		return func(q *QtyValue) bool { return q.Code == code || q.Unit == code }
	}
	return func(*QtyValue) bool { return true }
}

// rangeMatch implements prefix p for the search range [lo, hi) against a
// target range [tlo, thi) (search.html#prefix, the R4 table), all at the
// stored millisecond precision (the caller truncates the target with ms):
//
//	eq  the search range fully contains the target range
//	ne  it does not
//	gt  the range above the search value intersects the target (thi > hi)
//	lt  the range below the search value intersects the target (tlo < lo)
//	ge  gt or eq;  le  lt or eq
//	sa  the target starts after the search range (tlo >= hi)
//	eb  the target ends before the search range (thi <= lo)
//	ap  the target overlaps the (already widened) search range
func rangeMatch(p Prefix, lo, hi time.Time) (func(tlo, thi time.Time) bool, error) {
	lo, hi = ms(lo), ms(hi)
	eq := func(tlo, thi time.Time) bool { return !tlo.Before(lo) && !thi.After(hi) }
	switch p {
	case Eq, "":
		return eq, nil
	case Ne:
		return func(tlo, thi time.Time) bool { return tlo.Before(lo) || thi.After(hi) }, nil
	case Gt:
		return func(_, thi time.Time) bool { return thi.After(hi) }, nil
	case Lt:
		return func(tlo, _ time.Time) bool { return tlo.Before(lo) }, nil
	case Ge:
		return func(tlo, thi time.Time) bool { return thi.After(hi) || eq(tlo, thi) }, nil
	case Le:
		return func(tlo, thi time.Time) bool { return tlo.Before(lo) || eq(tlo, thi) }, nil
	case Sa:
		return func(tlo, _ time.Time) bool { return !tlo.Before(hi) }, nil
	case Eb:
		return func(_, thi time.Time) bool { return !thi.After(lo) }, nil
	case Ap:
		return func(tlo, thi time.Time) bool { return tlo.Before(hi) && thi.After(lo) }, nil
	}
	return nil, fmt.Errorf("search: unknown prefix %q", p)
}

// numberMatch implements the prefixes for numbers and quantities
// (search.html#number): eq / ne use the implicit precision range [lo, hi)
// of the search value, the others compare with the value itself; ap uses
// [lo, hi] as widened by the parser.
func numberMatch(p Prefix, v, lo, hi float64) (func(float64) bool, error) {
	switch p {
	case Eq, "":
		return func(x float64) bool { return x >= lo && x < hi }, nil
	case Ne:
		return func(x float64) bool { return x < lo || x >= hi }, nil
	case Gt, Sa:
		return func(x float64) bool { return x > v }, nil
	case Lt, Eb:
		return func(x float64) bool { return x < v }, nil
	case Ge:
		return func(x float64) bool { return x >= v }, nil
	case Le:
		return func(x float64) bool { return x <= v }, nil
	case Ap:
		return func(x float64) bool { return x >= lo && x <= hi }, nil
	}
	return nil, fmt.Errorf("search: unknown prefix %q", p)
}

// ms truncates t to the millisecond precision of stored instants, in UTC.
func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// stringSet is membership in vals (an empty list holds nothing).
func stringSet(vals []string) func(string) bool {
	switch len(vals) {
	case 0:
		return func(string) bool { return false }
	case 1:
		v := vals[0]
		return func(s string) bool { return s == v }
	}
	if len(vals) <= 8 {
		vs := slices.Clone(vals)
		return func(s string) bool { return slices.Contains(vs, s) }
	}
	set := make(map[string]struct{}, len(vals))
	for _, v := range vals {
		set[v] = struct{}{}
	}
	return func(s string) bool { _, ok := set[s]; return ok }
}

// URIAncestors lists u and every ancestor path of it, sorted
// (search.html#uri, :above): "http://a/b/c" gives "http://a", "http://a/",
// "http://a/b", "http://a/b/", "http://a/b/c".
func URIAncestors(u string) []string {
	out := []string{u}
	start := 0
	if i := strings.Index(u, "://"); i >= 0 {
		start = i + 3
	}
	rest := u
	for {
		i := strings.LastIndex(rest, "/")
		if i < start {
			break
		}
		rest = rest[:i]
		if len(rest) <= start {
			break
		}
		out = append(out, rest+"/", rest)
	}
	sort.Strings(out)
	return slices.Compact(out)
}
