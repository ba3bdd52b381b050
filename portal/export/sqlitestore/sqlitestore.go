// Package sqlitestore keeps Bulk Data export jobs (export.Storage) in
// SQLite: the export_jobs table of the SQLite store's file,
// <data dir>/fhirgate.db, beside the store's and the other services'
// tables. ":memory:" is a private database for tests. A job is one JSON
// document (data) with its id, status and creation time as columns.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/fhirgate/fhirgate/portal/export"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

// Store is export.Storage on SQLite.
type Store struct{ db *sql.DB }

var _ export.Storage = (*Store)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS export_jobs (
	id TEXT PRIMARY KEY,
	status TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	data TEXT NOT NULL);
`

// Open opens (creating if needed) the database at path.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := sqlite.OpenShared(ctx, path, schema)
	if err != nil {
		return nil, fmt.Errorf("export sqlitestore: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Create stores a new job.
func (s *Store) Create(ctx context.Context, j export.Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("export sqlitestore: encode: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO export_jobs (id, status, created_at, data) VALUES (?, ?, ?, ?)`,
		j.ID, j.Status, j.Created.UnixNano(), string(b))
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return fmt.Errorf("export sqlitestore: job %s exists", j.ID)
	}
	if err != nil {
		return fmt.Errorf("export sqlitestore: create: %w", err)
	}
	return nil
}

func decode(data string) (export.Job, error) {
	var j export.Job
	if err := json.Unmarshal([]byte(data), &j); err != nil {
		return j, fmt.Errorf("export sqlitestore: decode: %w", err)
	}
	return j, nil
}

// Get reads a job.
func (s *Store) Get(ctx context.Context, id string) (export.Job, error) {
	var data string
	err := s.db.QueryRowContext(ctx, `SELECT data FROM export_jobs WHERE id = ?`, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return export.Job{}, export.ErrNotFound
	}
	if err != nil {
		return export.Job{}, fmt.Errorf("export sqlitestore: get: %w", err)
	}
	return decode(data)
}

// Put replaces an existing job.
func (s *Store) Put(ctx context.Context, j export.Job) error {
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("export sqlitestore: encode: %w", err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE export_jobs SET status = ?, data = ? WHERE id = ?`, j.Status, string(b), j.ID)
	if err != nil {
		return fmt.Errorf("export sqlitestore: put: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return export.ErrNotFound
	}
	return nil
}

// Delete removes a job (no error when it is gone already).
func (s *Store) Delete(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM export_jobs WHERE id = ?`, id); err != nil {
		return fmt.Errorf("export sqlitestore: delete: %w", err)
	}
	return nil
}

// List returns every job, oldest first.
func (s *Store) List(ctx context.Context) ([]export.Job, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT data FROM export_jobs ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("export sqlitestore: list: %w", err)
	}
	defer rows.Close()
	var out []export.Job
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("export sqlitestore: list: %w", err)
		}
		j, err := decode(data)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("export sqlitestore: list: %w", err)
	}
	return out, nil
}
