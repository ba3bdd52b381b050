// modernc.org/sqlite: SQLite transpiled to Go (no cgo).
package modernc

import (
	"database/sql"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/fhirgate/fhirgate/store/sqlite/driverbench/internal/bench"
)

func BenchmarkDriver(b *testing.B) {
	bench.Run(b, func(path string) (*sql.DB, error) { return sql.Open("sqlite", "file:"+path) })
}
