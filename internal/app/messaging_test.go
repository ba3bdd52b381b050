package app

// End-to-end tests of secure patient–clinician messaging (issue 16,
// docs/messaging.md; R4 communication.html: a thread header and messages
// partOf it, inResponseTo, sender/recipient, received as read receipt;
// binary.html for attachments) through the real server, under the
// organisation's "messaging:" policy section.

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/smart/devissuer"
)

const messagingPolicy = `version: 1
messaging:
  enabled: true
  recipients:
    careTeam: true
    pools: [CareTeam/pool-nurses]
    patientChooses: true
  responseTime: 2d
  autoReply:
    sender: Organization/clinic
  attachments:
    contentTypes: [application/pdf, image/png]
    maxSize: 1KiB
`

func withMessaging(t *testing.T, yaml string) harnessOpt {
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(o *Options) { o.PolicyFile = p }
}

// msgWorld is newWorld plus care teams: A's active team (dr-a), A's
// inactive one (dr-old), C's team (dr-c), the nurses' pool.
type msgWorld struct {
	*world
	pt, mum, carer, doc string // tokens
}

func newMsgWorld(t *testing.T) *msgWorld {
	w := newWorld(t, withMessaging(t, messagingPolicy))
	h := w.h
	put(h, "Organization", "clinic", `{"resourceType":"Organization","name":"Clinic"}`)
	for _, p := range []string{"dr-a", "dr-old", "dr-c"} {
		put(h, "Practitioner", p, `{"resourceType":"Practitioner","name":[{"family":"`+p+`"}]}`)
	}
	team := func(patient, status, member string) string {
		return `{"resourceType":"CareTeam","status":"` + status + `","subject":{"reference":"Patient/` + patient + `"},"participant":[{"member":{"reference":"Practitioner/` + member + `"}}]}`
	}
	put(h, "CareTeam", "ct-a", team(w.pa, "active", "dr-a"))
	put(h, "CareTeam", "ct-a-old", team(w.pa, "inactive", "dr-old"))
	put(h, "CareTeam", "ct-c", team(w.pc, "active", "dr-c"))
	put(h, "CareTeam", "pool-nurses", `{"resourceType":"CareTeam","status":"active","name":"Nurses"}`)
	// The caregiver's Consent covers Communication and Binary (attachments).
	put(h, "Consent", w.consent, strings.Replace(consentJSON("active"), `{"system":"http://hl7.org/fhir/resource-types","code":"Communication"}`,
		`{"system":"http://hl7.org/fhir/resource-types","code":"Communication"},{"system":"http://hl7.org/fhir/resource-types","code":"Binary"}`, 1))
	mw := &msgWorld{world: w}
	mw.mint()
	return mw
}

// mint issues the tokens on the harness clock (again after moving it).
func (w *msgWorld) mint() {
	h := w.h
	w.pt = w.patientToken(w.pa, "patient/*.cruds")
	w.mum = h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pc, FHIRUser: "RelatedPerson/" + w.parent, Client: "portal"})
	w.carer = h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: w.pa, FHIRUser: "RelatedPerson/" + w.caregiver, Client: "portal"})
	w.doc = h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/dr-a", Client: "emr"})
}

// thread is a new thread header from patient to recipient ("" for none).
func thread(patient, recipient, extra string) string {
	r := ""
	if recipient != "" {
		r = `"recipient":[{"reference":"` + recipient + `"}],`
	}
	return `{"resourceType":"Communication","status":"in-progress",` + extra + r + `"subject":{"reference":"Patient/` + patient + `"},` +
		`"topic":{"text":"Question about my medication"},"payload":[{"contentString":"Can I take it with food?"}]}`
}

// message is a message partOf thread hid.
func message(patient, hid, extra string) string {
	return `{"resourceType":"Communication","status":"completed",` + extra + `"partOf":[{"reference":"Communication/` + hid + `"}],` +
		`"subject":{"reference":"Patient/` + patient + `"},"payload":[{"contentString":"More details"}]}`
}

func tags(r res) []string {
	meta, _ := r.JSON["meta"].(map[string]any)
	ts, _ := meta["tag"].([]any)
	var out []string
	for _, t := range ts {
		m := t.(map[string]any)
		out = append(out, fmt.Sprint(m["system"], "|", m["code"]))
	}
	return out
}

