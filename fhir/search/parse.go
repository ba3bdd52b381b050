package search

import (
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file parses a FHIR R4 search query string (search.html) into the
// AST of ast.go plus the parts the engine resolves itself: chains, _has,
// _include, paging and result parameters.

// ParseOptions control Parse.
type ParseOptions struct {
	// Strict rejects unknown and unsupported parameters (Prefer:
	// handling=strict, search.html#errors) instead of ignoring them with a
	// warning.
	Strict bool
	// Now is the clock for the "ap" prefix (nil: time.Now).
	Now func() time.Time
	// Base is the server base URL; absolute references under it are made
	// relative ("https://x/fhir/Patient/1" -> "Patient/1").
	Base string
}

// Issue is one OperationOutcome issue: the same fields as fhir.Issue
// (package search cannot import package fhir, which depends on store and
// thus on search), so fhir.Issue(i) converts it.
type Issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// ParamError is a search parameter the server rejects: malformed, with an
// unknown modifier, ambiguous, or (Strict) unknown / unsupported. Param is
// the query parameter name as given; Code is the issue code ("invalid" or
// "not-supported"). The engine maps it to a 400 fhir.Invalid(Param, Msg).
type ParamError struct {
	Param string
	Msg   string
	Code  string
}

func (e *ParamError) Error() string {
	if e.Param == "" {
		return e.Msg
	}
	return e.Msg + " (at " + e.Param + ")"
}

func perr(param, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Msg: fmt.Sprintf(format, args...), Code: "invalid"}
}

// Criteria is a condition on one resource type: leaf conditions (Filter)
// plus the chained (search.html#chaining) and reverse-chained
// (search.html#has) parameters the engine resolves into RefCond / KeyCond
// with inner searches. Every part must hold (AND).
type Criteria struct {
	Filter Expr
	Chains []Chain
	Has    []Has
}

// Empty reports whether c has no condition at all.
func (c Criteria) Empty() bool { return c.Filter == nil && len(c.Chains) == 0 && len(c.Has) == 0 }

// Chain is one hop of a chained parameter: resources whose reference
// parameter Param points at a resource of Type matching Where. Multi-hop
// chains nest in Where.Chains ("patient.organization.name=x").
type Chain struct {
	Name  string // the query parameter as given, for messages
	Param string
	Type  string
	Where Criteria
}

// Has is a reverse chain _has:Type:Param:...: resources referenced by the
// parameter Param of some resource of Type matching Where.
type Has struct {
	Name  string
	Type  string
	Param string
	Where Criteria
}

// Include is one _include or _revinclude (search.html#include):
// "Source:Param[:Target]" with "*" wildcards, :iterate.
type Include struct {
	Source  string // resource type, "*" for any
	Param   string // reference parameter code, "*" for all of Source
	Target  string // "" for any
	Iterate bool
}

// Result parameter limits (search.html#count).
const (
	DefaultCount = 20
	MaxCount     = 1000
)

// Bounds of one search request. search.html leaves the cost of a search to
// the server; each chain or _has hop is an inner search the engine runs, so
// a query beyond these bounds is a 400 (issue code too-costly) naming the
// parameter, before any search runs.
const (
	// MaxParams bounds the name=value pairs of one query (every value of a
	// repeated parameter counts).
	MaxParams = 100
	// MaxHas bounds the _has parameters (search.html#has).
	MaxHas = 10
	// MaxChains bounds the chained parameters (search.html#chaining).
	MaxChains = 10
	// MaxChainDepth bounds the hops of one chain or _has, nested ones
	// included ("patient.organization.name" is 2).
	MaxChainDepth = 4
	// MaxIncludes bounds the _include and _revinclude values together
	// (search.html#include).
	MaxIncludes = 20
)

// costly is the error of a query beyond a bound.
func costly(param, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Msg: fmt.Sprintf(format, args...), Code: "too-costly"}
}

// Parsed is a parsed search.
type Parsed struct {
	Criteria
	// Types are the types searched: the one of a type-level search, or the
	// _type list of a system search (nil: every type).
	Types []string
	Sort  []SortKey
	// Count is the page size (default 20, at most 1000); 0 asks for the
	// total only (_count=0, _summary=count).
	Count int
	// Total is _total: "none", "estimate", "accurate" or "" (not given).
	Total string
	// Summary is _summary: "true", "text", "data", "count", "false" or "".
	Summary string
	// Elements is _elements (top-level element names).
	Elements   []string
	Include    []Include
	RevInclude []Include
	// Cursor is the opaque paging token (_cursor) of a next link.
	Cursor string
	// Warnings lists ignored parameters (not Strict).
	Warnings []Issue
}

