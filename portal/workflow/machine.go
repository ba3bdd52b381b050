package workflow

import (
	"slices"
	"strings"
)

// Party is who may make a transition of a Task (task.html#statemachine;
// workflow-management.html: the requester asks, the owner performs).
// Backend services (system/ scopes) and the server's own authority act
// for the organisation and may make every valid transition.
type Party uint8

const (
	// Requester: Task.requester (or, behind it, a practitioner in that
	// PractitionerRole or Organization).
	Requester Party = 1 << iota
	// Owner: Task.owner, or a member of the referral pool it names
	// (CareTeam.participant.member; a PractitionerRole of the Organization
	// or HealthcareService). A Task without an owner is unassigned: any
	// practitioner may make the owner's transitions (and so claim it).
	Owner
)

func (p Party) String() string {
	var out []string
	if p&Requester != 0 {
		out = append(out, "requester")
	}
	if p&Owner != 0 {
		out = append(out, "owner")
	}
	if len(out) == 0 {
		return "nobody"
	}
	return strings.Join(out, " or ")
}

// Final Task states: nothing follows them but entered-in-error.
var Final = []string{"rejected", "cancelled", "failed", "completed", "entered-in-error"}

// Open lists the states a worklist of work still to do matches.
var Open = []string{"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"}

// Initial lists the states a Task may be created in.
var Initial = []string{"draft", "requested"}

// Transitions is the R4 Task state machine (task.html#statemachine) as
// fhirgate enforces it: Transitions[from][to] is who may make the change.
//
//   - draft → requested (ready without negotiation)          requester
//   - requested → received | accepted | rejected               owner
//   - received → accepted | rejected                           owner
//   - accepted | ready → in-progress                           owner
//   - in-progress → on-hold ("more information needed"),
//     completed, failed                                        owner
//   - on-hold → in-progress: the owner resumes, or the
//     requester does after answering the question              owner or requester
//   - on-hold → failed (the information never came)            owner
//   - any non-final state → cancelled                          requester
//   - any state but entered-in-error → entered-in-error        requester
//
// Anything else (a final state reopened, skipping acceptance...) is a 409.
var Transitions = func() map[string]map[string]Party {
	t := map[string]map[string]Party{
		"draft":       {"requested": Requester, "ready": Requester},
		"requested":   {"received": Owner, "accepted": Owner, "rejected": Owner},
		"received":    {"accepted": Owner, "rejected": Owner},
		"accepted":    {"in-progress": Owner},
		"ready":       {"in-progress": Owner},
		"in-progress": {"on-hold": Owner, "completed": Owner, "failed": Owner},
		"on-hold":     {"in-progress": Owner | Requester, "failed": Owner},
	}
	for _, s := range Open {
		t[s]["cancelled"] = Requester
	}
	for _, s := range append(slices.Clone(Open), "rejected", "cancelled", "failed", "completed") {
		if t[s] == nil {
			t[s] = map[string]Party{}
		}
		t[s]["entered-in-error"] = Requester
	}
	return t
}()

// Allowed reports who may move a Task from one status to another (0: the
// transition is not valid at all).
func Allowed(from, to string) Party {
	return Transitions[from][to]
}
