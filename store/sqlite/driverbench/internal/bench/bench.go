// Package bench is the driver comparison of store/sqlite (README.md,
// "Driver"): the same statements through database/sql on each SQLite
// driver, one package per driver (two of them register the name
// "sqlite3", so they cannot share a binary).
package bench

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// Open opens a database file with the driver under test.
type Open func(path string) (*sql.DB, error)

var schema = []string{
	`PRAGMA journal_mode=WAL`,
	`PRAGMA synchronous=NORMAL`,
	// The shape of store/sqlite's tables: a version table with a blob and
	// an index, a WITHOUT ROWID value table with a second index.
	`CREATE TABLE ver(vk INTEGER PRIMARY KEY, rid INTEGER NOT NULL, vid INTEGER NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, raw BLOB)`,
	`CREATE UNIQUE INDEX ver_rid ON ver(rid, vid)`,
	`CREATE TABLE tok(t TEXT NOT NULL, p TEXT NOT NULL, c TEXT NOT NULL, s TEXT NOT NULL, rid INTEGER NOT NULL, cid INTEGER NOT NULL,
		PRIMARY KEY(t, p, c, s, rid, cid)) WITHOUT ROWID`,
	`CREATE INDEX tok_rid ON tok(rid, p, cid)`,
}

func setup(b *testing.B, open Open) *sql.DB {
	db, err := open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { db.Close() })
	for _, q := range schema {
		if _, err := db.Exec(q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	return db
}

var raw = []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2339-0"}]},` +
	strings.Repeat(`"x":"padding padding padding padding",`, 20) + `"subject":{"reference":"Patient/p1"}}`)

// insertTx writes one transaction of n resources: a version row (1 kB
// blob) and 10 value rows each, through prepared statements.
func insertTx(ctx context.Context, db *sql.DB, verIns, tokIns *sql.Stmt, start, n int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	v, t := tx.StmtContext(ctx, verIns), tx.StmtContext(ctx, tokIns)
	for i := start; i < start+n; i++ {
		if _, err := v.ExecContext(ctx, i, 1, "Observation", fmt.Sprintf("o%d", i), raw); err != nil {
			return err
		}
		for k := 0; k < 10; k++ {
			if _, err := t.ExecContext(ctx, "Observation", fmt.Sprintf("p%d", k), fmt.Sprintf("code-%d", (i*7+k)%500), "http://loinc.org", i, 0); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

func prepare(b *testing.B, db *sql.DB) (*sql.Stmt, *sql.Stmt) {
	v, err := db.Prepare(`INSERT INTO ver(rid, vid, type, id, raw) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	t, err := db.Prepare(`INSERT INTO tok(t, p, c, s, rid, cid) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	return v, t
}

// Run runs the driver benchmarks.
func Run(b *testing.B, open Open) {
	ctx := context.Background()
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("InsertTx/resources=%d", n), func(b *testing.B) {
			db := setup(b, open)
			v, t := prepare(b, db)
			i := 0
			for b.Loop() {
				if err := insertTx(ctx, db, v, t, i, n); err != nil {
					b.Fatal(err)
				}
				i += n
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "resources/s")
		})
	}
	db := setup(b, open)
	v, t := prepare(b, db)
	const rows = 20000
	for i := 0; i < rows; i += 1000 {
		if err := insertTx(ctx, db, v, t, i, 1000); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("PointQuery/ver-by-rid", func(b *testing.B) {
		st, err := db.Prepare(`SELECT type, id, raw FROM ver WHERE rid = ? AND vid = 1`)
		if err != nil {
			b.Fatal(err)
		}
		r := rand.New(rand.NewPCG(1, 2))
		for b.Loop() {
			var typ, id string
			var body []byte
			if err := st.QueryRow(r.IntN(rows)).Scan(&typ, &id, &body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("IndexQuery/tok-code-20-rows", func(b *testing.B) {
		st, err := db.Prepare(`SELECT rid FROM tok WHERE t = 'Observation' AND p = 'p3' AND c = ? LIMIT 20`)
		if err != nil {
			b.Fatal(err)
		}
		r := rand.New(rand.NewPCG(3, 4))
		for b.Loop() {
			rs, err := st.Query(fmt.Sprintf("code-%d", r.IntN(500)))
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rs.Next() {
				var rid int64
				if err := rs.Scan(&rid); err != nil {
					b.Fatal(err)
				}
				n++
			}
			rs.Close()
			if n == 0 {
				b.Fatal("no rows")
			}
		}
	})
}
