package sqlite

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// TestIndexCodecRoundTrip: every field of search.Index survives ver.idx,
// composites nested, sort scalars with their types, odd values included.
func TestIndexCodecRoundTrip(t *testing.T) {
	at := time.Date(2024, 3, 1, 10, 0, 0, 123456789, time.UTC)
	ix := search.Index{
		Str:  []search.StrValue{{P: "name", V: "zoe", X: "Zoë"}, {P: "x"}},
		Tok:  []search.TokValue{{P: "code", S: "s", C: "c", T: "t t", TS: "ts", TC: "tc"}},
		Ref:  []search.RefValue{{P: "subject", R: "Patient/1", T: "Patient", I: "1", V: "v", IS: "is", IC: "ic"}},
		Date: []search.DateValue{{P: "date", Lo: time.Time{}, Hi: at}, {P: "d", Lo: time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC), Hi: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)}},
		Num:  []search.NumValue{{P: "n", V: -0.5, Lo: math.Inf(-1), Hi: math.MaxFloat64}},
		Qty:  []search.QtyValue{{P: "q", V: 1e-300, Lo: 0, Hi: 1, S: "u", C: "mg", U: "milligram"}},
		URI:  []search.URIValue{{P: "url", V: "http://x/" + strings.Repeat("é", 200)}},
		Comp: []search.CompValue{{P: "c", X: search.Index{Tok: []search.TokValue{{P: "0", C: "a"}}, Comp: []search.CompValue{{P: "0"}}}}},
		Has:  []string{"name", ""}, Compartments: []string{"Patient/1"}, Security: []string{"s|c"},
		Sort: map[string]any{"s": "x", "n": 1.5, "t": at, "j": []any{"a", 1.0}, "nil": nil},
	}
	b, err := encodeIndex(&ix)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ix) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, ix)
	}
	if b, _ := encodeIndex(&search.Index{}); b != nil {
		t.Errorf("empty index encoded as %q", b)
	}
	for i := 1; i < len(b); i++ {
		if _, err := decodeIndex(b[:i]); err == nil {
			t.Fatalf("truncated at %d of %d: no error", i, len(b))
		}
	}
}

// TestFoldKey: equal keys exactly when strings.EqualFold.
func TestFoldKey(t *testing.T) {
	words := []string{"final", "FINAL", "Final", "k", "K", "\u212a", "ſ", "s", "S", "İ", "i", "ı", "I", "ß", "ẞ", "Σ", "σ", "ς", "\xff", "\xfe", "\ufffd", "", "é", "É", "e\u0301"}
	for _, a := range words {
		for _, b := range words {
			if (foldKey(a) == foldKey(b)) != strings.EqualFold(a, b) {
				t.Errorf("foldKey(%q)==foldKey(%q) is %v, EqualFold %v", a, b, foldKey(a) == foldKey(b), strings.EqualFold(a, b))
			}
		}
	}
}
