package sqlite

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// Leaf conditions of the search AST as SQL over the value tables: one
// value kind each (search.html#ptypes), prefixes and precision ranges,
// composites tuple by tuple.

// lastUpdated: the target is [lu, lu+1ms) (an instant at the stored ms
// precision), compared as rangeMatch does; in integer ms, "lu+1 > H" is
// "lu >= H" and "lu+1 <= H" is "lu < H".
func lastUpdated(b *sqlb, col string, x search.LastUpdatedCond) error {
	lo, hi := msOf(x.Lo), msOf(x.Hi)
	ge := func(v int64) { b.w(col, " >= "); b.a(v) }
	lt := func(v int64) { b.w(col, " < "); b.a(v) }
	eq := func() { b.w("("); ge(lo); b.w(" AND "); lt(hi); b.w(")") }
	b.w("(")
	switch x.Prefix {
	case search.Eq, "", search.Ap:
		eq()
	case search.Ne:
		// One range, negated: an OR of two ranges would be planned as two
		// index scans of every type.
		b.w("NOT ")
		eq()
	case search.Gt, search.Sa:
		ge(hi)
	case search.Lt, search.Eb:
		lt(lo)
	case search.Ge:
		// lu >= hi, or inside [lo, hi): lu >= min(lo, hi).
		ge(min(lo, hi))
	case search.Le:
		// lu < lo, or inside [lo, hi): lu < max(lo, hi).
		lt(max(lo, hi))
	default:
		return fmt.Errorf("sqlite: unknown prefix %q", x.Prefix)
	}
	b.w(")")
	return nil
}

func col(a, c string) string { return a + "." + c }

