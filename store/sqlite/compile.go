package sqlite

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// The compiler turns a search.Expr into SQL with exactly the semantics of
// search.Matcher (fhir/search/match.go; store/mongo/mquery renders the same
// rules for MongoDB), per node:
//
//   - a value condition (string, token, reference, date, number, quantity,
//     uri; search.html#ptypes) is "one row of the resource in the kind's
//     table, with the parameter's code, satisfies one of the condition's
//     alternatives": EXISTS over the table's (rid, p, cid) index, or, for
//     the one condition chosen to drive the query, the set of resources
//     read from the table's value index (t, p, value...);
//   - a composite (search.html#composite) is one tuple (cmp row) whose
//     component rows satisfy every part, each part a value condition tied
//     to the tuple by its cid;
//   - _id, _lastUpdated, types and keys are conditions on res, release
//     rules on its release instants, compartments and labels EXISTS in cpt
//     and sec (in history: hcpt and hsec, per version);
//   - And, Or, Not and Const are SQL's; every condition is two-valued (no
//     NULLs reach a comparison), so NOT is the exact complement.
//
// A query is driven by at most one set (driver): the most selective
// condition of the top-level conjunction that can be read from an index
// (an Or whose every argument can), as rid IN (SELECT ...); SQLite reads
// that set from the index, then the resources by rowid, and checks the
// remaining conditions per resource through the (rid, p, cid) indexes.

// sqlb builds SQL with its arguments in textual order.
type sqlb struct {
	sb   strings.Builder
	args []any
}

func (b *sqlb) w(s ...string) {
	for _, x := range s {
		b.sb.WriteString(x)
	}
}

// a writes a placeholder for v.
func (b *sqlb) a(v any) {
	b.sb.WriteByte('?')
	b.args = append(b.args, v)
}

// list writes "(?, ?, ...)".
func (b *sqlb) list(vs []string) {
	b.w("(")
	for i, v := range vs {
		if i > 0 {
			b.w(", ")
		}
		b.a(v)
	}
	b.w(")")
}

// in writes "col = ?" or "col IN (...)".
func (b *sqlb) in(col string, vs []string) {
	if len(vs) == 1 {
		b.w(col, " = ")
		b.a(vs[0])
		return
	}
	b.w(col, " IN ")
	b.list(vs)
}

// add appends another builder.
func (b *sqlb) add(o *sqlb) {
	b.sb.WriteString(o.sb.String())
	b.args = append(b.args, o.args...)
}

func (b *sqlb) String() string { return b.sb.String() }

// compiler holds the state of one compilation.
type compiler struct {
	hist  bool     // rows are versions (ver v), not current resources (res r)
	types []string // the query's types; nil: every stored type
	n     int      // alias counter
	// inexact: (history only) a condition history cannot answer in SQL was
	// replaced by true; the caller re-checks with search.Matcher.
	inexact bool
}

// errUnsupported is returned for nodes no store compiles.
var errUnsupported = errors.New("sqlite: unsupported search condition")

func unsupported(e search.Expr, why string) error {
	return fmt.Errorf("%w %T: %s", errUnsupported, e, why)
}

// scope is where a condition is evaluated: the resource (rid "r.rid", cid
// "0", prefix "") or one composite tuple.
type scope struct {
	rid, cid, prefix string
	top              bool
}

func (c *compiler) alias(p string) string {
	c.n++
	return fmt.Sprintf("%s%d", p, c.n)
}

func (c *compiler) row() string {
	if c.hist {
		return "v"
	}
	return "r"
}

var topScope = scope{rid: "r.rid", cid: "0", top: true}

