package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // the SQLite driver FerretDB itself uses
)

// IndexIDs works around a FerretDB v1.24 defect: its SQLite tables have an
// _id index on the expression `_ferretdb_sjson->"_id"`, but its queries
// and updates by _id filter on `_ferretdb_sjson->'$._id'`, so SQLite scans
// the whole table for every lookup by _id (ferretdb-notes.md). IndexIDs
// adds an index on the expression FerretDB actually queries, to every
// collection table of database (call it after the collections exist), so
// reads and writes by _id become index lookups. Data and queries are
// untouched; the index is plain SQLite maintenance FerretDB keeps up to
// date on every write like any other index.
func (s *Server) IndexIDs(ctx context.Context, database string) error {
	return IndexIDsAt(ctx, s.dir, database)
}

// IndexIDsAt is IndexIDs for the embedded store whose files are in dir
// (another process's, e.g. the benchmark's view of a running fhirgate).
func IndexIDsAt(ctx context.Context, dir, database string) error {
	file := filepath.Join(dir, database+".sqlite")
	db, err := sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("embedded: open %s: %w", file, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\_ferretdb\_%' ESCAPE '\' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`)
	if err != nil {
		return fmt.Errorf("embedded: list tables: %w", err)
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	for _, t := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, t+"_fhirgate_id", t)
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("embedded: index %s: %w", strings.TrimSpace(t), err)
		}
	}
	return nil
}
