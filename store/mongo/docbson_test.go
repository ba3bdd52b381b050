package mongo

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

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
			Rel: store.Release{Patient: t0, Proxy: store.Never, Rule: "path", State: "delay", By: "Practitioner/1", At: pre, Note: "ok"},
			Tx:  "tx1", Pending: true, DV: 2, C: "c1"},
		"release partly set": {ID: "A/b", T: "A", I: "b", V: 2, LU: pre, Rel: store.Release{State: "immediate"}},
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
