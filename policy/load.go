package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The loader walks the yaml.Node tree itself (instead of yaml KnownFields
// decoding into structs) so that it can report every problem at once, each
// with its line and the rule it belongs to.

var (
	topKeys   = []string{"version", "timezone", "valueSets", "rules", "messaging", "booking"}
	ruleKeys  = []string{"name", "description", "match", "action", "delay", "from", "audience"}
	matchKeys = []string{"resourceType", "category", "code", "security", "status", "performer", "organization", "valueSet"}
	actions   = []string{string(Immediate), string(Delay), string(Manual), string(Exclude)}
	anchors   = []string{string(FromIssued), string(FromEffective), string(FromDate), string(FromLastUpdated)}
	audiences = []string{string(Patient), string(Proxy)}
)

var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// codePattern is the R4 code datatype (datatypes.html#code).
	codePattern = regexp.MustCompile(`^[^\s]+( [^\s]+)*$`)
	// idPattern is the R4 id datatype (datatypes.html#id).
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	yamlErrLine   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	dayDurPattern = regexp.MustCompile(`^(?:(\d+)w)?(?:(\d+)d)?(.*)$`)
)

const valueSetPrefix = "valueset:"

type loader struct {
	file     string
	problems []Problem
	label    string // label of the rule being read
}

func (l *loader) errorf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	l.problems = append(l.problems, Problem{Line: line, Rule: l.label, Msg: fmt.Sprintf(format, args...)})
}

func readLimited(r io.Reader, path string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("policy: %s: file larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

// compile parses and validates a policy file.
func compile(data []byte, file string) (*Policy, []Problem) {
	l := &loader{file: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.errorf(nil, "the file is empty: expected \"version: 1\" and \"rules:\"")
		} else {
			l.yamlError(err)
		}
		return nil, l.problems
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			l.yamlError(err)
		} else {
			l.errorf(&extra, "only one YAML document is allowed (found a \"---\" separator)")
		}
		return nil, l.problems
	}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if isNull(root) {
		l.errorf(root, "the file is empty: expected \"version: 1\" and \"rules:\"")
		return nil, l.problems
	}
	if root.Kind != yaml.MappingNode {
		l.errorf(root, "the top level must be a mapping with the keys %s", strings.Join(topKeys, ", "))
		return nil, l.problems
	}
	top := l.mapping(root, topKeys, "top level")

	p := &Policy{source: file, loc: time.UTC, tzName: "UTC"}
	if v, ok := top["version"]; !ok {
		l.errorf(root, "version is required (\"version: 1\")")
	} else if s, ok := l.scalar(v, "version"); ok && s != "1" {
		l.errorf(v, "unsupported version %q: this server reads version 1", s)
	}
	if v, ok := top["timezone"]; ok {
		if s, ok := l.scalar(v, "timezone"); ok {
			loc, err := time.LoadLocation(s)
			if err != nil || s == "" || s == "Local" {
				l.errorf(v, "timezone %q is not an IANA time zone name such as America/Toronto", s)
			} else {
				p.loc, p.tzName = loc, s
			}
		}
	}
	valueSets := map[string][]string{}
	if v, ok := top["valueSets"]; ok {
		valueSets = l.valueSets(v)
	}
	if v, ok := top["rules"]; ok && !isNull(v) {
		if v.Kind != yaml.SequenceNode {
			l.errorf(v, "rules must be a list (each item starting with \"- name: ...\")")
		} else {
			names := map[string]int{}
			for i, item := range v.Content {
				if r := l.rule(deref(item), i+1, valueSets, names); r != nil {
					p.rules = append(p.rules, r)
				}
			}
		}
	}
	if v, ok := top["messaging"]; ok {
		p.messaging = l.messaging(v) // messaging.go
	}
	if v, ok := top["booking"]; ok {
		p.booking = l.booking(v) // booking.go
	}
	l.label = ""
	l.unreachable(p.rules)
	if len(l.problems) > 0 {
		sort.SliceStable(l.problems, func(i, j int) bool { return l.problems[i].Line < l.problems[j].Line })
		return nil, l.problems
	}
	p.hash = digest(p.tzName, p.rules)
	return p, nil
}

func (l *loader) yamlError(err error) {
	msg := err.Error()
	if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		l.problems = append(l.problems, Problem{Line: line, Msg: "YAML syntax error: " + m[2]})
		return
	}
	l.problems = append(l.problems, Problem{Msg: "YAML syntax error: " + strings.TrimPrefix(msg, "yaml: ")})
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") ||
		(n.Kind == yaml.DocumentNode && len(n.Content) == 0)
}

