package booking

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/store"
)

// maxFindPages bounds the Slot pages one $find reads to fill its answer
// (Slots of the Schedules that a rule's service types then exclude).
const maxFindPages = 5

// opFind is GET|POST Slot/$find (the Argonaut Scheduling IG's $find,
// fhirgate's parameters): the free Slots the caller may book, soonest
// first, at most _count (default and cap FindMax), with their Schedules
// (search mode include, so an app can show who and where; Schedules are
// otherwise not readable by patient-facing apps, which see only those
// open to online booking here).
//
//	start, end    the Slot starts at or after start, before end (date or dateTime)
//	service-type  token, as in Slot?service-type
//	schedule      Schedule references (repeatable or comma separated)
//	actor         the Schedule's actor (Practitioner/x, Location/x...)
//
// A patient-facing caller sees only Slots its booking rules allow now
// (bookable Schedule and service, between minNotice and horizon); staff
// see every free Slot of an active Schedule that has not started.
func (s *Service) opFind(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	prm, err := parseParams(call.Request)
	if err != nil {
		return nil, err
	}
	rules, err := s.rulesFor(call)
	if err != nil {
		return nil, err
	}
	limit := s.cfg.FindMax
	if c := prm.get("_count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return nil, fhir.Invalid("_count", "_count must be a positive whole number")
		}
		limit = min(n, limit)
	}
	now := s.cfg.Now()
	lo, hi := now, now.Add(2*366*24*time.Hour)
	if call.PatientFacing {
		lo, hi = now.Add(rules.Earliest()), now.Add(rules.Latest())
	}
	for _, b := range []struct {
		name string
		to   *time.Time
		late bool
	}{{"start", &lo, false}, {"end", &hi, true}} {
		v := prm.get(b.name)
		if v == "" {
			continue
		}
		t, err := parseWhen(v, b.late)
		if err != nil {
			return nil, fhir.Invalid("Parameters.parameter["+b.name+"]", "%s must be a date or dateTime such as 2026-06-02 or 2026-06-02T09:00:00Z, not %q", b.name, v)
		}
		if !b.late && t.After(*b.to) || b.late && t.Before(*b.to) {
			*b.to = t
		}
	}
	var want []string // the schedule parameter
	for _, v := range prm["schedule"] {
		for _, r := range strings.Split(v, ",") {
			ref, err := s.ref(params{"schedule": {r}}, "schedule", "Schedule")
			if err != nil {
				return nil, err
			}
			want = append(want, ref)
		}
	}
	var actors []string
	for _, v := range prm["actor"] {
		actors = append(actors, strings.Split(v, ",")...)
	}
	schedules, err := s.findSchedules(ctx, call.PatientFacing, want, actors)
	if err != nil {
		return nil, err
	}
	var slots, included []store.Record
	if len(schedules) > 0 && lo.Before(hi) {
		keys := make([]string, 0, len(schedules))
		for k := range schedules {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		q := url.Values{
			"schedule": {strings.Join(keys, ",")}, "status": {slotFree},
			"start": {"ge" + lo.UTC().Format(time.RFC3339), "lt" + hi.UTC().Format(time.RFC3339)},
			"_sort": {"start"}, "_count": {strconv.Itoa(min(2*limit, 1000))}, "_total": {"none"},
		}
		if st := prm["service-type"]; len(st) > 0 {
			q["service-type"] = st
		}
		seen := map[string]bool{}
	pages:
		for range maxFindPages {
			res, err := s.eng.Search(ctx, engine.Request{Types: []string{"Slot"}, Params: q})
			if err != nil {
				return nil, engine.AsFHIR(err)
			}
			for _, rec := range res.Matches {
				sl, err := parseSlot(rec)
				if err != nil {
					continue // a Slot without valid times cannot be booked
				}
				sc := schedules[sl.Schedule.Reference]
				if call.PatientFacing {
					r, err := s.rule(rules, sl, sc)
					if err != nil || s.bookableNow(sl, r) != nil {
						continue
					}
				} else if !sl.start.After(now) {
					continue
				}
				slots = append(slots, rec)
				if !seen[sc.rec.Key()] {
					seen[sc.rec.Key()] = true
					included = append(included, sc.rec)
				}
				if len(slots) == limit {
					break pages
				}
			}
			if res.Next == "" {
				break
			}
			q.Set("_cursor", res.Next)
		}
	}
	call.Touched(slots...)
	call.Touched(included...)
	self := url.Values{}
	for k, v := range prm {
		if !strings.HasPrefix(k, "_") || k == "_count" {
			self[k] = v
		}
	}
	b, err := call.Bundle(engine.Request{Types: []string{"Slot"}, Params: self, SelfPath: "Slot/$find"},
		&engine.Result{Matches: slots, Included: included, Total: int64(len(slots))})
	if err != nil {
		return nil, err
	}
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: b}, nil
}

// findSchedules reads the active Schedules worth searching: those named
// (want) or with one of actors, and for a patient-facing caller only
// those a booking rule may cover.
func (s *Service) findSchedules(ctx context.Context, patientFacing bool, want, actors []string) (map[string]schedule, error) {
	rules := s.cfg.Rules()
	q := url.Values{"_count": {"1000"}, "_total": {"none"}}
	if len(want) > 0 {
		ids := make([]string, len(want))
		for i, w := range want {
			_, ids[i] = splitRef(w)
		}
		q.Set("_id", strings.Join(ids, ","))
	}
	if len(actors) > 0 {
		q.Set("actor", strings.Join(actors, ","))
	}
	out := map[string]schedule{}
	for {
		res, err := s.eng.Search(ctx, engine.Request{Types: []string{"Schedule"}, Params: q})
		if err != nil {
			return nil, engine.AsFHIR(err)
		}
		for _, rec := range res.Matches {
			sc, err := parseSchedule(rec)
			if err != nil || sc.Active != nil && !*sc.Active {
				continue
			}
			if patientFacing && !rules.MayCover(rec.Key(), sc.actors()) {
				continue
			}
			out[rec.Key()] = sc
		}
		if res.Next == "" {
			return out, nil
		}
		q.Set("_cursor", res.Next)
	}
}

// parseWhen reads a date (its start, or with late its end: the next
// day) or a dateTime.
func parseWhen(v string, late bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02", v)
	if err != nil {
		return t, err
	}
	if late {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}