// ignoredParams are handled outside search (content negotiation).
var ignoredParams = map[string]bool{"_format": true, "_pretty": true}

// unsupportedParams are defined by the specification but not implemented;
// they are ignored with a warning (a 400 when Strict).
var unsupportedParams = map[string]bool{
	"_content": true, "_list": true, "_query": true, "_filter": true,
	"_contained": true, "_containedType": true,
}

// parser holds the state of one Parse.
type parser struct {
	r   *Registry
	opt ParseOptions
	now time.Time
	out *Parsed
	// counts against the bounds (MaxHas, MaxChains, MaxIncludes)
	nHas, nChains, nIncludes int
}

// Parse parses the query q of a search on resourceType (search.html);
// resourceType "" is a system-level search whose types come from _type.
// Malformed parameters are a *ParamError; unknown or unsupported ones are
// ignored with a warning in Parsed.Warnings, or a *ParamError when
// opt.Strict.
func (r *Registry) Parse(resourceType string, q url.Values, opt ParseOptions) (*Parsed, error) {
	p := &parser{r: r, opt: opt, out: &Parsed{Count: DefaultCount}}
	p.now = time.Now()
	if opt.Now != nil {
		p.now = opt.Now()
	}
	if resourceType != "" {
		if !r.IsResourceType(resourceType) {
			return nil, perr("", "unknown resource type %q", resourceType)
		}
		p.out.Types = []string{resourceType}
	}
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	if err := checkParams(names, q); err != nil {
		return nil, err
	}
	// _type first: it decides which parameters exist in a system search.
	if vals, ok := q["_type"]; ok {
		if resourceType != "" {
			if err := p.warn("_type", "_type is ignored in a type-level search"); err != nil {
				return nil, err
			}
		} else if err := p.types(vals); err != nil {
			return nil, err
		}
	}
	for _, name := range names {
		if name == "_type" {
			continue
		}
		if err := p.param(name, q[name]); err != nil {
			return nil, err
		}
	}
	if p.out.Summary == "count" {
		p.out.Count = 0
	}
	return p.out, nil
}

// checkParams applies MaxParams and rejects names and values that are not
// UTF-8 (a FHIR string is Unicode; the stores compare and match them as
// such).
func checkParams(names []string, q url.Values) error {
	n := 0
	for _, name := range names {
		if !utf8.ValidString(name) {
			return perr(strings.ToValidUTF8(name, "\uFFFD"), "the parameter name is not valid UTF-8")
		}
		for _, v := range q[name] {
			if !utf8.ValidString(v) {
				return perr(name, "the value of %s is not valid UTF-8", name)
			}
		}
		n += len(q[name])
		if n > MaxParams {
			return costly(name, "a search may have at most %d parameters", MaxParams)
		}
	}
	return nil
}

// warn records an ignored parameter, or fails when strict.
func (p *parser) warn(param, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if p.opt.Strict {
		return &ParamError{Param: param, Msg: msg, Code: "not-supported"}
	}
	p.out.Warnings = append(p.out.Warnings, Issue{Severity: "warning", Code: "not-supported", Diagnostics: msg, Expression: []string{param}})
	return nil
}

