package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/fhirgate/fhirgate/store"
)

// verCols are the columns of ver that make a store.Record, in scanRecord's order.
const verCols = `v.type, v.id, v.vid, v.lu, v.luns, v.deleted, v.rel, v.idx, v.raw`

type scanner interface{ Scan(dest ...any) error }

// scanRecord reads the verCols of one row (plus extra destinations).
func scanRecord(sc scanner, extra ...any) (store.Record, error) {
	var r store.Record
	var lu, luns int64
	var rel, idx, raw []byte
	dest := append([]any{&r.Type, &r.ID, &r.VersionID, &lu, &luns, &r.Deleted, &rel, &idx, &raw}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return r, err
	}
	r.LastUpdated = joinTime(lu, luns)
	if len(raw) > 0 {
		r.Raw = raw
	}
	var err error
	if r.Index, err = decodeIndex(idx); err != nil {
		return r, fmt.Errorf("decode index of %s/%d: %w", r.Key(), r.VersionID, err)
	}
	if r.Release, err = decodeRelease(rel); err != nil {
		return r, fmt.Errorf("decode release of %s/%d: %w", r.Key(), r.VersionID, err)
	}
	return r, nil
}

const (
	readSQL = `SELECT ` + verCols + ` FROM res r JOIN ver v ON v.rid = r.rid AND v.vid = r.vid
		WHERE r.type = ? AND r.id = ?`
	vreadSQL = `SELECT ` + verCols + ` FROM res r JOIN ver v ON v.rid = r.rid AND v.vid = ?
		WHERE r.type = ? AND r.id = ?`
)

// Read returns the current version (a tombstone with Deleted set).
func (s *Store) Read(ctx context.Context, typ, id string) (store.Record, error) {
	row := s.readStmt.QueryRowContext(ctx, typ, id)
	r, err := scanRecord(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("sqlite: read %s/%s: %w", typ, id, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("sqlite: read %s/%s: %w", typ, id, err)
	}
	return r, nil
}

// VRead returns version vid.
func (s *Store) VRead(ctx context.Context, typ, id string, vid int64) (store.Record, error) {
	row := s.vreadStmt.QueryRowContext(ctx, vid, typ, id)
	r, err := scanRecord(row)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("sqlite: vread %s/%s/%d: %w", typ, id, vid, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("sqlite: vread %s/%s/%d: %w", typ, id, vid, err)
	}
	return r, nil
}

// forEachBatch is the number of records ForEach reads per query; no read
// transaction stays open while fn runs (fn may write).
const forEachBatch = 256

// ForEach calls fn with every current, non-deleted version of typ ("" =
// every type), in type and id order.
func (s *Store) ForEach(ctx context.Context, typ string, fn func(store.Record) error) error {
	var lastType, lastID string
	for {
		var rows *sql.Rows
		var err error
		q := `SELECT ` + verCols + ` FROM res r JOIN ver v ON v.rid = r.rid AND v.vid = r.vid
			WHERE r.deleted = 0 AND `
		if typ != "" {
			rows, err = s.rdb.QueryContext(ctx, q+`r.type = ? AND r.id > ? ORDER BY r.type, r.id LIMIT ?`, typ, lastID, forEachBatch)
		} else {
			rows, err = s.rdb.QueryContext(ctx, q+`(r.type, r.id) > (?, ?) ORDER BY r.type, r.id LIMIT ?`, lastType, lastID, forEachBatch)
		}
		if err != nil {
			return fmt.Errorf("sqlite: for each %q: %w", typ, err)
		}
		var batch []store.Record
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: for each %q: %w", typ, err)
			}
			batch = append(batch, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("sqlite: for each %q: %w", typ, err)
		}
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(batch) < forEachBatch {
			return nil
		}
		last := batch[len(batch)-1]
		lastType, lastID = last.Type, last.ID
	}
}
