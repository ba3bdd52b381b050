package app

// Deletions, Subscription.end, $status and $events (R4 subscription.html;
// Subscriptions R5 Backport IG STU 1.1: notifications for deletions,
// backport-subscription-status and backport-subscription-events).

import (
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/smart/devissuer"
)

func TestSubscriptionDeletionStatusAndEvents(t *testing.T) {
	k := newSbHook(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), subOpts())
	put(h, "Patient", "pat-d1", `{"resourceType":"Patient","name":[{"family":"Deleted"}]}`)
	put(h, "Patient", "pat-d2", `{"resourceType":"Patient","name":[{"family":"Other"}]}`)
	const crit = "Observation?code=http://loinc.org|8867-4"
	id := subscribe(t, h, k, h.tok, subscriptionJSON(crit, k.srv.URL, "id-only"))
	put(h, "Observation", "obs-d1", obs("pat-d1", "vital-signs", "8867-4"))
	ntTick(h, time.Millisecond) // one clock: commit order within a millisecond is the feed's
	put(h, "Observation", "obs-d2", obs("pat-d2", "vital-signs", "8867-4"))
	put(h, "Observation", "obs-other", obs("pat-d1", "laboratory", "4548-4"))
	ntTick(h, time.Second)
	ntEventually(t, "two notifications", func() bool { return len(k.of(id, "event-notification")) == 2 })
	// Deleting a matching resource is an event; a non-matching one is not.
	h.req("DELETE", "Observation/obs-d1", nil, "").must(t, 204)
	h.req("DELETE", "Observation/obs-other", nil, "").must(t, 204)
	ntTick(h, time.Second)
	ntEventually(t, "the deletion", func() bool { return len(k.of(id, "event-notification")) == 3 })
	ntCaughtUp(t, h)
	evs := k.of(id, "event-notification")
	if len(evs) != 3 {
		t.Fatalf("%d notifications, want 3", len(evs))
	}
	del := evs[2]
	n, focus := sbEvent(del)
	entries := del.JSON["entry"].([]any)
	req, _ := entries[len(entries)-1].(map[string]any)["request"].(map[string]any)
	if n != "3" || !strings.HasSuffix(focus, "/Observation/obs-d1") || req["method"] != "DELETE" || req["url"] != "Observation/obs-d1" {
		t.Fatalf("deletion notification %s %s %v: %s", n, focus, req, del.Body)
	}

	// $status: a searchset holding the SubscriptionStatus.
	st := h.req("GET", "Subscription/"+id+"/$status", nil, "").must(t, 200)
	stEntries, _ := st.JSON["entry"].([]any)
	if st.JSON["type"] != "searchset" || len(stEntries) != 1 {
		t.Fatalf("$status: %s", st.Body)
	}
	status := sbPost{JSON: st.JSON}
	if sbParam(status, "type") != "query-status" || sbParam(status, "status") != "active" || sbParam(status, "events-since-subscription-start") != "3" {
		t.Fatalf("$status parameters: %s", st.Body)
	}

	// $events: every event, a range, and empty content.
	events := func(query string) []string {
		t.Helper()
		r := h.req("GET", "Subscription/"+id+"/$events"+query, nil, "").must(t, 200)
		p := sbPost{JSON: r.JSON}
		if r.JSON["type"] != "history" || sbParam(p, "type") != "query-event" {
			t.Fatalf("$events%s: %s", query, r.Body)
		}
		var out []string
		for _, x := range sbStatus(p) {
			m, _ := x.(map[string]any)
			if m["name"] != "notification-event" {
				continue
			}
			num, foc := sbEvent(sbPost{JSON: map[string]any{"entry": []any{map[string]any{"resource": map[string]any{
				"resourceType": "Parameters", "parameter": []any{m}}}}}})
			out = append(out, num+" "+foc[strings.LastIndex(foc, "/")+1:])
		}
		return out
	}
	if got := strings.Join(events(""), ","); got != "1 obs-d1,2 obs-d2,3 obs-d1" {
		t.Errorf("$events: %s", got)
	}
	if got := strings.Join(events("?eventsSinceNumber=2&eventsUntilNumber=2"), ","); got != "2 obs-d2" {
		t.Errorf("$events 2..2: %s", got)
	}
	if got := strings.Join(events("?eventsSinceNumber=2&content=empty"), ","); got != "2 ,3 " {
		t.Errorf("$events empty: %s", got)
	}
	for _, q := range []string{"?eventsSinceNumber=0", "?eventsSinceNumber=x", "?eventsSinceNumber=3&eventsUntilNumber=2", "?content=full-resource", "?content=nonsense"} {
		if r := h.req("GET", "Subscription/"+id+"/$events"+q, nil, ""); r.Status != 400 || r.JSON["resourceType"] != "OperationOutcome" {
			t.Errorf("$events%s: %d %s", q, r.Status, r.Body)
		}
	}
	// POST with Parameters works the same.
	r := h.req("POST", "Subscription/"+id+"/$events", `{"resourceType":"Parameters","parameter":[{"name":"eventsSinceNumber","valueString":"3"}]}`, "").must(t, 200)
	if n, _ := sbEvent(sbPost{JSON: r.JSON}); n != "3" {
		t.Errorf("POST $events: %s", r.Body)
	}

	// A patient app cannot reach a staff Subscription (404, as missing),
	// and a patient's own Subscription's $events never names another
	// patient's resource: only what the patient can read now.
	pt := h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: "pat-d2", FHIRUser: "Patient/pat-d2", Client: "portal-app"})
	h.req("GET", "Subscription/"+id+"/$status", nil, pt).must(t, 404)
	h.req("GET", "Subscription/"+id+"/$events", nil, pt).must(t, 404)
	pid := subscribe(t, h, k, pt, subscriptionJSON(crit, k.srv.URL, "id-only"))
	put(h, "Observation", "obs-d3", obs("pat-d1", "vital-signs", "8867-4"))
	put(h, "Observation", "obs-d4", obs("pat-d2", "vital-signs", "8867-4"))
	ntTick(h, time.Second)
	ntEventually(t, "the patient's notification", func() bool { return len(k.of(pid, "event-notification")) == 1 })
	ntCaughtUp(t, h)
	pr := h.req("GET", "Subscription/"+pid+"/$events", nil, pt).must(t, 200)
	if strings.Contains(string(pr.Body), "obs-d3") || !strings.Contains(string(pr.Body), "obs-d4") {
		t.Errorf("a patient's $events: %s", pr.Body)
	}
}

