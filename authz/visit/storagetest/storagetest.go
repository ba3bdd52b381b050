// Package storagetest is the conformance suite of visit.Storage: every
// implementation (sqlitestore, mongostore) runs Run.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/authz/visit"
)

// Run runs every case, each on a fresh storage from newStorage.
func Run(t *testing.T, newStorage func(t *testing.T) visit.Storage) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, visit.Storage)
	}{
		{"CreateGetRoundTrip", testRoundTrip},
		{"CreateTwiceIsErrExists", testExists},
		{"ListIsPerAppointmentOldestFirst", testList},
		{"FailCountsAndLocks", testFail},
		{"UseOnceThenSession", testUse},
		{"ExpiredIsNotPending", testExpired},
		{"RevokeEndsEverything", testRevoke},
		{"ConcurrentUseHasOneWinner", testConcurrentUse},
		{"ConcurrentFailuresAllCount", testConcurrentFail},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newStorage(t)) })
	}
}

var t0 = time.Date(2026, 5, 4, 13, 0, 0, 0, time.UTC)

func sample(id, appt string, created time.Time) visit.Invitation {
	return visit.Invitation{ID: id, Appointment: appt, Participant: "Patient/p1", Name: "Jo Test", Email: id + "@example.org",
		Lang: "fr", InvitedBy: "Practitioner/dr", TokenHash: "tok-" + id, PINSalt: []byte("salt-" + id), PINHash: []byte("hash-" + id),
		CreatedAt: created, ExpiresAt: t0.Add(2 * time.Hour)}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testRoundTrip(t *testing.T, s visit.Storage) {
	ctx := context.Background()
	in := sample("a1", "Appointment/1", t0)
	must(t, s.Create(ctx, in))
	for name, get := range map[string]func() (visit.Invitation, error){
		"Get":     func() (visit.Invitation, error) { return s.Get(ctx, "a1") },
		"ByToken": func() (visit.Invitation, error) { return s.ByToken(ctx, "tok-a1") },
	} {
		got, err := get()
		must(t, err)
		if got.ID != in.ID || got.Appointment != in.Appointment || got.Participant != in.Participant || got.Name != in.Name ||
			got.Email != in.Email || got.Lang != in.Lang || got.InvitedBy != in.InvitedBy || got.TokenHash != in.TokenHash ||
			string(got.PINSalt) != string(in.PINSalt) || string(got.PINHash) != string(in.PINHash) ||
			!got.CreatedAt.Equal(in.CreatedAt) || !got.ExpiresAt.Equal(in.ExpiresAt) || got.Attempts != 0 ||
			!got.UsedAt.IsZero() || !got.LockedAt.IsZero() || !got.RevokedAt.IsZero() || got.SessionHash != "" {
			t.Fatalf("%s: got %+v, want %+v", name, got, in)
		}
		if got.Status(t0) != visit.StatusPending {
			t.Fatalf("%s: status %s", name, got.Status(t0))
		}
	}
	for name, err := range map[string]error{
		"Get":       errOf(s.Get(ctx, "nope")),
		"ByToken":   errOf(s.ByToken(ctx, "nope")),
		"BySession": errOf(s.BySession(ctx, "nope")),
		"empty":     errOf(s.BySession(ctx, "")),
	} {
		if !errors.Is(err, visit.ErrNotFound) {
			t.Errorf("%s of a missing invitation: %v, want ErrNotFound", name, err)
		}
	}
}

func errOf(_ visit.Invitation, err error) error { return err }

func testExists(t *testing.T, s visit.Storage) {
	ctx := context.Background()
	must(t, s.Create(ctx, sample("a1", "Appointment/1", t0)))
	if err := s.Create(ctx, sample("a1", "Appointment/1", t0)); !errors.Is(err, visit.ErrExists) {
		t.Fatalf("same id: %v, want ErrExists", err)
	}
	dup := sample("a2", "Appointment/1", t0)
	dup.TokenHash = "tok-a1"
	if err := s.Create(ctx, dup); !errors.Is(err, visit.ErrExists) {
		t.Fatalf("same token hash: %v, want ErrExists", err)
	}
}

func testList(t *testing.T, s visit.Storage) {
	ctx := context.Background()
	must(t, s.Create(ctx, sample("c", "Appointment/1", t0.Add(2*time.Minute))))
	must(t, s.Create(ctx, sample("a", "Appointment/1", t0)))
	must(t, s.Create(ctx, sample("b", "Appointment/2", t0.Add(time.Minute))))
	got, err := s.List(ctx, "Appointment/1")
	must(t, err)
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "c" {
		t.Fatalf("list: %+v", got)
	}
	if got, err := s.List(ctx, "Appointment/9"); err != nil || len(got) != 0 {
		t.Fatalf("list of none: %v %v", got, err)
	}
}

func testFail(t *testing.T, s visit.Storage) {
	ctx := context.Background()
	must(t, s.Create(ctx, sample("a1", "Appointment/1", t0)))
	for i := 1; i <= 5; i++ {
		inv, err := s.Fail(ctx, "a1", 5, t0.Add(time.Duration(i)*time.Second))
		must(t, err)
		if inv.Attempts != i || (i < 5) != inv.LockedAt.IsZero() {
			t.Fatalf("failure %d: attempts %d, locked %v", i, inv.Attempts, inv.LockedAt)
		}
	}
	if _, err := s.Fail(ctx, "a1", 5, t0.Add(time.Minute)); !errors.Is(err, visit.ErrNotPending) {
		t.Fatalf("a failure after the lock: %v, want ErrNotPending", err)
	}
	if err := s.Use(ctx, "a1", "sess", t0.Add(time.Hour), t0.Add(time.Minute)); !errors.Is(err, visit.ErrNotPending) {
		t.Fatalf("use after the lock: %v, want ErrNotPending", err)
	}
	inv, err := s.Get(ctx, "a1")
	must(t, err)
	if inv.Status(t0.Add(time.Minute)) != visit.StatusLocked || inv.Attempts != 5 || !inv.LockedAt.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("locked invitation: %+v", inv)
	}
}

