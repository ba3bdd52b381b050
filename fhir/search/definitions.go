package search

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/fhirgate/fhirgate/fhir/model"
)

//go:generate go run ./internal/gendefs -pkg $HOME/.cache/fhirgate/hl7.fhir.r4.examples-4.0.1/package -out definitions/r4.json.gz

// r4Defs is the compact copy of the core R4 search definitions
// (definitions/README.md): the SearchParameters and the patient
// CompartmentDefinition. The element types the expressions navigate are
// the R4 model's (fhir/model).
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
	Params      []wireParam         `json:"params"`
	Compartment map[string][]string `json:"compartment"`
}

var (
	defsOnce sync.Once
	defsRaw  *rawDefs
	defsErr  error
	defaultR *Registry
)

// loadDefs returns the vendored definitions and the R4 model.
func loadDefs() (*rawDefs, *model.Model, error) {
	defsOnce.Do(func() { defsRaw, defsErr = decodeDefs() })
	return defsRaw, model.R4(), defsErr
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
