package fhir

import (
	"regexp"
	"testing"
	"time"
)

// datatypes.html#id: [A-Za-z0-9\-\.]{1,64}; ours are 32 lowercase hex.
var idShape = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestNewIDSortsByCreation(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := range 2000 {
		id := NewID()
		if !idShape.MatchString(id) {
			t.Fatalf("%q is not 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("%q twice", id)
		}
		seen[id] = true
		if i%500 == 0 {
			// A millisecond apart: later ids sort after earlier ones.
			time.Sleep(2 * time.Millisecond)
			id = NewID()
			if prev != "" && id <= prev {
				t.Errorf("%q created after %q sorts before it", id, prev)
			}
			prev = id
		}
	}
	// The random part varies within one millisecond.
	a, b := NewID(), NewID()
	if a[12:] == b[12:] {
		t.Errorf("two ids with one random part: %s %s", a, b)
	}
	ms := time.UnixMilli(int64(parseHex(t, a[:12])))
	if d := time.Since(ms); d < 0 || d > time.Minute {
		t.Errorf("id %s shows %v, not its creation time", a, ms)
	}
}

func parseHex(t *testing.T, s string) uint64 {
	var v uint64
	for _, c := range s {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= uint64(c - '0')
		case c >= 'a' && c <= 'f':
			v |= uint64(c-'a') + 10
		default:
			t.Fatalf("%q not hex", s)
		}
	}
	return v
}
