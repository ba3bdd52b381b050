package app

// eVisit invitations end to end (fhirgate issue 16, "eVisit invitations";
// authz/visit): the real wiring, the real pipeline and gin engine, emails
// through a real SMTP server in-process (github.com/emersion/go-smtp), the
// pages through HTTP like a browser, and one test in headless Chromium.
// Every rule of the issue has a test here:
//   - the email has the link and no PIN, no practitioner, clinic or patient
//     name, no time, no join URL (TestVisitInvitationEndToEnd);
//   - the sender confirms name and email (confirmed=true), staff only: a
//     patient's or caregiver's token gets 403 (TestVisitInviteRules);
//   - link + wrong PIN x5 locks; link + right PIN opens the join page with
//     only the join URL and time; the link is single use; expired and
//     revoked links are refused, revoked exactly like unknown ones;
//     re-send gives a new link and PIN (TestVisitInvitationEndToEnd,
//     TestVisitExpiryRevokeResend);
//   - tokens and PINs only as hashes; $invitations shows no secret;
//   - every invite, revoke, re-send, wrong PIN, lock and join is an
//     AuditEvent naming the invitee, never their email.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fhirgate/fhirgate/smart/devissuer"

	"github.com/fhirgate/fhirgate/internal/browsertest"
	"github.com/fhirgate/fhirgate/internal/smtptest"
)

// visitWorld: a clinic, a clinician, a patient and her caregiver, and a
// virtual Appointment an hour from now.
type visitWorld struct {
	h          *harness
	sink       *smtptest.Server
	start, end time.Time
	origin     string
}

const (
	joinURL     = "https://meet.example.org/room/7f3c9a"
	apptID      = "vv1"
	apptPath    = "Appointment/" + apptID
	patientMail = "ann.roy@example.org"
)

// Names and details that must never be in an email.
var phi = []string{"Gregory", "House", "Princeton", "Plainsboro", "Ann", "Roy", "meet.example.org", "7f3c9a", "555-0100"}

func newVisitWorld(t *testing.T) *visitWorld {
	t.Helper()
	sink := smtptest.Start(t)
	h := newHarness(t, func(o *Options) {
		o.Notify.SMTPURL = "smtp://" + sink.Addr + "?from=no-reply@portal.example"
		o.Notify.Poll = 20 * time.Millisecond
	})
	w := &visitWorld{h: h, sink: sink, origin: h.srv.URL}
	w.start = h.clock.Now().Add(time.Hour).Truncate(time.Minute)
	w.end = w.start.Add(30 * time.Minute)
	put(h, "Organization", "clinic", `{"resourceType":"Organization","name":"Princeton Plainsboro Clinic","telecom":[{"system":"phone","value":"555-0100"}]}`)
	put(h, "Practitioner", "house", `{"resourceType":"Practitioner","name":[{"family":"House","given":["Gregory"]}]}`)
	put(h, "Patient", "ann", `{"resourceType":"Patient","name":[{"family":"Roy","given":["Ann"]}],"birthDate":"1950-02-03"}`)
	put(h, "RelatedPerson", "carer", `{"resourceType":"RelatedPerson","active":true,"patient":{"reference":"Patient/ann"},"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"FRND"}]}]}`)
	put(h, "Endpoint", "vs1", `{"resourceType":"Endpoint","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"hl7-fhir-rest"},"name":"Dr House's room","managingOrganization":{"reference":"Organization/clinic"},"payloadType":[{"text":"video visit"}],"address":"`+joinURL+`"}`)
	put(h, "Appointment", apptID, w.appointment("booked", "Endpoint/vs1"))
	return w
}

func (w *visitWorld) appointment(status, endpoint string) string {
	return fmt.Sprintf(`{"resourceType":"Appointment","status":%q,`+
		`"extension":[{"url":"https://fhirgate.dev/fhir/StructureDefinition/virtual-service","valueReference":{"reference":%q}}],`+
		`"description":"Follow-up with Dr Gregory House","start":%q,"end":%q,"participant":[`+
		`{"actor":{"reference":"Patient/ann","display":"Ann Roy"},"status":"accepted"},`+
		`{"actor":{"reference":"RelatedPerson/carer"},"status":"accepted"},`+
		`{"actor":{"reference":"Practitioner/house","display":"Dr Gregory House"},"status":"accepted"}]}`,
		status, endpoint, w.start.Format(time.RFC3339), w.end.Format(time.RFC3339))
}

