// Package engine runs FHIR R4 searches (search.html) against a store:
// it parses the query, resolves chains (search.html#chaining) and _has
// (search.html#has) with inner store searches, applies the caller's access
// constraint to every store query it runs, pages through the store's
// cursors, adds _include / _revinclude resources (search.html#include) and
// renders the searchset Bundle (bundle.html#searchset).
package engine

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Defaults of the bounds an Engine applies.
const (
	// DefaultMaxInner bounds the matches of the inner search of one chain
	// or _has, and the resources one _has resolves into; beyond it the
	// search is rejected as too costly.
	DefaultMaxInner = 1000
	// DefaultMaxInnerTotal bounds the inner matches of every chain and
	// _has of one request together (the parser bounds their number:
	// search.MaxChains, search.MaxHas, search.MaxChainDepth).
	DefaultMaxInnerTotal = 5000
	// DefaultMaxInclude bounds the resources _include/_revinclude add to a page.
	DefaultMaxInclude = 1000
	// maxIterate bounds the rounds of :iterate includes.
	maxIterate = 4
)

// Engine runs searches.
type Engine struct {
	Store    store.Store
	Registry *search.Registry
	// Base is the server base URL ("https://fhir.example/r4"), for fullUrl
	// and links; absolute references under it are searched as relative.
	Base string
	Now  func() time.Time
	// MaxCount caps _count (0: search.MaxCount).
	MaxCount int
	// MaxInner bounds chain/_has inner matches (0: DefaultMaxInner).
	MaxInner int
	// MaxInnerTotal bounds the inner matches of one request (0: DefaultMaxInnerTotal).
	MaxInnerTotal int
	// MaxInclude bounds included resources per page (0: DefaultMaxInclude).
	MaxInclude int
	// TotalLimit bounds the count behind Bundle.total when the request
	// does not ask for _total=accurate (0: DefaultTotalLimit; -1: always
	// count exactly).
	TotalLimit int64
}

// DefaultTotalLimit: by default (and with _total=estimate) a first page
// states the total only up to this many matches, so that counting stays
// a bounded read of the index however much data matches; above it
// Bundle.total (0..1 in R4, bundle.html) is left out and the next link
// leads on. _total=accurate and _summary=count always count exactly.
const DefaultTotalLimit = 1000

// Request is one search.
type Request struct {
	// Types: a type-level search has one; a system-level search nil (then _type).
	Types []string
	// Compartment is "Patient/123" for a compartment search
	// (compartmentdefinition.html#search); only the Patient compartment exists.
	Compartment string
	Params      url.Values
	// Strict rejects unknown and unsupported parameters (Prefer: handling=strict).
	Strict bool
	// Constrain returns the access-control and release condition for a
	// resource type; it is ANDed into every store query the engine runs
	// (main, chains, _has, includes, revincludes). nil: no constraint.
	Constrain func(resourceType string) search.Expr
	// SelfPath is the request path relative to Base for links, e.g.
	// "Observation" or "Patient/123/Observation".
	SelfPath string
}

