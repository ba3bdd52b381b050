package search

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// Token values (search.html#token): code, Coding, CodeableConcept,
// Identifier, ContactPoint, boolean and the other coded kinds.

// contactSystems are the ContactPoint.system codes (valueset-contact-point-system).
var contactSystems = map[string]bool{"phone": true, "fax": true, "email": true, "pager": true, "url": true, "sms": true, "other": true}

// tokValues indexes search.html#token values.
func (x *extractor) tokValues(ix *Index, code string, it fhirpath.Item, kind string) {
	m, _ := it.V.(map[string]any)
	switch kind {
	case "Coding":
		if m != nil {
			addCoding(ix, code, m)
			return
		}
	case "CodeableConcept":
		if m != nil {
			codings := maps(m, "coding")
			for _, c := range codings {
				addCoding(ix, code, c)
			}
			if t := str(m, "text"); strings.TrimSpace(t) != "" {
				ft := Fold(t)
				dup := false
				for _, c := range codings {
					dup = dup || Fold(str(c, "display")) == ft
				}
				if !dup {
					addTok(ix, TokValue{Param: code, Text: ft})
				}
			}
			return
		}
	case "Identifier":
		if m != nil {
			base := TokValue{Param: code, System: str(m, "system"), Code: str(m, "value")}
			if base.System == "" && base.Code == "" {
				return
			}
			typ, _ := m["type"].(map[string]any)
			if t := str(typ, "text"); t != "" {
				base.Text = Fold(t)
			}
			added := false
			for _, c := range maps(typ, "coding") {
				v := base
				v.TypeSystem, v.TypeCode = str(c, "system"), str(c, "code")
				if v.TypeCode != "" {
					addTok(ix, v)
					added = true
				}
			}
			if !added {
				addTok(ix, base)
			}
			return
		}
	case "ContactPoint":
		if m != nil {
			if v := str(m, "value"); v != "" {
				addTok(ix, TokValue{Param: code, Code: v})
			}
			return
		}
	case "boolean":
		if b, ok := it.V.(bool); ok {
			addTok(ix, TokValue{Param: code, Code: strconv.FormatBool(b)})
			return
		}
	case "string", "uri", "canonical", "date", "dateTime", "instant", "time":
		if s, ok := it.V.(string); ok {
			if s != "" {
				addTok(ix, TokValue{Param: code, Code: s})
			}
			return
		}
	case "integer", "decimal":
		switch v := it.V.(type) {
		case json.Number:
			addTok(ix, TokValue{Param: code, Code: string(v)})
			return
		case float64:
			addTok(ix, TokValue{Param: code, Code: strconv.FormatFloat(v, 'f', -1, 64)})
			return
		}
	case "Quantity":
		// A few token parameters select a Quantity (e.g. a unit); index
		// its unit code as the token.
		if m != nil && str(m, "code") != "" {
			addTok(ix, TokValue{Param: code, System: str(m, "system"), Code: str(m, "code"), Text: Fold(str(m, "unit"))})
			return
		}
	}
	x.warnf("%s is not a token", describe(it, kind))
}

func addCoding(ix *Index, code string, c map[string]any) {
	addCodingOf(ix, code, str(c, "system"), str(c, "code"), str(c, "display"))
}

// addCodingOf adds the token of a Coding given by its elements.
func addCodingOf(ix *Index, code, system, c, display string) {
	v := TokValue{Param: code, System: system, Code: c}
	if display != "" {
		v.Text = Fold(display)
	}
	if v.System == "" && v.Code == "" && v.Text == "" {
		return
	}
	addTok(ix, v)
}

func addTok(ix *Index, v TokValue) {
	for i := len(ix.Tok) - 1; i >= max(0, len(ix.Tok)-dedupeWindow) && ix.Tok[i].Param == v.Param; i-- {
		if ix.Tok[i] == v {
			return
		}
	}
	ix.Tok = append(ix.Tok, v)
}
