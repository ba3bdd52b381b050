// Package migrate moves the data of the embedded FerretDB store (the
// former default: FerretDB v1.24 in-process, store/embedded, under
// <data dir>/ferretdb, written by store/mongo) into the SQLite store
// (store/sqlite, <data dir>/fhirgate.db), every version of every resource:
// current versions, history and tombstones, with their type, id, version
// ids, lastUpdated (to the nanosecond stored) and release state
// (store.Release), so read, vread, _history, _since, ETags and release
// holds (R4 http.html#read, #vread, #history) answer the same afterwards.
//
// The source is read at the document level (store/mongo/README.md,
// "Document layout": res_<Type>, hist_<Type>, fields t, i, v, lu, lun,
// del, raw, rel), so every layout store/mongo ever wrote reads the same;
// the stored search values are ignored and derived again with the
// current search registry (search.Registry.Extract, as the server does on
// write), so the SQLite index is complete. Cursor keys (meta) are not
// carried over: paging cursors issued before the migration are refused
// afterwards and clients start a new search.
package migrate

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/sqlite"

	mdriver "go.mongodb.org/mongo-driver/v2/mongo"
)

// File names in the data directory.
const (
	// SourceDir is the embedded FerretDB's directory.
	SourceDir = "ferretdb"
	// TargetFile is the SQLite store's file (internal/app.SQLiteFile).
	TargetFile = "fhirgate.db"
	// MarkerFile records a finished migration; its first line is
	// "migrated <RFC 3339 instant>". The server's start-up warning reads it.
	MarkerFile = "ferretdb.migrated"
)

// ErrTargetNotEmpty: the SQLite store holds resources already, so a
// migration would mix two data sets. Nothing was written.
var ErrTargetNotEmpty = errors.New("migrate: the SQLite store already holds resources")

// ErrUnfinished: the source holds transactions that recovery could not
// settle (see Options.Force). Nothing was written.
var ErrUnfinished = errors.New("migrate: the FerretDB store holds unfinished transactions")

// Options configure Run.
type Options struct {
	// DataDir holds SourceDir and receives TargetFile and MarkerFile.
	DataDir string
	// Database is the FerretDB database name (default "fhirgate").
	Database string
	// Registry derives the search values (required): the server's, i.e.
	// search.Default() with the custom parameters and base URL applied.
	Registry *search.Registry
	// DryRun reads and checks everything (search values derived too) and
	// reports the counts, but writes no target and no marker.
	DryRun bool
	// Force migrates what readers see although unfinished transactions
	// remain after recovery (a journal it left, or a lock or create
	// placeholder without journal): placeholders are skipped, locked
	// documents migrated as they are. Without it Run refuses them.
	Force bool
	// BatchResources bounds the resources written per batch (default 256).
	BatchResources int
	// Out receives progress and the counts (nil: discarded).
	Out io.Writer
	// Logger receives FerretDB's errors and recovery messages (nil: discarded).
	Logger *slog.Logger
	// Now stamps the marker (default time.Now).
	Now func() time.Time
	// Carry, when set, copies the state the FerretDB database holds beside
	// the resources (the authorization server's authz_* collections) into
	// the new SQLite file at target, before it is checked and put in place;
	// it returns what it copied, for the output. The layers above supply it
	// (cmd/fhirgate: authz/mongostore Export, authz/sqlitestore Import).
	Carry func(ctx context.Context, src *mdriver.Database, target string) (string, error)
}

// Counts are the resources of one type.
type Counts struct {
	Live     int64 // resources whose current version is not a tombstone
	Deleted  int64 // resources whose current version is a tombstone
	Versions int64 // every version: current and history, tombstones included
}

func (c *Counts) add(o Counts) {
	c.Live += o.Live
	c.Deleted += o.Deleted
	c.Versions += o.Versions
}

// Result reports a migration.
type Result struct {
	Types     map[string]Counts
	Total     Counts
	Recovered int   // journals of unfinished transactions recovered on the snapshot
	Skipped   int64 // create placeholders skipped (Force)
	Target    string
	Marker    string // "" for a dry run
	DryRun    bool
}

