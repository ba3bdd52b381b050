package policy

import (
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/store"
)

// Input is one version of a resource to evaluate.
type Input struct {
	// Type is the resource type (Resource["resourceType"] when empty).
	Type string
	// Resource is the resource JSON decoded with json.Decoder.UseNumber.
	Resource map[string]any
	// LastUpdated is the version's meta.lastUpdated as assigned by the server
	// (Resource's meta.lastUpdated, then the clock, when zero).
	LastUpdated time.Time
	// Previous is the release of the previous version, nil for a first version.
	Previous *store.Release
}

// decision is the outcome of the rules for one audience.
type decision struct {
	r  *rule // nil: no rule matched
	at time.Time
	// lastUpdated: the delay counted from lastUpdated (by choice or fallback).
	lastUpdated bool
}

func (d decision) name() string {
	if d.r == nil {
		return ""
	}
	return d.r.name
}

func (d decision) action() Action {
	if d.r == nil {
		return Immediate
	}
	return d.r.action
}

// Evaluate decides from which instant the version in is visible to each
// audience. For each audience the first rule (file order) that lists the
// audience and whose match holds decides; without one the version is
// visible immediately.
//
//   - Release.Patient / Release.Proxy: zero (immediate), anchor + delay
//     (delay) or store.Never (manual, exclude).
//   - Release.Rule: the deciding rule's name, "patient:<a> proxy:<b>" when
//     the audiences were decided by different rules ("" for none).
//   - Release.State: the action; with different actions per audience the
//     most restrictive (exclude > manual > delay > immediate).
//
// A new version does not restart what it should not (Input.Previous):
//   - a clinician $hold (State "held") persists until $release;
//   - when the previous version was already visible to an audience (or a
//     clinician released it) and the new version is a correction (status
//     final, amended, corrected or appended, DocumentReference current, or
//     completed, and no docStatus preliminary) decided by the same rule, the
//     previous instant is kept, and with it a clinician's "released" state;
//   - a delay counted from lastUpdated (explicitly or as a fallback) by the
//     same rule keeps the previous, earlier instant instead of restarting.
//
// Each version stores its own instants: the caller stores the result with
// the new version and leaves older versions alone.
func (p *Policy) Evaluate(in Input) store.Release {
	now := p.now()
	f := &facts{typ: in.Type, res: in.Resource}
	if f.typ == "" {
		f.typ, _ = in.Resource["resourceType"].(string)
	}
	var d [2]decision
	if p != nil {
		p.decide(f, &d)
		for i := range d {
			if i == 1 && d[1].r == d[0].r {
				d[1].at, d[1].lastUpdated = d[0].at, d[0].lastUpdated
				continue
			}
			d[i].at, d[i].lastUpdated = p.visibleFrom(d[i].r, f, in.LastUpdated, now)
		}
	}
	rel := store.Release{
		Patient: d[0].at,
		Proxy:   d[1].at,
		Rule:    ruleLabel(d[0].name(), d[1].name()),
		State:   string(stricter(d[0].action(), d[1].action())),
	}
	if in.Previous != nil {
		rel = carryOver(rel, d, *in.Previous, f, now)
	}
	return rel
}

// decide finds the first matching rule per audience, matching each rule at
// most once.
func (p *Policy) decide(f *facts, d *[2]decision) {
	var decided [2]bool
	for _, r := range p.rules {
		if !(r.audience[0] && !decided[0]) && !(r.audience[1] && !decided[1]) {
			continue
		}
		if !r.matches(f) {
			continue
		}
		for i := range decided {
			if r.audience[i] && !decided[i] {
				decided[i] = true
				d[i].r = r
			}
		}
		if decided[0] && decided[1] {
			return
		}
	}
}

func (p *Policy) visibleFrom(r *rule, f *facts, lastUpdated, now time.Time) (time.Time, bool) {
	if r == nil {
		return time.Time{}, false
	}
	switch r.action {
	case Delay:
		anchor, ok := p.anchor(r.from, f)
		usedLU := !ok
		if !ok {
			anchor = lastUpdatedOf(f, lastUpdated, now)
		}
		t := ceilMilli(anchor.Add(r.delay).UTC())
		if t.After(store.Never) {
			t = store.Never
		}
		return t, usedLU
	case Manual, Exclude:
		return store.Never, false
	}
	return time.Time{}, false
}