func communications(h *harness) float64 {
	h.t.Helper()
	return h.req("GET", "Communication?_summary=count", nil, "").must(h.t, 200).JSON["total"].(float64)
}

var (
	threadTag   = server.ThreadSystem + "|" + server.ThreadCode
	awaitingTag = server.StateSystem + "|" + server.AwaitingReply
)

// A patient starts a thread to a member of their active care team: 201,
// the server sets sender, sent and its tags, and the organisation's
// automatic reply (response time, not for emergencies) is in the thread.
func TestMessagingNewThreadAndAutoReply(t *testing.T) {
	w := newMsgWorld(t)
	h := w.h
	r := h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), w.pt).must(t, 201)
	hid := r.str("id")
	if got := r.str("sender", "reference"); got != "Patient/pat-a" {
		t.Errorf("sender = %q, want the acting patient", got)
	}
	if got := r.str("sent"); got != h.clock.Now().UTC().Format("2006-01-02T15:04:05.000Z") {
		t.Errorf("sent = %q, want the server's time %v", got, h.clock.Now())
	}
	if tg := tags(r); !has(tg, threadTag) || !has(tg, awaitingTag) {
		t.Errorf("header tags %v lack %s and %s", tg, threadTag, awaitingTag)
	}
	s := h.req("GET", "Communication?part-of=Communication/"+hid, nil, w.pt).must(t, 200)
	if len(s.entries()) != 1 {
		t.Fatalf("thread holds %d messages, want the automatic reply: %s", len(s.entries()), truncate(s.Body))
	}
	reply := s.entries()[0]["resource"].(map[string]any)
	text := reply["payload"].([]any)[0].(map[string]any)["contentString"].(string)
	for _, want := range []string{"2 business days", "not for emergencies", "911"} {
		if !strings.Contains(text, want) {
			t.Errorf("automatic reply %q lacks %q", text, want)
		}
	}
	if fmt.Sprint(reply["sender"]) != "map[reference:Organization/clinic]" {
		t.Errorf("automatic reply sender = %v", reply["sender"])
	}
	// French when the thread is in French.
	fr := h.req("POST", "Communication", thread(w.pa, "CareTeam/pool-nurses", `"language":"fr-CA",`), w.pt).must(t, 201)
	s = h.req("GET", "Communication?part-of=Communication/"+fr.str("id"), nil, w.pt).must(t, 200)
	if b := string(s.Body); !strings.Contains(b, "composez le 911") || !strings.Contains(b, "2 jours ouvrables") {
		t.Errorf("French automatic reply: %s", truncate(s.Body))
	}
	// The CapabilityStatement tells patients too.
	if m := h.req("GET", "metadata", nil, "-").must(t, 200); !strings.Contains(string(m.Body), "not for emergencies — call 911") {
		t.Errorf("CapabilityStatement does not say the portal is not for emergencies")
	}
}

// Recipients: only the patient's active care team and the pools.
func TestMessagingRecipients(t *testing.T) {
	w := newMsgWorld(t)
	h := w.h
	before := communications(h)
	for _, c := range []struct {
		name, body string
		status     int
	}{
		{"inactive care team", thread(w.pa, "Practitioner/dr-old", ""), 403},
		{"another patient's care team", thread(w.pa, "Practitioner/dr-c", ""), 403},
		{"another patient", thread(w.pa, "Patient/pat-b", ""), 403},
		{"a pool not listed", thread(w.pa, "CareTeam/ct-c", ""), 403},
		{"no recipient", thread(w.pa, "", ""), 422},
		{"closed on arrival", strings.Replace(thread(w.pa, "Practitioner/dr-a", ""), "in-progress", "completed", 1), 422},
		{"with a received", thread(w.pa, "Practitioner/dr-a", `"received":"2026-01-01T00:00:00Z",`), 422},
		{"about another patient", thread(w.pb, "Practitioner/dr-a", ""), 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			h.req("POST", "Communication", c.body, w.pt).must(t, c.status).outcome(t)
		})
	}
	if after := communications(h); after != before {
		t.Errorf("refused threads stored something: %v -> %v", before, after)
	}
	h.req("POST", "Communication", thread(w.pa, "CareTeam/pool-nurses", ""), w.pt).must(t, 201)
	h.req("POST", "Communication", thread(w.pa, "CareTeam/ct-a", ""), w.pt).must(t, 201)
}

