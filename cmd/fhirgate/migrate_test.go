package main

// End to end: a server on the embedded FerretDB store (FHIRGATE_STORE=
// ferretdb) writes through HTTP, `fhirgate migrate` moves its data
// directory into SQLite, and a server on the default SQLite store serves
// the same versions, ETags, history and search (R4 http.html#vread,
// #history, search.html#token), with a changed start-up warning.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/embedded"
	"github.com/fhirgate/fhirgate/store/migrate"
	"github.com/fhirgate/fhirgate/store/mongo"
	"github.com/fhirgate/fhirgate/store/sqlite"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/authz/mongostore"
	"github.com/fhirgate/fhirgate/authz/sqlitestore"
	mdriver "go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

const migrateBase = "http://localhost:8080/fhir"

func do(t *testing.T, ts *httptest.Server, method, path, body string, want int) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, ts.URL+"/fhir/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	return resp
}

func startApp(t *testing.T, o app.Options) (*app.App, *httptest.Server) {
	t.Helper()
	a, err := app.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return a, httptest.NewServer(a.Handler)
}

// allVersions walks the whole-system history of st (every version, newest first).
func allVersions(t *testing.T, st store.Store) []store.Record {
	t.Helper()
	var out []store.Record
	q := store.HistoryQuery{Count: 7}
	for {
		p, err := st.History(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Records...)
		if p.Next == "" {
			return out
		}
		q.Cursor = p.Next
	}
}

