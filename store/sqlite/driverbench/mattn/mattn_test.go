//go:build cgo

// github.com/mattn/go-sqlite3: the SQLite C library through cgo (needs gcc).
package mattn

import (
	"database/sql"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/fhirgate/fhirgate/store/sqlite/driverbench/internal/bench"
)

func BenchmarkDriver(b *testing.B) {
	bench.Run(b, func(path string) (*sql.DB, error) { return sql.Open("sqlite3", "file:"+path) })
}
