package search

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
	"github.com/fhirgate/fhirgate/fhir/model"
)

// ParamType is a search parameter type (search.html#ptypes,
// valueset-search-param-type).
type ParamType string

// The search parameter types.
const (
	TypeNumber    ParamType = "number"
	TypeDate      ParamType = "date"
	TypeString    ParamType = "string"
	TypeToken     ParamType = "token"
	TypeReference ParamType = "reference"
	TypeComposite ParamType = "composite"
	TypeQuantity  ParamType = "quantity"
	TypeURI       ParamType = "uri"
	TypeSpecial   ParamType = "special"
)

func (t ParamType) valid() bool {
	switch t {
	case TypeNumber, TypeDate, TypeString, TypeToken, TypeReference, TypeComposite, TypeQuantity, TypeURI, TypeSpecial:
		return true
	}
	return false
}

// Component is one part of a composite parameter
// (searchparameter.html, SearchParameter.component): Definition is the
// canonical URL of the component's parameter, Param that parameter resolved
// in the registry, Expression is evaluated relative to each item of the
// composite's own expression.
type Component struct {
	Definition string
	Expression string
	Param      *Param
}

// Param is a search parameter definition (a SearchParameter resource
// reduced to what searching needs). Params returned by a Registry are
// shared: treat them as read-only.
type Param struct {
	URL, Code, Name string
	Type            ParamType
	Base            []string
	Expression      string
	Target          []string
	Modifier        []string
	Comparator      []string
	Components      []Component
	MultipleOr      *bool
	MultipleAnd     *bool
	// Custom is true for parameters loaded with LoadCustom.
	Custom bool
}

// Registry is an immutable set of search parameters with their compiled
// FHIRPath expressions, indexed by resource type and code
// (searchparameter.html), plus the patient compartment definition
// (compartmentdefinition-patient.html). It is safe for concurrent use.
type Registry struct {
	params      []*Param
	byURL       map[string]*Param
	types       map[string]*typeParams
	compartment map[string][]string
	model       *model.Model
	// exprs caches compiled expressions by source, reused by LoadCustom.
	exprs map[string]fhirpath.Expr
	// base is the server base URL without trailing slash; absolute
	// references below it are indexed as relative (references.html#literal).
	base string
	// noGates evaluates every parameter, gated or not (tests compare).
	noGates bool
}

type typeParams struct {
	byCode map[string]*compiledParam
	sorted []*compiledParam
	// cpt are the compartment parameters of the type (Compartment).
	cpt []string
}

type compiledParam struct {
	p     *Param
	expr  fhirpath.Expr // pruned to the resource type; nil: nothing to extract
	comps []compiledComp
	// gate, when gated, lists the top-level elements expr can read: a
	// resource with none of them has no value for the parameter (gate.go).
	gate  []gateName
	gated bool
	// compGate, for a composite on the resource itself: one gate per
	// component, all of which must be open.
	compGate [][]gateName
}

type compiledComp struct {
	p    *Param
	expr fhirpath.Expr
}

// DefError is a bad search parameter definition, e.g. from LoadCustom.
// (Package search cannot import package fhir, which depends on store and
// thus on search; the REST layer maps a *DefError to fhir.Invalid(Path,
// Msg), a 400.) Path is the element at fault, e.g. "SearchParameter.base".
type DefError struct {
	Path string
	Msg  string
	Err  error
}

func (e *DefError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Msg + " (at " + e.Path + ")"
}

func (e *DefError) Unwrap() error { return e.Err }

