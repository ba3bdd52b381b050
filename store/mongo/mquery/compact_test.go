package mquery

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

type compactTestDoc struct {
	ID            string    `bson:"_id"`
	T             string    `bson:"t"`
	I             string    `bson:"i"`
	V             int64     `bson:"v"`
	LU            time.Time `bson:"lu"`
	Del           bool      `bson:"del"`
	CompactFields `bson:",inline"`
	Rel           BSONRelease `bson:"rel"`
}

// TestCompactLayout runs every case of TestFerretDB on documents in the
// compact layout with CompileCompact: the filter selects a superset, Match
// (on the Index decoded from ixb) leaves exactly the expected keys, and an
// exact filter is exact on the server.
func TestCompactLayout(t *testing.T) {
	ctx := context.Background()
	c := testDB.Collection("compact")
	for _, r := range fixtures() {
		cf, err := Compact(&r.Index)
		if err != nil {
			t.Fatal(err)
		}
		d := compactTestDoc{ID: r.Key(), T: r.Type, I: r.ID, V: r.VersionID, LU: r.LastUpdated, CompactFields: cf, Rel: BSONRelease(r.Release)}
		if _, err := c.InsertOne(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			f, exact, err := CompileCompact(tc.e, false)
			if err != nil {
				t.Fatal(err)
			}
			m, err := NewMatcher(tc.e)
			if err != nil {
				t.Fatal(err)
			}
			cur, err := c.Find(ctx, f)
			if err != nil {
				t.Fatalf("find %v: %v", f, err)
			}
			var docs []compactTestDoc
			if err := cur.All(ctx, &docs); err != nil {
				t.Fatal(err)
			}
			var all, kept []store.Record
			for _, d := range docs {
				x, err := DecodeIndex(d.IXB)
				if err != nil {
					t.Fatal(err)
				}
				r := store.Record{Type: d.T, ID: d.I, VersionID: d.V, LastUpdated: d.LU, Index: x, Release: store.Release(d.Rel)}
				all = append(all, r)
				if m.Match(r) {
					kept = append(kept, r)
				}
			}
			coarse, got := keysOf(all), keysOf(kept)
			want := tc.want
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(got, want) {
				t.Errorf("matched %v, want %v (filter %v)", got, want, f)
			}
			for _, k := range want {
				if !slices.Contains(coarse, k) {
					t.Errorf("compact filter lost %s (got %v, filter %v)", k, coarse, f)
				}
			}
			if exact && !slices.Equal(coarse, want) {
				t.Errorf("exact filter returned %v, want %v", coarse, want)
			}
		})
	}
}

// Keys name kind, field and value; composites nest under cmp.x.
func TestCompactKeys(t *testing.T) {
	x := search.Index{
		Tok:          []search.TokValue{{Param: "code", System: "http://loinc.org", Code: "8867-4", Text: "heart rate"}},
		Ref:          []search.RefValue{{Param: "subject", Ref: "Patient/1", Type: "Patient", ID: "1"}},
		Date:         []search.DateValue{{Param: "date"}},
		Comp:         []search.CompValue{{Param: "code-value-quantity", Parts: search.Index{Tok: []search.TokValue{{Param: "code", Code: "8867-4"}}}}},
		Compartments: []string{"Patient/1"},
	}
	cf, err := Compact(&x)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tok.p=code", "tok.s=http://loinc.org", "tok.c=8867-4", "ref.r=Patient/1", "ref.i=1", "dt.p=date",
		"cmp.p=code-value-quantity", "cmp.x.tok.c=8867-4"} {
		if !slices.Contains(cf.Keys(), k) {
			t.Errorf("key %q missing from %v", k, cf.Keys())
		}
	}
	for _, k := range cf.Keys() {
		if k == "tok.t=heart rate" {
			t.Errorf("free text keyed: %v", cf.Keys())
		}
	}
	if !slices.IsSorted(cf.Keys()) || !slices.Contains(cf.Keys(), "cpt=Patient/1") || !strings.HasPrefix(cf.K, "\n") || !strings.HasSuffix(cf.K, "\n") {
		t.Errorf("keys %q", cf.K)
	}
	// A newline inside a value cannot split its key.
	y := search.Index{Tok: []search.TokValue{{Param: "identifier", Code: "a\nb"}}}
	cy, _ := Compact(&y)
	if !slices.Contains(cy.Keys(), "tok.c=a b") {
		t.Errorf("keys %q", cy.K)
	}
}

// The filters the portal's common searches compile to name their keys, so
// FerretDB returns only candidates (not every document of the type).
func TestCompactFiltersUseKeys(t *testing.T) {
	sys, code := "http://loinc.org", "8867-4"
	for _, tc := range []struct {
		e    search.Expr
		keys []string
	}{
		{search.TokenCond{Param: "code", System: &sys, Code: &code}, []string{"tok.p=code", "tok.s=http://loinc.org", "tok.c=8867-4"}},
		{search.RefCond{Param: "patient", Targets: []string{"Patient/1"}}, []string{"ref.p=patient", "ref.r=Patient/1"}},
	} {
		f, exact, err := CompileCompact(tc.e, false)
		if err != nil {
			t.Fatal(err)
		}
		s := bsonString(f)
		for _, k := range tc.keys {
			if !strings.Contains(strings.Join(keysIn(f), " "), regexp.QuoteMeta(k)) {
				t.Errorf("%T: filter %s lacks key %q", tc.e, s, k)
			}
		}
		if exact {
			t.Errorf("%T: a key filter is a superset, not exact", tc.e)
		}
	}
}

func bsonString(d bson.D) string {
	b, _ := bson.MarshalExtJSON(d, false, false)
	return string(b)
}

// keysIn collects the key strings of a compact filter.
func keysIn(v any) []string {
	var out []string
	switch x := v.(type) {
	case bson.D:
		for _, e := range x {
			out = append(out, keysIn(e.Value)...)
		}
	case bson.A:
		for _, e := range x {
			out = append(out, keysIn(e)...)
		}
	case string:
		out = append(out, x)
	}
	return out
}

// Every key Compact writes is of a keyed path (what the query side looks
// up), for every element field of every value kind, composites included.
func TestCompactKeysAreKeyed(t *testing.T) {
	all := search.Index{
		Str:  []search.StrValue{{Param: "p", Value: "v", Exact: "x"}},
		Tok:  []search.TokValue{{Param: "p", System: "s", Code: "c", TypeSystem: "ts", TypeCode: "tc"}},
		Ref:  []search.RefValue{{Param: "p", Ref: "r", Type: "t", ID: "i", Version: "v", IDSystem: "is", IDValue: "ic"}},
		URI:  []search.URIValue{{Param: "p", Value: "v"}},
		Date: []search.DateValue{{Param: "p"}},
		Num:  []search.NumValue{{Param: "p"}},
		Qty:  []search.QtyValue{{Param: "p", System: "s", Code: "c", Unit: "u"}},
	}
	x := all
	x.Comp = []search.CompValue{{Param: "c", Parts: all}}
	cf, err := Compact(&x)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range cf.Keys() {
		path, _, _ := strings.Cut(k, "=")
		if path == "cpt" || path == "sec" || path == "has" {
			continue
		}
		n++
		if !isKeyed(path) {
			t.Errorf("key %q is of an unkeyed path", k)
		}
	}
	if n != 2*(3+5+7+2+1+1+4)+1 {
		t.Errorf("%d keys: %v", n, cf.Keys())
	}
}
