package mongo

import (
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

// plainDoc is doc without methods: what the driver's reflection decodes.
type plainDoc doc

// UnmarshalBSON decodes what the driver's reflection decodes, for every
// field combination.
func TestDocUnmarshalBSON(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 123e6, time.UTC)
	var docs [][]byte
	// Current and history documents, every field set or none; unknown
	// fields (the compact layout's ixb, k, srt) are skipped.
	for _, d := range []doc{
		{ID: "Patient/1/2", T: "Patient", I: "1", V: 2, LU: t0, Raw: []byte(`{}`), Idx: mquery.ToBSON(search.Index{
			Tok:  []search.TokValue{{Param: "gender", Code: "male"}},
			Date: []search.DateValue{{Param: "birthdate", Lo: t0, Hi: t0.Add(time.Hour)}},
			Sort: map[string]any{"gender": "male"}, Has: []string{"gender"}, Compartments: []string{"Patient/1"}})},
		{ID: "Basic/x", T: "Basic", I: "x", V: 1, LU: t0},
		{ID: "Observation/o", T: "Observation", I: "o", V: 7, LU: t0, LUN: 456789, Del: true, Raw: []byte(`{"a":1}`),
			Idx: mquery.ToBSON(search.Index{Str: []search.StrValue{{Param: "name", Value: "x"}}, Sort: map[string]any{"date": t0, "s": "x", "n": 1.5}}),
			Rel: mquery.BSONRelease{Patient: t0, Proxy: store.Never, Rule: "r", State: "delay", By: "b", At: t0, Note: "n"},
			Tx:  "tx", Pending: true, DV: 3, C: "c"},
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
	legacy, _ := bson.Marshal(bson.D{{Key: "_id", Value: "A/2"}, {Key: "ixb", Value: []byte{0, 1}}, {Key: "k", Value: "\nk=v\n"},
		{Key: "srt", Value: bson.D{{Key: "s", Value: "x"}}}, {Key: "v", Value: int64(1)}})
	docs = append(docs, legacy)
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
