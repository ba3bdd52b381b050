// github.com/ncruces/go-sqlite3: SQLite compiled to WebAssembly, run by wazero (no cgo).
package ncruces

import (
	"database/sql"
	"testing"

	_ "github.com/ncruces/go-sqlite3/driver"

	"github.com/fhirgate/fhirgate/store/sqlite/driverbench/internal/bench"
)

func BenchmarkDriver(b *testing.B) {
	bench.Run(b, func(path string) (*sql.DB, error) { return sql.Open("sqlite3", "file:"+path) })
}
