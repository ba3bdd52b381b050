package app

// End-to-end tests of notifications without PHI (issue 16; Ontario's
// guidance on virtual care: an email says only that there is something in
// the portal): a real SMTP server in-process (go-smtp), the whole app,
// the change feed, the release scheduler, the durable outbox across a
// restart, retries with backoff, opt-in preferences.

import (
	"context"
	"encoding/json"

	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/internal/smtptest"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/notify/feed"
	"github.com/fhirgate/fhirgate/smart/devissuer"
	"github.com/fhirgate/fhirgate/store"
)

const ntPortal = "https://portal.example.org"

// notifyOpts: fast polls, every feed pass runs the scheduler, retries
// after about a minute of the test clock.
func notifyOpts(mb *smtptest.Server) harnessOpt {
	return func(o *Options) {
		o.Notify = NotifyOptions{SMTPURL: mb.URL(), PortalURL: ntPortal, Poll: 10 * time.Millisecond,
			FeedPoll: 10 * time.Millisecond, SchedulePoll: time.Nanosecond, BackoffBase: time.Minute}
	}
}

// notifyApp starts the app on dataDir (shared across restarts) with the
// clock clk; stop is idempotent.
func notifyApp(t *testing.T, dataDir string, clk *clock, opts ...harnessOpt) (*harness, func()) {
	t.Helper()
	return appOn(t, dataDir, "", clk, opts...)
}

// appOn is notifyApp listening on addr ("": any free port), so that a
// restarted app keeps its base URL (links and job URLs stay valid).
func appOn(t *testing.T, dataDir, addr string, clk *clock, opts ...harnessOpt) (*harness, func()) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		ts.Listener.Close()
		ts.Listener = ln
	}
	base := "http://" + ts.Listener.Addr().String() + "/fhir"
	o := Options{BaseURL: base, DataDir: dataDir, MaxBody: 1 << 20, Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	o.Store = os.Getenv("FHIRGATE_TEST_STORE")
	if os.Getenv("FHIRGATE_TEST_LOG") != "" {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, f := range opts {
		f(&o)
	}
	a, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("app: %v", err)
	}
	ts.Config.Handler = a.Handler
	ts.Start()
	h := &harness{t: t, app: a, srv: ts, base: base, clock: clk}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ts.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a.Close(ctx)
		})
	}
	t.Cleanup(stop)
	h.tok = h.token(devissuer.MintOptions{Scope: "system/*.cruds", Client: "test-emr"})
	return h, stop
}

// ntClock is the tests' clock, set before the app starts (the feed
// starts from the clock's now).
func ntClock() *clock { return &clock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)} }

// ntEventually waits (up to 15 s of wall time) for cond.
func ntEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ntCaughtUp waits until the change feed processed every version up to the
// newest one, and no notification is left due.
func ntCaughtUp(t *testing.T, h *harness) {
	t.Helper()
	ctx := context.Background()
	ntEventually(t, "the change feed to catch up", func() bool {
		// The newest version the feed reads (it leaves AuditEvents out).
		pg, err := h.app.Store.History(ctx, store.HistoryQuery{Count: 1, Filter: search.Not{Arg: search.TypeCond{Types: feed.Unfed}}})
		if err != nil || len(pg.Records) == 0 {
			return false
		}
		b, err := h.app.Notify.Storage.State(ctx, "feed")
		if err != nil || b == nil {
			return false
		}
		var cur struct{ At time.Time }
		if json.Unmarshal(b, &cur) != nil {
			return false
		}
		return !cur.At.Before(pg.Records[0].LastUpdated)
	})
	now := h.clock.Now()
	ntEventually(t, "due notifications to be delivered", func() bool {
		its, err := h.app.Notify.Storage.Items(ctx, notify.Pending, 1000)
		if err != nil {
			return false
		}
		for _, it := range its {
			if !it.Due.After(now) {
				return false
			}
		}
		return true
	})
}

