package search

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"time"

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
		sortKey = ix.Str[m.str].V
	case len(ix.Tok) > m.tok:
		for _, t := range ix.Tok[m.tok:] {
			if t.C != "" {
				sortKey = t.C
				break
			}
		}
		if sortKey == nil {
			sortKey = ix.Tok[m.tok].T
		}
	case len(ix.Ref) > m.ref:
		sortKey = ix.Ref[m.ref].R
	case len(ix.Date) > m.dt:
		sortKey = ix.Date[m.dt].Lo
	case len(ix.Num) > m.num:
		sortKey = ix.Num[m.num].V
	case len(ix.Qty) > m.qty:
		sortKey = ix.Qty[m.qty].V
	case len(ix.URI) > m.uri:
		sortKey = ix.URI[m.uri].V
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
			x.idx.Comp = append(x.idx.Comp, CompValue{P: cp.p.Code, X: sub})
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
				addURI(ix, URIValue{P: code, V: s})
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

// contactSystems are the ContactPoint.system codes (valueset-contact-point-system).
var contactSystems = map[string]bool{"phone": true, "fax": true, "email": true, "pager": true, "url": true, "sms": true, "other": true}

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

// ---------------------------------------------------------------- string

// strValues indexes search.html#string values: strings, and every part of a
// HumanName or Address.
func (x *extractor) strValues(ix *Index, code string, it fhirpath.Item, kind string) {
	m, _ := it.V.(map[string]any)
	switch kind {
	case "string", "uri", "canonical":
		if s, ok := it.V.(string); ok {
			addStr(ix, code, s)
			return
		}
	case "HumanName":
		if m != nil {
			addStr(ix, code, str(m, "text"))
			addStr(ix, code, str(m, "family"))
			for _, k := range []string{"given", "prefix", "suffix"} {
				for _, s := range strs(m, k) {
					addStr(ix, code, s)
				}
			}
			return
		}
	case "Address":
		if m != nil {
			addStr(ix, code, str(m, "text"))
			for _, s := range strs(m, "line") {
				addStr(ix, code, s)
			}
			for _, k := range []string{"city", "district", "state", "postalCode", "country"} {
				addStr(ix, code, str(m, k))
			}
			return
		}
	case "Coding":
		if m != nil {
			addStr(ix, code, str(m, "display"))
			return
		}
	case "CodeableConcept":
		if m != nil {
			addStr(ix, code, str(m, "text"))
			for _, c := range maps(m, "coding") {
				addStr(ix, code, str(c, "display"))
			}
			return
		}
	case "Annotation", "Narrative":
		if m != nil {
			addStr(ix, code, str(m, "text"))
			return
		}
	case "Attachment":
		if m != nil {
			addStr(ix, code, str(m, "title"))
			return
		}
	}
	x.warnf("%s is not a string", describe(it, kind))
}

func addStr(ix *Index, code, s string) {
	if strings.TrimSpace(s) == "" {
		return
	}
	v := StrValue{P: code, V: Fold(s), X: s}
	for i := len(ix.Str) - 1; i >= max(0, len(ix.Str)-dedupeWindow) && ix.Str[i].P == code; i-- {
		if ix.Str[i] == v {
			return
		}
	}
	ix.Str = append(ix.Str, v)
}

// narrative indexes _text (search.html#text): the narrative's text content,
// folded, tags removed.
func (x *extractor) narrative(resource map[string]any) {
	text, _ := resource["text"].(map[string]any)
	div, _ := text["div"].(string)
	if div == "" {
		return
	}
	var b strings.Builder
	inTag := false
	for _, r := range div {
		switch {
		case r == '<':
			inTag = true
			b.WriteByte(' ')
		case r == '>':
			inTag = false
		case !inTag:
			b.WriteRune(r)
		}
	}
	s := Fold(html.UnescapeString(b.String()))
	if len(s) > maxTextLen {
		cut := maxTextLen
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut]
	}
	if s == "" {
		return
	}
	x.idx.Str = append(x.idx.Str, StrValue{P: "_text", V: s})
	x.idx.Has = append(x.idx.Has, "_text")
}

// ---------------------------------------------------------------- token

