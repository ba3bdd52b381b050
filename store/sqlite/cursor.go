package sqlite

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/fhirgate/fhirgate/store"
)

// Cursors (search.html#paging) are base64url(version | HMAC-SHA256[:16] |
// JSON), signed with the database's key (meta "cursorKey"). The JSON
// carries what the query is bound to (kind, types, order; history: the
// instance or type) and the sort values of the last record returned, so
// the next page is the records strictly after it (keyset paging: stable
// while others write). Anything else is store.ErrBadCursor.

const cursorVersion = 1

type cursorBody struct {
	Bind string `json:"b"`
	Vals []cval `json:"v"`
}

// cval is one sort value with its SQLite storage class: "n" NULL, "i"
// integer, "f" real, "s" text, "b" blob.
type cval struct {
	K string  `json:"k"`
	I int64   `json:"i,omitempty"`
	F float64 `json:"f,omitempty"`
	S string  `json:"s,omitempty"`
	B []byte  `json:"b,omitempty"`
}

func toCval(v any) cval {
	switch x := v.(type) {
	case nil:
		return cval{K: "n"}
	case int64:
		return cval{K: "i", I: x}
	case float64:
		return cval{K: "f", F: x}
	case string:
		return cval{K: "s", S: x}
	case []byte:
		return cval{K: "b", B: x}
	case bool:
		if x {
			return cval{K: "i", I: 1}
		}
		return cval{K: "i"}
	}
	return cval{K: "s", S: fmt.Sprint(v)}
}

func (c cval) value() any {
	switch c.K {
	case "i":
		return c.I
	case "f":
		return c.F
	case "s":
		return c.S
	case "b":
		if c.B == nil {
			return []byte{}
		}
		return c.B
	}
	return nil
}

func (s *Store) sign(payload []byte) []byte {
	m := hmac.New(sha256.New, s.cursor)
	m.Write([]byte{cursorVersion})
	m.Write(payload)
	return m.Sum(nil)[:16]
}

func (s *Store) encodeCursor(bind string, vals []any) string {
	body := cursorBody{Bind: bind}
	for _, v := range vals {
		body.Vals = append(body.Vals, toCval(v))
	}
	payload, _ := json.Marshal(body)
	out := append([]byte{cursorVersion}, s.sign(payload)...)
	out = append(out, payload...)
	return base64.RawURLEncoding.EncodeToString(out)
}

// decodeCursor checks a cursor's signature and binding and returns its
// values (n of them).
func (s *Store) decodeCursor(c, bind string, n int) ([]any, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(raw) < 1+16 || raw[0] != cursorVersion {
		return nil, fmt.Errorf("sqlite: cursor: %w", store.ErrBadCursor)
	}
	mac, payload := raw[1:17], raw[17:]
	if !hmac.Equal(mac, s.sign(payload)) {
		return nil, fmt.Errorf("sqlite: cursor signature: %w", store.ErrBadCursor)
	}
	var body cursorBody
	if err := json.Unmarshal(payload, &body); err != nil || body.Bind != bind || len(body.Vals) != n {
		return nil, fmt.Errorf("sqlite: cursor of another query: %w", store.ErrBadCursor)
	}
	out := make([]any, n)
	for i, v := range body.Vals {
		out[i] = v.value()
	}
	return out, nil
}
