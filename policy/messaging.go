package policy

// Secure messaging rules: the "messaging:" section of the policy file
// (docs/messaging.md). They decide what patient-facing apps may do with
// Communication threads (communication.html: a thread header, messages
// partOf it); the pipeline (fhir/server/messaging.go) enforces them.

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

// Messaging is the compiled "messaging:" section. A nil *Messaging (no
// section) leaves patient-facing Communication writes to the generic
// write rules only (smart.PatientWrites); every method accepts a nil
// receiver.
type Messaging struct {
	// Enabled: patients and proxies may start threads and write in them.
	// A section with enabled: false refuses every patient-facing
	// Communication write (403): the organisation offers no messaging.
	Enabled bool
	// CareTeam: a patient may write to the Practitioners and
	// PractitionerRoles (participant.member) of their active CareTeams,
	// and to those CareTeams themselves.
	CareTeam bool
	// Pools are the CareTeam references ("CareTeam/triage") of the
	// organisation's shared inboxes a patient may write to.
	Pools []string
	// PatientChooses: the patient names the recipients of a new thread;
	// false: the server routes every new thread to DefaultPool and a
	// patient-named recipient is refused.
	PatientChooses bool
	// DefaultPool receives new threads when the patient does not choose
	// (one of Pools).
	DefaultPool string
	// ResponseTime is the organisation's response-time target: the
	// automatic reply states it, and a patient message unanswered for
	// longer is overdue.
	ResponseTime time.Duration
	// AutoReply holds the automatic reply per language ("en", "fr"), with
	// {responseTime} replaced by the target; each includes the
	// not-for-emergencies sentence.
	AutoReply map[string]string
	// Sender is the Organization the automatic reply comes from
	// ("Organization/clinic"); empty: a display-only sender.
	Sender string
	// ContentTypes is the attachment allow-list (MIME types, lower case,
	// no parameters); MaxAttachment the largest attachment in bytes.
	ContentTypes  []string
	MaxAttachment int64

	hash string
}

// Not-for-emergencies sentences every automatic reply carries (the
// Ontario virtual-care guidance: patients must be told the portal is not
// for emergencies).
const (
	EmergencyEN = "This portal is not for emergencies — call 911."
	EmergencyFR = "Ce portail n'est pas destiné aux urgences — composez le 911."
)

// Default automatic replies.
var defaultAutoReply = map[string]string{
	"en": "Thank you, your message was received. Our team answers within {responseTime}. " + EmergencyEN,
	"fr": "Merci, votre message a été reçu. Notre équipe répond dans un délai de {responseTime}. " + EmergencyFR,
}

// Defaults of the section.
const (
	DefaultResponseTime  = 48 * time.Hour
	DefaultMaxAttachment = 10 << 20
)

// DefaultContentTypes is the attachment allow-list when none is given.
var DefaultContentTypes = []string{"application/pdf", "image/jpeg", "image/png"}

var (
	messagingKeys   = []string{"enabled", "recipients", "responseTime", "autoReply", "attachments"}
	recipientKeys   = []string{"careTeam", "pools", "patientChooses", "defaultPool"}
	autoReplyKeys   = []string{"en", "fr", "sender"}
	attachmentKeys  = []string{"contentTypes", "maxSize"}
	careTeamRef     = regexp.MustCompile(`^CareTeam/[A-Za-z0-9\-.]{1,64}$`)
	organizationRef = regexp.MustCompile(`^Organization/[A-Za-z0-9\-.]{1,64}$`)
	mimeType        = regexp.MustCompile(`^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$`)
	sizePattern     = regexp.MustCompile(`^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$`)
)

// Messaging returns the messaging rules (nil: no section).
func (p *Policy) Messaging() *Messaging {
	if p == nil {
		return nil
	}
	return p.messaging
}

// reloadKey changes whenever the release rules or the messaging rules do
// (Watch reloads on either; only Hash decides release recomputation).
func (p *Policy) reloadKey() string {
	if p == nil {
		return emptyHash
	}
	k := p.hash
	if p.messaging != nil {
		k += "+" + p.messaging.Hash()
	}
	if p.booking != nil {
		k += "+b" + p.booking.Hash()
	}
	return k
}

// Hash digests the effective messaging rules ("" for none).
func (m *Messaging) Hash() string {
	if m == nil {
		return ""
	}
	return m.hash
}

