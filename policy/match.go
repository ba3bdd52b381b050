package policy

import (
	"sort"
	"strings"
)

// coding is one (system, code) pair found in a resource.
type coding struct{ system, code string }

// tokenSet is a compiled list of token patterns (search.html#token):
// "system|code" (both equal), "|code" (code equal, no system), "system|"
// (any code of the system) and "code" (code equal, any system).
type tokenSet struct {
	exact  map[coding]struct{} // system may be "" for "|code"
	anySys map[string]struct{} // "code"
	sysAny map[string]struct{} // "system|"
}

func newTokenSet() *tokenSet {
	return &tokenSet{exact: map[coding]struct{}{}, anySys: map[string]struct{}{}, sysAny: map[string]struct{}{}}
}

// add adds a pattern already checked by checkToken.
func (t *tokenSet) add(s string) {
	system, code, hasBar := strings.Cut(s, "|")
	switch {
	case !hasBar:
		t.anySys[s] = struct{}{}
	case code == "":
		t.sysAny[system] = struct{}{}
	default:
		t.exact[coding{system, code}] = struct{}{}
	}
}

func (t *tokenSet) canon() []string {
	var out []string
	for c := range t.exact {
		out = append(out, c.system+"|"+c.code)
	}
	for c := range t.anySys {
		out = append(out, c)
	}
	for s := range t.sysAny {
		out = append(out, s+"|")
	}
	sort.Strings(out)
	return out
}

func (t *tokenSet) matchAny(cs []coding) bool {
	for _, c := range cs {
		if _, ok := t.exact[c]; ok {
			return true
		}
		if _, ok := t.anySys[c.code]; ok {
			return true
		}
		if c.system != "" {
			if _, ok := t.sysAny[c.system]; ok {
				return true
			}
		}
	}
	return false
}

// facts are the values of one resource that rules look at, extracted lazily
// (most rules are decided by resourceType alone).
type facts struct {
	typ string
	res map[string]any

	done                      uint8 // bit per extracted group
	categories, codes, labels []coding
	statuses                  []string
	performers, orgs          []string
}

const (
	doneCategory = 1 << iota
	doneCode
	doneSecurity
	doneStatus
	doneRefs
)

// confidentialitySystem is the code system of Composition.confidentiality.
const confidentialitySystem = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"

// documentTypes are the resources whose `type` is a document kind (matched
// by both category and code).
func isDocument(typ string) bool { return typ == "DocumentReference" || typ == "Composition" }

// category: CodeableConcept `category` (Observation, DiagnosticReport,
// DocumentReference, Communication, ServiceRequest, Condition, ...) and, for
// documents, `type`.
func (f *facts) category() []coding {
	if f.done&doneCategory == 0 {
		f.done |= doneCategory
		f.categories = collectCodings(f.res["category"], nil)
		if isDocument(f.typ) {
			f.categories = collectCodings(f.res["type"], f.categories)
		}
	}
	return f.categories
}

// code: `code` (Observation, DiagnosticReport, ServiceRequest, Procedure,
// Condition, ...), documents' `type`, Immunization.vaccineCode and
// Medication*.medicationCodeableConcept.
func (f *facts) code() []coding {
	if f.done&doneCode == 0 {
		f.done |= doneCode
		f.codes = collectCodings(f.res["code"], nil)
		switch {
		case isDocument(f.typ):
			f.codes = collectCodings(f.res["type"], f.codes)
		case f.typ == "Immunization":
			f.codes = collectCodings(f.res["vaccineCode"], f.codes)
		default:
			f.codes = collectCodings(f.res["medicationCodeableConcept"], f.codes)
		}
	}
	return f.codes
}

// security: meta.security, securityLabel (DocumentReference) and
// Composition.confidentiality.
func (f *facts) security() []coding {
	if f.done&doneSecurity == 0 {
		f.done |= doneSecurity
		if meta, ok := f.res["meta"].(map[string]any); ok {
			f.labels = collectCodings(meta["security"], nil)
		}
		f.labels = collectCodings(f.res["securityLabel"], f.labels)
		if c, ok := f.res["confidentiality"].(string); ok && c != "" {
			f.labels = append(f.labels, coding{confidentialitySystem, c})
		}
	}
	return f.labels
}

// status: `status`, and DocumentReference.docStatus.
func (f *facts) status() []string {
	if f.done&doneStatus == 0 {
		f.done |= doneStatus
		for _, k := range []string{"status", "docStatus"} {
			if s, ok := f.res[k].(string); ok && s != "" {
				f.statuses = append(f.statuses, s)
			}
		}
	}
	return f.statuses
}

