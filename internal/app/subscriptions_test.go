package app

// End-to-end tests of FHIR Subscriptions for apps (issue 16): R4
// rest-hook Subscriptions with the Subscriptions Backport IG's id-only
// and empty payloads, delivered by the outbox to an httptest receiver;
// the owner's access decides what is notified.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/notify/subscription"
	"github.com/fhirgate/fhirgate/smart/devissuer"
)

// sbHook is a rest-hook receiver that keeps what it is posted and can be
// told to fail (answer 503).
type sbHook struct {
	mu      sync.Mutex
	posts   []sbPost
	failing bool
	refused int
	srv     *httptest.Server
}

type sbPost struct {
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

func newSbHook(t *testing.T) *sbHook {
	t.Helper()
	k := &sbHook{}
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		k.mu.Lock()
		defer k.mu.Unlock()
		if k.failing {
			k.refused++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		k.posts = append(k.posts, sbPost{Header: r.Header.Clone(), Body: b, JSON: m})
	}))
	t.Cleanup(k.srv.Close)
	return k
}

func (k *sbHook) setFailing(f bool) {
	k.mu.Lock()
	k.failing = f
	k.mu.Unlock()
}

// of returns the posts whose SubscriptionStatus type is typ
// ("handshake", "event-notification") for subscription id.
func (k *sbHook) of(id, typ string) []sbPost {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []sbPost
	for _, p := range k.posts {
		if sbParam(p, "type") == typ && strings.HasSuffix(sbRef(p, "subscription"), "/Subscription/"+id) {
			out = append(out, p)
		}
	}
	return out
}

// sbStatus is the first entry's Parameters (the SubscriptionStatus).
func sbStatus(p sbPost) []any {
	entries, _ := p.JSON["entry"].([]any)
	if len(entries) == 0 {
		return nil
	}
	res, _ := entries[0].(map[string]any)["resource"].(map[string]any)
	if res["resourceType"] != "Parameters" {
		return nil
	}
	params, _ := res["parameter"].([]any)
	return params
}

func sbFind(params []any, name string) map[string]any {
	for _, x := range params {
		m, _ := x.(map[string]any)
		if m["name"] == name {
			return m
		}
	}
	return nil
}

func sbParam(p sbPost, name string) string {
	m := sbFind(sbStatus(p), name)
	for _, k := range []string{"valueCode", "valueString"} {
		if v, ok := m[k].(string); ok {
			return v
		}
	}
	return ""
}

func sbRef(p sbPost, name string) string {
	m := sbFind(sbStatus(p), name)
	r, _ := m["valueReference"].(map[string]any)
	s, _ := r["reference"].(string)
	return s
}

// sbEvent returns the event-number and focus of a notification.
func sbEvent(p sbPost) (number, focus string) {
	ev := sbFind(sbStatus(p), "notification-event")
	parts, _ := ev["part"].([]any)
	for _, x := range parts {
		m, _ := x.(map[string]any)
		switch m["name"] {
		case "event-number":
			number, _ = m["valueString"].(string)
		case "focus":
			r, _ := m["valueReference"].(map[string]any)
			focus, _ = r["reference"].(string)
		}
	}
	return number, focus
}

func subOpts(extra ...harnessOpt) harnessOpt {
	return func(o *Options) {
		o.Notify = NotifyOptions{Poll: 10 * time.Millisecond, FeedPoll: 10 * time.Millisecond,
			SchedulePoll: time.Nanosecond, BackoffBase: time.Minute}
		for _, f := range extra {
			f(o)
		}
	}
}

func subscriptionJSON(criteria, endpoint, content string, headers ...string) string {
	payload := ""
	switch content {
	case "":
	case "no-extension":
		payload = `,"payload":"application/fhir+json"`
	default:
		payload = `,"payload":"application/fhir+json","_payload":{"extension":[{"url":"` + subscription.ExtPayloadContent + `","valueCode":"` + content + `"}]}`
	}
	hs := ""
	if len(headers) > 0 {
		b, _ := json.Marshal(headers)
		hs = `,"header":` + string(b)
	}
	return `{"resourceType":"Subscription","meta":{"profile":["` + subscription.ProfileSubscription + `"]},"status":"requested",` +
		`"reason":"test","criteria":"` + criteria + `","channel":{"type":"rest-hook","endpoint":"` + endpoint + `"` + payload + hs + `}}`
}

