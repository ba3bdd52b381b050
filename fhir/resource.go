package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"time"
)

// idPattern is the R4 id datatype (datatypes.html#id).
var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-\.]{1,64}$`)

// ValidID reports whether s is a valid logical id.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// member is one top-level member of a JSON object, value bytes as sent.
type member struct {
	key string
	val json.RawMessage
}

// Object is a JSON object whose members keep their order and their exact
// value bytes (number literals such as 1.50, primitive extensions such as
// _birthDate, unknown content). It is how fhirgate edits server-owned
// elements without round-tripping a resource through typed structs.
type Object struct{ members []member }

// ParseObject parses raw as a JSON object. It keeps every value's bytes.
func ParseObject(raw []byte) (*Object, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(raw, dec, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, Invalid("", "the body must be a JSON object")
	}
	o := &Object{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(raw, dec, err)
		}
		key := tok.(string)
		if seen[key] {
			return nil, Invalid(key, "duplicate property %q", key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, syntaxError(raw, dec, err)
		}
		o.members = append(o.members, member{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, syntaxError(raw, dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, Invalid("", "unexpected data after the JSON object")
	}
	return o, nil
}

func syntaxError(raw []byte, dec *json.Decoder, err error) *Error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return Invalid("", "invalid JSON at byte %d: %s", se.Offset, se.Error()).Wrap(err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return Invalid("", "invalid JSON: unexpected end of input")
	}
	return Invalid("", "invalid JSON at byte %d: %s", dec.InputOffset(), err.Error()).Wrap(err)
}

// Get returns the raw value of key.
func (o *Object) Get(key string) (json.RawMessage, bool) {
	for _, m := range o.members {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

// String returns the string value of key ("" if absent or not a string).
func (o *Object) String(key string) string {
	v, ok := o.Get(key)
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}

// Set replaces key's value, or inserts it after the member named after
// (at the start when after is absent), or appends it.
func (o *Object) Set(key string, val json.RawMessage, after ...string) {
	for i := range o.members {
		if o.members[i].key == key {
			o.members[i].val = val
			return
		}
	}
	pos := len(o.members)
	for _, a := range after {
		for i := range o.members {
			if o.members[i].key == a {
				pos = i + 1
				goto insert
			}
		}
	}
insert:
	o.members = append(o.members, member{})
	copy(o.members[pos+1:], o.members[pos:])
	o.members[pos] = member{key, val}
}

// Delete removes key.
func (o *Object) Delete(key string) {
	for i := range o.members {
		if o.members[i].key == key {
			o.members = append(o.members[:i], o.members[i+1:]...)
			return
		}
	}
}

// Bytes renders the object compactly; value bytes are kept token for token
// (insignificant whitespace is dropped).
func (o *Object) Bytes() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o.members {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		if err := json.Compact(&b, m.val); err != nil {
			b.Write(m.val)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// Instant formats t as a FHIR instant (UTC, millisecond precision).
func Instant(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// ETag is the weak ETag of a version (http.html#versioning).
func ETag(vid int64) string { return `W/"` + strconv.FormatInt(vid, 10) + `"` }

// ParseETag reads W/"n" or "n" (If-Match) into a version.
func ParseETag(s string) (int64, bool) {
	s = string(bytes.TrimSpace([]byte(s)))
	if len(s) > 2 && (s[:2] == "W/" || s[:2] == "w/") {
		s = s[2:]
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

// StampMeta sets the server-owned id, meta.versionId and meta.lastUpdated of
// a resource (resource.html#Meta), keeping every other byte of meta and the
// resource. meta.source, tags, security and profiles the client sent stay.
func StampMeta(o *Object, id string, vid int64, lastUpdated time.Time) error {
	idJSON, _ := json.Marshal(id)
	o.Set("id", idJSON, "resourceType")
	meta := &Object{}
	if raw, ok := o.Get("meta"); ok {
		m, err := ParseObject(raw)
		if err != nil {
			return Invalid("meta", "meta must be an object")
		}
		meta = m
	}
	v, _ := json.Marshal(strconv.FormatInt(vid, 10))
	meta.Delete("versionId")
	meta.Delete("lastUpdated")
	meta.Set("versionId", v)
	lu, _ := json.Marshal(Instant(lastUpdated))
	meta.Set("lastUpdated", lu, "versionId")
	o.Set("meta", meta.Bytes(), "id")
	return nil
}

// Decode decodes raw into generic values with json.Number for numbers, the
// read-only view extraction and rules work on.
func Decode(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("fhir: decode resource: %w", err)
	}
	return m, nil
}
