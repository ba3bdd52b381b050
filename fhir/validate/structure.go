package validate

import "strings"

// nestedResource is a resource inside another one: an item of contained, or
// the resource of Bundle.entry / Parameters.parameter, or
// Bundle.entry.response.outcome (the places the schema's ResourceList is used).
type nestedResource struct {
	at        path
	obj       map[string]any
	contained bool
}

// resourceSlots are the element names whose type is Resource (ResourceList in
// the schema): DomainResource.contained, Bundle.entry.resource,
// Bundle.entry.response.outcome and Parameters.parameter.resource.
var resourceSlots = map[string]bool{"contained": true, "resource": true, "outcome": true}

// checkStructure applies the FHIR JSON rules of json.html that JSON Schema
// does not express, over the whole document (nested resources included), and
// returns the nested resources found, each to be checked against its own type.
//
// json.html: an element that is present has a value or children, so null,
// "", {} and [] are invalid, except that items of a repeating primitive may
// be null when the matching item of its _element partner is present
// (json.html#primitive: the two arrays are aligned with null).
func (r *run) checkStructure(obj map[string]any, at path) []nestedResource {
	var nested []nestedResource
	r.walkObject(obj, at, &nested)
	return nested
}

func (r *run) structural(at path, code, format string, args ...any) {
	r.add(at, code, format, args...)
	if r.structuralAt == nil {
		r.structuralAt = map[string]bool{}
	}
	r.structuralAt[at.Render("")] = true
}

func (r *run) walkObject(obj map[string]any, at path, nested *[]nestedResource) {
	if len(obj) == 0 {
		r.structural(at, "structure", "empty object; an element that is present must have content (json.html)")
		return
	}
	for k, v := range obj {
		kat := at.Key(k)
		switch v := v.(type) {
		case nil:
			r.structural(kat, "structure", "null is not allowed; leave the element out instead (json.html)")
		case string:
			if v == "" {
				r.structural(kat, "structure", "empty string; a value must not be empty, leave the element out instead (json.html)")
			}
		case map[string]any:
			if resourceSlots[k] {
				r.noteNested(v, kat, k, nested)
			}
			r.walkObject(v, kat, nested)
		case []any:
			if len(v) == 0 {
				r.structural(kat, "structure", "empty array; leave the element out instead (json.html)")
				continue
			}
			partnerName := "_" + k
			if p, ok := strings.CutPrefix(k, "_"); ok {
				partnerName = p
			}
			partner, hasPartner := obj[partnerName].([]any)
			if hasPartner && len(partner) != len(v) {
				// Report it once, on the primitive side.
				if !strings.HasPrefix(k, "_") {
					r.structural(kat, "structure", "%q has %d items but %q has %d; the two arrays must align item by item (json.html#primitive)", k, len(v), partnerName, len(partner))
				}
			}
			for i, item := range v {
				iat := kat.Index(i)
				switch item := item.(type) {
				case nil:
					if !hasPartner || i >= len(partner) || partner[i] == nil {
						r.structural(iat, "structure", "null is only allowed in an array of a primitive element when the matching item of %q has content (json.html#primitive)", partnerName)
					}
				case string:
					if item == "" {
						r.structural(iat, "structure", "empty string; a value must not be empty (json.html)")
					}
				case map[string]any:
					if resourceSlots[k] {
						r.noteNested(item, iat, k, nested)
					}
					r.walkObject(item, iat, nested)
				case []any:
					r.structural(iat, "structure", "an array inside an array is not valid FHIR JSON (json.html)")
				}
			}
		}
	}
}

// noteNested records obj as a nested resource when it claims to be one. If
// it lacks resourceType, the schema of the enclosing resource reports it.
func (r *run) noteNested(obj map[string]any, at path, slot string, nested *[]nestedResource) {
	if _, ok := obj["resourceType"]; ok {
		*nested = append(*nested, nestedResource{at: at, obj: obj, contained: slot == "contained"})
	}
}