// subscribe creates a Subscription as token and waits for its handshake
// and its active status.
func subscribe(t *testing.T, h *harness, k *sbHook, token, body string) string {
	t.Helper()
	r := h.req("POST", "Subscription", body, token).must(t, 201)
	id, _ := r.JSON["id"].(string)
	if id == "" || r.JSON["status"] != "requested" {
		t.Fatalf("created: %s", r.Body)
	}
	ntTick(h, time.Second)
	ntEventually(t, "the handshake", func() bool { return len(k.of(id, "handshake")) == 1 })
	ntEventually(t, "the active status", func() bool {
		return h.req("GET", "Subscription/"+id, nil, token).JSON["status"] == "active"
	})
	hs := k.of(id, "handshake")[0]
	if hs.JSON["type"] != "history" || sbParam(hs, "status") != "requested" {
		t.Fatalf("handshake: %s", hs.Body)
	}
	ntTick(h, time.Second)
	return id
}

func TestSubscriptionIDOnly(t *testing.T) {
	k := newSbHook(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), subOpts())
	put(h, "Patient", "pat-s1", `{"resourceType":"Patient","name":[{"family":"Subscribed"}]}`)
	id := subscribe(t, h, k, h.tok, subscriptionJSON("Observation?code=http://loinc.org|8867-4", k.srv.URL+"/hook", "id-only", "Authorization: Bearer hook-secret"))

	put(h, "Observation", "obs-hr", obs("pat-s1", "vital-signs", "8867-4"))
	put(h, "Observation", "obs-other", obs("pat-s1", "laboratory", "4548-4"))
	ntTick(h, time.Second)
	ntEventually(t, "the notification", func() bool { return len(k.of(id, "event-notification")) == 1 })
	ntCaughtUp(t, h)
	evs := k.of(id, "event-notification")
	if len(evs) != 1 {
		t.Fatalf("%d notifications, want 1 (the non-matching Observation is not notified)", len(evs))
	}
	ev := evs[0]
	if ev.JSON["type"] != "history" {
		t.Errorf("bundle type %v", ev.JSON["type"])
	}
	if n, focus := sbEvent(ev); n != "1" || focus != h.base+"/Observation/obs-hr" {
		t.Errorf("event-number %q focus %q", n, focus)
	}
	if sbParam(ev, "status") != "active" || sbParam(ev, "events-since-subscription-start") != "1" {
		t.Errorf("status parameters: %s", ev.Body)
	}
	entries := ev.JSON["entry"].([]any)
	if len(entries) != 2 {
		t.Fatalf("%d entries, want 2: %s", len(entries), ev.Body)
	}
	second := entries[1].(map[string]any)
	if second["fullUrl"] != h.base+"/Observation/obs-hr" || second["resource"] != nil || second["request"] == nil {
		t.Errorf("id-only entry: %v", second)
	}
	if strings.Contains(string(ev.Body), "8867-4") || strings.Contains(string(ev.Body), "pat-s1") {
		t.Errorf("the notification carries resource content: %s", ev.Body)
	}
	if ev.Header.Get("Authorization") != "Bearer hook-secret" || ev.Header.Get("Content-Type") != "application/fhir+json" {
		t.Errorf("headers %v", ev.Header)
	}
}

func TestSubscriptionEmpty(t *testing.T) {
	k := newSbHook(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), subOpts())
	put(h, "Patient", "pat-e1", `{"resourceType":"Patient","name":[{"family":"Empty"}]}`)
	id := subscribe(t, h, k, h.tok, subscriptionJSON("Observation?", k.srv.URL, ""))
	put(h, "Observation", "obs-e1", obs("pat-e1", "laboratory", "4548-4"))
	ntTick(h, time.Second)
	ntEventually(t, "the notification", func() bool { return len(k.of(id, "event-notification")) == 1 })
	ev := k.of(id, "event-notification")[0]
	for _, s := range []string{"obs-e1", "pat-e1", "Observation", "Patient", "4548-4"} {
		if strings.Contains(string(ev.Body), s) {
			t.Errorf("an empty notification contains %q: %s", s, ev.Body)
		}
	}
	if n, focus := sbEvent(ev); n != "1" || focus != "" {
		t.Errorf("event-number %q focus %q", n, focus)
	}
	if len(ev.JSON["entry"].([]any)) != 1 {
		t.Errorf("an empty notification has only the status entry: %s", ev.Body)
	}
}

