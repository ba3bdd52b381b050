package mongostore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/authz/visit"
	"github.com/fhirgate/fhirgate/authz/visit/mongostore"
	"github.com/fhirgate/fhirgate/authz/visit/storagetest"
	"github.com/fhirgate/fhirgate/store/embedded"
)

// The conformance suite on the embedded FerretDB (and on MongoDB when
// FHIRGATE_TEST_MONGO_URI is set), a database per case.
func TestConformance(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.Start(context.Background(), dir, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	uris := map[string]string{"ferretdb": srv.URI}
	if u := os.Getenv("FHIRGATE_TEST_MONGO_URI"); u != "" {
		uris["mongodb"] = u
	}
	var seq atomic.Int64
	for name, uri := range uris {
		t.Run(name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) visit.Storage {
				db := fmt.Sprintf("visit%d_%d", time.Now().UnixNano()%1e9, seq.Add(1))
				s, err := mongostore.Open(context.Background(), uri, db)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					_ = s.Collection().Database().Drop(context.Background())
					s.Close()
				})
				return s
			})
		})
	}
}
