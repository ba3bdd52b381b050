package smart

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// memReader is a tiny in-memory Reader. Search understands Types and the
// RefCond on Consent "actor" that Grants uses, and pages by Count.
type memReader struct {
	recs     map[string]store.Record
	order    []string
	searches []store.Query
	fail     error
}

func newMem() *memReader { return &memReader{recs: map[string]store.Record{}} }

func (m *memReader) put(typ, id string, res map[string]any) {
	res["resourceType"], res["id"] = typ, id
	b, err := json.Marshal(res)
	if err != nil {
		panic(err)
	}
	k := typ + "/" + id
	if _, ok := m.recs[k]; !ok {
		m.order = append(m.order, k)
	}
	m.recs[k] = store.Record{Type: typ, ID: id, VersionID: 1, Raw: b}
}

func (m *memReader) del(typ, id string) {
	k := typ + "/" + id
	m.recs[k] = store.Record{Type: typ, ID: id, VersionID: 2, Deleted: true}
}

func (m *memReader) Read(ctx context.Context, typ, id string) (store.Record, error) {
	if m.fail != nil {
		return store.Record{}, m.fail
	}
	r, ok := m.recs[typ+"/"+id]
	if !ok {
		return store.Record{}, store.ErrNotFound
	}
	return r, nil
}

func (m *memReader) Search(ctx context.Context, q store.Query) (store.Page, error) {
	m.searches = append(m.searches, q)
	var all []store.Record
	for _, k := range m.order {
		r := m.recs[k]
		if r.Deleted || len(q.Types) > 0 && !slices.Contains(q.Types, r.Type) {
			continue
		}
		if rc, ok := q.Filter.(search.RefCond); ok && rc.Param == "actor" {
			var c struct {
				Provision struct {
					Actor []struct {
						Reference struct{ Reference string } `json:"reference"`
					} `json:"actor"`
				} `json:"provision"`
			}
			_ = json.Unmarshal(r.Raw, &c)
			if !slices.ContainsFunc(c.Provision.Actor, func(a struct {
				Reference struct{ Reference string } `json:"reference"`
			}) bool {
				return slices.Contains(rc.Targets, a.Reference.Reference)
			}) {
				continue
			}
		} else if q.Filter != nil {
			panic("memReader: unexpected filter")
		}
		all = append(all, r)
	}
	start := 0
	if q.Cursor != "" {
		start, _ = strconv.Atoi(q.Cursor)
	}
	end := min(start+q.Count, len(all))
	p := store.Page{Records: all[start:end], Total: -1}
	if end < len(all) {
		p.Next = strconv.Itoa(end)
	}
	return p, nil
}

var (
	today     = time.Date(2025, 3, 10, 15, 0, 0, 0, time.UTC)
	allLabels = DefaultSensitiveLabels
)

func clock(t time.Time) func() time.Time { return func() time.Time { return t } }

func relatedPerson(patient string, active *bool, codes ...string) map[string]any {
	var cs []any
	for _, c := range codes {
		cs = append(cs, map[string]any{"system": SystemRoleCode, "code": c})
	}
	m := map[string]any{"patient": map[string]any{"reference": "Patient/" + patient},
		"relationship": []any{map[string]any{"coding": cs}}}
	if active != nil {
		m["active"] = *active
	}
	return m
}

func consent(status, patient, actor string, types []string, actions []string, labels []string, period map[string]any) map[string]any {
	pv := map[string]any{
		"type":  "permit",
		"actor": []any{map[string]any{"role": map[string]any{"text": "caregiver"}, "reference": map[string]any{"reference": actor}}},
	}
	if types != nil {
		var cl []any
		for _, t := range types {
			cl = append(cl, map[string]any{"system": SystemResourceTypes, "code": t})
		}
		pv["class"] = cl
	}
	if actions != nil {
		var as []any
		for _, a := range actions {
			as = append(as, map[string]any{"coding": []any{map[string]any{"system": SystemConsentAction, "code": a}}})
		}
		pv["action"] = as
	}
	if labels != nil {
		var ls []any
		for _, l := range labels {
			ls = append(ls, map[string]any{"system": SystemActCode, "code": l})
		}
		pv["securityLabel"] = ls
	}
	if period != nil {
		pv["period"] = period
	}
	return map[string]any{
		"status":    status,
		"scope":     map[string]any{"coding": []any{map[string]any{"system": SystemConsentScope, "code": "patient-privacy"}}},
		"category":  []any{map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "59284-0"}}}},
		"patient":   map[string]any{"reference": "Patient/" + patient},
		"provision": pv,
	}
}

