package sqlite

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// The driving set of a query: the one indexed condition a search starts
// from (the smallest when several qualify), and the WHERE it compiles to.

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
		d := &driver{rank: rankEq, key: key, emit: func(b *sqlb) {
			b.w("SELECT rid FROM cpt WHERE ")
			b.in("c", x.Compartments)
			b.w(" AND ")
			c.typesIn(b, "t")
		}}
		if len(x.Compartments) == 1 && len(c.types) == 1 {
			// Primary key (c, t, rid).
			d.ordered = &orderedSet{table: "cpt", cond: func(b *sqlb, a string) {
				b.w(a, ".c = ")
				b.a(x.Compartments[0])
				b.w(" AND ", a, ".t = ")
				b.a(c.types[0])
			}}
		}
		return d, nil
	}
	if c.hist {
		return nil, nil
	}
	switch x := e.(type) {
	case search.IDCond, search.KeyCond:
		return &driver{rank: rankKey, key: search.Key(e), emit: func(b *sqlb) {
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
		d := &driver{rank: rankRange, key: fmt.Sprintf("sec%q", x.Labels), emit: func(b *sqlb) {
			b.w("SELECT rid FROM sec WHERE ")
			b.in("l", x.Labels)
			b.w(" AND ")
			c.typesIn(b, "t")
		}}
		if len(x.Labels) == 1 && len(c.types) == 1 {
			// Primary key (l, t, rid).
			d.ordered = &orderedSet{table: "sec", cond: func(b *sqlb, a string) {
				b.w(a, ".l = ")
				b.a(x.Labels[0])
				b.w(" AND ", a, ".t = ")
				b.a(c.types[0])
			}}
		}
		return d, nil
	case search.StringCond, search.TokenCond, search.RefCond, search.DateCond, search.NumberCond,
		search.QuantityCond, search.URICond:
		l, err := lowerLeaf(e)
		if err != nil {
			return nil, err
		}
		if l.rank > maxDriverRank {
			return nil, nil
		}
		d := &driver{rank: l.rank, key: search.Key(e), emit: func(b *sqlb) { c.leafSet(b, l, nil) }}
		if l.ordered && len(l.alts) == 1 && len(c.types) == 1 {
			alt := l.alts[0]
			d.ordered = &orderedSet{table: l.table, index: l.index, cond: func(b *sqlb, a string) {
				b.w(a, ".t = ")
				b.a(c.types[0])
				b.w(" AND ", a, ".p = ")
				b.a(l.param)
				b.w(" AND ")
				alt(b, a)
			}}
		}
		return d, nil
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
		b.w("SELECT NULL AS rid WHERE 0")
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
	return &driver{rank: bestLeaf.rank, key: search.Key(x), emit: func(b *sqlb) {
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
	w := &where{rows: fewest, keyed: best != nil && best.rank == rankKey}
	if best != nil && best.rank > rankKey {
		w.drive = &sqlb{}
		best.emit(w.drive)
		w.ordered = best.ordered
	}
	exact := true
	n := 0
	// The same conditions over the driver's rid (where.ridCond), when
	// its rows can be counted alone; aliases apart from the first pass's.
	var rc *compiler
	if w.ordered != nil {
		rc = &compiler{types: types, n: 1000}
		w.ridCond = &sqlb{}
	}
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
		if rc != nil {
			var rsub sqlb
			if _, err := rc.pred(&rsub, a, scope{rid: "d.rid", cid: "0", top: true}); err != nil {
				return nil, err
			}
			if n > 0 {
				w.ridCond.w(" AND ")
			}
			w.ridCond.add(&rsub)
		}
		n++
	}
	if n == 0 {
		w.cond.w("1")
		if w.ridCond != nil {
			w.ridCond.w("1")
		}
	}
	if rc != nil && rc.rowUsed {
		w.ridCond = nil
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
