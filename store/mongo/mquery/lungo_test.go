package mquery

// A second opinion on MongoDB semantics (no MongoDB server runs here):
// every exact filter Filter renders for the differential suite's
// conditions is evaluated by an independent implementation of MongoDB's
// query language, lungo's mongokit.Match, against each record as store/mongo
// stores it on MongoDB (the exact layout: idx arrays of small documents,
// rel, lu, t, i), and must select exactly what search.Match selects — the
// matcher store/sqlite is checked against too. lungo has no $regex, so
// conditions whose filter needs one (string prefix and :contains, :text,
// uri :below, canonical :below) are counted and left to the differential
// test against the reference evaluator, and so are filters with $and or
// $or inside $elemMatch (composites), which MongoDB accepts and lungo
// does not.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/256dpi/lungo/mongokit"
	bson1 "go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
	dc "github.com/fhirgate/fhirgate/store/storetest/conds"
)

// exactDoc is a record in store/mongo's exact layout (its doc's fields
// and bson tags).
type exactDoc struct {
	ID  string      `bson:"_id"`
	T   string      `bson:"t"`
	I   string      `bson:"i"`
	V   int64       `bson:"v"`
	LU  time.Time   `bson:"lu"`
	LUN int64       `bson:"lun,omitempty"`
	Del bool        `bson:"del"`
	Idx BSONIndex   `bson:"idx"`
	Rel BSONRelease `bson:"rel"`
}

func toV1(t *testing.T, v any) *bson1.D {
	t.Helper()
	raw, err := bson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var d bson1.D
	if err := bson1.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func hasRegex(v any) bool {
	switch x := v.(type) {
	case bson.D:
		for _, e := range x {
			if e.Key == "$regex" || hasRegex(e.Value) {
				return true
			}
		}
	case bson.A:
		for _, e := range x {
			if hasRegex(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasRegex(e) {
				return true
			}
		}
	case bson.Regex:
		return true
	}
	return false
}

func TestFiltersAgreeWithLungo(t *testing.T) {
	recs := append(append(fixtures(), dc.EdgeRecords()...), dc.ExampleRecords(t)...)
	g := dc.NewGen(5, 6)
	for _, r := range recs {
		g.FromRecord(r)
	}
	for kind, es := range dc.FixedConds() {
		g.Conds[kind] = append(g.Conds[kind], es...)
	}
	docs := make([]*bson1.D, len(recs))
	for i, r := range recs {
		lu := r.LastUpdated.UTC()
		ms := lu.Truncate(time.Millisecond)
		docs[i] = toV1(t, exactDoc{ID: r.Key(), T: r.Type, I: r.ID, V: r.VersionID, LU: ms, LUN: int64(lu.Sub(ms)),
			Del: r.Deleted, Idx: ToBSON(r.Index), Rel: BSONRelease(r.Release)})
	}
	limit := 400
	if testing.Short() {
		limit = 100
	}
	kinds := make([]string, 0, len(g.Conds))
	for k := range g.Conds {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	checked, skipped, unsupported := 0, 0, 0
	for _, kind := range kinds {
		conds := g.Conds[kind]
		if len(conds) > limit {
			g.Rnd.Shuffle(len(conds), func(i, j int) { conds[i], conds[j] = conds[j], conds[i] })
			conds = conds[:limit]
		}
		n := 0
		for _, e := range conds {
			f, err := Filter(e)
			if err != nil {
				continue // rejected conditions are the differential test's
			}
			if hasRegex(f) {
				skipped++
				continue
			}
			m, err := search.NewMatcher(e)
			if err != nil {
				t.Fatalf("%s %#v: %v", kind, e, err)
			}
			q := toV1(t, f)
			got := make([]bool, len(recs))
			lungoCannot := false
			for i := range recs {
				ok, err := mongokit.Match(docs[i], q)
				if err != nil && strings.Contains(err.Error(), "unknown expression operator") {
					// lungo has no logical operators inside $elemMatch
					// (MongoDB has: composites use $and there).
					lungoCannot = true
					break
				}
				if err != nil {
					t.Fatalf("%s %#v: lungo: %v (filter %v)", kind, e, err, f)
				}
				got[i] = ok
			}
			if lungoCannot {
				unsupported++
				continue
			}
			for i, r := range recs {
				if want := m.Match(subject(&r)); got[i] != want {
					t.Errorf("%s %#v on %s: MongoDB semantics (lungo) %v, search.Match %v; filter %s", kind, e, r.Key(), got[i], want, fmt.Sprint(f))
				}
				checked++
			}
			n++
		}
		t.Logf("%-11s %4d conditions checked", kind, n)
	}
	t.Logf("%d evaluations; %d conditions need $regex and %d $and/$or inside $elemMatch (neither in lungo)", checked, skipped, unsupported)
	if checked == 0 || strings.Contains(t.Name(), "never") {
		t.Fatal("nothing checked")
	}
}