func bptr(b bool) *bool { return &b }

func withhold(labels ...string) search.Expr {
	return search.Not{Arg: search.SecurityCond{Labels: labels}}
}

// fixture: child (born 2016-01-20, 9 years old on `today`), mother RP/mom,
// inactive father RP/dad, a friend RP/friend, caregiver RP/carer with a
// Consent for Appointment + Communication, Person/p linking to RP/mom.
func fixture() *memReader {
	m := newMem()
	m.put("Patient", "child", map[string]any{"birthDate": "2016-01-20"})
	m.put("Patient", "teen", map[string]any{"birthDate": "2010-05-01"})
	m.put("RelatedPerson", "mom", relatedPerson("child", nil, "MTH"))
	m.put("RelatedPerson", "dad", relatedPerson("child", bptr(false), "FTH"))
	m.put("RelatedPerson", "friend", relatedPerson("child", bptr(true), "FRND"))
	m.put("RelatedPerson", "teenmom", relatedPerson("teen", nil, "MTH"))
	m.put("RelatedPerson", "carer", relatedPerson("child", nil, "FRND"))
	m.put("Consent", "c1", consent("active", "child", "RelatedPerson/carer", []string{"Appointment", "Communication"}, nil, nil,
		map[string]any{"start": "2025-01-01", "end": "2025-12-31"}))
	m.put("Person", "p", map[string]any{"active": true, "link": []any{
		map[string]any{"target": map[string]any{"reference": "RelatedPerson/mom"}},
		map[string]any{"target": map[string]any{"reference": "Patient/child"}},
	}})
	return m
}

