package mongo

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/storetest/conds"
)

// Open detects the embedded server as FerretDB; the test flavor is only
// accepted on FerretDB, and no option makes a FerretDB server MongoDB.
func TestFlavorDetected(t *testing.T) {
	if f := openTest(t, embeddedURI, Options{}).Flavor(); f != FlavorFerretDB {
		t.Fatalf("flavor %v, want ferretdb", f)
	}
	if f := openTest(t, embeddedURI, Options{flavor: flavorMongoDBOnFerretDB}).Flavor(); f != flavorMongoDBOnFerretDB {
		t.Fatalf("flavor %v, want the test flavor", f)
	}
	if _, err := Open(context.Background(), embeddedURI, "flavor_mongodb", Options{flavor: FlavorMongoDB}); err == nil {
		t.Fatal("Open with the MongoDB flavor on FerretDB succeeded")
	}
}

// On MongoDB every search and history filter is exact: no Go re-check
// (Flavor.dialect), for every condition shape of the differential tests.
// On FerretDB element conditions need the re-check.
func TestMongoDBFiltersAreExact(t *testing.T) {
	mongo := &Store{flavor: FlavorMongoDB}
	ferret := &Store{flavor: FlavorFerretDB}
	g := conds.NewGen(13, 13)
	for _, r := range conds.EdgeRecords() {
		g.FromRecord(r)
	}
	for kind, es := range conds.FixedConds() {
		for _, e := range es {
			g.Add(kind, e)
		}
	}
	loosened, n := 0, 0
	for kind, es := range g.Conds {
		for _, e := range append(es, search.Not{Arg: es[0]}, search.Or{Args: es}) {
			for _, history := range []bool{false, true} {
				n++
				if _, m, err := mongo.compile(e, history); err != nil || m != nil {
					t.Errorf("%s %#v (history %v): MongoDB filter not exact (matcher %v, err %v)", kind, e, history, m != nil, err)
				}
				if _, m, err := ferret.compile(e, history); err == nil && m != nil {
					loosened++
				}
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d conditions compiled", n)
	}
	if loosened == 0 {
		t.Error("no FerretDB filter needed the re-check: the cases do not exercise element conditions")
	}
	// The MongoDB flavor is the product path in every other respect too.
	f := FlavorMongoDB
	if f.serialised() || f.emulatedCAS() || !f.secondaryIndexes() || f.writeBatch() != 0 || f.totalInScan() || f.byExactID(1, true) {
		t.Errorf("MongoDB flavor takes a FerretDB workaround")
	}
}

// A database written in the compact layout of the embedded FerretDB store
// (search values in ixb, k, srt) opens, so recovery and `fhirgate
// migrate` can run on it, but every operation on its resources fails with
// ErrCompactLayout instead of answering without them.
func TestCompactLayoutRefused(t *testing.T) {
	ctx := context.Background()
	for _, coll := range []string{"res_Observation", "hist_Observation"} {
		t.Run(coll, func(t *testing.T) {
			s := openTest(t, embeddedURI, Options{})
			if _, err := s.db.Collection(coll).InsertOne(ctx, bson.D{{Key: "_id", Value: "Observation/o1"}, {Key: "t", Value: "Observation"},
				{Key: "i", Value: "o1"}, {Key: "v", Value: int64(1)}, {Key: "lu", Value: time.Unix(1700000000, 0)}, {Key: "del", Value: false},
				{Key: "raw", Value: []byte(`{"resourceType":"Observation","id":"o1"}`)},
				{Key: "ixb", Value: []byte{0, 0, 0, 0, 1}}, {Key: "k", Value: "\ntok.c=8867-4\n"}, {Key: "srt", Value: bson.D{}}}); err != nil {
				t.Fatal(err)
			}
			s2 := reopen(t, s, Options{RecoverAll: true})
			_, readErr := s2.Read(ctx, "Observation", "o1")
			_, searchErr := s2.Search(ctx, store.Query{Types: []string{"Observation"}, Count: 10})
			_, histErr := s2.History(ctx, store.HistoryQuery{Type: "Observation", Count: 10})
			errs := map[string]error{
				"Read":              readErr,
				"Search":            searchErr,
				"History":           histErr,
				"EnsureCollections": s2.EnsureCollections(ctx),
				"Transact":          s2.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: basic("b", 1, "x")}}),
				"ForEach":           s2.ForEach(ctx, "", func(store.Record) error { return nil }),
				"SetDerived":        s2.SetDerived(ctx, "Observation", "o1", 1, &search.Index{}, nil),
			}
			for op, err := range errs {
				if !errors.Is(err, ErrCompactLayout) {
					t.Errorf("%s: %v, want ErrCompactLayout", op, err)
				}
			}
			if n, err := s2.db.Collection("res_Basic").CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
				t.Errorf("the refused create: %d documents, %v", n, err)
			}
		})
	}
	// The current layout opens and serves.
	s := openTest(t, embeddedURI, Options{})
	if err := s.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: basic("a", 1, "x")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := reopen(t, s, Options{}).Read(ctx, "Basic", "a"); err != nil {
		t.Fatal(err)
	}
}