// mapping checks the keys of a mapping node and returns key -> value node.
func (l *loader) mapping(n *yaml.Node, known []string, where string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	keyLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			l.errorf(k, "%s: keys must be plain words", where)
			continue
		}
		if first, dup := keyLine[k.Value]; dup {
			l.errorf(k, "duplicate key %q in %s (first at line %d)", k.Value, where, first)
			continue
		}
		keyLine[k.Value] = k.Line
		if !contains(known, k.Value) {
			msg := fmt.Sprintf("unknown key %q in %s", k.Value, where)
			if s := suggest(k.Value, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			l.errorf(k, "%s; known keys: %s", msg, strings.Join(known, ", "))
			continue
		}
		// Report value problems at the value, or at the key for an empty value.
		if isNull(v) && v.Line == 0 {
			v.Line = k.Line
		}
		out[k.Value] = v
	}
	return out
}

// scalar reads a single string value.
func (l *loader) scalar(n *yaml.Node, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		l.errorf(n, "%s must be a single value", key)
		return "", false
	}
	return n.Value, true
}

// item is one list value with its line.
type item struct {
	val  string
	node *yaml.Node
}

// list reads a list of strings; a single value counts as a one-item list.
func (l *loader) list(n *yaml.Node, key string) ([]item, bool) {
	switch {
	case isNull(n):
		l.errorf(n, "%s is empty: give at least one value or remove the key", key)
		return nil, false
	case n.Kind == yaml.ScalarNode:
		return []item{{n.Value, n}}, true
	case n.Kind != yaml.SequenceNode:
		l.errorf(n, "%s must be a list of values, e.g. %s: [a, b]", key, key)
		return nil, false
	}
	if len(n.Content) == 0 {
		l.errorf(n, "%s is empty: give at least one value or remove the key", key)
		return nil, false
	}
	out := make([]item, 0, len(n.Content))
	ok := true
	for _, c := range n.Content {
		c = deref(c)
		if c.Kind != yaml.ScalarNode || isNull(c) {
			l.errorf(c, "%s: every value must be a plain string", key)
			ok = false
			continue
		}
		out = append(out, item{c.Value, c})
	}
	return out, ok
}

func (l *loader) valueSets(n *yaml.Node) map[string][]string {
	out := map[string][]string{}
	if isNull(n) {
		return out
	}
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "valueSets must be a mapping of name -> list of codes")
		return out
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			l.errorf(k, "valueSets: names must be plain words")
			continue
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			l.errorf(k, "duplicate value set %q (first at line %d)", name, first)
			continue
		}
		seen[name] = k.Line
		if !namePattern.MatchString(name) {
			l.errorf(k, "value set name %q: use letters, digits, '.', '_' and '-'", name)
			continue
		}
		if isNull(v) && v.Line == 0 {
			v.Line = k.Line
		}
		key := "valueSets." + name
		items, _ := l.list(v, key)
		var codes []string
		for _, it := range items {
			if _, isRef := valueSetRef(it.val); isRef {
				l.errorf(it.node, "%s: value sets cannot refer to other value sets (%q)", key, it.val)
				continue
			}
			if msg := checkToken(it.val); msg != "" {
				l.errorf(it.node, "%s: %s", key, msg)
				continue
			}
			codes = append(codes, it.val)
		}
		out[name] = codes
	}
	return out
}

