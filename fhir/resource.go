package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

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
	key     string
	rawKey  []byte // the key as sent, quotes included; nil when set by Set
	val     json.RawMessage
	compact bool // val holds no insignificant whitespace
}

// Object is a JSON object whose members keep their order and their exact
// value bytes (number literals such as 1.50, primitive extensions such as
// _birthDate, unknown content). It is how fhirgate edits server-owned
// elements without round-tripping a resource through typed structs.
//
// It also holds the decoded view of the same object (Tree), made in the same
// parse and kept in step by Set and Delete, so a write is parsed once.
type Object struct {
	members []member
	tree    map[string]any
	dups    []Path
}

// ParseObject parses raw as a JSON object (RFC 8259; a nesting deeper than
// MaxDepth is refused). It keeps every value's bytes. A duplicate property
// of the object itself is an error; duplicates deeper down are kept for
// the validator (Duplicates), which reports them with the other findings.
func ParseObject(raw []byte) (*Object, error) {
	o := &Object{}
	p := &parser{data: raw, top: &o.members}
	v, dups, err := p.parse()
	if err != nil {
		var se *SyntaxError
		if errors.As(err, &se) {
			return nil, se.Outcome("")
		}
		return nil, Invalid("", "invalid JSON").Wrap(err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, Invalid("", "the body must be a JSON object, not %s", JSONKind(v)).WithCode("structure")
	}
	for _, d := range dups {
		if len(d) == 1 {
			return nil, Invalid(d[0].Key, "duplicate property %q", d[0].Key).WithCode("structure")
		}
	}
	o.tree, o.dups = m, dups
	return o, nil
}

// Tree is the decoded view of the object: the values encoding/json produces
// with UseNumber. It is shared, not copied: callers must not modify it.
func (o *Object) Tree() map[string]any { return o.tree }

// Duplicates lists the locations of duplicate properties below the top level.
func (o *Object) Duplicates() []Path { return o.dups }

// JSONKind names the JSON type of a decoded value for messages.
func JSONKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "a number"
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
	s, _ := o.tree[key].(string)
	return s
}

// Set replaces key's value, or inserts it after the member named after
// (at the start when after is absent), or appends it. val must be valid
// JSON; it is an error otherwise, and the object is unchanged.
func (o *Object) Set(key string, val json.RawMessage, after ...string) error {
	v, _, err := ParseJSON(val)
	if err != nil {
		return fmt.Errorf("fhir: set %s: %w", key, err)
	}
	o.set(key, val, v, after...)
	return nil
}

// set is Set with the value already decoded (v is the decoded val).
func (o *Object) set(key string, val json.RawMessage, v any, after ...string) {
	if o.tree == nil {
		o.tree = map[string]any{}
	}
	o.tree[key] = v
	for i := range o.members {
		if o.members[i].key == key {
			o.members[i] = member{key: key, val: val}
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
	o.members[pos] = member{key: key, val: val}
}

// Delete removes key.
func (o *Object) Delete(key string) {
	delete(o.tree, key)
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
	n := 2
	for _, m := range o.members {
		n += len(m.key) + len(m.val) + 4
	}
	b := bytes.NewBuffer(make([]byte, 0, n))
	b.WriteByte('{')
	for i, m := range o.members {
		if i > 0 {
			b.WriteByte(',')
		}
		if m.rawKey != nil {
			b.Write(m.rawKey)
		} else {
			k, _ := json.Marshal(m.key)
			b.Write(k)
		}
		b.WriteByte(':')
		if m.compact {
			b.Write(m.val)
		} else if err := json.Compact(b, m.val); err != nil {
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
	o.set("id", idJSON, id, "resourceType")
	meta := &Object{tree: map[string]any{}}
	if raw, ok := o.Get("meta"); ok {
		m, err := ParseObject(raw)
		if err != nil {
			return Invalid("meta", "meta must be an object")
		}
		meta = m
	}
	vs := strconv.FormatInt(vid, 10)
	meta.Delete("versionId")
	meta.Delete("lastUpdated")
	meta.set("versionId", []byte(`"`+vs+`"`), vs)
	lu := Instant(lastUpdated)
	meta.set("lastUpdated", []byte(`"`+lu+`"`), lu, "versionId")
	o.set("meta", meta.Bytes(), meta.tree, "id")
	return nil
}

// Decode decodes raw into generic values with json.Number for numbers, the
// read-only view extraction and rules work on.
func Decode(raw []byte) (map[string]any, error) {
	v, _, err := ParseJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("fhir: decode resource: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("fhir: decode resource: %s, not an object", JSONKind(v))
	}
	return m, nil
}

// SetTag removes every meta.tag of system and, with code non-empty, adds
// the coding system|code (meta.html). The server uses it for tags only it
// may set.
func SetTag(o *Object, system, code, display string) error {
	meta := &Object{tree: map[string]any{}}
	raw, ok := o.Get("meta")
	if code == "" && (!ok || !bytes.Contains(raw, []byte(`"tag"`))) {
		return nil
	}
	if ok {
		m, err := ParseObject(raw)
		if err != nil {
			return Invalid("meta", "meta must be an object")
		}
		meta = m
	}
	var tags []any
	if raw, ok := meta.Get("tag"); ok {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // number literals in extensions stay as written
		if err := dec.Decode(&tags); err != nil {
			return Invalid("meta.tag", "meta.tag must be an array")
		}
	}
	kept := tags[:0]
	for _, t := range tags {
		if m, ok := t.(map[string]any); ok && m["system"] == system {
			continue
		}
		kept = append(kept, t)
	}
	if code == "" && len(kept) == len(tags) {
		return nil // nothing to remove or add: the JSON stays as sent
	}
	if code != "" {
		c := map[string]any{"system": system, "code": code}
		if display != "" {
			c["display"] = display
		}
		kept = append(kept, c)
	}
	if len(kept) == 0 {
		meta.Delete("tag")
	} else {
		b, err := json.Marshal(kept)
		if err != nil {
			return fmt.Errorf("fhir: meta.tag: %w", err)
		}
		v, _, err := ParseJSON(b)
		if err != nil {
			return fmt.Errorf("fhir: meta.tag: %w", err)
		}
		meta.set("tag", b, v)
	}
	if len(meta.tree) == 0 {
		o.Delete("meta")
		return nil
	}
	o.set("meta", meta.Bytes(), meta.tree, "id")
	return nil
}
