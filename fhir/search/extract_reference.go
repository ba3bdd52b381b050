package search

import (
	"strings"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// Reference values (search.html#reference): literal, absolute,
// canonical and logical (identifier) references.

// addReference adds the value of a Reference given by its elements
// (references.html): its literal reference (a contained one, "#id", is not
// searchable by reference), its type, its identifier; nothing for a
// display-only reference.
func (r *Registry) addReference(ix *Index, code, ref, typ, idSystem, idValue string) {
	v := RefValue{Param: code}
	if ref != "" {
		if strings.HasPrefix(ref, "#") {
			return
		}
		v = r.literalRef(code, ref)
	}
	if v.Type == "" {
		v.Type = typ
	}
	v.IDSystem, v.IDValue = idSystem, idValue
	if v.Ref == "" && v.IDValue == "" && v.IDSystem == "" {
		return
	}
	addRef(ix, v)
}

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
			v := RefValue{Param: code, Ref: url, Version: version}
			if t, _ := fhirpath.ReferenceTypeID(url); t != "" && x.r.model.IsResource(t) {
				v.Type = t
			}
			addRef(ix, v)
			return
		}
	case "Resource":
		if m != nil {
			t, id := str(m, "resourceType"), str(m, "id")
			if t != "" && id != "" {
				addRef(ix, RefValue{Param: code, Ref: t + "/" + id, Type: t, ID: id})
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
			return RefValue{Param: code, Ref: t + "/" + id, Type: t, ID: id}
		}
		return RefValue{Param: code, Ref: ref}
	}
	v := RefValue{Param: code, Ref: ref}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		v.Ref = ref[:i]
	}
	if t, _ := fhirpath.ReferenceTypeID(v.Ref); t != "" && r.model.IsResource(t) {
		v.Type = t
	}
	return v
}

func addRef(ix *Index, v RefValue) {
	for i := len(ix.Ref) - 1; i >= max(0, len(ix.Ref)-dedupeWindow) && ix.Ref[i].Param == v.Param; i-- {
		if ix.Ref[i] == v {
			return
		}
	}
	ix.Ref = append(ix.Ref, v)
}
