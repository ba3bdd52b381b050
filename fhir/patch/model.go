package patch

import (
	"strings"
	"sync"

	r4 "github.com/fhirgate/fhirgate/fhir/model"
)

// The R4 element model as FHIRPath Patch uses it (fhirpatch.html: what an
// operation adds must fit the element it goes to). The model itself is
// fhir/model, generated from the R4 StructureDefinitions
// (structuredefinition.html); this file only adapts it.

// elemDef is one element definition (elementdefinition.html).
type elemDef = r4.Element

// model is the R4 model with the lookups the operations need. A context
// (ctx) is what model.Element takes as parent: a type name or a backbone
// element path ("Patient.contact"); "" is outside the model.
type model struct{ *r4.Model }

// getModel is the R4 model, shared.
var getModel = sync.OnceValue(func() *model { return &model{r4.R4()} })

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// child returns the definition of element name ("value" for value[x]) of ctx.
func (m *model) child(ctx, name string) *elemDef {
	if ctx == "" {
		return nil
	}
	e, _ := m.Element(ctx, name)
	return e
}

// known reports whether ctx is a type or backbone path with elements in the model.
func (m *model) known(ctx string) bool { return ctx != "" && m.HasElements(ctx) }

// ctxOf is the context of a value of FHIR type t (its children's parent):
// t itself when the model defines elements for it, "" otherwise
// (primitives, unknown types).
func (m *model) ctxOf(t string) string {
	if m.known(t) {
		return t
	}
	return ""
}

// choiceKey splits a typed choice key ("valueQuantity", "deceasedDateTime")
// of ctx into its element definition and type.
func (m *model) choiceKey(ctx, key string) (*elemDef, string) {
	e, t, ok := m.ChoiceKey(ctx, key)
	if !ok {
		return nil, ""
	}
	return e, t
}

// childCtx is the model context of a value of element e whose type is typ
// ("" when e has a single type). For a Resource-typed element (contained,
// Bundle.entry.resource) the context is the value's own resourceType.
func (m *model) childCtx(e *elemDef, typ string, val any) string {
	if e == nil {
		return ""
	}
	if typ == "" && len(e.Types) == 1 {
		typ = e.Types[0]
	}
	switch typ {
	case "Resource", "DomainResource":
		if o, ok := val.(*object); ok {
			if rt, ok := o.vals["resourceType"].(string); ok {
				return rt
			}
		}
		return ""
	}
	if m.IsPrimitive(typ) {
		return ""
	}
	return typ
}

// isPrimitive reports whether a type code is a FHIR primitive type.
func (m *model) isPrimitive(t string) bool { return m.IsPrimitive(t) }

// accepts reports whether a value of type t may be stored in e.
func (m *model) accepts(e *elemDef, t string) bool {
	for _, et := range e.Types {
		if et == t {
			return true
		}
		if m.IsPrimitive(et) && m.IsPrimitive(t) && jsonKind(et) == jsonKind(t) && !e.Choice {
			// string-like primitives share one JSON form (a code given as valueString).
			return true
		}
		if !m.IsPrimitive(et) && m.IsA(t, et) {
			// a profile of the element's type: Age, Duration or SimpleQuantity for a Quantity.
			return true
		}
		if (et == "Resource" || et == "DomainResource") && t == "Resource" {
			return true
		}
	}
	return false
}

// jsonKind is the JSON representation of a primitive type (json.html#primitive).
func jsonKind(t string) string {
	switch t {
	case "boolean":
		return "bool"
	case "integer", "decimal", "positiveInt", "unsignedInt":
		return "number"
	}
	return "string"
}

// resolveChild finds the JSON key of element name in o, an object of
// context ctx: the name itself, or for a choice element (name "value" of
// value[x]) the key carrying the type suffix that is present
// ("valueQuantity"). It also accepts a full choice key ("valueQuantity") as
// name. key is "" when the element is absent; def is nil outside the model.
func resolveChild(m *model, o *object, ctx, name string) (key string, def *elemDef, typ string) {
	if def = m.child(ctx, name); def != nil {
		if !def.Choice {
			if len(def.Types) == 1 {
				typ = def.Types[0]
			}
			return name, def, typ
		}
		for _, t := range def.Types {
			if _, ok := o.vals[def.Key(t)]; ok {
				return def.Key(t), def, t
			}
		}
		return "", def, ""
	}
	if d, t := m.choiceKey(ctx, name); d != nil {
		return name, d, t
	}
	if _, ok := o.vals[name]; ok && !m.known(ctx) {
		return name, nil, ""
	}
	return "", nil, ""
}
