// Package conformance builds what integrators discover: the
// CapabilityStatement (capabilitystatement.html) and the SMART
// configuration (SMART App Launch 2.x, conformance.html), both generated
// from the same tables the server runs on so they cannot drift.
package conformance

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
)

// Version is fhirgate's software version.
var Version = "0.1.0"

// Interactions every resource type supports (http.html), the same list the
// pipeline dispatches on.
var Interactions = []string{"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type"}

// ImmutableTypes support no update/patch/delete through the API.
var ImmutableTypes = map[string]bool{"AuditEvent": true}

// Operation is one extended operation served by the pipeline.
type Operation struct {
	Name, Definition, Doc string
	Types                 []string // the resource types it is defined on; nil: every type
	// System: invoked at [base]/$name (rest.operation), not on a type.
	System bool
}

// Endpoints are the OAuth endpoints advertised (from the issuer's discovery).
type Endpoints struct {
	Issuer, JWKSURI, Authorization, Token, Introspection, Revocation, Registration, Management string
}

// Options are the inputs of the CapabilityStatement.
type Options struct {
	Base       string
	Registry   *search.Registry
	Operations []Operation
	Security   *Endpoints // nil: no SMART security section (auth disabled)
	Date       time.Time
	// SearchNotes documents search-wide behaviour (the FerretDB caveat etc.).
	Modifiers map[search.ParamType][]string
}

// DefaultModifiers lists the search modifiers the engine supports, per type
// (search.html#modifiers).
var DefaultModifiers = map[search.ParamType][]string{
	"string":    {"missing", "exact", "contains"},
	"token":     {"missing", "text", "not", "of-type"},
	"reference": {"missing", "identifier", "[type]"},
	"date":      {"missing"},
	"number":    {"missing"},
	"quantity":  {"missing"},
	"uri":       {"missing", "below", "above"},
	"composite": {"missing"},
}

