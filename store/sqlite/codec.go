package sqlite

import (
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

// The ver.idx encoding of a search.Index: a version byte, then
// search.AppendIndex's format (the one binary form of an Index, shared
// with store/mongo). NULL for an empty Index.
const indexCodec = 2

func emptyIndex(ix *search.Index) bool {
	return len(ix.Str) == 0 && len(ix.Tok) == 0 && len(ix.Ref) == 0 && len(ix.Date) == 0 && len(ix.Num) == 0 &&
		len(ix.Qty) == 0 && len(ix.URI) == 0 && len(ix.Comp) == 0 && len(ix.Has) == 0 &&
		len(ix.Compartments) == 0 && len(ix.Security) == 0 && len(ix.Sort) == 0
}

// encodeIndex is the ver.idx value of ix (nil when empty).
func encodeIndex(ix *search.Index) ([]byte, error) {
	if emptyIndex(ix) {
		return nil, nil
	}
	return search.AppendIndex(append(make([]byte, 0, 512), indexCodec), ix)
}

var errIndexCodec = errors.New("sqlite: malformed index encoding")

// decodeIndex decodes a ver.idx value (nil: the empty Index).
func decodeIndex(b []byte) (search.Index, error) {
	if len(b) == 0 {
		return search.Index{}, nil
	}
	if b[0] != indexCodec {
		return search.Index{}, errIndexCodec
	}
	return search.DecodeIndex(b[1:])
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
