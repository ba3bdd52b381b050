package policy

// Tests of the "booking:" section (docs/booking.md; R4 schedule.html,
// slot.html, appointment.html): parsing, defaults and inheritance, the
// first-match choice of a bookable schedule, and every refused setting
// with its line.

import (
	"strings"
	"testing"
	"time"
)

const bookingYAML = `version: 1
booking:
  maxActive: 3
  minNotice: 1h
  cancelCutoff: 24h
  schedules:
    - name: family-medicine
      schedule: [Schedule/dr-a, Schedule/dr-b]
      mode: automatic
      horizon: 30d
    - name: flu-clinic
      actor: HealthcareService/flu
      serviceType: ["http://terminology.hl7.org/CodeSystem/service-type|57"]
      mode: approval
      rescheduleCutoff: 0
    - name: physio
      serviceType: [physio]
      cancelCutoff: 2d
`

func TestBookingParse(t *testing.T) {
	p, err := Parse([]byte(bookingYAML), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := p.Booking()
	if !b.On() || b.MaxActive != 3 || len(b.Schedules) != 3 {
		t.Fatalf("section: %+v", b)
	}
	fm, flu, physio := b.Schedules[0], b.Schedules[1], b.Schedules[2]
	if fm.Name != "family-medicine" || fm.Mode != Automatic || fm.Horizon != 30*24*time.Hour || fm.MinNotice != time.Hour ||
		fm.CancelCutoff != 24*time.Hour || fm.RescheduleCutoff != DefaultBookingCutoff || fm.Line != 7 {
		t.Errorf("family-medicine (inherits minNotice and cancelCutoff): %+v", fm)
	}
	if flu.Mode != Approval || flu.RescheduleCutoff != 0 || flu.Horizon != DefaultBookingHorizon || len(flu.Actors) != 1 {
		t.Errorf("flu-clinic: %+v", flu)
	}
	if physio.CancelCutoff != 48*time.Hour || physio.Mode != Automatic {
		t.Errorf("physio: %+v", physio)
	}
	const fluCode = "http://terminology.hl7.org/CodeSystem/service-type|57"
	for _, c := range []struct {
		name          string
		schedule      string
		actors, types []string
		want          string
	}{
		{"by schedule", "Schedule/dr-b", []string{"Practitioner/b"}, nil, "family-medicine"},
		{"by actor and service", "Schedule/x", []string{"Location/l", "HealthcareService/flu"}, []string{fluCode}, "flu-clinic"},
		{"actor without the service", "Schedule/x", []string{"HealthcareService/flu"}, []string{"http://other|57"}, ""},
		{"code without system", "Schedule/y", nil, []string{"http://example.org/st|physio"}, "physio"},
		{"nothing", "Schedule/z", []string{"Practitioner/z"}, nil, ""},
		{"first match wins", "Schedule/dr-a", nil, []string{"x|physio"}, "family-medicine"},
	} {
		got := b.Match(c.schedule, c.actors, c.types)
		name := ""
		if got != nil {
			name = got.Name
		}
		if name != c.want {
			t.Errorf("%s: matched %q, want %q", c.name, name, c.want)
		}
	}
	// The section does not change the release rules' hash, but has its own.
	plain, err := Parse([]byte("version: 1\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if plain.Hash() != p.Hash() || plain.Booking() != nil || plain.Booking().On() || plain.Booking().Match("Schedule/dr-a", nil, nil) != nil {
		t.Errorf("hash with booking %s, without %s; booking %v", p.Hash(), plain.Hash(), plain.Booking())
	}
	other, err := Parse([]byte(strings.Replace(bookingYAML, "maxActive: 3", "maxActive: 4", 1)), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b.Hash() == "" || other.Booking().Hash() == b.Hash() {
		t.Errorf("booking hash does not follow the rules: %q %q", b.Hash(), other.Booking().Hash())
	}
}

func TestBookingDefaults(t *testing.T) {
	p, err := Parse([]byte("version: 1\nbooking:\n  schedules:\n    - schedule: Schedule/a\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := p.Booking()
	e := b.Schedules[0]
	if !b.Enabled || b.MaxActive != DefaultMaxActive || e.Mode != Automatic || e.Horizon != DefaultBookingHorizon ||
		e.MinNotice != DefaultBookingMinNotice || e.CancelCutoff != DefaultBookingCutoff || e.Name != "schedules-1" {
		t.Errorf("defaults: %+v %+v", b, e)
	}
	off, err := Parse([]byte("version: 1\nbooking:\n  enabled: false\n"), "p.yaml")
	if err != nil || off.Booking() == nil || off.Booking().On() || off.Booking().Match("Schedule/a", nil, nil) != nil {
		t.Errorf("enabled: false: %+v %v", off.Booking(), err)
	}
}

func TestBookingProblems(t *testing.T) {
	for _, c := range []struct {
		name, section, want string
		line                string
	}{
		{"not a mapping", " [a]\n", "booking must be a mapping", "p.yaml:2:"},
		{"no schedules", "  maxActive: 2\n", "schedules is required", "p.yaml:3:"},
		{"empty schedules", "  schedules: []\n", "booking.schedules is empty", "p.yaml:3:"},
		{"schedules not a list", "  schedules: Schedule/a\n", "must be a list", "p.yaml:3:"},
		{"bad maxActive", "  maxActive: many\n  schedules: [{schedule: Schedule/a}]\n", `maxActive "many" must be a whole number`, "p.yaml:3:"},
		{"zero maxActive", "  maxActive: 0\n  schedules: [{schedule: Schedule/a}]\n", "from 1 to 100", "p.yaml:3:"},
		{"bad mode", "  schedules:\n    - schedule: Schedule/a\n      mode: later\n", `unknown mode "later"`, "p.yaml:5:"},
		{"bad schedule ref", "  schedules:\n    - schedule: [Practitioner/a]\n", `schedule "Practitioner/a" must be a reference such as Schedule/dr-a`, "p.yaml:4:"},
		{"bad actor", "  schedules:\n    - actor: Patient/p\n", `actor "Patient/p" must be a reference`, "p.yaml:4:"},
		{"bad service type", "  schedules:\n    - serviceType: [\"a|b|c\"]\n", "more than one '|'", "p.yaml:4:"},
		{"catch-all", "  schedules:\n    - name: all\n      mode: automatic\n", "covers every Schedule", "p.yaml:4:"},
		{"bad duration", "  schedules:\n    - schedule: Schedule/a\n      horizon: soon\n", `horizon "soon" is not a duration`, "p.yaml:5:"},
		{"zero horizon", "  schedules:\n    - schedule: Schedule/a\n      horizon: 0\n", `horizon "0" is not a duration`, "p.yaml:5:"},
		{"too long", "  schedules:\n    - schedule: Schedule/a\n      horizon: 800d\n", "up to 2 years", "p.yaml:5:"},
		{"notice beyond horizon", "  schedules:\n    - schedule: Schedule/a\n      horizon: 1d\n      minNotice: 2d\n", "minNotice (48h0m0s) must be shorter than horizon", "p.yaml:6:"},
		{"duplicate name", "  schedules:\n    - {name: a, schedule: Schedule/a}\n    - {name: a, schedule: Schedule/b}\n", `duplicate booking.schedules name "a" (first at line 4)`, "p.yaml:5:"},
		{"unknown key", "  schedules:\n    - schedule: Schedule/a\n      cancelCutof: 2h\n", `did you mean "cancelCutoff"`, "p.yaml:5:"},
		{"unknown section key", "  maxactive: 2\n  schedules: [{schedule: Schedule/a}]\n", `did you mean "maxActive"`, "p.yaml:3:"},
		{"not a bool", "  enabled: maybe\n  schedules: [{schedule: Schedule/a}]\n", "enabled must be true or false", "p.yaml:3:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			section := c.section
			if strings.HasPrefix(section, "  ") {
				section = "\n" + section
			}
			_, err := Parse([]byte("version: 1\nbooking:"+section), "p.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.line) {
				t.Errorf("error %v, want one at %s naming %q", err, c.line, c.want)
			}
		})
	}
}

// A change of the booking section alone is a reload (Watch compares reloadKey).
func TestBookingChangeReloads(t *testing.T) {
	a, err := Parse([]byte("version: 1\nbooking:\n  schedules:\n    - schedule: Schedule/a\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte("version: 1\nbooking:\n  schedules:\n    - schedule: Schedule/b\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if a.reloadKey() == b.reloadKey() {
		t.Fatal("two booking sections give one reload key: the second would not be applied")
	}
}