// Run migrates <DataDir>/ferretdb into <DataDir>/fhirgate.db. It refuses a
// target holding resources (ErrTargetNotEmpty) and never writes the
// source: it reads a snapshot (SQLite VACUUM INTO), on which store/mongo's
// recovery settles transactions a crash left unfinished. The target is
// written as <target>.migrating in batches of one SQLite transaction each
// (store.Store.Transact, which keeps the caller's version ids, instants and
// release states), every version read back and compared, the counts of
// the target checked against the source, and only then renamed into
// place; on any failure the partial file is removed. FerretDB must not be
// serving the source meanwhile (stop fhirgate).
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if o.DataDir == "" {
		return nil, errors.New("migrate: no data directory")
	}
	if o.Registry == nil {
		return nil, errors.New("migrate: no search registry")
	}
	if o.Database == "" {
		o.Database = "fhirgate"
	}
	if o.BatchResources <= 0 {
		o.BatchResources = 256
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ferretDir := filepath.Join(o.DataDir, SourceDir)
	if fi, err := os.Stat(ferretDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("migrate: no embedded FerretDB store at %s", ferretDir)
	}
	target := filepath.Join(o.DataDir, TargetFile)
	res = &Result{Types: map[string]Counts{}, Target: target, DryRun: o.DryRun}

	replace, err := checkTarget(ctx, target, o.Logger)
	if err != nil {
		return nil, err
	}
	src, err := openSource(ctx, ferretDir, o.Database, o.DataDir, o.Logger)
	if err != nil {
		return nil, err
	}
	defer src.close(context.WithoutCancel(ctx))
	res.Recovered = src.recovered
	if src.recovered > 0 {
		fmt.Fprintf(o.Out, "recovered %d unfinished transaction(s) on the snapshot, as the server would at start-up (the source is unchanged)\n", src.recovered)
	}
	// Recovery settles every journal; what is left (a journal it could not
	// decide, or a lock or placeholder without journal, found while
	// reading) is refused unless Force.
	j, err := countJournals(ctx, src.db)
	if err != nil {
		return nil, err
	}
	if j > 0 {
		if !o.Force {
			return nil, unfinishedError(fmt.Sprintf("%d transaction journal(s) left after recovery", j))
		}
		fmt.Fprintf(o.Out, "--force: migrating what readers see despite %d transaction journal(s) left after recovery\n", j)
	}
	types, legacy, err := src.types(ctx)
	if err != nil {
		return nil, err
	}
	if legacy {
		fmt.Fprintln(o.Out, "note: the collections 'resources' and 'history' of a layout older than per-type collections are ignored (store/mongo no longer reads them either)")
	}

	m := &migration{o: o, src: src, res: res}
	tmp := target + ".migrating"
	if !o.DryRun {
		if err := removeDB(tmp); err != nil {
			return nil, err
		}
		if replace {
			// The existing target holds no resources but may hold the
			// state kept beside them (authz_*, notify_*, visit_* tables):
			// the new file starts as a copy of it, so nothing is lost.
			if err := copyDB(ctx, target, tmp); err != nil {
				return nil, err
			}
		}
		m.dst, err = sqlite.Open(ctx, tmp, sqlite.Options{Logger: o.Logger, Synchronous: "normal"})
		if err != nil {
			return nil, fmt.Errorf("migrate: create %s: %w", tmp, err)
		}
		defer func() {
			if err != nil {
				if m.dst != nil {
					_ = m.dst.Close(context.WithoutCancel(ctx))
				}
				_ = removeDB(tmp)
			}
		}()
	}
	for _, t := range types {
		if err := m.migrateType(ctx, t); err != nil {
			return nil, err
		}
		c := res.Types[t]
		res.Total.add(c)
		fmt.Fprintf(o.Out, "%s: %d live, %d deleted, %d versions\n", t, c.Live, c.Deleted, c.Versions)
	}
	if o.DryRun {
		printCounts(o.Out, res)
		fmt.Fprintln(o.Out, "dry run: nothing written")
		return res, nil
	}
	if err := m.verifyTotals(ctx, m.dst, types); err != nil {
		return nil, err
	}
	err = m.dst.Close(ctx)
	m.dst = nil
	if err != nil {
		return nil, fmt.Errorf("migrate: close %s: %w", tmp, err)
	}
	if o.Carry != nil {
		what, err := o.Carry(ctx, src.db, tmp)
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		if what != "" {
			fmt.Fprintln(o.Out, what)
		}
	}
	if fi, err := os.Stat(tmp + "-wal"); err == nil && fi.Size() > 0 {
		return nil, fmt.Errorf("migrate: %s-wal was not checkpointed", tmp)
	}
	if replace {
		if err := removeDB(target); err != nil {
			return nil, err
		}
	}
	_ = os.Remove(tmp + "-wal")
	_ = os.Remove(tmp + "-shm")
	if err := os.Rename(tmp, target); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	// Read the counts once more from the file in place.
	if err := func() error {
		st, err := sqlite.Open(ctx, target, sqlite.Options{Logger: o.Logger})
		if err != nil {
			return fmt.Errorf("migrate: reopen %s: %w", target, err)
		}
		defer st.Close(context.WithoutCancel(ctx))
		return m.verifyTotals(ctx, st, types)
	}(); err != nil {
		_ = removeDB(target)
		return nil, err
	}
	res.Marker = filepath.Join(o.DataDir, MarkerFile)
	if err := writeMarker(res.Marker, o.Now(), ferretDir, res); err != nil {
		return nil, err
	}
	printCounts(o.Out, res)
	fmt.Fprintf(o.Out, "migrated into %s and verified: every version read back identical, counts equal.\n", target)
	fmt.Fprintf(o.Out, "%s is left unchanged; remove it when satisfied. Paging cursors are not carried over (clients start new searches).\n", ferretDir)
	return res, nil
}

