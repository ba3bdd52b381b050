package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of JSON objects and arrays accepted. Real
// resources stay far below it (a Questionnaire item tree nests about a dozen
// levels); the limit keeps hostile input from exhausting the stack.
const MaxDepth = 64

// seg is one step of a path inside a resource: an element name or an array index.
type seg struct {
	key string
	idx int // -1 for a key
}

// path is a location inside a resource, rendered FHIRPath-like by render.
type path []seg

func (p path) key(k string) path { return append(p[:len(p):len(p)], seg{key: k, idx: -1}) }
func (p path) index(i int) path  { return append(p[:len(p):len(p)], seg{idx: i}) }

// render writes the path after root: "Observation.component[1].code".
func (p path) render(root string) string {
	var b strings.Builder
	b.WriteString(root)
	for _, s := range p {
		if s.idx >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.idx))
			b.WriteByte(']')
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

// syntaxError is fatal: the input is not JSON (RFC 8259) or nests too deep.
type syntaxError struct {
	offset int
	line   int
	col    int
	msg    string
	at     path // set for the depth error, which has a meaningful location
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte offset %d (line %d, column %d): %s", e.offset, e.line, e.col, e.msg)
}

// parser decodes JSON into the values encoding/json produces with UseNumber
// (map[string]any, []any, string, json.Number, bool, nil) and, in the same
// pass, reports duplicate object keys, which encoding/json silently accepts
// but FHIR JSON forbids (json.html: "objects SHALL NOT have duplicate
// properties"). Values the FHIR rules reject but JSON allows (null, "",
// {}, []) are left to checkStructure, which knows their context.
type parser struct {
	data  []byte
	pos   int
	depth int
	dups  []problem
	stack path // location of the value being parsed, for messages
}

// problem is one finding before it becomes a fhir.Issue.
type problem struct {
	at   path
	code string // OperationOutcome issue code (codesystem-issue-type)
	msg  string
	// secondary problems (schema findings) are dropped when the structure
	// check reported the same location.
	secondary bool
}

// parse decodes data. A syntax error (or a nesting deeper than MaxDepth)
// stops it; duplicate keys are collected and parsing goes on.
func parse(data []byte) (any, []problem, error) {
	p := &parser{data: data}
	// RFC 8259 section 8.1: a parser MAY ignore a byte order mark.
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		p.pos = 3
	}
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return nil, nil, err
	}
	p.skipSpace()
	if p.pos < len(p.data) {
		return nil, nil, p.errorf("unexpected %s after the top-level value", p.describe())
	}
	return v, p.dups, nil
}

func (p *parser) errorf(format string, args ...any) *syntaxError {
	off := min(p.pos, len(p.data))
	line := 1 + bytes.Count(p.data[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(p.data[:off], '\n')
	return &syntaxError{offset: off, line: line, col: col, msg: fmt.Sprintf(format, args...)}
}

// describe names the byte at pos for an error message.
func (p *parser) describe() string {
	if p.pos >= len(p.data) {
		return "end of input"
	}
	c := p.data[p.pos]
	if c < 0x20 || c >= 0x7f {
		return fmt.Sprintf("byte 0x%02x", c)
	}
	return fmt.Sprintf("character %q", rune(c))
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value() (any, error) {
	if p.pos >= len(p.data) {
		return nil, p.errorf("unexpected end of input, expected a value")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	}
	return nil, p.errorf("unexpected %s, expected a value", p.describe())
}

func (p *parser) literal(lit string) error {
	if !bytes.HasPrefix(p.data[p.pos:], []byte(lit)) {
		return p.errorf("invalid literal, expected %q", lit)
	}
	p.pos += len(lit)
	return nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxDepth {
		e := p.errorf("objects and arrays nest deeper than %d levels", MaxDepth)
		e.at = append(path(nil), p.stack...)
		return e
	}
	return nil
}

func (p *parser) object() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.pos++ // {
	obj := make(map[string]any)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		return obj, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.errorf("unexpected %s, expected a property name in double quotes", p.describe())
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.errorf("unexpected %s after property name %q, expected ':'", p.describe(), k)
		}
		p.pos++
		p.skipSpace()
		p.stack = append(p.stack, seg{key: k, idx: -1})
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		if _, dup := obj[k]; dup {
			p.dups = append(p.dups, problem{at: append(path(nil), p.stack...), code: "structure", msg: fmt.Sprintf("duplicate property %q in one JSON object", k)})
		}
		p.stack = p.stack[:len(p.stack)-1]
		obj[k] = v
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unexpected end of input, expected ',' or '}'")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			p.depth--
			return obj, nil
		default:
			return nil, p.errorf("unexpected %s after the value of %q, expected ',' or '}'", p.describe(), k)
		}
	}
}