func TestSubscriptionEnd(t *testing.T) {
	k := newSbHook(t)
	clk := ntClock()
	h, _ := notifyApp(t, t.TempDir(), clk, subOpts())
	put(h, "Patient", "pat-x1", `{"resourceType":"Patient","name":[{"family":"Ends"}]}`)
	const crit = "Observation?code=http://loinc.org|8867-4"
	withEnd := func(end string) string {
		return strings.Replace(subscriptionJSON(crit, k.srv.URL, "id-only"), `"reason":"test",`, `"reason":"test","end":"`+end+`",`, 1)
	}
	// An end in the past: created off, no handshake.
	r := h.req("POST", "Subscription", withEnd(clk.Now().Add(-time.Hour).Format(time.RFC3339)), "").must(t, 201)
	if r.JSON["status"] != "off" {
		t.Fatalf("a Subscription past its end: %s", r.Body)
	}
	h.req("POST", "Subscription", withEnd("tomorrow"), "").must(t, 400) // the schema: not an instant
	id := subscribe(t, h, k, h.tok, withEnd(clk.Now().Add(time.Hour).Format(time.RFC3339)))
	put(h, "Observation", "obs-x1", obs("pat-x1", "vital-signs", "8867-4"))
	ntTick(h, time.Second)
	ntEventually(t, "the notification before the end", func() bool { return len(k.of(id, "event-notification")) == 1 })
	ntTick(h, 2*time.Hour)
	put(h, "Observation", "obs-x2", obs("pat-x1", "vital-signs", "8867-4"))
	ntTick(h, time.Second)
	ntEventually(t, "the status off after the end", func() bool {
		return h.req("GET", "Subscription/"+id, nil, "").JSON["status"] == "off"
	})
	ntCaughtUp(t, h)
	if n := len(k.of(id, "event-notification")); n != 1 {
		t.Fatalf("%d notifications, want 1 (none after the end)", n)
	}
	st := h.req("GET", "Subscription/"+id+"/$status", nil, "").must(t, 200)
	if sbParam(sbPost{JSON: st.JSON}, "status") != "off" {
		t.Errorf("$status after the end: %s", st.Body)
	}
}