func inviteBody(participant, name, email string, confirmed bool, lang string) map[string]any {
	ps := []any{
		map[string]any{"name": "name", "valueString": name},
		map[string]any{"name": "email", "valueString": email},
		map[string]any{"name": "confirmed", "valueBoolean": confirmed},
	}
	if participant != "" {
		ps = append(ps, map[string]any{"name": "participant", "valueReference": map[string]any{"reference": participant}})
	}
	if lang != "" {
		ps = append(ps, map[string]any{"name": "lang", "valueCode": lang})
	}
	return map[string]any{"resourceType": "Parameters", "parameter": ps}
}

func paramValue(r res, name string) string {
	ps, _ := r.JSON["parameter"].([]any)
	for _, p := range ps {
		m := p.(map[string]any)
		if m["name"] == name {
			for k, v := range m {
				if strings.HasPrefix(k, "value") {
					return fmt.Sprint(v)
				}
			}
		}
	}
	return ""
}

// practitioner is Dr House's token (user/ scopes, fhirUser Practitioner).
func (w *visitWorld) practitioner() string {
	return w.h.token(devissuer.MintOptions{Scope: "user/*.cruds", FHIRUser: "Practitioner/house", Client: "emr"})
}

type invitation struct {
	id, pin, expires, link string
	mail                   smtptest.Mail
}

// invite runs $invite as Dr House and returns the invitation, its PIN and
// the email that arrived.
func (w *visitWorld) invite(t *testing.T, participant, name, addr, lang string) invitation {
	t.Helper()
	r := w.h.req("POST", apptPath+"/$invite", inviteBody(participant, name, addr, true, lang), w.practitioner()).must(t, 200)
	inv := invitation{id: paramValue(r, "invitation"), pin: paramValue(r, "pin"), expires: paramValue(r, "expires")}
	inv.mail = w.sink.Next(t, 10*time.Second)
	inv.link = linkIn(t, inv.mail.Body, w.origin)
	return inv
}

func linkIn(t *testing.T, body, origin string) string {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(origin) + `/visit/[A-Za-z0-9_-]{43}`).FindString(body)
	if m == "" {
		t.Fatalf("no invitation link in the email: %q", body)
	}
	return m
}

// browser is an HTTP client with cookies that does not follow redirects.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(method, u string, form url.Values) page {
	b.t.Helper()
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// submitPIN opens the link and posts pin with the form's CSRF token.
func (b *browser) submitPIN(link, pin string) page {
	b.t.Helper()
	form := b.do("GET", link, nil)
	m := csrfRe.FindStringSubmatch(form.body)
	if m == nil {
		return form // not a PIN form: the refusal page
	}
	return b.do("POST", link, url.Values{"csrf": {m[1]}, "pin": {pin}})
}

func wrongPIN(pin string) string {
	if pin == "000000" {
		return "111111"
	}
	return "000000"
}