// performerKeys hold who produced the data: Observation.performer,
// DiagnosticReport.performer/resultsInterpreter, DocumentReference.author/
// authenticator, Composition.author/attester.party, Communication.sender,
// ServiceRequest.performer/requester, Procedure.performer.actor, ...
var performerKeys = []string{"performer", "resultsInterpreter", "author", "authenticator", "attester",
	"sender", "requester", "recorder", "asserter"}

// organizationKeys are extra organisation-valued elements:
// DocumentReference/Composition.custodian, Encounter.serviceProvider,
// managingOrganization (Patient, EpisodeOfCare) and performer.onBehalfOf.
var organizationKeys = []string{"custodian", "serviceProvider", "managingOrganization"}

func (f *facts) refs() {
	if f.done&doneRefs != 0 {
		return
	}
	f.done |= doneRefs
	for _, k := range performerKeys {
		f.performers = collectRefs(f.res[k], f.performers)
	}
	f.orgs = append(f.orgs, f.performers...)
	for _, k := range performerKeys {
		f.orgs = collectOnBehalfOf(f.res[k], f.orgs)
	}
	for _, k := range organizationKeys {
		f.orgs = collectRefs(f.res[k], f.orgs)
	}
}

// matches reports whether every match key of r holds for the resource.
func (r *rule) matches(f *facts) bool {
	if r.types != nil {
		if _, ok := r.types[f.typ]; !ok {
			return false
		}
	}
	if r.status != nil && !anyIn(f.status(), r.status) {
		return false
	}
	if r.category != nil && !r.category.matchAny(f.category()) {
		return false
	}
	if r.code != nil && !r.code.matchAny(f.code()) {
		return false
	}
	if r.valueSet != nil && !r.valueSet.matchAny(f.code()) {
		return false
	}
	if r.security != nil && !r.security.matchAny(f.security()) {
		return false
	}
	if r.performer != nil {
		f.refs()
		if !anyIn(f.performers, r.performer) {
			return false
		}
	}
	if r.organization != nil {
		f.refs()
		if !anyIn(f.orgs, r.organization) {
			return false
		}
	}
	return true
}

func anyIn(xs []string, set map[string]struct{}) bool {
	for _, x := range xs {
		if _, ok := set[x]; ok {
			return true
		}
	}
	return false
}

// collectCodings appends the codings of a CodeableConcept, a Coding, a code
// string, or a list of those.
func collectCodings(v any, out []coding) []coding {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			out = collectCodings(e, out)
		}
	case map[string]any:
		if cs, ok := x["coding"]; ok {
			if list, ok := cs.([]any); ok {
				for _, e := range list {
					if c, ok := e.(map[string]any); ok {
						out = appendCoding(c, out)
					}
				}
			}
			return out
		}
		out = appendCoding(x, out)
	case string:
		if x != "" {
			out = append(out, coding{code: x})
		}
	}
	return out
}

func appendCoding(c map[string]any, out []coding) []coding {
	code, _ := c["code"].(string)
	if code == "" {
		return out
	}
	system, _ := c["system"].(string)
	return append(out, coding{system, code})
}

// collectRefs appends the normalised "Type/id" of a Reference, a list of
// References, or backbone elements holding one in actor (performer) or
// party (attester).
func collectRefs(v any, out []string) []string {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			out = collectRefs(e, out)
		}
	case map[string]any:
		if ref, ok := x["reference"].(string); ok {
			if n := normalizeRef(ref); n != "" {
				out = append(out, n)
			}
			return out
		}
		for _, k := range []string{"actor", "party"} {
			if inner, ok := x[k]; ok {
				out = collectRefs(inner, out)
			}
		}
	}
	return out
}

// collectOnBehalfOf appends performer.onBehalfOf references.
func collectOnBehalfOf(v any, out []string) []string {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			out = collectOnBehalfOf(e, out)
		}
	case map[string]any:
		if inner, ok := x["onBehalfOf"]; ok {
			out = collectRefs(inner, out)
		}
	}
	return out
}

// normalizeRef turns a literal reference (relative, absolute or versioned,
// references.html#literal) into "Type/id"; "" for contained or unusable ones.
func normalizeRef(ref string) string {
	if ref == "" || ref[0] == '#' {
		return ""
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	ref = strings.TrimRight(ref, "/")
	i := strings.LastIndexByte(ref, '/')
	if i <= 0 {
		return ""
	}
	j := strings.LastIndexByte(ref[:i], '/')
	typ := ref[j+1 : i]
	if _, ok := r4ResourceTypes[typ]; !ok {
		return ""
	}
	return ref[j+1:]
}
