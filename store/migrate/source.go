package migrate

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mdriver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/embedded"
	"github.com/fhirgate/fhirgate/store/mongo"

	_ "modernc.org/sqlite" // the SQLite driver FerretDB itself uses (the snapshot)
)

// vdoc is one stored version as this package reads it from a res_<Type> or
// hist_<Type> document (store/mongo/README.md, "Document layout"). Only
// the fields every layout has are decoded; the search values (idx, or the
// compact layout's ixb, k, srt) are ignored: the migration derives them
// again with the current registry.
type vdoc struct {
	ID      string // _id: "Type/id" (current) or "Type/id/vid" (history)
	T, I    string
	V       int64
	LU      time.Time // lu (ms) + lun (ns below the ms)
	Del     bool
	Raw     []byte
	Rel     store.Release
	Tx      string // current documents only: held by an unfinished transaction
	Pending bool   // a create placeholder: not a version
}

// decodeDoc decodes a stored document. Unknown fields are skipped, so
// documents of every layout (nested idx, compact ixb/k/srt, older ones
// without lun) decode the same.
func decodeDoc(b []byte) (vdoc, error) {
	var d vdoc
	es, err := bsoncore.Document(b).Elements()
	if err != nil {
		return d, fmt.Errorf("decode document: %w", err)
	}
	var lu time.Time
	var lun int64
	for _, e := range es {
		v := e.Value()
		var err error
		switch e.Key() {
		case "_id":
			d.ID, err = bsonString(v)
		case "t":
			d.T, err = bsonString(v)
		case "i":
			d.I, err = bsonString(v)
		case "v":
			d.V, err = bsonInt(v)
		case "lu":
			lu, err = bsonTime(v)
		case "lun":
			lun, err = bsonInt(v)
		case "del":
			d.Del, err = bsonBool(v)
		case "raw":
			d.Raw, err = bsonBinary(v)
		case "rel":
			d.Rel, err = bsonRelease(v)
		case "tx":
			d.Tx, err = bsonString(v)
		case "pending":
			d.Pending, err = bsonBool(v)
		}
		if err != nil {
			return d, fmt.Errorf("decode document %q field %s: %w", d.ID, e.Key(), err)
		}
	}
	d.LU = lu.Add(time.Duration(lun)).UTC()
	if d.Del {
		d.Raw = nil
	}
	return d, nil
}

func bsonString(v bsoncore.Value) (string, error) {
	switch v.Type {
	case bsoncore.TypeString:
		return v.StringValue(), nil
	case bsoncore.TypeNull:
		return "", nil
	}
	return "", fmt.Errorf("%s is not a string", v.Type)
}

func bsonInt(v bsoncore.Value) (int64, error) {
	switch v.Type {
	case bsoncore.TypeInt64:
		return v.Int64(), nil
	case bsoncore.TypeInt32:
		return int64(v.Int32()), nil
	case bsoncore.TypeDouble:
		f := v.Double()
		if f != float64(int64(f)) {
			return 0, fmt.Errorf("%v is not an integer", f)
		}
		return int64(f), nil
	case bsoncore.TypeNull:
		return 0, nil
	}
	return 0, fmt.Errorf("%s is not an integer", v.Type)
}

func bsonBool(v bsoncore.Value) (bool, error) {
	switch v.Type {
	case bsoncore.TypeBoolean:
		return v.Boolean(), nil
	case bsoncore.TypeNull:
		return false, nil
	}
	return false, fmt.Errorf("%s is not a boolean", v.Type)
}

func bsonTime(v bsoncore.Value) (time.Time, error) {
	switch v.Type {
	case bsoncore.TypeDateTime:
		return time.UnixMilli(v.DateTime()).UTC(), nil
	case bsoncore.TypeNull:
		return time.Time{}, nil
	}
	return time.Time{}, fmt.Errorf("%s is not a date", v.Type)
}

// bsonBinary copies a binary's bytes (the cursor's buffer is reused).
func bsonBinary(v bsoncore.Value) ([]byte, error) {
	switch v.Type {
	case bsoncore.TypeBinary:
		_, data := v.Binary()
		return bytes.Clone(data), nil
	case bsoncore.TypeNull:
		return nil, nil
	}
	return nil, fmt.Errorf("%s is not binary", v.Type)
}

// bsonRelease decodes rel: {p, x (dates), r, s, b (strings), a (date), n}.
func bsonRelease(v bsoncore.Value) (store.Release, error) {
	var r store.Release
	if v.Type == bsoncore.TypeNull {
		return r, nil
	}
	if v.Type != bsoncore.TypeEmbeddedDocument {
		return r, fmt.Errorf("%s is not a document", v.Type)
	}
	es, err := v.Document().Elements()
	if err != nil {
		return r, err
	}
	for _, e := range es {
		v := e.Value()
		var err error
		switch e.Key() {
		case "p":
			r.Patient, err = bsonTime(v)
		case "x":
			r.Proxy, err = bsonTime(v)
		case "r":
			r.Rule, err = bsonString(v)
		case "s":
			r.State, err = bsonString(v)
		case "b":
			r.By, err = bsonString(v)
		case "a":
			r.At, err = bsonTime(v)
		case "n":
			r.Note, err = bsonString(v)
		}
		if err != nil {
			return r, fmt.Errorf("rel.%s: %w", e.Key(), err)
		}
	}
	return r, nil
}

