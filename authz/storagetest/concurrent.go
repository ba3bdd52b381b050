package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/authz"
)

// Concurrency cases: every single-use value has exactly one winner among
// concurrent users (authz.Storage: "of two concurrent uses of one value
// exactly one succeeds"). RunProcesses runs them with the users split over
// two handles on one database (two processes).

const racers = 8

// race runs f(i) for i in [0, racers) at once and counts the results by
// error: nil, and each of want; any other error fails the test.
func race(t *testing.T, f func(i int) error, want ...error) (ok int, got map[error]int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	got = map[error]int{}
	start := make(chan struct{})
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := f(i)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
				return
			}
			for _, w := range want {
				if errors.Is(err, w) {
					got[w]++
					return
				}
			}
			t.Errorf("racer %d: %v", i, err)
		}()
	}
	close(start)
	wg.Wait()
	return ok, got
}

// pick returns the handle racer i uses.
func pick(ss []authz.Storage, i int) authz.Storage { return ss[i%len(ss)] }

func testConcurrentSingleUse(t *testing.T, s authz.Storage) { concurrentSingleUse(t, s) }

func concurrentSingleUse(t *testing.T, ss ...authz.Storage) {
	s := ss[0]
	family(t, s, "f1", "a1", "app")
	must(t, s.CreateCode(ctx, &authz.Code{Hash: "c1", FamilyID: "f1", ExpiresAt: t0.Add(time.Minute)}))
	ok, got := race(t, func(i int) error {
		c, err := pick(ss, i).UseCode(ctx, "c1", t0)
		if errors.Is(err, authz.ErrUsed) && (c == nil || c.FamilyID != "f1") {
			return fmt.Errorf("a replayed code comes back with its family, got %+v", c)
		}
		return err
	}, authz.ErrUsed)
	if ok != 1 || got[authz.ErrUsed] != racers-1 {
		t.Fatalf("UseCode: %d succeeded, %d saw ErrUsed; want 1 and %d", ok, got[authz.ErrUsed], racers-1)
	}

	must(t, s.CreateLaunch(ctx, &authz.LaunchContext{Hash: "l1", Patient: "p1", CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}))
	ok, got = race(t, func(i int) error {
		_, err := pick(ss, i).UseLaunch(ctx, "l1", t0)
		return err
	}, authz.ErrUsed)
	if ok != 1 || got[authz.ErrUsed] != racers-1 {
		t.Fatalf("UseLaunch: %d succeeded, %d saw ErrUsed; want 1 and %d", ok, got[authz.ErrUsed], racers-1)
	}

	ok, got = race(t, func(i int) error {
		return pick(ss, i).UseAssertion(ctx, "emr", "jti-1", t0.Add(time.Minute))
	}, authz.ErrUsed)
	if ok != 1 || got[authz.ErrUsed] != racers-1 {
		t.Fatalf("UseAssertion: %d succeeded, %d saw ErrUsed; want 1 and %d", ok, got[authz.ErrUsed], racers-1)
	}

	must(t, s.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: "r1", FamilyID: "f1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	ok, got = race(t, func(i int) error {
		_, err := pick(ss, i).UseRefreshToken(ctx, "r1", t0)
		return err
	}, authz.ErrUsed)
	if ok != 1 || got[authz.ErrUsed] != racers-1 {
		t.Fatalf("UseRefreshToken: %d succeeded, %d saw ErrUsed; want 1 and %d", ok, got[authz.ErrUsed], racers-1)
	}
	for i := range ss {
		r, err := ss[i].GetRefreshToken(ctx, "r1")
		must(t, err)
		if r.UsedAt.IsZero() {
			t.Fatalf("handle %d: the rotated refresh token reads as unused", i)
		}
	}
}

func testConcurrentRegister(t *testing.T, s authz.Storage) { concurrentRegister(t, s) }