// Result is one page of a search.
type Result struct {
	Matches, Included []store.Record
	// Total is the number of matches, -1 when not computed (_total=none).
	Total int64
	// Next is the store cursor of the next page ("" at the end).
	Next     string
	Warnings []fhir.Issue
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) maxCount() int {
	if e.MaxCount > 0 {
		return min(e.MaxCount, search.MaxCount)
	}
	return search.MaxCount
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

// AsFHIR maps an error of search.Registry.Parse (a *search.ParamError)
// to the 400 *fhir.Error naming the parameter; other errors are returned
// unchanged. Use it where Parse is called outside the engine.
func AsFHIR(err error) error {
	var pe *search.ParamError
	if errors.As(err, &pe) {
		fe := fhir.Invalid(pe.Param, "%s", pe.Msg)
		if pe.Code != "" {
			fe.WithCode(pe.Code)
		}
		return fe
	}
	return err
}

func (e *Engine) parse(types []string, params url.Values, strict bool) (*search.Parsed, error) {
	typ := ""
	q := params
	switch len(types) {
	case 0:
	case 1:
		typ = types[0]
	default:
		// Several types from the caller: search them as a _type list.
		q = url.Values{}
		for k, v := range params {
			q[k] = v
		}
		q["_type"] = []string{strings.Join(types, ",")}
	}
	p, err := e.Registry.Parse(typ, q, search.ParseOptions{Strict: strict, Now: e.Now, Base: e.Base})
	if err != nil {
		return nil, AsFHIR(err)
	}
	if len(types) > 1 {
		p.Types = slices.Clone(types)
	}
	return p, nil
}

// runner carries one search's context and access constraint.
type runner struct {
	e         *Engine
	constrain func(string) search.Expr
	warnings  []fhir.Issue
	// inner counts the inner matches of the request (MaxInnerTotal).
	inner int
}

func (r *runner) access(typ string) search.Expr {
	if r.constrain == nil {
		return nil
	}
	return r.constrain(typ)
}

// constraint combines the per-type access constraints of a search over
// types (nil: every type): one expression when they agree, otherwise an
// Or of TypeCond-guarded groups.
func (r *runner) constraint(types []string) search.Expr {
	if r.constrain == nil {
		return nil
	}
	if len(types) == 0 {
		types = r.e.allTypes()
	}
	if len(types) == 1 {
		return r.constrain(types[0])
	}
	type group struct {
		expr  search.Expr
		types []string
	}
	var groups []*group
next:
	for _, t := range types {
		c := r.constrain(t)
		for _, g := range groups {
			if reflect.DeepEqual(g.expr, c) {
				g.types = append(g.types, t)
				continue next
			}
		}
		groups = append(groups, &group{c, []string{t}})
	}
	if len(groups) == 1 {
		return groups[0].expr
	}
	var or search.Or
	for _, g := range groups {
		or.Args = append(or.Args, search.AllOf(search.TypeCond{Types: g.types}, g.expr))
	}
	return or
}

// allTypes lists the R4 resource types the registry knows.
func (e *Engine) allTypes() []string {
	out := make([]string, 0, len(fhir.ResourceTypes))
	for _, t := range fhir.ResourceTypes {
		if e.Registry.IsResourceType(t) {
			out = append(out, t)
		}
	}
	return out
}

// Search runs one page of a search.
func (e *Engine) Search(ctx context.Context, req Request) (*Result, error) {
	p, err := e.parse(req.Types, req.Params, req.Strict)
	if err != nil {
		return nil, err
	}
	r := &runner{e: e, constrain: req.Constrain}
	var compartment search.Expr
	if req.Compartment != "" {
		ct, cid, ok := strings.Cut(req.Compartment, "/")
		if !ok || ct != "Patient" || cid == "" || strings.Contains(cid, "/") {
			return nil, fhir.Errorf(fhir.KindNotFound, "compartment %q is not supported (only Patient/[id])", req.Compartment)
		}
		for _, t := range p.Types {
			if t != "Patient" && len(e.Registry.Compartment(t)) == 0 {
				return nil, fhir.Invalid("", "resource type %s is not in the Patient compartment", t)
			}
		}
		compartment = search.CompartmentCond{Compartments: []string{req.Compartment}}
	}
	filter, err := r.resolve(ctx, p.Types, p.Criteria)
	if err != nil {
		return nil, err
	}
	count := min(p.Count, e.maxCount())
	// search.html#total: _total=accurate always counts, none never;
	// estimate and the default give the first page a total bounded by
	// TotalLimit.
	wantTotal := p.Total == "accurate" || p.Total == "estimate" || p.Total == "" && p.Cursor == ""
	q := store.Query{
		Types:  p.Types,
		Filter: search.AllOf(filter, compartment, r.constraint(p.Types)),
		Sort:   p.Sort,
		Count:  count,
		Cursor: p.Cursor,
		// The store counts with the page (one scan on FerretDB; on
		// MongoDB no count when the first page holds every match).
		Total: p.Total != "none" && (count == 0 || wantTotal),
	}
	if q.Total && count > 0 && p.Total != "accurate" {
		q.TotalLimit = e.TotalLimit
		switch {
		case q.TotalLimit == 0:
			q.TotalLimit = DefaultTotalLimit
		case q.TotalLimit < 0:
			q.TotalLimit = 0
		}
	}
	page, err := e.Store.Search(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("engine: search: %w", err) // store.ErrBadCursor is a 400 (fhir.AsError)
	}
	res := &Result{Matches: page.Records, Total: -1, Next: page.Next}
	if q.Total {
		res.Total = page.Total
	}
	for _, w := range p.Warnings {
		res.Warnings = append(res.Warnings, fhir.Issue(w))
	}
	if len(page.Records) > 0 && (len(p.Include) > 0 || len(p.RevInclude) > 0) {
		inc, err := r.includes(ctx, p, page.Records)
		if err != nil {
			return nil, err
		}
		res.Included = inc
	}
	res.Warnings = append(res.Warnings, r.warnings...)
	return res, nil
}

// Match returns up to limit current resources of resourceType matching
// params, parsed strictly: the search of conditional create / update /
// delete and conditional references (http.html#cond-update). Result
// parameters (_count, _sort, ...) are ignored.
func (e *Engine) Match(ctx context.Context, resourceType string, params url.Values, constrain func(string) search.Expr, limit int) ([]store.Record, error) {
	p, err := e.parse([]string{resourceType}, params, true)
	if err != nil {
		return nil, err
	}
	if p.Criteria.Empty() {
		return nil, fhir.Invalid("", "a conditional operation needs search criteria")
	}
	r := &runner{e: e, constrain: constrain}
	filter, err := r.resolve(ctx, p.Types, p.Criteria)
	if err != nil {
		return nil, err
	}
	page, err := e.Store.Search(ctx, store.Query{
		Types:  p.Types,
		Filter: search.AllOf(filter, r.access(resourceType)),
		Count:  limit,
	})
	if err != nil {
		return nil, fmt.Errorf("engine: match: %w", err)
	}
	return page.Records, nil
}

// resolve turns criteria on types into a store filter: chains become
// RefCond on the keys of the inner matches, _has a KeyCond on the
// resources the inner matches reference (search.html#chaining, #has).
func (r *runner) resolve(ctx context.Context, types []string, c search.Criteria) (search.Expr, error) {
	parts := []search.Expr{c.Filter}
	for _, ch := range c.Chains {
		inner, err := r.resolve(ctx, []string{ch.Type}, ch.Where)
		if err != nil {
			return nil, err
		}
		recs, err := r.innerSearch(ctx, ch.Name, ch.Type, inner)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			parts = append(parts, search.Const{Value: false})
			continue
		}
		keys := make([]string, len(recs))
		for i, rec := range recs {
			keys[i] = rec.Key()
		}
		parts = append(parts, search.RefCond{Param: ch.Param, Targets: keys})
	}
	for _, h := range c.Has {
		inner, err := r.resolve(ctx, []string{h.Type}, h.Where)
		if err != nil {
			return nil, err
		}
		recs, err := r.innerSearch(ctx, h.Name, h.Type, inner)
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		var keys []string
		limit := orDefault(r.e.MaxInner, DefaultMaxInner)
		for _, rec := range recs {
			for _, ref := range rec.Index.Ref {
				k, ok := localRef(ref)
				if !ok || ref.Param != h.Param || seen[k] || len(types) > 0 && !slices.Contains(types, ref.Type) {
					continue
				}
				if len(keys) == limit {
					// One inner match may refer to many (Group.member).
					return nil, fhir.Invalid(h.Name, "%s refers to more than %d resources: narrow the search", h.Name, limit).WithCode("too-costly")
				}
				seen[k] = true
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			parts = append(parts, search.Const{Value: false})
			continue
		}
		parts = append(parts, search.KeyCond{Keys: keys})
	}
	return search.AllOf(parts...), nil
}

// localRef is the "Type/id" of a reference to a resource on this server.
func localRef(v search.RefValue) (string, bool) {
	if v.Type == "" || v.ID == "" || v.Ref != v.Type+"/"+v.ID {
		return "", false
	}
	return v.Ref, true
}

// innerSearch runs the inner search of a chain or _has, with the access
// constraint of its type, bounded by MaxInner and by what is left of
// MaxInnerTotal.
func (r *runner) innerSearch(ctx context.Context, name, typ string, filter search.Expr) ([]store.Record, error) {
	limit := orDefault(r.e.MaxInner, DefaultMaxInner)
	total := orDefault(r.e.MaxInnerTotal, DefaultMaxInnerTotal)
	left := max(total-r.inner, 0)
	q := store.Query{Types: []string{typ}, Filter: search.AllOf(filter, r.access(typ)), Count: min(min(limit, left)+1, search.MaxCount)}
	var out []store.Record
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("engine: %s: %w", name, err)
		}
		page, err := r.e.Store.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("engine: %s: %w", name, err)
		}
		out = append(out, page.Records...)
		if len(out) > limit {
			return nil, fhir.Invalid(name, "%s matches more than %d %s resources: narrow the search", name, limit, typ).WithCode("too-costly")
		}
		if len(out) > left {
			return nil, fhir.Invalid(name, "the chained and _has parameters of this search match more than %d resources together: narrow the search", total).WithCode("too-costly")
		}
		if page.Next == "" || len(page.Records) == 0 {
			r.inner += len(out)
			return out, nil
		}
		q.Cursor = page.Next
	}
}