// On reports whether the messaging rules are enforced (a section exists).
func (m *Messaging) On() bool { return m != nil }

// AllowsType reports whether an attachment of MIME type ct (parameters
// such as "; charset" ignored, case-insensitive) is allowed.
func (m *Messaging) AllowsType(ct string) bool {
	if m == nil {
		return true
	}
	ct, _, _ = strings.Cut(ct, ";")
	ct = strings.ToLower(strings.TrimSpace(ct))
	for _, t := range m.ContentTypes {
		if t == ct {
			return true
		}
	}
	return false
}

// IsPool reports whether ref ("CareTeam/x") is one of the pools.
func (m *Messaging) IsPool(ref string) bool {
	if m == nil {
		return false
	}
	for _, p := range m.Pools {
		if p == ref {
			return true
		}
	}
	return false
}

// Reply is the automatic reply in lang (a BCP 47 tag; "fr…" is French,
// anything else English), with the response time filled in.
func (m *Messaging) Reply(lang string) string {
	key := "en"
	if strings.HasPrefix(strings.ToLower(lang), "fr") {
		key = "fr"
	}
	text := defaultAutoReply[key]
	rt := DefaultResponseTime
	if m != nil {
		if t, ok := m.AutoReply[key]; ok {
			text = t
		}
		rt = m.ResponseTime
	}
	return strings.ReplaceAll(text, "{responseTime}", FormatResponseTime(rt, key))
}

// FormatResponseTime renders a response-time target for people: whole
// days as "2 business days"/"2 jours ouvrables" when a multiple of 24h,
// hours otherwise. The target itself is counted in plain hours (no
// business calendar): 48h is "2 business days" as a promise, 48 clock
// hours for the overdue inbox.
func FormatResponseTime(d time.Duration, lang string) string {
	h := int64(d / time.Hour)
	if h%24 == 0 && h > 0 {
		n := h / 24
		if lang == "fr" {
			return plural(n, "jour ouvrable", "jours ouvrables")
		}
		return plural(n, "business day", "business days")
	}
	if lang == "fr" {
		return plural(h, "heure", "heures")
	}
	return plural(h, "hour", "hours")
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}