func TestVisitInvitationEndToEnd(t *testing.T) {
	w := newVisitWorld(t)
	h := w.h

	// Invite the patient: the PIN comes back once, the email has only the link.
	inv := w.invite(t, "Patient/ann", "Ann Roy", patientMail, "")
	if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(inv.pin) || inv.id == "" {
		t.Fatalf("invitation %q PIN %q: want an id and 6 digits", inv.id, inv.pin)
	}
	if want := w.end.Add(30 * time.Minute).UTC().Format("2006-01-02T15:04:05.000Z"); inv.expires != want {
		t.Fatalf("expires %s, want the Appointment's end + 30 min, %s", inv.expires, want)
	}
	m := inv.mail
	if strings.Join(m.To, ",") != patientMail || m.Header.Get("To") != patientMail || m.From != "no-reply@portal.example" {
		t.Fatalf("envelope from %q to %q, header To %q", m.From, m.To, m.Header.Get("To"))
	}
	// The whole message but the link's token and the Message-ID (random
	// strings that could hold six digits by chance).
	token := strings.TrimPrefix(inv.link, w.origin+"/visit/")
	whole := regexp.MustCompile(`(?mi)^Message-ID:.*$`).ReplaceAllString(m.Data+m.Body+m.Subject, "")
	whole = strings.ReplaceAll(whole, token, "")
	if strings.Contains(whole, inv.pin) {
		t.Fatalf("the PIN %s is in the email: %s", inv.pin, m.Data)
	}
	for _, s := range append(phi, w.start.Format("2006-01-02"), w.start.Format("15:04"), w.end.Format("15:04"), w.start.Format("Jan"), "Patient/", "Appointment") {
		if strings.Contains(m.Subject+"\n"+m.Body, s) {
			t.Errorf("the email contains %q:\n%s\n%s", s, m.Subject, m.Body)
		}
	}
	if !strings.Contains(m.Body, "You are invited to a virtual visit.") || !strings.Contains(m.Body, "PIN is given to you separately") {
		t.Errorf("the email's text: %q", m.Body)
	}

	// The link shows the PIN form, with the page protections.
	b := newBrowser(t)
	form := b.do("GET", inv.link, nil)
	if form.status != 200 || !strings.Contains(form.body, `<label for="pin">PIN</label>`) || !csrfRe.MatchString(form.body) {
		t.Fatalf("PIN form: %d %s", form.status, form.body)
	}
	csp := form.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "script-src") ||
		form.header.Get("Referrer-Policy") != "no-referrer" || form.header.Get("Cache-Control") != "no-store" {
		t.Errorf("page headers: %v", form.header)
	}
	if c := strings.Join(form.header.Values("Set-Cookie"), "; "); !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") {
		t.Errorf("CSRF cookie: %s", c)
	}
	for _, s := range phi {
		if strings.Contains(form.body, s) {
			t.Errorf("the PIN page shows %q", s)
		}
	}
	// No CSRF token: refused, and not counted.
	if p := b.do("POST", inv.link, url.Values{"pin": {inv.pin}}); p.status != 403 || !strings.Contains(p.body, "form has expired") {
		t.Fatalf("POST without CSRF: %d %s", p.status, p.body)
	}

	// Four wrong PINs count down; the right one then still works.
	for i := 1; i <= 4; i++ {
		p := b.submitPIN(inv.link, wrongPIN(inv.pin))
		if p.status != 403 || !strings.Contains(p.body, fmt.Sprintf("Attempts left: %d.", 5-i)) {
			t.Fatalf("wrong PIN %d: %d %s", i, p.status, p.body)
		}
	}
	p := b.submitPIN(inv.link, inv.pin)
	if p.status != 303 || !strings.HasPrefix(p.header.Get("Location"), "/visit/session") {
		t.Fatalf("right PIN: %d %v %s", p.status, p.header, p.body)
	}
	sc := strings.Join(p.header.Values("Set-Cookie"), "\n")
	if !strings.Contains(sc, "fg_visit=") || !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") {
		t.Fatalf("session cookie: %s", sc)
	}
	join := b.do("GET", w.origin+p.header.Get("Location"), nil)
	if join.status != 200 || !strings.Contains(join.body, `href="`+joinURL+`"`) {
		t.Fatalf("join page: %d %s", join.status, join.body)
	}
	// The end shows its date when the visit crosses midnight.
	endFmt := "15:04"
	if w.end.Format("2006-01-02") != w.start.Format("2006-01-02") {
		endFmt = "2006-01-02 15:04"
	}
	wantTime := w.start.Format("2006-01-02 15:04") + "–" + w.end.Format(endFmt) + " (UTC+00:00)"
	if !strings.Contains(html.UnescapeString(join.body), wantTime) {
		t.Errorf("join page time: want %q in %s", wantTime, join.body)
	}
	// Only the join URL and time: no name, clinic, description.
	for _, s := range []string{"Gregory", "House", "Princeton", "Ann", "Roy", "Follow-up", "555-0100"} {
		if strings.Contains(join.body, s) {
			t.Errorf("the join page shows %q", s)
		}
	}

	// Single use: the link is refused now, even with the right PIN, in any browser.
	for _, bb := range []*browser{b, newBrowser(t)} {
		if p := bb.submitPIN(inv.link, inv.pin); p.status != 410 || !strings.Contains(p.body, "already been used") {
			t.Fatalf("reused link: %d %s", p.status, p.body)
		}
	}
	// The session is this browser's only.
	if p := newBrowser(t).do("GET", w.origin+"/visit/session", nil); p.status != 403 || strings.Contains(p.body, joinURL) {
		t.Fatalf("session page without the cookie: %d %s", p.status, p.body)
	}

	// Five wrong PINs lock an invitation; the right PIN is then refused too.
	lockedInv := w.invite(t, "RelatedPerson/carer", "Carol Carer", "carol@example.org", "fr")
	if !strings.Contains(lockedInv.mail.Body, "Vous êtes invité(e) à une visite virtuelle.") || strings.Contains(strings.ReplaceAll(lockedInv.mail.Body, lockedInv.link, ""), lockedInv.pin) {
		t.Fatalf("French email: %q", lockedInv.mail.Body)
	}
	b2 := newBrowser(t)
	for i := 1; i <= 4; i++ {
		if p := b2.submitPIN(lockedInv.link, wrongPIN(lockedInv.pin)); p.status != 403 || !strings.Contains(p.body, "NIP est incorrect") {
			t.Fatalf("wrong PIN %d (French): %d %s", i, p.status, p.body)
		}
	}
	if p := b2.submitPIN(lockedInv.link, wrongPIN(lockedInv.pin)); p.status != 423 || !strings.Contains(p.body, "verrouillée") {
		t.Fatalf("fifth wrong PIN: %d %s", p.status, p.body)
	}
	if p := b2.submitPIN(lockedInv.link, lockedInv.pin); p.status != 423 || strings.Contains(p.body, joinURL) {
		t.Fatalf("right PIN after the lock: %d %s", p.status, p.body)
	}

	// The host's list: statuses, never a secret.
	r := h.req("GET", apptPath+"/$invitations", nil, w.practitioner()).must(t, 200)
	statuses := map[string]string{}
	for _, p := range r.JSON["parameter"].([]any) {
		var id, st string
		for _, part := range p.(map[string]any)["part"].([]any) {
			pm := part.(map[string]any)
			switch pm["name"] {
			case "id":
				id = pm["valueString"].(string)
			case "status":
				st = pm["valueCode"].(string)
			}
		}
		statuses[id] = st
	}
	if statuses[inv.id] != "used" || statuses[lockedInv.id] != "locked" || len(statuses) != 2 {
		t.Fatalf("$invitations statuses: %v", statuses)
	}
	for _, s := range []string{inv.pin, lockedInv.pin, patientMail, "hash", "salt", "token", token} {
		if strings.Contains(string(r.Body), s) {
			t.Errorf("$invitations shows %q: %s", s, r.Body)
		}
	}

	// The audit trail: who invited whom, every wrong PIN, the lock, the join.
	flush(t, h)
	ops := visitAudit(t, h)
	for op, want := range map[string]int{"evisit-invite": 2, "evisit-pin-failed": 8, "evisit-locked": 1, "evisit-join": 1} {
		if len(ops[op]) != want {
			t.Errorf("%d %s AuditEvents, want %d", len(ops[op]), op, want)
		}
	}
	for _, ev := range ops["evisit-invite"] {
		if !strings.Contains(ev, "Practitioner/house") {
			t.Errorf("invite event without the inviting practitioner: %s", ev)
		}
	}
	if len(ops["evisit-join"]) == 1 && (!strings.Contains(ops["evisit-join"][0], "invitee=Ann+Roy") || !strings.Contains(ops["evisit-join"][0], "Patient/ann")) {
		t.Errorf("join event does not name the invitee: %s", ops["evisit-join"][0])
	}
	for op, evs := range ops {
		for _, ev := range evs {
			if strings.Contains(ev, patientMail) || strings.Contains(ev, "carol@example.org") || strings.Contains(ev, inv.pin) {
				t.Errorf("%s AuditEvent holds an email address or PIN: %s", op, ev)
			}
		}
	}
	// The patient finds the invitation and her join in her own trail.
	pr := h.req("GET", "AuditEvent?patient=Patient/ann&_count=200", nil, h.token(devissuer.MintOptions{Scope: "patient/*.rs", Patient: "ann", FHIRUser: "Patient/ann"})).must(t, 200)
	if !strings.Contains(string(pr.Body), "evisit-join") || !strings.Contains(string(pr.Body), "evisit-invite") {
		t.Errorf("the patient's trail lacks her invitation and join")
	}
}