func testUse(t *testing.T, s visit.Storage) {
	ctx := context.Background()
	must(t, s.Create(ctx, sample("a1", "Appointment/1", t0)))
	_, err := s.Fail(ctx, "a1", 5, t0)
	must(t, err)
	must(t, s.Use(ctx, "a1", "sess-1", t0.Add(time.Hour), t0.Add(time.Second)))
	if err := s.Use(ctx, "a1", "sess-2", t0.Add(time.Hour), t0.Add(2*time.Second)); !errors.Is(err, visit.ErrNotPending) {
		t.Fatalf("second use: %v, want ErrNotPending", err)
	}
	if _, err := s.Fail(ctx, "a1", 5, t0.Add(3*time.Second)); !errors.Is(err, visit.ErrNotPending) {
		t.Fatalf("failure after use: %v, want ErrNotPending", err)
	}
	inv, err := s.BySession(ctx, "sess-1")
	must(t, err)
	if inv.ID != "a1" || !inv.UsedAt.Equal(t0.Add(time.Second)) || !inv.SessionExpires.Equal(t0.Add(time.Hour)) ||
		inv.Attempts != 1 || inv.Status(t0.Add(time.Minute)) != visit.StatusUsed {
		t.Fatalf("used invitation: %+v", inv)
	}
	if _, err := s.BySession(ctx, "sess-2"); !errors.Is(err, visit.ErrNotFound) {
		t.Fatalf("the losing session: %v, want ErrNotFound", err)
	}
}