// tokValues indexes search.html#token values.
func (x *extractor) tokValues(ix *Index, code string, it fhirpath.Item, kind string) {
	m, _ := it.V.(map[string]any)
	switch kind {
	case "Coding":
		if m != nil {
			addCoding(ix, code, m)
			return
		}
	case "CodeableConcept":
		if m != nil {
			codings := maps(m, "coding")
			for _, c := range codings {
				addCoding(ix, code, c)
			}
			if t := str(m, "text"); strings.TrimSpace(t) != "" {
				ft := Fold(t)
				dup := false
				for _, c := range codings {
					dup = dup || Fold(str(c, "display")) == ft
				}
				if !dup {
					addTok(ix, TokValue{P: code, T: ft})
				}
			}
			return
		}
	case "Identifier":
		if m != nil {
			base := TokValue{P: code, S: str(m, "system"), C: str(m, "value")}
			if base.S == "" && base.C == "" {
				return
			}
			typ, _ := m["type"].(map[string]any)
			if t := str(typ, "text"); t != "" {
				base.T = Fold(t)
			}
			added := false
			for _, c := range maps(typ, "coding") {
				v := base
				v.TS, v.TC = str(c, "system"), str(c, "code")
				if v.TC != "" {
					addTok(ix, v)
					added = true
				}
			}
			if !added {
				addTok(ix, base)
			}
			return
		}
	case "ContactPoint":
		if m != nil {
			if v := str(m, "value"); v != "" {
				addTok(ix, TokValue{P: code, C: v})
			}
			return
		}
	case "boolean":
		if b, ok := it.V.(bool); ok {
			addTok(ix, TokValue{P: code, C: strconv.FormatBool(b)})
			return
		}
	case "string", "uri", "canonical", "date", "dateTime", "instant", "time":
		if s, ok := it.V.(string); ok {
			if s != "" {
				addTok(ix, TokValue{P: code, C: s})
			}
			return
		}
	case "integer", "decimal":
		switch v := it.V.(type) {
		case json.Number:
			addTok(ix, TokValue{P: code, C: string(v)})
			return
		case float64:
			addTok(ix, TokValue{P: code, C: strconv.FormatFloat(v, 'f', -1, 64)})
			return
		}
	case "Quantity":
		// A few token parameters select a Quantity (e.g. a unit); index
		// its unit code as the token.
		if m != nil && str(m, "code") != "" {
			addTok(ix, TokValue{P: code, S: str(m, "system"), C: str(m, "code"), T: Fold(str(m, "unit"))})
			return
		}
	}
	x.warnf("%s is not a token", describe(it, kind))
}

func addCoding(ix *Index, code string, c map[string]any) {
	addCodingOf(ix, code, str(c, "system"), str(c, "code"), str(c, "display"))
}

// addCodingOf adds the token of a Coding given by its elements.
func addCodingOf(ix *Index, code, system, c, display string) {
	v := TokValue{P: code, S: system, C: c}
	if display != "" {
		v.T = Fold(display)
	}
	if v.S == "" && v.C == "" && v.T == "" {
		return
	}
	addTok(ix, v)
}

// addReference adds the value of a Reference given by its elements
// (references.html): its literal reference (a contained one, "#id", is not
// searchable by reference), its type, its identifier; nothing for a
// display-only reference.
func (r *Registry) addReference(ix *Index, code, ref, typ, idSystem, idValue string) {
	v := RefValue{P: code}
	if ref != "" {
		if strings.HasPrefix(ref, "#") {
			return
		}
		v = r.literalRef(code, ref)
	}
	if v.T == "" {
		v.T = typ
	}
	v.IS, v.IC = idSystem, idValue
	if v.R == "" && v.IC == "" && v.IS == "" {
		return
	}
	addRef(ix, v)
}

func addTok(ix *Index, v TokValue) {
	for i := len(ix.Tok) - 1; i >= max(0, len(ix.Tok)-dedupeWindow) && ix.Tok[i].P == v.P; i-- {
		if ix.Tok[i] == v {
			return
		}
	}
	ix.Tok = append(ix.Tok, v)
}

// ---------------------------------------------------------------- reference

// refValues indexes search.html#reference values: literal references (local
// ones as "Type/id"), logical references (Reference.identifier) and
// canonical/uri references ("url|version").
func (x *extractor) refValues(ix *Index, code string, it fhirpath.Item, kind string) {
	m, _ := it.V.(map[string]any)
	switch kind {
	case "Reference":
		if m == nil {
			break
		}
		id, _ := m["identifier"].(map[string]any)
		x.r.addReference(ix, code, str(m, "reference"), str(m, "type"), str(id, "system"), str(id, "value"))
		return
	case "canonical", "uri", "string":
		if s, ok := it.V.(string); ok && (kind != "string" || it.T == "") {
			if s == "" {
				return
			}
			if !strings.Contains(s, ":") && strings.Contains(s, "/") {
				addRef(ix, x.r.literalRef(code, s))
				return
			}
			url, version, _ := strings.Cut(s, "|")
			v := RefValue{P: code, R: url, V: version}
			if t, _ := fhirpath.ReferenceTypeID(url); t != "" && x.r.model.IsResource(t) {
				v.T = t
			}
			addRef(ix, v)
			return
		}
	case "Resource":
		if m != nil {
			t, id := str(m, "resourceType"), str(m, "id")
			if t != "" && id != "" {
				addRef(ix, RefValue{P: code, R: t + "/" + id, T: t, I: id})
			}
			return
		}
	}
	x.warnf("%s is not a reference", describe(it, kind))
}

