package sqlite

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// sortTerm is one ORDER BY term of a search.
type sortTerm struct {
	expr     string // over res r
	out      string // the same value in the outer query (q.*)
	desc     bool
	nullable bool
}

// searchPlan is the SQL of one search.
type searchPlan struct {
	terms []sortTerm
	base  sqlb // the WHERE conditions without the cursor
	bind  string
	inner string // the select list of the inner query
	never bool   // the filter is constant false
	from  string // "res r", with an index hint for searches without a driver
	// orderIndex: "res r INDEXED BY" the index delivering the order within
	// each type, "" when none does.
	orderIndex string

	// window: the order is an index's (a scan in order stops at the
	// page), and the driver's set is large (the probe reached probeCap):
	// the first windowRows resources in order are checked first.
	window bool
	types  sqlb // the type restriction and tombstone exclusion
	full   sqlb // every condition, without the driver
	// join: the driver read in rid order (one type, default order), cond
	// the other conditions.
	join    *orderedSet
	counted *orderedSet // the same, for a bounded count in any order
	ridCond *sqlb       // cond over d.rid alone, nil when it reads the row (where.ridCond)
	cond    sqlb
	drive   *sqlb // the driving set's rids (compileWhere), nil when none
}

// windowRows is how many resources, in the query's order, a window
// attempt checks before falling back to the driving set: enough for a
// page when about one in 25 matches.
func windowRows(limit int) int { return min(max(512, 25*limit), 5000) }