// visitAudit returns the AuditEvents of the Appointment by operation
// name, each as its JSON with the query entity decoded.
func visitAudit(t *testing.T, h *harness) map[string][]string {
	t.Helper()
	r := h.req("GET", "AuditEvent?entity="+apptPath+"&_count=500", nil, "").must(t, 200)
	out := map[string][]string{}
	for _, e := range r.entries() {
		ae := e["resource"].(map[string]any)
		raw, _ := json.Marshal(ae)
		text := string(raw)
		op := ""
		for _, ent := range ae["entity"].([]any) {
			em := ent.(map[string]any)
			if em["description"] == "operation" {
				op, _ = em["name"].(string)
			}
			if q, ok := em["query"].(string); ok {
				d, _ := base64.StdEncoding.DecodeString(q)
				text += "\n" + string(d)
			}
		}
		out[op] = append(out[op], text)
	}
	return out
}

func TestVisitExpiryRevokeResend(t *testing.T) {
	w := newVisitWorld(t)
	h := w.h

	// Revoked: refused exactly like a link that never existed.
	rev := w.invite(t, "Patient/ann", "Ann Roy", patientMail, "")
	h.req("POST", apptPath+"/$invite-revoke", map[string]any{"resourceType": "Parameters", "parameter": []any{
		map[string]any{"name": "invitation", "valueString": rev.id}}}, w.practitioner()).must(t, 200)
	b := newBrowser(t)
	revoked := b.submitPIN(rev.link, rev.pin)
	unknown := b.do("GET", w.origin+"/visit/"+strings.Repeat("A", 43), nil)
	norm := func(p page) string {
		return regexp.MustCompile(`/visit/[A-Za-z0-9_-]{43}`).ReplaceAllString(p.body, "/visit/T")
	}
	if revoked.status != 404 || unknown.status != 404 || norm(revoked) != norm(unknown) || !strings.Contains(revoked.body, "not valid") {
		t.Fatalf("revoked %d vs unknown %d:\n%s\n---\n%s", revoked.status, unknown.status, revoked.body, unknown.body)
	}

	// Re-send: the old link stops, a new email brings a new link and PIN.
	old := w.invite(t, "RelatedPerson/carer", "Carol Carer", "carol@example.org", "")
	r := h.req("POST", apptPath+"/$invite-resend", map[string]any{"resourceType": "Parameters", "parameter": []any{
		map[string]any{"name": "invitation", "valueString": old.id}}}, w.practitioner()).must(t, 200)
	newer := invitation{id: paramValue(r, "invitation"), pin: paramValue(r, "pin")}
	newer.mail = w.sink.Next(t, 10*time.Second)
	newer.link = linkIn(t, newer.mail.Body, w.origin)
	if newer.id == old.id || newer.link == old.link || paramValue(r, "replaces") != old.id || strings.Join(newer.mail.To, ",") != "carol@example.org" {
		t.Fatalf("re-send: %s", r.Body)
	}
	if p := newBrowser(t).submitPIN(old.link, old.pin); p.status != 404 {
		t.Fatalf("the re-sent invitation's old link: %d", p.status)
	}
	b3 := newBrowser(t)
	if p := b3.submitPIN(newer.link, newer.pin); p.status != 303 {
		t.Fatalf("the new link with the new PIN: %d %s", p.status, p.body)
	}
	if p := b3.do("GET", w.origin+"/visit/session", nil); p.status != 200 || !strings.Contains(p.body, joinURL) {
		t.Fatalf("join after re-send: %d %s", p.status, p.body)
	}
	// Revoking a used invitation ends its session.
	h.req("POST", apptPath+"/$invite-revoke", map[string]any{"resourceType": "Parameters", "parameter": []any{
		map[string]any{"name": "invitation", "valueString": newer.id}}}, w.practitioner()).must(t, 200)
	if p := b3.do("GET", w.origin+"/visit/session", nil); p.status != 403 || strings.Contains(p.body, joinURL) {
		t.Fatalf("session after revoke: %d %s", p.status, p.body)
	}

	// Expiry: 30 minutes after the scheduled end the link is refused.
	exp := w.invite(t, "Patient/ann", "Ann Roy", patientMail, "")
	h.clock.Set(w.end.Add(30*time.Minute - time.Second))
	if p := newBrowser(t).do("GET", exp.link, nil); p.status != 200 {
		t.Fatalf("a second before expiry: %d", p.status)
	}
	h.clock.Set(w.end.Add(30 * time.Minute))
	if p := newBrowser(t).submitPIN(exp.link, exp.pin); p.status != 410 || !strings.Contains(p.body, "has expired") {
		t.Fatalf("expired link: %d %s", p.status, p.body)
	}
	// Nobody is invited to a visit whose invitation would be expired already.
	r = h.req("POST", apptPath+"/$invite", inviteBody("Patient/ann", "Ann Roy", patientMail, true, ""), w.practitioner())
	if r.Status != 422 {
		t.Fatalf("invite after the end: %d %s", r.Status, r.Body)
	}

	flush(t, h)
	ops := visitAudit(t, h)
	if len(ops["evisit-revoke"]) != 2 || len(ops["evisit-resend"]) != 1 || !strings.Contains(ops["evisit-resend"][0], "replaces="+old.id) {
		t.Errorf("revoke/re-send AuditEvents: %d %d %v", len(ops["evisit-revoke"]), len(ops["evisit-resend"]), ops["evisit-resend"])
	}
}

