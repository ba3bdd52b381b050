package patch

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"strings"
	"sync"
)

//go:generate go run ./internal/genmodel -pkg /tmp/fhirpkg/package -out model.tsv.gz

// modelData is the element model of the R4 resources and data types
// (cardinality and types of each element), generated from the core
// StructureDefinitions; see README.md for provenance.
//
//go:embed model.tsv.gz
var modelData []byte

// elemDef is one element definition (elementdefinition.html).
type elemDef struct {
	path   string   // "Patient.contact" / "Observation.value[x]"
	many   bool     // max is "*" (or > 1)
	types  []string // type codes; several for a choice element
	ref    string   // contentReference target path ("Questionnaire.item")
	choice bool     // the path ends in [x]
}

type model struct {
	elems map[string]*elemDef
	prims map[string]bool
	// suffix maps a choice-type suffix ("DateTime", "Quantity") to the type code.
	suffix map[string]string
}

var (
	modelOnce sync.Once
	theModel  *model
)

func getModel() *model {
	modelOnce.Do(func() {
		m := &model{elems: map[string]*elemDef{}, prims: map[string]bool{}, suffix: map[string]string{}}
		zr, err := gzip.NewReader(bytes.NewReader(modelData))
		if err != nil {
			panic("patch: embedded model: " + err.Error())
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			f := strings.Split(sc.Text(), "\t")
			if len(f) == 2 && f[0] == "primitives" {
				for _, p := range strings.Split(f[1], ",") {
					m.prims[p] = true
				}
				continue
			}
			if len(f) != 4 {
				continue
			}
			e := &elemDef{path: f[0], many: f[1] == "*", ref: f[3]}
			if f[2] != "" {
				e.types = strings.Split(f[2], ",")
			}
			key := f[0]
			if strings.HasSuffix(key, "[x]") {
				e.choice = true
				key = strings.TrimSuffix(key, "[x]")
			}
			m.elems[key] = e
			for _, t := range e.types {
				m.suffix[upperFirst(t)] = t
			}
		}
		if err := sc.Err(); err != nil {
			panic("patch: embedded model: " + err.Error())
		}
		theModel = m
	})
	return theModel
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// child returns the definition of element name of the type (or backbone
// path) ctx, following contentReference.
func (m *model) child(ctx, name string) *elemDef {
	if ctx == "" {
		return nil
	}
	return m.elems[ctx+"."+name]
}

// childCtx is the model context of a value of element e whose JSON key is
// key (for a choice element the key carries the type suffix). For a
// Resource-typed element (contained, Bundle.entry.resource) the context is
// the value's own resourceType.
func (m *model) childCtx(e *elemDef, typ string, val any) string {
	if e == nil {
		return ""
	}
	if e.ref != "" {
		return e.ref
	}
	if typ == "" && len(e.types) == 1 {
		typ = e.types[0]
	}
	switch typ {
	case "BackboneElement", "Element":
		return e.path
	case "Resource", "DomainResource":
		if o, ok := val.(*object); ok {
			if rt, ok := o.vals["resourceType"].(string); ok {
				return rt
			}
		}
		return ""
	}
	if m.prims[typ] {
		return ""
	}
	return typ
}

// isPrimitive reports whether a type code is a FHIR primitive type.
func (m *model) isPrimitive(t string) bool { return m.prims[t] }

// hasType reports whether a value of type t may be stored in e.
func (m *model) accepts(e *elemDef, t string) bool {
	for _, et := range e.types {
		if et == t {
			return true
		}
		if m.prims[et] && m.prims[t] && jsonKind(et) == jsonKind(t) && !e.choice {
			// string-like primitives share one JSON form (a code given as valueString).
			return true
		}
		if et == "Quantity" && quantityLike[t] {
			return true
		}
		if (et == "Resource" || et == "DomainResource") && t == "Resource" {
			return true
		}
	}
	return false
}

var quantityLike = map[string]bool{"Age": true, "Count": true, "Distance": true, "Duration": true, "SimpleQuantity": true, "MoneyQuantity": true}

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
