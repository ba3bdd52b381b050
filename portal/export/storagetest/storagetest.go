// Package storagetest is the conformance suite of export.Storage: every
// backend (sqlitestore, mongostore) runs it.
package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/portal/export"
)

// Run runs the suite; newStorage returns an empty storage per case.
func Run(t *testing.T, newStorage func(t *testing.T) export.Storage) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, export.Storage)
	}{
		{"CreateGetRoundTrip", testRoundTrip},
		{"PutReplaces", testPut},
		{"PutAfterDeleteIsNotFound", testPutDeleted},
		{"ListOldestFirst", testList},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newStorage(t)) })
	}
}

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func job(id string, created time.Time) export.Job {
	return export.Job{ID: id, Status: export.StatusQueued, Level: export.LevelGroup, Group: "g1",
		Types: []string{"Patient", "Observation"}, Since: t0.Add(-time.Hour), Patients: []string{"Patient/a"},
		Format: "application/fhir+ndjson", Request: "http://x/fhir/Group/g1/$export",
		Owner:   export.Owner{Issuer: "http://x/auth", Subject: "emr", ClientID: "emr", Scope: "system/*.rs"},
		Created: created}
}

func testRoundTrip(t *testing.T, s export.Storage) {
	ctx := context.Background()
	j := job("j1", t0)
	if err := s.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Group != "g1" || got.Owner != j.Owner || !got.Since.Equal(j.Since) || len(got.Types) != 2 || got.Patients[0] != "Patient/a" || !got.Created.Equal(t0) {
		t.Errorf("round trip: %+v", got)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, export.ErrNotFound) {
		t.Errorf("missing job: %v", err)
	}
	if err := s.Create(ctx, j); err == nil {
		t.Error("a second create of the same id succeeded")
	}
}

func testPut(t *testing.T, s export.Storage) {
	ctx := context.Background()
	j := job("j1", t0)
	if err := s.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	j.Status, j.Output = export.StatusComplete, []export.File{{Type: "Patient", Name: "Patient-1.ndjson", Count: 3}}
	j.Expires = t0.Add(24 * time.Hour)
	if err := s.Put(ctx, j); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "j1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != export.StatusComplete || len(got.Output) != 1 || got.Output[0].Count != 3 || !got.Expires.Equal(j.Expires) {
		t.Errorf("after put: %+v", got)
	}
}

func testPutDeleted(t *testing.T, s export.Storage) {
	ctx := context.Background()
	j := job("j1", t0)
	if err := s.Create(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "j1"); err != nil {
		t.Fatal(err)
	}
	j.Status = export.StatusRunning
	if err := s.Put(ctx, j); !errors.Is(err, export.ErrNotFound) {
		t.Errorf("put of a deleted job: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "j1"); !errors.Is(err, export.ErrNotFound) {
		t.Errorf("deleted job: %v", err)
	}
	if err := s.Delete(ctx, "j1"); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

func testList(t *testing.T, s export.Storage) {
	ctx := context.Background()
	for i, id := range []string{"c", "a", "b"} {
		if err := s.Create(ctx, job(id, t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	js, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids string
	for _, j := range js {
		ids += j.ID
	}
	if ids != "cab" {
		t.Errorf("list order %q, want cab (oldest first)", ids)
	}
}