func TestGrants(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		now      time.Time
		fhirUser string
		edit     func(m *memReader)
		want     []Grant
	}{
		{"mother of a 9-year-old", today, "RelatedPerson/mom", nil,
			[]Grant{{Patient: "child", Via: ViaRelationship, ID: "RelatedPerson/mom", Until: time.Date(2028, 1, 20, 0, 0, 0, 0, time.UTC)}}},
		{"day before the 12th birthday", time.Date(2028, 1, 19, 23, 59, 59, 0, time.UTC), "RelatedPerson/mom", nil,
			[]Grant{{Patient: "child", Via: ViaRelationship, ID: "RelatedPerson/mom", Until: time.Date(2028, 1, 20, 0, 0, 0, 0, time.UTC)}}},
		{"on the 12th birthday access ends", time.Date(2028, 1, 20, 0, 0, 0, 0, time.UTC), "RelatedPerson/mom", nil, nil},
		{"after the 12th birthday", time.Date(2029, 6, 1, 0, 0, 0, 0, time.UTC), "RelatedPerson/mom", nil, nil},
		{"mother of a 14-year-old", today, "RelatedPerson/teenmom", nil, nil},
		{"inactive RelatedPerson", today, "RelatedPerson/dad", nil, nil},
		{"relationship not a parent", today, "RelatedPerson/friend", nil, nil},
		{"unknown RelatedPerson", today, "RelatedPerson/nobody", nil, nil},
		{"deleted RelatedPerson", today, "RelatedPerson/mom", func(m *memReader) { m.del("RelatedPerson", "mom") }, nil},
		{"deleted Patient", today, "RelatedPerson/mom", func(m *memReader) { m.del("Patient", "child") }, nil},
		{"patient without birthDate", today, "RelatedPerson/mom", func(m *memReader) { m.put("Patient", "child", map[string]any{}) }, nil},
		{"partial birthDate taken at its earliest day", time.Date(2028, 1, 5, 0, 0, 0, 0, time.UTC), "RelatedPerson/mom",
			func(m *memReader) { m.put("Patient", "child", map[string]any{"birthDate": "2016"}) }, nil},
		{"RelatedPerson period ended", today, "RelatedPerson/mom", func(m *memReader) {
			rp := relatedPerson("child", nil, "MTH")
			rp["period"] = map[string]any{"end": "2025-03-09"}
			m.put("RelatedPerson", "mom", rp)
		}, nil},
		{"RelatedPerson period caps Until", today, "RelatedPerson/mom", func(m *memReader) {
			rp := relatedPerson("child", nil, "MTH")
			rp["period"] = map[string]any{"start": "2016-01-20", "end": "2026-06"}
			m.put("RelatedPerson", "mom", rp)
		}, []Grant{{Patient: "child", Via: ViaRelationship, ID: "RelatedPerson/mom", Until: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}}},
		{"guardian by configured coding (absolute fhirUser URL)", today, "https://fhir.example.org/r4/RelatedPerson/friend", func(m *memReader) {
			m.put("RelatedPerson", "friend", relatedPerson("child", nil, "GUARD"))
		}, []Grant{{Patient: "child", Via: ViaRelationship, ID: "RelatedPerson/friend", Until: time.Date(2028, 1, 20, 0, 0, 0, 0, time.UTC)}}},

		{"caregiver with consent", today, "RelatedPerson/carer", nil,
			[]Grant{{Patient: "child", Via: ViaConsent, ID: "Consent/c1", Types: []string{"Appointment", "Communication"}, Until: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		{"consent not yet started", time.Date(2024, 12, 31, 23, 0, 0, 0, time.UTC), "RelatedPerson/carer", nil, nil},
		{"consent period ended", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "RelatedPerson/carer", nil, nil},
		{"consent withdrawn (inactive)", today, "RelatedPerson/carer", func(m *memReader) {
			m.put("Consent", "c1", consent("inactive", "child", "RelatedPerson/carer", []string{"Appointment"}, nil, nil, nil))
		}, nil},
		{"consent rejected", today, "RelatedPerson/carer", func(m *memReader) {
			m.put("Consent", "c1", consent("rejected", "child", "RelatedPerson/carer", []string{"Appointment"}, nil, nil, nil))
		}, nil},
		{"consent deleted", today, "RelatedPerson/carer", func(m *memReader) { m.del("Consent", "c1") }, nil},
		{"consent deny provision", today, "RelatedPerson/carer", func(m *memReader) {
			c := consent("active", "child", "RelatedPerson/carer", nil, nil, nil, nil)
			c["provision"].(map[string]any)["type"] = "deny"
			m.put("Consent", "c1", c)
		}, nil},
		{"consent with other scope", today, "RelatedPerson/carer", func(m *memReader) {
			c := consent("active", "child", "RelatedPerson/carer", nil, nil, nil, nil)
			c["scope"] = map[string]any{"coding": []any{map[string]any{"system": SystemConsentScope, "code": "research"}}}
			m.put("Consent", "c1", c)
		}, nil},
		{"consent for another patient", today, "RelatedPerson/carer", func(m *memReader) {
			m.put("Consent", "c1", consent("active", "teen", "RelatedPerson/carer", nil, nil, nil, nil))
		}, nil},
		{"consent with nested provisions is not used", today, "RelatedPerson/carer", func(m *memReader) {
			c := consent("active", "child", "RelatedPerson/carer", nil, nil, nil, nil)
			c["provision"].(map[string]any)["provision"] = []any{map[string]any{"type": "deny"}}
			m.put("Consent", "c1", c)
		}, nil},
		{"consent class without resource-type codings grants no type", today, "RelatedPerson/carer", func(m *memReader) {
			c := consent("active", "child", "RelatedPerson/carer", nil, nil, nil, nil)
			c["provision"].(map[string]any)["class"] = []any{map[string]any{"system": "http://example.org/profiles", "code": "x"}}
			m.put("Consent", "c1", c)
		}, []Grant{{Patient: "child", Via: ViaConsent, ID: "Consent/c1", Types: []string{}}}},
		{"consent actions and sensitive labels", today, "RelatedPerson/carer", func(m *memReader) {
			m.put("Consent", "c1", consent("active", "child", "RelatedPerson/carer", nil, []string{"access"}, []string{"PSY", "HIV"}, nil))
		}, []Grant{{Patient: "child", Via: ViaConsent, ID: "Consent/c1", Actions: []string{"access"}, Labels: []string{SystemActCode + "|PSY", SystemActCode + "|HIV"}}}},
		{"consent allowing every sensitive label", today, "RelatedPerson/carer", func(m *memReader) {
			m.put("Consent", "c1", consent("active", "child", "RelatedPerson/carer", nil, nil, []string{"PSY", "HIV", "ETH", "STD", "SEX", "NOPAT"}, nil))
		}, []Grant{{Patient: "child", Via: ViaConsent, ID: "Consent/c1", Sensitive: true, Labels: allLabels}}},

		{"Person links to the mother", today, "Person/p", nil,
			[]Grant{{Patient: "child", Via: ViaRelationship, ID: "RelatedPerson/mom", Until: time.Date(2028, 1, 20, 0, 0, 0, 0, time.UTC)}}},
		{"inactive Person", today, "Person/p", func(m *memReader) {
			m.put("Person", "p", map[string]any{"active": false, "link": []any{map[string]any{"target": map[string]any{"reference": "RelatedPerson/mom"}}}})
		}, nil},
		{"Practitioner has no grants", today, "Practitioner/1", nil, nil},
		{"malformed fhirUser", today, "not a reference", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fixture()
			if tt.edit != nil {
				tt.edit(m)
			}
			got, err := Grants(ctx, m, ProxyConfig{Now: clock(tt.now)}, tt.fhirUser)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Grants =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestGrantsConsentSearchAndPaging(t *testing.T) {
	m := fixture()
	for i := range 250 {
		m.put("Consent", "x"+strconv.Itoa(i), consent("active", "child", "RelatedPerson/carer", []string{"Appointment"}, nil, nil, nil))
	}
	m.put("Consent", "other", consent("active", "child", "RelatedPerson/mom", []string{"Observation"}, nil, nil, nil))
	got, err := Grants(context.Background(), m, ProxyConfig{Now: clock(today)}, "RelatedPerson/carer")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 251 {
		t.Fatalf("got %d grants, want 251 (all pages)", len(got))
	}
	q := m.searches[0]
	if want := (search.RefCond{Param: "actor", Targets: []string{"RelatedPerson/carer"}}); !reflect.DeepEqual(q.Filter, want) || !reflect.DeepEqual(q.Types, []string{"Consent"}) {
		t.Fatalf("search = %+v", q)
	}
	if len(m.searches) != 3 {
		t.Fatalf("searches = %d, want 3 pages", len(m.searches))
	}
}

func TestGrantsReaderError(t *testing.T) {
	m := fixture()
	m.fail = errors.New("boom")
	if _, err := Grants(context.Background(), m, ProxyConfig{Now: clock(today)}, "RelatedPerson/mom"); err == nil || !errors.Is(err, m.fail) {
		t.Fatalf("err = %v", err)
	}
}

func TestGrantsMaxChildAgeConfigured(t *testing.T) {
	m := fixture()
	got, err := Grants(context.Background(), m, ProxyConfig{Now: clock(today), MaxChildAge: 16}, "RelatedPerson/teenmom")
	if err != nil || len(got) != 1 || got[0].Until != time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC) {
		t.Fatalf("got %+v, %v", got, err)
	}
	got, _ = Grants(context.Background(), m, ProxyConfig{Now: clock(today), Relationships: []string{SystemRoleCode + "|FRND"}}, "RelatedPerson/friend")
	if len(got) != 1 {
		t.Fatalf("configured relationship: %+v", got)
	}
	got, _ = Grants(context.Background(), m, ProxyConfig{Now: clock(today), Relationships: []string{SystemRoleCode + "|FRND"}}, "RelatedPerson/mom")
	if len(got) != 0 {
		t.Fatalf("MTH not configured: %+v", got)
	}
}

// Proxy access end to end: Grants (in-memory Reader, injected clock) then
// DecideProxy (SMART scopes-and-launch-context.html, consent.html).
func TestDecideProxy(t *testing.T) {
	childCpt := cpt("child")
	allHidden := withhold(allLabels...)
	tests := []struct {
		name     string
		now      time.Time
		edit     func(m *memReader)
		p        *Principal
		access   Access
		allow    bool
		where    search.Expr
		hasScope bool
	}{
		{"parent of a 9-year-old reads Observation", today, nil,
			principal("patient/*.rs", "child", "RelatedPerson/mom"), Access{"search", "Observation"}, allow,
			search.And{Args: []search.Expr{childCpt, allHidden}}, false},
		{"parent after the 12th birthday denied", time.Date(2028, 1, 21, 0, 0, 0, 0, time.UTC), nil,
			principal("patient/*.rs", "child", "RelatedPerson/mom"), Access{"read", "Observation"}, deny, nil, false},
		{"parent with user scope sees the child", today, nil,
			principal("user/*.rs", "", "RelatedPerson/mom"), Access{"search", "Observation"}, allow,
			search.And{Args: []search.Expr{childCpt, allHidden}}, false},
		{"parent via Person", today, nil,
			principal("user/*.rs", "", "Person/p"), Access{"search", "Condition"}, allow,
			search.And{Args: []search.Expr{childCpt, allHidden}}, false},
		{"inactive RelatedPerson denied", today, nil,
			principal("patient/*.rs", "child", "RelatedPerson/dad"), Access{"read", "Observation"}, deny, nil, false},
		{"patient claim without grant denied even with user scope", today, nil,
			principal("user/*.rs", "teen", "RelatedPerson/mom"), Access{"read", "Observation"}, deny, nil, false},
		{"scope still limits the parent", today, nil,
			principal("patient/Observation.rs", "child", "RelatedPerson/mom"), Access{"update", "Observation"}, deny, nil, true},
		{"system scopes grant proxies nothing", today, nil,
			principal("system/*.rs", "", "RelatedPerson/mom"), Access{"read", "Observation"}, deny, nil, true},
		{"non-compartment type readable with label filter", today, nil,
			principal("patient/*.rs", "child", "RelatedPerson/mom"), Access{"read", "Practitioner"}, allow, allHidden, false},
		{"non-compartment type not writable", today, nil,
			principal("patient/*.cruds", "child", "RelatedPerson/mom"), Access{"create", "Practitioner"}, deny, nil, false},

		{"caregiver reads Appointment", today, nil,
			principal("patient/*.rs", "child", "RelatedPerson/carer"), Access{"search", "Appointment"}, allow,
			search.And{Args: []search.Expr{childCpt, allHidden}}, false},
		{"caregiver reads Communication", today, nil,
			principal("patient/*.rs", "child", "RelatedPerson/carer"), Access{"read", "Communication"}, allow,
			search.And{Args: []search.Expr{childCpt, allHidden}}, false},
		{"caregiver sends Communication (no action limit)", today, nil,
			principal("patient/Communication.c", "child", "RelatedPerson/carer"), Access{"create", "Communication"}, allow,
			search.And{Args: []search.Expr{childCpt, allHidden}}, false},
		{"caregiver denied Observation", today, nil,
			principal("patient/*.rs", "child", "RelatedPerson/carer"), Access{"read", "Observation"}, deny, nil, false},
		{"caregiver denied Practitioner (consent lists types)", today, nil,
			principal("patient/*.rs", "child", "RelatedPerson/carer"), Access{"read", "Practitioner"}, deny, nil, false},
		{"consent withdrawn: denied", today, func(m *memReader) {
			m.put("Consent", "c1", consent("inactive", "child", "RelatedPerson/carer", []string{"Appointment", "Communication"}, nil, nil, nil))
		}, principal("patient/*.rs", "child", "RelatedPerson/carer"), Access{"read", "Appointment"}, deny, nil, false},
		{"consent ended: denied", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), nil,
			principal("patient/*.rs", "child", "RelatedPerson/carer"), Access{"read", "Appointment"}, deny, nil, false},
		{"consent access-only: read allowed", today, func(m *memReader) {
			m.put("Consent", "c1", consent("active", "child", "RelatedPerson/carer", []string{"Communication"}, []string{"access"}, nil, nil))
		}, principal("patient/Communication.crs", "child", "RelatedPerson/carer"), Access{"search", "Communication"}, allow,
			search.And{Args: []search.Expr{childCpt, allHidden}}, false},
		{"consent access-only: create denied", today, func(m *memReader) {
			m.put("Consent", "c1", consent("active", "child", "RelatedPerson/carer", []string{"Communication"}, []string{"access"}, nil, nil))
		}, principal("patient/Communication.crs", "child", "RelatedPerson/carer"), Access{"create", "Communication"}, deny, nil, false},
		{"consent allows PSY: only PSY unhidden", today, func(m *memReader) {
			m.put("Consent", "c1", consent("active", "child", "RelatedPerson/carer", nil, nil, []string{"PSY"}, nil))
		}, principal("patient/*.rs", "child", "RelatedPerson/carer"), Access{"search", "Observation"}, allow,
			search.And{Args: []search.Expr{childCpt, withhold(allLabels[1:]...)}}, false},
		{"consent allows all sensitive labels", today, func(m *memReader) {
			m.put("Consent", "c1", consent("active", "child", "RelatedPerson/carer", nil, nil, []string{"PSY", "HIV", "ETH", "STD", "SEX", "NOPAT"}, nil))
		}, principal("patient/*.rs", "child", "RelatedPerson/carer"), Access{"search", "Observation"}, allow, childCpt, false},
		{"two grants for one patient: wider wins", today, func(m *memReader) {
			m.put("RelatedPerson", "carer", relatedPerson("child", nil, "GUARD"))
			m.put("Consent", "c1", consent("active", "child", "RelatedPerson/carer", nil, nil, []string{"PSY", "HIV", "ETH", "STD", "SEX", "NOPAT"}, nil))
		}, principal("patient/*.rs", "child", "RelatedPerson/carer"), Access{"search", "Observation"}, allow, childCpt, false},
		{"two children: user scope sees both", today, func(m *memReader) {
			m.put("Patient", "baby", map[string]any{"birthDate": "2024-11-02"})
			m.put("RelatedPerson", "mom2", relatedPerson("baby", nil, "MTH"))
			m.put("Person", "p", map[string]any{"link": []any{
				map[string]any{"target": map[string]any{"reference": "RelatedPerson/mom"}},
				map[string]any{"target": map[string]any{"reference": "RelatedPerson/mom2"}},
			}})
		}, principal("user/Observation.rs", "", "Person/p"), Access{"search", "Observation"}, allow,
			search.Or{Args: []search.Expr{
				search.And{Args: []search.Expr{childCpt, allHidden}},
				search.And{Args: []search.Expr{cpt("baby"), allHidden}},
			}}, false},
		{"two children: patient scope confined to the one in context", today, func(m *memReader) {
			m.put("Patient", "baby", map[string]any{"birthDate": "2024-11-02"})
			m.put("RelatedPerson", "mom2", relatedPerson("baby", nil, "MTH"))
			m.put("Person", "p", map[string]any{"link": []any{
				map[string]any{"target": map[string]any{"reference": "RelatedPerson/mom"}},
				map[string]any{"target": map[string]any{"reference": "RelatedPerson/mom2"}},
			}})
		}, principal("patient/Observation.rs", "baby", "Person/p"), Access{"search", "Observation"}, allow,
			search.And{Args: []search.Expr{cpt("baby"), allHidden}}, false},
	}
	d := testDecider()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fixture()
			if tt.edit != nil {
				tt.edit(m)
			}
			grants, err := Grants(context.Background(), m, ProxyConfig{Now: clock(tt.now)}, tt.p.FHIRUser)
			if err != nil {
				t.Fatal(err)
			}
			d.Now = clock(tt.now)
			got := d.DecideProxy(tt.p, grants, tt.access)
			if got.Allow != tt.allow {
				t.Fatalf("Allow = %v, want %v (reason %q, grants %+v)", got.Allow, tt.allow, got.Reason, grants)
			}
			if !reflect.DeepEqual(got.Where, tt.where) {
				t.Fatalf("Where = %#v\nwant %#v", got.Where, tt.where)
			}
			if (got.Scope != "") != tt.hasScope {
				t.Fatalf("Scope = %q", got.Scope)
			}
			if got.Reason == "" {
				t.Fatal("empty reason")
			}
		})
	}
}