// literalRef normalises a literal reference (references.html#literal):
// "Type/id[/_history/v]" and absolute URLs under the server base become
// "Type/id"; other absolute URLs (and urn:uuid/urn:oid) are kept as given,
// with their type when recognisable.
func (r *Registry) literalRef(code, ref string) RefValue {
	rel := ref
	if r.base != "" && strings.HasPrefix(ref, r.base+"/") {
		rel = ref[len(r.base)+1:]
	}
	if !strings.Contains(rel, ":") {
		p := rel
		if i := strings.Index(p, "/_history/"); i >= 0 {
			p = p[:i]
		}
		t, id, ok := strings.Cut(p, "/")
		if ok && r.model.IsResource(t) && id != "" && !strings.ContainsAny(id, "/?") {
			return RefValue{P: code, R: t + "/" + id, T: t, I: id}
		}
		return RefValue{P: code, R: ref}
	}
	v := RefValue{P: code, R: ref}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		v.R = ref[:i]
	}
	if t, _ := fhirpath.ReferenceTypeID(v.R); t != "" && r.model.IsResource(t) {
		v.T = t
	}
	return v
}

func addRef(ix *Index, v RefValue) {
	for i := len(ix.Ref) - 1; i >= max(0, len(ix.Ref)-dedupeWindow) && ix.Ref[i].P == v.P; i-- {
		if ix.Ref[i] == v {
			return
		}
	}
	ix.Ref = append(ix.Ref, v)
}

// ---------------------------------------------------------------- date

// dateValues indexes search.html#date values as ranges.
func (x *extractor) dateValues(ix *Index, code string, it fhirpath.Item, kind string) {
	m, _ := it.V.(map[string]any)
	switch kind {
	case "date", "dateTime", "instant", "string":
		if s, ok := it.V.(string); ok {
			lo, hi, err := ParseDateRange(s)
			if err != nil {
				x.warnf("%v", err)
				return
			}
			addDate(ix, DateValue{P: code, Lo: lo, Hi: hi})
			return
		}
	case "Period":
		if m != nil {
			x.period(ix, code, m)
			return
		}
	case "Timing":
		if m != nil {
			for _, e := range strs(m, "event") {
				if lo, hi, err := ParseDateRange(e); err == nil {
					addDate(ix, DateValue{P: code, Lo: lo, Hi: hi})
				} else {
					x.warnf("%v", err)
				}
			}
			if rep, ok := m["repeat"].(map[string]any); ok {
				if bp, ok := rep["boundsPeriod"].(map[string]any); ok {
					x.period(ix, code, bp)
				}
			}
			return
		}
	}
	x.warnf("%s is not a date", describe(it, kind))
}

func (x *extractor) period(ix *Index, code string, m map[string]any) {
	start, end := str(m, "start"), str(m, "end")
	if start == "" && end == "" {
		return
	}
	v := DateValue{P: code, Lo: FarPast, Hi: FarFuture}
	if start != "" {
		lo, _, err := ParseDateRange(start)
		if err != nil {
			x.warnf("Period.start: %v", err)
			return
		}
		v.Lo = lo
	}
	if end != "" {
		_, hi, err := ParseDateRange(end)
		if err != nil {
			x.warnf("Period.end: %v", err)
			return
		}
		v.Hi = hi
	}
	addDate(ix, v)
}

func addDate(ix *Index, v DateValue) {
	for i := len(ix.Date) - 1; i >= max(0, len(ix.Date)-dedupeWindow) && ix.Date[i].P == v.P; i-- {
		if ix.Date[i].Lo.Equal(v.Lo) && ix.Date[i].Hi.Equal(v.Hi) {
			return
		}
	}
	ix.Date = append(ix.Date, v)
}

// FarPast and FarFuture bound open Period ends (search.html#date: a Period
// without start began before any date, one without end has not ended).
// They stay within the years 0001-9999 so they survive JSON and BSON.
var (
	FarPast   = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	FarFuture = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)
)

