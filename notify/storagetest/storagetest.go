// Package storagetest is the conformance suite of notify.Storage: every
// backend runs Run, with two handles on one database standing for two
// fhirgate processes.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/notify"
)

// Open returns two handles on one new, empty database (two processes).
type Open func(t *testing.T) (a, b notify.Storage)

// Run runs every case.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, notify.Storage, notify.Storage)
	}{
		{"EnqueueIsIdempotentByKey", testIdempotent},
		{"ClaimOnlyDueItems", testDue},
		{"LeaseExcludesOthersUntilItEnds", testLease},
		{"RetryAndGiveUp", testRetry},
		{"SkippedAndFailedAreKept", testFinish},
		{"ConcurrentClaimsDeliverEachItemOnce", testConcurrent},
		{"Prefs", testPrefs},
		{"State", testState},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := open(t)
			tc.run(t, a, b)
		})
	}
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func mail(key string) notify.Notification {
	return notify.Notification{Key: key, Channel: notify.Email, To: "p@example.org", Template: "message", Lang: "en",
		Link: "https://portal.example.org/messages"}
}

func claimKeys(t *testing.T, s notify.Storage, now time.Time, lease time.Duration, max int) []notify.Item {
	t.Helper()
	its, err := s.Claim(context.Background(), now, lease, max)
	if err != nil {
		t.Fatal(err)
	}
	return its
}