func testExpired(t *testing.T, s visit.Storage) {
	ctx := context.Background()
	in := sample("a1", "Appointment/1", t0)
	must(t, s.Create(ctx, in))
	if err := s.Use(ctx, "a1", "sess", in.ExpiresAt.Add(time.Hour), in.ExpiresAt); !errors.Is(err, visit.ErrNotPending) {
		t.Fatalf("use at expiry: %v, want ErrNotPending", err)
	}
	if _, err := s.Fail(ctx, "a1", 5, in.ExpiresAt.Add(time.Second)); !errors.Is(err, visit.ErrNotPending) {
		t.Fatalf("failure after expiry: %v, want ErrNotPending", err)
	}
	got, err := s.Get(ctx, "a1")
	must(t, err)
	if got.Status(in.ExpiresAt) != visit.StatusExpired || got.Attempts != 0 {
		t.Fatalf("expired invitation: %+v", got)
	}
	// Just before its expiry it is still usable.
	must(t, s.Use(ctx, "a1", "sess", in.ExpiresAt, in.ExpiresAt.Add(-time.Nanosecond)))
}

func testRevoke(t *testing.T, s visit.Storage) {
	ctx := context.Background()
	must(t, s.Create(ctx, sample("a1", "Appointment/1", t0)))
	must(t, s.Create(ctx, sample("a2", "Appointment/1", t0)))
	must(t, s.Use(ctx, "a2", "sess", t0.Add(time.Hour), t0))
	must(t, s.Revoke(ctx, "a1", "", t0.Add(time.Minute)))
	must(t, s.Revoke(ctx, "a1", "a3", t0.Add(2*time.Minute))) // a re-send names its replacement; the first time stays
	must(t, s.Revoke(ctx, "a2", "", t0.Add(time.Minute)))
	if err := s.Use(ctx, "a1", "s", t0.Add(time.Hour), t0.Add(3*time.Minute)); !errors.Is(err, visit.ErrNotPending) {
		t.Fatalf("use after revoke: %v", err)
	}
	if _, err := s.Fail(ctx, "a1", 5, t0.Add(3*time.Minute)); !errors.Is(err, visit.ErrNotPending) {
		t.Fatalf("failure after revoke: %v", err)
	}
	inv, err := s.Get(ctx, "a1")
	must(t, err)
	if !inv.RevokedAt.Equal(t0.Add(time.Minute)) || inv.ReplacedBy != "a3" || inv.Status(t0) != visit.StatusRevoked {
		t.Fatalf("revoked: %+v", inv)
	}
	// The session of a revoked invitation is found, and shows revoked.
	inv, err = s.BySession(ctx, "sess")
	must(t, err)
	if inv.RevokedAt.IsZero() {
		t.Fatal("the session's invitation does not show its revocation")
	}
	if err := s.Revoke(ctx, "nope", "", t0); !errors.Is(err, visit.ErrNotFound) {
		t.Fatalf("revoke unknown: %v, want ErrNotFound", err)
	}
}

func testConcurrentUse(t *testing.T, s visit.Storage) {
	ctx := context.Background()
	must(t, s.Create(ctx, sample("a1", "Appointment/1", t0)))
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Use(ctx, "a1", fmt.Sprint("sess-", i), t0.Add(time.Hour), t0) })
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, visit.ErrNotPending):
			t.Fatal(err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent uses of one link succeeded, want 1", wins)
	}
}

func testConcurrentFail(t *testing.T, s visit.Storage) {
	ctx := context.Background()
	must(t, s.Create(ctx, sample("a1", "Appointment/1", t0)))
	var wg sync.WaitGroup
	errs := make([]error, 12)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.Fail(ctx, "a1", 5, t0) })
	}
	wg.Wait()
	counted := 0
	for _, err := range errs {
		switch {
		case err == nil:
			counted++
		case !errors.Is(err, visit.ErrNotPending):
			t.Fatal(err)
		}
	}
	inv, err := s.Get(ctx, "a1")
	must(t, err)
	if counted != 5 || inv.Attempts != 5 || inv.LockedAt.IsZero() {
		t.Fatalf("12 concurrent wrong PINs: %d counted, attempts %d, locked %v; want 5, 5, locked", counted, inv.Attempts, inv.LockedAt)
	}
}