// source is a running FerretDB on a snapshot of the data directory's
// FerretDB database, with unfinished transactions recovered.
type source struct {
	dir       string // the snapshot directory (removed by close)
	srv       *embedded.Server
	client    *mdriver.Client
	db        *mdriver.Database
	recovered int // transaction journals found in the snapshot before recovery
}

// openSource snapshots <ferretDir>/<database>.sqlite into a new directory
// under tmpParent with SQLite's VACUUM INTO on a read-only connection (the
// source is only read; a consistent copy even with a WAL), starts FerretDB
// on the snapshot and runs store/mongo's recovery there (mongo.Open with
// RecoverAll), so transactions a crash left unfinished are rolled forward
// or back exactly as the server would at start-up, without touching the
// source.
func openSource(ctx context.Context, ferretDir, database, tmpParent string, log *slog.Logger) (_ *source, err error) {
	file := filepath.Join(ferretDir, database+".sqlite")
	if _, err := os.Stat(file); err != nil {
		return nil, fmt.Errorf("migrate: source database: %w", err)
	}
	dir, err := os.MkdirTemp(tmpParent, ".migrate-snapshot-")
	if err != nil {
		return nil, fmt.Errorf("migrate: snapshot dir: %w", err)
	}
	s := &source{dir: dir}
	defer func() {
		if err != nil {
			s.close(context.WithoutCancel(ctx))
		}
	}()
	if err := snapshot(ctx, file, filepath.Join(dir, database+".sqlite")); err != nil {
		return nil, err
	}
	if s.srv, err = embedded.Start(ctx, dir, "", log); err != nil {
		return nil, fmt.Errorf("migrate: start FerretDB on the snapshot: %w", err)
	}
	if err := s.srv.IndexIDs(ctx, database); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if s.client, err = mdriver.Connect(options.Client().ApplyURI(s.srv.URI)); err != nil {
		return nil, fmt.Errorf("migrate: connect to FerretDB: %w", err)
	}
	s.db = s.client.Database(database)
	if s.recovered, err = countJournals(ctx, s.db); err != nil {
		return nil, err
	}
	// Recovery (store/mongo's public API) on the snapshot.
	ms, err := mongo.Open(ctx, s.srv.URI, database, mongo.Options{
		Logger: log, RecoverAll: true,
		OnNewCollection: func(ctx context.Context) error { return s.srv.IndexIDs(ctx, database) },
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: recover unfinished transactions (on the snapshot): %w", err)
	}
	if err := ms.Close(ctx); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return s, nil
}

// snapshot copies the SQLite database src to dst (VACUUM INTO, one
// consistent read transaction). Without write-ahead log companions beside
// it (FerretDB stopped cleanly) src is opened immutable, so not even the
// -shm and -wal files of a read-only connection are created; with them
// (FerretDB was killed, or is running) it is opened read-only, so the
// log's commits are part of the copy.
func snapshot(ctx context.Context, src, dst string) error {
	mode := "immutable=1"
	for _, f := range []string{src + "-wal", src + "-shm"} {
		if _, err := os.Stat(f); err == nil {
			mode = "mode=ro"
		}
	}
	db, err := sql.Open("sqlite", "file:"+src+"?"+mode+"&_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("migrate: open %s: %w", src, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("migrate: snapshot %s: %w", src, err)
	}
	return nil
}

// countJournals counts transaction journal headers (txlog, k "h").
func countJournals(ctx context.Context, db *mdriver.Database) (int, error) {
	n, err := db.Collection("txlog").CountDocuments(ctx, bson.D{{Key: "k", Value: "h"}})
	if err != nil {
		return 0, fmt.Errorf("migrate: count transaction journals: %w", err)
	}
	return int(n), nil
}

func (s *source) close(ctx context.Context) {
	if s.client != nil {
		_ = s.client.Disconnect(ctx)
	}
	if s.srv != nil {
		s.srv.Stop()
	}
	_ = os.RemoveAll(s.dir)
}

// types lists the resource types with a res_ or hist_ collection, sorted,
// and whether the pre-per-type layout's collections exist.
func (s *source) types(ctx context.Context) (types []string, legacy bool, err error) {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, false, fmt.Errorf("migrate: list collections: %w", err)
	}
	seen := map[string]bool{}
	for _, n := range names {
		t, ok := strings.CutPrefix(n, "res_")
		if !ok {
			t, ok = strings.CutPrefix(n, "hist_")
		}
		if ok && t != "" && !seen[t] {
			seen[t] = true
			types = append(types, t)
		}
		if n == "resources" || n == "history" {
			legacy = true
		}
	}
	slices.Sort(types)
	return types, legacy, nil
}

// each calls fn with every document of collection coll.
func (s *source) each(ctx context.Context, coll string, fn func(vdoc) error) error {
	cur, err := s.db.Collection(coll).Find(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("migrate: read %s: %w", coll, err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		d, err := decodeDoc(cur.Current)
		if err != nil {
			return fmt.Errorf("migrate: %s: %w", coll, err)
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("migrate: read %s: %w", coll, err)
	}
	return nil
}
