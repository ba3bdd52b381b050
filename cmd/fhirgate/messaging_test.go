package main

// Secure messaging and notifications through the binary (issue "Virtual
// care"; docs/messaging.md, docs/notifications.md): the build `make run`
// starts, with a policy file (messaging rules, release rules) and an SMTP
// server in the test. Each rule is driven over HTTP with tokens of the
// built-in issuer (`fhirgate token`): who a patient may write to, the
// automatic reply (response time, not for emergencies), a proxy writing
// for a child, attachments' allow-list and size, read receipts and the
// unread inbox, closing a thread, $escalate, emails without PHI for a
// message, a released result (a clinician's $release and a delay coming
// due) and an appointment reminder, and a Subscription's rest-hook.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/smtptest"
)

const binaryMessagingPolicy = `version: 1
rules:
  - name: hiv-manual
    match:
      security: ["http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV"]
    action: manual
  - name: pathology-delay
    match:
      resourceType: [Observation]
      category: ["http://terminology.hl7.org/CodeSystem/v2-0074|SP"]
    action: delay
    delay: 2s
    from: issued
messaging:
  enabled: true
  recipients:
    careTeam: true
    pools: [CareTeam/nurses]
    patientChooses: true
  responseTime: 2d
  attachments:
    contentTypes: [application/pdf]
    maxSize: 1KiB
`