// ParseDateRange parses a FHIR date, dateTime or instant (datatypes.html#
// dateTime, also the partial forms search values use) into the range
// [lo, hi) its precision covers (search.html#date): "2024" is the whole
// year, "2024-03" the month, "2024-03-05" the day, "2024-03-05T10:00" the
// minute, "…:30" the second and "…:30.25" the hundredth. Values without a
// time zone are taken as UTC. Sub-millisecond precision is widened to a
// millisecond, the resolution of BSON dates.
func ParseDateRange(s string) (lo, hi time.Time, err error) {
	bad := func() (time.Time, time.Time, error) {
		return time.Time{}, time.Time{}, fmt.Errorf("invalid date %q", s)
	}
	num := func(t string) (int, bool) {
		n := 0
		if t == "" {
			return 0, false
		}
		for i := 0; i < len(t); i++ {
			if t[i] < '0' || t[i] > '9' {
				return 0, false
			}
			n = n*10 + int(t[i]-'0')
		}
		return n, true
	}
	datePart, timePart, hasTime := strings.Cut(s, "T")
	if len(datePart) != 4 && len(datePart) != 7 && len(datePart) != 10 {
		return bad()
	}
	year, ok := num(datePart[:4])
	if !ok || year < 1 {
		return bad()
	}
	month, day := 1, 1
	if len(datePart) >= 7 {
		if datePart[4] != '-' {
			return bad()
		}
		if month, ok = num(datePart[5:7]); !ok || month < 1 || month > 12 {
			return bad()
		}
	}
	if len(datePart) == 10 {
		if datePart[7] != '-' {
			return bad()
		}
		if day, ok = num(datePart[8:10]); !ok || day < 1 || day > daysIn(year, time.Month(month)) {
			return bad()
		}
	}
	if !hasTime {
		lo = time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
		switch len(datePart) {
		case 4:
			return lo, lo.AddDate(1, 0, 0), nil
		case 7:
			return lo, lo.AddDate(0, 1, 0), nil
		}
		return lo, lo.AddDate(0, 0, 1), nil
	}
	if len(datePart) != 10 {
		return bad()
	}
	loc := time.UTC
	clock := timePart
	if strings.HasSuffix(clock, "Z") {
		clock = clock[:len(clock)-1]
	} else if i := strings.LastIndexAny(clock, "+-"); i >= 0 {
		tz := clock[i+1:]
		clock = clock[:i]
		if len(tz) != 5 || tz[2] != ':' {
			return bad()
		}
		h, ok1 := num(tz[:2])
		mi, ok2 := num(tz[3:])
		if !ok1 || !ok2 || h > 14 || mi > 59 {
			return bad()
		}
		off := h*3600 + mi*60
		if timePart[i] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	if len(clock) < 5 || clock[2] != ':' {
		return bad()
	}
	hour, ok1 := num(clock[:2])
	minute, ok2 := num(clock[3:5])
	if !ok1 || !ok2 || hour > 23 || minute > 59 {
		return bad()
	}
	sec, nsec := 0, 0
	step := time.Minute
	if len(clock) > 5 {
		if clock[5] != ':' || len(clock) < 8 {
			return bad()
		}
		if sec, ok = num(clock[6:8]); !ok || sec > 60 {
			return bad()
		}
		step = time.Second
		if len(clock) > 8 {
			frac := clock[9:]
			if clock[8] != '.' || frac == "" {
				return bad()
			}
			if _, ok := num(frac); !ok {
				return bad()
			}
			if len(frac) > 9 {
				frac = frac[:9]
			}
			n, _ := num(frac + strings.Repeat("0", 9-len(frac)))
			nsec = n
			step = time.Duration(math.Pow10(9 - len(frac)))
			if step < time.Millisecond {
				step = time.Millisecond
				nsec -= nsec % int(time.Millisecond)
			}
		}
	}
	lo = time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc).UTC()
	return lo, lo.Add(step), nil
}

func daysIn(year int, m time.Month) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// ---------------------------------------------------------------- number, quantity

// NumberRange parses a FHIR decimal and returns its value and the range
// [lo, hi) its precision implies (search.html#number): "100" -> [99.5,
// 100.5), "100.00" -> [99.995, 100.005). Exponent forms count the decimal
// places of their plain expansion ("1e2" is 100, [99.5, 100.5); "1.5e-3" is
// 0.0015, [0.00145, 0.00155)).
func NumberRange(s string) (v, lo, hi float64, err error) {
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil {
			return 0, 0, 0, fmt.Errorf("invalid number %q", s)
		}
		exp = e
	}
	digits := strings.TrimLeft(mant, "+-")
	whole, frac, _ := strings.Cut(digits, ".")
	if whole == "" && frac == "" || strings.Trim(whole+frac, "0123456789") != "" || strings.Count(mant, "-")+strings.Count(mant, "+") > 1 {
		return 0, 0, 0, fmt.Errorf("invalid number %q", s)
	}
	v, err = strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, 0, 0, fmt.Errorf("invalid number %q", s)
	}
	decimals := max(len(frac)-exp, 0)
	half := 0.5 * math.Pow10(-decimals)
	return v, v - half, v + half, nil
}