func TestVisitInviteRules(t *testing.T) {
	w := newVisitWorld(t)
	h := w.h
	ok := inviteBody("Patient/ann", "Ann Roy", patientMail, true, "")

	// Staff only: patient-facing tokens get 403 on every operation.
	patient := h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: "ann", FHIRUser: "Patient/ann"})
	carer := h.token(devissuer.MintOptions{Scope: "patient/*.cruds", Patient: "ann", FHIRUser: "RelatedPerson/carer"})
	for name, tok := range map[string]string{"patient": patient, "caregiver": carer} {
		h.req("POST", apptPath+"/$invite", ok, tok).must(t, 403)
		h.req("GET", apptPath+"/$invitations", nil, tok).must(t, 403)
		h.req("POST", apptPath+"/$invite-revoke", map[string]any{"resourceType": "Parameters"}, tok).must(t, 403)
		_ = name
	}
	h.req("POST", apptPath+"/$invite", ok, "-").must(t, 401)
	// A practitioner without write access to Appointments: 403.
	ro := h.token(devissuer.MintOptions{Scope: "user/*.rs", FHIRUser: "Practitioner/house"})
	h.req("POST", apptPath+"/$invite", ok, ro).must(t, 403)
	h.req("POST", "Appointment/nope/$invite", ok, w.practitioner()).must(t, 404)

	sentBefore := len(w.sink.All())
	for name, body := range map[string]map[string]any{
		"not confirmed":     inviteBody("Patient/ann", "Ann Roy", patientMail, false, ""),
		"no name":           inviteBody("Patient/ann", " ", patientMail, true, ""),
		"bad email":         inviteBody("Patient/ann", "Ann Roy", "Ann <ann@example.org>", true, ""),
		"not a participant": inviteBody("Patient/other", "Ann Roy", patientMail, true, ""),
		"not a person":      inviteBody("Organization/clinic", "Ann Roy", patientMail, true, ""),
		"unknown language":  inviteBody("Patient/ann", "Ann Roy", patientMail, true, "de"),
	} {
		r := h.req("POST", apptPath+"/$invite", body, w.practitioner())
		if r.Status != 400 {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	// An Appointment without a virtual service, or a cancelled one.
	put(h, "Appointment", "novs", strings.Replace(w.appointment("booked", "Endpoint/missing"), "Endpoint/missing", "Endpoint/none", 1))
	h.req("POST", "Appointment/novs/$invite", ok, w.practitioner()).must(t, 400)
	put(h, "Appointment", "cx", w.appointment("cancelled", "Endpoint/vs1"))
	h.req("POST", "Appointment/cx/$invite", ok, w.practitioner()).must(t, 422)
	if n := len(w.sink.All()); n != sentBefore {
		t.Fatalf("a refused invitation sent an email (%d, were %d)", n, sentBefore)
	}
	// An interpreter: no participant reference.
	interp := w.invite(t, "", "Ivan Interpreter", "ivan@example.org", "")
	if p := newBrowser(t).submitPIN(interp.link, interp.pin); p.status != 303 {
		t.Fatalf("interpreter's link: %d %s", p.status, p.body)
	}
	// A contained Endpoint works too.
	contained := strings.Replace(w.appointment("booked", "#vs"), `"extension"`,
		`"contained":[{"resourceType":"Endpoint","id":"vs","status":"active","connectionType":{"code":"hl7-fhir-rest"},"payloadType":[{"text":"video"}],"address":"https://meet.example.org/c"}],"extension"`, 1)
	put(h, "Appointment", "cont", contained)
	h.req("POST", "Appointment/cont/$invite", ok, w.practitioner()).must(t, 200)
	w.sink.Next(t, 10*time.Second)

	// Rate limit per link: more than 10 submissions a minute are refused.
	lim := w.invite(t, "Patient/ann", "Ann Roy", patientMail, "")
	b := newBrowser(t)
	last := 0
	for range 11 {
		last = b.do("POST", lim.link, url.Values{"csrf": {"x"}, "pin": {"1"}}).status
	}
	if last != 429 {
		t.Fatalf("11th submission in a minute: %d, want 429", last)
	}
}

// TestVisitBrowser opens the invitation link in headless Chromium, types
// the PIN and sees the join URL.
func TestVisitBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: not in -short")
	}
	chrome := browsertest.Chromium()
	if chrome == "" {
		t.Skip("Chromium is not installed (Debian: apt-get install chromium)")
	}
	w := newVisitWorld(t)
	inv := w.invite(t, "Patient/ann", "Ann Roy", patientMail, "")

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(900, 800), chromedp.Flag("lang", "en-US"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("%s: %v: %s", what, err, html)
		}
	}
	do("open the link", chromedp.Navigate(inv.link), chromedp.WaitVisible(chromedp.CSS(`#pin`)))
	do("a wrong PIN", chromedp.SendKeys(chromedp.CSS("#pin"), wrongPIN(inv.pin)),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`#form-error`)))
	do("the right PIN", chromedp.SendKeys(chromedp.CSS("#pin"), inv.pin),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`#join`)))
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("join").href`))
	if err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	if href != joinURL || !strings.Contains(text, joinURL) || !strings.Contains(text, w.start.Format("15:04")) {
		t.Fatalf("join page: href %q, text %q", href, text)
	}
	if os.Getenv("FHIRGATE_SCREENSHOTS") != "" {
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile("../../docs/evisit-join.png", png, 0o644)
		}
	}
	// Back to the link: used.
	do("the link again", chromedp.Navigate(inv.link), chromedp.WaitVisible(chromedp.CSS(`#message`)))
	if msg, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#message"))); !strings.Contains(msg, "already been used") {
		t.Fatalf("reused link in the browser: %q", msg)
	}
}
