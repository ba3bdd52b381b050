package search

import (
	"html"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// String values (search.html#string): folded for prefix and :contains
// matching, the original kept for :exact; and the narrative for _text.

// strValues indexes search.html#string values: strings, and every part of a
// HumanName or Address.
func (x *extractor) strValues(ix *Index, code string, it fhirpath.Item, kind string) {
	m, _ := it.V.(map[string]any)
	switch kind {
	case "string", "uri", "canonical":
		if s, ok := it.V.(string); ok {
			addStr(ix, code, s)
			return
		}
	case "HumanName":
		if m != nil {
			addStr(ix, code, str(m, "text"))
			addStr(ix, code, str(m, "family"))
			for _, k := range []string{"given", "prefix", "suffix"} {
				for _, s := range strs(m, k) {
					addStr(ix, code, s)
				}
			}
			return
		}
	case "Address":
		if m != nil {
			addStr(ix, code, str(m, "text"))
			for _, s := range strs(m, "line") {
				addStr(ix, code, s)
			}
			for _, k := range []string{"city", "district", "state", "postalCode", "country"} {
				addStr(ix, code, str(m, k))
			}
			return
		}
	case "Coding":
		if m != nil {
			addStr(ix, code, str(m, "display"))
			return
		}
	case "CodeableConcept":
		if m != nil {
			addStr(ix, code, str(m, "text"))
			for _, c := range maps(m, "coding") {
				addStr(ix, code, str(c, "display"))
			}
			return
		}
	case "Annotation", "Narrative":
		if m != nil {
			addStr(ix, code, str(m, "text"))
			return
		}
	case "Attachment":
		if m != nil {
			addStr(ix, code, str(m, "title"))
			return
		}
	}
	x.warnf("%s is not a string", describe(it, kind))
}

func addStr(ix *Index, code, s string) {
	if strings.TrimSpace(s) == "" {
		return
	}
	v := StrValue{Param: code, Value: Fold(s), Exact: s}
	for i := len(ix.Str) - 1; i >= max(0, len(ix.Str)-dedupeWindow) && ix.Str[i].Param == code; i-- {
		if ix.Str[i] == v {
			return
		}
	}
	ix.Str = append(ix.Str, v)
}

// narrative indexes _text (search.html#text): the narrative's text content,
// folded, tags removed.
func (x *extractor) narrative(resource map[string]any) {
	text, _ := resource["text"].(map[string]any)
	div, _ := text["div"].(string)
	if div == "" {
		return
	}
	var b strings.Builder
	inTag := false
	for _, r := range div {
		switch {
		case r == '<':
			inTag = true
			b.WriteByte(' ')
		case r == '>':
			inTag = false
		case !inTag:
			b.WriteRune(r)
		}
	}
	s := Fold(html.UnescapeString(b.String()))
	if len(s) > maxTextLen {
		cut := maxTextLen
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut]
	}
	if s == "" {
		return
	}
	x.idx.Str = append(x.idx.Str, StrValue{Param: "_text", Value: s})
	x.idx.Has = append(x.idx.Has, "_text")
}
