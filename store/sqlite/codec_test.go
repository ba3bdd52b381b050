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
		Str:  []search.StrValue{{Param: "name", Value: "zoe", Exact: "Zoë"}, {Param: "x"}},
		Tok:  []search.TokValue{{Param: "code", System: "s", Code: "c", Text: "t t", TypeSystem: "ts", TypeCode: "tc"}},
		Ref:  []search.RefValue{{Param: "subject", Ref: "Patient/1", Type: "Patient", ID: "1", Version: "v", IDSystem: "is", IDValue: "ic"}},
		Date: []search.DateValue{{Param: "date", Lo: time.Time{}, Hi: at}, {Param: "d", Lo: time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC), Hi: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)}},
		Num:  []search.NumValue{{Param: "n", Value: -0.5, Lo: math.Inf(-1), Hi: math.MaxFloat64}},
		Qty:  []search.QtyValue{{Param: "q", Value: 1e-300, Lo: 0, Hi: 1, System: "u", Code: "mg", Unit: "milligram"}},
		URI:  []search.URIValue{{Param: "url", Value: "http://x/" + strings.Repeat("é", 200)}},
		Comp: []search.CompValue{{Param: "c", Parts: search.Index{Tok: []search.TokValue{{Param: "0", Code: "a"}}, Comp: []search.CompValue{{Param: "0"}}}}},
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