func unfinishedError(what string) error {
	return fmt.Errorf("%w: %s; start fhirgate once on it (FHIRGATE_STORE=ferretdb) and stop it again, "+
		"or rerun with --force to migrate what readers see (create placeholders skipped)", ErrUnfinished, what)
}

// checkTarget fails when the SQLite store at target holds any version; an
// existing empty store is replaced at the end (replace true).
func checkTarget(ctx context.Context, target string, log *slog.Logger) (replace bool, err error) {
	if _, err := os.Stat(target); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	st, err := sqlite.Open(ctx, target, sqlite.Options{Logger: log})
	if err != nil {
		return false, fmt.Errorf("migrate: open existing %s: %w", target, err)
	}
	defer st.Close(context.WithoutCancel(ctx))
	p, err := st.History(ctx, store.HistoryQuery{Total: true})
	if err != nil {
		return false, fmt.Errorf("migrate: count %s: %w", target, err)
	}
	if p.Total > 0 {
		return false, fmt.Errorf("%w: %s holds %d version(s). Stop fhirgate and move it away first "+
			"(mv %s %s.bak, and its -wal and -shm files if present), then run fhirgate migrate again", ErrTargetNotEmpty, target, p.Total, target, target)
	}
	return true, nil
}

// copyDB writes a consistent copy of the SQLite database at from to the
// new file to (VACUUM INTO: sqlite.org/lang_vacuum.html#vacuuminto).
func copyDB(ctx context.Context, from, to string) error {
	db, err := sql.Open("sqlite", "file:"+from+"?mode=ro")
	if err != nil {
		return fmt.Errorf("migrate: open %s: %w", from, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", to); err != nil {
		return fmt.Errorf("migrate: copy %s: %w", from, err)
	}
	return nil
}

// removeDB removes an SQLite database file and its companions.
func removeDB(path string) error {
	for _, f := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

type migration struct {
	o   Options
	src *source
	dst *sqlite.Store // nil for a dry run
	res *Result
	// got: what the target holds per type, from the read-back.
	got map[string]*Counts
}

// resource is every version of one resource, oldest first.
type resource []vdoc

// migrateType migrates the versions of type t: its history is read into
// memory, the current documents are streamed, and every BatchResources
// resources are written and read back.
func (m *migration) migrateType(ctx context.Context, t string) error {
	hist := map[string][]vdoc{}
	if err := m.src.each(ctx, "hist_"+t, func(d vdoc) error {
		if d.T != t || d.I == "" {
			return fmt.Errorf("migrate: hist_%s: document %q of type %q", t, d.ID, d.T)
		}
		hist[d.I] = append(hist[d.I], d)
		return nil
	}); err != nil {
		return err
	}
	var batch []resource
	size := 0
	var c Counts
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := m.write(ctx, t, batch)
		batch, size = batch[:0], 0
		return err
	}
	err := m.src.each(ctx, "res_"+t, func(d vdoc) error {
		if d.Pending || d.Tx != "" {
			if !m.o.Force {
				return unfinishedError(fmt.Sprintf("%s is held by transaction %q", d.ID, d.Tx))
			}
			if d.Pending {
				m.res.Skipped++ // a create placeholder is no version
				fmt.Fprintf(m.o.Out, "--force: skipped the create placeholder %s\n", d.ID)
				return nil
			}
			// A locked document is the version readers see: migrated as it is.
		}
		if d.T != t || d.I == "" {
			return fmt.Errorf("migrate: res_%s: document %q of type %q", t, d.ID, d.T)
		}
		vs := hist[d.I]
		delete(hist, d.I)
		r := make(resource, 0, len(vs)+1)
		for _, h := range vs {
			switch {
			case h.V == d.V:
				continue // a crash's copy of the current version (README "Write paths")
			case h.V > d.V:
				return fmt.Errorf("migrate: %s/%s: history version %d newer than the current %d", t, d.I, h.V, d.V)
			}
			r = append(r, h)
		}
		slices.SortFunc(r, func(a, b vdoc) int { return cmp.Compare(a.V, b.V) })
		r = append(r, d)
		for i, v := range r {
			if v.V != int64(i+1) {
				return fmt.Errorf("migrate: %s/%s: versions %s are not 1..%d", t, d.I, versionList(r), d.V)
			}
			if !v.Del && len(v.Raw) == 0 {
				return fmt.Errorf("migrate: %s/%s/_history/%d: no resource bytes", t, d.I, v.V)
			}
			size += len(v.Raw)
		}
		c.Versions += int64(len(r))
		if d.Del {
			c.Deleted++
		} else {
			c.Live++
		}
		batch = append(batch, r)
		if len(batch) >= m.o.BatchResources || size >= 16<<20 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	if len(hist) > 0 {
		var ids []string
		for id := range hist {
			ids = append(ids, t+"/"+id)
		}
		slices.Sort(ids)
		return fmt.Errorf("migrate: %d resource(s) have history but no current version, e.g. %s", len(ids), strings.Join(ids[:min(3, len(ids))], ", "))
	}
	m.res.Types[t] = c
	return nil
}

func versionList(r resource) string {
	s := make([]string, len(r))
	for i, v := range r {
		s[i] = fmt.Sprint(v.V)
	}
	return strings.Join(s, ",")
}

// records derives the store records of r: the search values of every
// version from its bytes with the current registry; a tombstone carries
// those of the version it deleted, as the server's delete stores them.
func (m *migration) records(t string, r resource) ([]store.Record, error) {
	recs := make([]store.Record, len(r))
	var last search.Index
	for i, v := range r {
		rec := store.Record{Type: t, ID: v.I, VersionID: v.V, LastUpdated: v.LU, Deleted: v.Del, Release: v.Rel}
		if v.Del {
			rec.Index = last
		} else {
			rec.Raw = v.Raw
			tree, err := fhir.Decode(v.Raw)
			if err != nil {
				return nil, fmt.Errorf("migrate: %s/%s/_history/%d: %w", t, v.I, v.V, err)
			}
			if rec.Index, err = m.o.Registry.Extract(t, tree); err != nil {
				return nil, fmt.Errorf("migrate: %s/%s/_history/%d: search values: %w", t, v.I, v.V, err)
			}
			last = rec.Index
		}
		recs[i] = rec
	}
	return recs, nil
}

// write stores a batch: round k is one Transact of version k of every
// resource that has one (a transaction writes a resource once), so each
// version is put on top of the one before it with IfVersion, exactly as
// the server wrote it. Then every version is read back and compared.
func (m *migration) write(ctx context.Context, t string, batch []resource) error {
	all := make([][]store.Record, len(batch))
	rounds := 0
	for i, r := range batch {
		recs, err := m.records(t, r)
		if err != nil {
			return err
		}
		all[i] = recs
		rounds = max(rounds, len(recs))
	}
	if m.dst == nil {
		return nil
	}
	for k := 0; k < rounds; k++ {
		var ops []store.Op
		for _, recs := range all {
			if k >= len(recs) {
				continue
			}
			kind := store.OpPut
			if recs[k].Deleted {
				kind = store.OpDelete
			}
			ops = append(ops, store.Op{Kind: kind, Record: recs[k], IfVersion: int64(k)})
		}
		if err := m.dst.Transact(ctx, ops); err != nil {
			var oe *store.OpError
			if errors.As(err, &oe) && oe.Index < len(ops) {
				return fmt.Errorf("migrate: write %s/_history/%d: %w", ops[oe.Index].Record.Key(), ops[oe.Index].Record.VersionID, err)
			}
			return fmt.Errorf("migrate: write %s versions %d: %w", t, k+1, err)
		}
	}
	if m.got == nil {
		m.got = map[string]*Counts{}
	}
	g := m.got[t]
	if g == nil {
		g = &Counts{}
		m.got[t] = g
	}
	for _, recs := range all {
		last := recs[len(recs)-1]
		cur, err := m.dst.Read(ctx, t, last.ID)
		if err != nil {
			return fmt.Errorf("migrate: read back %s: %w", last.Key(), err)
		}
		if err := same(cur, last); err != nil {
			return fmt.Errorf("migrate: read back %s: %w", last.Key(), err)
		}
		if cur.Deleted {
			g.Deleted++
		} else {
			g.Live++
		}
		for _, want := range recs {
			got, err := m.dst.VRead(ctx, t, want.ID, want.VersionID)
			if err != nil {
				return fmt.Errorf("migrate: read back %s/_history/%d: %w", want.Key(), want.VersionID, err)
			}
			if err := same(got, want); err != nil {
				return fmt.Errorf("migrate: read back %s/_history/%d: %w", want.Key(), want.VersionID, err)
			}
			g.Versions++
		}
	}
	return nil
}

// same compares what a migration must keep of a version.
func same(got, want store.Record) error {
	switch {
	case got.Type != want.Type || got.ID != want.ID || got.VersionID != want.VersionID:
		return fmt.Errorf("got %s/_history/%d", got.Key(), got.VersionID)
	case !got.LastUpdated.Equal(want.LastUpdated):
		return fmt.Errorf("lastUpdated %s, want %s", got.LastUpdated.Format(time.RFC3339Nano), want.LastUpdated.Format(time.RFC3339Nano))
	case got.Deleted != want.Deleted:
		return fmt.Errorf("deleted %v, want %v", got.Deleted, want.Deleted)
	case !bytes.Equal(got.Raw, want.Raw):
		return errors.New("resource bytes differ")
	case !SameRelease(got.Release, want.Release):
		return fmt.Errorf("release %+v, want %+v", got.Release, want.Release)
	}
	return nil
}

// SameRelease reports whether two release states are equal (instants
// compared as instants).
func SameRelease(a, b store.Release) bool {
	return a.Patient.Equal(b.Patient) && a.Proxy.Equal(b.Proxy) && a.At.Equal(b.At) &&
		a.Rule == b.Rule && a.State == b.State && a.By == b.By && a.Note == b.Note
}

// verifyTotals compares the target's counts with the source's: per type
// the live resources (Search total), every version (History total), the
// deleted ones (read back); and the whole-system history total.
func (m *migration) verifyTotals(ctx context.Context, st store.Store, types []string) error {
	var sum int64
	for _, t := range types {
		want := m.res.Types[t]
		g := Counts{}
		if m.got[t] != nil {
			g = *m.got[t]
		}
		if g != want {
			return fmt.Errorf("migrate: %s: read back %+v, source %+v", t, g, want)
		}
		p, err := st.Search(ctx, store.Query{Types: []string{t}, Total: true})
		if err != nil {
			return fmt.Errorf("migrate: count %s: %w", t, err)
		}
		if p.Total != want.Live {
			return fmt.Errorf("migrate: %s: the target has %d live resources, the source %d", t, p.Total, want.Live)
		}
		h, err := st.History(ctx, store.HistoryQuery{Type: t, Total: true})
		if err != nil {
			return fmt.Errorf("migrate: count %s history: %w", t, err)
		}
		if h.Total != want.Versions {
			return fmt.Errorf("migrate: %s: the target has %d versions, the source %d", t, h.Total, want.Versions)
		}
		sum += want.Versions
	}
	h, err := st.History(ctx, store.HistoryQuery{Total: true})
	if err != nil {
		return fmt.Errorf("migrate: count history: %w", err)
	}
	if h.Total != sum {
		return fmt.Errorf("migrate: the target has %d versions in all, the source %d", h.Total, sum)
	}
	return nil
}

func printCounts(w io.Writer, r *Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "type\tlive\tdeleted\tversions\thistory\t")
	types := make([]string, 0, len(r.Types))
	for t := range r.Types {
		types = append(types, t)
	}
	slices.Sort(types)
	row := func(name string, c Counts) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", name, c.Live, c.Deleted, c.Versions, c.Versions-c.Live-c.Deleted)
	}
	for _, t := range types {
		row(t, r.Types[t])
	}
	row("total", r.Total)
	tw.Flush()
}

// writeMarker records the migration beside the source (MarkerFile).
func writeMarker(path string, at time.Time, source string, r *Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "migrated %s\n", at.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "source %s\ntarget %s\n", source, r.Target)
	printCounts(&b, r)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("migrate: write marker: %w", err)
	}
	return nil
}

// Migrated reports when the FerretDB store of dataDir was migrated (the
// marker written by Run).
func Migrated(dataDir string) (time.Time, bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, MarkerFile))
	if err != nil {
		return time.Time{}, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	s, ok := strings.CutPrefix(line, "migrated ")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(s))
	return t, err == nil
}
