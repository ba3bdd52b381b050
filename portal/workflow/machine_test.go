package workflow

// The R4 Task state machine (task.html#statemachine) as fhirgate enforces
// it, pair by pair: every transition between the 12 task-status codes is
// either allowed to a named party or refused.

import "testing"

var statuses = []string{"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
	"in-progress", "on-hold", "failed", "completed", "entered-in-error"}

func TestTransitionTable(t *testing.T) {
	R, O := Requester, Owner
	want := map[[2]string]Party{
		{"draft", "requested"}: R, {"draft", "ready"}: R,
		{"requested", "received"}: O, {"requested", "accepted"}: O, {"requested", "rejected"}: O,
		{"received", "accepted"}: O, {"received", "rejected"}: O,
		{"accepted", "in-progress"}: O, {"ready", "in-progress"}: O,
		{"in-progress", "on-hold"}: O, {"in-progress", "completed"}: O, {"in-progress", "failed"}: O,
		{"on-hold", "in-progress"}: O | R, {"on-hold", "failed"}: O,
	}
	// Any non-final state → cancelled (the requester); any state but
	// entered-in-error itself → entered-in-error (the requester).
	for _, s := range []string{"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"} {
		want[[2]string{s, "cancelled"}] = R
	}
	for _, s := range statuses {
		if s != "entered-in-error" {
			want[[2]string{s, "entered-in-error"}] = R
		}
	}
	allowed := 0
	for _, from := range statuses {
		for _, to := range statuses {
			if from == to {
				continue
			}
			if got := Allowed(from, to); got != want[[2]string{from, to}] {
				t.Errorf("%s → %s: %v, want %v", from, to, got, want[[2]string{from, to}])
			}
			if want[[2]string{from, to}] != 0 {
				allowed++
			}
		}
	}
	if allowed != len(want) {
		t.Fatalf("table has %d transitions, checked %d", len(want), allowed)
	}
	for _, final := range []string{"rejected", "cancelled", "failed", "completed"} {
		for _, to := range []string{"requested", "in-progress", "completed", "accepted"} {
			if Allowed(final, to) != 0 {
				t.Errorf("final %s reopens to %s", final, to)
			}
		}
	}
}
