package mongo

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

// plainCdoc is cdoc without methods: what the driver's reflection encodes.
type plainCdoc cdoc

// appendBSON writes what the driver's reflective encoder writes for every
// field combination (srt compared as a set: the driver orders a map at
// random, appendBSON by key).
func TestCompactDocBSON(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC)
	pre := time.Date(1901, 5, 6, 7, 8, 9, 999999999, time.FixedZone("x", -5*3600))
	cases := map[string]cdoc{
		"minimal":   {ID: "Patient/1", T: "Patient", I: "1", V: 1, LU: t0},
		"tombstone": {ID: "Patient/1", T: "Patient", I: "1", V: 3, LU: t0, Del: true},
		"full": {ID: "Observation/o", T: "Observation", I: "o", V: 7, LU: t0, LUN: 456789, Raw: []byte(`{"resourceType":"Observation"}`),
			CompactFields: mquery.CompactFields{IXB: []byte{0, 1, 2, 255}, K: "\ntok.c=final\n",
				Srt: map[string]any{"status": "final", "value-quantity": 1.5, "date": pre, "code": "x", "n": int64(4)}},
			Rel: mquery.BSONRelease{Patient: t0, Proxy: store.Never, Rule: "path", State: "delay", By: "Practitioner/1", At: pre, Note: "ok"},
			Tx:  "tx1", Pending: true, DV: 2, C: "c1"},
		"release partly set": {ID: "A/b", T: "A", I: "b", V: 2, LU: pre, Rel: mquery.BSONRelease{State: "immediate"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := c.appendBSON(nil)
			if err != nil {
				t.Fatal(err)
			}
			want, err := bson.Marshal(plainCdoc(c))
			if err != nil {
				t.Fatal(err)
			}
			if err := bson.Raw(got).Validate(); err != nil {
				t.Fatalf("invalid BSON: %v", err)
			}
			if g, w := elems(t, got), elems(t, want); !slices.Equal(g, w) {
				t.Fatalf("appendBSON:\n%s\nreflection:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
		})
	}
}

// elems lists a document's elements as "key=value", srt's sorted.
func elems(t *testing.T, doc []byte) []string {
	t.Helper()
	es, err := bson.Raw(doc).Elements()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		v := e.Value()
		if e.Key() == "srt" {
			sub := elems(t, v.Document())
			slices.Sort(sub)
			out = append(out, "srt={"+strings.Join(sub, ",")+"}")
			continue
		}
		var b bytes.Buffer
		b.WriteString(e.Key() + "=" + v.Type.String() + ":")
		b.Write(v.Value)
		out = append(out, b.String())
	}
	return out
}

// plainDoc is doc without methods: what the driver's reflection decodes.
type plainDoc doc

// UnmarshalBSON decodes what the driver's reflection decodes, for
// documents of both layouts and every field combination.
func TestDocUnmarshalBSON(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 123e6, time.UTC)
	var docs [][]byte
	for _, c := range []cdoc{
		{ID: "Patient/1", T: "Patient", I: "1", V: 1, LU: t0},
		{ID: "Observation/o", T: "Observation", I: "o", V: 7, LU: t0, LUN: 456789, Del: true, Raw: []byte(`{"a":1}`),
			CompactFields: mquery.CompactFields{IXB: []byte{0, 1, 2}, K: "\nk=v\n", Srt: map[string]any{"date": t0, "s": "x", "n": 1.5}},
			Rel:           mquery.BSONRelease{Patient: t0, Proxy: store.Never, Rule: "r", State: "delay", By: "b", At: t0, Note: "n"},
			Tx:            "tx", Pending: true, DV: 3, C: "c"},
	} {
		b, err := c.appendBSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	// The MongoDB layout (nested idx), and history documents.
	for _, d := range []doc{
		{ID: "Patient/1/2", T: "Patient", I: "1", V: 2, LU: t0, Raw: []byte(`{}`), Idx: mquery.ToBSON(search.Index{
			Tok:  []search.TokValue{{Param: "gender", Code: "male"}},
			Date: []search.DateValue{{Param: "birthdate", Lo: t0, Hi: t0.Add(time.Hour)}},
			Sort: map[string]any{"gender": "male"}, Has: []string{"gender"}, Compartments: []string{"Patient/1"}})},
		{ID: "Basic/x", T: "Basic", I: "x", V: 1, LU: t0},
	} {
		b, err := bson.Marshal(plainDoc(d))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	// Other integer widths and nulls, as another writer might leave them.
	odd, _ := bson.Marshal(bson.D{{Key: "_id", Value: "A/1"}, {Key: "v", Value: int32(4)}, {Key: "dv", Value: 2.0},
		{Key: "tx", Value: nil}, {Key: "lu", Value: bson.DateTime(-1234)}, {Key: "raw", Value: bson.Binary{Data: []byte{}}}})
	docs = append(docs, odd)
	for i, b := range docs {
		var got doc
		if err := bson.Unmarshal(b, &got); err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		var want plainDoc
		if err := bson.Unmarshal(b, &want); err != nil {
			t.Fatalf("doc %d (reflection): %v", i, err)
		}
		if !reflect.DeepEqual(got, doc(want)) {
			t.Errorf("doc %d:\nUnmarshalBSON %+v\nreflection    %+v", i, got, want)
		}
	}
	// A field of the wrong type is an error, as with reflection.
	bad, _ := bson.Marshal(bson.D{{Key: "_id", Value: 5}})
	var d doc
	if err := bson.Unmarshal(bad, &d); err == nil {
		t.Error("a numeric _id decoded")
	}
}
