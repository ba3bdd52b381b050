package mongostore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/portal/export"
	"github.com/fhirgate/fhirgate/portal/export/mongostore"
	"github.com/fhirgate/fhirgate/portal/export/storagetest"
	"github.com/fhirgate/fhirgate/store/embedded"
)

// The conformance suite on the embedded FerretDB (and on MongoDB when
// FHIRGATE_TEST_MONGO_URI is set), a database per case.
func TestConformance(t *testing.T) {
	srv, err := embedded.Start(context.Background(), t.TempDir(), "", nil)
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
			storagetest.Run(t, func(t *testing.T) export.Storage {
				db := fmt.Sprintf("export%d_%d", time.Now().UnixNano()%1e9, seq.Add(1))
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