// When the organisation routes new threads, the patient names nobody and
// the default pool receives the thread.
func TestMessagingRoutedToDefaultPool(t *testing.T) {
	pol := strings.Replace(messagingPolicy, "patientChooses: true", "patientChooses: false\n    defaultPool: CareTeam/pool-nurses", 1)
	w := newWorld(t, withMessaging(t, pol))
	h := w.h
	pt := w.patientToken(w.pa, "patient/*.cruds")
	r := h.req("POST", "Communication", thread(w.pa, "", ""), pt).must(t, 201)
	if got := fmt.Sprint(r.JSON["recipient"]); got != "[map[reference:CareTeam/pool-nurses]]" {
		t.Errorf("recipient = %s, want the default pool", got)
	}
	h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), pt).must(t, 403).outcome(t)
}

// With enabled: false, patient-facing apps write no Communication at all.
func TestMessagingDisabled(t *testing.T) {
	w := newWorld(t, withMessaging(t, "version: 1\nmessaging:\n  enabled: false\n"))
	h := w.h
	h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), w.patientToken(w.pa, "patient/*.cruds")).must(t, 403).outcome(t)
	h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), "").must(t, 201) // the EMR still can
}

// The sender is the server's: a forged sender is refused (403, nothing
// stored), the right one accepted; a parent writes as their RelatedPerson
// in the child's thread.
func TestMessagingSender(t *testing.T) {
	w := newMsgWorld(t)
	h := w.h
	before := communications(h)
	for _, forged := range []string{"Practitioner/dr-a", "Patient/pat-b", "RelatedPerson/rp-care", "Organization/clinic"} {
		r := h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", `"sender":{"reference":"`+forged+`"},`), w.pt).must(t, 403)
		if d := fmt.Sprint(r.outcome(t)["diagnostics"]); !strings.Contains(d, "sender must be Patient/pat-a") {
			t.Errorf("forged sender %s: %s", forged, d)
		}
	}
	if after := communications(h); after != before {
		t.Errorf("forged senders stored something: %v -> %v", before, after)
	}
	h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", `"sender":{"reference":"Patient/pat-a"},`), w.pt).must(t, 201)

	// A mother writes for her 9-year-old: the child's thread, her name.
	r := h.req("POST", "Communication", thread(w.pc, "Practitioner/dr-c", ""), w.mum).must(t, 201)
	if got := r.str("sender", "reference"); got != "RelatedPerson/rp-mother" {
		t.Errorf("proxy thread sender = %q", got)
	}
	m := h.req("POST", "Communication", message(w.pc, r.str("id"), ""), w.mum).must(t, 201)
	if got := m.str("sender", "reference"); got != "RelatedPerson/rp-mother" {
		t.Errorf("proxy message sender = %q", got)
	}
	if got := fmt.Sprint(m.JSON["recipient"]); got != "[map[reference:Practitioner/dr-c]]" {
		t.Errorf("message recipient = %s, want the thread's", got)
	}
	h.req("POST", "Communication", thread(w.pc, "Practitioner/dr-c", `"sender":{"reference":"Patient/pat-c"},`), w.mum).must(t, 403)
	// The automatic reply is addressed to the child and the mother.
	s := h.req("GET", "Communication?part-of=Communication/"+r.str("id")+"&category="+url.QueryEscape(server.ThreadSystem+"|"+server.AutoReplyCode), nil, w.mum).must(t, 200)
	if len(s.entries()) != 1 || !strings.Contains(string(s.Body), "RelatedPerson/rp-mother") {
		t.Errorf("automatic reply of a proxy's thread: %s", truncate(s.Body))
	}
	// Not into A's thread.
	a := h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), w.pt).must(t, 201)
	h.req("POST", "Communication", message(w.pc, a.str("id"), ""), w.mum).must(t, 422)
	h.req("POST", "Communication", message(w.pa, a.str("id"), ""), w.mum).must(t, 403)
}

