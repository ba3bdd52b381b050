package workflow

import (
	"context"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// maxRoles bounds the PractitionerRoles of one practitioner the service
// reads to decide pool membership.
const maxRoles = 100

// actor is who writes a Task.
type actor struct {
	// org: a backend service (system/ scopes) or the server's own
	// authority: it acts for the organisation.
	org bool
	// user is the caller's fhirUser; ids are the references that are the
	// caller (the fhirUser, the Practitioner behind a PractitionerRole,
	// the PractitionerRoles of a Practitioner); roles the caller's
	// PractitionerRoles (their organization and healthcareService decide
	// membership of an Organization or HealthcareService pool).
	user  string
	ids   []string
	roles []map[string]any
}

// staff reports whether the caller is a practitioner.
func (a *actor) staff() bool {
	return strings.HasPrefix(a.user, "Practitioner/") || strings.HasPrefix(a.user, "PractitionerRole/")
}

// actorOf resolves the caller of a write (p nil: the server's authority
// or authorization disabled).
func (s *Service) actorOf(ctx context.Context, p *smart.Principal) (*actor, error) {
	if p == nil {
		return &actor{org: true}, nil
	}
	for _, sc := range p.Scopes {
		if sc.Context == smart.ContextSystem {
			return &actor{org: true}, nil
		}
	}
	a := &actor{user: p.FHIRUser}
	if a.user == "" {
		return a, nil
	}
	a.ids = []string{a.user}
	typ, id, _ := strings.Cut(a.user, "/")
	switch typ {
	case "PractitionerRole":
		rec, found, err := s.lookup(ctx, typ, id)
		if err != nil || !found {
			return a, err
		}
		role, err := fhir.Decode(rec.Raw)
		if err != nil {
			return nil, err
		}
		a.roles = append(a.roles, role)
		if pr := s.norm(ref(role["practitioner"])); pr != "" {
			a.ids = append(a.ids, pr)
		}
	case "Practitioner":
		page, err := s.cfg.Store.Search(ctx, store.Query{Types: []string{"PractitionerRole"}, Count: maxRoles,
			Filter: search.RefCond{Param: "practitioner", Targets: []string{a.user}}})
		if err != nil {
			return nil, err
		}
		for _, rec := range page.Records {
			role, err := fhir.Decode(rec.Raw)
			if err != nil {
				return nil, err
			}
			if role["active"] == false {
				continue
			}
			a.roles = append(a.roles, role)
			a.ids = append(a.ids, "PractitionerRole/"+rec.ID)
		}
	}
	return a, nil
}

// may reports whether a may act as need (one of the parties it names)
// on the Task whose current content is task.
func (s *Service) may(ctx context.Context, a *actor, need Party, task map[string]any) (bool, error) {
	if a.org {
		return true, nil
	}
	if need&Requester != 0 {
		if ok, err := s.is(ctx, a, ref(task["requester"])); ok || err != nil {
			return ok, err
		}
	}
	if need&Owner != 0 {
		owner := ref(task["owner"])
		if owner == "" {
			return a.staff(), nil // unassigned: any practitioner may claim it
		}
		return s.is(ctx, a, owner)
	}
	return false, nil
}

// is reports whether a is party (a reference): the caller itself, or a
// member of the pool it names — a CareTeam (active or proposed; a
// participant.member is the caller), an Organization or a
// HealthcareService (one of the caller's active PractitionerRoles is of
// it).
func (s *Service) is(ctx context.Context, a *actor, party string) (bool, error) {
	party = s.norm(party)
	if party == "" || len(a.ids) == 0 {
		return false, nil
	}
	if slices.Contains(a.ids, party) {
		return true, nil
	}
	typ, id, ok := s.local(party)
	if !ok {
		return false, nil
	}
	switch typ {
	case "CareTeam":
		rec, found, err := s.lookup(ctx, typ, id)
		if err != nil || !found {
			return false, err
		}
		team, err := fhir.Decode(rec.Raw)
		if err != nil {
			return false, err
		}
		if st, _ := team["status"].(string); st == "inactive" || st == "entered-in-error" || st == "suspended" {
			return false, nil
		}
		for _, p := range maps(team["participant"]) {
			if slices.Contains(a.ids, s.norm(ref(p["member"]))) {
				return true, nil
			}
		}
	case "Organization":
		for _, r := range a.roles {
			if s.norm(ref(r["organization"])) == party {
				return true, nil
			}
		}
	case "HealthcareService":
		for _, r := range a.roles {
			for _, hs := range refs(r["healthcareService"]) {
				if s.norm(hs) == party {
					return true, nil
				}
			}
		}
	}
	return false, nil
}