// values splits the repeated values of a parameter, dropping empty ones
// (an empty value places no constraint).
func values(vals []string) []string {
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func (p *parser) single(name string, vals []string) (string, error) {
	vals = values(vals)
	switch len(vals) {
	case 0:
		return "", nil
	case 1:
		return vals[0], nil
	}
	return "", perr(name, "parameter %s may appear only once", name)
}

func (p *parser) types(vals []string) error {
	for _, v := range values(vals) {
		for _, t := range splitEsc(v, ',') {
			t = unesc(t)
			if !p.r.IsResourceType(t) {
				return perr("_type", "unknown resource type %q", t)
			}
			if !slices.Contains(p.out.Types, t) {
				p.out.Types = append(p.out.Types, t)
			}
		}
	}
	return nil
}

// param handles one query parameter name with all its values.
func (p *parser) param(name string, vals []string) error {
	base, mod, _ := strings.Cut(name, ":")
	switch base {
	case "_count":
		if mod != "" {
			return perr(name, "unknown modifier %q", mod)
		}
		v, err := p.single(name, vals)
		if err != nil || v == "" {
			return err
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return perr(name, "_count must be a non-negative integer, got %q", v)
		}
		p.out.Count = min(n, MaxCount)
		return nil
	case "_sort":
		if mod != "" {
			return perr(name, "unknown modifier %q", mod)
		}
		return p.sort(vals)
	case "_total":
		v, err := p.single(name, vals)
		if err != nil || v == "" {
			return err
		}
		switch v {
		case "none", "estimate", "accurate":
			p.out.Total = v
			return nil
		}
		return perr(name, "_total must be none, estimate or accurate, got %q", v)
	case "_summary":
		v, err := p.single(name, vals)
		if err != nil || v == "" {
			return err
		}
		switch v {
		case "true", "text", "data", "count", "false":
			p.out.Summary = v
			return nil
		}
		return perr(name, "_summary must be true, text, data, count or false, got %q", v)
	case "_elements":
		for _, v := range values(vals) {
			for _, e := range strings.Split(v, ",") {
				e = strings.TrimSpace(e)
				if e == "" {
					continue
				}
				if !validElementName(e) {
					return perr(name, "invalid element name %q", e)
				}
				if !slices.Contains(p.out.Elements, e) {
					p.out.Elements = append(p.out.Elements, e)
				}
			}
		}
		return nil
	case "_include", "_revinclude":
		return p.includes(name, base, mod, vals)
	case "_cursor":
		v, err := p.single(name, vals)
		p.out.Cursor = v
		return err
	}
	if ignoredParams[base] {
		return nil
	}
	if unsupportedParams[base] {
		return p.warn(name, "search parameter %s is not supported", base)
	}
	for _, v := range values(vals) {
		c, err := p.criterion(p.out.Types, name, v)
		if err != nil {
			return err
		}
		if c == nil {
			continue
		}
		p.nHas += len(c.Has)
		p.nChains += len(c.Chains)
		switch {
		case p.nHas > MaxHas:
			return costly(name, "a search may have at most %d _has parameters", MaxHas)
		case p.nChains > MaxChains:
			return costly(name, "a search may have at most %d chained parameters", MaxChains)
		}
		p.out.Criteria = merge(p.out.Criteria, *c)
	}
	return nil
}

// merge ANDs b into a.
func merge(a, b Criteria) Criteria {
	a.Filter = AllOf(a.Filter, b.Filter)
	a.Chains = append(a.Chains, b.Chains...)
	a.Has = append(a.Has, b.Has...)
	return a
}

func validElementName(s string) bool {
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '_' || c == '-')) {
			return false
		}
	}
	return s != ""
}

// lookup finds code for every type in types ("Resource" for none) and
// checks the definitions agree on the parameter type.
func (p *parser) lookup(types []string, code string) (*Param, bool, error) {
	if len(types) == 0 {
		prm, ok := p.r.Lookup("Resource", code)
		return prm, ok, nil
	}
	var first *Param
	for _, t := range types {
		prm, ok := p.r.Lookup(t, code)
		if !ok {
			return nil, false, nil
		}
		if first == nil {
			first = prm
		} else if prm.Type != first.Type {
			return nil, false, perr(code, "search parameter %s has different types across the searched resource types", code)
		}
	}
	return first, true, nil
}

func typesLabel(types []string) string {
	if len(types) == 0 {
		return "all resource types"
	}
	return strings.Join(types, ", ")
}

// criterion parses one name=value pair of a search on types: a leaf
// parameter, a chain or a _has. A nil result (and nil error) means the
// parameter was ignored with a warning.
func (p *parser) criterion(types []string, name, value string) (*Criteria, error) {
	return p.criterionAt(types, name, name, value, 0)
}

func (p *parser) criterionAt(types []string, full, name, value string, depth int) (*Criteria, error) {
	if depth > MaxChainDepth {
		return nil, costly(full, "chains and _has may nest at most %d levels", MaxChainDepth)
	}
	if strings.HasPrefix(name, "_has:") {
		return p.has(types, full, name, value, depth)
	}
	code, mod, hasMod := strings.Cut(name, ":")
	if prm, ok, err := p.lookup(types, code); err != nil {
		return nil, err
	} else if ok || !strings.Contains(name, ".") {
		if !ok {
			return p.unknown(types, full, code)
		}
		if hasMod && strings.Contains(mod, ".") {
			// "subject:Patient.name": a chain after a type modifier.
			return p.chain(types, full, name, value, depth)
		}
		return p.leaf(types, full, prm, mod, hasMod, value)
	}
	return p.chain(types, full, name, value, depth)
}