func (s *Store) planSearch(ctx context.Context, q store.Query) (*searchPlan, error) {
	for _, t := range q.Types {
		if err := validType(t); err != nil {
			return nil, fmt.Errorf("sqlite: search: %w", err)
		}
	}
	w, err := compileWhere(q.Filter, q.Types, false, func(b *sqlb) (n int, err error) {
		err = s.rdb.QueryRowContext(ctx, b.String(), b.args...).Scan(&n)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: search: %w", err)
	}
	p := &searchPlan{never: w.never, from: "res r"}
	// The index of the order, when one delivers it within each type:
	// read in order, a page stops at its last row, so a query without a
	// driving set (and a window) reads it whatever the planner would
	// guess (a scan of the whole table, or another index and a sort).
	switch {
	case len(q.Sort) == 0:
		p.orderIndex = "res r INDEXED BY res_type_rid"
	case len(q.Types) == 1 && len(q.Sort) == 1 && q.Sort[0].Param == "_lastUpdated":
		p.orderIndex = "res r INDEXED BY res_type_lu_rid"
	case len(q.Types) == 1 && len(q.Sort) == 1 && q.Sort[0].Param == "date":
		p.orderIndex = "res r INDEXED BY res_sort_date"
	}
	if w.drive != nil && w.rows >= 0 && w.rows < probeCap {
		// A small driving set (the probe counted it): read it by rid and
		// sort it. Left to itself, SQLite may walk the order's index
		// (res_sort_date) for a LIMIT and test each row against the set:
		// the whole type for a patient's few results.
		p.from = "res r NOT INDEXED"
	}
	if w.drive == nil && !w.keyed {
		// (An _id or key condition is read from res_type_id; forcing the
		// order's index would walk the whole type to find its rows.)
		switch {
		case p.orderIndex != "":
			p.from = p.orderIndex
		case len(q.Types) == 0:
			p.from = "res r INDEXED BY res_type_rid" // type by type, not one scan
		}
	}
	var sel []string
	var bind strings.Builder
	bind.WriteString("s|" + strings.Join(q.Types, ",") + "|")
	for i, k := range q.Sort {
		t := sortTerm{desc: k.Desc}
		switch k.Param {
		case "_id":
			t.expr, t.out = "r.id", "q.id"
		case "_lastUpdated":
			t.expr, t.out = "r.lu", "q.lu"
		default:
			// The value in res.srt (NULL when missing); a code that
			// cannot be named in a JSON path has no values.
			a := "s" + strconv.Itoa(i)
			e := "NULL"
			if sortPathOK(k.Param) {
				e = `json_extract(r.srt, '$."` + k.Param + `"')`
			}
			t.expr, t.out, t.nullable = e, "q."+a, true
			sel = append(sel, e+" AS "+a)
		}
		if k.Desc {
			bind.WriteString("-")
		}
		bind.WriteString(k.Param + ",")
		p.terms = append(p.terms, t)
	}
	// Ties: type (when several), then rid, the insertion order, which
	// every index delivers within one type (its rowid suffix): the default
	// order of one type is an index's, whichever condition drives.
	// rid runs in the direction of the last sort key, so that an index
	// on (type, key) read backwards orders the ties too (its rowid suffix).
	if len(q.Types) != 1 {
		p.terms = append(p.terms, sortTerm{expr: "r.type", out: "q.type"})
	}
	p.terms = append(p.terms, sortTerm{expr: "r.rid", out: "q.rid", desc: len(q.Sort) > 0 && q.Sort[len(q.Sort)-1].Desc})
	p.bind = bind.String()
	p.inner = strings.Join(append([]string{"r.rid AS rid", "r.vid AS vid", "r.type AS type", "r.id AS id", "r.lu AS lu"}, sel...), ", ")

	p.types.w(" WHERE ")
	if len(q.Types) == 0 {
		p.types.w("r.type IN (SELECT name FROM types)")
	} else {
		p.types.in("r.type", q.Types)
	}
	p.types.w(" AND r.deleted = 0")
	p.base.add(&p.types)
	p.full.add(&w.full)
	// The orders an index delivers: the default (type, rid), and within one
	// type _lastUpdated (res_type_lu) and date (res_sort_date).
	ordered := len(q.Sort) == 0 || len(q.Types) == 1 && len(q.Sort) == 1 && (q.Sort[0].Param == "_lastUpdated" || q.Sort[0].Param == "date")
	if len(q.Types) == 1 && w.ordered != nil && !s.noJoin {
		// The driver's index is in rid order: a bounded count reads it
		// in order and stops; in the default order so does a page.
		p.counted, p.ridCond = w.ordered, w.ridCond
		if len(q.Sort) == 0 {
			p.join = w.ordered
		}
	}
	p.window = w.drive != nil && w.rows >= probeCap && ordered && p.join == nil && p.orderIndex != ""
	p.drive = w.drive
	if w.drive != nil {
		p.base.w(" AND r.rid IN (")
		p.base.add(w.drive)
		p.base.w(")")
	}
	p.base.w(" AND ")
	p.base.add(&w.cond)
	p.cond.add(&w.cond)
	return p, nil
}

// after writes the keyset condition "strictly after vals" over terms
// (search.html#paging): lexicographic, each term in its direction, NULL
// (a missing sort value) lowest, as SQLite orders. The ties (type when
// several, rid) are ascending and compared as one row value, a range on
// the index that orders them.
func after(b *sqlb, terms []sortTerm, vals []any) {
	tie := len(terms) - 1
	if tie > 0 && terms[tie-1].expr == "r.type" {
		tie--
	}
	var rec func(i int)
	rec = func(i int) {
		if i == len(terms)-1 || i == tie && terms[i].desc == terms[i+1].desc {
			op := " > "
			if terms[i].desc {
				op = " < "
			}
			if i == len(terms)-1 {
				b.w(terms[i].expr, op)
				b.a(vals[i])
				return
			}
			b.w("(", terms[i].expr, ", ", terms[i+1].expr, ")", op, "(")
			b.a(vals[i])
			b.w(", ")
			b.a(vals[i+1])
			b.w(")")
			return
		}
		t, v := terms[i], vals[i]
		b.w("(")
		switch {
		case v == nil && !t.desc:
			b.w(t.expr, " IS NOT NULL OR (", t.expr, " IS NULL AND ")
			rec(i + 1)
			b.w(")")
		case v == nil:
			b.w(t.expr, " IS NULL AND ")
			rec(i + 1)
		default:
			op := " > "
			if t.desc {
				op = " < "
			}
			b.w(t.expr, op)
			b.a(v)
			if t.desc && t.nullable {
				b.w(" OR ", t.expr, " IS NULL")
			}
			b.w(" OR (", t.expr, " = ")
			b.a(v)
			b.w(" AND ")
			rec(i + 1)
			b.w(")")
		}
		b.w(")")
	}
	rec(0)
}

func orderBy(terms []sortTerm, outer bool) string {
	parts := make([]string, len(terms))
	for i, t := range terms {
		e := t.expr
		if outer {
			e = t.out
		}
		if t.desc {
			e += " DESC"
		}
		parts[i] = e
	}
	return " ORDER BY " + strings.Join(parts, ", ")
}

// searchSQL is the page query of p (cursor values or nil, limit).
func (p *searchPlan) pageSQL(vals []any, limit int) *sqlb {
	if p.join != nil {
		return p.joinSQL(vals, limit)
	}
	var b sqlb
	b.w("SELECT ", verCols)
	for _, t := range p.terms {
		b.w(", ", t.out)
	}
	b.w(" FROM (SELECT ", p.inner, " FROM ", p.from)
	b.add(&p.base)
	if vals != nil {
		b.w(" AND ")
		after(&b, p.terms, vals)
	}
	b.w(orderBy(p.terms, false), " LIMIT ")
	b.a(limit)
	b.w(") q JOIN ver v ON v.rid = q.rid AND v.vid = q.vid", orderBy(p.terms, true))
	return &b
}

// windowSQL checks the first windowRows resources after the cursor, in
// order, against every condition; a page from it is exact when it holds
// limit rows (every resource before them was checked).
func (p *searchPlan) windowSQL(vals []any, limit int) *sqlb {
	var b sqlb
	b.w("SELECT ", verCols)
	for _, t := range p.terms {
		b.w(", ", t.out)
	}
	b.w(" FROM (SELECT ", p.inner, " FROM (SELECT * FROM ", p.orderIndex)
	b.add(&p.types)
	if vals != nil {
		b.w(" AND ")
		after(&b, p.terms, vals)
	}
	b.w(orderBy(p.terms, false), " LIMIT ", strconv.Itoa(windowRows(limit)), ") r WHERE ")
	b.add(&p.full)
	b.w(orderBy(p.terms, false), " LIMIT ")
	b.a(limit)
	b.w(") q JOIN ver v ON v.rid = q.rid AND v.vid = q.vid", orderBy(p.terms, true))
	return &b
}

// joinSQL reads the driver's rows in rid order (p.join), joins each
// resource and checks the other conditions, stopping at the page.
func (p *searchPlan) joinSQL(vals []any, limit int) *sqlb {
	var b sqlb
	b.w("SELECT ", verCols, ", q.rid FROM (SELECT ", p.inner, " FROM ")
	p.joined(&b, p.join, vals)
	b.w(" LIMIT ")
	b.a(limit)
	b.w(") q JOIN ver v ON v.rid = q.rid AND v.vid = q.vid ORDER BY q.rid")
	return &b
}

// joined writes the FROM and WHERE of the resources of an ordered driver
// after the cursor vals (or nil), in rid order, each once.
func (p *searchPlan) joined(b *sqlb, o *orderedSet, vals []any) {
	o.from(b)
	b.w(" JOIN res r ON r.rid = d.rid WHERE ")
	o.cond(b, "d")
	if vals != nil {
		b.w(" AND d.rid > ")
		b.a(vals[0])
	}
	b.w(" AND r.deleted = 0 AND ")
	b.add(&p.cond)
	b.w(" GROUP BY d.rid ORDER BY d.rid")
}

// from writes the driver's table as "d", read through o.index when set.
func (o *orderedSet) from(b *sqlb) {
	b.w(o.table, " d")
	if o.index != "" {
		b.w(" INDEXED BY ", o.index)
	}
}

// countSQL counts the matches, at most limit+1 of them when limit > 0.
func (p *searchPlan) countSQL(limit int64) *sqlb {
	var b sqlb
	if limit > 0 && p.counted != nil && p.ridCond != nil {
		// The driver's rows alone, each resource once, checked by rid:
		// no resource row needs reading (where.ridCond).
		b.w("SELECT count(*) FROM (SELECT 1 FROM ")
		p.counted.from(&b)
		b.w(" WHERE ")
		p.counted.cond(&b, "d")
		if p.ridCond.String() != "1" {
			b.w(" AND ")
			b.add(p.ridCond)
		}
		b.w(" GROUP BY d.rid LIMIT ")
		b.a(limit + 1)
		b.w(") q")
		return &b
	}
	if limit > 0 && p.counted != nil {
		b.w("SELECT count(*) FROM (SELECT 1 FROM ")
		p.joined(&b, p.counted, nil)
		b.w(" LIMIT ")
		b.a(limit + 1)
		b.w(") q")
		return &b
	}
	if limit > 0 && p.drive != nil {
		// Read from the driving set and stop past limit: "rid IN (set)"
		// would build the whole set first (a prefix range of a common
		// name: every match, whatever the limit).
		b.w("SELECT count(*) FROM (SELECT DISTINCT drv.rid FROM (")
		b.add(p.drive)
		b.w(") drv")
		if p.cond.String() != "1" {
			// (Without other conditions the set alone is the answer: index
			// rows exist only for current versions that are not deleted,
			// of the types the set names, so no resource needs reading.)
			b.w(" JOIN res r ON r.rid = drv.rid")
			b.add(&p.types)
			b.w(" AND ")
			b.add(&p.cond)
		}
		b.w(" LIMIT ")
		b.a(limit + 1)
		b.w(") q")
		return &b
	}
	if limit > 0 {
		b.w("SELECT count(*) FROM (SELECT 1 FROM ", p.from)
		b.add(&p.base)
		b.w(" LIMIT ")
		b.a(limit + 1)
		b.w(") q")
		return &b
	}
	b.w("SELECT count(*) FROM ", p.from)
	b.add(&p.base)
	return &b
}

// Search answers q (search.html): the matches of q.Filter among the current
// versions of q.Types, in q.Sort order then type and rid (insertion), a page of q.Count
// after q.Cursor.
func (s *Store) Search(ctx context.Context, q store.Query) (store.Page, error) {
	page := store.Page{Total: -1}
	p, err := s.planSearch(ctx, q)
	if err != nil {
		return page, err
	}
	var vals []any
	if q.Cursor != "" {
		if vals, err = s.decodeCursor(q.Cursor, p.bind, len(p.terms)); err != nil {
			return page, err
		}
	}
	if p.never {
		if q.Total {
			page.Total = 0
		}
		return page, nil
	}
	if q.Count > 0 {
		if err := s.searchPage(ctx, p, vals, q.Count, &page); err != nil {
			return page, err
		}
	}
	if q.Total {
		if q.Cursor == "" && q.Count > 0 && page.Next == "" {
			// The first page holds every match.
			page.Total = int64(len(page.Records))
			return page, nil
		}
		c := p.countSQL(q.TotalLimit)
		if err := s.rdb.QueryRowContext(ctx, c.String(), c.args...).Scan(&page.Total); err != nil {
			return page, fmt.Errorf("sqlite: search count: %w", err)
		}
		if q.TotalLimit > 0 && page.Total > q.TotalLimit {
			page.Total = -1
		}
	}
	return page, nil
}

// searchPage reads the page of p after vals into page.
func (s *Store) searchPage(ctx context.Context, p *searchPlan, vals []any, count int, page *store.Page) (err error) {
	if p.window && !s.noWindow {
		recs, next, err := s.page(ctx, p, p.windowSQL(vals, count+1), count)
		if err != nil {
			return err
		}
		if next != "" {
			page.Records, page.Next = recs, next
			return nil
		}
	}
	page.Records, page.Next, err = s.page(ctx, p, p.pageSQL(vals, count+1), count)
	return err
}

// page runs a page query: at most count records, and the cursor after
// the last when there are more.
func (s *Store) page(ctx context.Context, p *searchPlan, b *sqlb, count int) ([]store.Record, string, error) {
	rows, err := s.rdb.QueryContext(ctx, b.String(), b.args...)
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: search: %w", err)
	}
	defer rows.Close()
	var recs []store.Record
	var last []any
	for rows.Next() {
		if len(recs) == count {
			return recs, s.encodeCursor(p.bind, last), nil
		}
		sv := make([]any, len(p.terms))
		dest := make([]any, len(sv))
		for i := range sv {
			dest[i] = &sv[i]
		}
		r, err := scanRecord(rows, dest...)
		if err != nil {
			return nil, "", fmt.Errorf("sqlite: search: %w", err)
		}
		recs = append(recs, r)
		last = sv
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlite: search: %w", err)
	}
	return recs, "", nil
}