func (l *loader) rule(n *yaml.Node, index int, valueSets map[string][]string, names map[string]int) *rule {
	l.label = fmt.Sprintf("rule #%d", index)
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "each rule must be a mapping (name, match, action, ...)")
		return nil
	}
	// Find the name first so that every message names the rule.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := deref(n.Content[i]), deref(n.Content[i+1]); k.Value == "name" && v.Kind == yaml.ScalarNode && v.Value != "" {
			l.label = fmt.Sprintf("rule %q", v.Value)
		}
	}
	m := l.mapping(n, ruleKeys, "rule")
	r := &rule{line: n.Line}
	before := len(l.problems)

	if v, has := m["name"]; !has {
		l.errorf(n, "name is required")
	} else if s, good := l.scalar(v, "name"); good {
		switch {
		case s == "":
			l.errorf(v, "name must not be empty")
		case !namePattern.MatchString(s):
			l.errorf(v, "name %q: use letters, digits, '.', '_' and '-' (no spaces or ':')", s)
		case names[s] != 0:
			l.errorf(v, "duplicate rule name %q (first at line %d)", s, names[s])
		default:
			names[s] = v.Line
			r.name = s
		}
	}
	if v, has := m["description"]; has && !isNull(v) && v.Kind != yaml.ScalarNode {
		l.errorf(v, "description must be text")
	}

	if v, has := m["action"]; !has {
		l.errorf(n, "action is required (one of %s)", strings.Join(actions, ", "))
	} else if s, good := l.scalar(v, "action"); good {
		if !contains(actions, s) {
			l.errorf(v, "unknown action %q (known: %s)", s, strings.Join(actions, ", "))
		} else {
			r.action = Action(s)
		}
	}

	dv, hasDelay := m["delay"]
	switch {
	case r.action == Delay && !hasDelay:
		l.errorf(n, "action delay needs a delay, e.g. \"delay: 7d\" or \"delay: 168h\"")
	case r.action == Delay:
		if s, good := l.scalar(dv, "delay"); good {
			d, err := parseDelay(s)
			if err != nil {
				l.errorf(dv, "delay %q: %v", s, err)
			} else {
				r.delay = d
			}
		}
	case hasDelay && r.action != "":
		l.errorf(dv, "delay is only allowed with action delay (this rule's action is %s)", r.action)
	}

	if v, has := m["from"]; has {
		if s, good := l.scalar(v, "from"); good {
			switch {
			case !contains(anchors, s):
				l.errorf(v, "unknown from %q (known: %s)", s, strings.Join(anchors, ", "))
			case r.action != Delay && r.action != "":
				l.errorf(v, "from is only allowed with action delay (this rule's action is %s)", r.action)
			default:
				r.from = Anchor(s)
			}
		}
	}
	if r.action == Delay && r.from == "" {
		r.from = FromLastUpdated
	}

	if v, has := m["audience"]; has {
		items, _ := l.list(v, "audience")
		for _, it := range items {
			switch Audience(it.val) {
			case Patient:
				r.audience[0] = true
			case Proxy:
				r.audience[1] = true
			default:
				l.errorf(it.node, "unknown audience %q (known: %s)", it.val, strings.Join(audiences, ", "))
			}
		}
	} else {
		r.audience = [2]bool{true, true}
	}

	match := map[string][]string{}
	if v, has := m["match"]; has && !isNull(v) {
		if v.Kind != yaml.MappingNode {
			l.errorf(v, "match must be a mapping, e.g. match: {resourceType: [Observation]}")
		} else {
			l.match(r, l.mapping(v, matchKeys, "match"), valueSets, match)
		}
	}

	if len(l.problems) != before {
		return nil
	}
	r.canon = canonRule{Name: r.name, Action: r.action, Delay: r.delay, From: r.from, Match: match}
	if r.action != Delay {
		r.canon.From = ""
	}
	for i, a := range Audiences {
		if r.audience[i] {
			r.canon.Audience = append(r.canon.Audience, a)
		}
	}
	return r
}

// match compiles the match keys of r; canon receives the effective values.
func (l *loader) match(r *rule, m map[string]*yaml.Node, valueSets map[string][]string, canon map[string][]string) {
	if v, has := m["resourceType"]; has {
		items, _ := l.list(v, "match.resourceType")
		r.types = map[string]struct{}{}
		for _, it := range items {
			if _, known := r4ResourceTypes[it.val]; !known {
				msg := fmt.Sprintf("match.resourceType: %q is not an R4 resource type", it.val)
				if s := suggest(it.val, sortedKeys(r4ResourceTypes)); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				l.errorf(it.node, "%s", msg)
				continue
			}
			r.types[it.val] = struct{}{}
		}
		canon["resourceType"] = sortedKeys(r.types)
	}
	tokens := func(key string, items []item) *tokenSet {
		ts := newTokenSet()
		for _, it := range items {
			if name, isRef := valueSetRef(it.val); isRef {
				codes, defined := valueSets[name]
				if !defined {
					l.errorf(it.node, "match.%s: value set %q is not defined under valueSets", key, name)
					continue
				}
				for _, c := range codes {
					ts.add(c)
				}
				continue
			}
			if msg := checkToken(it.val); msg != "" {
				l.errorf(it.node, "match.%s: %s", key, msg)
				continue
			}
			ts.add(it.val)
		}
		canon[key] = ts.canon()
		return ts
	}
	tokenKey := func(key string) *tokenSet {
		v, has := m[key]
		if !has {
			return nil
		}
		items, _ := l.list(v, "match."+key)
		return tokens(key, items)
	}
	r.category = tokenKey("category")
	r.code = tokenKey("code")
	// match.valueSet: [name] is shorthand for code: ["valueset:name"]; with
	// both keys present both must match (every key is ANDed).
	if v, has := m["valueSet"]; has {
		items, _ := l.list(v, "match.valueSet")
		for i := range items {
			items[i].val = valueSetPrefix + items[i].val
		}
		r.valueSet = tokens("valueSet", items)
	}
	r.security = tokenKey("security")
	if v, has := m["status"]; has {
		items, _ := l.list(v, "match.status")
		r.status = map[string]struct{}{}
		for _, it := range items {
			if !codePattern.MatchString(it.val) || strings.Contains(it.val, "|") {
				l.errorf(it.node, "match.status: %q is not a status code such as final", it.val)
				continue
			}
			r.status[it.val] = struct{}{}
		}
		canon["status"] = sortedKeys(r.status)
	}
	refs := func(key string, onlyType string) map[string]struct{} {
		v, has := m[key]
		if !has {
			return nil
		}
		items, _ := l.list(v, "match."+key)
		out := map[string]struct{}{}
		for _, it := range items {
			typ, id, found := strings.Cut(it.val, "/")
			_, known := r4ResourceTypes[typ]
			switch {
			case !found || !known || !idPattern.MatchString(id):
				l.errorf(it.node, "match.%s: %q is not a reference \"Type/id\" such as Organization/lab-1", key, it.val)
				continue
			case onlyType != "" && typ != onlyType:
				l.errorf(it.node, "match.%s: %q must be a reference to %s (\"%s/id\")", key, it.val, onlyType, onlyType)
				continue
			}
			out[it.val] = struct{}{}
		}
		canon[key] = sortedKeys(out)
		return out
	}
	r.performer = refs("performer", "")
	r.organization = refs("organization", "Organization")
}