func (p *parser) unknown(types []string, full, code string) (*Criteria, error) {
	if err := p.warn(full, "unknown search parameter %q for %s", code, typesLabel(types)); err != nil {
		return nil, err
	}
	return nil, nil
}

// chain parses "param[:Type].rest" (search.html#chaining).
func (p *parser) chain(types []string, full, name, value string, depth int) (*Criteria, error) {
	head, rest, _ := strings.Cut(name, ".")
	code, typ, _ := strings.Cut(head, ":")
	prm, ok, err := p.lookup(types, code)
	if err != nil {
		return nil, err
	}
	if !ok {
		return p.unknown(types, full, code)
	}
	if prm.Type != TypeReference {
		return nil, perr(full, "search parameter %s is not a reference and cannot be chained", code)
	}
	if rest == "" {
		return nil, perr(full, "empty chained parameter")
	}
	if typ != "" {
		if !p.r.IsResourceType(typ) {
			return nil, perr(full, "unknown resource type %q in chain", typ)
		}
		if len(prm.Target) > 0 && !slices.Contains(prm.Target, typ) {
			return nil, perr(full, "search parameter %s cannot refer to %s", code, typ)
		}
	} else {
		// Infer the target type: among the parameter's targets, those that
		// define the next parameter (search.html#chaining: ambiguous
		// chains must name the type, "subject:Patient.name").
		next := rest
		if !strings.HasPrefix(next, "_has:") {
			next, _, _ = strings.Cut(next, ".")
			next, _, _ = strings.Cut(next, ":")
		} else {
			next = "_has"
		}
		var cands []string
		for _, t := range prm.Target {
			if next == "_has" {
				cands = append(cands, t)
				continue
			}
			if _, ok := p.r.Lookup(t, next); ok {
				cands = append(cands, t)
			}
		}
		switch {
		case len(prm.Target) == 0:
			return nil, perr(full, "search parameter %s can refer to any type: name it, e.g. %s:Patient.%s", code, code, rest)
		case len(cands) == 0:
			return p.unknown(prm.Target, full, next)
		case len(cands) > 1:
			return nil, perr(full, "chained parameter %s is ambiguous (%s): name the type, e.g. %s:%s.%s", full, strings.Join(cands, ", "), code, cands[0], rest)
		}
		typ = cands[0]
	}
	inner, err := p.criterionAt([]string{typ}, full, rest, value, depth+1)
	if err != nil || inner == nil {
		return nil, err
	}
	return &Criteria{Chains: []Chain{{Name: full, Param: code, Type: typ, Where: *inner}}}, nil
}

// has parses "_has:Type:param:rest" (search.html#has).
func (p *parser) has(types []string, full, name, value string, depth int) (*Criteria, error) {
	parts := strings.SplitN(name, ":", 4)
	if len(parts) != 4 || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return nil, perr(full, "_has must be _has:Type:parameter:search-parameter")
	}
	typ, code, rest := parts[1], parts[2], parts[3]
	if !p.r.IsResourceType(typ) {
		return nil, perr(full, "unknown resource type %q in _has", typ)
	}
	prm, ok := p.r.Lookup(typ, code)
	if !ok {
		return p.unknown([]string{typ}, full, code)
	}
	if prm.Type != TypeReference {
		return nil, perr(full, "search parameter %s of %s is not a reference", code, typ)
	}
	if len(prm.Target) > 0 && len(types) > 0 {
		hit := false
		for _, t := range types {
			hit = hit || slices.Contains(prm.Target, t)
		}
		if !hit {
			return nil, perr(full, "search parameter %s of %s cannot refer to %s", code, typ, typesLabel(types))
		}
	}
	inner, err := p.criterionAt([]string{typ}, full, rest, value, depth+1)
	if err != nil || inner == nil {
		return nil, err
	}
	return &Criteria{Has: []Has{{Name: full, Type: typ, Param: code, Where: *inner}}}, nil
}