func TestMigrateCommand(t *testing.T) {
	ctx := context.Background()
	if migrate.TargetFile != app.SQLiteFile {
		t.Fatalf("migrate writes %s, the server opens %s", migrate.TargetFile, app.SQLiteFile)
	}
	for _, k := range []string{"FHIRGATE_STORE", "FHIRGATE_MONGODB_URI", "FHIRGATE_SEARCH_PARAMETERS", "FHIRGATE_DATABASE", "FHIRGATE_BASE_URL"} {
		t.Setenv(k, "") // restored afterwards
		os.Unsetenv(k)
	}
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := app.Options{BaseURL: migrateBase, DataDir: dir, Store: "ferretdb", AuthDisabled: true, MaxBody: 1 << 20, Logger: quiet}

	// 1. Data written by a server on the FerretDB store.
	a, ts := startApp(t, opts)
	obs := `{"resourceType":"Observation","id":"o1","status":"%s","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"}}`
	do(t, ts, "PUT", "Patient/p1", `{"resourceType":"Patient","id":"p1","name":[{"family":"Ada"}]}`, 201)
	do(t, ts, "PUT", "Patient/p1", `{"resourceType":"Patient","id":"p1","name":[{"family":"Lovelace"}]}`, 200)
	do(t, ts, "PUT", "Observation/o1", fmt.Sprintf(obs, "preliminary"), 201)
	do(t, ts, "PUT", "Observation/o1", fmt.Sprintf(obs, "final"), 200)
	do(t, ts, "POST", "Encounter", `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"}}`, 201)
	do(t, ts, "PUT", "Patient/p2", `{"resourceType":"Patient","id":"p2"}`, 201)
	do(t, ts, "DELETE", "Patient/p2", "", 204)
	do(t, ts, "GET", "Observation/o1", "", 200)
	// A clinician's $hold (the store's SetDerived, as the operation stores it).
	hold := store.Release{Patient: store.Never, Proxy: store.Never, State: "held", By: "Practitioner/dr", At: time.Now().UTC().Truncate(time.Millisecond), Note: "harm"}
	if err := a.Store.SetDerived(ctx, "Observation", "o1", 2, nil, &hold); err != nil {
		t.Fatal(err)
	}
	ts.Close()
	a.Close(ctx) // flushes the audit trail: AuditEvents are in the store now

	// What the FerretDB store holds.
	srv, err := embedded.Start(ctx, filepath.Join(dir, "ferretdb"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := mongo.Open(ctx, srv.URI, "fhirgate", mongo.Options{RecoverAll: true})
	if err != nil {
		t.Fatal(err)
	}
	want := allVersions(t, ms)
	// The authorization server's state in the same database (authz/mongostore).
	client, err := mdriverConnect(ctx, srv.URI)
	if err != nil {
		t.Fatal(err)
	}
	as, err := mongostore.New(ctx, client.Database("fhirgate"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := authz.AddClient(ctx, as, authz.ClientSpec{ID: "growth", Name: "Growth Chart", Type: authz.TypePublic,
		RedirectURIs: []string{"https://app.example/index.html"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	_ = client.Disconnect(ctx)
	audits := 0
	for _, r := range want {
		if r.Type == "AuditEvent" {
			audits++
		}
	}
	ms.Close(ctx)
	srv.Stop()
	if audits == 0 || len(want) != 7+audits {
		t.Fatalf("fixture: %d versions, %d AuditEvents", len(want), audits)
	}

	// A server started on the default store meanwhile says what to do (and
	// leaves an empty SQLite store, which the migration replaces).
	var logs bytes.Buffer
	o1 := opts
	o1.Store = ""
	o1.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	a1, err := app.New(ctx, o1)
	if err != nil {
		t.Fatal(err)
	}
	a1.Close(ctx)
	if !strings.Contains(logs.String(), "run `fhirgate migrate`") {
		t.Errorf("start-up log before the migration:\n%s", logs.String())
	}

	// 2. fhirgate migrate: a dry run first, then the migration.
	var out bytes.Buffer
	migrateOut = &out
	defer func(w io.Writer) { migrateOut = w }(migrateOut)
	if err := run(ctx, []string{"migrate", "--data-dir", dir, "--base-url", migrateBase, "--dry-run"}); err != nil {
		t.Fatalf("migrate --dry-run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "dry run: nothing written") {
		t.Fatalf("dry run output:\n%s", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"migrate", "--from", "ferretdb", "--data-dir", dir, "--base-url", migrateBase}); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out.String())
	}
	t.Logf("fhirgate migrate:\n%s", out.String())
	for _, s := range []string{fmt.Sprintf("AuditEvent: %d live, 0 deleted, %d versions", audits, audits),
		"Patient: 1 live, 1 deleted, 4 versions", "Observation: 1 live, 0 deleted, 2 versions", "verified"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if err := run(ctx, []string{"migrate", "--data-dir", dir, "--base-url", migrateBase}); !errors.Is(err, migrate.ErrTargetNotEmpty) {
		t.Errorf("second migrate: %v", err)
	}
	if err := run(ctx, []string{"migrate", "--from", "mongodb", "--data-dir", dir}); err == nil {
		t.Error("--from mongodb accepted")
	}

	// The authorization server's state came along.
	if !strings.Contains(out.String(), "authorization server state:") {
		t.Errorf("output lacks the authorization server's state:\n%s", out.String())
	}
	func() {
		as, err := sqlitestore.Open(ctx, filepath.Join(dir, app.SQLiteFile))
		if err != nil {
			t.Fatal(err)
		}
		defer as.Close()
		if c, err := as.GetClient(ctx, "growth"); err != nil || c.Name != "Growth Chart" {
			t.Errorf("the client registered on FerretDB after the migration: %+v, %v", c, err)
		}
	}()

	// 3. The SQLite store holds every version exactly.
	st, err := sqlite.Open(ctx, filepath.Join(dir, app.SQLiteFile), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := allVersions(t, st)
	st.Close(ctx)
	if len(got) != len(want) {
		t.Fatalf("%d versions migrated, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Key() != w.Key() || g.VersionID != w.VersionID || !g.LastUpdated.Equal(w.LastUpdated) || g.Deleted != w.Deleted ||
			!bytes.Equal(g.Raw, w.Raw) || !migrate.SameRelease(g.Release, w.Release) {
			t.Errorf("history entry %d: got %s/%d %v, want %s/%d %v", i, g.Key(), g.VersionID, g.LastUpdated, w.Key(), w.VersionID, w.LastUpdated)
		}
	}

	// 4. A server on the SQLite store serves them; its warning says migrated.
	logs.Reset()
	o2 := opts
	o2.Store = ""
	o2.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	a2, ts2 := startApp(t, o2)
	defer func() { ts2.Close(); a2.Close(ctx) }()
	if !strings.Contains(logs.String(), "migrated to SQLite on") || !strings.Contains(logs.String(), "when satisfied") {
		t.Errorf("start-up log:\n%s", logs.String())
	}
	for _, w := range want {
		if w.Type != "Patient" && w.Type != "Observation" || w.Deleted {
			continue
		}
		r := do(t, ts2, "GET", fmt.Sprintf("%s/_history/%d", w.Key(), w.VersionID), "", 200)
		b, _ := io.ReadAll(r.Body)
		if !bytes.Equal(b, w.Raw) {
			t.Errorf("vread %s/%d: body differs:\n%s\n%s", w.Key(), w.VersionID, b, w.Raw)
		}
		if r.Header.Get("ETag") != fmt.Sprintf(`W/"%d"`, w.VersionID) {
			t.Errorf("vread %s/%d: ETag %q", w.Key(), w.VersionID, r.Header.Get("ETag"))
		}
		if lm := r.Header.Get("Last-Modified"); lm != w.LastUpdated.UTC().Format(http.TimeFormat) {
			t.Errorf("vread %s/%d: Last-Modified %q", w.Key(), w.VersionID, lm)
		}
	}
	do(t, ts2, "GET", "Patient/p2", "", 410)
	b, _ := io.ReadAll(do(t, ts2, "GET", "Observation?code=http://loinc.org|8867-4", "", 200).Body)
	if !strings.Contains(string(b), `"total":1`) || !strings.Contains(string(b), `"id":"o1"`) {
		t.Errorf("token search after migration: %s", b)
	}
	b, _ = io.ReadAll(do(t, ts2, "GET", "Patient/p1/_history", "", 200).Body)
	if strings.Count(string(b), `"fullUrl"`) != 2 || !strings.Contains(string(b), `"etag":"W/\"1\""`) {
		t.Errorf("instance history after migration: %s", b)
	}
}

func mdriverConnect(ctx context.Context, uri string) (*mdriver.Client, error) {
	return mdriver.Connect(options.Client().ApplyURI(uri))
}