// pred writes e as a boolean over the row. exact is false when a history
// condition was loosened to true (c.inexact).
func (c *compiler) pred(b *sqlb, e search.Expr, sc scope) (exact bool, err error) {
	row := c.row()
	switch x := e.(type) {
	case nil:
		b.w("1")
		return true, nil
	case *search.And:
		if x == nil {
			return false, fmt.Errorf("sqlite: nil %T", e)
		}
		return c.pred(b, *x, sc)
	case *search.Or:
		if x == nil {
			return false, fmt.Errorf("sqlite: nil %T", e)
		}
		return c.pred(b, *x, sc)
	case *search.Not:
		if x == nil {
			return false, fmt.Errorf("sqlite: nil %T", e)
		}
		return c.pred(b, *x, sc)
	case search.And, search.Or:
		isAnd := false
		var args []search.Expr
		if a, ok := x.(search.And); ok {
			isAnd, args = true, a.Args
		} else {
			args = x.(search.Or).Args
		}
		// Constants fold: false in an And (true in an Or) decides it, true
		// in an And (false in an Or) drops out.
		unit, zero, op := "1", "0", " AND "
		if !isAnd {
			unit, zero, op = "0", "1", " OR "
		}
		exact = true
		var parts []*sqlb
		for _, a := range args {
			var sub sqlb
			ok, err := c.pred(&sub, a, sc)
			if err != nil {
				return false, err
			}
			exact = exact && ok
			switch sub.String() {
			case unit:
				continue
			case zero:
				if isAnd && !ok {
					continue // a loosened history condition
				}
				for _, rest := range args[len(parts):] {
					// Still validate the rest.
					var scratch sqlb
					if _, err := c.pred(&scratch, rest, sc); err != nil {
						return false, err
					}
				}
				b.w(zero)
				return exact, nil
			}
			parts = append(parts, &sub)
		}
		switch len(parts) {
		case 0:
			b.w(unit)
			return exact, nil
		case 1:
			b.add(parts[0])
			return exact, nil
		}
		b.w("(")
		for i, p := range parts {
			if i > 0 {
				b.w(op)
			}
			b.add(p)
		}
		b.w(")")
		return exact, nil
	case search.Not:
		var sub sqlb
		ok, err := c.pred(&sub, x.Arg, sc)
		if err != nil {
			return false, err
		}
		if !ok {
			// The complement of a superset is no superset: true, re-checked.
			b.w("1")
			return false, nil
		}
		switch sub.String() {
		case "1":
			b.w("0")
		case "0":
			b.w("1")
		default:
			b.w("NOT ")
			b.add(&sub)
		}
		return true, nil
	case search.Const:
		if x.Value {
			b.w("1")
		} else {
			b.w("0")
		}
		return true, nil
	}
	if !sc.top {
		// Inside a composite only value conditions (and composites) exist.
		switch e.(type) {
		case search.StringCond, search.TokenCond, search.RefCond, search.DateCond, search.NumberCond,
			search.QuantityCond, search.URICond, search.CompositeCond:
		default:
			return false, unsupported(e, "not a value condition, inside a composite")
		}
	}
	switch x := e.(type) {
	case search.IDCond:
		if len(x.IDs) == 0 {
			b.w("0")
			return true, nil
		}
		b.w("(")
		b.in(row+".id", x.IDs)
		b.w(")")
		return true, nil
	case search.KeyCond:
		c.keys(b, row, x.Keys)
		return true, nil
	case search.TypeCond:
		if len(x.Types) == 0 {
			b.w("0")
			return true, nil
		}
		b.w("(")
		b.in(row+".type", x.Types)
		b.w(")")
		return true, nil
	case search.LastUpdatedCond:
		return true, lastUpdated(b, row+".lu", x)
	case search.CompartmentCond:
		if len(x.Compartments) == 0 {
			b.w("0")
			return true, nil
		}
		if c.hist {
			b.w("EXISTS (SELECT 1 FROM hcpt WHERE ")
			b.in("c", x.Compartments)
			b.w(" AND vk = v.vk)")
		} else {
			b.w("EXISTS (SELECT 1 FROM cpt WHERE ")
			b.in("c", x.Compartments)
			b.w(" AND t = r.type AND rid = r.rid)")
		}
		return true, nil
	case search.SecurityCond:
		if len(x.Labels) == 0 {
			b.w("0")
			return true, nil
		}
		if c.hist {
			b.w("EXISTS (SELECT 1 FROM hsec WHERE ")
			b.in("l", x.Labels)
			b.w(" AND vk = v.vk)")
		} else {
			b.w("EXISTS (SELECT 1 FROM sec WHERE ")
			b.in("l", x.Labels)
			b.w(" AND t = r.type AND rid = r.rid)")
		}
		return true, nil
	case search.ReleaseCond:
		var col string
		switch x.Audience {
		case "patient":
			col = row + ".relp"
		case "proxy":
			col = row + ".relx"
		default:
			return false, fmt.Errorf("sqlite: release audience %q", x.Audience)
		}
		b.w("(", col, " IS NULL OR ", col, " <= ")
		b.a(msOf(x.Now))
		b.w(")")
		return true, nil
	case search.MissingCond:
		if c.hist {
			c.inexact = true
			b.w("1")
			return false, nil
		}
		// res.has lists the parameters with a value between separators.
		b.w("instr(r.has, ")
		b.a(compSep + x.Param + compSep)
		if x.Missing {
			b.w(") = 0")
		} else {
			b.w(") > 0")
		}
		return true, nil
	case search.CompositeCond:
		if c.hist {
			c.inexact = true
			b.w("1")
			return false, nil
		}
		return true, c.compositePred(b, x, sc)
	case search.StringCond, search.TokenCond, search.RefCond, search.DateCond, search.NumberCond,
		search.QuantityCond, search.URICond:
		if c.hist {
			c.inexact = true
			b.w("1")
			return false, nil
		}
		l, err := lowerLeaf(e)
		if err != nil {
			return false, err
		}
		c.leafPred(b, l, sc)
		return true, nil
	}
	return false, unsupported(e, "unknown node")
}

