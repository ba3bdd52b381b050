package sqlite

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// msOf is t at the millisecond precision of stored instants: milliseconds
// since the epoch, rounded down (search.Matcher's ms: Truncate since the
// zero time is floor, as the zero time lies on the millisecond grid).
func msOf(t time.Time) int64 { return t.UnixMilli() }

// splitTime is t as (ms, nanoseconds within the ms).
func splitTime(t time.Time) (int64, int64) {
	ms := t.UnixMilli()
	ns := t.Sub(time.UnixMilli(ms)).Nanoseconds()
	return ms, ns
}

func joinTime(ms, ns int64) time.Time { return time.UnixMilli(ms).Add(time.Duration(ns)).UTC() }

// nullMs is a release instant as stored: NULL for the zero time (visible at once).
func nullMs(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return msOf(t)
}

// The ver.idx encoding of a search.Index: a version byte, then every
// list as a uvarint count and its entries; strings are uvarint length and
// bytes, floats 8 bytes, instants varint seconds and uvarint nanoseconds
// (decoded in UTC); composites nest the same encoding; Sort entries carry
// a kind byte (s string, n float64, t instant, j JSON of anything else).
// Decoding slices every string out of one conversion of the blob.
const indexCodec = 1

func emptyIndex(ix *search.Index) bool {
	return len(ix.Str) == 0 && len(ix.Tok) == 0 && len(ix.Ref) == 0 && len(ix.Date) == 0 && len(ix.Num) == 0 &&
		len(ix.Qty) == 0 && len(ix.URI) == 0 && len(ix.Comp) == 0 && len(ix.Has) == 0 &&
		len(ix.Compartments) == 0 && len(ix.Security) == 0 && len(ix.Sort) == 0
}

type ienc struct{ b []byte }

func (e *ienc) u(n uint64)    { e.b = binary.AppendUvarint(e.b, n) }
func (e *ienc) s(v string)    { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *ienc) f(v float64)   { e.b = binary.BigEndian.AppendUint64(e.b, math.Float64bits(v)) }
func (e *ienc) t(v time.Time) { e.b = binary.AppendVarint(e.b, v.Unix()); e.u(uint64(v.Nanosecond())) }
func (e *ienc) strs(vs []string) {
	e.u(uint64(len(vs)))
	for _, v := range vs {
		e.s(v)
	}
}

// encodeIndex is the ver.idx value of ix (nil when empty).
func encodeIndex(ix *search.Index) ([]byte, error) {
	if emptyIndex(ix) {
		return nil, nil
	}
	e := &ienc{b: make([]byte, 0, 512)}
	e.b = append(e.b, indexCodec)
	if err := e.index(ix); err != nil {
		return nil, err
	}
	return e.b, nil
}

func (e *ienc) index(ix *search.Index) error {
	e.u(uint64(len(ix.Str)))
	for _, v := range ix.Str {
		e.s(v.P)
		e.s(v.V)
		e.s(v.X)
	}
	e.u(uint64(len(ix.Tok)))
	for _, v := range ix.Tok {
		e.s(v.P)
		e.s(v.S)
		e.s(v.C)
		e.s(v.T)
		e.s(v.TS)
		e.s(v.TC)
	}
	e.u(uint64(len(ix.Ref)))
	for _, v := range ix.Ref {
		e.s(v.P)
		e.s(v.R)
		e.s(v.T)
		e.s(v.I)
		e.s(v.V)
		e.s(v.IS)
		e.s(v.IC)
	}
	e.u(uint64(len(ix.Date)))
	for _, v := range ix.Date {
		e.s(v.P)
		e.t(v.Lo)
		e.t(v.Hi)
	}
	e.u(uint64(len(ix.Num)))
	for _, v := range ix.Num {
		e.s(v.P)
		e.f(v.V)
		e.f(v.Lo)
		e.f(v.Hi)
	}
	e.u(uint64(len(ix.Qty)))
	for _, v := range ix.Qty {
		e.s(v.P)
		e.f(v.V)
		e.f(v.Lo)
		e.f(v.Hi)
		e.s(v.S)
		e.s(v.C)
		e.s(v.U)
	}
	e.u(uint64(len(ix.URI)))
	for _, v := range ix.URI {
		e.s(v.P)
		e.s(v.V)
	}
	e.u(uint64(len(ix.Comp)))
	for i := range ix.Comp {
		e.s(ix.Comp[i].P)
		if err := e.index(&ix.Comp[i].X); err != nil {
			return err
		}
	}
	e.strs(ix.Has)
	e.strs(ix.Compartments)
	e.strs(ix.Security)
	keys := make([]string, 0, len(ix.Sort))
	for k := range ix.Sort {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	e.u(uint64(len(keys)))
	for _, k := range keys {
		e.s(k)
		switch v := ix.Sort[k].(type) {
		case string:
			e.b = append(e.b, 's')
			e.s(v)
		case float64:
			e.b = append(e.b, 'n')
			e.f(v)
		case time.Time:
			e.b = append(e.b, 't')
			e.t(v)
		default:
			j, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("sort value %s: %w", k, err)
			}
			e.b = append(e.b, 'j')
			e.s(string(j))
		}
	}
	return nil
}

