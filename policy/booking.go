package policy

// Online appointment booking rules: the "booking:" section of the policy
// file (docs/booking.md). They decide which Schedules patients and proxies
// may book online (R4 schedule.html, slot.html, appointment.html), how far
// ahead, how many upcoming bookings a patient may hold, whether a booking
// is confirmed at once or waits for staff approval, and until when a
// booking may be cancelled or moved online. The booking service
// (portal/booking) enforces them; staff are not bound by them.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// BookingMode says how an online booking is confirmed.
type BookingMode string

const (
	// Automatic: the Appointment is booked and the Slot busy at once.
	Automatic BookingMode = "automatic"
	// Approval: the Appointment is pending and the Slot busy-tentative
	// until staff approve it ($approve).
	Approval BookingMode = "approval"
)

// Booking is the compiled "booking:" section. A nil *Booking (no
// section) offers no online booking to patient-facing apps; every method
// accepts a nil receiver.
type Booking struct {
	// Enabled: patients and proxies may book online. A section with
	// enabled: false keeps the rules but refuses every patient-facing
	// booking (403).
	Enabled bool
	// MaxActive is how many upcoming online bookings (proposed, pending
	// or booked, starting in the future) one patient may hold at once.
	MaxActive int
	// Schedules are the bookable schedules, in file order: the first
	// that matches a Slot decides.
	Schedules []BookableSchedule

	hash string
}

// BookableSchedule is one entry of booking.schedules: which Slots it
// covers and the rules that apply to them. Empty Schedules and Actors
// mean any Schedule; empty ServiceTypes any service.
type BookableSchedule struct {
	Name string
	// Schedules are Schedule references ("Schedule/dr-a").
	Schedules []string
	// Actors match a Schedule by Schedule.actor ("Practitioner/x",
	// "PractitionerRole/x", "Location/x", "HealthcareService/x").
	Actors []string
	// ServiceTypes are tokens ("system|code", "code", "system|") matched
	// against Slot.serviceType, or Schedule.serviceType when the Slot has
	// none.
	ServiceTypes []string
	Mode         BookingMode
	// Horizon: a Slot may be booked at most this long before its start.
	// MinNotice: at least this long before its start.
	Horizon, MinNotice time.Duration
	// CancelCutoff, RescheduleCutoff: no online cancellation (moving)
	// within this long of the start (0: until the start).
	CancelCutoff, RescheduleCutoff time.Duration
	// Line is where the entry starts in the policy file.
	Line int `json:"-"`
}

// Defaults of the section (each entry inherits the section's values).
const (
	DefaultBookingHorizon   = 60 * 24 * time.Hour
	DefaultBookingMinNotice = 2 * time.Hour
	DefaultBookingCutoff    = 24 * time.Hour
	DefaultMaxActive        = 2
	maxBookingHorizon       = 2 * 365 * 24 * time.Hour
	maxMaxActive            = 100
)

var (
	bookingKeys   = []string{"enabled", "maxActive", "mode", "horizon", "minNotice", "cancelCutoff", "rescheduleCutoff", "schedules"}
	scheduleKeys  = []string{"name", "schedule", "actor", "serviceType", "mode", "horizon", "minNotice", "cancelCutoff", "rescheduleCutoff"}
	bookingModes  = []string{string(Automatic), string(Approval)}
	scheduleRef   = regexp.MustCompile(`^Schedule/[A-Za-z0-9\-.]{1,64}$`)
	actorRef      = regexp.MustCompile(`^(Practitioner|PractitionerRole|Location|HealthcareService|Device|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$`)
	zeroDurations = map[string]bool{"0": true, "0s": true, "0h": true, "0m": true, "0d": true}
)

// Booking returns the online booking rules (nil: no section).
func (p *Policy) Booking() *Booking {
	if p == nil {
		return nil
	}
	return p.booking
}

// On reports whether the section exists and enables online booking.
func (b *Booking) On() bool { return b != nil && b.Enabled }

// Hash digests the effective booking rules ("" for none).
func (b *Booking) Hash() string {
	if b == nil {
		return ""
	}
	return b.hash
}

// Match returns the first entry covering a Slot of schedule ("Schedule/x")
// whose Schedule has the actors given, with the service types of the
// Slot (or, when it has none, of the Schedule) as "system|code" tokens.
// Nil when no entry covers it or booking is off.
func (b *Booking) Match(schedule string, actors, serviceTypes []string) *BookableSchedule {
	if !b.On() {
		return nil
	}
	for i := range b.Schedules {
		e := &b.Schedules[i]
		if e.covers(schedule, actors, serviceTypes) {
			return e
		}
	}
	return nil
}