// keys writes KeyCond: (type = ? AND id IN (...)) per type.
func (c *compiler) keys(b *sqlb, row string, keys []string) {
	byType := map[string][]string{}
	var types []string
	for _, k := range keys {
		t, id, ok := strings.Cut(k, "/")
		if !ok {
			continue // Type/id always has a slash
		}
		if _, seen := byType[t]; !seen {
			types = append(types, t)
		}
		byType[t] = append(byType[t], id)
	}
	if len(types) == 0 {
		b.w("0")
		return
	}
	b.w("(")
	for i, t := range types {
		if i > 0 {
			b.w(" OR ")
		}
		b.w("(", row, ".type = ")
		b.a(t)
		b.w(" AND ")
		b.in(row+".id", byType[t])
		b.w(")")
	}
	b.w(")")
}

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

// leaf is a value condition lowered to one table: one row of the
// parameter must satisfy one of alts (each writes a boolean over an
// alias of the table).
type leaf struct {
	table string
	param string
	alts  []func(b *sqlb, a string)
	rank  int // selectivity class for the choice of the driver (lower: fewer rows)
}

// value ranks (see driverRank).
const (
	rankKey    = 0 // _id, keys
	rankEq     = 1 // equality on a selective value
	rankPrefix = 2
	rankRange  = 3
	rankWide   = 4
	rankNone   = 9 // cannot drive
)

// maxDriverRank: conditions above it do not drive a query (a scan of the
// type in the query's order, checking each resource, finds a page sooner
// than reading and sorting every match of a wide condition).
const maxDriverRank = rankRange

func col(a, c string) string { return a + "." + c }