// leaf parses a parameter of the searched type(s) itself.
func (p *parser) leaf(types []string, full string, prm *Param, mod string, hasMod bool, value string) (*Criteria, error) {
	if hasMod && mod == "" {
		return nil, perr(full, "empty modifier")
	}
	if mod == "missing" {
		// search.html#missing
		switch value {
		case "true":
			if prm.Code == "_id" || prm.Code == "_lastUpdated" {
				// Every resource has an id and meta.lastUpdated.
				return &Criteria{Filter: Const{Value: false}}, nil
			}
			return &Criteria{Filter: MissingCond{Param: prm.Code, Missing: true}}, nil
		case "false":
			if prm.Code == "_id" || prm.Code == "_lastUpdated" {
				return &Criteria{Filter: Const{Value: true}}, nil
			}
			return &Criteria{Filter: MissingCond{Param: prm.Code}}, nil
		}
		return nil, perr(full, ":missing must be true or false, got %q", value)
	}
	switch prm.Code {
	case "_id":
		if hasMod {
			return nil, perr(full, "unknown modifier %q for _id", mod)
		}
		var ids []string
		for _, v := range splitEsc(value, ',') {
			if v = unesc(v); v != "" {
				ids = append(ids, v)
			}
		}
		return &Criteria{Filter: IDCond{IDs: ids}}, nil
	case "_lastUpdated":
		if hasMod {
			return nil, perr(full, "unknown modifier %q for _lastUpdated", mod)
		}
		return p.orOf(full, value, func(v string) (Expr, error) {
			pre, lo, hi, err := p.dateValue(full, v)
			if err != nil {
				return nil, err
			}
			return LastUpdatedCond{Prefix: pre, Lo: lo, Hi: hi}, nil
		})
	case "_text":
		// search.html#text: the narrative, folded; matched as a substring.
		if hasMod {
			return nil, perr(full, "unknown modifier %q for _text", mod)
		}
		return p.orOf(full, value, func(v string) (Expr, error) {
			return StringCond{Param: "_text", Value: Fold(unesc(v)), Mode: StringContains}, nil
		})
	}
	var e Expr
	var err error
	switch prm.Type {
	case TypeString:
		e, err = p.stringParam(full, prm, mod, hasMod, value)
	case TypeToken:
		e, err = p.tokenParam(full, prm, mod, hasMod, value)
	case TypeReference:
		e, err = p.refParam(full, prm, mod, hasMod, value)
	case TypeDate, TypeNumber, TypeQuantity:
		if hasMod {
			return nil, perr(full, "unknown modifier %q for a %s parameter", mod, prm.Type)
		}
		e, err = p.orOf1(full, value, func(v string) (Expr, error) { return p.ordered(full, prm.Type, prm.Code, v) })
	case TypeURI:
		e, err = p.uriParam(full, prm, mod, hasMod, value)
	case TypeComposite:
		if hasMod {
			return nil, perr(full, "unknown modifier %q for a composite parameter", mod)
		}
		e, err = p.orOf1(full, value, func(v string) (Expr, error) { return p.composite(full, prm, v) })
	default:
		if err := p.warn(full, "search parameter %s (type %s) is not supported", prm.Code, prm.Type); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, nil
	}
	return &Criteria{Filter: e}, nil
}

// orOf parses the comma-separated values of one parameter (search.html#combining: OR).
func (p *parser) orOf(full, value string, one func(string) (Expr, error)) (*Criteria, error) {
	e, err := p.orOf1(full, value, one)
	if err != nil || e == nil {
		return nil, err
	}
	return &Criteria{Filter: e}, nil
}

func (p *parser) orOf1(full, value string, one func(string) (Expr, error)) (Expr, error) {
	var args []Expr
	for _, v := range splitEsc(value, ',') {
		if v == "" {
			continue
		}
		e, err := one(v)
		if err != nil {
			return nil, err
		}
		args = append(args, e)
	}
	switch len(args) {
	case 0:
		return nil, nil
	case 1:
		return args[0], nil
	}
	return Or{Args: args}, nil
}

// unsupportedMod handles a known but unimplemented modifier.
func (p *parser) unsupportedMod(full, mod string) (Expr, error) {
	if err := p.warn(full, "modifier :%s is not supported", mod); err != nil {
		return nil, err
	}
	return nil, nil
}

// stringParam: search.html#string.
func (p *parser) stringParam(full string, prm *Param, mod string, hasMod bool, value string) (Expr, error) {
	mode := StringStartsWith
	switch {
	case !hasMod:
	case mod == "exact":
		mode = StringExact
	case mod == "contains":
		mode = StringContains
	case mod == "text" || mod == "above" || mod == "below":
		return p.unsupportedMod(full, mod)
	default:
		return nil, perr(full, "unknown modifier %q for a string parameter", mod)
	}
	return p.orOf1(full, value, func(v string) (Expr, error) {
		v = unesc(v)
		if mode != StringExact {
			v = Fold(v)
		}
		return StringCond{Param: prm.Code, Value: v, Mode: mode}, nil
	})
}

