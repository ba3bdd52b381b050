package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The raw-JSON rewriter replaces string values inside a resource without
// touching any other byte: member order, whitespace and number literals
// (1.50 stays 1.50) are copied as they are. Only the string tokens a
// callback changes are re-encoded.

// seg is one step of the JSON path to a value: an object key or, when
// key is "", an array index.
type seg struct {
	key   string
	index int
}

// jsonPath renders segs FHIRPath-style: contained[0].subject.reference.
func jsonPath(segs []seg) string {
	var b strings.Builder
	for _, s := range segs {
		if s.key == "" {
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

// lastKey is the object key the value at segs belongs to (for an array
// element, the key of the array).
func lastKey(segs []seg) string {
	for i := len(segs) - 1; i >= 0; i-- {
		if segs[i].key != "" {
			return segs[i].key
		}
	}
	return ""
}

// stringFunc returns the replacement of the string value s at path, and
// whether it changed.
type stringFunc func(path []seg, s string) (string, bool, error)

type rewriter struct {
	data []byte
	pos  int
	out  []byte
	last int // data[last:] is not yet copied to out
	fn   stringFunc
	path []seg
}

// rewriteStrings returns data with every string value (not object keys)
// passed through fn. When nothing changes the input slice is returned.
func rewriteStrings(data []byte, fn stringFunc) ([]byte, error) {
	r := &rewriter{data: data, fn: fn}
	r.ws()
	if err := r.value(); err != nil {
		return nil, err
	}
	r.ws()
	if r.pos != len(data) {
		return nil, fmt.Errorf("unexpected data after the JSON value at offset %d", r.pos)
	}
	if r.out == nil {
		return data, nil
	}
	return append(r.out, data[r.last:]...), nil
}

func (r *rewriter) ws() {
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

func (r *rewriter) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", r.pos, fmt.Sprintf(format, args...))
}

func (r *rewriter) value() error {
	if r.pos >= len(r.data) {
		return r.errorf("unexpected end")
	}
	switch c := r.data[r.pos]; {
	case c == '{':
		return r.object()
	case c == '[':
		return r.array()
	case c == '"':
		start := r.pos
		s, err := r.str()
		if err != nil {
			return err
		}
		ns, changed, err := r.fn(r.path, s)
		if err != nil {
			return err
		}
		if changed {
			r.out = append(r.out, r.data[r.last:start]...)
			r.out = appendJSONString(r.out, ns)
			r.last = r.pos
		}
		return nil
	default:
		start := r.pos
		for r.pos < len(r.data) && strings.IndexByte(",]} \t\r\n", r.data[r.pos]) < 0 {
			r.pos++
		}
		lit := r.data[start:r.pos]
		switch string(lit) {
		case "true", "false", "null":
			return nil
		}
		if !json.Valid(lit) {
			return r.errorf("bad literal %q", lit)
		}
		return nil
	}
}

func (r *rewriter) object() error {
	r.pos++ // {
	r.ws()
	if r.pos < len(r.data) && r.data[r.pos] == '}' {
		r.pos++
		return nil
	}
	for {
		r.ws()
		if r.pos >= len(r.data) || r.data[r.pos] != '"' {
			return r.errorf("expected an object key")
		}
		k, err := r.str()
		if err != nil {
			return err
		}
		r.ws()
		if r.pos >= len(r.data) || r.data[r.pos] != ':' {
			return r.errorf("expected ':'")
		}
		r.pos++
		r.ws()
		r.path = append(r.path, seg{key: k})
		if err := r.value(); err != nil {
			return err
		}
		r.path = r.path[:len(r.path)-1]
		r.ws()
		if r.pos >= len(r.data) {
			return r.errorf("unexpected end in object")
		}
		switch r.data[r.pos] {
		case ',':
			r.pos++
		case '}':
			r.pos++
			return nil
		default:
			return r.errorf("expected ',' or '}'")
		}
	}
}

func (r *rewriter) array() error {
	r.pos++ // [
	r.ws()
	if r.pos < len(r.data) && r.data[r.pos] == ']' {
		r.pos++
		return nil
	}
	for i := 0; ; i++ {
		r.ws()
		r.path = append(r.path, seg{index: i})
		if err := r.value(); err != nil {
			return err
		}
		r.path = r.path[:len(r.path)-1]
		r.ws()
		if r.pos >= len(r.data) {
			return r.errorf("unexpected end in array")
		}
		switch r.data[r.pos] {
		case ',':
			r.pos++
		case ']':
			r.pos++
			return nil
		default:
			return r.errorf("expected ',' or ']'")
		}
	}
}

// str scans a string token at r.pos and returns its value.
func (r *rewriter) str() (string, error) {
	start := r.pos
	r.pos++
	escaped := false
	for r.pos < len(r.data) {
		switch c := r.data[r.pos]; {
		case c == '\\':
			escaped = true
			r.pos += 2
			continue
		case c == '"':
			r.pos++
			tok := r.data[start:r.pos]
			if !escaped {
				if !utf8.Valid(tok) {
					return "", r.errorf("invalid UTF-8 in string")
				}
				return string(tok[1 : len(tok)-1]), nil
			}
			var s string
			if err := json.Unmarshal(tok, &s); err != nil {
				return "", r.errorf("bad string: %v", err)
			}
			return s, nil
		case c < 0x20:
			return "", r.errorf("control character in string")
		}
		r.pos++
	}
	return "", r.errorf("unterminated string")
}

// appendJSONString appends s as a JSON string, escaping only what JSON
// requires (no HTML escaping, so narrative stays readable).
func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimRight(buf.Bytes(), "\n")...)
}

// setTopLevelString sets member key of the top-level object to the string
// v: an existing string value is replaced in place, otherwise the member is
// inserted right after "resourceType" (or first). Other bytes are kept.
func setTopLevelString(data []byte, key, v string) ([]byte, error) {
	found := false
	out, err := rewriteStrings(data, func(path []seg, s string) (string, bool, error) {
		if len(path) == 1 && path[0].key == key {
			found = true
			return v, s != v, nil
		}
		return s, false, nil
	})
	if err != nil || found {
		return out, err
	}
	kv := append(appendJSONString(nil, key), ':')
	kv = append(kv, appendJSONString(nil, v)...)
	// find the end of the top-level "resourceType" member value
	r := &rewriter{data: data, fn: func([]seg, string) (string, bool, error) { return "", false, nil }}
	r.ws()
	if r.pos >= len(data) || data[r.pos] != '{' {
		return nil, fmt.Errorf("the resource is not a JSON object")
	}
	r.pos++
	open := r.pos
	r.ws()
	if r.pos < len(data) && data[r.pos] == '}' {
		return concat(data[:open], kv, data[open:]), nil
	}
	for {
		r.ws()
		if r.pos >= len(data) || data[r.pos] != '"' {
			return nil, r.errorf("expected an object key")
		}
		k, err := r.str()
		if err != nil {
			return nil, err
		}
		r.ws()
		if r.pos >= len(data) || data[r.pos] != ':' {
			return nil, r.errorf("expected ':'")
		}
		r.pos++
		r.ws()
		if err := r.value(); err != nil {
			return nil, err
		}
		if k == "resourceType" {
			return concat(data[:r.pos], append([]byte{','}, kv...), data[r.pos:]), nil
		}
		r.ws()
		if r.pos >= len(data) {
			return nil, r.errorf("unexpected end")
		}
		if data[r.pos] == '}' {
			break
		}
		r.pos++ // ','
	}
	return concat(data[:open], append(kv, ','), data[open:]), nil
}

func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
