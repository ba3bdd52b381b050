package mquery

import (
	"math"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
)

func fullIndex() search.Index {
	at := time.Date(2024, 3, 1, 10, 0, 0, 123456789, time.UTC)
	return search.Index{
		Str:  []search.StrValue{{Param: "name", Value: "smith", Exact: "Smith"}, {Param: "family", Value: "o'neil\nx"}},
		Tok:  []search.TokValue{{Param: "code", System: "http://loinc.org", Code: "8867-4", Text: "heart rate", TypeSystem: "ts", TypeCode: "tc"}},
		Ref:  []search.RefValue{{Param: "subject", Ref: "Patient/1", Type: "Patient", ID: "1", Version: "2", IDSystem: "sys", IDValue: "code"}},
		Date: []search.DateValue{{Param: "date", Lo: at, Hi: at.Add(time.Second)}, {Param: "birthdate", Lo: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), Hi: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}},
		Num:  []search.NumValue{{Param: "probability", Value: 0.5, Lo: 0.45, Hi: math.Inf(1)}},
		Qty:  []search.QtyValue{{Param: "value-quantity", Value: -1.5, Lo: math.Inf(-1), Hi: -1.45, System: "http://unitsofmeasure.org", Code: "mg", Unit: "mg"}},
		URI:  []search.URIValue{{Param: "url", Value: "http://example.org/fhir/ValueSet/x"}},
		Comp: []search.CompValue{{Param: "code-value-quantity", Parts: search.Index{
			Tok: []search.TokValue{{Param: "code", Code: "8867-4"}},
			Qty: []search.QtyValue{{Param: "value-quantity", Value: 70}},
		}}},
		Has:          []string{"code", "date"},
		Compartments: []string{"Patient/1", "Practitioner/2"},
		Security:     []string{"http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"},
		Sort:         map[string]any{"date": at, "code": "8867-4", "value-quantity": 70.5},
	}
}

// The search values of the compact layout survive their binary exactly,
// for every value kind, extreme instants and infinities; the BSON of
// earlier versions still decodes; bad input is an error, not a panic.
func TestIndexCodec(t *testing.T) {
	for name, x := range map[string]search.Index{"full": fullIndex(), "empty": {}, "sort only": {Sort: map[string]any{"a": "b"}}} {
		b, err := EncodeIndex(&x)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeIndex(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, x) {
			t.Errorf("%s: round trip\n got %#v\nwant %#v", name, got, x)
		}
		for cut := 0; cut < len(b); cut++ {
			if _, err := DecodeIndex(b[:cut]); err == nil && cut >= len(codecMagic) && cut < len(b) {
				if y, _ := DecodeIndex(b[:cut]); reflect.DeepEqual(y, x) && name != "empty" {
					t.Errorf("%s: truncated at %d decodes whole", name, cut)
				}
			}
		}
	}
	for _, r := range fixtures() {
		b, err := EncodeIndex(&r.Index)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeIndex(b)
		if err != nil || !reflect.DeepEqual(got, r.Index) {
			t.Errorf("%s: round trip %v\n got %#v\nwant %#v", r.Key(), err, got, r.Index)
		}
	}
	// ixb written as BSON (the first compact layout) still decodes.
	x := fullIndex()
	old, err := bson.Marshal(ToBSON(x))
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeIndex(old)
	if err != nil || len(got.Tok) != 1 || got.Tok[0].Code != "8867-4" || len(got.Comp) != 1 {
		t.Errorf("BSON ixb: %v %#v", err, got)
	}
	// A sort value of another type falls back to BSON.
	odd := search.Index{Sort: map[string]any{"x": int32(3)}}
	b, err := EncodeIndex(&odd)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:4]) == "\x00\x00\x00\x00" {
		t.Errorf("an unknown sort type was encoded in the binary format")
	}
	if _, err := DecodeIndex([]byte{0, 0, 0, 0, 9}); err == nil {
		t.Error("an unknown format version decoded")
	}
}

func BenchmarkIndexCodec(b *testing.B) {
	x := fullIndex()
	enc, _ := EncodeIndex(&x)
	raw, _ := bson.Marshal(&x)
	b.Run("encode/binary", func(b *testing.B) {
		for b.Loop() {
			_, _ = EncodeIndex(&x)
		}
	})
	b.Run("encode/bson", func(b *testing.B) {
		for b.Loop() {
			_, _ = bson.Marshal(&x)
		}
	})
	b.Run("decode/binary", func(b *testing.B) {
		for b.Loop() {
			_, _ = DecodeIndex(enc)
		}
	})
	b.Run("decode/bson", func(b *testing.B) {
		for b.Loop() {
			var y search.Index
			_ = bson.Unmarshal(raw, &y)
		}
	})
}