func invalid(path, format string, args ...any) *DefError {
	return &DefError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Wrap attaches the underlying cause.
func (e *DefError) Wrap(err error) *DefError { e.Err = err; return e }

// At prefixes the path with the position of the definition in its input.
func (e *DefError) At(prefix string) *DefError {
	if e.Path == "" {
		e.Path = prefix
	} else {
		e.Path = prefix + ": " + e.Path
	}
	return e
}

var defaultOnce sync.Once

// Default is the registry of the core FHIR R4 SearchParameters (vendored
// from hl7.fhir.r4.examples@4.0.1, see definitions/README.md), built once
// and shared.
func Default() *Registry {
	defaultOnce.Do(func() {
		raw, model, err := loadDefs()
		if err != nil {
			panic(fmt.Errorf("search: %w", err))
		}
		params := make([]*Param, len(raw.Params))
		for i := range raw.Params {
			params[i] = raw.Params[i].param()
		}
		r, err := build(params, model, raw.Compartment, nil)
		if err != nil {
			panic(fmt.Errorf("search: vendored definitions: %w", err))
		}
		defaultR = r
	})
	return defaultR
}

// NewRegistry builds a registry from params (validated and compiled) with
// the core type model and patient compartment.
func NewRegistry(params []*Param) (*Registry, error) {
	raw, model, err := loadDefs()
	if err != nil {
		return nil, err
	}
	return build(params, model, raw.Compartment, nil)
}

// LoadCustom returns a new registry holding r's parameters plus the
// SearchParameter (or Bundle of SearchParameters) in jsonBytes
// (searchparameter.html). A custom parameter replaces one with the same
// URL, or with the same code on the same base. Bad definitions are a
// *DefError naming the element (a 400 at the REST layer).
func LoadCustom(r *Registry, jsonBytes []byte) (*Registry, error) {
	dec := json.NewDecoder(bytes.NewReader(jsonBytes))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, invalid("", "custom search parameters: invalid JSON: %v", err).Wrap(err)
	}
	var raws []map[string]any
	path := "SearchParameter"
	switch doc["resourceType"] {
	case "SearchParameter":
		raws = append(raws, doc)
	case "Bundle":
		entries, _ := doc["entry"].([]any)
		for i, e := range entries {
			em, _ := e.(map[string]any)
			res, _ := em["resource"].(map[string]any)
			if res["resourceType"] != "SearchParameter" {
				return nil, invalid(fmt.Sprintf("Bundle.entry[%d].resource", i), "expected a SearchParameter")
			}
			raws = append(raws, res)
		}
		path = "Bundle.entry.resource"
	default:
		return nil, invalid("resourceType", "expected a SearchParameter or a Bundle of them")
	}
	params := slices.Clone(r.params)
	for i, m := range raws {
		b, _ := json.Marshal(m)
		var w wireParam
		if err := json.Unmarshal(b, &w); err != nil {
			return nil, invalid(fmt.Sprintf("%s[%d]", path, i), "invalid SearchParameter: %v", err).Wrap(err)
		}
		p := w.param()
		p.Custom = true
		if p.URL == "" {
			return nil, invalid(path+".url", "a custom search parameter needs a url")
		}
		if err := validateParam(r.model, p); err != nil {
			if len(raws) > 1 {
				return nil, err.At(fmt.Sprintf("%s[%d]", path, i))
			}
			return nil, err
		}
		params = slices.DeleteFunc(params, func(q *Param) bool {
			if q.URL == p.URL {
				return true
			}
			if q.Code != p.Code {
				return false
			}
			for _, b := range q.Base {
				if slices.Contains(p.Base, b) {
					return true
				}
			}
			return false
		})
		params = append(params, p)
	}
	nr, err := build(params, r.model, r.compartment, r.exprs)
	if err != nil {
		return nil, err
	}
	nr.base = r.base
	return nr, nil
}

// WithBase returns a copy of r that indexes absolute references to
// baseURL (the server's own base, e.g. "https://fhir.example/r4") as
// relative "Type/id" references (references.html#literal).
func (r *Registry) WithBase(baseURL string) *Registry {
	c := *r
	c.base = strings.TrimRight(baseURL, "/")
	return &c
}

// Lookup finds the parameter code of resourceType, including those defined
// on Resource and DomainResource (_id, _lastUpdated, _tag, _profile,
// _security, _source, _text, _content, ...).
func (r *Registry) Lookup(resourceType, code string) (*Param, bool) {
	tp, ok := r.types[resourceType]
	if !ok {
		return nil, false
	}
	cp, ok := tp.byCode[code]
	if !ok {
		return nil, false
	}
	return cp.p, true
}

