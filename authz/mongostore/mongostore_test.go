package mongostore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/authz/mongostore"
	"github.com/fhirgate/fhirgate/authz/storagetest"
	"github.com/fhirgate/fhirgate/store/embedded"
)

// One embedded FerretDB serves the package's tests; each storage gets a
// database of its own (FHIRGATE_TEST_MONGO_URI adds a MongoDB run).
var (
	embeddedURI string
	embeddedSrv *embedded.Server
	dbSeq       atomic.Int64
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fhirgate-authz-mongo-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, err := embedded.Start(context.Background(), dir, "", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	embeddedURI, embeddedSrv = srv.URI, srv
	code := m.Run()
	srv.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newDB() string { return fmt.Sprintf("authz%d_%d", time.Now().UnixNano()%1e9, dbSeq.Add(1)) }

// open opens a store on database db of uri, dropped at clean-up.
func open(t *testing.T, uri, db string) *mongostore.Store {
	t.Helper()
	s, err := mongostore.Open(context.Background(), uri, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Database().Drop(context.Background()) })
	return s
}

func uris() map[string]string {
	m := map[string]string{"ferretdb": embeddedURI}
	if u := os.Getenv("FHIRGATE_TEST_MONGO_URI"); u != "" {
		m["mongodb"] = u
	}
	return m
}

func TestConformance(t *testing.T) {
	for name, uri := range uris() {
		t.Run(name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) authz.Storage { return open(t, uri, newDB()) })
		})
	}
}

// Two processes: two clients (connections) on one database.
func TestTwoProcesses(t *testing.T) {
	for name, uri := range uris() {
		t.Run(name, func(t *testing.T) {
			storagetest.RunProcesses(t, func(t *testing.T) (authz.Storage, authz.Storage) {
				db := newDB()
				return open(t, uri, db), open(t, uri, db)
			})
		})
	}
}

// Opening again (a restart, or a second process starting) keeps the
// collections, indexes and data.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	db := newDB()
	a := open(t, embeddedURI, db)
	if err := a.CreateAccount(ctx, &authz.Account{ID: "a1", Username: "mum"}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b := open(t, embeddedURI, db)
	defer b.Close()
	if err := b.CreateAccount(ctx, &authz.Account{ID: "a2", Username: "mum"}); err != authz.ErrExists {
		t.Fatalf("the unique username index after a reopen: %v", err)
	}
	names, err := b.Database().ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if len(n) < len(mongostore.Prefix) || n[:len(mongostore.Prefix)] != mongostore.Prefix {
			t.Errorf("collection %q outside the %s prefix", n, mongostore.Prefix)
		}
	}
	if len(names) != 15 {
		t.Errorf("%d collections: %v", len(names), names)
	}
}

// BenchmarkRotate on the embedded FerretDB, without and with the _id
// index fhirgate adds to its tables (store/embedded.IndexIDs).
func BenchmarkRotate(b *testing.B) {
	for _, idx := range []bool{false, true} {
		b.Run(fmt.Sprintf("IndexIDs=%v", idx), func(b *testing.B) {
			db := newDB()
			s, err := mongostore.Open(context.Background(), embeddedURI, db)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = s.Database().Drop(context.Background()); s.Close() }()
			if idx {
				if err := embeddedSrv.IndexIDs(context.Background(), db); err != nil {
					b.Fatal(err)
				}
			}
			storagetest.BenchRotate(b, s)
		})
	}
}

// A process that stops between a use's marker and the record's used_at:
// the marker decides, for reads and for the next use.
func TestMarkerDecides(t *testing.T) {
	ctx := context.Background()
	s := open(t, embeddedURI, newDB())
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	if err := s.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: "r1", FamilyID: "f1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Database().Collection(mongostore.Prefix+"uses").InsertOne(ctx,
		bson.D{{Key: "_id", Value: "refresh/r1"}, {Key: "at", Value: t0.UnixNano()}, {Key: "family_id", Value: "f1"}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.GetRefreshToken(ctx, "r1")
	if err != nil || !r.UsedAt.Equal(t0) {
		t.Fatalf("%+v %v: want used at %v", r, err, t0)
	}
	if _, err := s.UseRefreshToken(ctx, "r1", t0.Add(time.Minute)); err != authz.ErrUsed {
		t.Fatalf("use after a marker without used_at: %v, want ErrUsed", err)
	}
}
