package mongo

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/embedded"
	"github.com/fhirgate/fhirgate/store/storetest"
)

// One embedded FerretDB serves every test of the package; each test gets a
// database of its own.
var (
	embeddedURI string
	embeddedSrv *embedded.Server
	dbSeq       atomic.Int64
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild() // never returns
	}
	dir, err := os.MkdirTemp("", "fhirgate-mongo-test-")
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

// openTest opens a store on a fresh database of uri, dropped at clean-up.
func openTest(t testing.TB, uri string, opts Options) *Store {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("t%d_%d", time.Now().UnixNano()%1e9, dbSeq.Add(1))
	s, err := Open(ctx, uri, name, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		_ = s.db.Drop(ctx)
		_ = s.Close(ctx)
	})
	return s
}

// testFlavors are the flavors the embedded FerretDB runs: its own, and
// the MongoDB paths wherever FerretDB can run them (conditions in write
// filters, bulk writes, $in reads, every index, totals counted apart).
var testFlavors = []Flavor{FlavorFerretDB, flavorMongoDBOnFerretDB}

// TestConformance runs the store conformance suite on embedded FerretDB
// in both test flavors and, with FHIRGATE_TEST_MONGO_URI set, on that
// MongoDB too (FlavorMongoDB, detected).
func TestConformance(t *testing.T) {
	for _, f := range testFlavors {
		t.Run(f.String(), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, embeddedURI, Options{flavor: f}) })
		})
	}
	if uri := os.Getenv("FHIRGATE_TEST_MONGO_URI"); uri != "" {
		t.Run("mongodb", func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, uri, Options{}) })
		})
	}
}
