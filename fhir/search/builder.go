package search

import (
	"slices"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// Builder makes the Index of a resource whose shape its writer knows (the
// AuditEvents the server writes for every request) value by value, with
// extraction's own normalisation, instead of evaluating every parameter's
// expression over the decoded resource. The writer adds the values each
// parameter's expression selects, in the order it selects them, and
// parameters in code order; its tests must compare the result with
// Extract (audit's TestIndexEqualsExtract does), and it may use a
// Builder only while the registry's parameters of the type are the
// default ones (SameParams).
type Builder struct {
	r    *Registry
	typ  string
	x    Index
	last string // code of the parameter being added
	mark idxMark
}

// NewBuilder starts the Index of a resource of type typ.
func (r *Registry) NewBuilder(typ string) *Builder {
	return &Builder{r: r, typ: typ}
}

// param moves to parameter code: the previous one's Has and sort key are
// recorded first (as extraction's finish does).
func (b *Builder) param(code string) {
	if code == b.last {
		return
	}
	b.flush()
	b.last, b.mark = code, b.x.mark()
}

func (b *Builder) flush() {
	if b.last != "" {
		b.x.finishParam(b.last, b.mark)
	}
}

// Coding adds a Coding value of a token parameter.
func (b *Builder) Coding(code, system, c, display string) {
	b.param(code)
	addCodingOf(&b.x, code, system, c, display)
}

// Code adds a code (or other string) value of a token parameter.
func (b *Builder) Code(code, s string) {
	b.param(code)
	if s != "" {
		addTok(&b.x, TokValue{Param: code, Code: s})
	}
}

// String adds a value of a string parameter.
func (b *Builder) String(code, s string) {
	b.param(code)
	addStr(&b.x, code, s)
}

// URI adds a value of a uri parameter.
func (b *Builder) URI(code, s string) {
	b.param(code)
	if s != "" {
		addURI(&b.x, URIValue{Param: code, Value: s})
	}
}

// Reference adds a Reference value of a reference parameter: its literal
// reference (may be ""), and its identifier's system and value.
func (b *Builder) Reference(code, ref, idSystem, idValue string) {
	b.param(code)
	b.r.addReference(&b.x, code, ref, "", idSystem, idValue)
}

// ResolvesTo reports whether a literal reference resolves to a resource of
// type typ, as FHIRPath's resolve() is typ does for it.
func (b *Builder) ResolvesTo(ref, typ string) bool {
	it, ok := (&fhirpath.Context{Model: b.r.model}).Resolve(fhirpath.Item{V: map[string]any{"reference": ref}})
	return ok && b.r.model.IsA(it.T, typ)
}

// DateTime adds a date, dateTime or instant value of a date parameter; a
// value that is not one is skipped, as extraction skips it.
func (b *Builder) DateTime(code, s string) {
	b.param(code)
	if lo, hi, err := ParseDateRange(s); err == nil {
		addDate(&b.x, DateValue{Param: code, Lo: lo, Hi: hi})
	}
}

// Index ends the build: compartments (from the patient compartment's
// parameters of the type) and the Index.
func (b *Builder) Index() Index {
	b.flush()
	b.last = ""
	x := &extractor{r: b.r, idx: b.x}
	tp := b.r.types[b.typ]
	if tp != nil {
		x.compartments(b.typ, map[string]any{}, tp.cpt)
	}
	return x.idx
}

// SameParams reports whether r's search parameters of type typ (codes,
// types, expressions, components) and its patient compartment are those
// of other: a Builder written against the default registry stays exact.
func (r *Registry) SameParams(other *Registry, typ string) bool {
	a, b := r.types[typ], other.types[typ]
	if a == nil || b == nil || len(a.sorted) != len(b.sorted) || !slices.Equal(a.cpt, b.cpt) {
		return false
	}
	for i := range a.sorted {
		p, q := a.sorted[i].p, b.sorted[i].p
		if p.Code != q.Code || p.Type != q.Type || p.Expression != q.Expression || len(p.Components) != len(q.Components) {
			return false
		}
		for k := range p.Components {
			if p.Components[k].Expression != q.Components[k].Expression {
				return false
			}
		}
	}
	return true
}
