package main

// Online appointment booking through the binary (issue 17,
// docs/booking.md): the build `make run` starts, with a policy file's
// booking: rules and an SMTP server in the test. A patient finds and
// books a free Slot, a second patient is refused the same Slot (409),
// the first patient's reminder arrives as an email without PHI, her
// cancellation frees the Slot and the second patient then books it.

import (
	"strings"
	"testing"
	"time"
)

const binaryBookingPolicy = `version: 1
booking:
  maxActive: 1
  minNotice: 10m
  cancelCutoff: 0
  schedules:
    - name: riverside-dermatology
      schedule: [Schedule/sch-derm]
      horizon: 14d
`

func TestBookingThroughTheBinary(t *testing.T) {
	c := startBinary(t, withMail(), withPolicy(binaryBookingPolicy), withEnv("FHIRGATE_REMINDER_LEAD=2h"))
	emr := c.token("--scope", "system/*.cruds")
	ann := c.token("--scope", "patient/*.cruds", "--patient", "ann", "--fhir-user", "Patient/ann", "--client", "portal")
	bob := c.token("--scope", "patient/*.cruds", "--patient", "bob", "--fhir-user", "Patient/bob", "--client", "portal")

	// The slot starts within the reminder lead (2 h), so its reminder is due at once.
	start := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	secret := []string{"Ann", "Archer", "Riverside", "dermatology", "Lee", "sch-derm", "slot-1", "eczema"}
	for _, x := range []struct{ path, body string }{
		{"Patient/ann", `{"resourceType":"Patient","id":"ann","name":[{"given":["Ann"],"family":"Archer"}],"birthDate":"1980-02-02","telecom":[{"system":"email","value":"ann@example.org"}]}`},
		{"Patient/bob", `{"resourceType":"Patient","id":"bob","name":[{"given":["Bob"],"family":"Brown"}],"birthDate":"1982-02-02","telecom":[{"system":"email","value":"bob@example.org"}]}`},
		{"Practitioner/dr-lee", `{"resourceType":"Practitioner","id":"dr-lee","name":[{"family":"Lee"}]}`},
		{"Schedule/sch-derm", `{"resourceType":"Schedule","id":"sch-derm","actor":[{"reference":"Practitioner/dr-lee","display":"Dr Lee, Riverside dermatology"}]}`},
		{"Slot/slot-1", `{"resourceType":"Slot","id":"slot-1","schedule":{"reference":"Schedule/sch-derm"},"status":"free","start":"` + start.Format(time.RFC3339) +
			`","end":"` + start.Add(20*time.Minute).Format(time.RFC3339) + `","serviceType":[{"text":"Riverside dermatology"}]}`},
	} {
		c.do(emr, "PUT", x.path, x.body, 201)
	}
	c.do(emr, "POST", "Patient/ann/$notification-preferences", `{"resourceType":"Parameters","parameter":[{"name":"reminder","valueBoolean":true}]}`, 200)

	// Ann finds the slot (with its Schedule) and books it.
	if got := strings.Join(c.do(ann, "GET", "Slot/$find", "", 200).ids(), " "); got != "Slot/slot-1 Schedule/sch-derm" {
		t.Fatalf("$find: %s", got)
	}
	book := `{"resourceType":"Parameters","parameter":[{"name":"slot","valueReference":{"reference":"Slot/slot-1"}},{"name":"comment","valueString":"eczema"}]}`
	appt := c.do(ann, "POST", "Appointment/$book", book, 201)
	if appt.str("status") != "booked" || !strings.Contains(string(appt.body), `"Patient/ann"`) {
		t.Fatalf("booking: %s", appt.body)
	}
	if st := c.do(emr, "GET", "Slot/slot-1", "", 200).str("status"); st != "busy" {
		t.Errorf("the slot is %s", st)
	}
	// Bob is refused the same slot, and cannot book for Ann.
	if b := string(c.do(bob, "POST", "Appointment/$book", book, 409).body); !strings.Contains(b, "no longer free") {
		t.Errorf("409: %s", b)
	}
	c.do(bob, "POST", "Appointment/$book", strings.Replace(book, `]}`, `,{"name":"patient","valueReference":{"reference":"Patient/ann"}}]}`, 1), 404)
	// Nor write the Appointment himself.
	c.do(bob, "POST", "Appointment", `{"resourceType":"Appointment","status":"booked","slot":[{"reference":"Slot/slot-1"}],"start":"`+start.Format(time.RFC3339)+
		`","end":"`+start.Add(20*time.Minute).Format(time.RFC3339)+`","participant":[{"actor":{"reference":"Patient/bob"},"status":"accepted"}]}`, 403)

	// Ann's reminder arrives, without PHI.
	m := c.mail.Next(t, 30*time.Second)
	if strings.Join(m.To, ",") != "ann@example.org" || !strings.Contains(m.Body, "You have an upcoming appointment.") || !strings.Contains(m.Body, "https://portal.example.org/appointments") {
		t.Fatalf("reminder email to %v: %s", m.To, m.Body)
	}
	assertNoPHI(t, "reminder", m, append(secret, appt.str("id")))

	// Ann cancels: the slot is free again and Bob books it.
	if st := c.do(ann, "POST", "Appointment/"+appt.str("id")+"/$cancel", "", 200).str("status"); st != "cancelled" {
		t.Errorf("cancelled: %s", st)
	}
	if st := c.do(emr, "GET", "Slot/slot-1", "", 200).str("status"); st != "free" {
		t.Errorf("after the cancellation the slot is %s", st)
	}
	if got := c.do(bob, "POST", "Appointment/$book", book, 201); !strings.Contains(string(got.body), `"Patient/bob"`) {
		t.Errorf("Bob's booking: %s", got.body)
	}
}