// tokenParam: search.html#token.
func (p *parser) tokenParam(full string, prm *Param, mod string, hasMod bool, value string) (Expr, error) {
	switch {
	case !hasMod, mod == "not", mod == "text", mod == "of-type":
	case mod == "in" || mod == "not-in" || mod == "above" || mod == "below":
		return p.unsupportedMod(full, mod)
	default:
		return nil, perr(full, "unknown modifier %q for a token parameter", mod)
	}
	e, err := p.orOf1(full, value, func(v string) (Expr, error) {
		if mod == "text" {
			return TokenCond{Param: prm.Code, Text: Fold(unesc(v))}, nil
		}
		parts := splitEsc(v, '|')
		if mod == "of-type" {
			// search.html#token: identifier:of-type=system|code|value
			if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
				return nil, perr(full, ":of-type needs system|code|value, got %q", v)
			}
			c := unesc(parts[2])
			return TokenCond{Param: prm.Code, OfType: true, TypeSystem: unesc(parts[0]), TypeCode: unesc(parts[1]), Code: &c}, nil
		}
		return tokenValue(full, prm.Code, v)
	})
	if err != nil || e == nil {
		return e, err
	}
	if mod == "not" {
		// :not matches resources with no matching token (search.html#token).
		return Not{Arg: e}, nil
	}
	return e, nil
}

// tokenValue parses [system]|[code] forms.
func tokenValue(full, code, v string) (TokenCond, error) {
	parts := splitEsc(v, '|')
	t := TokenCond{Param: code}
	switch len(parts) {
	case 1:
		c := unesc(parts[0])
		t.Code = &c
	case 2:
		s, c := unesc(parts[0]), unesc(parts[1])
		if s == "" && c == "" {
			return t, perr(full, "token %q has neither system nor code", v)
		}
		t.System = &s
		if c != "" {
			t.Code = &c
		}
	default:
		return t, perr(full, "token %q has more than one unescaped '|'", v)
	}
	return t, nil
}

// refParam: search.html#reference.
func (p *parser) refParam(full string, prm *Param, mod string, hasMod bool, value string) (Expr, error) {
	var typ string
	switch {
	case !hasMod:
	case mod == "identifier":
		return p.orOf1(full, value, func(v string) (Expr, error) {
			t, err := tokenValue(full, "", v)
			if err != nil {
				return nil, err
			}
			return RefCond{Param: prm.Code, Identifier: &t}, nil
		})
	case mod == "below":
		return p.orOf1(full, value, func(v string) (Expr, error) {
			return RefCond{Param: prm.Code, URLs: []string{unesc(v)}, Below: true}, nil
		})
	case mod == "above" || mod == "text" || mod == "not":
		return p.unsupportedMod(full, mod)
	case p.r.IsResourceType(mod):
		if len(prm.Target) > 0 && !slices.Contains(prm.Target, mod) {
			return nil, perr(full, "search parameter %s cannot refer to %s", prm.Code, mod)
		}
		typ = mod
	default:
		return nil, perr(full, "unknown modifier %q for a reference parameter", mod)
	}
	return p.orOf1(full, value, func(v string) (Expr, error) {
		return p.refValue(full, prm, typ, unesc(v))
	})
}

func (p *parser) refValue(full string, prm *Param, typ, v string) (Expr, error) {
	base := strings.TrimRight(p.opt.Base, "/")
	if base != "" && strings.HasPrefix(v, base+"/") {
		v = v[len(base)+1:]
	}
	if strings.Contains(v, ":") {
		// An absolute or canonical URL, optionally url|version.
		u, version, _ := strings.Cut(v, "|")
		if i := strings.Index(u, "/_history/"); i >= 0 && version == "" {
			u = u[:i]
		}
		return RefCond{Param: prm.Code, URLs: []string{u}, Version: version}, nil
	}
	if i := strings.Index(v, "/_history/"); i >= 0 {
		v = v[:i]
	}
	if t, id, ok := strings.Cut(v, "/"); ok {
		if !p.r.IsResourceType(t) || id == "" || strings.Contains(id, "/") {
			return nil, perr(full, "invalid reference %q", v)
		}
		if typ != "" && t != typ {
			return nil, perr(full, "reference %q is not a %s", v, typ)
		}
		return RefCond{Param: prm.Code, Targets: []string{v}}, nil
	}
	if typ != "" {
		return RefCond{Param: prm.Code, Targets: []string{typ + "/" + v}}, nil
	}
	if len(prm.Target) == 1 {
		return RefCond{Param: prm.Code, Targets: []string{prm.Target[0] + "/" + v}}, nil
	}
	return RefCond{Param: prm.Code, IDs: []string{v}}, nil
}