// anchor reads the element a delay counts from; ok false when absent (or
// not a date), in which case the caller uses lastUpdated.
func (p *Policy) anchor(from Anchor, f *facts) (time.Time, bool) {
	var paths [][]string
	switch from {
	case FromIssued:
		paths = [][]string{{"issued"}}
	case FromEffective:
		// effective[x] (Observation, DiagnosticReport), then the equivalent
		// occurrence[x] / performed[x] of other event resources.
		paths = [][]string{{"effectiveDateTime"}, {"effectiveInstant"}, {"effectivePeriod", "start"},
			{"effectivePeriod", "end"}, {"occurrenceDateTime"}, {"occurrencePeriod", "start"},
			{"performedDateTime"}, {"performedPeriod", "start"}}
	case FromDate:
		// DocumentReference.date, Composition.date, Communication.sent,
		// ServiceRequest/MedicationRequest.authoredOn.
		paths = [][]string{{"date"}, {"sent"}, {"authoredOn"}}
	default:
		return time.Time{}, false
	}
	for _, path := range paths {
		var v any = f.res
		for _, k := range path {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[k]
		}
		if s, ok := v.(string); ok {
			if t, ok := parseFHIRTime(s, p.loc); ok {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// lastUpdatedOf is the version's lastUpdated: the server's value, else
// meta.lastUpdated, else now.
func lastUpdatedOf(f *facts, lastUpdated, now time.Time) time.Time {
	if !lastUpdated.IsZero() {
		return lastUpdated
	}
	if meta, ok := f.res["meta"].(map[string]any); ok {
		if s, ok := meta["lastUpdated"].(string); ok {
			if t, ok := parseFHIRTime(s, time.UTC); ok {
				return t
			}
		}
	}
	return now
}

// parseFHIRTime reads a date, dateTime or instant (datatypes.html#dateTime).
// A partial date ("2024", "2024-03", "2024-03-05") stands for a period and
// yields its END (the start of the next year, month or day in loc), so that
// a delay is never shorter than configured. A dateTime without a zone (not
// valid FHIR, but seen) is read in loc.
func parseFHIRTime(s string, loc *time.Location) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	for _, c := range []struct {
		layout     string
		y, m, days int
	}{
		{"2006-01-02", 0, 0, 1},
		{"2006-01", 0, 1, 0},
		{"2006", 1, 0, 0},
		{"2006-01-02T15:04:05.999999999", 0, 0, 0},
	} {
		if t, err := time.ParseInLocation(c.layout, s, loc); err == nil {
			return t.AddDate(c.y, c.m, c.days), true
		}
	}
	return time.Time{}, false
}

// ceilMilli rounds up to the millisecond (the precision of BSON dates), so
// storing the instant never makes it earlier.
func ceilMilli(t time.Time) time.Time {
	r := t.Truncate(time.Millisecond)
	if r.Before(t) {
		r = r.Add(time.Millisecond)
	}
	return r
}

var restrictiveness = map[Action]int{Immediate: 0, Delay: 1, Manual: 2, Exclude: 3}

func stricter(a, b Action) Action {
	if restrictiveness[b] > restrictiveness[a] {
		return b
	}
	return a
}

// ruleLabel is Release.Rule for the rules of the two audiences.
func ruleLabel(patient, proxy string) string {
	if patient == proxy {
		return patient
	}
	return "patient:" + patient + " proxy:" + proxy
}

// RuleFor returns the name of the rule that decided rel for audience a
// (the inverse of the "patient:<a> proxy:<b>" form of Release.Rule).
func RuleFor(rel store.Release, a Audience) string {
	p, x := splitRule(rel.Rule)
	if a == Proxy {
		return x
	}
	return p
}

func splitRule(s string) (patient, proxy string) {
	if rest, ok := strings.CutPrefix(s, "patient:"); ok {
		if p, x, ok := strings.Cut(rest, " proxy:"); ok {
			return p, x
		}
	}
	return s, s
}

// correctionStatuses are the statuses of a version that corrects or
// completes released data (observation-status, diagnostic-report-status,
// composition-status, document-reference-status, event-status).
var correctionStatuses = setOf("final", "amended", "corrected", "appended", "current", "completed")

// notFinalStatuses veto a correction (e.g. DocumentReference status current
// with docStatus preliminary).
var notFinalStatuses = setOf("preliminary", "partial", "registered", "entered-in-error", "cancelled", "unknown")

func isCorrection(statuses []string) bool {
	return anyIn(statuses, correctionStatuses) && !anyIn(statuses, notFinalStatuses)
}

// carryOver applies the previous version's release to a new evaluation.
func carryOver(rel store.Release, d [2]decision, prev store.Release, f *facts, now time.Time) store.Release {
	if prev.State == StateHeld {
		return store.Release{Patient: store.Never, Proxy: store.Never, Rule: rel.Rule, State: StateHeld,
			By: prev.By, At: prev.At, Note: prev.Note}
	}
	pp, px := splitRule(prev.Rule)
	prevRule := [2]string{pp, px}
	prevAt := [2]time.Time{prev.Patient, prev.Proxy}
	at := [2]*time.Time{&rel.Patient, &rel.Proxy}
	correction := isCorrection(f.status())
	kept := 0
	for i := range d {
		if d[i].name() != prevRule[i] || !prevAt[i].Before(store.Never) {
			continue
		}
		released := prev.State == StateReleased || !prevAt[i].After(now)
		switch {
		case correction && released:
			*at[i] = prevAt[i]
			kept++
		case prev.State != StateReleased && d[i].action() == Delay && d[i].lastUpdated && !prevAt[i].IsZero() && prevAt[i].Before(*at[i]):
			*at[i] = prevAt[i]
		}
	}
	if kept == len(d) && prev.State == StateReleased {
		rel.State, rel.By, rel.At, rel.Note = StateReleased, prev.By, prev.At, prev.Note
	}
	return rel
}

// Release is a clinician's $release: the version becomes visible now to
// both audiences (an audience that already sees it keeps its earlier
// instant), State "released", By/At/Note recorded. The rule is kept.
func (p *Policy) Release(prev store.Release, by, note string, now time.Time) store.Release {
	now = now.UTC()
	r := prev
	for _, t := range []*time.Time{&r.Patient, &r.Proxy} {
		if t.IsZero() || t.After(now) {
			*t = now
		}
	}
	r.State, r.By, r.At, r.Note = StateReleased, by, now, note
	return r
}

// Hold is a clinician's $hold: invisible to both audiences (store.Never)
// until $release, State "held"; it persists across new versions. At is
// taken from the policy's clock.
func (p *Policy) Hold(prev store.Release, by, reason string) store.Release {
	r := prev
	r.Patient, r.Proxy = store.Never, store.Never
	r.State, r.By, r.At, r.Note = StateHeld, by, p.now().UTC(), reason
	return r
}

// Visible reports whether a version with release rel is visible to audience
// a at now (the same test the store applies for search.ReleaseCond).
func Visible(rel store.Release, a Audience, now time.Time) bool {
	t := rel.Patient
	if a == Proxy {
		t = rel.Proxy
	}
	return t.Before(store.Never) && !t.After(now)
}

// Explain describes rel for $release-status:
//
//	{"rule": "...", "state": "delay",
//	 "patient": {"rule": "...", "visibleFrom": "2024-03-12T10:00:00Z", "visibleNow": false},
//	 "proxy":   {"rule": "...", "visibleFrom": "never", "visibleNow": false},
//	 "releasedBy"/"releasedAt"/"note"  (state released)
//	 "heldBy"/"heldAt"/"reason"        (state held)}
//
// visibleFrom is "immediate", "never" or an RFC 3339 instant; "rule" is
// omitted when no rule decided.
func Explain(rel store.Release, now time.Time) map[string]any {
	state := rel.State
	if state == "" {
		state = string(Immediate)
	}
	out := map[string]any{"rule": rel.Rule, "state": state}
	for _, a := range Audiences {
		t := rel.Patient
		if a == Proxy {
			t = rel.Proxy
		}
		m := map[string]any{"visibleFrom": formatInstant(t), "visibleNow": Visible(rel, a, now)}
		if name := RuleFor(rel, a); name != "" {
			m["rule"] = name
		}
		out[string(a)] = m
	}
	switch rel.State {
	case StateReleased:
		out["releasedBy"], out["releasedAt"] = rel.By, formatAt(rel.At)
		if rel.Note != "" {
			out["note"] = rel.Note
		}
	case StateHeld:
		out["heldBy"], out["heldAt"] = rel.By, formatAt(rel.At)
		if rel.Note != "" {
			out["reason"] = rel.Note
		}
	}
	return out
}

func formatInstant(t time.Time) string {
	switch {
	case t.IsZero():
		return "immediate"
	case !t.Before(store.Never):
		return "never"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func formatAt(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