// ByURL finds a parameter by its canonical URL.
func (r *Registry) ByURL(url string) (*Param, bool) {
	p, ok := r.byURL[url]
	return p, ok
}

// Params lists the parameters of resourceType (including the Resource and
// DomainResource ones) sorted by code.
func (r *Registry) Params(resourceType string) []*Param {
	tp, ok := r.types[resourceType]
	if !ok {
		return nil
	}
	out := make([]*Param, len(tp.sorted))
	for i, cp := range tp.sorted {
		out[i] = cp.p
	}
	return out
}

// IsResourceType reports whether name is a concrete FHIR R4 resource type.
func (r *Registry) IsResourceType(name string) bool {
	switch name {
	case "Resource", "DomainResource", "MetadataResource":
		return false
	}
	return r.model.IsResourceType(name)
}

// Compartment lists the parameter codes through which a resource of
// resourceType belongs to a Patient compartment
// (CompartmentDefinition-patient). For "Patient" it is ["link"]; the
// patient's own compartment membership (the "{def}" rule) is added by
// Extract.
func (r *Registry) Compartment(resourceType string) []string {
	return slices.Clone(r.compartment[resourceType])
}

// build validates and compiles params into a registry; cache holds
// already compiled expressions (read only).
func build(params []*Param, model *model.Model, compartment map[string][]string, cache map[string]fhirpath.Expr) (*Registry, error) {
	r := &Registry{
		params:      params,
		byURL:       make(map[string]*Param, len(params)),
		types:       map[string]*typeParams{},
		compartment: compartment,
		model:       model,
		exprs:       make(map[string]fhirpath.Expr, len(params)),
	}
	params = slices.Clone(params)
	r.params = params
	for _, p := range params {
		if err := validateParam(model, p); err != nil {
			return nil, err
		}
		if p.URL != "" {
			r.byURL[p.URL] = p
		}
	}
	// Resolve composite components, on copies of the params so the caller's
	// (and other registries') Param values are never mutated.
	for i, p := range params {
		if len(p.Components) == 0 {
			continue
		}
		cp := *p
		cp.Components = slices.Clone(p.Components)
		for j := range cp.Components {
			def, ok := r.byURL[cp.Components[j].Definition]
			if !ok {
				return nil, invalid("SearchParameter.component.definition", "search parameter %s: unknown component definition %q", p.Code, cp.Components[j].Definition)
			}
			cp.Components[j].Param = def
		}
		params[i] = &cp
		if p.URL != "" {
			r.byURL[p.URL] = &cp
		}
	}
	byBase := map[string][]*Param{}
	for _, p := range params {
		for _, b := range p.Base {
			byBase[b] = append(byBase[b], p)
		}
	}
	compile := func(src string) (fhirpath.Expr, error) {
		if e, ok := r.exprs[src]; ok {
			return e, nil
		}
		e, ok := cache[src]
		if !ok {
			var err error
			if e, err = fhirpath.Compile(src); err != nil {
				return nil, err
			}
		}
		r.exprs[src] = e
		return e, nil
	}
	var types []string
	for _, t := range model.Types() {
		if model.IsResource(t.Name) {
			types = append(types, t.Name)
		}
	}
	for b := range byBase {
		if !model.IsResource(b) {
			types = append(types, b)
		}
	}
	for _, t := range types {
		tp := &typeParams{byCode: map[string]*compiledParam{}, cpt: compartment[t]}
		cands := slices.Clone(byBase[t])
		if t != "Resource" {
			if t != "DomainResource" && model.IsA(t, "DomainResource") {
				cands = append(cands, byBase["DomainResource"]...)
			}
			cands = append(cands, byBase["Resource"]...)
		}
		for _, p := range cands {
			if old, ok := tp.byCode[p.Code]; ok && !preferOver(p, old.p, t) {
				continue
			}
			cp := &compiledParam{p: p}
			if p.Expression != "" {
				e, err := compile(p.Expression)
				if err != nil {
					return nil, invalid("SearchParameter.expression", "search parameter %s: %v", p.Code, err).Wrap(err)
				}
				cp.expr = prune(model, e, t)
				if cp.expr != nil {
					cp.gate, cp.gated = gateFor(model, cp.expr, t)
				}
			} else if p.Type == TypeComposite {
				cp.expr = fhirpath.This{}
			}
			for _, c := range p.Components {
				e, err := compile(c.Expression)
				if err != nil {
					return nil, invalid("SearchParameter.component.expression", "search parameter %s: %v", p.Code, err).Wrap(err)
				}
				cp.comps = append(cp.comps, compiledComp{p: c.Param, expr: e})
			}
			if p.Type == TypeComposite && cp.expr != nil {
				cp.compGate = compositeGate(model, cp, t)
			}
			tp.byCode[p.Code] = cp
		}
		for _, cp := range tp.byCode {
			tp.sorted = append(tp.sorted, cp)
		}
		sort.Slice(tp.sorted, func(i, j int) bool { return tp.sorted[i].p.Code < tp.sorted[j].p.Code })
		r.types[t] = tp
	}
	return r, nil
}