// ntTick moves the clock on by d (every write gets a later lastUpdated).
func ntTick(h *harness, d time.Duration) { h.clock.Set(h.clock.Now().Add(d)) }

// The test data's PHI: names, codes, values, clinic, physician.
const (
	ntPatientName  = "Tremblay"
	ntPatientGiven = "Amélie"
	ntDoctor       = "Gregory Lavoie"
	ntClinic       = "Clinique Saint-Laurent"
	ntLabCode      = "4548-4"
	ntLabValue     = "7.3"
	ntMessageText  = "Your HbA1c came back high"
	ntDiagnosis    = "diabetes"
)

var ntPHI = []string{ntPatientName, ntPatientGiven, "Amelie", "Lavoie", "Gregory", "Saint-Laurent", ntClinic, ntLabCode, ntLabValue,
	"HbA1c", ntDiagnosis, "pat-n1", "pat-n2", "comm-", "obs-", "dr-lavoie", "org-clinic", "appt-"}

func notifyWorld(t *testing.T, h *harness) {
	t.Helper()
	put(h, "Organization", "org-clinic", `{"resourceType":"Organization","name":"`+ntClinic+`"}`)
	put(h, "Practitioner", "dr-lavoie", `{"resourceType":"Practitioner","name":[{"text":"Dr. `+ntDoctor+`"}]}`)
	put(h, "Patient", "pat-n1", `{"resourceType":"Patient","name":[{"family":"`+ntPatientName+`","given":["`+ntPatientGiven+`"]}],`+
		`"birthDate":"1980-02-03","telecom":[{"system":"phone","value":"555-0100"},{"system":"email","value":"amelie@example.org"}],`+
		`"managingOrganization":{"reference":"Organization/org-clinic"}}`)
	put(h, "Patient", "pat-n2", `{"resourceType":"Patient","name":[{"family":"Optedout"}],"birthDate":"1981-02-03",`+
		`"telecom":[{"system":"email","value":"out@example.org"}],"communication":[{"language":{"coding":[{"code":"fr-CA"}]},"preferred":true}]}`)
	ctx := context.Background()
	st := h.app.Notify.Storage
	if err := st.SetPrefs(ctx, "Patient/pat-n1", notify.Prefs{Kinds: map[string]bool{"message": true, "result": true, "reminder": true}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetPrefs(ctx, "Patient/pat-n2", notify.Prefs{Kinds: map[string]bool{"message": false, "result": false}}); err != nil {
		t.Fatal(err)
	}
}

func commMsg(id, to string) string {
	return `{"resourceType":"Communication","id":"` + id + `","status":"completed","subject":{"reference":"` + to + `"},` +
		`"recipient":[{"reference":"` + to + `"}],"sender":{"reference":"Practitioner/dr-lavoie"},` +
		`"topic":{"text":"` + ntDiagnosis + `"},"payload":[{"contentString":"` + ntMessageText + ` (` + ntLabValue + `%), Dr. ` + ntDoctor + `"}]}`
}

func hba1c(id, patient, status string) string {
	return `{"resourceType":"Observation","id":"` + id + `","status":"` + status + `","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"SP"}]}],` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"` + ntLabCode + `","display":"HbA1c"}]},"subject":{"reference":"` + patient + `"},` +
		`"performer":[{"reference":"Organization/org-clinic","display":"` + ntClinic + `"}],` +
		`"issued":"2026-06-01T08:00:00Z","valueQuantity":{"value":` + ntLabValue + `,"unit":"%"}}`
}

// ntAssertNoPHI fails when a message mentions any of the test data's PHI,
// and checks what it must say.
func ntAssertNoPHI(t *testing.T, m smtptest.Mail, sentence, section string) {
	t.Helper()
	// The header names the recipient's own address (To); the rest of the
	// header and the body must carry no PHI.
	head, body, ok := strings.Cut(ntDecodeQP(m.Data), "\r\n\r\n")
	if !ok {
		t.Fatalf("no header/body separator: %q", m.Data)
	}
	var lines []string
	for _, l := range strings.Split(head, "\r\n") {
		// To is the recipient's own address; the Message-ID is random hex
		// (it could spell a value such as "7.3" by chance).
		if !strings.HasPrefix(l, "To:") && !strings.HasPrefix(l, "Message-ID:") {
			lines = append(lines, l)
		}
	}
	checked := strings.Join(lines, "\n") + "\n" + body
	for _, s := range ntPHI {
		if strings.Contains(strings.ToLower(checked), strings.ToLower(s)) {
			t.Errorf("the email contains %q:\n%s", s, checked)
		}
	}
	if !strings.Contains(body, sentence) {
		t.Errorf("the email lacks %q:\n%s", sentence, body)
	}
	if !strings.Contains(body, ntPortal+section) {
		t.Errorf("the email lacks the link %s:\n%s", ntPortal+section, body)
	}
	if !strings.Contains(body, "911") {
		t.Errorf("the email does not say the portal is not for emergencies:\n%s", body)
	}
}

// ntDecodeQP undoes quoted-printable soft line breaks and =XX escapes well
// enough to search the text (the raw message is searched too).
func ntDecodeQP(s string) string {
	r := strings.NewReplacer("=\r\n", "", "=3D", "=", "=C3=A9", "é", "=E2=80=99", "’")
	return r.Replace(s)
}

func TestNotifyMessageWithoutPHI(t *testing.T) {
	mb := smtptest.Start(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), notifyOpts(mb))
	notifyWorld(t, h)
	ntTick(h, time.Second)
	h.req("PUT", "Communication/comm-1", commMsg("comm-1", "Patient/pat-n1"), "").must(t, 201)
	h.req("PUT", "Communication/comm-2", commMsg("comm-2", "Patient/pat-n2"), "").must(t, 201)
	ntTick(h, time.Second)
	ntEventually(t, "the email", func() bool { return len(mb.To("amelie@example.org")) == 1 })
	ntCaughtUp(t, h)
	// An update of the message is not a new message.
	h.req("PUT", "Communication/comm-1", strings.Replace(commMsg("comm-1", "Patient/pat-n1"), "completed", "in-progress", 1), "").must(t, 200)
	ntTick(h, time.Second)
	ntCaughtUp(t, h)

	got := mb.To("amelie@example.org")
	if len(got) != 1 {
		t.Fatalf("%d emails to the patient, want 1", len(got))
	}
	if n := len(mb.To("out@example.org")); n != 0 {
		t.Fatalf("%d emails to the patient who opted out", n)
	}
	if len(mb.All()) != 1 {
		t.Fatalf("%d emails in all, want 1", len(mb.All()))
	}
	ntAssertNoPHI(t, got[0], "You have a new message in your portal.", "/messages")
	// What is stored for delivery carries nothing but the address, the
	// template and the link either (the key, internal, names resources).
	its, err := h.app.Notify.Storage.Items(context.Background(), "", 100)
	if err != nil || len(its) != 1 {
		t.Fatalf("outbox %v %v", its, err)
	}
	for _, it := range its {
		n := it.Notification
		n.Key, n.To = "", ""
		b, _ := json.Marshal(n)
		for _, s := range ntPHI {
			if strings.Contains(strings.ToLower(string(b)), strings.ToLower(s)) {
				t.Errorf("the outbox item contains %q: %s", s, b)
			}
		}
	}
	if got[0].From != "portal@example.org" {
		t.Errorf("from %q", got[0].From)
	}
}

func TestNotifyDelayedResult(t *testing.T) {
	mb := smtptest.Start(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), notifyOpts(mb), withPolicy(t))
	notifyWorld(t, h)
	ntTick(h, time.Second)
	// Pathology: released 168 h after issued (2026-06-08T08:00Z).
	h.req("PUT", "Observation/obs-1", hba1c("obs-1", "Patient/pat-n1", "final"), "").must(t, 201)
	// A preliminary result is not notified, even once released.
	h.req("PUT", "Observation/obs-2", hba1c("obs-2", "Patient/pat-n1", "preliminary"), "").must(t, 201)
	ntTick(h, time.Second)
	ntCaughtUp(t, h)
	if n := len(mb.All()); n != 0 {
		t.Fatalf("%d emails before the release instant", n)
	}
	h.clock.Set(time.Date(2026, 6, 8, 7, 59, 0, 0, time.UTC))
	ntCaughtUp(t, h)
	if n := len(mb.All()); n != 0 {
		t.Fatalf("%d emails a minute before the release instant", n)
	}
	h.clock.Set(time.Date(2026, 6, 8, 8, 0, 30, 0, time.UTC))
	ntEventually(t, "the result email", func() bool { return len(mb.To("amelie@example.org")) == 1 })
	h.clock.Set(time.Date(2026, 6, 8, 9, 0, 0, 0, time.UTC))
	ntCaughtUp(t, h)
	got := mb.To("amelie@example.org")
	if len(got) != 1 || len(mb.All()) != 1 {
		t.Fatalf("%d emails to the patient (%d in all), want 1", len(got), len(mb.All()))
	}
	ntAssertNoPHI(t, got[0], "A new result is available in your portal.", "/results")

	// A result without a delay is notified at once.
	put(h, "Observation", "obs-3", obs("pat-n1", "laboratory", ntLabCode))
	ntTick(h, time.Second)
	ntEventually(t, "the immediate result email", func() bool { return len(mb.To("amelie@example.org")) == 2 })
}

// The outbox survives a restart, the SMTP server failing is retried with
// backoff, and a replay of the feed sends nothing twice.
func TestNotifyRestartAndRetry(t *testing.T) {
	mb := smtptest.Start(t)
	dir := t.TempDir()
	clk := ntClock()
	h, stop := notifyApp(t, dir, clk, notifyOpts(mb))
	notifyWorld(t, h)
	mb.SetFailing(true)
	ntTick(h, time.Second)
	h.req("PUT", "Communication/comm-r1", commMsg("comm-r1", "Patient/pat-n1"), "").must(t, 201)
	ntTick(h, time.Second)
	ctx := context.Background()
	key := "message/Communication/comm-r1/Patient/pat-n1"
	ntEventually(t, "a failed attempt", func() bool {
		it, err := h.app.Notify.Storage.Item(ctx, key)
		return err == nil && it.Attempts == 1
	})
	it, _ := h.app.Notify.Storage.Item(ctx, key)
	if !it.Due.After(clk.Now()) || it.LastError == "" {
		t.Fatalf("retry not scheduled: %+v", it)
	}
	// A second message written just before the stop: the feed may or may
	// not have seen it.
	h.req("PUT", "Communication/comm-r2", commMsg("comm-r2", "Patient/pat-n1"), "").must(t, 201)
	stop()

	mb.SetFailing(false)
	h2, _ := notifyApp(t, dir, clk, notifyOpts(mb))
	ntTick(h2, time.Second)
	ntCaughtUp(t, h2)
	// The first is not due yet (backoff): only the second may be sent.
	if n := len(mb.To("amelie@example.org")); n > 1 {
		t.Fatalf("%d emails before the retry is due", n)
	}
	// The second may have failed before the stop too, with its own
	// jittered backoff (notify.Backoff): move past both.
	due := it.Due
	if it2, err := h2.app.Notify.Storage.Item(ctx, "message/Communication/comm-r2/Patient/pat-n1"); err == nil && it2.Due.After(due) {
		due = it2.Due
	}
	clk.Set(due.Add(time.Second))
	ntEventually(t, "both emails", func() bool { return len(mb.To("amelie@example.org")) == 2 })
	ntTick(h2, time.Hour)
	ntCaughtUp(t, h2)
	if n := len(mb.To("amelie@example.org")); n != 2 {
		t.Fatalf("%d emails, want 2 (no loss, no duplicate)", n)
	}
	it, err := h2.app.Notify.Storage.Item(ctx, key)
	if err != nil || it.State != notify.Delivered || it.Attempts != 1 {
		t.Fatalf("item %+v %v", it, err)
	}
	refused := mb.Refused()
	if refused < 1 {
		t.Fatalf("the failing server refused %d messages", refused)
	}
}

func TestNotifyAppointmentReminder(t *testing.T) {
	mb := smtptest.Start(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), notifyOpts(mb))
	notifyWorld(t, h)
	ntAppt := func(id, status, start string) string {
		return `{"resourceType":"Appointment","id":"` + id + `","status":"` + status + `","description":"` + ntDiagnosis + ` follow-up",` +
			`"start":"` + start + `","end":"` + strings.Replace(start, "T10", "T11", 1) + `",` +
			`"participant":[{"actor":{"reference":"Patient/pat-n1"},"status":"accepted"},{"actor":{"reference":"Practitioner/dr-lavoie"},"status":"accepted"}]}`
	}
	h.req("PUT", "Appointment/appt-1", ntAppt("appt-1", "booked", "2026-06-05T10:00:00Z"), "").must(t, 201)
	h.req("PUT", "Appointment/appt-2", ntAppt("appt-2", "booked", "2026-06-06T10:00:00Z"), "").must(t, 201)
	ntTick(h, time.Second)
	ntCaughtUp(t, h)
	// appt-2 is cancelled: its reminder is skipped at delivery time.
	h.req("PUT", "Appointment/appt-2", ntAppt("appt-2", "cancelled", "2026-06-06T10:00:00Z"), "").must(t, 200)
	ntTick(h, time.Second)
	ntCaughtUp(t, h)
	if n := len(mb.All()); n != 0 {
		t.Fatalf("%d reminders days before", n)
	}
	h.clock.Set(time.Date(2026, 6, 4, 10, 0, 1, 0, time.UTC))
	ntEventually(t, "the reminder", func() bool { return len(mb.To("amelie@example.org")) == 1 })
	h.clock.Set(time.Date(2026, 6, 5, 10, 0, 1, 0, time.UTC))
	ntCaughtUp(t, h)
	if n := len(mb.All()); n != 1 {
		t.Fatalf("%d reminders, want 1 (the cancelled appointment has none)", n)
	}
	ntAssertNoPHI(t, mb.All()[0], "You have an upcoming appointment.", "/appointments")
	it, err := h.app.Notify.Storage.Item(context.Background(), "reminder/Appointment/appt-2/"+
		ntItoa(time.Date(2026, 6, 6, 10, 0, 0, 0, time.UTC).Unix())+"/Patient/pat-n1")
	if err != nil || it.State != notify.Skipped {
		t.Fatalf("cancelled appointment's reminder: %+v %v", it, err)
	}
}

func ntItoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestNotifyPreferencesOperation(t *testing.T) {
	mb := smtptest.Start(t)
	h, _ := notifyApp(t, t.TempDir(), ntClock(), notifyOpts(mb))
	notifyWorld(t, h)
	put(h, "Patient", "pat-n3", `{"resourceType":"Patient","name":[{"family":"Three"}],"birthDate":"1982-02-03","telecom":[{"system":"email","value":"three@example.org"}]}`)
	pt := func(id string) string {
		return h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: id, FHIRUser: "Patient/" + id, Client: "portal"})
	}
	val := func(r res, name string) any {
		for _, p := range r.JSON["parameter"].([]any) {
			m := p.(map[string]any)
			if m["name"] == name {
				if v, ok := m["valueBoolean"]; ok {
					return v
				}
				return m["valueCode"]
			}
		}
		return nil
	}
	const op = "Patient/pat-n3/$notification-preferences"
	r := h.req("GET", op, nil, pt("pat-n3")).must(t, 200)
	if val(r, "message") != false || val(r, "result") != false {
		t.Fatalf("defaults: %s", r.Body)
	}
	set := `{"resourceType":"Parameters","parameter":[{"name":"message","valueBoolean":true},{"name":"lang","valueCode":"fr"}]}`
	r = h.req("POST", op, set, pt("pat-n3")).must(t, 200)
	if val(r, "message") != true || val(r, "lang") != "fr" || val(r, "reminder") != false {
		t.Fatalf("after POST: %s", r.Body)
	}
	// Another patient can neither see nor change them; staff can.
	if r := h.req("GET", op, nil, pt("pat-n1")); r.Status != 403 && r.Status != 404 {
		t.Fatalf("another patient: %d %s", r.Status, r.Body)
	}
	if r := h.req("POST", op, `{"resourceType":"Parameters","parameter":[{"name":"message","valueBoolean":false}]}`, pt("pat-n1")); r.Status != 403 && r.Status != 404 {
		t.Fatalf("another patient's POST: %d %s", r.Status, r.Body)
	}
	doc := h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-lavoie"})
	if r := h.req("GET", op, nil, doc).must(t, 200); val(r, "message") != true {
		t.Fatalf("staff: %s", r.Body)
	}
	h.req("POST", op, `{"resourceType":"Parameters","parameter":[{"name":"result","valueString":"yes"}]}`, pt("pat-n3")).must(t, 400)
	h.req("POST", op, `{"resourceType":"Parameters","parameter":[{"name":"lang","valueCode":"de"}]}`, pt("pat-n3")).must(t, 400)

	// The opt-in takes effect: a message to pat-n3 is emailed, in French.
	ntTick(h, time.Second)
	h.req("PUT", "Communication/comm-p1", commMsg("comm-p1", "Patient/pat-n3"), "").must(t, 201)
	ntTick(h, time.Second)
	ntEventually(t, "the email", func() bool { return len(mb.To("three@example.org")) == 1 })
	if m := mb.To("three@example.org")[0]; !strings.Contains(m.Data, "Vous avez un nouveau message dans votre portail.") {
		t.Fatalf("not in French: %s", m.Data)
	}
	// Opted out again: nothing more.
	h.req("POST", op, `{"resourceType":"Parameters","parameter":[{"name":"message","valueBoolean":false}]}`, pt("pat-n3")).must(t, 200)
	ntTick(h, time.Second)
	h.req("PUT", "Communication/comm-p2", commMsg("comm-p2", "Patient/pat-n3"), "").must(t, 201)
	ntTick(h, time.Second)
	ntCaughtUp(t, h)
	if n := len(mb.To("three@example.org")); n != 1 {
		t.Fatalf("%d emails after opting out, want 1", n)
	}
}

func TestNotifyFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	n, err := NotifyFromEnv(env(map[string]string{"FHIRGATE_SMTP_URL": "smtps://u:p@mail.example.org?from=portal@example.org",
		"FHIRGATE_PORTAL_URL": "https://portal.example.org/", "FHIRGATE_REMINDER_LEAD": "48h", "FHIRGATE_NOTIFY_DEFAULT_OPT_IN": "true"}))
	if err != nil || n.PortalURL != "https://portal.example.org" || n.ReminderLead != 48*time.Hour || !n.DefaultOptIn {
		t.Fatalf("%+v %v", n, err)
	}
	for _, bad := range []map[string]string{
		{"FHIRGATE_SMTP_URL": "smtp://mail.example.org"}, // no from, no portal
		{"FHIRGATE_SMTP_URL": "smtp://h?from=a@b.org"},   // no portal
		{"FHIRGATE_PORTAL_URL": "portal.example.org"},
		{"FHIRGATE_REMINDER_LEAD": "-1h"},
		{"FHIRGATE_NOTIFY_DEFAULT_OPT_IN": "maybe"},
	} {
		if _, err := NotifyFromEnv(env(bad)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if n, err := NotifyFromEnv(env(nil)); err != nil || n.SMTPURL != "" {
		t.Fatalf("empty: %+v %v", n, err)
	}
}