var errIndexCodec = errors.New("sqlite: malformed index encoding")

type idec struct {
	s   string // the whole blob
	i   int
	err error
}

func (d *idec) u() uint64 {
	var x uint64
	var shift uint
	for d.err == nil {
		if d.i >= len(d.s) || shift > 63 {
			d.err = errIndexCodec
			return 0
		}
		c := d.s[d.i]
		d.i++
		if c < 0x80 {
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0
}

// count reads a list length, bounded by the bytes left (each entry takes one at least).
func (d *idec) count() int {
	n := d.u()
	if n > uint64(len(d.s)-d.i) {
		d.err = errIndexCodec
		return 0
	}
	return int(n)
}

func (d *idec) str() string {
	n := d.u()
	if d.err != nil || n > uint64(len(d.s)-d.i) {
		d.err = errIndexCodec
		return ""
	}
	v := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return v
}

func (d *idec) f() float64 {
	if d.err != nil || len(d.s)-d.i < 8 {
		d.err = errIndexCodec
		return 0
	}
	var v uint64
	for _, c := range []byte(d.s[d.i : d.i+8]) {
		v = v<<8 | uint64(c)
	}
	d.i += 8
	return math.Float64frombits(v)
}

func (d *idec) t() time.Time {
	ux := d.u()
	sec := int64(ux >> 1) // zig-zag, as binary.AppendVarint writes
	if ux&1 != 0 {
		sec = ^sec
	}
	ns := d.u()
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(ns)).UTC()
}

func (d *idec) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = d.str()
	}
	return out
}

func (d *idec) byte1() byte {
	if d.err != nil || d.i >= len(d.s) {
		d.err = errIndexCodec
		return 0
	}
	c := d.s[d.i]
	d.i++
	return c
}

func decodeIndex(b []byte) (search.Index, error) {
	if len(b) == 0 {
		return search.Index{}, nil
	}
	if b[0] != indexCodec {
		return search.Index{}, errIndexCodec
	}
	d := &idec{s: string(b), i: 1}
	var ix search.Index
	d.index(&ix)
	if d.err == nil && d.i != len(d.s) {
		d.err = errIndexCodec
	}
	return ix, d.err
}

func (d *idec) index(ix *search.Index) {
	if n := d.count(); n > 0 {
		ix.Str = make([]search.StrValue, n)
		for i := range ix.Str {
			ix.Str[i] = search.StrValue{P: d.str(), V: d.str(), X: d.str()}
		}
	}
	if n := d.count(); n > 0 {
		ix.Tok = make([]search.TokValue, n)
		for i := range ix.Tok {
			ix.Tok[i] = search.TokValue{P: d.str(), S: d.str(), C: d.str(), T: d.str(), TS: d.str(), TC: d.str()}
		}
	}
	if n := d.count(); n > 0 {
		ix.Ref = make([]search.RefValue, n)
		for i := range ix.Ref {
			ix.Ref[i] = search.RefValue{P: d.str(), R: d.str(), T: d.str(), I: d.str(), V: d.str(), IS: d.str(), IC: d.str()}
		}
	}
	if n := d.count(); n > 0 {
		ix.Date = make([]search.DateValue, n)
		for i := range ix.Date {
			ix.Date[i] = search.DateValue{P: d.str(), Lo: d.t(), Hi: d.t()}
		}
	}
	if n := d.count(); n > 0 {
		ix.Num = make([]search.NumValue, n)
		for i := range ix.Num {
			ix.Num[i] = search.NumValue{P: d.str(), V: d.f(), Lo: d.f(), Hi: d.f()}
		}
	}
	if n := d.count(); n > 0 {
		ix.Qty = make([]search.QtyValue, n)
		for i := range ix.Qty {
			ix.Qty[i] = search.QtyValue{P: d.str(), V: d.f(), Lo: d.f(), Hi: d.f(), S: d.str(), C: d.str(), U: d.str()}
		}
	}
	if n := d.count(); n > 0 {
		ix.URI = make([]search.URIValue, n)
		for i := range ix.URI {
			ix.URI[i] = search.URIValue{P: d.str(), V: d.str()}
		}
	}
	if n := d.count(); n > 0 {
		ix.Comp = make([]search.CompValue, n)
		for i := range ix.Comp {
			ix.Comp[i].P = d.str()
			d.index(&ix.Comp[i].X)
		}
	}
	ix.Has = d.strs()
	ix.Compartments = d.strs()
	ix.Security = d.strs()
	if n := d.count(); n > 0 {
		ix.Sort = make(map[string]any, n)
		for range n {
			k := d.str()
			switch d.byte1() {
			case 's':
				ix.Sort[k] = d.str()
			case 'n':
				ix.Sort[k] = d.f()
			case 't':
				ix.Sort[k] = d.t()
			case 'j':
				var v any
				if err := json.Unmarshal([]byte(d.str()), &v); err != nil && d.err == nil {
					d.err = errIndexCodec
				}
				ix.Sort[k] = v
			default:
				d.err = errIndexCodec
			}
			if d.err != nil {
				return
			}
		}
	}
}

