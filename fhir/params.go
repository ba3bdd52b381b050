package fhir

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Param is one input parameter of an operation (operations.html#request).
type Param struct{ Name, Value string }

// Params are an operation's input parameters: the query's, then those
// of a Parameters body, in order.
type Params []Param

// Get is the first value of name ("" when absent).
func (p Params) Get(name string) string {
	for _, x := range p {
		if x.Name == name {
			return x.Value
		}
	}
	return ""
}

// All are the values of name, in order.
func (p Params) All(name string) []string {
	var out []string
	for _, x := range p {
		if x.Name == name {
			out = append(out, x.Value)
		}
	}
	return out
}

// ReadParams reads an operation's input parameters (operations.html#request):
// the query's, and those of req.Body when it has one, which must be a
// Parameters resource. Each parameter.value[x] is read as a string: a
// primitive as written (numbers and booleans too), valueReference by its
// reference, valueCoding as system|code. A body that is no Parameters, a
// parameter without a name or a value, or another complex value is a 400
// naming it.
func ReadParams(req *Request) (Params, error) {
	var out Params
	for k, vs := range req.Query {
		for _, v := range vs {
			out = append(out, Param{k, v})
		}
	}
	if len(req.Body) == 0 {
		return out, nil
	}
	var p struct {
		ResourceType string                       `json:"resourceType"`
		Parameter    []map[string]json.RawMessage `json:"parameter"`
	}
	if err := json.Unmarshal(req.Body, &p); err != nil || p.ResourceType != "Parameters" {
		return nil, Invalid("", "the body must be a Parameters resource (operations.html#request)")
	}
	for i, m := range p.Parameter {
		at := "Parameters.parameter[" + strconv.Itoa(i) + "]"
		var name string
		_ = json.Unmarshal(m["name"], &name)
		if name == "" {
			return nil, Invalid(at+".name", "a parameter without a name")
		}
		found := false
		for k, raw := range m {
			if !strings.HasPrefix(k, "value") {
				continue
			}
			found = true
			v, ok := paramValue(k, raw)
			if !ok {
				return nil, Invalid(at+"."+k, "parameter %s: this value type is not supported here", name)
			}
			out = append(out, Param{name, v})
		}
		if !found {
			return nil, Invalid(at, "parameter %s has no value", name)
		}
	}
	return out, nil
}

func paramValue(key string, raw json.RawMessage) (string, bool) {
	switch key {
	case "valueReference":
		var r struct {
			Reference string `json:"reference"`
		}
		return r.Reference, json.Unmarshal(raw, &r) == nil
	case "valueCoding":
		var c struct {
			System string `json:"system"`
			Code   string `json:"code"`
		}
		return c.System + "|" + c.Code, json.Unmarshal(raw, &c) == nil && c.Code != ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), true
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return strconv.FormatBool(b), true
	}
	return "", false
}