// uriParam: search.html#uri.
func (p *parser) uriParam(full string, prm *Param, mod string, hasMod bool, value string) (Expr, error) {
	mode := URIExact
	switch {
	case !hasMod:
	case mod == "below":
		mode = URIBelow
	case mod == "above":
		mode = URIAbove
	default:
		return nil, perr(full, "unknown modifier %q for a uri parameter", mod)
	}
	return p.orOf1(full, value, func(v string) (Expr, error) {
		return URICond{Param: prm.Code, Value: unesc(v), Mode: mode}, nil
	})
}

var prefixes = map[string]Prefix{
	"eq": Eq, "ne": Ne, "gt": Gt, "lt": Lt, "ge": Ge, "le": Le, "sa": Sa, "eb": Eb, "ap": Ap,
}

// splitPrefix separates a comparison prefix (search.html#prefix).
func splitPrefix(v string) (Prefix, string) {
	if len(v) >= 2 {
		if pre, ok := prefixes[v[:2]]; ok {
			return pre, v[2:]
		}
	}
	return Eq, v
}

func (p *parser) dateValue(full, v string) (Prefix, time.Time, time.Time, error) {
	pre, rest := splitPrefix(v)
	lo, hi, err := ParseDateRange(rest)
	if err != nil {
		return "", time.Time{}, time.Time{}, perr(full, "invalid date %q: expected [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.sss]][Z|±hh:mm]]]]", v)
	}
	if pre == Ap {
		// search.html#prefix: ap is approximately the value; we allow 10%
		// of the distance between the value and now on each side.
		d := p.now.Sub(lo)
		if d < 0 {
			d = -d
		}
		d /= 10
		lo, hi = lo.Add(-d), hi.Add(d)
	}
	return pre, lo, hi, nil
}

// ordered parses a date, number or quantity value with its prefix; code
// is the parameter (or composite component position).
func (p *parser) ordered(full string, typ ParamType, code, v string) (Expr, error) {
	switch typ {
	case TypeDate:
		pre, lo, hi, err := p.dateValue(full, v)
		if err != nil {
			return nil, err
		}
		return DateCond{Param: code, Prefix: pre, Lo: lo, Hi: hi}, nil
	case TypeNumber:
		pre, n, lo, hi, err := numberValue(full, v)
		if err != nil {
			return nil, err
		}
		return NumberCond{Param: code, Prefix: pre, Value: n, Lo: lo, Hi: hi}, nil
	case TypeQuantity:
		parts := splitEsc(v, '|')
		if len(parts) != 1 && len(parts) != 3 {
			return nil, perr(full, "quantity must be [prefix]number[|system|code], got %q", v)
		}
		pre, n, lo, hi, err := numberValue(full, parts[0])
		if err != nil {
			return nil, err
		}
		q := QuantityCond{Param: code, Prefix: pre, Value: n, Lo: lo, Hi: hi}
		if len(parts) == 3 {
			q.System, q.Code = unesc(parts[1]), unesc(parts[2])
			if q.System != "" && q.Code == "" {
				return nil, perr(full, "quantity %q has a system but no code", v)
			}
		}
		return q, nil
	}
	return nil, perr(full, "parameter type %s has no ordered values", typ)
}

func numberValue(full, v string) (Prefix, float64, float64, float64, error) {
	pre, rest := splitPrefix(v)
	n, lo, hi, err := NumberRange(rest)
	if err != nil {
		return "", 0, 0, 0, perr(full, "invalid number %q", v)
	}
	if pre == Ap {
		// search.html#prefix: within 10% of the value (at least its precision).
		d := math.Abs(n) / 10
		lo, hi = min(lo, n-d), max(hi, n+d)
	}
	return pre, n, lo, hi, nil
}