func (p *parser) array() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.pos++ // [
	arr := make([]any, 0, 4)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.depth--
		return arr, nil
	}
	for {
		p.skipSpace()
		p.stack = append(p.stack, seg{idx: len(arr)})
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.stack = p.stack[:len(p.stack)-1]
		arr = append(arr, v)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unexpected end of input, expected ',' or ']'")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			p.depth--
			return arr, nil
		default:
			return nil, p.errorf("unexpected %s in array, expected ',' or ']'", p.describe())
		}
	}
}

// str decodes a JSON string starting at the opening quote. Strings must be
// valid UTF-8 (RFC 8259 section 8.1; FHIR JSON is always UTF-8).
func (p *parser) str() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	ascii := true
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			s := p.data[start:p.pos]
			if !ascii && !utf8.Valid(s) {
				return "", p.errorf("string is not valid UTF-8")
			}
			p.pos++
			return string(s), nil
		case c == '\\':
			return p.strSlow(start)
		case c < 0x20:
			return "", p.errorf("control character 0x%02x in string must be escaped", c)
		case c >= 0x80:
			ascii = false
		}
		p.pos++
	}
	return "", p.errorf("unterminated string")
}

// strSlow decodes a string with escapes; pos is at the first backslash.
func (p *parser) strSlow(start int) (string, error) {
	buf := make([]byte, 0, p.pos-start+16)
	buf = append(buf, p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			if !utf8.Valid(buf) {
				return "", p.errorf("string is not valid UTF-8")
			}
			p.pos++
			return string(buf), nil
		case c < 0x20:
			return "", p.errorf("control character 0x%02x in string must be escaped", c)
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		// escape
		if p.pos+1 >= len(p.data) {
			return "", p.errorf("unterminated string")
		}
		e := p.data[p.pos+1]
		p.pos += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf("invalid \\u escape in string")
			}
			if utf16.IsSurrogate(r) {
				// A high surrogate followed by \uDC00-\uDFFF is one code point;
				// a lone surrogate becomes U+FFFD as in encoding/json.
				save := p.pos
				if p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
					p.pos += 2
					if r2, ok := p.hex4(); ok {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							buf = utf8.AppendRune(buf, d)
							continue
						}
					}
				}
				p.pos = save
				r = utf8.RuneError
			}
			buf = utf8.AppendRune(buf, r)
		default:
			p.pos -= 1
			return "", p.errorf("invalid escape '\\%c' in string", e)
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *parser) hex4() (rune, bool) {
	if p.pos+4 > len(p.data) {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// number scans a JSON number (RFC 8259 section 6) and keeps its text, so a
// decimal's precision survives (FHIR decimals are exact: datatypes.html#decimal).
func (p *parser) number() (any, error) {
	start := p.pos
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.data[p.pos] == '-' {
		p.pos++
	}
	if p.pos < len(p.data) && p.data[p.pos] == '0' {
		p.pos++
		if p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			return nil, p.errorf("number with a leading zero")
		}
	} else if digits() == 0 {
		return nil, p.errorf("unexpected %s in number, expected a digit", p.describe())
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return nil, p.errorf("unexpected %s in number, expected a digit after '.'", p.describe())
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return nil, p.errorf("unexpected %s in number, expected a digit in the exponent", p.describe())
		}
	}
	return json.Number(p.data[start:p.pos]), nil
}