// includes adds the _include and _revinclude resources of one page
// (search.html#include): plain ones on the matches, :iterate ones also on
// what was included, each fetched with the access constraint of its type.
func (r *runner) includes(ctx context.Context, p *search.Parsed, matches []store.Record) ([]store.Record, error) {
	budget := orDefault(r.e.MaxInclude, DefaultMaxInclude)
	seen := map[string]bool{}
	for _, m := range matches {
		seen[m.Key()] = true
	}
	var included []store.Record
	frontier := matches
	truncated := false
	for round := 0; round <= maxIterate && len(frontier) > 0; round++ {
		var incs, revs []search.Include
		for _, inc := range p.Include {
			if round == 0 || inc.Iterate {
				incs = append(incs, inc)
			}
		}
		for _, inc := range p.RevInclude {
			if round == 0 || inc.Iterate {
				revs = append(revs, inc)
			}
		}
		if len(incs) == 0 && len(revs) == 0 {
			break
		}
		var next []store.Record
		add := func(recs []store.Record) {
			for _, rec := range recs {
				if seen[rec.Key()] {
					continue
				}
				if len(included)+len(next) >= budget {
					truncated = true
					return
				}
				seen[rec.Key()] = true
				next = append(next, rec)
			}
		}
		// _include: follow the references of the frontier.
		byType := map[string][]string{}
		var typeOrder []string
		for _, rec := range frontier {
			for _, inc := range incs {
				if inc.Source != "*" && inc.Source != rec.Type {
					continue
				}
				for _, ref := range rec.Index.Ref {
					k, ok := localRef(ref)
					if !ok || seen[k] || inc.Param != "*" && ref.Param != inc.Param || inc.Target != "" && ref.Type != inc.Target {
						continue
					}
					if !slices.Contains(byType[ref.Type], k) {
						if _, known := byType[ref.Type]; !known {
							typeOrder = append(typeOrder, ref.Type)
						}
						byType[ref.Type] = append(byType[ref.Type], k)
					}
				}
			}
		}
		for _, t := range typeOrder {
			keys := byType[t]
			recs, err := r.fetch(ctx, t, search.KeyCond{Keys: keys}, len(keys))
			if err != nil {
				return nil, err
			}
			add(recs)
		}
		// _revinclude: resources of Source whose parameter refers to the frontier.
		for _, inc := range revs {
			var targets []string
			for _, rec := range frontier {
				if inc.Target == "" || inc.Target == rec.Type {
					targets = append(targets, rec.Key())
				}
			}
			if len(targets) == 0 {
				continue
			}
			var cond search.Expr
			if inc.Param == "*" {
				var or search.Or
				for _, prm := range r.e.Registry.Params(inc.Source) {
					if prm.Type == search.TypeReference {
						or.Args = append(or.Args, search.RefCond{Param: prm.Code, Targets: targets})
					}
				}
				cond = or
			} else {
				cond = search.RefCond{Param: inc.Param, Targets: targets}
			}
			left := budget - len(included) - len(next)
			if left <= 0 {
				truncated = true
				break
			}
			recs, err := r.fetch(ctx, inc.Source, cond, left+1)
			if err != nil {
				return nil, err
			}
			add(recs)
		}
		included = append(included, next...)
		frontier = next
	}
	if truncated {
		r.warnings = append(r.warnings, fhir.Issue{Severity: "warning", Code: "too-costly",
			Diagnostics: fmt.Sprintf("more than %d resources to include: the included resources are incomplete", budget)})
	}
	return included, nil
}

// fetch returns up to limit current resources of typ matching cond and
// the access constraint of typ.
func (r *runner) fetch(ctx context.Context, typ string, cond search.Expr, limit int) ([]store.Record, error) {
	q := store.Query{Types: []string{typ}, Filter: search.AllOf(cond, r.access(typ)), Count: min(limit, search.MaxCount)}
	var out []store.Record
	for {
		page, err := r.e.Store.Search(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("engine: include %s: %w", typ, err)
		}
		out = append(out, page.Records...)
		if page.Next == "" || len(out) >= limit || len(page.Records) == 0 {
			if len(out) > limit {
				out = out[:limit]
			}
			return out, nil
		}
		q.Cursor = page.Next
	}
}