// preferOver decides which of two parameters with the same code applies to
// resource type t: custom over core, then the one defined on t itself.
func preferOver(p, old *Param, t string) bool {
	if p.Custom != old.Custom {
		return p.Custom
	}
	return slices.Contains(p.Base, t) && !slices.Contains(old.Base, t)
}

func validateParam(m *model.Model, p *Param) *DefError {
	switch {
	case p.Code == "":
		return invalid("SearchParameter.code", "a search parameter needs a code")
	case !p.Type.valid():
		return invalid("SearchParameter.type", "search parameter %s: unknown type %q", p.Code, p.Type)
	case len(p.Base) == 0:
		return invalid("SearchParameter.base", "search parameter %s: no base resource type", p.Code)
	case p.Type == TypeComposite && len(p.Components) == 0:
		return invalid("SearchParameter.component", "composite search parameter %s has no components", p.Code)
	case p.Custom && p.Expression == "" && p.Type != TypeComposite:
		return invalid("SearchParameter.expression", "search parameter %s: an expression is required", p.Code)
	}
	for _, c := range p.Code {
		if !(c == '-' || c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return invalid("SearchParameter.code", "search parameter code %q has invalid characters", p.Code)
		}
	}
	for _, b := range p.Base {
		if !m.IsResource(b) {
			return invalid("SearchParameter.base", "search parameter %s: unknown resource type %q", p.Code, b)
		}
	}
	return nil
}

// prune drops the union branches of e that start with a resource type other
// than t (or one of its supertypes), e.g. for Observation it reduces
// "AllergyIntolerance.code | Observation.code" to "Observation.code".
func prune(m *model.Model, e fhirpath.Expr, t string) fhirpath.Expr {
	if b, ok := e.(*fhirpath.Binary); ok && b.Op == "|" {
		l, r := prune(m, b.L, t), prune(m, b.R, t)
		switch {
		case l == nil:
			return r
		case r == nil:
			return l
		case l == b.L && r == b.R:
			return b
		}
		return &fhirpath.Binary{Op: "|", L: l, R: r}
	}
	if root := rootName(e); root != "" && root[0] >= 'A' && root[0] <= 'Z' && m.IsType(root) && !m.IsA(t, root) {
		return nil
	}
	return e
}

// rootName is the first identifier of a path expression.
func rootName(e fhirpath.Expr) string {
	switch x := e.(type) {
	case *fhirpath.Member:
		if x.X == nil {
			return x.Name
		}
		return rootName(x.X)
	case *fhirpath.Call:
		if x.X == nil {
			return ""
		}
		return rootName(x.X)
	case *fhirpath.Index:
		return rootName(x.X)
	case *fhirpath.TypeOp:
		return rootName(x.X)
	}
	return ""
}
