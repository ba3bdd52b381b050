// Package policy implements release rules: data release delays and data
// exclusions for patient-facing access ("annotate and release"), in the spirit
// of the Ontario patient-portal guidance "Digital Release of PHI Decision
// Framework", Appendix C.
//
// Operators write a YAML policy file (see README.md in this directory for the
// complete format). Load or Parse compiles it into an immutable *Policy;
// Evaluate decides, for one version of a resource, from which instant it is
// visible to the patient and to proxies (parents, substitute decision makers,
// caregivers). The result is a store.Release stored with the version; the
// store answers search.ReleaseCond from it.
//
// A nil *Policy (no policy file configured) releases everything immediately;
// every method accepts a nil receiver.
//
// Resource type names in a policy are checked against the R4 model
// (fhir/model: the resource types of resourcelist.html, from the
// StructureDefinitions, structuredefinition.html).
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
	_ "time/tzdata" // "timezone:" must work on hosts without a zoneinfo database
)

// Audience is who reads patient-facing data: the patient themself or a proxy
// (parent, substitute decision maker, caregiver).
type Audience string

const (
	Patient Audience = "patient"
	Proxy   Audience = "proxy"
)

// Audiences lists every audience, in the order used throughout the package.
var Audiences = []Audience{Patient, Proxy}

// Action is what a rule does with the data it matches.
type Action string

const (
	// Immediate: visible as soon as it is stored.
	Immediate Action = "immediate"
	// Delay: visible from anchor + delay.
	Delay Action = "delay"
	// Manual: invisible (store.Never) until a clinician runs $release.
	Manual Action = "manual"
	// Exclude: never visible to the audience (store.Never).
	Exclude Action = "exclude"
)

// Release states besides the four actions (store.Release.State).
const (
	StateReleased = "released" // a clinician ran $release
	StateHeld     = "held"     // a clinician ran $hold
)

// Anchor names the element a delay counts from.
type Anchor string

const (
	FromIssued      Anchor = "issued"      // issued
	FromEffective   Anchor = "effective"   // effective[x] (dateTime, instant, Period.start)
	FromDate        Anchor = "date"        // date (DocumentReference.date, Composition.date), Communication.sent, authoredOn
	FromLastUpdated Anchor = "lastUpdated" // meta.lastUpdated (default)
)

// maxFileSize bounds a policy file; real policies are a few KiB.
const maxFileSize = 4 << 20

// Policy is a compiled, immutable release policy. Only Now may be set, and
// only before the policy is shared between goroutines.
type Policy struct {
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	source string // file name used in messages
	rules  []*rule
	loc    *time.Location
	tzName string
	hash   string
	// messaging is the "messaging:" section (nil: none; messaging.go).
	messaging *Messaging
	// booking is the "booking:" section (nil: none; booking.go).
	booking *Booking
}

// rule is one compiled rule.
type rule struct {
	name     string
	line     int
	action   Action
	delay    time.Duration
	from     Anchor
	audience [2]bool // indexed like Audiences

	types        map[string]struct{} // nil: any type
	category     *tokenSet
	code         *tokenSet
	valueSet     *tokenSet // match.valueSet, matched against the same elements as code
	security     *tokenSet
	status       map[string]struct{}
	performer    map[string]struct{} // "Type/id"
	organization map[string]struct{}

	canon canonRule
}

// canonRule is the effective content of a rule: what Hash digests and what
// Rules reports. Lists are sorted and deduplicated, value sets expanded.
type canonRule struct {
	Name     string              `json:"name"`
	Action   Action              `json:"action"`
	Delay    time.Duration       `json:"delay,omitempty"`
	From     Anchor              `json:"from,omitempty"`
	Audience []Audience          `json:"audience"`
	Match    map[string][]string `json:"match,omitempty"`
}

func (r *rule) catchAll() bool { return len(r.canon.Match) == 0 }

// RuleInfo describes one rule (for administration and $release-status).
type RuleInfo struct {
	Name     string
	Line     int // line of the rule in the policy file
	Action   Action
	Delay    time.Duration // Delay only
	From     Anchor        // Delay only
	Audience []Audience
	// Match is the effective match: key -> sorted values, value sets expanded.
	Match map[string][]string
}

// Load reads and compiles the policy file at path.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := readLimited(f, path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse compiles a policy from YAML; name is the file name used in error
// messages. Errors are *LoadError listing every problem with its line.
func Parse(data []byte, name string) (*Policy, error) {
	if name == "" {
		name = "policy"
	}
	p, problems := compile(data, name)
	if len(problems) > 0 {
		return nil, &LoadError{File: name, Problems: problems}
	}
	return p, nil
}

// Problem is one mistake in a policy file.
type Problem struct {
	Line int    // 1-based; 0 when unknown
	Rule string // `rule "name"` or `rule #n`, "" outside rules
	Msg  string
}

func (p Problem) format(file string) string {
	var b strings.Builder
	b.WriteString(file)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Rule != "" {
		b.WriteString(p.Rule)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// LoadError lists every problem found in a policy file.
type LoadError struct {
	File     string
	Problems []Problem
}

func (e *LoadError) Error() string {
	if len(e.Problems) == 1 {
		return "policy: " + e.Problems[0].format(e.File)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "policy: %s: %d problems:", e.File, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.format(e.File))
	}
	return b.String()
}

// Hash is a stable digest ("sha256:<hex>") of the effective rules: it ignores
// comments, formatting, descriptions, list order and value-set names, and
// changes whenever a decision could change. Store it to notice at start that
// the policy changed (and re-evaluate stored versions). A nil policy has the
// hash of a policy without rules.
func (p *Policy) Hash() string {
	if p == nil {
		return emptyHash
	}
	return p.hash
}

var emptyHash = digest("UTC", nil)

func digest(tz string, rules []*rule) string {
	doc := struct {
		Version  int         `json:"version"`
		Timezone string      `json:"timezone"`
		Rules    []canonRule `json:"rules"`
	}{Version: 1, Timezone: tz, Rules: []canonRule{}}
	for _, r := range rules {
		doc.Rules = append(doc.Rules, r.canon)
	}
	b, err := json.Marshal(doc) // map keys are sorted: stable
	if err != nil {
		panic(err) // only strings, ints and slices: cannot fail
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Rules describes the rules in evaluation order (none for a nil policy).
func (p *Policy) Rules() []RuleInfo {
	if p == nil {
		return nil
	}
	out := make([]RuleInfo, 0, len(p.rules))
	for _, r := range p.rules {
		m := make(map[string][]string, len(r.canon.Match))
		for k, v := range r.canon.Match {
			m[k] = slices.Clone(v)
		}
		out = append(out, RuleInfo{
			Name: r.name, Line: r.line, Action: r.action, Delay: r.delay, From: r.canon.From,
			Audience: slices.Clone(r.canon.Audience), Match: m,
		})
	}
	return out
}

// Source is the file name the policy was loaded from.
func (p *Policy) Source() string {
	if p == nil {
		return ""
	}
	return p.source
}

func (p *Policy) now() time.Time {
	if p != nil && p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func setOf(xs ...string) map[string]struct{} {
	m := make(map[string]struct{}, len(xs))
	for _, x := range xs {
		m[x] = struct{}{}
	}
	return m
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
