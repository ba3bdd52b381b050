package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	goodA   = "version: 1\nrules:\n  - name: a\n    action: exclude\n    match: {resourceType: [Observation]}\n"
	goodA2  = "# only a comment changed\nversion: 1\nrules:\n  - name: a   # same rule\n    action: exclude\n    match: {resourceType: [Observation]}\n"
	goodB   = "version: 1\nrules:\n  - name: b\n    action: manual\n    match: {resourceType: [Observation]}\n"
	goodC   = "version: 1\nrules:\n  - name: c\n    action: delay\n    delay: 1d\n"
	badFile = "version: 1\nrules:\n  - name: bad\n    action: later\n"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherPoll drives the watcher step by step.
func TestWatcherPoll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write(t, path, goodA)
	w := &watcher{path: path}
	w.baseline()
	hashC := mustParse(t, goodC).Hash()
	// step changes the file (content "-" removes it, "" leaves it), polls
	// until the watcher acts, and checks what it returned.
	step := func(name, content string, wantPolicy string, wantErr string) {
		t.Helper()
		switch content {
		case "":
		case "-":
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		default:
			write(t, path, content)
		}
		p, err := w.poll()
		if content != "" {
			// The first poll after a change waits for the content to settle.
			if p != nil || err != nil {
				t.Errorf("%s: first poll acted: %v %v", name, p, err)
			}
			p, err = w.poll()
		}
		switch {
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("%s: error %v, want one containing %q", name, err, wantErr)
		case wantErr == "" && err != nil:
			t.Errorf("%s: unexpected error %v", name, err)
		case wantPolicy == "" && p != nil:
			t.Errorf("%s: unexpected new policy %v", name, p.Rules())
		case wantPolicy != "" && (p == nil || p.Rules()[0].Name != wantPolicy):
			t.Errorf("%s: policy %v, want rule %s", name, p, wantPolicy)
		}
	}
	step("unchanged", "", "", "")
	step("comment only", goodA2, "", "")
	step("new rules", goodB, "b", "")
	step("bad file", badFile, "", `policy.yaml:4: rule "bad": unknown action "later"`)
	step("still bad: reported once", "", "", "")
	step("back to the last good rules", goodB, "", "")
	step("new good", goodC, "c", "")
	step("removed", "-", "", "no such file")
	step("still removed: reported once", "", "", "")
	step("restored, other rules", goodA, "a", "")
	// A half-written file is not reported when the next poll sees it whole.
	write(t, path, "")
	if p, err := w.poll(); p != nil || err != nil {
		t.Errorf("truncated file acted on: %v %v", p, err)
	}
	step("whole again", goodC, "c", "")
	if w.good != hashC {
		t.Errorf("watcher good hash %s, want %s", w.good, hashC)
	}
}

// TestWatch runs Watch: a good file replaces the policy, a bad one is
// reported and changes nothing, and Watch returns when ctx ends.
func TestWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write(t, path, goodA)
	changes := make(chan *Policy, 10)
	errs := make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ready := make(chan struct{})
	testHookWatchReady = func() { close(ready) }
	defer func() { testHookWatchReady = nil }()
	go func() {
		Watch(ctx, path, 5*time.Millisecond, func(p *Policy) { changes <- p }, func(err error) { errs <- err })
		close(done)
	}()
	<-ready // Watch has its baseline: edits from now on are changes

	write(t, path, badFile)
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), `rule "bad"`) {
			t.Errorf("error %v", err)
		}
	case p := <-changes:
		t.Fatalf("bad file applied: %v", p.Rules())
	case <-time.After(5 * time.Second):
		t.Fatal("bad file not reported")
	}

	write(t, path, goodB)
	select {
	case p := <-changes:
		if p.Rules()[0].Name != "b" {
			t.Errorf("new policy %v", p.Rules())
		}
	case err := <-errs:
		t.Fatalf("good file reported as error: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("good file not applied")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
	if len(changes) != 0 || len(errs) != 0 {
		t.Errorf("extra callbacks: %d changes, %d errors", len(changes), len(errs))
	}
}

// BenchmarkEvaluate20Rules: a 20-rule policy where the resource is decided
// by the last rule (the worst case: every rule is tried).
func BenchmarkEvaluate20Rules(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("version: 1\nvalueSets:\n  hiv: [\"http://loinc.org|56888-1\", \"http://loinc.org|7917-8\", \"http://loinc.org|7918-6\"]\nrules:\n")
	sb.WriteString("  - {name: r0, match: {security: [\"" + actCode + "|NOPAT\"]}, action: exclude}\n")
	sb.WriteString("  - {name: r1, audience: [proxy], match: {security: [\"" + actCode + "|STD\", \"" + actCode + "|HIV\"]}, action: exclude}\n")
	sb.WriteString("  - {name: r2, match: {resourceType: [Observation, DiagnosticReport], valueSet: [hiv]}, action: manual}\n")
	sb.WriteString("  - {name: r3, match: {resourceType: [DocumentReference], code: [\"http://loinc.org|11488-4\"]}, action: exclude}\n")
	sb.WriteString("  - {name: r4, match: {performer: [Organization/outside]}, action: delay, delay: 1d}\n")
	for i := 5; i < 19; i++ {
		fmt.Fprintf(&sb, "  - {name: r%d, match: {resourceType: [Observation, DiagnosticReport], category: [\"%s|X%d\"], status: [final]}, action: delay, delay: %dd, from: issued}\n",
			i, v20074, i, i)
	}
	sb.WriteString("  - {name: r19, match: {resourceType: [Observation], category: [\"" + v20074 + "|CH\"]}, action: immediate}\n")
	p, err := Parse([]byte(sb.String()), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	if len(p.rules) != 20 {
		b.Fatalf("%d rules", len(p.rules))
	}
	p.Now = clock
	r := res(b, `{"resourceType":"Observation","id":"x","status":"final","meta":{"lastUpdated":"2024-03-01T00:00:00Z","security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"HTEST"}]},
	"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]},{"coding":[{"system":"`+v20074+`","code":"CH"}]}],
	"code":{"coding":[{"system":"http://loinc.org","code":"2160-0","display":"Creatinine"}]},"performer":[{"reference":"Organization/lab"}],
	"issued":"2024-03-01T00:00:00Z","valueQuantity":{"value":1.2,"unit":"mg/dL"}}`)
	in := Input{Type: "Observation", Resource: r, LastUpdated: now}
	if got := p.Evaluate(in); got.Rule != "r19" {
		b.Fatalf("decided by %q", got.Rule)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p.Evaluate(in)
	}
}