func encodeRelease(r *store.Release) ([]byte, error) {
	if *r == (store.Release{}) {
		return nil, nil
	}
	return json.Marshal(r)
}

func decodeRelease(b []byte) (store.Release, error) {
	var r store.Release
	if len(b) == 0 {
		return r, nil
	}
	err := json.Unmarshal(b, &r)
	return r, err
}

// hasColumn is res.has: the parameters with a value, each between unit
// separators, so ":missing" is a substring test of the resource's own row.
func hasColumn(ix *search.Index) string {
	if len(ix.Has) == 0 {
		return ""
	}
	return compSep + strings.Join(ix.Has, compSep) + compSep
}

// sortColumn is res.srt: Index.Sort as a JSON object (stored as JSONB),
// nil when empty. Strings are JSON strings, numbers JSON numbers, instants
// their fixed-width UTC text (so they order as time does, among the
// strings), anything else its text. SQLite orders a missing value (NULL)
// before numbers and numbers before text, as MongoDB does.
func sortColumn(ix *search.Index) any {
	if len(ix.Sort) == 0 {
		return nil
	}
	keys := make([]string, 0, len(ix.Sort))
	for k := range ix.Sort {
		if sortPathOK(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, k) // sortPathOK keys need no JSON escaping
		b = append(b, ':')
		switch v := ix.Sort[k].(type) {
		case float64:
			b = appendJSONFloat(b, v)
		case float32:
			b = appendJSONFloat(b, float64(v))
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case bool:
			if v {
				b = append(b, '1')
			} else {
				b = append(b, '0')
			}
		case nil:
			b = append(b, "null"...)
		case time.Time:
			b = appendJSONString(b, v.UTC().Format("2006-01-02T15:04:05.000000000Z"))
		case string:
			b = appendJSONString(b, v)
		default:
			b = appendJSONString(b, fmt.Sprint(v))
		}
	}
	return string(append(b, '}'))
}

func appendJSONFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "null"...)
	case math.IsInf(f, 1):
		return append(b, "9e999"...) // JSON5, read as +Inf
	case math.IsInf(f, -1):
		return append(b, "-9e999"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

func appendJSONString(b []byte, s string) []byte {
	j, _ := json.Marshal(s)
	return append(b, j...)
}

// sortPathOK: a parameter code that can be named in a JSON path literal.
func sortPathOK(p string) bool {
	if p == "" || len(p) > 200 {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// succ is the least string greater than every string with prefix p in
// byte order, and false when there is none (p empty or all 0xff): "p has
// prefix x" is exactly x <= p < succ(x).
func succ(p string) (string, bool) {
	b := []byte(p)
	for len(b) > 0 && b[len(b)-1] == 0xff {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "", false
	}
	b[len(b)-1]++
	return string(b), true
}

// foldKey maps s to a key such that foldKey(a) == foldKey(b) exactly when
// strings.EqualFold(a, b): every rune becomes the least rune of its
// Unicode simple case-folding orbit (invalid bytes become U+FFFD, as
// EqualFold decodes them).
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		// ASCII orbits: a-z with A-Z, and 'k' with the Kelvin sign, 's'
		// with the long s (non-ASCII runes, least rune is the ASCII
		// upper case letter).
		b := []byte(s)
		lower := false
		for i, c := range b {
			if 'a' <= c && c <= 'z' {
				b[i] = c - 'a' + 'A'
				lower = true
			}
		}
		if !lower {
			return s
		}
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for _, r := range s {
		sb.WriteRune(orbitMin(r))
	}
	return sb.String()
}

func orbitMin(r rune) rune {
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < m {
			m = f
		}
	}
	return m
}