// Messages in a thread: inResponseTo inside the thread, a staff reply
// clears awaiting-reply, a closed thread takes no patient message (409),
// and the clinician's close keeps the thread tag.
func TestMessagingThreadLifecycle(t *testing.T) {
	w := newMsgWorld(t)
	h := w.h
	hid := h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), w.pt).must(t, 201).str("id")
	other := h.req("POST", "Communication", thread(w.pa, "CareTeam/pool-nurses", ""), w.pt).must(t, 201).str("id")
	m1 := h.req("POST", "Communication", message(w.pa, hid, ""), w.pt).must(t, 201).str("id")
	h.req("POST", "Communication", message(w.pa, hid, `"inResponseTo":[{"reference":"Communication/`+m1+`"}],`), w.pt).must(t, 201)
	h.req("POST", "Communication", message(w.pa, other, `"inResponseTo":[{"reference":"Communication/`+m1+`"}],`), w.pt).must(t, 422).outcome(t)
	h.req("POST", "Communication", message(w.pa, hid, `"recipient":[{"reference":"CareTeam/pool-nurses"}],`), w.pt).must(t, 403)
	h.req("POST", "Communication", message(w.pa, w.commA, ""), w.pt).must(t, 422) // the care team's note is no thread
	h.req("POST", "Communication", message(w.pa, hid, ""), w.pt).must(t, 201)
	h.req("POST", "Communication", strings.Replace(message(w.pa, hid, ""), "completed", "in-progress", 1), w.pt).must(t, 422)

	// The clinician answers: every awaiting-reply tag of the thread goes.
	reply := `{"resourceType":"Communication","status":"completed","partOf":[{"reference":"Communication/` + hid + `"}],` +
		`"inResponseTo":[{"reference":"Communication/` + m1 + `"}],"subject":{"reference":"Patient/pat-a"},` +
		`"sender":{"reference":"Practitioner/dr-a"},"recipient":[{"reference":"Patient/pat-a"}],"payload":[{"contentString":"Yes, with food."}]}`
	rid := h.req("POST", "Communication", reply, w.doc).must(t, 201).str("id")
	aw := h.req("GET", "Communication?_tag="+url.QueryEscape(awaitingTag)+"&subject=Patient/pat-a", nil, w.doc).must(t, 200)
	for _, id := range ids(aw) {
		if id == "Communication/"+hid || id == "Communication/"+m1 {
			t.Errorf("%s still awaits a reply after the clinician answered", id)
		}
	}
	if !has(ids(aw), "Communication/"+other) {
		t.Errorf("the unanswered thread %s lost its awaiting-reply tag: %v", other, ids(aw))
	}
	// The patient answers the clinician (a recipient of the thread by the reply).
	h.req("POST", "Communication", message(w.pa, hid, `"inResponseTo":[{"reference":"Communication/`+rid+`"}],`), w.pt).must(t, 201)

	// The clinician closes the thread with a plain update.
	cur := h.req("GET", "Communication/"+hid, nil, w.doc).must(t, 200)
	closed := strings.Replace(string(cur.Body), `"status":"in-progress"`, `"status":"completed"`, 1)
	up := h.req("PUT", "Communication/"+hid, closed, w.doc).must(t, 200)
	if tg := tags(up); !has(tg, threadTag) || has(tg, awaitingTag) {
		t.Errorf("closed header tags %v: want the thread tag and no awaiting-reply", tg)
	}
	before := communications(h)
	r := h.req("POST", "Communication", message(w.pa, hid, ""), w.pt).must(t, 409)
	if d := fmt.Sprint(r.outcome(t)["diagnostics"]); !strings.Contains(d, "closed") {
		t.Errorf("closed thread: %s", d)
	}
	if communications(h) != before {
		t.Errorf("a message into a closed thread was stored")
	}
}

