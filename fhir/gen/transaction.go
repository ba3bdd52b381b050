package gen

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"fmt"
)

// UUID is the deterministic urn:uuid (RFC 4122 version 5 layout over a
// SHA-1 of "Type/id") Transaction uses as fullUrl for a resource.
func UUID(typ, id string) string {
	h := sha1.Sum([]byte("fhirgate/gen:" + typ + "/" + id))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// Transaction builds a transaction Bundle (http.html#transaction) creating
// rs with POST entries. Each entry's fullUrl is UUID(Type, id), the
// resource's own id is dropped (the server assigns one), and every
// Reference.reference "Type/id" to a resource of rs is rewritten to that
// urn:uuid so the server resolves them (bundle.html#references).
func Transaction(rs []Resource) []byte {
	urns := make(map[string]string, len(rs))
	for _, r := range rs {
		urns[r.Ref()] = UUID(r.Type, r.ID)
	}
	entries := make([]any, 0, len(rs))
	for _, r := range rs {
		var res any
		dec := json.NewDecoder(bytes.NewReader(r.JSON))
		dec.UseNumber()
		if err := dec.Decode(&res); err != nil {
			res = json.RawMessage(r.JSON) // not ours to fix; sent as is
		} else if m, ok := res.(map[string]any); ok {
			delete(m, "id")
			rewrite(m, urns)
		}
		entries = append(entries, map[string]any{
			"fullUrl":  urns[r.Ref()],
			"resource": res,
			"request":  map[string]any{"method": "POST", "url": r.Type},
		})
	}
	b, err := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	if err != nil {
		panic(fmt.Errorf("gen: transaction: %w", err)) // only decoded JSON values inside
	}
	return b
}

// rewrite replaces references to resources of the bundle by their urns.
func rewrite(v any, urns map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "reference" {
				if u, ok := urns[s]; ok {
					x[k] = u
				}
				continue
			}
			rewrite(e, urns)
		}
	case []any:
		for _, e := range x {
			rewrite(e, urns)
		}
	}
}
