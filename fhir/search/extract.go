package search

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// Extraction (search.html#ptypes): at write time every search parameter of
// the resource type is evaluated and its values are normalised into an
// Index the store persists next to the resource. Values of an unexpected
// shape are skipped (and reported by ExtractWithWarnings), never failing the
// write.

// maxTextLen bounds the folded narrative indexed for _text.
const maxTextLen = 4096

// dedupeWindow is how many previous values of a parameter are checked for
// duplicates (bounding the cost on resources with huge code lists).
const dedupeWindow = 64

// Extract computes the Index of resource, a resource of resourceType decoded
// with json.Decoder.UseNumber (search.html#ptypes). _id and _lastUpdated are
// not indexed (the store keeps them as fields). The error is only for a
// resource that is not of resourceType or a type the registry does not know.
func (r *Registry) Extract(resourceType string, resource map[string]any) (Index, error) {
	x, err := r.extract(resourceType, resource, false)
	if err != nil {
		return Index{}, err
	}
	return x.idx, nil
}

// ExtractWithWarnings is Extract also returning a description of every value
// that was skipped because of its shape or an expression evaluation error.
func (r *Registry) ExtractWithWarnings(resourceType string, resource map[string]any) (Index, []string, error) {
	x, err := r.extract(resourceType, resource, true)
	if err != nil {
		return Index{}, nil, err
	}
	return x.idx, x.warnings, nil
}

type extractor struct {
	r        *Registry
	ctx      *fhirpath.Context
	idx      Index
	warn     bool
	warnings []string
	param    string // current parameter, for warnings
}

func (x *extractor) warnf(format string, args ...any) {
	if x.warn {
		x.warnings = append(x.warnings, x.param+": "+fmt.Sprintf(format, args...))
	}
}

func (r *Registry) extract(resourceType string, resource map[string]any, warn bool) (*extractor, error) {
	if resource == nil {
		return nil, fmt.Errorf("search: extract %s: no resource", resourceType)
	}
	if rt, ok := resource["resourceType"]; ok && rt != resourceType {
		return nil, fmt.Errorf("search: extract %s: resourceType is %v", resourceType, rt)
	}
	tp, ok := r.types[resourceType]
	if !ok || !r.IsResourceType(resourceType) {
		return nil, fmt.Errorf("search: extract: unknown resource type %q", resourceType)
	}
	root := fhirpath.Item{V: resource, T: resourceType}
	x := &extractor{r: r, ctx: &fhirpath.Context{Model: r.model, Root: root}, warn: warn}
	focus := []fhirpath.Item{root}
	for _, cp := range tp.sorted {
		p := cp.p
		switch p.Code {
		case "_id", "_lastUpdated", "_content", "_query", "_filter":
			continue
		case "_text":
			if !p.Custom {
				x.param = p.Code
				x.narrative(resource)
				continue
			}
		}
		if cp.expr == nil || p.Type == TypeSpecial {
			continue
		}
		if !r.noGates && (cp.gated && !open(resource, cp.gate) || cp.compGate != nil && !allOpen(resource, cp.compGate)) {
			continue
		}
		x.param = p.Code
		items, err := x.ctx.Eval(cp.expr, focus)
		if err != nil {
			x.warnf("%v", err)
			continue
		}
		if len(items) == 0 {
			continue
		}
		if p.Type == TypeComposite {
			x.composite(cp, items)
			continue
		}
		mark := x.idx.mark()
		x.values(&x.idx, p.Code, p.Type, items)
		x.finish(p, mark)
	}
	x.compartments(resourceType, resource, tp.cpt)
	x.security(resource)
	return x, nil
}

// lengths of the value lists, to find what one parameter added.
type idxMark struct{ str, tok, ref, dt, num, qty, uri, cmp int }

func (ix *Index) mark() idxMark {
	return idxMark{len(ix.Str), len(ix.Tok), len(ix.Ref), len(ix.Date), len(ix.Num), len(ix.Qty), len(ix.URI), len(ix.Comp)}
}

// finish records Has and the _sort key of the parameter just extracted
// (search.html#sort: the first value).
func (x *extractor) finish(p *Param, m idxMark) { x.idx.finishParam(p.Code, m) }

// finishParam records Has and the _sort key of parameter code, whose values
// are those added since m.
func (ix *Index) finishParam(code string, m idxMark) {
	var sortKey any
	switch {
	case len(ix.Str) > m.str:
		sortKey = ix.Str[m.str].Value
	case len(ix.Tok) > m.tok:
		for _, t := range ix.Tok[m.tok:] {
			if t.Code != "" {
				sortKey = t.Code
				break
			}
		}
		if sortKey == nil {
			sortKey = ix.Tok[m.tok].Text
		}
	case len(ix.Ref) > m.ref:
		sortKey = ix.Ref[m.ref].Ref
	case len(ix.Date) > m.dt:
		sortKey = ix.Date[m.dt].Lo
	case len(ix.Num) > m.num:
		sortKey = ix.Num[m.num].Value
	case len(ix.Qty) > m.qty:
		sortKey = ix.Qty[m.qty].Value
	case len(ix.URI) > m.uri:
		sortKey = ix.URI[m.uri].Value
	case len(ix.Comp) > m.cmp:
	default:
		return
	}
	ix.Has = append(ix.Has, code)
	if sortKey != nil {
		if ix.Sort == nil {
			ix.Sort = map[string]any{}
		}
		ix.Sort[code] = sortKey
	}
}