func testIdempotent(t *testing.T, a, b notify.Storage) {
	ctx := context.Background()
	n := mail("message/Communication/1/1/Patient/7")
	n.Headers = map[string]string{"X-A": "1"}
	n.Body = []byte(`{"a":1}`)
	added, err := a.Enqueue(ctx, t0, []notify.Notification{n, mail("k2")})
	if err != nil || len(added) != 2 || !added[0] || !added[1] {
		t.Fatalf("first enqueue: %v %v", added, err)
	}
	changed := n
	changed.To = "other@example.org"
	added, err = b.Enqueue(ctx, t0.Add(time.Minute), []notify.Notification{changed, mail("k3")})
	if err != nil || added[0] || !added[1] {
		t.Fatalf("second enqueue: %v %v, want [false true]", added, err)
	}
	it, err := a.Item(ctx, n.Key)
	if err != nil {
		t.Fatal(err)
	}
	if it.To != "p@example.org" || it.State != notify.Pending || !it.Due.Equal(t0) || !it.Created.Equal(t0) ||
		it.Headers["X-A"] != "1" || string(it.Body) != `{"a":1}` || it.Link != n.Link {
		t.Fatalf("item %+v", it)
	}
	// Delivered keys stay known: enqueueing again adds nothing.
	its := claimKeys(t, a, t0.Add(time.Hour), time.Minute, 10)
	if len(its) != 3 {
		t.Fatalf("claimed %d, want 3", len(its))
	}
	for _, it := range its {
		if err := a.Delivered(ctx, it, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	added, err = a.Enqueue(ctx, t0.Add(2*time.Hour), []notify.Notification{n})
	if err != nil || added[0] {
		t.Fatalf("enqueue after delivery: %v %v", added, err)
	}
	if its := claimKeys(t, b, t0.Add(3*time.Hour), time.Minute, 10); len(its) != 0 {
		t.Fatalf("delivered items claimed again: %v", its)
	}
	if _, err := a.Item(ctx, "absent"); !errors.Is(err, notify.ErrNotFound) {
		t.Fatalf("absent item: %v", err)
	}
}

func testDue(t *testing.T, a, b notify.Storage) {
	ctx := context.Background()
	later := mail("later")
	later.NotBefore = t0.Add(time.Hour)
	if _, err := a.Enqueue(ctx, t0, []notify.Notification{later, mail("now")}); err != nil {
		t.Fatal(err)
	}
	its := claimKeys(t, a, t0, 2*time.Hour, 10)
	if len(its) != 1 || its[0].Key != "now" {
		t.Fatalf("claimed %v, want [now]", its)
	}
	if its := claimKeys(t, b, t0.Add(59*time.Minute), time.Minute, 10); len(its) != 0 {
		t.Fatalf("claimed before due or while leased: %v", its)
	}
	its = claimKeys(t, b, t0.Add(time.Hour), time.Minute, 10)
	if len(its) != 1 || its[0].Key != "later" {
		t.Fatalf("claimed %v, want [later] (now is still leased)", its)
	}
	// max bounds a claim.
	var many []notify.Notification
	for i := range 5 {
		many = append(many, mail(fmt.Sprint("m", i)))
	}
	if _, err := a.Enqueue(ctx, t0.Add(2*time.Hour), many); err != nil {
		t.Fatal(err)
	}
	if its := claimKeys(t, a, t0.Add(2*time.Hour), time.Minute, 2); len(its) != 2 {
		t.Fatalf("claimed %d, want 2", len(its))
	}
}

func testLease(t *testing.T, a, b notify.Storage) {
	ctx := context.Background()
	if _, err := a.Enqueue(ctx, t0, []notify.Notification{mail("k")}); err != nil {
		t.Fatal(err)
	}
	first := claimKeys(t, a, t0, time.Minute, 10)
	if len(first) != 1 {
		t.Fatalf("claimed %d", len(first))
	}
	if its := claimKeys(t, b, t0.Add(30*time.Second), time.Minute, 10); len(its) != 0 {
		t.Fatalf("a leased item claimed by another process: %v", its)
	}
	// The lease ends: another process takes the item, and the first
	// holder's late report is refused.
	second := claimKeys(t, b, t0.Add(61*time.Second), time.Minute, 10)
	if len(second) != 1 || second[0].Seq == first[0].Seq {
		t.Fatalf("second claim %v (first seq %d)", second, first[0].Seq)
	}
	if err := a.Delivered(ctx, first[0], t0.Add(62*time.Second)); !errors.Is(err, notify.ErrLeaseLost) {
		t.Fatalf("stale holder's Delivered: %v, want ErrLeaseLost", err)
	}
	if err := a.Retry(ctx, first[0], t0.Add(time.Hour), "x"); !errors.Is(err, notify.ErrLeaseLost) {
		t.Fatalf("stale holder's Retry: %v, want ErrLeaseLost", err)
	}
	if err := b.Delivered(ctx, second[0], t0.Add(62*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := b.Delivered(ctx, second[0], t0.Add(63*time.Second)); !errors.Is(err, notify.ErrLeaseLost) {
		t.Fatalf("second Delivered: %v, want ErrLeaseLost", err)
	}
	it, err := a.Item(ctx, "k")
	if err != nil || it.State != notify.Delivered || !it.Done.Equal(t0.Add(62*time.Second)) {
		t.Fatalf("item %+v %v", it, err)
	}
	if its := claimKeys(t, a, t0.Add(time.Hour), time.Minute, 10); len(its) != 0 {
		t.Fatalf("delivered item claimed: %v", its)
	}
}

func testRetry(t *testing.T, a, b notify.Storage) {
	ctx := context.Background()
	if _, err := a.Enqueue(ctx, t0, []notify.Notification{mail("k")}); err != nil {
		t.Fatal(err)
	}
	now := t0
	for i := range 3 {
		its := claimKeys(t, a, now, time.Minute, 10)
		if len(its) != 1 || its[0].Attempts != i {
			t.Fatalf("attempt %d: %+v", i, its)
		}
		due := now.Add(notify.Backoff(i+1, time.Second, time.Hour))
		if err := a.Retry(ctx, its[0], due, fmt.Sprint("smtp down ", i)); err != nil {
			t.Fatal(err)
		}
		// Released at once, but not due before due.
		if its := claimKeys(t, b, due.Add(-time.Millisecond), time.Minute, 10); len(its) != 0 {
			t.Fatalf("claimed before its retry is due: %v", its)
		}
		now = due
	}
	its := claimKeys(t, b, now, time.Minute, 10)
	if len(its) != 1 || its[0].Attempts != 3 || its[0].LastError != "smtp down 2" {
		t.Fatalf("%+v", its)
	}
	if err := b.Finish(ctx, its[0], notify.Failed, now, "gave up after 3 attempts"); err != nil {
		t.Fatal(err)
	}
	failed, err := a.Items(ctx, notify.Failed, 10)
	if err != nil || len(failed) != 1 || failed[0].Key != "k" || failed[0].LastError != "gave up after 3 attempts" {
		t.Fatalf("failed items %+v %v", failed, err)
	}
}

func testFinish(t *testing.T, a, b notify.Storage) {
	ctx := context.Background()
	if _, err := a.Enqueue(ctx, t0, []notify.Notification{mail("a"), mail("b")}); err != nil {
		t.Fatal(err)
	}
	its := claimKeys(t, a, t0, time.Minute, 10)
	if len(its) != 2 {
		t.Fatal(its)
	}
	if err := a.Finish(ctx, its[0], notify.Delivered, t0, ""); err == nil {
		t.Fatal("Finish accepted state delivered")
	}
	if err := a.Finish(ctx, its[0], notify.Skipped, t0, "cancelled"); err != nil {
		t.Fatal(err)
	}
	if err := a.Finish(ctx, its[1], notify.Failed, t0, "expired"); err != nil {
		t.Fatal(err)
	}
	all, err := b.Items(ctx, "", 10)
	if err != nil || len(all) != 2 {
		t.Fatalf("%v %v", all, err)
	}
	for _, it := range all {
		want := map[string]notify.State{"a": notify.Skipped, "b": notify.Failed}[it.Key]
		if it.State != want {
			t.Fatalf("%s: %s, want %s", it.Key, it.State, want)
		}
	}
	if its := claimKeys(t, b, t0.Add(time.Hour), time.Minute, 10); len(its) != 0 {
		t.Fatalf("finished items claimed: %v", its)
	}
}

// testConcurrent: two processes, four workers each, claim and deliver
// 60 items; each is delivered exactly once.
func testConcurrent(t *testing.T, a, b notify.Storage) {
	ctx := context.Background()
	const n = 60
	var list []notify.Notification
	for i := range n {
		list = append(list, mail(fmt.Sprintf("c%02d", i)))
	}
	if _, err := a.Enqueue(ctx, t0, list); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				its, err := s.Claim(ctx, t0, time.Hour, 3)
				if err != nil {
					errs <- err
					return
				}
				if len(its) == 0 {
					return
				}
				for _, it := range its {
					mu.Lock()
					seen[it.Key]++
					mu.Unlock()
					if err := s.Delivered(ctx, it, t0); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("%d items delivered, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s claimed %d times", k, c)
		}
	}
	left, err := a.Items(ctx, notify.Pending, 100)
	if err != nil || len(left) != 0 {
		t.Fatalf("pending left: %v %v", left, err)
	}
}

func testPrefs(t *testing.T, a, b notify.Storage) {
	ctx := context.Background()
	if _, ok, err := a.Prefs(ctx, "Patient/7"); err != nil || ok {
		t.Fatalf("absent prefs: %v %v", ok, err)
	}
	p := notify.Prefs{Kinds: map[string]bool{"message": true, "result": false}, Lang: "fr", Updated: t0}
	if err := a.SetPrefs(ctx, "Patient/7", p); err != nil {
		t.Fatal(err)
	}
	got, ok, err := b.Prefs(ctx, "Patient/7")
	if err != nil || !ok || got.Lang != "fr" || !got.OptedIn("message", false) || got.OptedIn("result", true) ||
		!got.OptedIn("reminder", true) || got.OptedIn("reminder", false) || !got.Updated.Equal(t0) {
		t.Fatalf("prefs %+v %v %v", got, ok, err)
	}
	p.Kinds["result"] = true
	if err := b.SetPrefs(ctx, "Patient/7", p); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := a.Prefs(ctx, "Patient/7"); !got.OptedIn("result", false) {
		t.Fatalf("prefs not replaced: %+v", got)
	}
	if _, ok, _ := a.Prefs(ctx, "RelatedPerson/7"); ok {
		t.Fatal("prefs of another person")
	}
}

func testState(t *testing.T, a, b notify.Storage) {
	ctx := context.Background()
	if v, err := a.State(ctx, "feed"); err != nil || v != nil {
		t.Fatalf("absent state: %q %v", v, err)
	}
	if err := a.SetState(ctx, "feed", []byte(`{"at":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.SetState(ctx, "feed", []byte(`{"at":2}`)); err != nil {
		t.Fatal(err)
	}
	if v, err := b.State(ctx, "feed"); err != nil || string(v) != `{"at":2}` {
		t.Fatalf("state %q %v", v, err)
	}
}