// Read receipts: the patient sets received on a message addressed to
// them; nothing else on anyone's message, and no delete.
func TestMessagingReadReceipts(t *testing.T) {
	w := newMsgWorld(t)
	h := w.h
	hid := h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), w.pt).must(t, 201).str("id")
	staff := `{"resourceType":"Communication","status":"completed","partOf":[{"reference":"Communication/` + hid + `"}],` +
		`"subject":{"reference":"Patient/pat-a"},"sender":{"reference":"Practitioner/dr-a"},"recipient":[{"reference":"Patient/pat-a"}],"payload":[{"contentString":"Yes."}]}`
	sid := h.req("POST", "Communication", staff, w.doc).must(t, 201).str("id")
	got := h.req("GET", "Communication/"+sid, nil, w.pt).must(t, 200)
	receipt := strings.Replace(string(got.Body), `"status":"completed"`, `"status":"completed","received":"2020-01-01T00:00:00Z"`, 1)
	h.clock.Set(h.clock.Now().Add(time.Hour))
	r := h.req("PUT", "Communication/"+sid, receipt, w.pt).must(t, 200)
	if want := h.clock.Now().UTC().Format("2006-01-02T15:04:05.000Z"); r.str("received") != want {
		t.Errorf("received = %q, want the server's time %s", r.str("received"), want)
	}
	if tg := tags(r); has(tg, "http://fhirgate.dev/CodeSystem/origin|patient-app") {
		t.Errorf("a read receipt made the clinician's message patient-authored: %v", tg)
	}
	// A read receipt with a change to the content: refused.
	cur := h.req("GET", "Communication/"+sid, nil, w.pt).must(t, 200)
	h.req("PUT", "Communication/"+sid, strings.Replace(string(cur.Body), "Yes.", "No.", 1), w.pt).must(t, 403).outcome(t)
	h.req("PATCH", "Communication/"+sid, `[{"op":"replace","path":"/payload/0/contentString","value":"No."}]`, w.pt, "Content-Type: application/json-patch+json").must(t, 403)
	// A read receipt by JSON Patch works too (the caregiver, acting for A, on a fresh message).
	sid2 := h.req("POST", "Communication", staff, w.doc).must(t, 201).str("id")
	h.req("PATCH", "Communication/"+sid2, `[{"op":"add","path":"/received","value":"2026-06-01T12:00:00Z"}]`, w.carer, "Content-Type: application/json-patch+json").must(t, 200)
	// On the patient's own message (addressed to dr-a): refused.
	mine := h.req("GET", "Communication/"+hid, nil, w.pt).must(t, 200)
	h.req("PUT", "Communication/"+hid, strings.Replace(string(mine.Body), `"status":"in-progress"`, `"status":"in-progress","received":"2026-06-01T12:00:00Z"`, 1), w.pt).must(t, 403)
	// Another patient cannot see it at all; the mother of C neither.
	h.req("PATCH", "Communication/"+sid, `[{"op":"add","path":"/received","value":"2026-06-01T12:00:00Z"}]`, w.patientToken(w.pb, "patient/*.cruds"), "Content-Type: application/json-patch+json").must(t, 404)
	h.req("PATCH", "Communication/"+sid, `[{"op":"add","path":"/received","value":"2026-06-01T12:00:00Z"}]`, w.mum, "Content-Type: application/json-patch+json").must(t, 404)
	// No deletes of sent messages, the patient's own included.
	h.req("DELETE", "Communication/"+hid, nil, w.pt).must(t, 403)
	h.req("DELETE", "Communication/"+sid, nil, w.pt).must(t, 403)
	h.req("GET", "Communication/"+sid, nil, w.pt).must(t, 200)
}

