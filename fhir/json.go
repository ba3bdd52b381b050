package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
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

// Step is one step of a path inside a resource: an element name, or an
// array index (Index >= 0, Key empty).
type Step struct {
	Key   string
	Index int // -1 for a key
}

// Path is a location inside a resource, rendered FHIRPath-like by Render.
type Path []Step

// Key returns p extended by element k (p itself is not modified).
func (p Path) Key(k string) Path { return append(p[:len(p):len(p)], Step{Key: k, Index: -1}) }

// Index returns p extended by array index i (p itself is not modified).
func (p Path) Index(i int) Path { return append(p[:len(p):len(p)], Step{Index: i}) }

// Render writes the path after root: "Observation.component[1].code".
func (p Path) Render(root string) string {
	var b strings.Builder
	b.WriteString(root)
	for _, s := range p {
		if s.Index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.Index))
			b.WriteByte(']')
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.Key)
	}
	return b.String()
}

// SyntaxError is fatal: the input is not JSON (RFC 8259), or it is JSON
// beyond one of the parser's limits: nesting deeper than MaxDepth, a number
// that overflows a 64-bit float, a lone UTF-16 surrogate escape.
type SyntaxError struct {
	Offset int
	Line   int
	Col    int
	Msg    string
	// At is set (non-nil) for the limit errors, which have a meaningful
	// location: the value's path (empty for the top-level value; for a
	// property name, the object holding it). It is nil for syntax errors.
	At Path
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte offset %d (line %d, column %d): %s", e.Offset, e.Line, e.Col, e.Msg)
}

// Outcome is the error as a client sees it: a 400 with a "structure" issue
// located at the depth error's path when there is one.
func (e *SyntaxError) Outcome(root string) *Error {
	fe := Invalid("", "%s", e.Error()).WithCode("structure")
	if e.At != nil {
		if x := e.At.Render(root); x != "" {
			fe.At(x)
		}
	}
	return fe
}

// parser decodes JSON into the values encoding/json produces with UseNumber
// (map[string]any, []any, string, json.Number, bool, nil) and, in the same
// pass, reports duplicate object keys, which encoding/json silently accepts
// but FHIR JSON forbids (json.html: "objects SHALL NOT have duplicate
// properties"). Values the FHIR rules reject but JSON allows (null, "",
// {}, []) are left to the validator, which knows their context.
//
// Unlike encoding/json it refuses, with the value's location, what RFC 8259
// lets a parser refuse or warns about: nesting deeper than MaxDepth, a
// number outside the range of a 64-bit float (section 6: "implementations
// [may] set limits on the range and precision of numbers"), and a string
// escape that is a lone UTF-16 surrogate ("\ud800"; section 8.2: such a
// string is not Unicode and its behavior is unpredictable), which
// encoding/json silently turns into U+FFFD.
//
// When top is set it also records the members of the top-level object:
// their key and value bytes and whether the value holds insignificant
// whitespace, which is what Object keeps.
type parser struct {
	data  []byte
	pos   int
	depth int
	ws    int // bytes of insignificant whitespace skipped so far
	dups  []Path
	stack Path // location of the value being parsed, for messages
	top   *[]member
	// objectFn, when set, makes each object's value from its keys in
	// document order and its members (ParseJSONOrdered).
	objectFn ObjectFunc
	// discard: values are checked but not kept (CheckJSON); objects,
	// arrays and strings decode to nil. sets holds a reused key set per
	// depth for the duplicate check.
	discard bool
	sets    []map[string]struct{}
}

// ObjectFunc makes the value of a decoded JSON object from its keys, in
// document order (a duplicate key keeps its first position), and its
// members by key.
type ObjectFunc func(keys []string, vals map[string]any) any

// ParseJSON decodes data as one JSON value (RFC 8259). A syntax error, or
// one of the limits (nesting deeper than MaxDepth, a number that overflows
// a float64, a lone surrogate escape), stops it with a *SyntaxError;
// duplicate keys do not: their locations are returned and the last value
// wins.
func ParseJSON(data []byte) (any, []Path, error) {
	p := &parser{data: data}
	return p.parse()
}

// ParseJSONOrdered is ParseJSON for callers that need the member order of
// objects (fhir/patch): each object is the value object returns for it;
// everything else, limits and duplicate reporting included, is ParseJSON's.
func ParseJSONOrdered(data []byte, object ObjectFunc) (any, []Path, error) {
	p := &parser{data: data, objectFn: object}
	return p.parse()
}

