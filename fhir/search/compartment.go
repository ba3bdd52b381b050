package search

import "slices"

// compartments fills Index.Compartments (compartmentdefinition.html): a
// resource is in the compartment of every Patient that one of its
// compartment parameters (CompartmentDefinition-patient) references, and a
// Patient is in its own compartment.
func (x *extractor) compartments(resourceType string, resource map[string]any, params []string) {
	add := func(c string) {
		if !slices.Contains(x.idx.Compartments, c) {
			x.idx.Compartments = append(x.idx.Compartments, c)
		}
	}
	if resourceType == "Patient" {
		if id, _ := resource["id"].(string); id != "" {
			add("Patient/" + id)
		}
	}
	if len(params) == 0 {
		return
	}
	for _, v := range x.idx.Ref {
		if v.T == "Patient" && v.I != "" && slices.Contains(params, v.P) {
			add("Patient/" + v.I)
		}
	}
}

// security fills Index.Security with meta.security and, where the resource
// type has it, securityLabel codings as "system|code"
// (security-labels.html).
func (x *extractor) security(resource map[string]any) {
	add := func(c map[string]any) {
		code := str(c, "code")
		if code == "" {
			return
		}
		label := str(c, "system") + "|" + code
		if !slices.Contains(x.idx.Security, label) {
			x.idx.Security = append(x.idx.Security, label)
		}
	}
	if meta, ok := resource["meta"].(map[string]any); ok {
		for _, c := range maps(meta, "security") {
			add(c)
		}
	}
	for _, c := range maps(resource, "securityLabel") {
		if _, ok := c["coding"]; ok {
			for _, cc := range maps(c, "coding") {
				add(cc)
			}
			continue
		}
		add(c)
	}
}
