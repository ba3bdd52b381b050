package main

// eVisit invitations' rules through the binary, over plain HTTP (the
// browser flow is TestVirtualCareThroughTheBinary): 5 wrong PINs lock an
// invitation; the host re-sends (new link and PIN; the old link then
// answers like an unknown one) and revokes; an invitation expires with
// the Appointment plus the grace period; everything is audited (who
// invited whom, who joined when). docs/evisit.md.

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestEVisitRulesThroughTheBinary(t *testing.T) {
	c := startBinary(t, withMail(), withEnv("FHIRGATE_VISIT_GRACE=1s"))
	emr := c.token("--scope", "system/*.cruds")
	doc := c.token("--scope", "user/*.cruds", "--fhir-user", "Practitioner/house", "--client", "emr-ui")
	ann := c.token("--scope", "patient/*.cruds", "--patient", "ann", "--fhir-user", "Patient/ann", "--client", "portal")
	c.do(emr, "PUT", "Patient/ann", `{"resourceType":"Patient","id":"ann","name":[{"family":"Archer"}]}`, 201)
	c.do(emr, "PUT", "Practitioner/house", `{"resourceType":"Practitioner","id":"house","name":[{"family":"House"}]}`, 201)
	c.do(emr, "PUT", "Endpoint/vs", `{"resourceType":"Endpoint","id":"vs","status":"active","connectionType":{"code":"hl7-fhir-rest"},"payloadType":[{"text":"video"}],"address":"https://meet.example.org/r/9"}`, 201)
	appt := func(id string, start, end time.Time) {
		c.do(emr, "PUT", "Appointment/"+id, fmt.Sprintf(`{"resourceType":"Appointment","id":%q,"status":"booked",`+
			`"extension":[{"url":"https://fhirgate.dev/fhir/StructureDefinition/virtual-service","valueReference":{"reference":"Endpoint/vs"}}],`+
			`"start":%q,"end":%q,"participant":[{"actor":{"reference":"Patient/ann"},"status":"accepted"},{"actor":{"reference":"Practitioner/house"},"status":"accepted"}]}`,
			id, start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339)), 201)
	}
	later := time.Now().Add(time.Hour)
	appt("v1", later, later.Add(30*time.Minute))
	invite := func(appointment string) (id, pin, link string) {
		t.Helper()
		r := c.do(doc, "POST", "Appointment/"+appointment+"/$invite", `{"resourceType":"Parameters","parameter":[{"name":"participant","valueReference":{"reference":"Patient/ann"}},`+
			`{"name":"name","valueString":"Ann Archer"},{"name":"email","valueString":"ann@example.org"},{"name":"confirmed","valueBoolean":true}]}`, 200)
		id, pin = param(r, "invitation"), param(r, "pin")
		return id, pin, visitLink(t, c.mail.Next(t, 30*time.Second), c.addr)
	}
	// Staff only; the sender must confirm the recipient.
	c.do(ann, "POST", "Appointment/v1/$invite", `{"resourceType":"Parameters"}`, 403)
	c.do(doc, "POST", "Appointment/v1/$invite", `{"resourceType":"Parameters","parameter":[{"name":"participant","valueReference":{"reference":"Patient/ann"}},`+
		`{"name":"name","valueString":"Ann Archer"},{"name":"email","valueString":"ann@example.org"}]}`, 400)

	// 1. Five wrong PINs lock the invitation; the right one no longer opens it.
	id1, pin1, link1 := invite("v1")
	b := newVisitBrowser(t)
	wrong := "000000"
	if wrong == pin1 {
		wrong = "111111"
	}
	for i := 1; i <= 5; i++ {
		want := http.StatusForbidden
		if i == 5 {
			want = http.StatusLocked
		}
		if st, body := b.pin(link1, wrong); st != want {
			t.Fatalf("wrong PIN %d: %d, want %d: %s", i, st, want, body)
		}
	}
	if st, _ := b.pin(link1, pin1); st != http.StatusLocked {
		t.Fatalf("the right PIN after the lock: %d, want 423", st)
	}
	list := c.do(doc, "GET", "Appointment/v1/$invitations", "", 200)
	if !strings.Contains(string(list.body), `"locked"`) || strings.Contains(string(list.body), pin1) || strings.Contains(string(list.body), "ann@example.org") {
		t.Fatalf("$invitations: %s", list.body)
	}

	// 2. Re-send: a new link and PIN; the old link is refused like an unknown one.
	r := c.do(doc, "POST", "Appointment/v1/$invite-resend", `{"resourceType":"Parameters","parameter":[{"name":"invitation","valueString":"`+id1+`"}]}`, 200)
	pin2 := param(r, "pin")
	link2 := visitLink(t, c.mail.Next(t, 30*time.Second), c.addr)
	if pin2 == "" || link2 == link1 {
		t.Fatalf("re-sent invitation: %s", r.body)
	}
	unknown := b.get("http://" + c.addr + "/visit/" + strings.Repeat("A", 43))
	if st := b.get(link1); st != unknown || st != http.StatusNotFound {
		t.Errorf("the replaced link: %d, an unknown one %d", st, unknown)
	}
	if st, _ := b.pin(link2, pin2); st != http.StatusOK {
		t.Fatalf("the new link and PIN: %d", st)
	}
	if st := b.get(link2); st != http.StatusGone {
		t.Errorf("the new link a second time: %d, want 410", st)
	}

	// 3. Revoke.
	id3, pin3, link3 := invite("v1")
	c.do(doc, "POST", "Appointment/v1/$invite-revoke", `{"resourceType":"Parameters","parameter":[{"name":"invitation","valueString":"`+id3+`"}]}`, 200)
	if st, _ := b.pin(link3, pin3); st != http.StatusNotFound {
		t.Errorf("a revoked link: %d, want 404", st)
	}

	// 4. Expiry: the Appointment's end plus the 1 s grace.
	soon := time.Now().Truncate(time.Second).Add(2 * time.Second)
	appt("v2", soon.Add(-time.Minute), soon)
	_, pin4, link4 := invite("v2")
	time.Sleep(time.Until(soon.Add(1500 * time.Millisecond)))
	if st, body := b.pin(link4, pin4); st != http.StatusGone || !strings.Contains(body, "expired") {
		t.Errorf("an expired link: %d %s", st, body)
	}

	// 5. The audit trail names the invitations, the failed PINs, the lock and the join.
	ae := string(c.do(emr, "GET", "AuditEvent?entity=Appointment/v1&_count=200", "", 200).body)
	for _, want := range []string{"$invite", "$invite-resend", "$invite-revoke", "evisit-pin-failed", "evisit-locked", "evisit-join"} {
		if !strings.Contains(ae, want) {
			t.Errorf("no %q in the Appointment's audit trail", want)
		}
	}
}

// visitBrowser is an HTTP client with cookies that fills the PIN form.
type visitBrowser struct {
	t *testing.T
	c *http.Client
}

func newVisitBrowser(t *testing.T) *visitBrowser {
	jar, _ := cookiejar.New(nil)
	return &visitBrowser{t: t, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *visitBrowser) get(link string) int {
	b.t.Helper()
	resp, err := b.c.Get(link)
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// pin opens link and submits pin: the status of the answer (303 to the
// session page is reported as the session page's status).
func (b *visitBrowser) pin(link, pin string) (int, string) {
	b.t.Helper()
	resp, err := b.c.Get(link)
	if err != nil {
		b.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(page)
	if m == nil {
		return resp.StatusCode, string(page)
	}
	resp, err = b.c.PostForm(link, url.Values{"csrf": {string(m[1])}, "pin": {pin}})
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusSeeOther {
		u, _ := url.Parse(link)
		loc, _ := u.Parse(resp.Header.Get("Location"))
		resp, err = b.c.Get(loc.String())
		if err != nil {
			b.t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "https://meet.example.org/r/9") {
			b.t.Errorf("the session page has no join link: %s", body)
		}
	}
	return resp.StatusCode, string(body)
}