// maxDuplicateIssues caps the duplicate issues CheckJSON lists.
const maxDuplicateIssues = 20

// CheckJSON checks that data is one JSON value ParseJSON accepts and that
// no object anywhere in it has a duplicate property (json.html), without
// keeping the decoded tree. It is for a body that is then decoded by
// encoding/json (which would keep the last of two duplicates silently), such
// as a batch or transaction Bundle. The error is a 400 *Error whose
// expressions start with root ("Bundle.entry[0].request.url").
func CheckJSON(data []byte, root string) error {
	p := &parser{data: data, discard: true}
	_, dups, err := p.parse()
	if err != nil {
		var se *SyntaxError
		if errors.As(err, &se) {
			return se.Outcome(root)
		}
		return Invalid("", "invalid JSON").Wrap(err)
	}
	if len(dups) == 0 {
		return nil
	}
	fe := &Error{Kind: KindInvalid}
	for i, d := range dups {
		if i == maxDuplicateIssues {
			fe.Issues = append(fe.Issues, Issue{Severity: "information", Code: "informational",
				Diagnostics: fmt.Sprintf("%d more duplicate properties not listed", len(dups)-i)})
			break
		}
		fe.Issues = append(fe.Issues, Issue{Severity: "error", Code: "structure",
			Diagnostics: fmt.Sprintf("duplicate property %q in one JSON object (json.html)", d[len(d)-1].Key),
			Expression:  []string{d.Render(root)}})
	}
	return fe
}

func (p *parser) parse() (any, []Path, error) {
	// RFC 8259 section 8.1: a parser MAY ignore a byte order mark.
	if bytes.HasPrefix(p.data, []byte("\xef\xbb\xbf")) {
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

func (p *parser) errorf(format string, args ...any) *SyntaxError {
	off := min(p.pos, len(p.data))
	line := 1 + bytes.Count(p.data[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(p.data[:off], '\n')
	return &SyntaxError{Offset: off, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
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
	start := p.pos
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			p.ws += p.pos - start
			return
		}
	}
	p.ws += p.pos - start
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
		if p.discard {
			_, err := p.strBytes()
			return nil, err
		}
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
		return p.limitf("objects and arrays nest deeper than %d levels", MaxDepth)
	}
	return nil
}

// limitf is errorf for the limit errors: located at the value being parsed.
func (p *parser) limitf(format string, args ...any) *SyntaxError {
	e := p.errorf(format, args...)
	e.At = append(Path{}, p.stack...)
	return e
}

func (p *parser) object() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.pos++ // {
	var obj map[string]any
	var seen map[string]struct{} // discard mode: the keys, for duplicates
	if p.discard {
		seen = p.keySet()
	} else {
		obj = make(map[string]any)
	}
	var keys []string
	done := func() (any, error) {
		p.pos++
		p.depth--
		switch {
		case p.discard:
			return nil, nil
		case p.objectFn != nil:
			return p.objectFn(keys, obj), nil
		}
		return obj, nil
	}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		return done()
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.errorf("unexpected %s, expected a property name in double quotes", p.describe())
		}
		keyStart := p.pos
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		keyEnd := p.pos
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.errorf("unexpected %s after property name %q, expected ':'", p.describe(), k)
		}
		p.pos++
		p.skipSpace()
		p.stack = append(p.stack, Step{Key: k, Index: -1})
		valStart, ws := p.pos, p.ws
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		dup := false
		if p.discard {
			_, dup = seen[k]
			seen[k] = struct{}{}
		} else {
			_, dup = obj[k]
			obj[k] = v
		}
		if dup {
			p.dups = append(p.dups, append(Path(nil), p.stack...))
		} else if p.objectFn != nil {
			keys = append(keys, k)
		}
		if p.top != nil && p.depth == 1 {
			*p.top = append(*p.top, member{key: k, rawKey: p.data[keyStart:keyEnd], val: p.data[valStart:p.pos], compact: p.ws == ws})
		}
		p.stack = p.stack[:len(p.stack)-1]
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unexpected end of input, expected ',' or '}'")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			return done()
		default:
			return nil, p.errorf("unexpected %s after the value of %q, expected ',' or '}'", p.describe(), k)
		}
	}
}

