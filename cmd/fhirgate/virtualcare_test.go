package main

// Virtual care through the binary (issue "Virtual care"): the same build
// `make run` starts, with FHIRGATE_SMTP_URL pointing at an SMTP server in
// the test (internal/smtptest). A clinician's message to a patient who
// opted in reaches her as an email without health information; an eVisit
// invitation arrives as an email without the PIN, and headless Chromium
// opens its link, types the PIN the clinician was given and sees the join
// link; the link then refuses a second use.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fhirgate/fhirgate/internal/browsertest"
)

func TestVirtualCareThroughTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the binary and a browser")
	}
	c := startBinary(t, withMail())
	emr := c.token("--scope", "system/*.cruds")
	call := func(method, path, body string, want int) binRes {
		t.Helper()
		return c.do(emr, method, path, body, want)
	}
	// Names and values that must never be in an email.
	secret := []string{"Ada", "Lovelace", "Gregory", "House", "Riverside", "HbA1c", "4548-4", "7.9", "ada@example.org"}
	call("PUT", "Patient/ada", `{"resourceType":"Patient","id":"ada","name":[{"given":["Ada"],"family":"Lovelace"}],`+
		`"telecom":[{"system":"email","value":"ada@example.org"}],"birthDate":"1980-12-10"}`, 201)
	call("PUT", "Practitioner/house", `{"resourceType":"Practitioner","id":"house","name":[{"given":["Gregory"],"family":"House"}]}`, 201)
	call("PUT", "Organization/riverside", `{"resourceType":"Organization","id":"riverside","name":"Riverside Clinic"}`, 201)
	call("POST", "Patient/ada/$notification-preferences", `{"resourceType":"Parameters","parameter":[{"name":"message","valueBoolean":true}]}`, 200)

	// 1. A clinician's message: one email, the generic sentence and a link.
	call("POST", "Communication", `{"resourceType":"Communication","status":"completed","subject":{"reference":"Patient/ada"},`+
		`"sender":{"reference":"Practitioner/house","display":"Dr Gregory House"},"recipient":[{"reference":"Patient/ada"}],`+
		`"sent":"2026-12-03T10:00:00Z","payload":[{"contentString":"Your HbA1c (4548-4) is 7.9 % — Riverside"}]}`, 201)
	m := c.mail.Next(t, 30*time.Second)
	if strings.Join(m.To, ",") != "ada@example.org" || !strings.Contains(m.Body, "https://portal.example.org") {
		t.Fatalf("message email to %v: %s", m.To, m.Body)
	}
	assertNoPHI(t, "message", m, secret)

	// 2. An eVisit: the invitation email has no PIN; the link + PIN join.
	start, end := time.Now().Add(time.Hour).UTC().Truncate(time.Second), time.Now().Add(2*time.Hour).UTC().Truncate(time.Second)
	call("PUT", "Endpoint/vs1", `{"resourceType":"Endpoint","id":"vs1","status":"active","connectionType":{"code":"hl7-fhir-rest"},`+
		`"payloadType":[{"text":"video"}],"address":"https://meet.example.org/room-42"}`, 201)
	call("PUT", "Appointment/visit1", fmt.Sprintf(`{"resourceType":"Appointment","id":"visit1","status":"booked",`+
		`"extension":[{"url":"https://fhirgate.dev/fhir/StructureDefinition/virtual-service","valueReference":{"reference":"Endpoint/vs1"}}],`+
		`"description":"Follow-up with Dr Gregory House at Riverside","start":%q,"end":%q,"participant":[`+
		`{"actor":{"reference":"Patient/ada"},"status":"accepted"},{"actor":{"reference":"Practitioner/house"},"status":"accepted"}]}`,
		start.Format(time.RFC3339), end.Format(time.RFC3339)), 201)
	r := call("POST", "Appointment/visit1/$invite", `{"resourceType":"Parameters","parameter":[{"name":"participant","valueReference":{"reference":"Patient/ada"}},`+
		`{"name":"name","valueString":"Ada Lovelace"},{"name":"email","valueString":"ada@example.org"},{"name":"confirmed","valueBoolean":true}]}`, 200)
	pin := param(r, "pin")
	if len(pin) < 6 {
		t.Fatalf("$invite returned no PIN: %s", r.body)
	}
	inv := c.mail.Next(t, 30*time.Second)
	assertNoPHI(t, "invitation", inv, secret)
	if strings.Contains(inv.Data+inv.Body, pin) {
		t.Fatalf("the PIN is in the invitation email")
	}
	link := visitLink(t, inv, c.addr)

	chrome := browsertest.Chromium()
	if chrome == "" {
		t.Skip("Chromium is not installed (Debian: apt-get install chromium): the invitation pages are not opened")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU)
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
	do("open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`#pin`)))
	do("the PIN", chromedp.SendKeys(chromedp.CSS("#pin"), pin),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`#join`)))
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("join").href`))
	if err != nil || href != "https://meet.example.org/room-42" {
		t.Fatalf("join link %q, %v", href, err)
	}
	page, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	for _, s := range []string{"Gregory", "House", "Riverside", "Lovelace"} {
		if strings.Contains(page, s) {
			t.Errorf("the join page shows %q: %s", s, page)
		}
	}
	do("the link again", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`#message`)))
	if msg, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#message"))); !strings.Contains(msg, "already been used") {
		t.Fatalf("a used link: %q", msg)
	}
}