func TestMessagingThroughTheBinary(t *testing.T) {
	c := startBinary(t, withMail(), withPolicy(binaryMessagingPolicy), withEnv("FHIRGATE_REMINDER_LEAD=2h"))
	emr := c.token("--scope", "system/*.cruds")
	ann := c.token("--scope", "patient/*.cruds", "--patient", "ann", "--fhir-user", "Patient/ann", "--client", "portal")
	mum := c.token("--scope", "patient/*.cruds", "--patient", "kid", "--fhir-user", "RelatedPerson/mum", "--client", "portal")
	doc := c.token("--scope", "user/*.cruds", "--fhir-user", "Practitioner/dr-a", "--client", "emr-ui")

	// Names and values that must never be in an email.
	secret := []string{"Ann", "Archer", "Kid", "Lee", "Nurses", "Riverside", "food", "HIV", "75622-1", "22637-3", "benign", "ann@example.org", "ann", "kid"}
	for _, x := range []struct{ path, body string }{
		{"Patient/ann", `{"resourceType":"Patient","id":"ann","name":[{"given":["Ann"],"family":"Archer"}],"birthDate":"1980-02-02","telecom":[{"system":"email","value":"ann@example.org"}]}`},
		{"Patient/kid", `{"resourceType":"Patient","id":"kid","name":[{"given":["Kid"],"family":"Archer"}],"birthDate":"2019-05-05"}`},
		{"RelatedPerson/mum", `{"resourceType":"RelatedPerson","id":"mum","active":true,"patient":{"reference":"Patient/kid"},"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"MTH"}]}]}`},
		{"Practitioner/dr-a", `{"resourceType":"Practitioner","id":"dr-a","name":[{"family":"Lee"}]}`},
		{"Practitioner/dr-x", `{"resourceType":"Practitioner","id":"dr-x","name":[{"family":"Stranger"}]}`},
		{"CareTeam/ct-ann", `{"resourceType":"CareTeam","id":"ct-ann","status":"active","subject":{"reference":"Patient/ann"},"participant":[{"member":{"reference":"Practitioner/dr-a"}}]}`},
		{"CareTeam/ct-kid", `{"resourceType":"CareTeam","id":"ct-kid","status":"active","subject":{"reference":"Patient/kid"},"participant":[{"member":{"reference":"Practitioner/dr-a"}}]}`},
		{"CareTeam/nurses", `{"resourceType":"CareTeam","id":"nurses","status":"active","name":"Nurses of Riverside"}`},
	} {
		c.do(emr, "PUT", x.path, x.body, 201)
	}
	c.do(emr, "POST", "Patient/ann/$notification-preferences", `{"resourceType":"Parameters","parameter":[{"name":"message","valueBoolean":true},{"name":"result","valueBoolean":true},{"name":"reminder","valueBoolean":true}]}`, 200)
	noPHI := func(what string, m smtptest.Mail) {
		t.Helper()
		if strings.Join(m.To, ",") != "ann@example.org" {
			t.Errorf("%s email to %v", what, m.To)
		}
		assertNoPHI(t, what, m, secret)
	}

	// 1. Recipients: the care team and the pool, not a stranger.
	thread := func(subject, to, extra string) string {
		return `{"resourceType":"Communication","status":"in-progress",` + extra + `"subject":{"reference":"Patient/` + subject + `"},` +
			`"recipient":[{"reference":"` + to + `"}],"topic":{"text":"Question"},"payload":[{"contentString":"Can I take it with food?"}]}`
	}
	c.do(ann, "POST", "Communication", thread("ann", "Practitioner/dr-x", ""), 403)
	c.do(ann, "POST", "Communication", thread("kid", "Practitioner/dr-a", ""), 403) // not her compartment
	hid := c.do(ann, "POST", "Communication", thread("ann", "Practitioner/dr-a", ""), 201)
	if s, _ := hid.json["sender"].(map[string]any); s["reference"] != "Patient/ann" {
		t.Errorf("sender %v", hid.json["sender"])
	}
	c.do(ann, "POST", "Communication", thread("ann", "CareTeam/nurses", ""), 201)
	// The automatic reply: response time and not for emergencies.
	auto := c.do(ann, "GET", "Communication?part-of=Communication/"+hid.str("id"), "", 200)
	if b := string(auto.body); len(auto.ids()) != 1 || !strings.Contains(b, "2 business days") || !strings.Contains(b, "911") {
		t.Fatalf("automatic reply: %s", b)
	}
	// 2. A proxy writes in the child's name: the sender is the proxy.
	kt := c.do(mum, "POST", "Communication", thread("kid", "Practitioner/dr-a", ""), 201)
	if s, _ := kt.json["sender"].(map[string]any); s["reference"] != "RelatedPerson/mum" {
		t.Errorf("proxy's sender %v", kt.json["sender"])
	}
	c.do(mum, "POST", "Communication", thread("ann", "Practitioner/dr-a", ""), 403)
	// 3. Attachments: the allow-list and the size limit; nothing stored when refused.
	binary := func(ct string, n int) string {
		return `{"resourceType":"Binary","securityContext":{"reference":"Patient/ann"},"contentType":"` + ct + `","data":"` +
			base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), n)) + `"}`
	}
	c.do(ann, "POST", "Binary", binary("image/gif", 10), 422)
	c.do(ann, "POST", "Binary", binary("application/pdf", 1025), 413)
	if n := c.do(emr, "GET", "Binary?_summary=count", "", 200).json["total"]; n != 0.0 {
		t.Fatalf("refused uploads stored %v Binaries", n)
	}
	pdf := c.do(ann, "POST", "Binary", binary("application/pdf", 100), 201).str("id")
	c.do(ann, "POST", "Communication", `{"resourceType":"Communication","status":"completed","partOf":[{"reference":"Communication/`+hid.str("id")+`"}],`+
		`"subject":{"reference":"Patient/ann"},"payload":[{"contentAttachment":{"contentType":"application/pdf","url":"Binary/`+pdf+`"}}]}`, 201)

	// 4. The clinician's inbox, the reply (an email without PHI), the
	// patient's read receipt.
	unread := c.do(doc, "GET", "Communication?unread-for=Practitioner/dr-a", "", 200).ids()
	if len(unread) != 3 { // ann's thread and attachment message, kid's thread
		t.Fatalf("dr-a's unread: %v", unread)
	}
	reply := c.do(doc, "POST", "Communication", `{"resourceType":"Communication","status":"completed","partOf":[{"reference":"Communication/`+hid.str("id")+`"}],`+
		`"subject":{"reference":"Patient/ann"},"sender":{"reference":"Practitioner/dr-a"},"recipient":[{"reference":"Patient/ann"}],"payload":[{"contentString":"Yes, with food."}]}`, 201)
	m := c.mail.Next(t, 30*time.Second)
	if !strings.Contains(m.Body, "You have a new message in your portal.") || !strings.Contains(m.Body, "https://portal.example.org") {
		t.Fatalf("message email: %s", m.Body)
	}
	noPHI("message", m)
	c.do(ann, "PATCH", "Communication/"+reply.str("id"), `[{"op":"add","path":"/received","value":"2026-01-01T00:00:00Z"}]`, 200, "Content-Type: application/json-patch+json")
	for _, id := range c.do(ann, "GET", "Communication?unread-for=Patient/ann", "", 200).ids() {
		if id == "Communication/"+reply.str("id") {
			t.Errorf("a read reply is still unread")
		}
	}
	// A patient cannot change a sent message beyond the receipt.
	c.do(ann, "PATCH", "Communication/"+reply.str("id"), `[{"op":"replace","path":"/status","value":"stopped"}]`, 403, "Content-Type: application/json-patch+json")

	// 5. Closing the thread, then $escalate (staff only).
	cur := c.do(doc, "GET", "Communication/"+hid.str("id"), "", 200)
	if open := c.do(doc, "GET", "Communication?open-thread-for=Practitioner/dr-a", "", 200).ids(); len(open) != 2 {
		t.Errorf("dr-a's open threads: %v", open)
	}
	c.do(doc, "PUT", "Communication/"+hid.str("id"), strings.Replace(string(cur.body), `"status":"in-progress"`, `"status":"completed"`, 1), 200)
	if open := c.do(doc, "GET", "Communication?open-thread-for=Practitioner/dr-a", "", 200).ids(); len(open) != 1 || open[0] != "Communication/"+kt.str("id") {
		t.Errorf("dr-a's open threads after closing one: %v", open)
	}
	c.do(ann, "POST", "Communication", `{"resourceType":"Communication","status":"completed","partOf":[{"reference":"Communication/`+hid.str("id")+`"}],`+
		`"subject":{"reference":"Patient/ann"},"payload":[{"contentString":"One more thing"}]}`, 409)
	// Patients never escalate: the same 403 for another's thread and a missing one.
	c.do(ann, "POST", "Communication/"+kt.str("id")+"/$escalate", `{"resourceType":"Parameters"}`, 403)
	c.do(ann, "POST", "Communication/nope/$escalate", `{"resourceType":"Parameters"}`, 403)
	c.do(mum, "POST", "Communication/"+kt.str("id")+"/$escalate", `{"resourceType":"Parameters"}`, 403)
	c.do(doc, "POST", "Communication/"+kt.str("id")+"/$escalate", `{"resourceType":"Parameters","parameter":[{"name":"kind","valueCode":"econsult"},{"name":"note","valueString":"ask dermatology"}]}`, 200)
	if n := len(c.do(doc, "GET", "Task?patient=Patient/kid", "", 200).ids()); n != 1 {
		t.Errorf("escalation Tasks for kid: %d", n)
	}

	// 6. Results: a manual one after the clinician's $release, a delayed
	// one when its delay comes due; each one email, no PHI.
	obs := func(id, extra string) string {
		return `{"resourceType":"Observation","id":"` + id + `","status":"final",` + extra + `"code":{"coding":[{"system":"http://loinc.org","code":"75622-1"}]},` +
			`"subject":{"reference":"Patient/ann"},"issued":"` + time.Now().UTC().Format(time.RFC3339) + `","valueString":"benign"}`
	}
	c.do(emr, "PUT", "Observation/hiv1", obs("hiv1", `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},`), 201)
	c.do(ann, "GET", "Observation/hiv1", "", 404)
	c.do(doc, "POST", "Observation/hiv1/$release", `{"resourceType":"Parameters","parameter":[{"name":"note","valueString":"discussed by phone"}]}`, 200)
	c.do(ann, "GET", "Observation/hiv1", "", 200)
	m = c.mail.Next(t, 30*time.Second)
	if !strings.Contains(m.Body, "A new result is available in your portal.") {
		t.Fatalf("result email: %s", m.Body)
	}
	noPHI("released result", m)
	c.do(emr, "PUT", "Observation/path1", strings.Replace(obs("path1", `"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"SP"}]}],`), "75622-1", "22637-3", 1), 201)
	c.do(ann, "GET", "Observation/path1", "", 404)
	m = c.mail.Next(t, 60*time.Second) // the release scheduler runs every 30 s
	if !strings.Contains(m.Body, "A new result is available in your portal.") {
		t.Fatalf("delayed result email: %s", m.Body)
	}
	noPHI("delayed result", m)
	c.do(ann, "GET", "Observation/path1", "", 200)

	// 7. An appointment within the reminder lead: one reminder.
	start := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	c.do(emr, "PUT", "Appointment/ap1", fmt.Sprintf(`{"resourceType":"Appointment","id":"ap1","status":"booked","description":"Riverside dermatology",`+
		`"start":%q,"end":%q,"participant":[{"actor":{"reference":"Patient/ann"},"status":"accepted"},{"actor":{"reference":"Practitioner/dr-a"},"status":"accepted"}]}`,
		start.Format(time.RFC3339), start.Add(30*time.Minute).Format(time.RFC3339)), 201)
	m = c.mail.Next(t, 30*time.Second)
	if !strings.Contains(m.Body, "You have an upcoming appointment.") {
		t.Fatalf("reminder email: %s", m.Body)
	}
	noPHI("reminder", m)

	// 8. A patient app's Subscription (id-only): its handshake, then an
	// event for her own new result only.
	var mu sync.Mutex
	var posts []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, string(b))
		mu.Unlock()
	}))
	defer hook.Close()
	sub := c.do(ann, "POST", "Subscription", `{"resourceType":"Subscription","status":"requested","reason":"my results","criteria":"Observation?code=http://loinc.org|4548-4",`+
		`"channel":{"type":"rest-hook","endpoint":"`+hook.URL+`","payload":"application/fhir+json","_payload":{"extension":[{"url":"http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content","valueCode":"id-only"}]}}}`, 201)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("the active Subscription", func() bool {
		return c.do(ann, "GET", "Subscription/"+sub.str("id"), "", 200).str("status") == "active"
	})
	a1c := func(id, patient string) string {
		return `{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},` +
			`"subject":{"reference":"Patient/` + patient + `"},"valueQuantity":{"value":7.1,"unit":"%"}}`
	}
	c.do(emr, "PUT", "Observation/a1c-kid", a1c("a1c-kid", "kid"), 201)
	c.do(emr, "PUT", "Observation/a1c-ann", a1c("a1c-ann", "ann"), 201)
	waitFor("the event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(strings.Join(posts, "\n"), "Observation/a1c-ann")
	})
	ev := c.do(ann, "GET", "Subscription/"+sub.str("id")+"/$events", "", 200)
	mu.Lock()
	all := strings.Join(posts, "\n")
	mu.Unlock()
	if strings.Contains(all, "a1c-kid") || strings.Contains(string(ev.body), "a1c-kid") || strings.Contains(all, "valueQuantity") || strings.Contains(all, "4548-4") {
		t.Errorf("the patient's Subscription was told of another patient's result, or of a value or code: %s", all)
	}
}