// History lists versions newest first (http.html#history): lastUpdated
// descending, then type, id ascending, version descending.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) (store.Page, error) {
	page := store.Page{Total: -1}
	var types []string
	if q.Type != "" {
		types = []string{q.Type}
	}
	w, err := compileWhere(q.Filter, types, true, nil)
	if err != nil {
		return page, fmt.Errorf("sqlite: history: %w", err)
	}
	if w.never {
		if q.Total {
			page.Total = 0
		}
		return page, nil
	}
	var m *search.Matcher
	if w.inexact {
		if m, err = search.NewMatcher(q.Filter); err != nil {
			return page, fmt.Errorf("sqlite: history: %w", err)
		}
	}
	var base sqlb
	switch {
	case q.ID != "":
		base.w(" WHERE v.rid = (SELECT rid FROM res WHERE type = ")
		base.a(q.Type)
		base.w(" AND id = ")
		base.a(q.ID)
		base.w(")")
	case q.Type != "":
		base.w(" WHERE v.type = ")
		base.a(q.Type)
	default:
		base.w(" WHERE 1")
	}
	if !q.Since.IsZero() {
		ms, ns := splitTime(q.Since)
		base.w(" AND v.lu >= ")
		base.a(ms)
		base.w(" AND (v.lu > ")
		base.a(ms)
		base.w(" OR v.luns >= ")
		base.a(ns)
		base.w(")")
	}
	if !q.At.IsZero() {
		ms, ns := splitTime(q.At)
		notAfter := func(a string) {
			base.w(a, ".lu <= ")
			base.a(ms)
			base.w(" AND (", a, ".lu < ")
			base.a(ms)
			base.w(" OR ", a, ".luns <= ")
			base.a(ns)
			base.w(")")
		}
		base.w(" AND ")
		notAfter("v")
		base.w(" AND NOT EXISTS (SELECT 1 FROM ver w WHERE w.rid = v.rid AND w.vid > v.vid AND ")
		notAfter("w")
		base.w(")")
	}
	if w.drive != nil {
		base.w(" AND v.vk IN (")
		base.add(w.drive)
		base.w(")")
	}
	base.w(" AND ")
	base.add(&w.cond)
	bind := "h|" + q.Type + "|" + q.ID

	var cur []any
	if q.Cursor != "" {
		if cur, err = s.decodeCursor(q.Cursor, bind, 4); err != nil {
			return page, err
		}
	}
	const order = " ORDER BY v.lu DESC, v.type, v.id, v.vid DESC"
	keep := func(r *store.Record) bool {
		return m == nil || m.Match(search.Subject{Type: r.Type, ID: r.ID, LastUpdated: r.LastUpdated, Index: &r.Index,
			PatientVisible: r.Release.Patient, ProxyVisible: r.Release.Proxy})
	}
	if q.Total {
		if m == nil {
			var b sqlb
			b.w("SELECT count(*) FROM ver v")
			b.add(&base)
			if err := s.rdb.QueryRowContext(ctx, b.String(), b.args...).Scan(&page.Total); err != nil {
				return page, fmt.Errorf("sqlite: history count: %w", err)
			}
		} else {
			var b sqlb
			b.w("SELECT ", verCols, " FROM ver v")
			b.add(&base)
			n := int64(0)
			err := s.eachRow(ctx, &b, func(r *store.Record, _ []any) bool {
				if keep(r) {
					n++
				}
				return true
			})
			if err != nil {
				return page, fmt.Errorf("sqlite: history count: %w", err)
			}
			page.Total = n
		}
	}
	if q.Count <= 0 {
		return page, nil
	}
	// Pages of Count+1; with a Go re-check, further batches until
	// Count+1 versions are kept.
	for {
		var b sqlb
		b.w("SELECT ", verCols, ", v.lu, v.vid FROM ver v")
		b.add(&base)
		if cur != nil {
			b.w(" AND (v.lu < ")
			b.a(cur[0])
			b.w(" OR (v.lu = ")
			b.a(cur[0])
			b.w(" AND ((v.type, v.id) > (")
			b.a(cur[1])
			b.w(", ")
			b.a(cur[2])
			b.w(") OR (v.type = ")
			b.a(cur[1])
			b.w(" AND v.id = ")
			b.a(cur[2])
			b.w(" AND v.vid < ")
			b.a(cur[3])
			b.w("))))")
		}
		batch := q.Count + 1
		if m != nil {
			batch = max(batch, 256)
		}
		b.w(order, " LIMIT ")
		b.a(batch)
		seen := 0
		done := false
		err := s.eachRow(ctx, &b, func(r *store.Record, extra []any) bool {
			seen++
			if len(page.Records) == q.Count {
				if keep(r) {
					page.Next = s.encodeCursor(bind, cur)
					done = true
					return false
				}
			} else if keep(r) {
				page.Records = append(page.Records, *r)
			}
			cur = []any{extra[0], r.Type, r.ID, extra[1]}
			return true
		}, new(int64), new(int64))
		if err != nil {
			return page, fmt.Errorf("sqlite: history: %w", err)
		}
		if done || seen < batch {
			return page, nil
		}
	}
}

// eachRow runs b and calls fn with each record (and its extra columns,
// scanned into extra's types) until fn returns false.
func (s *Store) eachRow(ctx context.Context, b *sqlb, fn func(*store.Record, []any) bool, extra ...any) error {
	rows, err := s.rdb.QueryContext(ctx, b.String(), b.args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRecord(rows, extra...)
		if err != nil {
			return err
		}
		vals := make([]any, len(extra))
		for i, e := range extra {
			vals[i] = derefInt(e)
		}
		if !fn(&r, vals) {
			return nil
		}
	}
	return rows.Err()
}

func derefInt(p any) any {
	if x, ok := p.(*int64); ok {
		return *x
	}
	return p
}