// CapabilityStatement renders the statement as JSON.
func CapabilityStatement(o Options) []byte {
	type param struct {
		Name          string `json:"name"`
		Definition    string `json:"definition,omitempty"`
		Type          string `json:"type"`
		Documentation string `json:"documentation,omitempty"`
	}
	type code struct {
		Code string `json:"code"`
	}
	type op struct {
		Name          string `json:"name"`
		Definition    string `json:"definition"`
		Documentation string `json:"documentation,omitempty"`
	}
	type resource struct {
		Type              string   `json:"type"`
		Interaction       []code   `json:"interaction"`
		Versioning        string   `json:"versioning"`
		ReadHistory       bool     `json:"readHistory"`
		UpdateCreate      bool     `json:"updateCreate"`
		ConditionalCreate bool     `json:"conditionalCreate"`
		ConditionalRead   string   `json:"conditionalRead"`
		ConditionalUpdate bool     `json:"conditionalUpdate"`
		ConditionalDelete string   `json:"conditionalDelete"`
		ReferencePolicy   []string `json:"referencePolicy"`
		SearchInclude     []string `json:"searchInclude,omitempty"`
		SearchRevInclude  []string `json:"searchRevInclude,omitempty"`
		SearchParam       []param  `json:"searchParam,omitempty"`
		Operation         []op     `json:"operation,omitempty"`
	}
	var resources []resource
	for _, t := range fhir.ResourceTypes {
		r := resource{Type: t, Versioning: "versioned-update", ReadHistory: true, UpdateCreate: true,
			ConditionalCreate: true, ConditionalRead: "modified-since", ConditionalUpdate: true,
			ConditionalDelete: "single", ReferencePolicy: []string{"literal", "logical"}}
		for _, i := range Interactions {
			if ImmutableTypes[t] && (i == "update" || i == "patch" || i == "delete") {
				continue
			}
			r.Interaction = append(r.Interaction, code{i})
		}
		if ImmutableTypes[t] {
			r.ConditionalUpdate, r.ConditionalDelete = false, "not-supported"
		}
		if o.Registry != nil {
			for _, p := range o.Registry.Params(t) {
				if p.Code == "_id" || p.Code == "_lastUpdated" {
					continue
				}
				r.SearchParam = append(r.SearchParam, param{Name: p.Code, Definition: p.URL, Type: string(p.Type)})
				if p.Type == "reference" {
					r.SearchInclude = append(r.SearchInclude, t+":"+p.Code)
				}
			}
			r.SearchParam = append(r.SearchParam,
				param{Name: "_id", Definition: "http://hl7.org/fhir/SearchParameter/Resource-id", Type: "token"},
				param{Name: "_lastUpdated", Definition: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated", Type: "date"})
			sort.Slice(r.SearchParam, func(i, j int) bool { return r.SearchParam[i].Name < r.SearchParam[j].Name })
			if len(r.SearchInclude) > 0 {
				r.SearchInclude = append([]string{"*"}, r.SearchInclude...)
			}
			r.SearchRevInclude = []string{"*"}
		}
		for _, x := range o.Operations {
			if x.System || x.Types != nil && !slices.Contains(x.Types, t) {
				continue
			}
			r.Operation = append(r.Operation, op{Name: x.Name, Definition: x.Definition, Documentation: x.Doc})
		}
		resources = append(resources, r)
	}
	rest := map[string]any{
		"mode":          "server",
		"documentation": "fhirgate FHIR R4 server. Search supports the modifiers listed per parameter type below; unknown parameters are ignored and reported unless Prefer: handling=strict. Release rules hold results back from patient-facing callers. Secure messaging (Communication threads, docs/messaging.md) is not for emergencies — call 911 / la messagerie n'est pas destinée aux urgences — composez le 911.",
		"resource":      resources,
		"interaction":   []code{{"transaction"}, {"batch"}, {"search-system"}, {"history-system"}},
		"searchParam": []param{
			{Name: "_type", Type: "token", Documentation: "resource types of a system search"},
			{Name: "_count", Type: "number", Documentation: "page size, default 20, at most 1000"},
			{Name: "_sort", Type: "string", Documentation: "sort keys, '-' for descending; ties broken by id"},
			{Name: "_total", Type: "token", Documentation: "none | estimate | accurate. By default and with estimate the first page states the total when at most 1,000 resources match; accurate always counts"},
			{Name: "_summary", Type: "token", Documentation: "true | text | data | count | false"},
			{Name: "_elements", Type: "string"},
			{Name: "_include", Type: "string", Documentation: fmt.Sprintf("with :iterate and *; at most %d _include and _revinclude together", search.MaxIncludes)},
			{Name: "_revinclude", Type: "string", Documentation: fmt.Sprintf("with :iterate and *; at most %d _include and _revinclude together", search.MaxIncludes)},
			{Name: "_has", Type: "string", Documentation: fmt.Sprintf("reverse chaining; at most %d per search, %d hops; at most %d chained parameters and %d parameters in all", search.MaxHas, search.MaxChainDepth, search.MaxChains, search.MaxParams)},
		},
	}
	var sysOps []op
	for _, x := range o.Operations {
		if x.System {
			sysOps = append(sysOps, op{Name: x.Name, Definition: x.Definition, Documentation: x.Doc})
		}
	}
	if len(sysOps) > 0 {
		rest["operation"] = sysOps
	}
	if o.Security != nil {
		ext := []map[string]any{}
		add := func(name, u string) {
			if u != "" {
				ext = append(ext, map[string]any{"url": name, "valueUri": u})
			}
		}
		add("authorize", o.Security.Authorization)
		add("token", o.Security.Token)
		add("introspect", o.Security.Introspection)
		add("revoke", o.Security.Revocation)
		add("register", o.Security.Registration)
		add("manage", o.Security.Management)
		rest["security"] = map[string]any{
			"cors": true,
			"service": []any{map[string]any{"coding": []any{map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}},
				"text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"}},
			"extension": []any{map[string]any{
				"url":       "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
				"extension": ext,
			}},
			"description": "SMART App Launch 2.x: bearer access tokens from " + o.Security.Issuer + "; patient/, user/ and system/ scopes (v1 and v2 grammars, granular ?query scopes); proxy access for parents and delegated caregivers.",
		}
	}
	date := o.Date
	if date.IsZero() {
		date = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	}
	cs := map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         date.UTC().Format("2006-01-02"),
		"publisher":    "fhirgate",
		"kind":         "instance",
		"software":     map[string]any{"name": "fhirgate", "version": Version},
		"implementation": map[string]any{
			"description": "fhirgate FHIR R4 server and patient-portal facade",
			"url":         o.Base,
		},
		"fhirVersion": "4.0.1",
		"format":      []string{"application/fhir+json", "json"},
		"patchFormat": []string{"application/json-patch+json", "application/fhir+json"},
		"rest":        []any{rest},
	}
	b, _ := json.Marshal(cs)
	return b
}