// A patient app's Subscription is notified only of what its patient could
// read: not another patient's resources, not a held result before its
// release.
func TestSubscriptionPatientApp(t *testing.T) {
	k := newSbHook(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), subOpts(withPolicy(t)))
	put(h, "Patient", "pa", `{"resourceType":"Patient","name":[{"family":"Alpha"}]}`)
	put(h, "Patient", "pb", `{"resourceType":"Patient","name":[{"family":"Beta"}]}`)
	pt := func(id string) string {
		return h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: id, FHIRUser: "Patient/" + id, Client: "portal-app"})
	}
	id := subscribe(t, h, k, pt("pa"), subscriptionJSON("Observation?", k.srv.URL+"/a", "id-only"))
	// The Subscription is in A's compartment: B cannot see it.
	if r := h.req("GET", "Subscription/"+id, nil, pt("pb")); r.Status != 404 && r.Status != 403 {
		t.Fatalf("another patient reads the Subscription: %d %s", r.Status, r.Body)
	}
	put(h, "Observation", "obs-b1", obs("pb", "laboratory", "4548-4"))
	put(h, "Observation", "obs-a1", obs("pa", "laboratory", "4548-4"))
	// Pathology: held 168 h after issued (2026-06-08T08:00Z).
	h.req("PUT", "Observation/obs-a2", hba1c("obs-a2", "Patient/pa", "final"), "").must(t, 201)
	ntTick(h, time.Second)
	ntEventually(t, "A's notification", func() bool { return len(k.of(id, "event-notification")) >= 1 })
	ntCaughtUp(t, h)
	evs := k.of(id, "event-notification")
	if len(evs) != 1 {
		t.Fatalf("%d notifications before the release, want 1", len(evs))
	}
	if _, focus := sbEvent(evs[0]); focus != h.base+"/Observation/obs-a1" {
		t.Fatalf("focus %q", focus)
	}
	h.clock.Set(time.Date(2026, 6, 8, 8, 0, 30, 0, time.UTC))
	ntEventually(t, "the released result's notification", func() bool { return len(k.of(id, "event-notification")) == 2 })
	ntTick(h, time.Hour)
	ntCaughtUp(t, h)
	evs = k.of(id, "event-notification")
	if len(evs) != 2 {
		t.Fatalf("%d notifications, want 2", len(evs))
	}
	if n, focus := sbEvent(evs[1]); n != "2" || focus != h.base+"/Observation/obs-a2" {
		t.Fatalf("released: event %q focus %q", n, focus)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.posts {
		if strings.Contains(string(p.Body), "obs-b1") || strings.Contains(string(p.Body), "/pb") {
			t.Errorf("patient A's app was told of patient B's data: %s", p.Body)
		}
	}
}

func TestSubscriptionRefused(t *testing.T) {
	k := newSbHook(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), subOpts())
	const crit = "Observation?code=http://loinc.org|8867-4"
	for name, body := range map[string]string{
		"full-resource":                subscriptionJSON(crit, k.srv.URL, "full-resource"),
		"no content":                   subscriptionJSON(crit, k.srv.URL, "no-extension"),
		"websocket":                    strings.Replace(subscriptionJSON(crit, k.srv.URL, "id-only"), `"rest-hook"`, `"websocket"`, 1),
		"email":                        strings.Replace(subscriptionJSON(crit, "mailto:a@example.org", "id-only"), `"rest-hook"`, `"email"`, 1),
		"http endpoint":                subscriptionJSON(crit, "http://hooks.example.org/x", "id-only"),
		"relative endpoint":            subscriptionJSON(crit, "/hook", "id-only"),
		"unknown parameter":            subscriptionJSON("Observation?nonsense=1", k.srv.URL, "id-only"),
		"unknown type":                 subscriptionJSON("Nothing?code=1", k.srv.URL, "id-only"),
		"AuditEvent (not in the feed)": subscriptionJSON("AuditEvent?patient=Patient/a", k.srv.URL, "id-only"),
		"chained":                      subscriptionJSON("Observation?subject.name=x", k.srv.URL, "id-only"),
		"bad header":                   subscriptionJSON(crit, k.srv.URL, "id-only", "no colon"),
	} {
		r := h.req("POST", "Subscription", body, "")
		if r.Status != 422 || r.JSON["resourceType"] != "OperationOutcome" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	// An update is checked the same way.
	id := subscribe(t, h, k, h.tok, subscriptionJSON(crit, k.srv.URL, "id-only"))
	bad := strings.Replace(subscriptionJSON(crit, k.srv.URL, "full-resource"), `{"resourceType":"Subscription",`, `{"resourceType":"Subscription","id":"`+id+`",`, 1)
	h.req("PUT", "Subscription/"+id, bad, "").must(t, 422)
}