func lowerLeaf(e search.Expr) (*leaf, error) {
	switch x := e.(type) {
	case search.StringCond:
		l := &leaf{table: "str", param: x.Param}
		v := x.Value
		switch x.Mode {
		case search.StringExact:
			l.rank = rankEq
			l.ordered, l.index = true, "str_e_rid"
			l.alts = append(l.alts, func(b *sqlb, a string) { b.w(col(a, "e"), " = "); b.a(v) })
		case search.StringContains:
			l.rank = rankWide
			l.alts = append(l.alts, func(b *sqlb, a string) { b.w("instr(", col(a, "v"), ", "); b.a(v); b.w(") > 0") })
		default:
			l.rank = prefixRank(v)
			if len(v) < strPre {
				l.alts = append(l.alts, func(b *sqlb, a string) { prefix(b, col(a, "v"), v) })
				break
			}
			// The first strPre bytes fixed by equality: str_pre delivers
			// the matching rows in rid order, so a page and a bounded
			// count of a common prefix stop early instead of reading
			// (and sorting) every match.
			l.ordered, l.index = true, "str_pre"
			head := []byte(v[:strPre])
			l.alts = append(l.alts, func(b *sqlb, a string) {
				b.w(strPreExpr(a), " = ")
				b.a(head)
				b.w(" AND ")
				prefix(b, col(a, "v"), v)
			})
		}
		return l, nil
	case search.TokenCond:
		l := &leaf{table: "tok", param: x.Param, rank: rankWide}
		var conds []func(b *sqlb, a string)
		never := false
		if x.Code != nil {
			code := *x.Code
			if code == "" {
				never = true // an absent code never equals
			}
			l.rank = rankEq
			if x.CodeFold {
				conds = append(conds, func(b *sqlb, a string) { b.w(col(a, "cf"), " = "); b.a(foldKey(code)) })
			} else {
				conds = append(conds, func(b *sqlb, a string) {
					b.w(col(a, "cf"), " = ")
					b.a(foldKey(code))
					b.w(" AND ", col(a, "c"), " = ")
					b.a(code)
				})
			}
		}
		if x.System != nil {
			sys := *x.System
			l.rank = min(l.rank, rankPrefix)
			conds = append(conds, func(b *sqlb, a string) { b.w(col(a, "s"), " = "); b.a(sys) })
		}
		if x.OfType {
			if x.TypeSystem == "" || x.TypeCode == "" {
				never = true
			}
			l.rank = min(l.rank, rankPrefix)
			ts, tc := x.TypeSystem, x.TypeCode
			conds = append(conds, func(b *sqlb, a string) {
				b.w(col(a, "ts"), " = ")
				b.a(ts)
				b.w(" AND ", col(a, "tc"), " = ")
				b.a(tc)
			})
		}
		if x.Text != "" {
			text := x.Text
			l.rank = min(l.rank, rankRange)
			conds = append(conds, func(b *sqlb, a string) {
				// A word of the folded display starts with text.
				b.w("(")
				prefix(b, col(a, "tx"), text)
				b.w(" OR instr(", col(a, "tx"), ", ")
				b.a(" " + text)
				b.w(") > 0)")
			})
		}
		if never {
			return &leaf{table: "tok", param: x.Param, rank: rankKey}, nil
		}
		// Primary key (t, p, cf, c, s, rid, ...): code and system fix it.
		l.ordered = x.Code != nil && !x.CodeFold && x.System != nil && !x.OfType && x.Text == ""
		l.alts = []func(b *sqlb, a string){allOf(conds)}
		return l, nil
	case search.RefCond:
		return refLeaf(x), nil
	case search.DateCond:
		lo, hi := msOf(x.Lo), msOf(x.Hi)
		alts, rank, err := dateAlts(x.Prefix, lo, hi)
		if err != nil {
			return nil, err
		}
		return &leaf{table: "dt", param: x.Param, alts: alts, rank: rank}, nil
	case search.NumberCond:
		alts, rank, err := numberAlts(x.Prefix, x.Value, x.Lo, x.Hi)
		if err != nil {
			return nil, err
		}
		return &leaf{table: "num", param: x.Param, alts: alts, rank: rank}, nil
	case search.QuantityCond:
		nalts, rank, err := numberAlts(x.Prefix, x.Value, x.Lo, x.Hi)
		if err != nil {
			return nil, err
		}
		sys, code := x.System, x.Code
		var unit func(b *sqlb, a string)
		switch {
		case sys != "" && code != "":
			unit = func(b *sqlb, a string) {
				b.w(col(a, "s"), " = ")
				b.a(sys)
				b.w(" AND ", col(a, "c"), " = ")
				b.a(code)
			}
		case sys != "":
			unit = func(b *sqlb, a string) { b.w(col(a, "s"), " = "); b.a(sys) }
		case code != "":
			// search.html#quantity: "||code" matches the code or the unit text.
			unit = func(b *sqlb, a string) {
				b.w("(", col(a, "c"), " = ")
				b.a(code)
				b.w(" OR ", col(a, "u"), " = ")
				b.a(code)
				b.w(")")
			}
		}
		l := &leaf{table: "qty", param: x.Param, rank: rank}
		for _, n := range nalts {
			if unit == nil {
				l.alts = append(l.alts, n)
				continue
			}
			l.alts = append(l.alts, allOf([]func(b *sqlb, a string){n, unit}))
		}
		return l, nil
	case search.URICond:
		l := &leaf{table: "uri", param: x.Param}
		v := x.Value
		switch x.Mode {
		case search.URIBelow:
			l.rank = prefixRank(v)
			l.alts = append(l.alts, func(b *sqlb, a string) { prefix(b, col(a, "v"), v) })
		case search.URIAbove:
			l.rank = rankEq
			anc := search.URIAncestors(v)
			l.alts = append(l.alts, func(b *sqlb, a string) { b.in(col(a, "v"), anc) })
		default:
			l.rank = rankEq
			l.ordered = true // primary key (t, p, v, rid, ...)
			l.alts = append(l.alts, func(b *sqlb, a string) { b.w(col(a, "v"), " = "); b.a(v) })
		}
		return l, nil
	}
	return nil, unsupported(e, "not a value condition")
}

func prefixRank(v string) int {
	switch {
	case v == "":
		return rankWide
	case len(v) < 3:
		return rankRange
	}
	return rankPrefix
}

// strPre is the length in bytes of the string prefixes str_pre indexes.
const strPre = 3

// strPreExpr is str_pre's expression over alias a: the first strPre bytes
// of the folded value (bytes, not characters, as the prefix ranges are).
func strPreExpr(a string) string {
	return "substr(CAST(" + col(a, "v") + " AS BLOB), 1, " + strconv.Itoa(strPre) + ")"
}

// prefix writes "col has prefix v" as the byte range [v, succ(v)).
func prefix(b *sqlb, c, v string) {
	if v == "" {
		b.w("1")
		return
	}
	b.w(c, " >= ")
	b.a(v)
	if s, ok := succ(v); ok {
		b.w(" AND ", c, " < ")
		b.a(s)
	}
}