// MayCover reports whether some entry could cover Slots of schedule with
// these actors (service types aside): the Schedules worth searching for
// bookable Slots.
func (b *Booking) MayCover(schedule string, actors []string) bool {
	if !b.On() {
		return false
	}
	for i := range b.Schedules {
		e := &b.Schedules[i]
		if e.scheduleHit(schedule, actors) {
			return true
		}
	}
	return false
}

// Earliest and Latest bound, over every entry, how soon and how far
// ahead of now a Slot may be booked (MinNotice, Horizon).
func (b *Booking) Earliest() time.Duration {
	if !b.On() || len(b.Schedules) == 0 {
		return 0
	}
	d := b.Schedules[0].MinNotice
	for _, e := range b.Schedules[1:] {
		d = min(d, e.MinNotice)
	}
	return d
}

// Latest: see Earliest.
func (b *Booking) Latest() time.Duration {
	var d time.Duration
	if b.On() {
		for _, e := range b.Schedules {
			d = max(d, e.Horizon)
		}
	}
	return d
}

// scheduleHit: the entry's schedule and actor lists (when given) name
// the Schedule.
func (e *BookableSchedule) scheduleHit(schedule string, actors []string) bool {
	if len(e.Schedules) == 0 && len(e.Actors) == 0 {
		return true
	}
	hit := contains(e.Schedules, schedule)
	for _, a := range actors {
		hit = hit || contains(e.Actors, a)
	}
	return hit
}

func (e *BookableSchedule) covers(schedule string, actors, serviceTypes []string) bool {
	if !e.scheduleHit(schedule, actors) {
		return false
	}
	if len(e.ServiceTypes) == 0 {
		return true
	}
	for _, want := range e.ServiceTypes {
		for _, have := range serviceTypes {
			if tokenMatches(want, have) {
				return true
			}
		}
	}
	return false
}

// tokenMatches: want "system|code", "code" (any system) or "system|"
// (any code) against have "system|code" (search.html#token).
func tokenMatches(want, have string) bool {
	ws, wc, wbar := strings.Cut(want, "|")
	hs, hc, _ := strings.Cut(have, "|")
	switch {
	case !wbar:
		return want == hc
	case wc == "":
		return ws == hs
	}
	return ws == hs && wc == hc
}

// booking reads the "booking:" section.
func (l *loader) booking(n *yaml.Node) *Booking {
	l.label = "booking"
	defer func() { l.label = "" }()
	if isNull(n) || n.Kind != yaml.MappingNode {
		l.errorf(n, "booking must be a mapping with the keys %s", strings.Join(bookingKeys, ", "))
		return nil
	}
	b := &Booking{Enabled: true, MaxActive: DefaultMaxActive}
	def := BookableSchedule{Mode: Automatic, Horizon: DefaultBookingHorizon, MinNotice: DefaultBookingMinNotice,
		CancelCutoff: DefaultBookingCutoff, RescheduleCutoff: DefaultBookingCutoff}
	top := l.mapping(n, bookingKeys, "booking")
	if v, ok := top["enabled"]; ok {
		b.Enabled = l.boolean(v, "enabled")
	}
	if v, ok := top["maxActive"]; ok {
		if s, ok := l.scalar(v, "maxActive"); ok {
			k, err := strconv.Atoi(s)
			if err != nil || k < 1 || k > maxMaxActive {
				l.errorf(v, "maxActive %q must be a whole number from 1 to %d (upcoming online bookings a patient may hold at once)", s, maxMaxActive)
			} else {
				b.MaxActive = k
			}
		}
	}
	l.scheduleRules(top, &def)
	v, ok := top["schedules"]
	switch {
	case !ok || isNull(v):
		if b.Enabled {
			l.errorf(n, "schedules is required: list the Schedules patients may book online (e.g. \"- schedule: [Schedule/dr-a]\")")
		}
	case v.Kind != yaml.SequenceNode:
		l.errorf(v, "booking.schedules must be a list (each item starting with \"- name: ...\")")
	default:
		names := map[string]int{}
		for i, it := range v.Content {
			if e, ok := l.bookable(deref(it), i+1, def, names); ok {
				b.Schedules = append(b.Schedules, e)
			}
		}
		if len(v.Content) == 0 && b.Enabled {
			l.errorf(v, "booking.schedules is empty: list the Schedules patients may book online")
		}
	}
	l.label = "booking"
	raw, _ := json.Marshal(b) // exported fields only: stable
	sum := sha256.Sum256(raw)
	b.hash = "sha256:" + hex.EncodeToString(sum[:])
	return b
}

