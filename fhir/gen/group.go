package gen

import (
	"encoding/json"
	"strings"
)

// Chunks splits rs into groups of at most n resources, keeping the order.
func Chunks(rs []Resource, n int) [][]Resource {
	var out [][]Resource
	for len(rs) > n {
		out = append(out, rs[:n])
		rs = rs[n:]
	}
	if len(rs) > 0 {
		out = append(out, rs)
	}
	return out
}

// ByPatient groups rs so that each group holds the resources of `per`
// patients (a Patient starts a new patient's run in Generate's output);
// resources before the first Patient (the practitioner pool) go first.
func ByPatient(rs []Resource, per int) [][]Resource {
	var out [][]Resource
	var cur []Resource
	seen := 0
	for _, r := range rs {
		if r.Type == "Patient" {
			if seen == per {
				out = append(out, cur)
				cur, seen = nil, 0
			}
			seen++
		}
		cur = append(cur, r)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// Upsert builds a Bundle of type kind ("batch" or "transaction") with one
// PUT Type/id entry per resource, keeping the generated ids, so references
// between groups posted separately stay valid.
func Upsert(rs []Resource, kind string) []byte {
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  map[string]any  `json:"request"`
	}
	b := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: kind}
	for _, r := range rs {
		body := r.JSON
		if !strings.Contains(string(body), `"id":`) {
			body = []byte(strings.Replace(string(body), `{"resourceType":"`+r.Type+`"`, `{"resourceType":"`+r.Type+`","id":"`+r.ID+`"`, 1))
		}
		b.Entry = append(b.Entry, entry{FullURL: UUID(r.Type, r.ID), Resource: body,
			Request: map[string]any{"method": "PUT", "url": r.Type + "/" + r.ID}})
	}
	out, _ := json.Marshal(b)
	return out
}