func concurrentRegister(t *testing.T, ss ...authz.Storage) {
	s := ss[0]
	// One invitation, several people: one account.
	must(t, s.CreateInvitation(ctx, &authz.Invitation{Hash: "h1", FHIRUser: "Patient/p1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	ok, got := race(t, func(i int) error {
		_, err := pick(ss, i).Register(ctx, "h1", &authz.Account{ID: fmt.Sprintf("u%d", i), Username: fmt.Sprintf("user%d", i)}, t0)
		return err
	}, authz.ErrUsed)
	if ok != 1 || got[authz.ErrUsed] != racers-1 {
		t.Fatalf("Register of one invitation: %d succeeded, %d saw ErrUsed; want 1 and %d", ok, got[authz.ErrUsed], racers-1)
	}
	all, err := s.ListAccounts(ctx)
	must(t, err)
	if len(all) != 1 {
		t.Fatalf("%d accounts from one invitation", len(all))
	}

	// Several invitations, one username: one account, and the other
	// invitations stay usable.
	for i := range racers {
		must(t, s.CreateInvitation(ctx, &authz.Invitation{Hash: fmt.Sprintf("k%d", i), FHIRUser: "Patient/q", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	}
	ok, got = race(t, func(i int) error {
		_, err := pick(ss, i).Register(ctx, fmt.Sprintf("k%d", i), &authz.Account{ID: fmt.Sprintf("v%d", i), Username: "same"}, t0)
		return err
	}, authz.ErrExists)
	if ok != 1 || got[authz.ErrExists] != racers-1 {
		t.Fatalf("Register of one username: %d succeeded, %d saw ErrExists; want 1 and %d", ok, got[authz.ErrExists], racers-1)
	}
	winner, err := s.AccountByUsername(ctx, "same")
	must(t, err)
	for i := range racers {
		if fmt.Sprintf("v%d", i) == winner.ID {
			continue
		}
		if _, err := s.Register(ctx, fmt.Sprintf("k%d", i), &authz.Account{ID: fmt.Sprintf("w%d", i), Username: fmt.Sprintf("other%d", i)}, t0); err != nil {
			t.Fatalf("invitation k%d after a refused username: %v", i, err)
		}
	}
}

func testConcurrentRevoke(t *testing.T, s authz.Storage) { concurrentRevoke(t, s) }

func concurrentRevoke(t *testing.T, ss ...authz.Storage) {
	s := ss[0]
	family(t, s, "f1", "a1", "app")
	for i := range 5 {
		must(t, s.RecordAccessToken(ctx, &authz.AccessToken{JTI: fmt.Sprintf("j%d", i), FamilyID: "f1", ClientID: "app", ExpiresAt: t0.Add(time.Hour)}))
	}
	must(t, s.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: "r1", FamilyID: "f1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	var mu sync.Mutex
	seen := map[string]int{}
	ok, _ := race(t, func(i int) error {
		revs, err := pick(ss, i).RevokeFamily(ctx, "f1", t0)
		mu.Lock()
		for _, r := range revs {
			seen[r.JTI]++
		}
		mu.Unlock()
		return err
	})
	if ok != racers {
		t.Fatalf("%d of %d revocations succeeded", ok, racers)
	}
	if len(seen) != 5 {
		t.Fatalf("revoked %v, want j0..j4", seen)
	}
	for j, n := range seen {
		if n != 1 {
			t.Fatalf("%s reported revoked by %d calls, want 1", j, n)
		}
	}
	for i := range ss {
		f, err := ss[i].GetFamily(ctx, "f1")
		must(t, err)
		r, err := ss[i].GetRefreshToken(ctx, "r1")
		must(t, err)
		if f.RevokedAt.IsZero() || r.RevokedAt.IsZero() {
			t.Fatalf("handle %d: family or refresh token not revoked: %+v %+v", i, f, r)
		}
	}
}

func testConcurrentSecret(t *testing.T, s authz.Storage) { concurrentSecret(t, s) }

func concurrentSecret(t *testing.T, ss ...authz.Storage) {
	var mu sync.Mutex
	var vals [][]byte
	race(t, func(i int) error {
		v, err := pick(ss, i).Secret(ctx, "key", func() ([]byte, error) { return []byte(fmt.Sprintf("value %d", i)), nil })
		mu.Lock()
		vals = append(vals, v)
		mu.Unlock()
		return err
	})
	for _, v := range vals {
		if !bytes.Equal(v, vals[0]) {
			t.Fatalf("concurrent first uses of a secret got different values: %q", vals)
		}
	}
}

// RunProcesses runs the cases that matter between processes on two
// handles (a and b) on one database, as two fhirgate processes (or the
// server and an admin command) have: what one writes the other reads, and
// the single-use guarantees hold across them.
func RunProcesses(t *testing.T, open func(t *testing.T) (a, b authz.Storage)) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, ...authz.Storage)
	}{
		{"SeeEachOther", seeEachOther},
		{"ConcurrentCodeLaunchAssertion", concurrentSingleUse},
		{"ConcurrentRegister", concurrentRegister},
		{"ConcurrentRevokeReportsEachTokenOnce", concurrentRevoke},
		{"ConcurrentSecretOneValue", concurrentSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := open(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			tc.run(t, a, b)
		})
	}
}

func seeEachOther(t *testing.T, ss ...authz.Storage) {
	a, b := ss[0], ss[1]
	must(t, a.CreateClient(ctx, &authz.Client{ID: "app", Name: "App", AuthMethod: authz.AuthNone, CreatedAt: t0}))
	c, err := b.GetClient(ctx, "app")
	must(t, err)
	if c.Name != "App" {
		t.Fatalf("%+v", c)
	}
	must(t, b.CreateAccount(ctx, &authz.Account{ID: "a1", Username: "mum", FHIRUser: "RelatedPerson/mum"}))
	wantErr(t, a.CreateAccount(ctx, &authz.Account{ID: "a2", Username: "mum"}), authz.ErrExists)
	// A refresh token rotated through a is a replay through b.
	family(t, a, "f1", "a1", "app")
	must(t, a.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: "r1", FamilyID: "f1", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}))
	must(t, a.RecordAccessToken(ctx, &authz.AccessToken{JTI: "j1", FamilyID: "f1", ClientID: "app", ExpiresAt: t0.Add(time.Hour)}))
	_, err = a.UseRefreshToken(ctx, "r1", t0)
	must(t, err)
	r, err := b.UseRefreshToken(ctx, "r1", t0.Add(time.Second))
	wantErr(t, err, authz.ErrUsed)
	revs, err := b.RevokeFamily(ctx, r.FamilyID, t0.Add(time.Second))
	must(t, err)
	if len(revs) != 1 || revs[0].JTI != "j1" {
		t.Fatalf("revoked %+v", revs)
	}
	list, err := a.Revocations(ctx, t0, t0.Add(time.Second))
	must(t, err)
	if len(list) != 1 || list[0].JTI != "j1" {
		t.Fatalf("the other handle reads revocations %+v", list)
	}
	sa, err := a.Secret(ctx, "csrf", func() ([]byte, error) { return []byte("a"), nil })
	must(t, err)
	sb, err := b.Secret(ctx, "csrf", func() ([]byte, error) { return []byte("b"), nil })
	must(t, err)
	if !bytes.Equal(sa, sb) {
		t.Fatalf("secrets %q %q", sa, sb)
	}
}

// BenchRotate measures one refresh token rotation as the token endpoint
// does it: use the token, create its successor.
func BenchRotate(b *testing.B, s authz.Storage) {
	if err := s.CreateFamily(ctx, &authz.Family{ID: "bf", ClientID: "app", AccountID: "a", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	prev := "b0"
	if err := s.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: prev, FamilyID: "bf", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.UseRefreshToken(ctx, prev, t0); err != nil {
			b.Fatal(err)
		}
		prev = fmt.Sprintf("b%d", i+1)
		if err := s.CreateRefreshToken(ctx, &authz.RefreshToken{Hash: prev, FamilyID: "bf", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
}
