// Package layers states fhirgate's layering and its test checks that no
// package imports a higher layer (issue "one mechanism per concern"):
//
//	0 model    fhir and what needs only the model (validate, patch, gen, fhirpath, model)
//	1 search   fhir/search: query AST, Index, registry, extraction, parsing
//	2 store    store and its backends
//	3 rules    policy (release rules), smart (access decisions), audit, conformance
//	4 server   the search engine, bundles, the pipeline, the REST adapter, the authorization server (authz),
//	           notifications (notify), the portal and integration services (portal)
//	5 wiring   internal/app and the commands
package layers

// Layer returns the layer of a package path relative to the module root
// ("fhir/search"), and false for a path no rule covers.
func Layer(pkg string) (int, bool) {
	best, layer := -1, 0
	for prefix, l := range prefixes {
		if (pkg == prefix || len(pkg) > len(prefix) && pkg[:len(prefix)+1] == prefix+"/") && len(prefix) > best {
			best, layer = len(prefix), l
		}
	}
	return layer, best >= 0
}

// prefixes maps a package path prefix to its layer; the longest prefix wins.
var prefixes = map[string]int{
	"fhir":            0,
	"fhir/search":     1,
	"store":           2,
	"policy":          3,
	"smart":           3,
	"audit":           3,
	"conformance":     3,
	"fhir/engine":     4,
	"fhir/bundle":     4,
	"fhir/server":     4,
	"fhir/rest":       4,
	"authz":           4,
	"notify":          4,
	"portal":          4,
	"internal":        5,
	"internal/layers": 0,
	"cmd":             5,
}
