package mongo

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// Each type has its own collections; a search of several types (or of
// all: system search, http.html#search) merges them in the one order, and
// its keyset cursor walks the merged sequence without repeats or gaps
// (search.html#paging).
func TestSearchAcrossTypeCollections(t *testing.T) {
	ctx := context.Background()
	for _, f := range testFlavors {
		t.Run(f.String(), func(t *testing.T) {
			s := openTest(t, embeddedURI, Options{flavor: f})
			type rec struct {
				typ, id string
				lu      int64
			}
			recs := []rec{{"Patient", "p1", 5}, {"Basic", "b2", 1}, {"Observation", "o1", 5}, {"Basic", "b1", 7},
				{"Patient", "p2", 2}, {"Observation", "o2", 3}, {"Basic", "b3", 5}}
			var ops []store.Op
			for _, r := range recs {
				ops = append(ops, store.Op{Kind: store.OpCreate, Record: store.Record{Type: r.typ, ID: r.id, VersionID: 1,
					LastUpdated: time.Unix(1700000000+r.lu, 0).UTC(), Raw: []byte(fmt.Sprintf(`{"resourceType":%q,"id":%q}`, r.typ, r.id))}})
			}
			if err := s.Transact(ctx, ops); err != nil {
				t.Fatal(err)
			}
			types, err := s.storedTypes(ctx, resPrefix)
			if err != nil || !reflect.DeepEqual(types, []string{"Basic", "Observation", "Patient"}) {
				t.Fatalf("type collections %v, %v", types, err)
			}
			if n := count(t, s, resPrefix+"Basic", bson.D{}); n != 3 {
				t.Errorf("res_Basic holds %d documents, want 3", n)
			}
			byKey := func(less func(a, b rec) bool) []string {
				rs := append([]rec(nil), recs...)
				sort.SliceStable(rs, func(i, j int) bool { return less(rs[i], rs[j]) })
				var out []string
				for _, r := range rs {
					out = append(out, r.typ+"/"+r.id)
				}
				return out
			}
			tieBreak := func(a, b rec) bool { return a.typ < b.typ || a.typ == b.typ && a.id < b.id }
			cases := []struct {
				name  string
				types []string
				sort  []search.SortKey
				want  []string
			}{
				{"system, default order", nil, nil, byKey(tieBreak)},
				{"system, _lastUpdated desc", nil, []search.SortKey{{Param: "_lastUpdated", Desc: true}},
					byKey(func(a, b rec) bool { return a.lu > b.lu || a.lu == b.lu && tieBreak(a, b) })},
				{"two types, _lastUpdated", []string{"Patient", "Basic"}, []search.SortKey{{Param: "_lastUpdated"}},
					[]string{"Basic/b2", "Patient/p2", "Basic/b3", "Patient/p1", "Basic/b1"}},
			}
			for _, c := range cases {
				for _, size := range []int{1, 2, 3, 100} {
					var got []string
					q := store.Query{Types: c.types, Sort: c.sort, Count: size, Total: true}
					for pages := 0; pages < 20; pages++ {
						p, err := s.Search(ctx, q)
						if err != nil {
							t.Fatalf("%s: %v", c.name, err)
						}
						if p.Total != int64(len(c.want)) {
							t.Errorf("%s: total %d, want %d", c.name, p.Total, len(c.want))
						}
						for _, r := range p.Records {
							got = append(got, r.Key())
						}
						if p.Next == "" {
							break
						}
						q.Cursor = p.Next
					}
					if !reflect.DeepEqual(got, c.want) {
						t.Errorf("%s, pages of %d: %v, want %v", c.name, size, got, c.want)
					}
				}
			}
			var all []string
			if err := s.ForEach(ctx, "", func(r store.Record) error { all = append(all, r.Key()); return nil }); err != nil {
				t.Fatal(err)
			}
			if sort.Strings(all); !reflect.DeepEqual(all, byKey(tieBreak)) {
				t.Errorf("ForEach(\"\") = %v", all)
			}
		})
	}
}

// The hook runs when a type's collections are created, once per type.
func TestOnNewCollection(t *testing.T) {
	ctx := context.Background()
	calls := 0
	s := openTest(t, embeddedURI, Options{OnNewCollection: func(context.Context) error { calls++; return nil }})
	if calls != 0 {
		t.Fatalf("hook called %d times on an empty database", calls)
	}
	for i, typ := range []string{"Basic", "Basic", "Patient"} {
		r := store.Record{Type: typ, ID: fmt.Sprint("x", i), VersionID: 1, LastUpdated: time.Unix(1700000000, 0), Raw: []byte(`{}`)}
		if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: r}}); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 2 {
		t.Errorf("hook called %d times for 2 new types", calls)
	}
	calls = 0
	reopen(t, s, Options{OnNewCollection: func(context.Context) error { calls++; return nil }})
	if calls != 1 {
		t.Errorf("hook called %d times at Open, want 1", calls)
	}
}

// compareValues follows MongoDB's order of BSON types and values.
func TestCompareValues(t *testing.T) {
	v := func(x any) bson.RawValue {
		typ, b, err := bson.MarshalValue(x)
		if err != nil {
			t.Fatal(err)
		}
		return bson.RawValue{Type: typ, Value: b}
	}
	null := bson.RawValue{Type: bson.TypeNull}
	ordered := []bson.RawValue{null, v(int32(-1)), v(1.5), v(int64(2)), v("A"), v("a"), v("ab"), v(false), v(true),
		v(time.Unix(0, 0)), v(time.Unix(1, 0))}
	for i := range ordered {
		for j := range ordered {
			want := cmpInt(i, j)
			if got := compareValues(ordered[i], ordered[j]); got != want {
				t.Errorf("compare(%v, %v) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}