// allOf writes the conjunction of conds (none: true).
func allOf(conds []func(b *sqlb, a string)) func(b *sqlb, a string) {
	return func(b *sqlb, a string) {
		if len(conds) == 0 {
			b.w("1")
			return
		}
		for i, c := range conds {
			if i > 0 {
				b.w(" AND ")
			}
			c(b, a)
		}
	}
}

// refLeaf: search.html#reference, the alternatives of search.Matcher's refLeaf.
func refLeaf(x search.RefCond) *leaf {
	l := &leaf{table: "ref", param: x.Param, rank: rankEq}
	nonEmpty := func(vs []string) []string {
		out := make([]string, 0, len(vs))
		for _, v := range vs {
			if v != "" && !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
		return out
	}
	typeOK := func(t string) bool { return len(x.Types) == 0 || slices.Contains(x.Types, t) }
	var exact []string
	for _, t := range x.Targets {
		typ, _, _ := strings.Cut(t, "/")
		if typeOK(typ) {
			exact = append(exact, t)
		}
	}
	if len(x.Types) > 0 {
		for _, id := range x.IDs {
			for _, t := range x.Types {
				exact = append(exact, t+"/"+id)
			}
		}
	} else if ids := nonEmpty(x.IDs); len(ids) > 0 {
		l.alts = append(l.alts, func(b *sqlb, a string) { b.in(col(a, "ri"), ids) })
	}
	if len(x.URLs) > 0 {
		switch {
		case x.Below:
			for _, u := range x.URLs {
				l.rank = max(l.rank, prefixRank(u))
				l.alts = append(l.alts, func(b *sqlb, a string) {
					if u == "" {
						b.w(col(a, "r"), " <> ''")
						return
					}
					prefix(b, col(a, "r"), u)
				})
			}
		case x.Version != "":
			if urls := nonEmpty(x.URLs); len(urls) > 0 {
				version := x.Version
				l.alts = append(l.alts, func(b *sqlb, a string) {
					b.in(col(a, "r"), urls)
					b.w(" AND ", col(a, "v"), " = ")
					b.a(version)
				})
			}
		default:
			exact = append(exact, x.URLs...)
		}
	}
	if exact = nonEmpty(exact); len(exact) > 0 {
		l.alts = append([]func(b *sqlb, a string){func(b *sqlb, a string) { b.in(col(a, "r"), exact) }}, l.alts...)
		// Primary key (t, p, r, rid, ...): one target fixes it.
		l.ordered = len(exact) == 1 && len(l.alts) == 1 && x.Identifier == nil
	}
	if id := x.Identifier; id != nil {
		var conds []func(b *sqlb, a string)
		never := false
		if id.Code != nil {
			code := *id.Code
			never = code == ""
			conds = append(conds, func(b *sqlb, a string) { b.w(col(a, "ic"), " = "); b.a(code) })
		}
		if id.System != nil {
			sys := *id.System
			conds = append(conds, func(b *sqlb, a string) { b.w(col(a, `"is"`), " = "); b.a(sys) })
		}
		if id.Code == nil && id.System == nil {
			l.rank = rankWide
			conds = append(conds, func(b *sqlb, a string) { b.w(col(a, "ic"), " <> ''") })
		}
		if !never {
			// Identifiers are read through the (t, p) range of the primary key.
			l.rank = max(l.rank, rankRange)
			l.alts = append(l.alts, allOf(conds))
		}
	}
	return l
}

// dateAlts: rangeMatch of search.Matcher (search.html#prefix, the R4
// table) on the stored [lo, hi) in ms.
func dateAlts(p search.Prefix, lo, hi int64) ([]func(b *sqlb, a string), int, error) {
	cmp := func(c, op string, v int64) func(b *sqlb, a string) {
		return func(b *sqlb, a string) { b.w(col(a, c), " ", op, " "); b.a(v) }
	}
	and := func(fs ...func(b *sqlb, a string)) func(b *sqlb, a string) { return allOf(fs) }
	eq := and(cmp("lo", ">=", lo), cmp("hi", "<=", hi))
	type alts = []func(b *sqlb, a string)
	switch p {
	case search.Eq, "":
		return alts{eq}, rankRange, nil
	case search.Ne:
		return alts{cmp("lo", "<", lo), cmp("hi", ">", hi)}, rankWide, nil
	case search.Gt:
		return alts{cmp("hi", ">", hi)}, rankWide, nil
	case search.Lt:
		return alts{cmp("lo", "<", lo)}, rankWide, nil
	case search.Ge:
		return alts{cmp("hi", ">", hi), eq}, rankWide, nil
	case search.Le:
		return alts{cmp("lo", "<", lo), eq}, rankWide, nil
	case search.Sa:
		return alts{cmp("lo", ">=", hi)}, rankWide, nil
	case search.Eb:
		return alts{cmp("hi", "<=", lo)}, rankWide, nil
	case search.Ap:
		return alts{and(cmp("lo", "<", hi), cmp("hi", ">", lo))}, rankRange, nil
	}
	return nil, 0, fmt.Errorf("sqlite: unknown prefix %q", p)
}

// numberAlts: numberMatch of search.Matcher (search.html#number) on v.
func numberAlts(p search.Prefix, v, lo, hi float64) ([]func(b *sqlb, a string), int, error) {
	cmp := func(op string, x float64) func(b *sqlb, a string) {
		return func(b *sqlb, a string) { b.w(col(a, "v"), " ", op, " "); b.a(x) }
	}
	type alts = []func(b *sqlb, a string)
	switch p {
	case search.Eq, "":
		return alts{allOf(alts{cmp(">=", lo), cmp("<", hi)})}, rankRange, nil
	case search.Ne:
		return alts{cmp("<", lo), cmp(">=", hi)}, rankWide, nil
	case search.Gt, search.Sa:
		return alts{cmp(">", v)}, rankWide, nil
	case search.Lt, search.Eb:
		return alts{cmp("<", v)}, rankWide, nil
	case search.Ge:
		return alts{cmp(">=", v)}, rankWide, nil
	case search.Le:
		return alts{cmp("<=", v)}, rankWide, nil
	case search.Ap:
		return alts{allOf(alts{cmp(">=", lo), cmp("<=", hi)})}, rankRange, nil
	}
	return nil, 0, fmt.Errorf("sqlite: unknown prefix %q", p)
}

// leafPred writes "a row of the scope satisfies l".
func (c *compiler) leafPred(b *sqlb, l *leaf, sc scope) {
	if len(l.alts) == 0 {
		b.w("0")
		return
	}
	a := c.alias("x")
	b.w("EXISTS (SELECT 1 FROM ", l.table, " ", a, " WHERE ", a, ".rid = ", sc.rid, " AND ", a, ".p = ")
	b.a(sc.prefix + l.param)
	b.w(" AND ", a, ".cid = ", sc.cid, " AND ")
	c.alts(b, l, a)
	b.w(")")
}

func (c *compiler) alts(b *sqlb, l *leaf, a string) {
	if len(l.alts) == 1 {
		l.alts[0](b, a)
		return
	}
	b.w("(")
	for i, alt := range l.alts {
		if i > 0 {
			b.w(" OR ")
		}
		b.w("(")
		alt(b, a)
		b.w(")")
	}
	b.w(")")
}

// compositePred writes "one tuple of the parameter in scope satisfies
// every part" (nested composites are tuples whose parent is the scope's).
func (c *compiler) compositePred(b *sqlb, x search.CompositeCond, sc scope) error {
	k := c.alias("k")
	inner := scope{rid: k + ".rid", cid: k + ".cid", prefix: sc.prefix + x.Param + compSep}
	var parts sqlb
	never := false
	for _, part := range x.Parts {
		var sub sqlb
		if err := c.partPred(&sub, part, inner); err != nil {
			return err
		}
		if sub.String() == "0" {
			never = true // no tuple satisfies a part that holds nowhere
		}
		parts.w(" AND ")
		parts.add(&sub)
	}
	if never {
		b.w("0")
		return nil
	}
	b.w("EXISTS (SELECT 1 FROM cmp ", k, " WHERE ", k, ".rid = ", sc.rid, " AND ", k, ".p = ")
	b.a(sc.prefix + x.Param)
	b.w(" AND ", k, ".parent = ", sc.cid)
	b.add(&parts)
	b.w(")")
	return nil
}

// partPred writes one composite part (a value condition or a composite).
func (c *compiler) partPred(b *sqlb, part search.Expr, sc scope) error {
	switch x := part.(type) {
	case search.CompositeCond:
		return c.compositePred(b, x, sc)
	case search.StringCond, search.TokenCond, search.RefCond, search.DateCond, search.NumberCond,
		search.QuantityCond, search.URICond:
		l, err := lowerLeaf(part)
		if err != nil {
			return err
		}
		c.leafPred(b, l, sc)
		return nil
	}
	return unsupported(part, "not a value condition, inside a composite")
}