func lowerLeaf(e search.Expr) (*leaf, error) {
	switch x := e.(type) {
	case search.StringCond:
		l := &leaf{table: "str", param: x.Param}
		v := x.Value
		switch x.Mode {
		case search.StringExact:
			l.rank = rankEq
			l.alts = append(l.alts, func(b *sqlb, a string) { b.w(col(a, "e"), " = "); b.a(v) })
		case search.StringContains:
			l.rank = rankWide
			l.alts = append(l.alts, func(b *sqlb, a string) { b.w("instr(", col(a, "v"), ", "); b.a(v); b.w(") > 0") })
		default:
			l.rank = prefixRank(v)
			l.alts = append(l.alts, func(b *sqlb, a string) { prefix(b, col(a, "v"), v) })
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

// typesIn writes the type restriction of an index table's t column.
func (c *compiler) typesIn(b *sqlb, column string) {
	if len(c.types) == 0 {
		b.w(column, " IN (SELECT name FROM types)")
		return
	}
	b.in(column, c.types)
}

// driver is a set of rids that holds every resource satisfying a condition.
type driver struct {
	rank int
	emit func(b *sqlb) // writes a SELECT of rids (or, in history, vks)
	key  string        // identity, to merge identical Or arms
}

// driverOf returns the best driver of e, if any (history: compartments only).
func (c *compiler) driverOf(e search.Expr) (*driver, error) {
	switch x := e.(type) {
	case *search.And:
		if x != nil {
			return c.driverOf(*x)
		}
	case *search.Or:
		if x != nil {
			return c.driverOf(*x)
		}
	case search.And:
		var best *driver
		for _, a := range x.Args {
			d, err := c.driverOf(a)
			if err != nil {
				return nil, err
			}
			if d != nil && (best == nil || d.rank < best.rank) {
				best = d
			}
		}
		return best, nil
	case search.Or:
		if len(x.Args) == 0 {
			return nil, nil
		}
		var arms []*driver
		rank := 0
		seen := map[string]bool{}
		for _, a := range x.Args {
			d, err := c.driverOf(a)
			if err != nil || d == nil {
				return nil, err
			}
			if seen[d.key] {
				continue
			}
			seen[d.key] = true
			arms = append(arms, d)
			rank = max(rank, d.rank)
		}
		if len(arms) == 1 {
			return arms[0], nil
		}
		keys := make([]string, len(arms))
		for i, a := range arms {
			keys[i] = a.key
		}
		return &driver{rank: rank + 1, key: "or(" + strings.Join(keys, ",") + ")", emit: func(b *sqlb) {
			for i, a := range arms {
				if i > 0 {
					b.w(" UNION ALL ")
				}
				a.emit(b)
			}
		}}, nil
	case search.CompartmentCond:
		if len(x.Compartments) == 0 {
			return nil, nil
		}
		key := fmt.Sprintf("cpt%q", x.Compartments)
		if c.hist {
			return &driver{rank: rankEq, key: key, emit: func(b *sqlb) {
				b.w("SELECT vk FROM hcpt WHERE ")
				b.in("c", x.Compartments)
			}}, nil
		}
		return &driver{rank: rankEq, key: key, emit: func(b *sqlb) {
			b.w("SELECT rid FROM cpt WHERE ")
			b.in("c", x.Compartments)
			b.w(" AND ")
			c.typesIn(b, "t")
		}}, nil
	}
	if c.hist {
		return nil, nil
	}
	switch x := e.(type) {
	case search.IDCond, search.KeyCond:
		return &driver{rank: rankKey, key: fmt.Sprintf("%#v", e), emit: func(b *sqlb) {
			b.w("SELECT rid FROM res r WHERE ")
			if k, ok := x.(search.KeyCond); ok {
				c.keys(b, "r", k.Keys)
				return
			}
			ids := x.(search.IDCond).IDs
			if len(ids) == 0 {
				b.w("0")
				return
			}
			c.typesIn(b, "r.type")
			b.w(" AND ")
			b.in("r.id", ids)
		}}, nil
	case search.SecurityCond:
		if len(x.Labels) == 0 {
			return nil, nil
		}
		return &driver{rank: rankRange, key: fmt.Sprintf("sec%q", x.Labels), emit: func(b *sqlb) {
			b.w("SELECT rid FROM sec WHERE ")
			b.in("l", x.Labels)
			b.w(" AND ")
			c.typesIn(b, "t")
		}}, nil
	case search.StringCond, search.TokenCond, search.RefCond, search.DateCond, search.NumberCond,
		search.QuantityCond, search.URICond:
		l, err := lowerLeaf(e)
		if err != nil {
			return nil, err
		}
		if l.rank > maxDriverRank {
			return nil, nil
		}
		return &driver{rank: l.rank, key: fmt.Sprintf("%#v", e), emit: func(b *sqlb) { c.leafSet(b, l, nil) }}, nil
	case search.CompositeCond:
		return c.compositeDriver(x)
	}
	return nil, nil
}

// leafSet writes the rids of resources with a row satisfying l, read from
// the table's value index; more, when set, adds conditions on each row
// (the other parts of a composite, tied to the row's tuple).
func (c *compiler) leafSet(b *sqlb, l *leaf, more func(b *sqlb, a string) error) error {
	if len(l.alts) == 0 {
		b.w("SELECT NULL WHERE 0")
		return nil
	}
	for i, alt := range l.alts {
		if i > 0 {
			b.w(" UNION ALL ")
		}
		a := c.alias("x")
		b.w("SELECT ", a, ".rid FROM ", l.table, " ", a, " WHERE ")
		c.typesIn(b, a+".t")
		b.w(" AND ", a, ".p = ")
		b.a(l.param)
		b.w(" AND ")
		alt(b, a)
		if more != nil {
			if err := more(b, a); err != nil {
				return err
			}
		}
	}
	return nil
}

// compositeDriver drives by the most selective value part of a composite,
// its rows tied to their tuple's other parts.
func (c *compiler) compositeDriver(x search.CompositeCond) (*driver, error) {
	best := -1
	var bestLeaf *leaf
	for i, part := range x.Parts {
		switch part.(type) {
		case search.StringCond, search.TokenCond, search.RefCond, search.DateCond, search.NumberCond,
			search.QuantityCond, search.URICond:
		default:
			continue
		}
		l, err := lowerLeaf(part)
		if err != nil {
			return nil, err
		}
		if bestLeaf == nil || l.rank < bestLeaf.rank {
			best, bestLeaf = i, l
		}
	}
	if bestLeaf == nil || bestLeaf.rank > maxDriverRank {
		return nil, nil
	}
	prefixP := x.Param + compSep
	drive := *bestLeaf
	drive.param = prefixP + drive.param
	return &driver{rank: bestLeaf.rank, key: fmt.Sprintf("%#v", x), emit: func(b *sqlb) {
		_ = c.leafSet(b, &drive, func(b *sqlb, a string) error {
			inner := scope{rid: a + ".rid", cid: a + ".cid", prefix: prefixP}
			for i, part := range x.Parts {
				if i == best {
					continue
				}
				b.w(" AND ")
				if err := c.partPred(b, part, inner); err != nil {
					return err
				}
			}
			return nil
		})
	}}, nil
}

// flatten lists the conjuncts of e's top-level And.
func flatten(e search.Expr) []search.Expr {
	switch x := e.(type) {
	case search.And:
		var out []search.Expr
		for _, a := range x.Args {
			out = append(out, flatten(a)...)
		}
		return out
	case *search.And:
		if x != nil {
			return flatten(*x)
		}
	}
	return []search.Expr{e}
}

// where is a compiled filter: a boolean over the row and, optionally, the
// driving set.
type where struct {
	cond    sqlb
	full    sqlb  // every conjunct, the driver's too (plans without the driver)
	drive   *sqlb // nil: none
	rows    int   // rows the probe counted in the driver's set (at most probeCap; -1: not probed)
	inexact bool  // history: re-check with search.Matcher
	never   bool  // a conjunct is constant false: nothing matches
}

// probeCap bounds the rows a probe counts (see compileWhere).
const probeCap = 500

// compileWhere compiles the filter of a search (hist false) or history.
// probe, when set, counts up to probeCap rows of a driver's set: with
// several candidates for the driver, the one with the fewest rows drives
// (value-specific selectivity: "category=laboratory" against "patient=X").
func compileWhere(e search.Expr, types []string, hist bool, probe func(*sqlb) (int, error)) (*where, error) {
	c := &compiler{hist: hist, types: types}
	conj := flatten(e)
	// The driver: the best conjunct that is an indexable set.
	type cand struct {
		i int
		d *driver
	}
	var cands []cand
	for i, a := range conj {
		d, err := c.driverOf(a)
		if err != nil {
			return nil, err
		}
		if d != nil {
			cands = append(cands, cand{i, d})
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return a.d.rank - b.d.rank })
	bestI := -1
	var best *driver
	if len(cands) > 0 {
		bestI, best = cands[0].i, cands[0].d
	}
	fewest := -1
	if probe != nil && len(cands) > 0 && best.rank > rankKey {
		for _, cd := range cands {
			var b sqlb
			b.w("SELECT count(*) FROM (")
			cd.d.emit(&b)
			b.w(" LIMIT ", fmt.Sprint(probeCap), ")")
			n, err := probe(&b)
			if err != nil {
				return nil, err
			}
			if fewest < 0 || n < fewest {
				fewest, bestI, best = n, cd.i, cd.d
			}
			if n < 50 {
				break // few enough: reading and sorting them is cheap
			}
		}
	}
	w := &where{rows: fewest}
	if best != nil && best.rank > rankKey {
		w.drive = &sqlb{}
		best.emit(w.drive)
	}
	exact := true
	n := 0
	for i, a := range conj {
		var sub sqlb
		ok, err := c.pred(&sub, a, topScope)
		if err != nil {
			return nil, err
		}
		exact = exact && ok
		if sub.String() == "1" {
			continue
		}
		if sub.String() == "0" && exact {
			w.never = true
		}
		if w.full.sb.Len() > 0 {
			w.full.w(" AND ")
		}
		w.full.add(&sub)
		if w.drive != nil && i == bestI && isLeafDriver(a) {
			continue // the set is exact: no need to check it again
		}
		if n > 0 {
			w.cond.w(" AND ")
		}
		w.cond.add(&sub)
		n++
	}
	if n == 0 {
		w.cond.w("1")
	}
	if w.full.sb.Len() == 0 {
		w.full.w("1")
	}
	w.inexact = !exact || c.inexact
	return w, nil
}

// isLeafDriver: the driver set of e is exactly e's matches (not a superset).
func isLeafDriver(e search.Expr) bool {
	switch e.(type) {
	case search.StringCond, search.TokenCond, search.RefCond, search.DateCond, search.NumberCond,
		search.QuantityCond, search.URICond, search.CompositeCond, search.CompartmentCond, search.SecurityCond:
		return true
	}
	return false
}