// A failing receiver gets the notification once after a retry; a restart
// sends nothing twice and event numbers continue.
func TestSubscriptionRetryAndRestart(t *testing.T) {
	k := newSbHook(t)
	dir := t.TempDir()
	clk := ntClock()
	h, stop := notifyApp(t, dir, clk, subOpts())
	put(h, "Patient", "pat-r1", `{"resourceType":"Patient","name":[{"family":"Retry"}]}`)
	id := subscribe(t, h, k, h.tok, subscriptionJSON("Observation?code=http://loinc.org|8867-4", k.srv.URL, "id-only"))
	k.setFailing(true)
	put(h, "Observation", "obs-r1", obs("pat-r1", "vital-signs", "8867-4"))
	ntTick(h, time.Second)
	ctx := context.Background()
	key := "sub/" + id + "/Observation/obs-r1/1"
	ntEventually(t, "a failed attempt", func() bool {
		it, err := h.app.Notify.Storage.Item(ctx, key)
		return err == nil && it.Attempts == 1
	})
	it, _ := h.app.Notify.Storage.Item(ctx, key)
	k.setFailing(false)
	clk.Set(it.Due.Add(time.Second))
	ntEventually(t, "the notification after the retry", func() bool { return len(k.of(id, "event-notification")) == 1 })
	ntCaughtUp(t, h)
	stop()

	h2, _ := notifyApp(t, dir, clk, subOpts())
	ntTick(h2, time.Second)
	put(h2, "Observation", "obs-r2", obs("pat-r1", "vital-signs", "8867-4"))
	ntTick(h2, time.Second)
	ntEventually(t, "the second notification", func() bool { return len(k.of(id, "event-notification")) == 2 })
	ntTick(h2, time.Hour)
	ntCaughtUp(t, h2)
	evs := k.of(id, "event-notification")
	if len(evs) != 2 {
		t.Fatalf("%d notifications, want 2 (no duplicate)", len(evs))
	}
	n1, f1 := sbEvent(evs[0])
	n2, f2 := sbEvent(evs[1])
	if n1 != "1" || n2 != "2" || !strings.HasSuffix(f1, "/obs-r1") || !strings.HasSuffix(f2, "/obs-r2") {
		t.Fatalf("events %s %s, %s %s", n1, f1, n2, f2)
	}
	it, err := h2.app.Notify.Storage.Item(ctx, key)
	if err != nil || it.State != notify.Delivered || it.Attempts != 1 {
		t.Fatalf("item %+v %v", it, err)
	}
	if r := h2.req("GET", "Subscription/"+id, nil, ""); r.JSON["status"] != "active" {
		t.Fatalf("status after the retry: %s", r.Body)
	}
}

// A handshake that cannot be delivered in time makes the Subscription error.
func TestSubscriptionHandshakeFails(t *testing.T) {
	k := newSbHook(t)
	k.setFailing(true)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), subOpts())
	r := h.req("POST", "Subscription", subscriptionJSON("Observation?", k.srv.URL, "id-only"), "").must(t, 201)
	id := r.JSON["id"].(string)
	ntTick(h, time.Second)
	ntEventually(t, "a refused handshake", func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.refused >= 1
	})
	ntTick(h, time.Hour)
	ntEventually(t, "the error status", func() bool {
		return h.req("GET", "Subscription/"+id, nil, "").JSON["status"] == "error"
	})
	if e, _ := h.req("GET", "Subscription/"+id, nil, "").JSON["error"].(string); !strings.Contains(e, "handshake") {
		t.Fatalf("error %q", e)
	}
}