func numberString(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return string(n), true
	case float64:
		return strconv.FormatFloat(n, 'f', -1, 64), true
	}
	return "", false
}

// numValues indexes search.html#number values (and a Range as its bounds).
func (x *extractor) numValues(ix *Index, code string, it fhirpath.Item, kind string) {
	switch kind {
	case "integer", "decimal":
		if s, ok := numberString(it.V); ok {
			v, lo, hi, err := NumberRange(s)
			if err != nil {
				x.warnf("%v", err)
				return
			}
			ix.Num = append(ix.Num, NumValue{P: code, V: v, Lo: lo, Hi: hi})
			return
		}
	case "Range":
		if m, ok := it.V.(map[string]any); ok {
			if q, ok := x.rangeQty(code, m); ok {
				ix.Num = append(ix.Num, NumValue{P: code, V: q.V, Lo: q.Lo, Hi: q.Hi})
			}
			return
		}
	case "Quantity":
		if m, ok := it.V.(map[string]any); ok {
			if q, ok := x.qty(code, m); ok {
				ix.Num = append(ix.Num, NumValue{P: code, V: q.V, Lo: q.Lo, Hi: q.Hi})
			}
			return
		}
	}
	x.warnf("%s is not a number", describe(it, kind))
}

// qtyValues indexes search.html#quantity values: Quantity (and its
// profiles Age, Duration, ...), Money (currency as code) and Range.
func (x *extractor) qtyValues(ix *Index, code string, it fhirpath.Item, kind string) {
	m, _ := it.V.(map[string]any)
	switch kind {
	case "Quantity":
		if m != nil {
			if q, ok := x.qty(code, m); ok {
				ix.Qty = append(ix.Qty, q)
			}
			return
		}
	case "Money":
		if m != nil {
			if q, ok := x.qty(code, m); ok {
				q.S, q.C, q.U = "", str(m, "currency"), ""
				ix.Qty = append(ix.Qty, q)
			}
			return
		}
	case "Range":
		if m != nil {
			if q, ok := x.rangeQty(code, m); ok {
				ix.Qty = append(ix.Qty, q)
			}
			return
		}
	case "SampledData":
		return // no single value to compare
	}
	x.warnf("%s is not a quantity", describe(it, kind))
}

func (x *extractor) qty(code string, m map[string]any) (QtyValue, bool) {
	s, ok := numberString(m["value"])
	if !ok {
		return QtyValue{}, false
	}
	v, lo, hi, err := NumberRange(s)
	if err != nil {
		x.warnf("%v", err)
		return QtyValue{}, false
	}
	q := QtyValue{P: code, V: v, Lo: lo, Hi: hi, S: str(m, "system"), C: str(m, "code"), U: str(m, "unit")}
	// Comparators widen the range: "<5" is anything below 5.
	switch str(m, "comparator") {
	case "<", "<=":
		q.Lo = -math.MaxFloat64
	case ">", ">=":
		q.Hi = math.MaxFloat64
	}
	return q, true
}

// rangeQty turns a Range into one value spanning [low, high] (an open side
// is unbounded); V is the low value (or the high one).
func (x *extractor) rangeQty(code string, m map[string]any) (QtyValue, bool) {
	low, _ := m["low"].(map[string]any)
	high, _ := m["high"].(map[string]any)
	lq, lok := x.qty(code, low)
	hq, hok := x.qty(code, high)
	switch {
	case lok && hok:
		lq.Hi = hq.Hi
		return lq, true
	case lok:
		lq.Hi = math.MaxFloat64
		return lq, true
	case hok:
		hq.Lo = -math.MaxFloat64
		return hq, true
	}
	return QtyValue{}, false
}

// ---------------------------------------------------------------- uri

func addURI(ix *Index, v URIValue) {
	for i := len(ix.URI) - 1; i >= max(0, len(ix.URI)-dedupeWindow) && ix.URI[i].P == v.P; i-- {
		if ix.URI[i] == v {
			return
		}
	}
	ix.URI = append(ix.URI, v)
}