// messaging reads the "messaging:" section.
func (l *loader) messaging(n *yaml.Node) *Messaging {
	l.label = "messaging"
	defer func() { l.label = "" }()
	m := &Messaging{Enabled: true, ResponseTime: DefaultResponseTime, MaxAttachment: DefaultMaxAttachment,
		ContentTypes: append([]string(nil), DefaultContentTypes...), AutoReply: map[string]string{}, PatientChooses: true}
	if isNull(n) || n.Kind != yaml.MappingNode {
		l.errorf(n, "messaging must be a mapping with the keys %s", strings.Join(messagingKeys, ", "))
		return nil
	}
	top := l.mapping(n, messagingKeys, "messaging")
	if v, ok := top["enabled"]; ok {
		m.Enabled = l.boolean(v, "enabled")
	}
	rec := map[string]*yaml.Node{}
	if v, ok := top["recipients"]; ok {
		if v.Kind != yaml.MappingNode {
			l.errorf(v, "recipients must be a mapping with the keys %s", strings.Join(recipientKeys, ", "))
		} else {
			rec = l.mapping(v, recipientKeys, "messaging.recipients")
		}
	}
	if v, ok := rec["careTeam"]; ok {
		m.CareTeam = l.boolean(v, "careTeam")
	}
	if v, ok := rec["pools"]; ok {
		items, _ := l.list(v, "pools")
		for _, it := range items {
			if !careTeamRef.MatchString(it.val) {
				l.errorf(it.node, "pool %q must be a CareTeam reference such as CareTeam/triage-nurses", it.val)
				continue
			}
			if !contains(m.Pools, it.val) {
				m.Pools = append(m.Pools, it.val)
			}
		}
	}
	if v, ok := rec["patientChooses"]; ok {
		m.PatientChooses = l.boolean(v, "patientChooses")
	}
	if v, ok := rec["defaultPool"]; ok {
		if s, ok := l.scalar(v, "defaultPool"); ok {
			if !contains(m.Pools, s) {
				l.errorf(v, "defaultPool %q must be one of the pools", s)
			}
			m.DefaultPool = s
		}
	}
	if m.Enabled {
		switch {
		case !m.PatientChooses && m.DefaultPool == "":
			l.errorf(n, "recipients: patientChooses is false, so defaultPool is required (the pool every new thread goes to)")
		case m.PatientChooses && !m.CareTeam && len(m.Pools) == 0:
			l.errorf(n, "recipients: patients could write to nobody; set careTeam: true or list pools")
		}
	}
	if v, ok := top["responseTime"]; ok {
		if s, ok := l.scalar(v, "responseTime"); ok {
			d, err := parseDelay(s)
			if err != nil || d < time.Hour || d%time.Hour != 0 {
				l.errorf(v, "responseTime %q must be whole hours or days, at least 1h (e.g. 48h, 2d)", s)
			} else {
				m.ResponseTime = d
			}
		}
	}
	if v, ok := top["autoReply"]; ok {
		if v.Kind != yaml.MappingNode {
			l.errorf(v, "autoReply must be a mapping with the keys %s", strings.Join(autoReplyKeys, ", "))
		} else {
			ar := l.mapping(v, autoReplyKeys, "messaging.autoReply")
			for _, lang := range []string{"en", "fr"} {
				t, ok := ar[lang]
				if !ok {
					continue
				}
				s, ok := l.scalar(t, lang)
				if !ok {
					continue
				}
				if !strings.Contains(s, "911") {
					l.errorf(t, "autoReply.%s must tell patients the portal is not for emergencies and to call 911 (e.g. %q)", lang, map[string]string{"en": EmergencyEN, "fr": EmergencyFR}[lang])
				}
				m.AutoReply[lang] = s
			}
			if s, ok := ar["sender"]; ok {
				if ref, ok := l.scalar(s, "sender"); ok {
					if !organizationRef.MatchString(ref) {
						l.errorf(s, "autoReply.sender %q must be an Organization reference such as Organization/clinic", ref)
					}
					m.Sender = ref
				}
			}
		}
	}
	if v, ok := top["attachments"]; ok {
		if v.Kind != yaml.MappingNode {
			l.errorf(v, "attachments must be a mapping with the keys %s", strings.Join(attachmentKeys, ", "))
		} else {
			at := l.mapping(v, attachmentKeys, "messaging.attachments")
			if t, ok := at["contentTypes"]; ok {
				items, _ := l.list(t, "contentTypes")
				m.ContentTypes = nil
				for _, it := range items {
					ct := strings.ToLower(it.val)
					if !mimeType.MatchString(ct) {
						l.errorf(it.node, "content type %q is not a MIME type such as application/pdf", it.val)
						continue
					}
					if !contains(m.ContentTypes, ct) {
						m.ContentTypes = append(m.ContentTypes, ct)
					}
				}
			}
			if s, ok := at["maxSize"]; ok {
				if str, ok := l.scalar(s, "maxSize"); ok {
					size, err := parseSize(str)
					if err != nil {
						l.errorf(s, "maxSize %q: %v", str, err)
					} else {
						m.MaxAttachment = size
					}
				}
			}
		}
	}
	b, _ := json.Marshal(m) // exported fields only; map keys sorted: stable
	sum := sha256.Sum256(b)
	m.hash = "sha256:" + hex.EncodeToString(sum[:])
	return m
}

// boolean reads true or false.
func (l *loader) boolean(n *yaml.Node, key string) bool {
	s, ok := l.scalar(n, key)
	if !ok {
		return false
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	l.errorf(n, "%s must be true or false, not %q", key, s)
	return false
}

// parseSize reads a byte size: 512, 500KB, 10MiB (KB/MB/GB are powers of
// 1000, KiB/MiB/GiB of 1024).
func parseSize(s string) (int64, error) {
	m := sizePattern.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("not a size: write e.g. 10MiB, 500KB or 1048576")
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("too large")
	}
	mult := map[string]int64{"": 1, "B": 1, "KB": 1000, "KiB": 1 << 10, "MB": 1000 * 1000, "MiB": 1 << 20, "GB": 1000 * 1000 * 1000, "GiB": 1 << 30}[m[2]]
	if n <= 0 {
		return 0, fmt.Errorf("must be greater than zero")
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("too large")
	}
	return n * mult, nil
}
