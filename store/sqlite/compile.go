package sqlite

import (
	"errors"
	"fmt"
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
	// rowUsed: a condition read a column of the row other than its rid
	// (value conditions read only the rid; see where.ridCond).
	rowUsed bool
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
	switch e.(type) {
	case search.StringCond, search.TokenCond, search.RefCond, search.DateCond, search.NumberCond,
		search.QuantityCond, search.URICond, search.CompositeCond:
	default:
		c.rowUsed = true
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

// leaf is a value condition lowered to one table: one row of the
// parameter must satisfy one of alts (each writes a boolean over an
// alias of the table).
type leaf struct {
	table string
	param string
	alts  []func(b *sqlb, a string)
	rank  int // selectivity class for the choice of the driver (lower: fewer rows)
	// ordered: one alternative fixing every column of the table's primary
	// key before rid by equality, so that within one type the index
	// delivers the matching rows in rid order (see driver.ordered), or,
	// with index set, fixing every column of that index before rid.
	ordered bool
	index   string // the index delivering the rid order, "" for the primary key
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
	// ordered, when set, is the driver as a join over its table (alias a):
	// table names it, cond writes its conditions over a. Its primary key
	// delivers the rows in rid order, so a search in the default order
	// (type, rid) of one type reads the set in order and stops at the page
	// (GROUP BY a.rid drops a resource's repeated rows in that order).
	ordered *orderedSet
}

// orderedSet is a driver readable in rid order (driver.ordered).
type orderedSet struct {
	table string
	index string // INDEXED BY, "" for the primary key
	cond  func(b *sqlb, a string)
}

// where is a compiled filter: a boolean over the row and, optionally, the
// driving set.
type where struct {
	cond    sqlb
	full    sqlb        // every conjunct, the driver's too (plans without the driver)
	drive   *sqlb       // nil: none
	ordered *orderedSet // the driver readable in rid order, if it is
	// ridCond: cond over the rid "d.rid" alone, when every condition in it
	// reads only the rid (value conditions); nil otherwise. Index rows
	// exist only for current versions that are not deleted, so a count
	// over an ordered driver needs no resource row.
	ridCond *sqlb
	rows    int  // rows the probe counted in the driver's set (at most probeCap; -1: not probed)
	keyed   bool // the best conjunct is _id or keys: res_type_id (type, id) serves it, no driver
	inexact bool // history: re-check with search.Matcher
	never   bool // a conjunct is constant false: nothing matches
}

// probeCap bounds the rows a probe counts (see compileWhere).
const probeCap = 500
