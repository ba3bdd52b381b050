package search

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"

	"strings"
	"sync"
)

//go:generate go run ./internal/gendefs -pkg /tmp/fhirpkg/package -out definitions/r4.json.gz

// r4Defs is the compact copy of the core R4 search definitions
// (definitions/README.md): SearchParameters, the patient
// CompartmentDefinition and the element type model.
//
//go:embed definitions/r4.json.gz
var r4Defs []byte

// wireParam is the JSON form of a SearchParameter (searchparameter.html),
// restricted to the fields the registry uses; it reads both the vendored
// file and client-supplied SearchParameter resources.
type wireParam struct {
	ResourceType string   `json:"resourceType"`
	URL          string   `json:"url"`
	Code         string   `json:"code"`
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Base         []string `json:"base"`
	Expression   string   `json:"expression"`
	Target       []string `json:"target"`
	Modifier     []string `json:"modifier"`
	Comparator   []string `json:"comparator"`
	Component    []struct {
		Definition string `json:"definition"`
		Expression string `json:"expression"`
	} `json:"component"`
	MultipleOr  *bool `json:"multipleOr"`
	MultipleAnd *bool `json:"multipleAnd"`
}

func (w *wireParam) param() *Param {
	p := &Param{
		URL: w.URL, Code: w.Code, Name: w.Name, Type: ParamType(w.Type), Base: w.Base,
		Expression: w.Expression, Target: w.Target, Modifier: w.Modifier, Comparator: w.Comparator,
		MultipleOr: w.MultipleOr, MultipleAnd: w.MultipleAnd,
	}
	for _, c := range w.Component {
		p.Components = append(p.Components, Component{Definition: c.Definition, Expression: c.Expression})
	}
	return p
}

type rawDefs struct {
	Params      []wireParam                  `json:"params"`
	Compartment map[string][]string          `json:"compartment"`
	Resources   []string                     `json:"resources"`
	Primitives  []string                     `json:"primitives"`
	Bases       map[string]string            `json:"bases"`
	Types       map[string]map[string]string `json:"types"`
}

// childInfo is one element of the type model: its type(s), and whether it
// is a choice element (value[x], structuredefinition.html#choice).
type childInfo struct {
	types  []string
	choice bool
}

// typeModel is the subset of the R4 StructureDefinitions the FHIRPath
// evaluator needs: element types per parent type, the type hierarchy and
// the resource and primitive type names.
type typeModel struct {
	children   map[string]map[string]childInfo
	bases      map[string]string
	resources  map[string]bool
	primitives map[string]bool
	// bySuffix maps a choice suffix ("Quantity", "DateTime") to its type.
	bySuffix map[string]string
}

var (
	defsOnce  sync.Once
	defsModel *typeModel
	defsRaw   *rawDefs
	defsErr   error
	defaultR  *Registry
)

func loadDefs() (*rawDefs, *typeModel, error) {
	defsOnce.Do(func() {
		defsRaw, defsErr = decodeDefs()
		if defsErr == nil {
			defsModel = newTypeModel(defsRaw)
		}
	})
	return defsRaw, defsModel, defsErr
}

func decodeDefs() (*rawDefs, error) {
	zr, err := gzip.NewReader(bytes.NewReader(r4Defs))
	if err != nil {
		return nil, fmt.Errorf("search definitions: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("search definitions: %w", err)
	}
	var d rawDefs
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("search definitions: %w", err)
	}
	return &d, nil
}

func newTypeModel(d *rawDefs) *typeModel {
	m := &typeModel{
		children:   make(map[string]map[string]childInfo, len(d.Types)),
		bases:      d.Bases,
		resources:  make(map[string]bool, len(d.Resources)),
		primitives: make(map[string]bool, len(d.Primitives)),
		bySuffix:   map[string]string{},
	}
	for t, kids := range d.Types {
		cm := make(map[string]childInfo, len(kids))
		for name, types := range kids {
			ci := childInfo{types: strings.Split(types, "|")}
			if strings.HasSuffix(name, "[x]") {
				name = strings.TrimSuffix(name, "[x]")
				ci.choice = true
			}
			cm[name] = ci
		}
		m.children[t] = cm
		if !strings.Contains(t, ".") {
			m.bySuffix[t] = t
		}
	}
	for _, r := range d.Resources {
		m.resources[r] = true
	}
	for _, p := range d.Primitives {
		m.primitives[p] = true
		m.bySuffix[strings.ToUpper(p[:1])+p[1:]] = p
	}
	for t := range d.Bases {
		if !strings.Contains(t, ".") && !m.primitives[t] {
			m.bySuffix[t] = t
		}
	}
	// Flatten inherited elements into each type, so lookup is one map
	// access per level instead of a walk up the hierarchy (a type's own
	// element wins over an ancestor's of the same name, as in the walk).
	flat := make(map[string]map[string]childInfo, len(m.children)+len(m.bases))
	types := make([]string, 0, len(m.children)+len(m.bases))
	for t := range m.children {
		types = append(types, t)
	}
	for t := range m.bases {
		types = append(types, t)
	}
	for _, t := range types {
		if _, done := flat[t]; done {
			continue
		}
		all := map[string]childInfo{}
		for a, i := t, 0; a != "" && i < 8; i++ {
			for name, ci := range m.children[a] {
				if _, ok := all[name]; !ok {
					all[name] = ci
				}
			}
			a = m.bases[a]
		}
		flat[t] = all
	}
	m.children = flat
	return m
}

// lookup finds the element name of type t, walking the type hierarchy.
func (m *typeModel) lookup(t, name string) (childInfo, bool) {
	ci, ok := m.children[t][name] // inherited elements are flattened in (newTypeModel)
	return ci, ok
}

// isA reports whether type t is want or a specialisation of it
// (fhirpath.html#types: "is" and "as" accept subtypes).
func (m *typeModel) isA(t, want string) bool {
	for i := 0; t != "" && i < 10; i++ {
		if t == want {
			return true
		}
		t = m.bases[t]
	}
	return false
}

// isType reports whether name is a known resource or data type name.
func (m *typeModel) isType(name string) bool {
	if m.resources[name] || m.primitives[name] {
		return true
	}
	_, ok := m.bases[name]
	return ok
}
