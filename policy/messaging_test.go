package policy

// Tests of the "messaging:" section (docs/messaging.md): parsing,
// defaults, every refused setting with its line, the automatic reply in
// English and French, and that Watch reloads on a messaging-only change
// without changing the release Hash.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const messagingYAML = `version: 1
rules:
  - name: hiv-manual
    match:
      security: ["http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV"]
    action: manual
messaging:
  recipients:
    careTeam: true
    pools: [CareTeam/triage, CareTeam/billing]
    patientChooses: false
    defaultPool: CareTeam/triage
  responseTime: 2d
  autoReply:
    en: "We answer within {responseTime}. This portal is not for emergencies — call 911."
    sender: Organization/clinic
  attachments:
    contentTypes: [application/PDF, image/jpeg]
    maxSize: 5MiB
`

func TestMessagingParse(t *testing.T) {
	p, err := Parse([]byte(messagingYAML), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := p.Messaging()
	if !m.On() || !m.Enabled || !m.CareTeam || m.PatientChooses || m.DefaultPool != "CareTeam/triage" {
		t.Errorf("recipients: %+v", m)
	}
	if !m.IsPool("CareTeam/billing") || m.IsPool("CareTeam/other") {
		t.Errorf("pools %v", m.Pools)
	}
	if m.ResponseTime != 48*time.Hour || m.MaxAttachment != 5<<20 || m.Sender != "Organization/clinic" {
		t.Errorf("responseTime %v, maxSize %d, sender %q", m.ResponseTime, m.MaxAttachment, m.Sender)
	}
	for ct, want := range map[string]bool{"application/pdf": true, "Application/PDF; charset=x": true, "image/jpeg": true, "image/gif": false, "": false} {
		if m.AllowsType(ct) != want {
			t.Errorf("AllowsType(%q) = %v", ct, !want)
		}
	}
	if got := m.Reply("en-CA"); got != "We answer within 2 business days. This portal is not for emergencies — call 911." {
		t.Errorf("en reply %q", got)
	}
	if got := m.Reply("fr-CA"); !strings.Contains(got, "2 jours ouvrables") || !strings.Contains(got, EmergencyFR) {
		t.Errorf("fr reply (default text) %q", got)
	}
	// The messaging section does not change the release rules' hash.
	plain, err := Parse([]byte(strings.Split(messagingYAML, "messaging:")[0]), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if plain.Hash() != p.Hash() || plain.Messaging() != nil || plain.Messaging().On() {
		t.Errorf("hash with messaging %s, without %s; messaging %v", p.Hash(), plain.Hash(), plain.Messaging())
	}
	if plain.reloadKey() == p.reloadKey() {
		t.Errorf("reloadKey ignores the messaging section")
	}
}

func TestMessagingDefaults(t *testing.T) {
	p, err := Parse([]byte("version: 1\nmessaging:\n  recipients:\n    careTeam: true\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := p.Messaging()
	if !m.Enabled || !m.PatientChooses || m.ResponseTime != DefaultResponseTime || m.MaxAttachment != DefaultMaxAttachment || len(m.ContentTypes) != 3 {
		t.Errorf("defaults: %+v", m)
	}
	if got := m.Reply(""); !strings.Contains(got, EmergencyEN) || !strings.Contains(got, "2 business days") {
		t.Errorf("default reply %q", got)
	}
	if got := FormatResponseTime(36*time.Hour, "en") + "/" + FormatResponseTime(24*time.Hour, "fr") + "/" + FormatResponseTime(time.Hour, "fr"); got != "36 hours/1 jour ouvrable/1 heure" {
		t.Errorf("FormatResponseTime: %s", got)
	}
	off, err := Parse([]byte("version: 1\nmessaging:\n  enabled: false\n"), "p.yaml")
	if err != nil || !off.Messaging().On() || off.Messaging().Enabled {
		t.Errorf("enabled: false: %+v %v", off.Messaging(), err)
	}
}

func TestMessagingProblems(t *testing.T) {
	for _, c := range []struct{ name, section, want string }{
		{"no 911", "  recipients: {careTeam: true}\n  autoReply:\n    fr: \"Nous répondons vite.\"\n", "autoReply.fr must tell patients"},
		{"routing without pool", "  recipients:\n    pools: [CareTeam/a]\n    patientChooses: false\n", "defaultPool is required"},
		{"default not a pool", "  recipients:\n    pools: [CareTeam/a]\n    defaultPool: CareTeam/b\n", `defaultPool "CareTeam/b" must be one of the pools`},
		{"nobody to write to", "  recipients: {careTeam: false}\n", "could write to nobody"},
		{"bad pool", "  recipients:\n    pools: [Practitioner/x]\n", "must be a CareTeam reference"},
		{"bad time", "  recipients: {careTeam: true}\n  responseTime: 90m\n", "whole hours or days"},
		{"bad size", "  recipients: {careTeam: true}\n  attachments: {maxSize: 10 parsecs}\n", "not a size"},
		{"bad type", "  recipients: {careTeam: true}\n  attachments: {contentTypes: [pdf]}\n", "is not a MIME type"},
		{"bad sender", "  recipients: {careTeam: true}\n  autoReply: {sender: Practitioner/x}\n", "must be an Organization reference"},
		{"unknown key", "  recipients: {careTeam: true}\n  responsetime: 2d\n", `did you mean "responseTime"`},
		{"not a bool", "  enabled: yes please\n", "enabled must be true or false"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte("version: 1\nmessaging:\n"+c.section), "p.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "p.yaml:") {
				t.Errorf("error %v, want one naming the line and %q", err, c.want)
			}
		})
	}
}

// Watch calls onChange when only the messaging section changes.
func TestWatchReloadsMessaging(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("version: 1\nmessaging:\n  recipients: {careTeam: true}\n  responseTime: 2d\n")
	ready := make(chan struct{})
	testHookWatchReady = func() { close(ready) }
	t.Cleanup(func() { testHookWatchReady = nil })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *Policy, 1)
	go Watch(ctx, path, 10*time.Millisecond, func(p *Policy) { got <- p }, func(err error) { t.Error(err) })
	<-ready
	write("version: 1\nmessaging:\n  recipients: {careTeam: true}\n  responseTime: 3d\n")
	select {
	case p := <-got:
		if p.Messaging().ResponseTime != 72*time.Hour {
			t.Errorf("reloaded responseTime %v", p.Messaging().ResponseTime)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a messaging-only change was not reloaded")
	}
}