// keySet returns an empty set for the keys of an object at the current
// depth (discard mode), reusing the one of the previous object there unless
// it grew large (clearing a large map costs its capacity).
func (p *parser) keySet() map[string]struct{} {
	for len(p.sets) <= p.depth {
		p.sets = append(p.sets, nil)
	}
	m := p.sets[p.depth]
	if m == nil || len(m) > 64 {
		m = make(map[string]struct{})
		p.sets[p.depth] = m
	} else {
		clear(m)
	}
	return m
}

func (p *parser) array() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.pos++ // [
	var arr []any
	if !p.discard {
		arr = make([]any, 0, 4)
	}
	done := func() (any, error) {
		p.pos++
		p.depth--
		if p.discard {
			return nil, nil
		}
		return arr, nil
	}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		return done()
	}
	for n := 0; ; n++ {
		p.skipSpace()
		p.stack = append(p.stack, Step{Index: n})
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.stack = p.stack[:len(p.stack)-1]
		if !p.discard {
			arr = append(arr, v)
		}
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("unexpected end of input, expected ',' or ']'")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			return done()
		default:
			return nil, p.errorf("unexpected %s in array, expected ',' or ']'", p.describe())
		}
	}
}

// str decodes a JSON string starting at the opening quote. Strings must be
// valid UTF-8 (RFC 8259 section 8.1; FHIR JSON is always UTF-8).
func (p *parser) str() (string, error) {
	b, err := p.strBytes()
	return string(b), err
}

// strBytes is str without the conversion: a string without escapes is a
// slice of the input.
func (p *parser) strBytes() ([]byte, error) {
	p.pos++ // opening quote
	start := p.pos
	ascii := true
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			s := p.data[start:p.pos]
			if !ascii && !utf8.Valid(s) {
				return nil, p.errorf("string is not valid UTF-8")
			}
			p.pos++
			return s, nil
		case c == '\\':
			return p.strSlow(start)
		case c < 0x20:
			return nil, p.errorf("control character 0x%02x in string must be escaped", c)
		case c >= 0x80:
			ascii = false
		}
		p.pos++
	}
	return nil, p.errorf("unterminated string")
}

// strSlow decodes a string with escapes; pos is at the first backslash.
func (p *parser) strSlow(start int) ([]byte, error) {
	buf := make([]byte, 0, p.pos-start+16)
	buf = append(buf, p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			if !utf8.Valid(buf) {
				return nil, p.errorf("string is not valid UTF-8")
			}
			p.pos++
			return buf, nil
		case c < 0x20:
			return nil, p.errorf("control character 0x%02x in string must be escaped", c)
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		// escape
		if p.pos+1 >= len(p.data) {
			return nil, p.errorf("unterminated string")
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
				return nil, p.errorf("invalid \\u escape in string")
			}
			if utf16.IsSurrogate(r) {
				// A high surrogate followed by \uDC00-\uDFFF is one code point;
				// a lone surrogate is refused (RFC 8259 section 8.2), where
				// encoding/json would make it U+FFFD.
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
				p.pos = save - 6
				return nil, p.limitf("string holds a lone UTF-16 surrogate \\u%04x, which is not a Unicode character (RFC 8259 section 8.2)", r)
			}
			buf = utf8.AppendRune(buf, r)
		default:
			p.pos -= 1
			return nil, p.errorf("invalid escape '\\%c' in string", e)
		}
	}
	return nil, p.errorf("unterminated string")
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
	intDigits := 1
	if p.pos < len(p.data) && p.data[p.pos] == '0' {
		p.pos++
		if p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			return nil, p.errorf("number with a leading zero")
		}
	} else if intDigits = digits(); intDigits == 0 {
		return nil, p.errorf("unexpected %s in number, expected a digit", p.describe())
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return nil, p.errorf("unexpected %s in number, expected a digit after '.'", p.describe())
		}
	}
	exp := false
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		exp = true
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return nil, p.errorf("unexpected %s in number, expected a digit in the exponent", p.describe())
		}
	}
	lit := p.data[start:p.pos]
	// Without an exponent, up to 308 integer digits stay below the largest
	// float64 (1.8e308), so only other literals need the exact check.
	if exp || intDigits > 308 {
		if _, err := strconv.ParseFloat(string(lit), 64); err != nil {
			p.pos = start
			return nil, p.limitf("number %s is out of range: it overflows a 64-bit floating-point number (RFC 8259 section 6)", shorten(lit))
		}
	}
	return json.Number(lit), nil
}

// shorten cuts a long literal for a message.
func shorten(b []byte) string {
	if len(b) > 40 {
		return string(b[:37]) + "..."
	}
	return string(b)
}