// composite: search.html#composite, components separated by '$'.
func (p *parser) composite(full string, prm *Param, v string) (Expr, error) {
	parts := splitEsc(v, '$')
	if len(parts) != len(prm.Components) {
		return nil, perr(full, "composite parameter %s needs %d values separated by '$', got %q", prm.Code, len(prm.Components), v)
	}
	c := CompositeCond{Param: prm.Code}
	for i, part := range parts {
		comp := prm.Components[i].Param
		if comp == nil {
			return nil, perr(full, "composite parameter %s has an unresolved component", prm.Code)
		}
		code := strconv.Itoa(i)
		var e Expr
		var err error
		switch comp.Type {
		case TypeToken:
			e, err = tokenValue(full, code, part)
		case TypeString:
			e = StringCond{Param: code, Value: Fold(unesc(part))}
		case TypeURI:
			e = URICond{Param: code, Value: unesc(part)}
		case TypeReference:
			e, err = p.refValue(full, comp, "", unesc(part))
			if r, ok := e.(RefCond); ok {
				r.Param = code
				e = r
			}
		case TypeDate, TypeNumber, TypeQuantity:
			e, err = p.ordered(full, comp.Type, code, part)
		default:
			return nil, perr(full, "composite parameter %s: component type %s is not supported", prm.Code, comp.Type)
		}
		if err != nil {
			return nil, err
		}
		c.Parts = append(c.Parts, e)
	}
	return c, nil
}

// sort parses _sort (search.html#sort): comma-separated, "-" descending.
func (p *parser) sort(vals []string) error {
	for _, v := range values(vals) {
		for _, k := range strings.Split(v, ",") {
			k = strings.TrimSpace(k)
			if k == "" {
				continue
			}
			desc := strings.HasPrefix(k, "-")
			code := strings.TrimPrefix(k, "-")
			switch code {
			case "_id", "_lastUpdated":
			default:
				prm, ok, err := p.lookup(p.out.Types, code)
				if err != nil {
					return err
				}
				if !ok {
					if err := p.warn("_sort", "unknown sort parameter %q", code); err != nil {
						return err
					}
					continue
				}
				if prm.Type == TypeComposite || prm.Type == TypeSpecial {
					if err := p.warn("_sort", "cannot sort by %s parameter %q", prm.Type, code); err != nil {
						return err
					}
					continue
				}
			}
			p.out.Sort = append(p.out.Sort, SortKey{Param: code, Desc: desc})
		}
	}
	return nil
}

// includes parses _include / _revinclude (search.html#include).
func (p *parser) includes(name, base, mod string, vals []string) error {
	iterate := false
	switch mod {
	case "":
	case "iterate", "recurse":
		iterate = true
	default:
		return perr(name, "unknown modifier %q", mod)
	}
	for _, v := range values(vals) {
		if p.nIncludes++; p.nIncludes > MaxIncludes {
			return costly(name, "a search may have at most %d _include and _revinclude parameters", MaxIncludes)
		}
		if v == "*" {
			inc := Include{Source: "*", Param: "*", Iterate: iterate}
			p.addInclude(base, inc)
			continue
		}
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return perr(name, "%s must be Type:parameter[:targetType], got %q", base, v)
		}
		inc := Include{Source: parts[0], Param: parts[1], Iterate: iterate}
		if !p.r.IsResourceType(inc.Source) {
			return perr(name, "unknown resource type %q", inc.Source)
		}
		if len(parts) == 3 {
			inc.Target = parts[2]
			if !p.r.IsResourceType(inc.Target) {
				return perr(name, "unknown resource type %q", inc.Target)
			}
		}
		if inc.Param != "*" {
			prm, ok := p.r.Lookup(inc.Source, inc.Param)
			if !ok {
				if err := p.warn(name, "unknown search parameter %q for %s", inc.Param, inc.Source); err != nil {
					return err
				}
				continue
			}
			if prm.Type != TypeReference {
				return perr(name, "search parameter %s of %s is not a reference", inc.Param, inc.Source)
			}
			if inc.Target != "" && len(prm.Target) > 0 && !slices.Contains(prm.Target, inc.Target) {
				return perr(name, "search parameter %s of %s cannot refer to %s", inc.Param, inc.Source, inc.Target)
			}
		}
		p.addInclude(base, inc)
	}
	return nil
}

func (p *parser) addInclude(base string, inc Include) {
	list := &p.out.Include
	if base == "_revinclude" {
		list = &p.out.RevInclude
	}
	if !slices.Contains(*list, inc) {
		*list = append(*list, inc)
	}
}

// splitEsc splits s at unescaped sep (search.html#escaping: "\," "\$"
// "\|" and "\\" are literal); the pieces keep their escapes.
func splitEsc(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unesc removes the search escapes (search.html#escaping).
func unesc(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case ',', '$', '|', '\\':
				i++
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
