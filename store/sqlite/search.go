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
	from  string // "res r", with an index hint for system searches without a driver

	// window: the order is an index's (a scan in order stops at the
	// page), and the driver's set is large (the probe reached probeCap):
	// the first windowRows resources in order are checked first.
	window bool
	types  sqlb // the type restriction and tombstone exclusion
	full   sqlb // every condition, without the driver
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
	if len(q.Types) == 0 && w.drive == nil {
		// Every type, no driving set: read type by type through
		// (type, id), in the default order (the planner would otherwise
		// weigh one scan of the whole table).
		p.from = "res r INDEXED BY res_type_id"
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
	p.terms = append(p.terms, sortTerm{expr: "r.type", out: "q.type"}, sortTerm{expr: "r.id", out: "q.id"})
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
	// The orders an index delivers: the default (type, id), and within one
	// type _lastUpdated (res_type_lu) and date (res_sort_date).
	ordered := len(q.Sort) == 0 || len(q.Types) == 1 && len(q.Sort) == 1 && (q.Sort[0].Param == "_lastUpdated" || q.Sort[0].Param == "date")
	p.window = w.drive != nil && w.rows >= probeCap && ordered
	if w.drive != nil {
		p.base.w(" AND r.rid IN (")
		p.base.add(w.drive)
		p.base.w(")")
	}
	p.base.w(" AND ")
	p.base.add(&w.cond)
	return p, nil
}

// after writes the keyset condition "strictly after vals" over terms
// (search.html#paging): lexicographic, each term in its direction, NULL
// (a missing sort value) lowest, as SQLite orders.
func after(b *sqlb, terms []sortTerm, vals []any) {
	n := len(terms)
	if n >= 2 && terms[n-2].expr == "r.type" && terms[n-1].expr == "r.id" && len(terms) == 2 {
		// The default order: a row-value range on the (type, id) index.
		b.w("(r.type, r.id) > (")
		b.a(vals[0])
		b.w(", ")
		b.a(vals[1])
		b.w(")")
		return
	}
	var rec func(i int)
	rec = func(i int) {
		if i == len(terms) {
			b.w("0")
			return
		}
		t, v := terms[i], vals[i]
		if i == len(terms)-2 {
			// type, id ascending
			b.w("(", t.expr, ", ", terms[i+1].expr, ") > (")
			b.a(v)
			b.w(", ")
			b.a(vals[i+1])
			b.w(")")
			return
		}
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
	b.w(" FROM (SELECT ", p.inner, " FROM (SELECT * FROM ", p.from)
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

func (p *searchPlan) countSQL() *sqlb {
	var b sqlb
	b.w("SELECT count(*) FROM ", p.from)
	b.add(&p.base)
	return &b
}

// Search answers q (search.html): the matches of q.Filter among the current
// versions of q.Types, in q.Sort order then type and id, a page of q.Count
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
	if q.Total {
		c := p.countSQL()
		if err := s.rdb.QueryRowContext(ctx, c.String(), c.args...).Scan(&page.Total); err != nil {
			return page, fmt.Errorf("sqlite: search count: %w", err)
		}
	}
	if q.Count <= 0 {
		return page, nil
	}
	if p.window && !s.noWindow {
		recs, next, err := s.page(ctx, p, p.windowSQL(vals, q.Count+1), q.Count)
		if err != nil {
			return page, err
		}
		if next != "" {
			page.Records, page.Next = recs, next
			return page, nil
		}
	}
	page.Records, page.Next, err = s.page(ctx, p, p.pageSQL(vals, q.Count+1), q.Count)
	return page, err
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
