package engine

import (
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/fhir/model"
)

// summaryInfo lists the top-level elements of a resource type that
// _summary keeps (search.html#summary): isSummary, and min >= 1 (kept by
// _summary=data's "mandatory" rule); "[x]" marks choices.
type summaryInfo struct{ summary, mandatory []string }

var summaryCache sync.Map // resource type -> summaryInfo

// summaryOf reads summaryInfo for typ from the R4 model (fhir/model),
// once per type.
func summaryOf(typ string) summaryInfo {
	if v, ok := summaryCache.Load(typ); ok {
		return v.(summaryInfo)
	}
	var info summaryInfo
	for _, e := range model.R4().Elements(typ) {
		rest, ok := strings.CutPrefix(e.Path, typ+".")
		if !ok || strings.Contains(rest, ".") {
			continue
		}
		if e.Summary {
			info.summary = append(info.summary, rest)
		}
		if e.Min >= 1 {
			info.mandatory = append(info.mandatory, rest)
		}
	}
	summaryCache.Store(typ, info)
	return info
}