// composite indexes one tuple per item of the composite's expression
// (search.html#composite), each component evaluated relative to the item.
func (x *extractor) composite(cp *compiledParam, items []fhirpath.Item) {
	mark := x.idx.mark()
	for _, it := range items {
		var sub Index
		complete := true
		for k, c := range cp.comps {
			vals, err := x.ctx.Eval(c.expr, []fhirpath.Item{it})
			if err != nil {
				x.warnf("component %d: %v", k, err)
				complete = false
				break
			}
			m := sub.mark()
			x.values(&sub, strconv.Itoa(k), c.p.Type, vals)
			if sub.mark() == m {
				complete = false
				break
			}
		}
		if complete {
			x.idx.Comp = append(x.idx.Comp, CompValue{Param: cp.p.Code, Parts: sub})
		}
	}
	x.finish(cp.p, mark)
}

// values converts items to index values of parameter code with type typ.
func (x *extractor) values(ix *Index, code string, typ ParamType, items []fhirpath.Item) {
	for _, it := range items {
		kind := x.kindOf(it)
		if kind == "Extension" {
			// extension('url') selects the Extension; its value is indexed.
			var vals []fhirpath.Item
			vals = x.ctx.Child(it, "value", vals)
			if len(vals) == 0 {
				x.warnf("extension without a value")
			}
			x.values(ix, code, typ, vals)
			continue
		}
		switch typ {
		case TypeString:
			x.strValues(ix, code, it, kind)
		case TypeToken:
			x.tokValues(ix, code, it, kind)
		case TypeReference:
			x.refValues(ix, code, it, kind)
		case TypeDate:
			x.dateValues(ix, code, it, kind)
		case TypeNumber:
			x.numValues(ix, code, it, kind)
		case TypeQuantity:
			x.qtyValues(ix, code, it, kind)
		case TypeURI:
			if s, ok := it.V.(string); ok && s != "" {
				addURI(ix, URIValue{Param: code, Value: s})
			} else {
				x.warnf("%s is not a uri", describe(it, kind))
			}
		}
	}
}

// handledKinds are the types extraction distinguishes; other types are
// reduced to these through the type hierarchy (Age -> Quantity, code ->
// string, url -> uri, ...).
var handledKinds = map[string]bool{
	"string": true, "uri": true, "canonical": true, "boolean": true, "integer": true, "decimal": true,
	"date": true, "dateTime": true, "instant": true, "time": true,
	"Coding": true, "CodeableConcept": true, "Identifier": true, "ContactPoint": true, "Reference": true,
	"Quantity": true, "Money": true, "Range": true, "Period": true, "Timing": true, "HumanName": true,
	"Address": true, "Extension": true, "Resource": true, "Narrative": true, "Annotation": true,
	"SampledData": true, "Attachment": true,
}

func (x *extractor) kindOf(it fhirpath.Item) string {
	t := it.T
	if t == "" {
		if _, ok := it.V.(fhirpath.Ref); ok {
			return ""
		}
		t = inferType(it.V)
	}
	m := x.r.model
	for i := 0; t != "" && i < 8; i++ {
		if handledKinds[t] {
			return t
		}
		t = m.Base(t)
	}
	return ""
}

// inferType guesses the FHIR type of a value whose element type is not
// known (custom parameters on unknown elements) from its JSON shape.
func inferType(v any) string {
	if t, ok := fhirpath.PrimitiveType(v); ok {
		return t
	}
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["resourceType"]; ok {
			return "Resource"
		}
		has := func(k string) bool { _, ok := x[k]; return ok }
		_, numValue := x["value"].(json.Number)
		if f, ok := x["value"].(float64); ok && !math.IsNaN(f) {
			numValue = true
		}
		switch {
		case has("coding"):
			return "CodeableConcept"
		case has("reference") || has("identifier") && !has("value"):
			return "Reference"
		case numValue && has("currency"):
			return "Money"
		case numValue:
			return "Quantity"
		case has("low") || has("high"):
			return "Range"
		case has("start") || has("end"):
			return "Period"
		case has("family") || has("given"):
			return "HumanName"
		case has("line") || has("city") || has("postalCode") || has("country"):
			return "Address"
		case has("event") || has("repeat"):
			return "Timing"
		case has("value"):
			if s, _ := x["system"].(string); contactSystems[s] {
				return "ContactPoint"
			}
			return "Identifier"
		case has("code") || has("system"):
			return "Coding"
		case has("text"):
			return "CodeableConcept"
		}
	}
	return ""
}

func describe(it fhirpath.Item, kind string) string {
	if t := fhirpath.TypeOf(it); t != "" {
		kind = t
	}
	if kind == "" {
		return fmt.Sprintf("value of type %T", it.V)
	}
	return "a " + kind
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func strs(m map[string]any, k string) []string {
	switch v := m[k].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func maps(m map[string]any, k string) []map[string]any {
	switch v := m[k].(type) {
	case map[string]any:
		return []map[string]any{v}
	case []any:
		out := make([]map[string]any, 0, len(v))
		for _, e := range v {
			if em, ok := e.(map[string]any); ok {
				out = append(out, em)
			}
		}
		return out
	}
	return nil
}

// addURI adds a uri value (search.html#uri), skipping a repeat.
func addURI(ix *Index, v URIValue) {
	for i := len(ix.URI) - 1; i >= max(0, len(ix.URI)-dedupeWindow) && ix.URI[i].Param == v.Param; i-- {
		if ix.URI[i] == v {
			return
		}
	}
	ix.URI = append(ix.URI, v)
}
