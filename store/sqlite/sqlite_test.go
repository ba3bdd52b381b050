package sqlite

// The store conformance suite (store/storetest: R4 http.html versions,
// history, transactions; search.html#paging) on a database file and on an
// in-memory database.

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/storetest"
)

func openTest(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestConformance(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			return openTest(t, filepath.Join(t.TempDir(), "fhirgate.db"), Options{Synchronous: "normal"})
		})
	})
	t.Run("memory", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, ":memory:", Options{}) })
	})
}