// valueSetRef recognises "valueset:<name>" (prefix case-insensitive).
func valueSetRef(s string) (string, bool) {
	if len(s) > len(valueSetPrefix) && strings.EqualFold(s[:len(valueSetPrefix)], valueSetPrefix) {
		return s[len(valueSetPrefix):], true
	}
	return "", false
}

// checkToken validates a token "system|code", "|code", "system|" or "code"
// (search.html#token); it returns a message or "".
func checkToken(s string) string {
	system, code, hasBar := strings.Cut(s, "|")
	if !hasBar {
		system, code = "", s
	}
	switch {
	case s == "" || s == "|":
		return fmt.Sprintf("%q is not a code: write system|code, |code or code", s)
	case hasBar && strings.Contains(code, "|"):
		return fmt.Sprintf("%q has more than one '|': write system|code", s)
	case code != "" && !codePattern.MatchString(code):
		return fmt.Sprintf("%q: the code %q has leading, trailing or repeated spaces", s, code)
	case system != "" && (strings.ContainsAny(system, " \t\n") || !strings.Contains(system, ":")):
		return fmt.Sprintf("%q: the system %q must be an absolute URI such as http://loinc.org", s, system)
	}
	return ""
}

// parseDelay reads a Go duration ("168h", "36h30m") optionally preceded by
// whole weeks and days ("2w", "7d", "1d12h").
func parseDelay(s string) (time.Duration, error) {
	m := dayDurPattern.FindStringSubmatch(strings.TrimSpace(s))
	const maxDays = int64((1<<63 - 1) / int64(24*time.Hour))
	days := int64(0)
	for i, mult := range []int64{7, 1} {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > maxDays {
			return 0, errors.New("too long")
		}
		days += n * mult
	}
	if days > maxDays/2 {
		return 0, errors.New("too long")
	}
	d := time.Duration(days) * 24 * time.Hour
	if rest := m[3]; rest != "" {
		x, err := time.ParseDuration(rest)
		if err != nil {
			return 0, errors.New("not a duration: write e.g. 7d, 2w, 168h or 36h30m")
		}
		if x < 0 {
			return 0, errors.New("must be greater than zero (use action immediate for no delay)")
		}
		if d+x < d {
			return 0, errors.New("too long")
		}
		d += x
	} else if m[1] == "" && m[2] == "" {
		return 0, errors.New("not a duration: write e.g. 7d, 2w, 168h or 36h30m")
	}
	if d <= 0 {
		return 0, errors.New("must be greater than zero (use action immediate for no delay)")
	}
	return d, nil
}

// unreachable reports rules that can never decide because an earlier rule
// without match conditions (a catch-all) covers all their audiences.
func (l *loader) unreachable(rules []*rule) {
	var cover [2]*rule
	for _, r := range rules {
		dead := true
		var by *rule
		for i := range cover {
			if r.audience[i] {
				if cover[i] == nil {
					dead = false
				} else {
					by = cover[i]
				}
			}
		}
		if dead && by != nil {
			l.problems = append(l.problems, Problem{Line: r.line, Rule: fmt.Sprintf("rule %q", r.name),
				Msg: fmt.Sprintf("can never apply: rule %q (line %d) before it matches everything for the same audience; move the catch-all last", by.name, by.line)})
		}
		if r.catchAll() {
			for i := range cover {
				if r.audience[i] && cover[i] == nil {
					cover[i] = r
				}
			}
		}
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the known word closest to s when it is a likely typo.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(s), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
