package server_test

// The audit trail of Bundle entries (bundleaudit.go): IHE BALP's one
// event per patient, R4 http.html#transaction's all-or-nothing.

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir/server/servertest"
)

// recorder is an audit Logger whose sink keeps the events.
type recorder struct {
	mu sync.Mutex
	ev []audit.Event
	l  *audit.Logger
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.l = audit.NewLogger(func(_ context.Context, es []audit.Event) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.ev = append(r.ev, es...)
		return nil
	}, audit.Options{})
	t.Cleanup(func() { _ = r.l.Close(context.Background()) })
	return r
}

// take flushes the logger and returns (and forgets) what it recorded.
func (r *recorder) take(t *testing.T) []audit.Event {
	t.Helper()
	if err := r.l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.ev
	r.ev = nil
	return ev
}

func obs(id, patient string) string {
	return `{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patient + `"}}`
}

func entry(method, url, res string) string {
	e := `{"request":{"method":"` + method + `","url":"` + url + `"}`
	if res != "" {
		e += `,"resource":` + res
	}
	return e + "}"
}

func bundleOf(typ string, entries ...string) string {
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
}

// named lists the resources ("Type/id", versions dropped) an event names.
func named(e audit.Event) []string {
	var out []string
	for _, r := range e.Resources {
		k, _, _ := strings.Cut(r, "/_history/")
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestBundleEntryAudit(t *testing.T) {
	rec := newRecorder(t)
	s, _ := servertest.New(t, servertest.Options{Audit: rec.l})
	emr := servertest.As(t, "system/*.cruds", "", "")
	for _, p := range []string{"a", "b"} {
		if r := servertest.Do(emr, s, "PUT", "Patient/"+p, `{"resourceType":"Patient","id":"`+p+`"}`); r.Status != 201 {
			t.Fatalf("PUT Patient/%s: %d %s", p, r.Status, r.Body)
		}
	}
	rec.take(t)

	t.Run("a rolled-back transaction records no write as done", func(t *testing.T) {
		// http.html#transaction: "If any resource ... fails, then the whole
		// transaction fails": the first entry's create is staged, never stored.
		r := servertest.Do(emr, s, "POST", "", bundleOf("transaction",
			entry("PUT", "Observation/t1", obs("t1", "a")),
			entry("PUT", "Observation/t2", `{"resourceType":"Observation","id":"t2","status":"bogus","code":{"text":"x"}}`)))
		if r.Status != 400 {
			t.Fatalf("transaction: %d %s", r.Status, r.Body)
		}
		for _, e := range rec.take(t) {
			if e.Outcome < 400 && slices.Contains(named(e), "Observation/t1") {
				t.Errorf("audited as done: %s %d %v", e.Interaction, e.Outcome, e.Resources)
			}
		}
	})

	t.Run("a committed transaction: one event per patient and kind", func(t *testing.T) {
		r := servertest.Do(emr, s, "POST", "", bundleOf("transaction",
			entry("POST", "Observation", obs("a1", "a")),
			entry("POST", "Observation", obs("a2", "a")),
			entry("POST", "Observation", obs("b1", "b")),
			entry("PUT", "Patient/b", `{"resourceType":"Patient","id":"b","active":true}`)))
		if r.Status != 200 {
			t.Fatalf("transaction: %d %s", r.Status, r.Body)
		}
		got := map[string][]string{} // interaction patient -> resources
		for _, e := range rec.take(t) {
			if e.Interaction == "transaction" {
				continue
			}
			if len(e.Patients) != 1 {
				t.Errorf("event %s names patients %v, want one", e.Interaction, e.Patients)
				continue
			}
			k := e.Interaction + " " + e.Patients[0]
			if got[k] != nil {
				t.Errorf("two events for %s: %v and %v", k, got[k], named(e))
			}
			var types []string // POST ids are the server's
			for _, n := range named(e) {
				types = append(types, strings.SplitN(n, "/", 2)[0])
			}
			got[k] = types
		}
		want := map[string][]string{
			"create Patient/a": {"Observation", "Observation"},
			"create Patient/b": {"Observation"},
			"update Patient/b": {"Patient"},
		}
		for k, w := range want {
			if !slices.Equal(got[k], w) {
				t.Errorf("%s: %v, want %v", k, got[k], w)
			}
		}
		if len(got) != len(want) {
			t.Errorf("events %v, want %v", got, want)
		}
	})

	t.Run("a batch: refused entries keep an event with their outcome", func(t *testing.T) {
		r := servertest.Do(emr, s, "POST", "", bundleOf("batch",
			entry("PUT", "Observation/c1", obs("c1", "a")),
			entry("PUT", "Observation/c2", `{"resourceType":"Observation","id":"c2","status":"bogus","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`),
			entry("PUT", "Observation/c3", obs("c3", "a")),
			entry("GET", "Observation?subject=Patient/a", "")))
		if r.Status != 200 {
			t.Fatalf("batch: %d %s", r.Status, r.Body)
		}
		var creates, refused, searches int
		for _, e := range rec.take(t) {
			switch {
			case e.Interaction == "update" && e.Outcome < 400: // PUT: update (as create)
				creates++
				if n := named(e); !slices.Equal(n, []string{"Observation/c1", "Observation/c3"}) {
					t.Errorf("merged create names %v", n)
				}
			case e.Outcome >= 400:
				refused++
				if e.OutcomeText == "" {
					t.Errorf("refused entry without its reason: %+v", e)
				}
			case strings.HasPrefix(e.Interaction, "search"):
				searches++
				if !strings.Contains(e.Query, "subject") {
					t.Errorf("search event query %q", e.Query)
				}
			}
		}
		if creates != 1 || refused != 1 || searches != 1 {
			t.Errorf("creates %d, refused %d, searches %d: want 1 each", creates, refused, searches)
		}
	})

	t.Run("a resource in no compartment is not named in patients' events", func(t *testing.T) {
		r := servertest.Do(emr, s, "POST", "", bundleOf("transaction",
			entry("PUT", "Observation/n1", obs("n1", "a")),
			entry("PUT", "Practitioner/dr", `{"resourceType":"Practitioner","id":"dr"}`)))
		if r.Status != 200 {
			t.Fatalf("transaction: %d %s", r.Status, r.Body)
		}
		for _, e := range rec.take(t) {
			n := named(e)
			if slices.Contains(n, "Practitioner/dr") && (len(e.Patients) > 0 || e.Patient != "" || len(n) != 1) {
				t.Errorf("Practitioner/dr named with %v in an event of patients %v", n, e.Patients)
			}
		}
	})

	t.Run("a merged event names at most 100 resources", func(t *testing.T) {
		var es []string
		for i := range 150 {
			id := "m" + strings.Repeat("0", 3-len(itoa(i))) + itoa(i)
			es = append(es, entry("PUT", "Observation/"+id, obs(id, "b")))
		}
		if r := servertest.Do(emr, s, "POST", "", bundleOf("transaction", es...)); r.Status != 200 {
			t.Fatalf("transaction: %d %s", r.Status, r.Body)
		}
		total := 0
		for _, e := range rec.take(t) {
			if e.Interaction != "update" {
				continue
			}
			if len(e.Resources) > 100 {
				t.Errorf("event names %d resources", len(e.Resources))
			}
			total += len(e.Resources)
		}
		if total != 150 {
			t.Errorf("events name %d creates, want 150", total)
		}
	})
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
