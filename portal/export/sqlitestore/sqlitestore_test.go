package sqlitestore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/portal/export"
	"github.com/fhirgate/fhirgate/portal/export/sqlitestore"
	"github.com/fhirgate/fhirgate/portal/export/storagetest"
)

// The conformance suite on a file (WAL, as in fhirgate.db) and in memory.
func TestConformance(t *testing.T) {
	for name, path := range map[string]func(t *testing.T) string{
		"file":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "fhirgate.db") },
		"memory": func(*testing.T) string { return ":memory:" },
	} {
		t.Run(name, func(t *testing.T) {
			storagetest.Run(t, func(t *testing.T) export.Storage {
				s, err := sqlitestore.Open(context.Background(), path(t))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}
