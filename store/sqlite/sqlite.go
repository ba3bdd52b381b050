package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/store"
)

// Options tunes Open. Zero values select the defaults.
type Options struct {
	// Now is the clock of lock leases. Default time.Now.
	Now func() time.Time
	// Logger receives warnings. Default slog.Default().
	Logger *slog.Logger
	// Readers is the number of reader connections. Default 4.
	Readers int
	// Synchronous is SQLite's synchronous setting for the writer: "full"
	// (default: every commit is on disk before Transact returns, power
	// loss included) or "normal" (WAL: durable across a crash of the
	// process, the last commits may be lost on power loss).
	Synchronous string
	// CacheKiB is the page cache of each connection. Default 32 MiB.
	CacheKiB int
	// GroupMax bounds the requests applied in one SQLite transaction by
	// group commit. Default 256.
	GroupMax int
}

// Store is a store.Store on one SQLite database.
type Store struct {
	opts   Options
	path   string
	mem    bool
	rdb    *sql.DB // readers
	wdb    *sql.DB // the writer's pool (one connection)
	w      *writer
	ckpt   *checkpointer // nil in memory
	cursor []byte        // HMAC key of paging cursors (meta "cursorKey")

	readStmt, vreadStmt *sql.Stmt // prepared on the readers
	noWindow            bool      // tests: never try the window plan
	noJoin              bool      // tests: never read an ordered driver as a join

	// types: the types with rows in "types" (committed), to skip the insert.
	typesMu sync.RWMutex
	types   map[string]bool

	lockWake  chan struct{} // closed and replaced when a lock is released
	lockMu    sync.Mutex
	closed    atomic.Bool
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

var memSeq atomic.Int64

// Open opens (creating if needed) the database at path; ":memory:" is a
// private in-memory database that lives until Close.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	if opts.CacheKiB <= 0 {
		opts.CacheKiB = 32 << 10
	}
	if opts.GroupMax <= 0 {
		opts.GroupMax = 256
	}
	switch strings.ToLower(opts.Synchronous) {
	case "":
		opts.Synchronous = "full"
	case "full", "normal":
		opts.Synchronous = strings.ToLower(opts.Synchronous)
	default:
		return nil, fmt.Errorf("sqlite: synchronous %q: want full or normal", opts.Synchronous)
	}
	s := &Store{opts: opts, path: path, types: map[string]bool{}, lockWake: make(chan struct{})}
	var name string
	if path == ":memory:" {
		// The memdb VFS shares one in-memory database between the
		// connections that name it (rollback journal in memory: no WAL).
		s.mem = true
		var b [8]byte
		_, _ = rand.Read(b[:])
		name = fmt.Sprintf("file:/fhirgate-%x-%d?vfs=memdb", b, memSeq.Add(1))
	} else {
		name = "file:" + (&url.URL{Path: path}).EscapedPath() + "?"
	}
	sep := "&"
	if !strings.Contains(name, "?") {
		sep = "?"
	} else if strings.HasSuffix(name, "?") {
		sep = ""
	}
	pragmas := func(extra ...string) string {
		ps := append([]string{
			"busy_timeout(10000)", "foreign_keys(0)", fmt.Sprintf("cache_size(-%d)", opts.CacheKiB),
			"temp_store(memory)",
		}, extra...)
		var b strings.Builder
		b.WriteString(name)
		for i, p := range ps {
			if i == 0 {
				b.WriteString(sep)
			} else {
				b.WriteString("&")
			}
			b.WriteString("_pragma=" + url.QueryEscape(p))
		}
		return b.String()
	}
	var err error
	wextra := []string{"synchronous(" + opts.Synchronous + ")"}
	if !s.mem {
		wextra = append(wextra, fmt.Sprintf("wal_autocheckpoint(%d)", backstopPages))
	}
	if !s.mem {
		wextra = append([]string{"journal_mode(WAL)"}, wextra...)
	}
	s.wdb, err = sql.Open(driverName, pragmas(wextra...))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := s.migrate(ctx, conn); err != nil {
		conn.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// Planner statistics for the tables that need them, from a sample of
	// each index (sqlite.org/lang_analyze.html#pragopt: long-lived
	// connections run it at open); Close runs it again.
	if _, err := conn.ExecContext(ctx, `PRAGMA analysis_limit=1000`); err == nil {
		_, _ = conn.ExecContext(ctx, `PRAGMA optimize=0x10002`)
	}
	rextra := []string{"query_only(1)"}
	s.rdb, err = sql.Open(driverName, pragmas(rextra...))
	if err != nil {
		conn.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.rdb.SetMaxOpenConns(opts.Readers)
	s.rdb.SetMaxIdleConns(opts.Readers)
	s.rdb.SetConnMaxLifetime(0)
	s.rdb.SetConnMaxIdleTime(0)
	if s.readStmt, err = s.rdb.PrepareContext(ctx, readSQL); err == nil {
		s.vreadStmt, err = s.rdb.PrepareContext(ctx, vreadSQL)
	}
	if err != nil {
		s.rdb.Close()
		conn.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := s.loadTypes(ctx); err != nil {
		s.rdb.Close()
		conn.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if !s.mem {
		cdb, err := sql.Open(driverName, pragmas())
		if err != nil {
			s.rdb.Close()
			conn.Close()
			s.wdb.Close()
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		s.ckpt = newCheckpointer(cdb, opts.Logger)
	}
	s.w = newWriter(s, conn)
	if s.ckpt != nil {
		s.ckpt.start(s.w)
	}
	return s, nil
}

// migrate creates the schema and the cursor key, and checks the version.
func (s *Store) migrate(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	err := func() error {
		for _, q := range schema {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("schema: %w\n%s", err, q)
			}
		}
		var v string
		switch err := conn.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'schema'`).Scan(&v); {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := conn.ExecContext(ctx, `INSERT INTO meta(k, v) VALUES ('schema', ?)`, schemaVersion); err != nil {
				return err
			}
		case err != nil:
			return err
		case v != schemaVersion:
			return fmt.Errorf("database schema version %q, this fhirgate writes %q", v, schemaVersion)
		}
		var key []byte
		switch err := conn.QueryRowContext(ctx, `SELECT v FROM meta WHERE k = 'cursorKey'`).Scan(&key); {
		case errors.Is(err, sql.ErrNoRows):
			key = make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return err
			}
			if _, err := conn.ExecContext(ctx, `INSERT INTO meta(k, v) VALUES ('cursorKey', ?)`, key); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		s.cursor = key
		return nil
	}()
	if err != nil {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return err
}

func (s *Store) loadTypes(ctx context.Context) error {
	rows, err := s.rdb.QueryContext(ctx, `SELECT name FROM types`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return err
		}
		s.types[t] = true
	}
	return rows.Err()
}

func (s *Store) knownType(t string) bool {
	s.typesMu.RLock()
	defer s.typesMu.RUnlock()
	return s.types[t]
}

func (s *Store) addTypes(ts []string) {
	if len(ts) == 0 {
		return
	}
	s.typesMu.Lock()
	for _, t := range ts {
		s.types[t] = true
	}
	s.typesMu.Unlock()
}

// ErrClosed is returned by a Store after Close.
var ErrClosed = errors.New("sqlite: store closed")

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var one int
	if err := s.rdb.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close waits for the writes in flight, then closes the database (an
// in-memory one is gone afterwards). WAL content is checkpointed into
// the database file.
func (s *Store) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.w.stop()
		if s.ckpt != nil {
			s.ckpt.stop()
		}
		if !s.mem {
			_, _ = s.w.conn.ExecContext(ctx, `PRAGMA optimize`)
			_, _ = s.w.conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
		}
		s.readStmt.Close()
		s.vreadStmt.Close()
		e1 := s.rdb.Close()
		e2 := s.w.conn.Close()
		e3 := s.wdb.Close()
		err = errors.Join(e1, e2, e3)
		if err != nil {
			err = fmt.Errorf("sqlite: close: %w", err)
		}
	})
	return err
}
