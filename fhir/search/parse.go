package search

import (
	"fmt"
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
