package migrate

// The migration from the embedded FerretDB store to SQLite on real parts:
// store/mongo on store/embedded writes a data set (creates, updates,
// deletes and a re-create, several types, a $hold, an AuditEvent, an
// instant with nanoseconds, a transaction a crash left unfinished), Run
// migrates it, and the SQLite store must answer read, vread, history
// (instance, type, system, _since; R4 http.html#history) and a token
// search as the FerretDB store did.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	mdriver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/embedded"
	"github.com/fhirgate/fhirgate/store/mongo"
	"github.com/fhirgate/fhirgate/store/sqlite"
)

const base = "http://localhost:8080/fhir"

var reg = search.Default().WithBase(base)

// fixture is what the FerretDB store answered before the migration.
type fixture struct {
	dir      string
	versions []store.Record // every version (VRead)
	current  []store.Record // Read of every resource
	hist     map[string][]store.Record
	counts   map[string]Counts
}

func version(t *testing.T, typ, id string, vid int64, lu time.Time, body string) store.Record {
	t.Helper()
	obj, err := fhir.ParseObject([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := fhir.StampMeta(obj, id, vid, lu); err != nil {
		t.Fatal(err)
	}
	raw := obj.Bytes()
	m, err := fhir.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := reg.Extract(typ, m)
	if err != nil {
		t.Fatal(err)
	}
	return store.Record{Type: typ, ID: id, VersionID: vid, LastUpdated: lu, Raw: raw, Index: idx}
}

func tomb(prev store.Record, lu time.Time) store.Record {
	return store.Record{Type: prev.Type, ID: prev.ID, VersionID: prev.VersionID + 1, LastUpdated: lu, Deleted: true, Index: prev.Index, Release: prev.Release}
}

var held = store.Release{Patient: store.Never, Proxy: store.Never, Rule: "path", State: "held", By: "Practitioner/doc", Note: "harm risk"}

// newFixture builds <dir>/ferretdb as the embedded mode writes it.
func newFixture(t *testing.T, extra func(ctx context.Context, db *mdriver.Database)) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := embedded.Start(ctx, filepath.Join(dir, SourceDir), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mongo.Open(ctx, srv.URI, "fhirgate", mongo.Options{RecoverAll: true,
		OnNewCollection: func(ctx context.Context) error { return srv.IndexIDs(ctx, "fhirgate") }})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	tx := func(ops ...store.Op) {
		t.Helper()
		if err := ms.Transact(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	put := func(r store.Record) store.Op {
		return store.Op{Kind: store.OpPut, Record: r, IfVersion: r.VersionID - 1}
	}
	del := func(r store.Record) store.Op {
		return store.Op{Kind: store.OpDelete, Record: r, IfVersion: r.VersionID - 1}
	}

	p1v1 := version(t, "Patient", "p1", 1, at(1), `{"resourceType":"Patient","name":[{"family":"Ada"}],"gender":"female"}`)
	p2v1 := version(t, "Patient", "p2", 1, at(1).Add(123456789), `{"resourceType":"Patient","name":[{"family":"Nano"}]}`)
	tx(store.Op{Kind: store.OpCreate, Record: p1v1}, store.Op{Kind: store.OpCreate, Record: p2v1})
	p1v2 := version(t, "Patient", "p1", 2, at(2), `{"resourceType":"Patient","name":[{"family":"Ada"}],"gender":"other"}`)
	tx(put(p1v2))
	p1v3 := tomb(p1v2, at(3))
	tx(del(p1v3))
	p1v4 := version(t, "Patient", "p1", 4, at(4), `{"resourceType":"Patient","name":[{"family":"Lovelace"}]}`)
	tx(put(p1v4))

	obs := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"%s"}]},"subject":{"reference":"Patient/p2"}}`
	o1v1 := version(t, "Observation", "o1", 1, at(5), fmt.Sprintf(obs, "8867-4"))
	o2v1 := version(t, "Observation", "o2", 1, at(5), fmt.Sprintf(obs, "29463-7"))
	tx(store.Op{Kind: store.OpCreate, Record: o1v1}, store.Op{Kind: store.OpCreate, Record: o2v1})
	o1v2 := version(t, "Observation", "o1", 2, at(6), fmt.Sprintf(strings.Replace(obs, "final", "amended", 1), "8867-4"))
	tx(put(o1v2))
	h := held
	h.At = at(7)
	if err := ms.SetDerived(ctx, "Observation", "o1", 2, nil, &h); err != nil { // $hold
		t.Fatal(err)
	}
	tx(del(tomb(o2v1, at(8))))

	ae := version(t, "AuditEvent", "a1", 1, at(9), `{"resourceType":"AuditEvent","type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110110"},"recorded":"2024-03-01T10:09:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"fhirgate"}},"entity":[{"what":{"reference":"Observation/o1"}}]}`)
	ae.Release = store.Release{Patient: store.Never, Proxy: store.Never, State: "follows-subject"}
	if err := ms.Append(ctx, []store.Record{ae}); err != nil {
		t.Fatal(err)
	}

	f := &fixture{dir: dir, hist: map[string][]store.Record{}, counts: map[string]Counts{
		"Patient":     {Live: 2, Versions: 5},
		"Observation": {Live: 1, Deleted: 1, Versions: 4},
		"AuditEvent":  {Live: 1, Versions: 1},
	}}
	for _, k := range [][2]string{{"Patient", "p1"}, {"Patient", "p2"}, {"Observation", "o1"}, {"Observation", "o2"}, {"AuditEvent", "a1"}} {
		cur, err := ms.Read(ctx, k[0], k[1])
		if err != nil {
			t.Fatal(err)
		}
		f.current = append(f.current, cur)
		for v := int64(1); v <= cur.VersionID; v++ {
			r, err := ms.VRead(ctx, k[0], k[1], v)
			if err != nil {
				t.Fatal(err)
			}
			f.versions = append(f.versions, r)
		}
	}
	for _, q := range histQueries(at(4)) {
		p, err := ms.History(ctx, q.q)
		if err != nil {
			t.Fatal(err)
		}
		f.hist[q.name] = p.Records
	}
	if extra != nil {
		c, err := mdriver.Connect(options.Client().ApplyURI(srv.URI))
		if err != nil {
			t.Fatal(err)
		}
		extra(ctx, c.Database("fhirgate"))
		_ = c.Disconnect(ctx)
	}
	if err := ms.Close(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	return f
}

type namedQuery struct {
	name string
	q    store.HistoryQuery
}

func histQueries(since time.Time) []namedQuery {
	return []namedQuery{
		{"instance", store.HistoryQuery{Type: "Patient", ID: "p1", Count: 50}},
		{"type", store.HistoryQuery{Type: "Observation", Count: 50}},
		{"system", store.HistoryQuery{Count: 50}},
		{"since", store.HistoryQuery{Since: since, Count: 50}},
	}
}

// unfinished leaves a transaction as a crash would: a journal header
// without decision and the create placeholder it inserted.
func unfinished(t *testing.T) func(ctx context.Context, db *mdriver.Database) {
	return func(ctx context.Context, db *mdriver.Database) {
		old := time.Date(2024, 3, 1, 11, 0, 0, 0, time.UTC)
		if _, err := db.Collection("txlog").InsertOne(ctx, bson.D{{Key: "_id", Value: "deadtx"}, {Key: "k", Value: "h"},
			{Key: "at", Value: old}, {Key: "owner", Value: "dead"}, {Key: "keys", Value: bson.A{bson.D{{Key: "k", Value: "Patient/ph"}, {Key: "if", Value: int64(0)}}}},
			{Key: "chunks", Value: 0}}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Collection("res_Patient").InsertOne(ctx, bson.D{{Key: "_id", Value: "Patient/ph"}, {Key: "t", Value: "Patient"},
			{Key: "i", Value: "ph"}, {Key: "v", Value: int64(1)}, {Key: "lu", Value: old}, {Key: "del", Value: true},
			{Key: "raw", Value: bson.Binary{Data: []byte(`{"resourceType":"Patient","id":"ph"}`)}},
			{Key: "tx", Value: "deadtx"}, {Key: "pending", Value: true}}); err != nil {
			t.Fatal(err)
		}
	}
}

// dirHash fingerprints every file of dir (names and contents).
func dirHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		if os.Getenv("MIGRATE_DEBUG") != "" {
			t.Logf("%s %d %x", p, len(b), sha256.Sum256(b))
		}
		h.Write(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, unfinished(t))
	srcHash := dirHash(t, filepath.Join(f.dir, SourceDir))
	var out bytes.Buffer
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	res, err := Run(ctx, Options{DataDir: f.dir, Registry: reg, Out: &out, BatchResources: 2, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	if got := dirHash(t, filepath.Join(f.dir, SourceDir)); got != srcHash {
		t.Error("the source directory changed")
	}
	if res.Recovered != 1 {
		t.Errorf("recovered %d journals, want 1", res.Recovered)
	}
	for typ, want := range f.counts {
		if res.Types[typ] != want {
			t.Errorf("%s counts %+v, want %+v", typ, res.Types[typ], want)
		}
	}
	if res.Total != (Counts{Live: 4, Deleted: 1, Versions: 10}) {
		t.Errorf("total %+v", res.Total)
	}
	for _, line := range []string{"Patient: 2 live, 0 deleted, 5 versions", "Observation: 1 live, 1 deleted, 4 versions"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output lacks %q", line)
		}
	}
	if !strings.Contains(out.String(), "total") || !strings.Contains(out.String(), "verified") {
		t.Errorf("output lacks the totals / verification:\n%s", out.String())
	}
	if when, ok := Migrated(f.dir); !ok || !when.Equal(at) {
		t.Errorf("Migrated = %v, %v", when, ok)
	}
	if _, err := os.Stat(filepath.Join(f.dir, TargetFile+".migrating")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary target left: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(f.dir, ".migrate-snapshot-*")); len(m) > 0 {
		t.Errorf("snapshot left: %v", m)
	}

	st, err := sqlite.Open(ctx, filepath.Join(f.dir, TargetFile), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	for _, want := range f.versions {
		got, err := st.VRead(ctx, want.Type, want.ID, want.VersionID)
		if err != nil {
			t.Fatalf("VRead %s/%d: %v", want.Key(), want.VersionID, err)
		}
		if err := same(got, want); err != nil {
			t.Errorf("VRead %s/%d: %v", want.Key(), want.VersionID, err)
		}
		if !got.LastUpdated.Equal(want.LastUpdated) || got.LastUpdated.Nanosecond() != want.LastUpdated.Nanosecond() {
			t.Errorf("%s/%d lastUpdated %v, want %v", want.Key(), want.VersionID, got.LastUpdated, want.LastUpdated)
		}
	}
	if p2, _ := st.Read(ctx, "Patient", "p2"); p2.LastUpdated.Nanosecond() != 123456789 {
		t.Errorf("Patient/p2 lastUpdated %v: nanoseconds lost", p2.LastUpdated)
	}
	for _, want := range f.current {
		got, err := st.Read(ctx, want.Type, want.ID)
		if err != nil {
			t.Fatalf("Read %s: %v", want.Key(), err)
		}
		if err := same(got, want); err != nil {
			t.Errorf("Read %s: %v", want.Key(), err)
		}
	}
	if _, err := st.Read(ctx, "Patient", "ph"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the unfinished create's placeholder was migrated: %v", err)
	}
	for _, q := range histQueries(time.Date(2024, 3, 1, 10, 4, 0, 0, time.UTC)) {
		p, err := st.History(ctx, q.q)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := histKeys(p.Records), histKeys(f.hist[q.name]); a != b {
			t.Errorf("%s history:\n got %s\nwant %s", q.name, a, b)
		}
	}
	// A token search finds the migrated resource by its re-derived values.
	parsed, err := reg.Parse("Observation", url.Values{"code": {"http://loinc.org|8867-4"}}, search.ParseOptions{Strict: true, Base: base})
	if err != nil {
		t.Fatal(err)
	}
	page, err := st.Search(ctx, store.Query{Types: []string{"Observation"}, Filter: parsed.Filter, Count: 10, Total: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 1 || page.Records[0].ID != "o1" || page.Total != 1 {
		t.Errorf("code search: %d records, total %d", len(page.Records), page.Total)
	}
	// The deleted Observation is not found; the other code is gone with it.
	parsed, _ = reg.Parse("Observation", url.Values{"code": {"29463-7"}}, search.ParseOptions{Strict: true, Base: base})
	if page, err := st.Search(ctx, store.Query{Types: []string{"Observation"}, Filter: parsed.Filter, Count: 10, Total: true}); err != nil || page.Total != 0 {
		t.Errorf("the deleted Observation is found: %v %v", page.Total, err)
	}
	// The $hold is kept.
	o1, _ := st.Read(ctx, "Observation", "o1")
	if o1.Release.State != "held" || !o1.Release.Patient.Equal(store.Never) || o1.Release.By != "Practitioner/doc" || o1.Release.Note != "harm risk" {
		t.Errorf("Observation/o1 release %+v", o1.Release)
	}
	a1, _ := st.Read(ctx, "AuditEvent", "a1")
	if a1.Release.State != "follows-subject" || len(a1.Index.Ref) == 0 {
		t.Errorf("AuditEvent/a1 %+v, index %+v", a1.Release, a1.Index.Ref)
	}

	// A second run refuses the non-empty target and changes nothing.
	st.Close(ctx)
	before := fileHash(t, filepath.Join(f.dir, TargetFile))
	out.Reset()
	_, err = Run(ctx, Options{DataDir: f.dir, Registry: reg, Out: &out})
	if !errors.Is(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), "mv ") {
		t.Fatalf("second run: %v", err)
	}
	if fileHash(t, filepath.Join(f.dir, TargetFile)) != before {
		t.Error("the refused run changed the target")
	}
}

func histKeys(rs []store.Record) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s/%d@%s del=%v; ", r.Key(), r.VersionID, r.LastUpdated.Format(time.RFC3339Nano), r.Deleted)
	}
	return b.String()
}

func fileHash(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func TestDryRunWritesNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	var out bytes.Buffer
	res, err := Run(ctx, Options{DataDir: f.dir, Registry: reg, Out: &out, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total != (Counts{Live: 4, Deleted: 1, Versions: 10}) || res.Marker != "" {
		t.Errorf("dry run result %+v", res)
	}
	if !strings.Contains(out.String(), "dry run: nothing written") {
		t.Errorf("output:\n%s", out.String())
	}
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != SourceDir {
			t.Errorf("the dry run left %s", e.Name())
		}
	}
	if _, ok := Migrated(f.dir); ok {
		t.Error("marker written by a dry run")
	}
}

// A failure part-way (a stored resource the registry cannot index) leaves
// no target behind.
func TestFailureRemovesPartialTarget(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, func(ctx context.Context, db *mdriver.Database) {
		if _, err := db.Collection("res_Patient").InsertOne(ctx, bson.D{{Key: "_id", Value: "Patient/zz"}, {Key: "t", Value: "Patient"},
			{Key: "i", Value: "zz"}, {Key: "v", Value: int64(1)}, {Key: "lu", Value: time.Now()}, {Key: "del", Value: false},
			{Key: "raw", Value: bson.Binary{Data: []byte(`{not json`)}}}); err != nil {
			t.Fatal(err)
		}
	})
	_, err := Run(ctx, Options{DataDir: f.dir, Registry: reg, BatchResources: 1})
	if err == nil || !strings.Contains(err.Error(), "Patient/zz") {
		t.Fatalf("Run: %v", err)
	}
	entries, _ := os.ReadDir(f.dir)
	for _, e := range entries {
		if e.Name() != SourceDir {
			t.Errorf("the failed run left %s", e.Name())
		}
	}
}

// An unfinished transaction that recovery cannot settle (a lock whose
// journal is gone is released by recovery too, so: a placeholder without
// journal is refused unless Force).
func TestUnfinishedRefusedWithoutForce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, func(ctx context.Context, db *mdriver.Database) {
		if _, err := db.Collection("res_Patient").InsertOne(ctx, bson.D{{Key: "_id", Value: "Patient/ph"}, {Key: "t", Value: "Patient"},
			{Key: "i", Value: "ph"}, {Key: "v", Value: int64(1)}, {Key: "lu", Value: time.Now()}, {Key: "del", Value: true},
			{Key: "tx", Value: "gone"}, {Key: "pending", Value: true}}); err != nil {
			t.Fatal(err)
		}
	})
	_, err := Run(ctx, Options{DataDir: f.dir, Registry: reg})
	if !errors.Is(err, ErrUnfinished) {
		t.Fatalf("Run without Force: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, TargetFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("target written: %v", err)
	}
	res, err := Run(ctx, Options{DataDir: f.dir, Registry: reg, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != 1 || res.Total.Versions != 10 {
		t.Errorf("with Force: skipped %d, %+v", res.Skipped, res.Total)
	}
}

// Documents of the layouts store/mongo wrote before (the compact layout's
// ixb, k, srt; the nested idx; a derived-state counter; a crash's history
// copy of the current version) migrate the same: their search values are
// derived again from the bytes, not read.
func TestOldLayouts(t *testing.T) {
	ctx := context.Background()
	lu1 := time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)
	lu2 := time.Date(2023, 1, 2, 3, 4, 6, 7e6, time.UTC) // + lun 42 ns
	raw := func(v int, code string) []byte {
		return []byte(fmt.Sprintf(`{"resourceType":"Basic","id":"b1","meta":{"versionId":"%d"},"code":{"coding":[{"system":"urn:s","code":"%s"}]}}`, v, code))
	}
	rel := bson.D{{Key: "s", Value: "released"}, {Key: "b", Value: "Practitioner/x"}, {Key: "a", Value: lu2}}
	cur := bson.D{{Key: "_id", Value: "Basic/b1"}, {Key: "t", Value: "Basic"}, {Key: "i", Value: "b1"}, {Key: "v", Value: int64(2)},
		{Key: "lu", Value: lu2}, {Key: "lun", Value: int64(42)}, {Key: "del", Value: false}, {Key: "raw", Value: bson.Binary{Data: raw(2, "new")}},
		{Key: "ixb", Value: bson.Binary{Data: []byte{0xde, 0xad}}}, {Key: "k", Value: "\ntok.c=stale\n"}, {Key: "srt", Value: bson.D{{Key: "code", Value: "stale"}}},
		{Key: "rel", Value: rel}, {Key: "dv", Value: int64(1)}, {Key: "c", Value: "inserttx"}}
	f := newFixture(t, func(ctx context.Context, db *mdriver.Database) {
		if _, err := db.Collection("res_Basic").InsertOne(ctx, cur); err != nil {
			t.Fatal(err)
		}
		copyOfCur := append(bson.D{{Key: "_id", Value: "Basic/b1/2"}}, cur[1:]...)
		if _, err := db.Collection("hist_Basic").InsertMany(ctx, []any{
			bson.D{{Key: "_id", Value: "Basic/b1/1"}, {Key: "t", Value: "Basic"}, {Key: "i", Value: "b1"}, {Key: "v", Value: int32(1)},
				{Key: "lu", Value: lu1}, {Key: "del", Value: false}, {Key: "raw", Value: bson.Binary{Data: raw(1, "old")}},
				{Key: "idx", Value: bson.D{{Key: "tok", Value: bson.A{bson.D{{Key: "p", Value: "code"}, {Key: "c", Value: "stale"}}}}}}},
			copyOfCur,
		}); err != nil {
			t.Fatal(err)
		}
	})
	res, err := Run(ctx, Options{DataDir: f.dir, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if res.Types["Basic"] != (Counts{Live: 1, Versions: 2}) {
		t.Errorf("Basic counts %+v", res.Types["Basic"])
	}
	st, err := sqlite.Open(ctx, filepath.Join(f.dir, TargetFile), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	v1, err := st.VRead(ctx, "Basic", "b1", 1)
	if err != nil || !bytes.Equal(v1.Raw, raw(1, "old")) || !v1.LastUpdated.Equal(lu1) {
		t.Errorf("Basic/b1/1: %v %s %v", err, v1.Raw, v1.LastUpdated)
	}
	v2, err := st.Read(ctx, "Basic", "b1")
	if err != nil || v2.VersionID != 2 || !bytes.Equal(v2.Raw, raw(2, "new")) || !v2.LastUpdated.Equal(lu2.Add(42)) {
		t.Errorf("Basic/b1: %v %d %v", err, v2.VersionID, v2.LastUpdated)
	}
	if v2.Release.State != "released" || v2.Release.By != "Practitioner/x" || !v2.Release.At.Equal(lu2) {
		t.Errorf("Basic/b1 release %+v", v2.Release)
	}
	for code, n := range map[string]int64{"new": 1, "old": 0, "stale": 0} {
		p, _ := reg.Parse("Basic", url.Values{"code": {"urn:s|" + code}}, search.ParseOptions{Strict: true, Base: base})
		page, err := st.Search(ctx, store.Query{Types: []string{"Basic"}, Filter: p.Filter, Total: true})
		if err != nil || page.Total != n {
			t.Errorf("Basic?code=%s: %d (%v), want %d", code, page.Total, err, n)
		}
	}
}

// A data directory whose FerretDB was killed keeps commits in SQLite's
// write-ahead log: the snapshot must include them.
func TestSnapshotIncludesWriteAheadLog(t *testing.T) {
	ctx := context.Background()
	live := t.TempDir()
	srv, err := embedded.Start(ctx, live, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	ms, err := mongo.Open(ctx, srv.URI, "fhirgate", mongo.Options{RecoverAll: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close(ctx)
	lu := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		r := version(t, "Patient", fmt.Sprintf("w%d", i), 1, lu, `{"resourceType":"Patient"}`)
		if err := ms.Transact(ctx, []store.Op{{Kind: store.OpCreate, Record: r}}); err != nil {
			t.Fatal(err)
		}
	}
	// Copy the files as a kill -9 leaves them (FerretDB still running).
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, SourceDir), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"fhirgate.sqlite", "fhirgate.sqlite-wal", "fhirgate.sqlite-shm"} {
		b, err := os.ReadFile(filepath.Join(live, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "fhirgate.sqlite-wal" && len(b) == 0 {
			t.Skip("FerretDB checkpointed everything: no write-ahead log to test")
		}
		if err := os.WriteFile(filepath.Join(dir, SourceDir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Run(ctx, Options{DataDir: dir, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if res.Types["Patient"] != (Counts{Live: 3, Versions: 3}) {
		t.Errorf("Patient counts %+v, want the 3 creates", res.Types["Patient"])
	}
}

// TestKeepsStateBesideResources: an existing target without resources
// (a server started on SQLite before the migration) keeps what it holds
// beside them — the authorization server's, notifications' and eVisit
// tables — and Carry receives the source database and the new file
// before it is put in place.
func TestKeepsStateBesideResources(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, func(ctx context.Context, db *mdriver.Database) {
		if _, err := db.Collection("authz_probe").InsertOne(ctx, map[string]any{"_id": "k", "v": "from ferretdb"}); err != nil {
			t.Fatal(err)
		}
	})
	target := filepath.Join(f.dir, TargetFile)
	st, err := sqlite.Open(ctx, target, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close(ctx)
	db, err := sql.Open("sqlite", target)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE authz_accounts(id TEXT PRIMARY KEY, name TEXT); INSERT INTO authz_accounts VALUES ('a1', 'mia')`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	var carried string
	var out bytes.Buffer
	_, err = Run(ctx, Options{DataDir: f.dir, Registry: reg, Out: &out, Carry: func(ctx context.Context, src *mdriver.Database, tmp string) (string, error) {
		var doc struct{ V string }
		if err := src.Collection("authz_probe").FindOne(ctx, map[string]any{"_id": "k"}).Decode(&doc); err != nil {
			return "", err
		}
		if tmp == target {
			return "", fmt.Errorf("Carry got the target in place, not the new file")
		}
		db, err := sql.Open("sqlite", tmp)
		if err != nil {
			return "", err
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, `INSERT INTO authz_accounts VALUES ('a2', ?)`, doc.V); err != nil {
			return "", err
		}
		carried = doc.V
		return "carried 1", nil
	}})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if carried != "from ferretdb" || !strings.Contains(out.String(), "carried 1") {
		t.Fatalf("Carry: %q\n%s", carried, out.String())
	}
	db, err = sql.Open("sqlite", target)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var names []string
	rows, err := db.Query(`SELECT name FROM authz_accounts ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	rows.Close()
	if strings.Join(names, ",") != "mia,from ferretdb" {
		t.Fatalf("state beside the resources after the migration: %v", names)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM res`).Scan(&n); err != nil || n == 0 {
		t.Fatalf("resources migrated: %d, %v", n, err)
	}
}
