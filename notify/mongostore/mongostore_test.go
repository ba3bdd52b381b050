package mongostore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/notify/mongostore"
	"github.com/fhirgate/fhirgate/notify/storagetest"
	"github.com/fhirgate/fhirgate/store/embedded"
)

// One embedded FerretDB serves the package's tests; each case gets a
// database of its own (FHIRGATE_TEST_MONGO_URI adds a MongoDB run).
var (
	embeddedURI string
	dbSeq       atomic.Int64
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fhirgate-notify-mongo-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, err := embedded.Start(context.Background(), dir, "", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	embeddedURI = srv.URI
	code := m.Run()
	srv.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestConformance(t *testing.T) {
	uris := map[string]string{"ferretdb": embeddedURI}
	if u := os.Getenv("FHIRGATE_TEST_MONGO_URI"); u != "" {
		uris["mongodb"] = u
	}
	for name, uri := range uris {
		t.Run(name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) (notify.Storage, notify.Storage) {
				db := fmt.Sprintf("notify%d_%d", time.Now().UnixNano()%1e9, dbSeq.Add(1))
				open := func() *mongostore.Store {
					s, err := mongostore.Open(context.Background(), uri, db)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					return s
				}
				a, b := open(), open()
				t.Cleanup(func() { _ = a.Database().Drop(context.Background()) })
				return a, b
			})
		})
	}
}
