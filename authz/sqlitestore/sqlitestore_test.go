package sqlitestore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/authz/sqlitestore"
	"github.com/fhirgate/fhirgate/authz/storagetest"
)

func TestMemory(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) authz.Storage {
		s, err := sqlitestore.Open(context.Background(), ":memory:")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestFile(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) authz.Storage {
		s, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), sqlitestore.FileName))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Two handles on one file (the server and an admin command): what one
// writes the other reads, and the file is private to its owner.
func TestTwoProcessesShareTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), sqlitestore.FileName)
	a, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sqlitestore.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.CreateClient(ctx, &authz.Client{ID: "app", AuthMethod: authz.AuthNone, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetClient(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}