func TestDecideProxyGrantExpiresWithoutRecompute(t *testing.T) {
	d := testDecider()
	p := principal("patient/*.rs", "child", "RelatedPerson/mom")
	g := []Grant{{Patient: "child", Via: ViaRelationship, Until: time.Date(2028, 1, 20, 0, 0, 0, 0, time.UTC)}}
	d.Now = clock(time.Date(2028, 1, 19, 0, 0, 0, 0, time.UTC))
	if !d.DecideProxy(p, g, Access{Read, "Observation"}).Allow {
		t.Fatal("grant should be live")
	}
	d.Now = clock(time.Date(2028, 1, 20, 0, 0, 0, 0, time.UTC))
	if d.DecideProxy(p, g, Access{Read, "Observation"}).Allow {
		t.Fatal("grant past Until must not allow")
	}
}

func TestDecideProxyNonProxyIsDecide(t *testing.T) {
	d := testDecider()
	p := principal("patient/*.rs", "123", "Patient/123")
	if got, want := d.DecideProxy(p, nil, Access{Read, "Observation"}), d.Decide(p, Access{Read, "Observation"}); !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v != %+v", got, want)
	}
	if d.DecideProxy(nil, nil, Access{Read, "Observation"}).Allow {
		t.Fatal("nil principal allowed")
	}
}