// bookable reads one entry of booking.schedules.
func (l *loader) bookable(n *yaml.Node, index int, def BookableSchedule, names map[string]int) (BookableSchedule, bool) {
	l.label = fmt.Sprintf("booking.schedules #%d", index)
	e := def
	e.Line = n.Line
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "each booking.schedules entry must be a mapping (name, schedule, actor, serviceType, mode, ...)")
		return e, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := deref(n.Content[i]), deref(n.Content[i+1]); k.Value == "name" && v.Kind == yaml.ScalarNode && v.Value != "" {
			l.label = fmt.Sprintf("booking.schedules %q", v.Value)
		}
	}
	before := len(l.problems)
	m := l.mapping(n, scheduleKeys, "booking.schedules entry")
	if v, ok := m["name"]; ok {
		if s, ok := l.scalar(v, "name"); ok {
			switch {
			case !namePattern.MatchString(s):
				l.errorf(v, "name %q: use letters, digits, '.', '_' and '-'", s)
			case names[s] != 0:
				l.errorf(v, "duplicate booking.schedules name %q (first at line %d)", s, names[s])
			default:
				names[s] = v.Line
				e.Name = s
			}
		}
	}
	if e.Name == "" {
		e.Name = fmt.Sprintf("schedules-%d", index)
	}
	refs := func(key string, re *regexp.Regexp, example string) []string {
		v, ok := m[key]
		if !ok {
			return nil
		}
		items, _ := l.list(v, key)
		var out []string
		for _, it := range items {
			if !re.MatchString(it.val) {
				l.errorf(it.node, "%s %q must be a reference such as %s", key, it.val, example)
				continue
			}
			if !contains(out, it.val) {
				out = append(out, it.val)
			}
		}
		return out
	}
	e.Schedules = refs("schedule", scheduleRef, "Schedule/dr-a")
	e.Actors = refs("actor", actorRef, "Practitioner/dr-a, PractitionerRole/x, Location/x or HealthcareService/x")
	if v, ok := m["serviceType"]; ok {
		items, _ := l.list(v, "serviceType")
		for _, it := range items {
			if msg := checkToken(it.val); msg != "" {
				l.errorf(it.node, "serviceType: %s", msg)
				continue
			}
			e.ServiceTypes = append(e.ServiceTypes, it.val)
		}
	}
	l.scheduleRules(m, &e)
	if _, s := m["schedule"]; !s {
		if _, a := m["actor"]; !a {
			if _, st := m["serviceType"]; !st {
				l.errorf(n, "the entry covers every Schedule: give schedule, actor or serviceType (a catch-all would open every Schedule to online booking)")
			}
		}
	}
	return e, len(l.problems) == before
}

// scheduleRules reads mode and the durations of m into e (the section's
// defaults or an entry).
func (l *loader) scheduleRules(m map[string]*yaml.Node, e *BookableSchedule) {
	if v, ok := m["mode"]; ok {
		if s, ok := l.scalar(v, "mode"); ok {
			if !contains(bookingModes, s) {
				l.errorf(v, "unknown mode %q (known: %s)", s, strings.Join(bookingModes, ", "))
			} else {
				e.Mode = BookingMode(s)
			}
		}
	}
	for _, d := range []struct {
		key     string
		to      *time.Duration
		zeroOK  bool
		meaning string
	}{
		{"horizon", &e.Horizon, false, "how far ahead a slot may be booked"},
		{"minNotice", &e.MinNotice, true, "how long before the start booking closes"},
		{"cancelCutoff", &e.CancelCutoff, true, "no online cancellation within this long of the start"},
		{"rescheduleCutoff", &e.RescheduleCutoff, true, "no online rescheduling within this long of the start"},
	} {
		v, ok := m[d.key]
		if !ok {
			continue
		}
		s, ok := l.scalar(v, d.key)
		if !ok {
			continue
		}
		if d.zeroOK && zeroDurations[strings.TrimSpace(s)] {
			*d.to = 0
			continue
		}
		x, err := parseDelay(s)
		if err != nil || x > maxBookingHorizon {
			hint := "e.g. 24h, 2d, 8w"
			if d.zeroOK {
				hint += " or 0"
			}
			l.errorf(v, "%s %q is not a duration up to 2 years (%s; %s)", d.key, s, d.meaning, hint)
			continue
		}
		*d.to = x
	}
	at, set := m["minNotice"]
	if !set {
		at, set = m["horizon"]
	}
	if set && e.MinNotice >= e.Horizon {
		l.errorf(at, "minNotice (%v) must be shorter than horizon (%v): nothing could be booked", e.MinNotice, e.Horizon)
	}
}
