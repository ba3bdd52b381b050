package engine

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/store"
)

// subsettedTag marks a resource returned in part (search.html#summary,
// codesystem-v3-ObservationValue SUBSETTED).
var subsettedTag = json.RawMessage(`{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED","display":"Resource encoded in summary mode"}`)

type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

type entrySearch struct {
	Mode string `json:"mode"`
}

type bundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource"`
	Search   entrySearch     `json:"search"`
}

type bundleMeta struct {
	LastUpdated string `json:"lastUpdated"`
}

type searchset struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id"`
	Meta         bundleMeta    `json:"meta"`
	Type         string        `json:"type"`
	Total        *int64        `json:"total,omitempty"`
	Link         []bundleLink  `json:"link,omitempty"`
	Entry        []bundleEntry `json:"entry,omitempty"`
}

// Bundle renders res as a searchset Bundle (bundle.html#searchset,
// search.html#return): total (unless _total=none or not computed), self
// and next links (next carries the original parameters plus _cursor), one
// entry per match (search.mode match) and included resource (include)
// with _summary / _elements applied, and an OperationOutcome entry
// (search.mode outcome) with the warnings.
func (e *Engine) Bundle(req Request, res *Result) ([]byte, error) {
	summary := req.Params.Get("_summary")
	var elements []string
	for _, v := range req.Params["_elements"] {
		for _, el := range strings.Split(v, ",") {
			if el = strings.TrimSpace(el); el != "" {
				elements = append(elements, el)
			}
		}
	}
	b := searchset{
		ResourceType: "Bundle",
		ID:           newID(),
		Meta:         bundleMeta{LastUpdated: e.now().UTC().Format("2006-01-02T15:04:05.000Z07:00")},
		Type:         "searchset",
	}
	if res.Total >= 0 && req.Params.Get("_total") != "none" {
		t := res.Total
		b.Total = &t
	}
	b.Link = append(b.Link, bundleLink{"self", e.link(req.SelfPath, req.Params, "")})
	if res.Next != "" {
		b.Link = append(b.Link, bundleLink{"next", e.link(req.SelfPath, req.Params, res.Next)})
	}
	if summary != "count" {
		for _, group := range []struct {
			recs []store.Record
			mode string
		}{{res.Matches, "match"}, {res.Included, "include"}} {
			for _, rec := range group.recs {
				raw, err := subset(rec.Raw, rec.Type, summary, elements)
				if err != nil {
					return nil, fmt.Errorf("engine: bundle entry %s: %w", rec.Key(), err)
				}
				b.Entry = append(b.Entry, bundleEntry{FullURL: e.fullURL(rec.Type, rec.ID), Resource: raw, Search: entrySearch{group.mode}})
			}
		}
	}
	if len(res.Warnings) > 0 {
		oo, err := json.Marshal(fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: res.Warnings})
		if err != nil {
			return nil, fmt.Errorf("engine: outcome: %w", err)
		}
		b.Entry = append(b.Entry, bundleEntry{FullURL: "urn:uuid:" + newUUID(), Resource: oo, Search: entrySearch{"outcome"}})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("engine: bundle: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func (e *Engine) fullURL(typ, id string) string {
	return strings.TrimRight(e.Base, "/") + "/" + typ + "/" + id
}

// link is Base/path?params, with _cursor replaced by cursor when set.
func (e *Engine) link(path string, params url.Values, cursor string) string {
	q := url.Values{}
	for k, v := range params {
		if cursor != "" && k == "_cursor" {
			continue
		}
		q[k] = v
	}
	if cursor != "" {
		q.Set("_cursor", cursor)
	}
	u := strings.TrimRight(e.Base, "/") + "/" + strings.TrimLeft(path, "/")
	if enc := q.Encode(); enc != "" {
		u += "?" + enc
	}
	return u
}

func newID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("engine: crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}

func newUUID() string {
	h := newID()
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// member is one member of a JSON object, in document order.
type member struct {
	key string
	val json.RawMessage
}

// members splits a JSON object into its members, keeping their order.
func members(raw []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	var out []member
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := t.(string)
		if !ok {
			return nil, fmt.Errorf("bad object key")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, member{k, v})
	}
	return out, nil
}

func writeObject(ms []member) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// nameMatches reports whether the JSON member key is element name (a
// choice "value[x]" or a user's "value" matches "valueQuantity"; a
// primitive's "_name" goes with "name").
func nameMatches(key, name string) bool {
	key = strings.TrimPrefix(key, "_")
	name = strings.TrimSuffix(name, "[x]")
	if key == name {
		return true
	}
	rest, ok := strings.CutPrefix(key, name)
	return ok && rest != "" && unicode.IsUpper(rune(rest[0]))
}

// subset applies _summary and _elements (search.html#summary,
// search.html#elements) to one resource, keeping member order and marking
// a subset with the SUBSETTED tag.
func subset(raw []byte, typ, summary string, elements []string) ([]byte, error) {
	if (summary == "" || summary == "false") && len(elements) == 0 {
		return raw, nil
	}
	ms, err := members(raw)
	if err != nil {
		return nil, err
	}
	info := summaryOf(typ)
	var keep func(key string) bool
	anyOf := func(names []string) func(string) bool {
		return func(key string) bool {
			for _, n := range names {
				if nameMatches(key, n) {
					return true
				}
			}
			return false
		}
	}
	base := []string{"resourceType", "id", "meta"}
	switch {
	case summary == "true":
		keep = anyOf(slices.Concat(base, info.summary, info.mandatory))
	case summary == "text":
		keep = anyOf(slices.Concat(base, []string{"text"}, info.mandatory))
	case summary == "data":
		keep = func(key string) bool { return key != "text" }
	default:
		keep = anyOf(slices.Concat(base, info.mandatory, elements))
	}
	var out []member
	hasMeta := false
	for _, m := range ms {
		if !keep(m.key) {
			continue
		}
		if m.key == "meta" {
			hasMeta = true
			v, err := tagSubsetted(m.val)
			if err != nil {
				return nil, err
			}
			m.val = v
		}
		out = append(out, m)
	}
	if !hasMeta {
		meta, _ := tagSubsetted([]byte(`{}`))
		// After resourceType and id.
		at := 0
		for at < len(out) && (out[at].key == "resourceType" || out[at].key == "id") {
			at++
		}
		out = slices.Insert(out, at, member{"meta", meta})
	}
	return writeObject(out)
}

// tagSubsetted adds the SUBSETTED tag to a meta object.
func tagSubsetted(meta []byte) (json.RawMessage, error) {
	ms, err := members(meta)
	if err != nil {
		return nil, err
	}
	done := false
	for i, m := range ms {
		if m.key != "tag" {
			continue
		}
		var tags []json.RawMessage
		if err := json.Unmarshal(m.val, &tags); err != nil {
			return nil, err
		}
		for _, t := range tags {
			if bytes.Contains(t, []byte(`"SUBSETTED"`)) {
				return meta, nil
			}
		}
		tags = append(tags, subsettedTag)
		v, err := json.Marshal(tags)
		if err != nil {
			return nil, err
		}
		ms[i].val = v
		done = true
	}
	if !done {
		ms = append(ms, member{"tag", json.RawMessage("[" + string(subsettedTag) + "]")})
	}
	return writeObject(ms)
}