// Attachments: a Binary of an allowed type and size, referenced by url;
// anything else is a 4xx and nothing is stored.
func TestMessagingAttachments(t *testing.T) {
	w := newMsgWorld(t)
	h := w.h
	bin := func(ct string, n int) string {
		return `{"resourceType":"Binary","securityContext":{"reference":"Patient/pat-a"},"contentType":"` + ct + `","data":"` +
			base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", n))) + `"}`
	}
	count := func(typ string) float64 {
		return h.req("GET", typ+"?_summary=count", nil, "").must(t, 200).JSON["total"].(float64)
	}
	bins := count("Binary")
	h.req("POST", "Binary", bin("image/gif", 10), w.pt).must(t, 422).outcome(t)
	h.req("POST", "Binary", bin("application/pdf", 1025), w.pt).must(t, 413).outcome(t)
	if count("Binary") != bins {
		t.Fatalf("a refused upload was stored")
	}
	ok := h.req("POST", "Binary", bin("application/pdf", 1024), w.pt).must(t, 201).str("id")
	hid := h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), w.pt).must(t, 201).str("id")
	att := func(a string) string {
		return strings.Replace(message(w.pa, hid, ""), `"payload":[{"contentString":"More details"}]`, `"payload":[{"contentAttachment":`+a+`}]`, 1)
	}
	h.req("POST", "Communication", att(`{"contentType":"application/pdf","url":"Binary/`+ok+`"}`), w.pt).must(t, 201)
	// A Binary the EMR stored for A with a type patients may not send.
	put(h, "Binary", "gif-a", bin("image/gif", 10))
	// A Binary too large for patients, stored by the EMR.
	put(h, "Binary", "big-a", bin("application/pdf", 4096))
	msgs := count("Communication")
	for _, c := range []struct {
		name, att string
		status    int
	}{
		{"inline data", `{"contentType":"application/pdf","data":"eHh4"}`, 422},
		{"url elsewhere", `{"contentType":"application/pdf","url":"https://evil.example/x.pdf"}`, 422},
		{"missing Binary", `{"contentType":"application/pdf","url":"Binary/nope"}`, 422},
		{"disallowed type", `{"url":"Binary/gif-a"}`, 422},
		{"too large", `{"url":"Binary/big-a"}`, 413},
		{"contentType lies", `{"contentType":"image/png","url":"Binary/` + ok + `"}`, 422},
		{"another patient's Binary", `{"url":"Binary/bin-b"}`, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "another patient's Binary" {
				put(h, "Binary", "bin-b", strings.Replace(bin("application/pdf", 10), "pat-a", "pat-b", 1))
			}
			h.req("POST", "Communication", att(c.att), w.pt).must(t, c.status).outcome(t)
		})
	}
	if count("Communication") != msgs {
		t.Errorf("a refused attachment message was stored")
	}
}

// $escalate: a clinician turns a thread into an eConsult (ServiceRequest
// and Task referencing the thread, in one transaction); a patient cannot.
func TestMessagingEscalate(t *testing.T) {
	w := newMsgWorld(t)
	h := w.h
	hid := h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), w.pt).must(t, 201).str("id")
	h.req("POST", "Communication/"+hid+"/$escalate", `{"resourceType":"Parameters"}`, w.pt).must(t, 403).outcome(t)
	h.req("POST", "Communication/"+hid+"/$escalate", `{"resourceType":"Parameters"}`, w.carer).must(t, 403)
	h.req("POST", "Communication/"+hid+"/$escalate", `{"resourceType":"Parameters","parameter":[{"name":"kind","valueCode":"surgery"}]}`, w.doc).must(t, 400)
	if n := h.req("GET", "ServiceRequest?_summary=count", nil, "").JSON["total"]; n != 0.0 {
		t.Fatalf("refused escalations stored %v ServiceRequests", n)
	}
	r := h.req("POST", "Communication/"+hid+"/$escalate",
		`{"resourceType":"Parameters","parameter":[{"name":"kind","valueCode":"visit"},{"name":"note","valueString":"book a video visit"},{"name":"close","valueBoolean":true}]}`, w.doc).must(t, 200)
	body := string(r.Body)
	if !strings.Contains(body, "ServiceRequest/") || !strings.Contains(body, "Task/") {
		t.Fatalf("$escalate answered %s", body)
	}
	sr := h.req("GET", "ServiceRequest?subject=Patient/pat-a&code="+url.QueryEscape(server.EscalationSystem+"|visit"), nil, w.doc).must(t, 200)
	if len(sr.entries()) != 1 || !strings.Contains(string(sr.Body), `"supportingInfo":[{"reference":"Communication/`+hid+`"}]`) || !strings.Contains(string(sr.Body), "Practitioner/dr-a") {
		t.Fatalf("ServiceRequest of the thread: %s", truncate(sr.Body))
	}
	srID := sr.entries()[0]["resource"].(map[string]any)["id"].(string)
	task := h.req("GET", "Task?focus=ServiceRequest/"+srID, nil, w.doc).must(t, 200)
	if len(task.entries()) != 1 || !strings.Contains(string(task.Body), "Communication/"+hid) {
		t.Fatalf("Task of the escalation: %s", truncate(task.Body))
	}
	if st := h.req("GET", "Communication/"+hid, nil, w.doc).str("status"); st != "completed" {
		t.Errorf("close=true left the thread %s", st)
	}
	// The patient sees the request about them (their compartment).
	h.req("GET", "ServiceRequest/"+srID, nil, w.pt).must(t, 200)
	h.req("POST", "Communication/"+w.labA+"/$escalate", nil, w.doc).must(t, 404)
	h.req("POST", "Observation/"+w.labA+"/$escalate", nil, w.doc).must(t, 404)
}

// The inbox queries of docs/messaging.md return the right threads.
func TestMessagingInboxQueries(t *testing.T) {
	w := newMsgWorld(t)
	h := w.h
	t0 := h.clock.Now()
	toDoc := h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), w.pt).must(t, 201).str("id")
	toPool := h.req("POST", "Communication", thread(w.pa, "CareTeam/pool-nurses", ""), w.pt).must(t, 201).str("id")
	h.clock.Set(t0.Add(47 * time.Hour))
	w.mint()
	late := h.req("POST", "Communication", message(w.pa, toPool, ""), w.pt).must(t, 201).str("id")
	childs := h.req("POST", "Communication", thread(w.pc, "Practitioner/dr-c", ""), w.mum).must(t, 201).str("id")
	get := func(q string) []string {
		t.Helper()
		return ids(h.req("GET", q, nil, w.doc).must(t, 200))
	}
	same := func(name string, got []string, want ...string) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", name, got, want)
			return
		}
		for _, x := range want {
			if !has(got, x) {
				t.Errorf("%s: %v, want %v", name, got, want)
			}
		}
	}
	c := func(id string) string { return "Communication/" + id }
	same("dr-a's unread", get("Communication?recipient=Practitioner/dr-a&received:missing=true"), c(toDoc))
	same("the pool's unread", get("Communication?recipient=CareTeam/pool-nurses&received:missing=true"), c(toPool), c(late))
	// unread-for (server.UnreadParam): the same inboxes from one index.
	same("dr-a's unread-for", get("Communication?unread-for=Practitioner/dr-a"), c(toDoc))
	same("the pool's unread-for", get("Communication?unread-for=CareTeam/pool-nurses"), c(toPool), c(late))
	same("A's threads", get("Communication?subject=Patient/pat-a&_tag="+url.QueryEscape(threadTag)), c(toDoc), c(toPool))
	same("dr-a's open threads", get("Communication?open-thread-for=Practitioner/dr-a"), c(toDoc))
	same("the pool's open threads", get("Communication?open-thread-for=CareTeam/pool-nurses"), c(toPool))
	same("A's threads by part-of:missing", get("Communication?subject=Patient/pat-a&part-of:missing=true&status=in-progress&_tag="+url.QueryEscape(threadTag)), c(toDoc), c(toPool))
	same("C's threads", get("Communication?subject=Patient/pat-c&_tag="+url.QueryEscape(threadTag)), c(childs))
	// The patient's own view: their threads and the replies they have not read.
	same("patient's threads", ids(h.req("GET", "Communication?_tag="+url.QueryEscape(threadTag), nil, w.pt).must(t, 200)), c(toDoc), c(toPool))
	unreadByPatient := ids(h.req("GET", "Communication?recipient=Patient/pat-a&received:missing=true", nil, w.pt).must(t, 200))
	if len(unreadByPatient) != 2 { // the two automatic replies
		t.Errorf("patient's unread: %v", unreadByPatient)
	}

	// Two hours later (49 h after the first threads), with a 48 h target:
	// the first two headers are overdue, the late message is not.
	h.clock.Set(t0.Add(49 * time.Hour))
	w.mint()
	overdue := "Communication?_tag=" + url.QueryEscape(awaitingTag) + "&sent=lt" + url.QueryEscape(h.clock.Now().Add(-48*time.Hour).UTC().Format(time.RFC3339))
	same("overdue", get(overdue), c(toDoc), c(toPool))
	withThreads := get(overdue + "&_include=Communication:part-of")
	same("overdue with threads", withThreads, c(toDoc), c(toPool))

	// dr-a reads (read receipt) and answers: gone from unread and overdue.
	h.req("PATCH", "Communication/"+toDoc, `[{"op":"add","path":"/received","value":"`+h.clock.Now().UTC().Format(time.RFC3339)+`"}]`, w.doc, "Content-Type: application/json-patch+json").must(t, 200)
	same("dr-a's unread after reading", get("Communication?recipient=Practitioner/dr-a&received:missing=true"))
	same("dr-a's unread-for after reading", get("Communication?unread-for=Practitioner/dr-a"))
	// The patient's read receipt takes a reply out of their unread-for.
	reply := ids(h.req("GET", "Communication?unread-for=Patient/pat-a", nil, w.pt).must(t, 200))
	if len(reply) != 2 {
		t.Fatalf("patient's unread-for: %v", reply)
	}
	rid := strings.TrimPrefix(reply[0], "Communication/")
	h.req("PATCH", "Communication/"+rid, `[{"op":"add","path":"/received","value":"2026-06-01T12:00:00Z"}]`, w.pt, "Content-Type: application/json-patch+json").must(t, 200)
	same("patient's unread-for after the receipt", ids(h.req("GET", "Communication?unread-for=Patient/pat-a", nil, w.pt).must(t, 200)), reply[1])
	same("overdue after reading (still unanswered)", get(overdue), c(toDoc), c(toPool))
	h.req("POST", "Communication", `{"resourceType":"Communication","status":"completed","partOf":[{"reference":"Communication/`+toPool+`"}],"subject":{"reference":"Patient/pat-a"},"sender":{"reference":"Practitioner/dr-a"},"recipient":[{"reference":"Patient/pat-a"}],"payload":[{"contentString":"On it."}]}`, w.doc).must(t, 201)
	same("overdue after the pool's answer", get(overdue), c(toDoc))
}

// Release rules and sensitive labels apply to messages and their
// attachments like any resource: a PSY-labelled message and its Binary
// are withheld from the caregiver, shown to the patient.
func TestMessagingSensitiveLabels(t *testing.T) {
	w := newMsgWorld(t)
	h := w.h
	hid := h.req("POST", "Communication", thread(w.pa, "Practitioner/dr-a", ""), w.pt).must(t, 201).str("id")
	h.req("GET", "Communication/"+hid, nil, w.carer).must(t, 200)
	put(h, "Communication", "psy-msg", `{"resourceType":"Communication","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},`+
		`"status":"completed","partOf":[{"reference":"Communication/`+hid+`"}],"subject":{"reference":"Patient/pat-a"},"sender":{"reference":"Practitioner/dr-a"},`+
		`"recipient":[{"reference":"Patient/pat-a"}],"payload":[{"contentAttachment":{"contentType":"application/pdf","url":"Binary/psy-bin"}}]}`)
	put(h, "Binary", "psy-bin", `{"resourceType":"Binary","securityContext":{"reference":"Communication/psy-msg"},"contentType":"application/pdf","data":"JVBERi0xLjQ="}`)
	h.req("GET", "Communication/psy-msg", nil, w.pt).must(t, 200)
	h.req("GET", "Binary/psy-bin", nil, w.pt).must(t, 200)
	h.req("GET", "Communication/psy-msg", nil, w.carer).must(t, 404)
	h.req("GET", "Binary/psy-bin", nil, w.carer).must(t, 404)
	if got := ids(h.req("GET", "Communication?part-of=Communication/"+hid, nil, w.carer).must(t, 200)); has(got, "Communication/psy-msg") || len(got) != 1 {
		t.Errorf("caregiver's thread view: %v (want only the automatic reply)", got)
	}
	// Nor can the caregiver set its read receipt (it is not there for them).
	h.req("PATCH", "Communication/psy-msg", `[{"op":"add","path":"/received","value":"2026-06-01T12:00:00Z"}]`, w.carer, "Content-Type: application/json-patch+json").must(t, 404)
}
