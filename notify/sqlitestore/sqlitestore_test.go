package sqlitestore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/notify/sqlitestore"
	"github.com/fhirgate/fhirgate/notify/storagetest"
)

// Two handles on one file stand for two fhirgate processes.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) (notify.Storage, notify.Storage) {
		file := filepath.Join(t.TempDir(), "fhirgate.db")
		open := func() notify.Storage {
			s, err := sqlitestore.Open(context.Background(), file)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open()
	})
}