func TestDecideProxyCustomSensitiveLabels(t *testing.T) {
	d := testDecider()
	d.SensitiveLabels = []string{"http://example.org/labels|secret"}
	p := principal("patient/*.rs", "child", "RelatedPerson/mom")
	got := d.DecideProxy(p, []Grant{{Patient: "child", Via: ViaRelationship}}, Access{Search, "Observation"})
	want := search.And{Args: []search.Expr{cpt("child"), withhold("http://example.org/labels|secret")}}
	if !got.Allow || !reflect.DeepEqual(got.Where, want) {
		t.Fatalf("got %+v", got)
	}
}

func TestGrantsLocalBirthday(t *testing.T) {
	m := fixture()
	cet := time.FixedZone("CET", 3600)
	at := time.Date(2028, 1, 19, 23, 30, 0, 0, time.UTC) // 00:30 on the 12th birthday in CET
	if g, _ := Grants(context.Background(), m, ProxyConfig{Now: clock(at)}, "RelatedPerson/mom"); len(g) != 1 {
		t.Fatalf("UTC: still 11, want a grant: %+v", g)
	}
	if g, _ := Grants(context.Background(), m, ProxyConfig{Now: clock(at), Location: cet}, "RelatedPerson/mom"); len(g) != 0 {
		t.Fatalf("CET: already 12, want no grant: %+v", g)
	}
}

// datatypes.html#date, #dateTime: precision decides the range.
func TestParseFHIRTime(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	tests := []struct {
		in     string
		lo, hi time.Time
	}{
		{"2016", utc(2016, 1, 1, 0, 0, 0), utc(2017, 1, 1, 0, 0, 0)},
		{"2016-02", utc(2016, 2, 1, 0, 0, 0), utc(2016, 3, 1, 0, 0, 0)},
		{"2016-02-29", utc(2016, 2, 29, 0, 0, 0), utc(2016, 3, 1, 0, 0, 0)},
		{"2016-02-29T10:00:00+02:00", utc(2016, 2, 29, 8, 0, 0), utc(2016, 2, 29, 8, 0, 0).Add(time.Nanosecond)},
	}
	for _, tt := range tests {
		lo, hi, err := parseFHIRTime(tt.in, nil)
		if err != nil || !lo.Equal(tt.lo) || !hi.Equal(tt.hi) {
			t.Fatalf("%s: %v %v %v", tt.in, lo, hi, err)
		}
	}
	for _, bad := range []string{"", "16", "2016-13", "2016-02-30", "2016-02-29T10:00", "yesterday"} {
		if _, _, err := parseFHIRTime(bad, nil); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}
