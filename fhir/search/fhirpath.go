package search

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// This file holds the FHIRPath subset (fhirpath.html) used by search
// parameter expressions (searchparameter.html#expression): parsing into a
// tree once per expression, and evaluation over decoded JSON
// (map[string]any, []any, string, bool, json.Number).
//
// Supported: paths with choice types (value -> valueQuantity, ...), the type
// name as first path step, indexers, literals ('str', numbers, true/false,
// {}, @dates), $this, %resource, the operators | = != ~ !~ < > <= >= + - * /
// & div mod is as in contains and or xor implies, unary -, and the
// functions where select exists empty not first last tail skip take count
// single distinct ofType as is resolve extension hasExtension hasValue iif
// union combine startsWith endsWith contains lower upper toString
// trace children.

// item is one value of a FHIRPath collection with its FHIR type when known
// ("" otherwise).
type item struct {
	v any
	t string
}

// resolvedRef is the result of resolve() for a reference the evaluator
// cannot follow (it only knows the target type and id).
type resolvedRef struct{ typ, id string }

// fpExpr is a compiled FHIRPath expression.
type fpExpr interface {
	eval(c *fpCtx, focus []item) ([]item, error)
}

// fpCtx is the evaluation context: the type model and the root resource
// (%resource, for resolving contained references).
type fpCtx struct {
	m    *typeModel
	root item
}

// ---------------------------------------------------------------- lexer

type tokKind int

const (
	tkEOF tokKind = iota
	tkIdent
	tkString
	tkNumber
	tkOp
	tkVar  // %name
	tkDate // @2020-01-01
)

type token struct {
	kind tokKind
	s    string
	pos  int
	// quoted: a `delimited` identifier, never a keyword.
	quoted bool
}

func lexFHIRPath(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("unterminated comment at %d", i)
			}
			i += end + 4
		case c == '\'':
			s, n, err := lexQuoted(src[i:], '\'')
			if err != nil {
				return nil, fmt.Errorf("at %d: %w", i, err)
			}
			toks = append(toks, token{kind: tkString, s: s, pos: i})
			i += n
		case c == '`':
			s, n, err := lexQuoted(src[i:], '`')
			if err == nil && s == "" {
				err = fmt.Errorf("empty identifier")
			}
			if err != nil {
				return nil, fmt.Errorf("at %d: %w", i, err)
			}
			toks = append(toks, token{kind: tkIdent, s: s, pos: i, quoted: true})
			i += n
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			if j+1 < len(src) && src[j] == '.' && src[j+1] >= '0' && src[j+1] <= '9' {
				j++
				for j < len(src) && src[j] >= '0' && src[j] <= '9' {
					j++
				}
			}
			toks = append(toks, token{kind: tkNumber, s: src[i:j], pos: i})
			i = j
		case c == '@':
			j := i + 1
			for j < len(src) && (isDateChar(src[j])) {
				j++
			}
			toks = append(toks, token{kind: tkDate, s: src[i+1 : j], pos: i})
			i = j
		case c == '%':
			j := i + 1
			if j < len(src) && (src[j] == '\'' || src[j] == '`') {
				s, n, err := lexQuoted(src[j:], src[j])
				if err != nil {
					return nil, fmt.Errorf("at %d: %w", i, err)
				}
				toks = append(toks, token{kind: tkVar, s: s, pos: i})
				i = j + n
				continue
			}
			for j < len(src) && isIdentChar(src[j]) {
				j++
			}
			toks = append(toks, token{kind: tkVar, s: src[i+1 : j], pos: i})
			i = j
		case c == '$' || c == '_' || c >= utf8.RuneSelf || unicode.IsLetter(rune(c)):
			j := i + 1
			for j < len(src) && isIdentChar(src[j]) {
				j++
			}
			toks = append(toks, token{kind: tkIdent, s: src[i:j], pos: i})
			i = j
		default:
			op := string(c)
			if i+1 < len(src) {
				two := src[i : i+2]
				switch two {
				case "!=", "!~", "<=", ">=":
					op = two
				}
			}
			if !strings.Contains(".()[]{},|=~<>+-*/&!", op[:1]) || op == "!" {
				return nil, fmt.Errorf("unexpected character %q at %d", c, i)
			}
			toks = append(toks, token{kind: tkOp, s: op, pos: i})
			i += len(op)
		}
	}
	toks = append(toks, token{kind: tkEOF, pos: len(src)})
	return toks, nil
}

func isIdentChar(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isDateChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == ':' || c == 'T' || c == '.' || c == 'Z' || c == '+'
}

// lexQuoted reads a quoted string or identifier starting at s[0] == q,
// handling the FHIRPath escapes (fhirpath.html#string).
func lexQuoted(s string, q byte) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == q {
			return b.String(), i + 1, nil
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(s) {
			break
		}
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+4 < len(s) {
				var r rune
				if _, err := fmt.Sscanf(s[i+1:i+5], "%04x", &r); err == nil {
					b.WriteRune(r)
					i += 4
					continue
				}
			}
			return "", 0, fmt.Errorf("bad \\u escape")
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("unterminated %c", q)
}

// ---------------------------------------------------------------- parser

// maxExprLen bounds expression size (custom SearchParameters are client input).
const maxExprLen = 8192

type fpParser struct {
	toks []token
	i    int
	src  string
}

// compileFHIRPath parses a FHIRPath expression (fhirpath.html#grammar).
func compileFHIRPath(src string) (fpExpr, error) {
	if len(src) > maxExprLen {
		return nil, fmt.Errorf("fhirpath expression longer than %d characters", maxExprLen)
	}
	toks, err := lexFHIRPath(src)
	if err != nil {
		return nil, fmt.Errorf("fhirpath %q: %w", src, err)
	}
	p := &fpParser{toks: toks, src: src}
	e, err := p.expr(0)
	if err != nil {
		return nil, fmt.Errorf("fhirpath %q: %w", src, err)
	}
	if t := p.peek(); t.kind != tkEOF {
		return nil, fmt.Errorf("fhirpath %q: unexpected %q at %d", src, t.s, t.pos)
	}
	return e, nil
}

func (p *fpParser) peek() token { return p.toks[p.i] }
func (p *fpParser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *fpParser) expect(op string) error {
	t := p.next()
	if t.kind != tkOp || t.s != op {
		if t.kind == tkEOF {
			return fmt.Errorf("expected %q at end", op)
		}
		return fmt.Errorf("expected %q at %d, found %q", op, t.pos, t.s)
	}
	return nil
}

// binaryPrec gives the operator precedence of t
// (fhirpath.html#operator-precedence), higher binds tighter; ok is false
// when t is not a binary operator.
func binaryPrec(t token) (prec int, ok bool) {
	if t.kind == tkOp {
		switch t.s {
		case "*", "/":
			return 9, true
		case "+", "-", "&":
			return 8, true
		case "|":
			return 6, true
		case "<", ">", "<=", ">=":
			return 5, true
		case "=", "~", "!=", "!~":
			return 4, true
		}
		return 0, false
	}
	if t.kind == tkIdent && !t.quoted {
		switch t.s {
		case "div", "mod":
			return 9, true
		case "is", "as":
			return 7, true
		case "in", "contains":
			return 3, true
		case "and":
			return 2, true
		case "or", "xor":
			return 1, true
		case "implies":
			return 0, true
		}
	}
	return 0, false
}

func (p *fpParser) expr(minPrec int) (fpExpr, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		prec, ok := binaryPrec(t)
		if !ok || prec < minPrec {
			return left, nil
		}
		p.next()
		if t.s == "is" || t.s == "as" {
			typ, err := p.typeSpec()
			if err != nil {
				return nil, err
			}
			left = &fpTypeOp{op: t.s, x: left, typ: typ}
			continue
		}
		right, err := p.expr(prec + 1)
		if err != nil {
			return nil, err
		}
		left = &fpBinary{op: t.s, l: left, r: right}
	}
}

func (p *fpParser) typeSpec() (string, error) {
	t := p.next()
	if t.kind != tkIdent {
		return "", fmt.Errorf("expected a type name at %d", t.pos)
	}
	name := t.s
	if n := p.peek(); n.kind == tkOp && n.s == "." && p.toks[p.i+1].kind == tkIdent {
		p.next()
		name += "." + p.next().s
	}
	return normType(name), nil
}

// normType strips the FHIR./System. namespace of a type specifier.
func normType(name string) string {
	if s, ok := strings.CutPrefix(name, "FHIR."); ok {
		return s
	}
	if s, ok := strings.CutPrefix(name, "System."); ok {
		switch s {
		case "String":
			return "string"
		case "Boolean":
			return "boolean"
		case "Integer":
			return "integer"
		case "Decimal":
			return "decimal"
		case "DateTime":
			return "dateTime"
		case "Date":
			return "date"
		case "Time":
			return "time"
		}
		return s
	}
	return name
}

func (p *fpParser) unary() (fpExpr, error) {
	if t := p.peek(); t.kind == tkOp && (t.s == "-" || t.s == "+") {
		p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if t.s == "+" {
			return x, nil
		}
		return &fpNeg{x: x}, nil
	}
	return p.postfix()
}

func (p *fpParser) postfix() (fpExpr, error) {
	x, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		switch {
		case t.kind == tkOp && t.s == ".":
			p.next()
			id := p.next()
			if id.kind != tkIdent {
				return nil, fmt.Errorf("expected a name after '.' at %d", id.pos)
			}
			x, err = p.invocation(x, id)
			if err != nil {
				return nil, err
			}
		case t.kind == tkOp && t.s == "[":
			p.next()
			idx, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect("]"); err != nil {
				return nil, err
			}
			x = &fpIndex{x: x, idx: idx}
		default:
			return x, nil
		}
	}
}

// invocation parses a member or function call on target (nil: the focus).
func (p *fpParser) invocation(target fpExpr, id token) (fpExpr, error) {
	if n := p.peek(); n.kind != tkOp || n.s != "(" || id.quoted {
		return &fpMember{x: target, name: id.s}, nil
	}
	p.next()
	var args []fpExpr
	if n := p.peek(); n.kind == tkOp && n.s == ")" {
		p.next()
	} else {
		for {
			a, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			t := p.next()
			if t.kind == tkOp && t.s == ")" {
				break
			}
			if t.kind != tkOp || t.s != "," {
				return nil, fmt.Errorf("expected ',' or ')' at %d", t.pos)
			}
		}
	}
	return newCall(target, id.s, args)
}

func (p *fpParser) term() (fpExpr, error) {
	t := p.next()
	switch t.kind {
	case tkString:
		return &fpLiteral{items: []item{{v: t.s, t: "string"}}}, nil
	case tkNumber:
		typ := "integer"
		if strings.Contains(t.s, ".") {
			typ = "decimal"
		}
		return &fpLiteral{items: []item{{v: json.Number(t.s), t: typ}}}, nil
	case tkDate:
		typ := "dateTime"
		if !strings.Contains(t.s, "T") {
			typ = "date"
		}
		return &fpLiteral{items: []item{{v: strings.TrimPrefix(t.s, "T"), t: typ}}}, nil
	case tkVar:
		return &fpVar{name: t.s}, nil
	case tkIdent:
		if !t.quoted {
			switch t.s {
			case "true", "false":
				return &fpLiteral{items: []item{{v: t.s == "true", t: "boolean"}}}, nil
			case "$this":
				return fpThis{}, nil
			case "$index", "$total":
				return nil, fmt.Errorf("%s is not supported", t.s)
			}
		}
		return p.invocation(nil, t)
	case tkOp:
		switch t.s {
		case "(":
			e, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			return e, nil
		case "{":
			if err := p.expect("}"); err != nil {
				return nil, err
			}
			return &fpLiteral{}, nil
		}
	case tkEOF:
		return nil, fmt.Errorf("unexpected end of expression")
	}
	return nil, fmt.Errorf("unexpected %q at %d", t.s, t.pos)
}

// ---------------------------------------------------------------- nodes

type fpLiteral struct{ items []item }

func (l *fpLiteral) eval(*fpCtx, []item) ([]item, error) { return l.items, nil }

type fpThis struct{}

func (fpThis) eval(_ *fpCtx, focus []item) ([]item, error) { return focus, nil }

type fpVar struct{ name string }

func (v *fpVar) eval(c *fpCtx, focus []item) ([]item, error) {
	switch v.name {
	case "resource", "rootResource":
		return []item{c.root}, nil
	case "context":
		return focus, nil
	case "ucum":
		return []item{{v: "http://unitsofmeasure.org", t: "string"}}, nil
	case "sct":
		return []item{{v: "http://snomed.info/sct", t: "string"}}, nil
	case "loinc":
		return []item{{v: "http://loinc.org", t: "string"}}, nil
	}
	return nil, fmt.Errorf("unknown variable %%%s", v.name)
}

// fpMember navigates to the child elements name of each focus item; as the
// first step of a path, a type name selects the focus items of that type
// (fhirpath.html#path-selection).
type fpMember struct {
	x    fpExpr
	name string
	// last caches the model's answer for the parent type seen last
	// (evaluation mostly meets one parent type per node): an atomic
	// pointer to an immutable entry, so concurrent evaluations share it.
	last atomic.Pointer[memberInfo]
}

// memberInfo is typeModel.lookup(t, name) of a member node.
type memberInfo struct {
	t     string
	info  childInfo
	known bool
}

func (n *fpMember) eval(c *fpCtx, focus []item) ([]item, error) {
	in := focus
	if n.x != nil {
		var err error
		if in, err = n.x.eval(c, focus); err != nil {
			return nil, err
		}
	} else if n.name != "" && n.name[0] >= 'A' && n.name[0] <= 'Z' && c.m.isType(n.name) {
		var out []item
		for _, it := range in {
			if c.m.isA(typeOf(it), n.name) {
				out = append(out, it)
			}
		}
		return out, nil
	}
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]item, 0, max(len(in), 2))
	for _, it := range in {
		if it.t == "" {
			out = c.m.childOf(it, n.name, childInfo{}, false, out)
			continue
		}
		mi := n.last.Load()
		if mi == nil || mi.t != it.t {
			info, known := c.m.lookup(it.t, n.name)
			mi = &memberInfo{t: it.t, info: info, known: known}
			n.last.Store(mi)
		}
		out = c.m.childOf(it, n.name, mi.info, mi.known, out)
	}
	return out, nil
}

// child appends the values of element name of it to out, resolving choice
// elements (name "value" matches "valueQuantity" typed Quantity).
func (m *typeModel) child(it item, name string, out []item) []item {
	var info childInfo
	known := false
	if it.t != "" {
		info, known = m.lookup(it.t, name)
	}
	return m.childOf(it, name, info, known, out)
}

// childOf is child with the model's answer for (it.t, name) already looked up.
func (m *typeModel) childOf(it item, name string, info childInfo, known bool, out []item) []item {
	obj, ok := it.v.(map[string]any)
	if !ok {
		return out
	}
	if v, ok := obj[name]; ok {
		t := ""
		switch {
		case known && !info.choice && len(info.types) == 1:
			t = info.types[0]
		case name == "extension" || name == "modifierExtension":
			t = "Extension"
		case name == "id" || name == "url" && it.t == "Extension":
			t = "string"
		}
		return appendValue(out, v, t)
	}
	if known && !info.choice {
		return out
	}
	for k, v := range obj {
		if len(k) <= len(name) || !strings.HasPrefix(k, name) {
			continue
		}
		suffix := k[len(name):]
		if suffix[0] < 'A' || suffix[0] > 'Z' {
			continue
		}
		t := ""
		if known {
			for _, ct := range info.types {
				if len(ct) == len(suffix) && ct[1:] == suffix[1:] && unicode.ToUpper(rune(ct[0])) == rune(suffix[0]) {
					t = ct
					break
				}
			}
		} else {
			t = m.bySuffix[suffix]
		}
		if t != "" {
			out = appendValue(out, v, t)
		}
	}
	return out
}

// appendValue flattens arrays and types contained resources by their
// resourceType.
func appendValue(out []item, v any, t string) []item {
	switch x := v.(type) {
	case nil:
		return out
	case []any:
		for _, e := range x {
			out = appendValue(out, e, t)
		}
		return out
	case map[string]any:
		if t == "" || t == "Resource" || t == "DomainResource" {
			if rt, ok := x["resourceType"].(string); ok {
				t = rt
			}
		}
	}
	return append(out, item{v: v, t: t})
}

// typeOf is the item's FHIR type, inferred from the JSON value when the
// type model did not tell.
func typeOf(it item) string {
	if it.t != "" {
		return it.t
	}
	if t, ok := primitiveType(it.v); ok {
		return t
	}
	switch x := it.v.(type) {
	case map[string]any:
		if rt, ok := x["resourceType"].(string); ok {
			return rt
		}
	case resolvedRef:
		return x.typ
	}
	return ""
}

// primitiveType is the FHIR primitive type a JSON scalar stands for
// (json.html#primitive): string, boolean, decimal or integer.
func primitiveType(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return "string", true
	case bool:
		return "boolean", true
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return "decimal", true
		}
		return "integer", true
	case float64:
		return "decimal", true
	}
	return "", false
}

type fpIndex struct{ x, idx fpExpr }

func (n *fpIndex) eval(c *fpCtx, focus []item) ([]item, error) {
	in, err := n.x.eval(c, focus)
	if err != nil {
		return nil, err
	}
	ix, err := n.idx.eval(c, focus)
	if err != nil {
		return nil, err
	}
	i, ok := intOf(ix)
	if !ok {
		return nil, fmt.Errorf("indexer needs an integer")
	}
	if i < 0 || i >= len(in) {
		return nil, nil
	}
	return in[i : i+1], nil
}

func intOf(items []item) (int, bool) {
	if len(items) != 1 {
		return 0, false
	}
	f, ok := numOf(items[0].v)
	if !ok || f != float64(int(f)) {
		return 0, false
	}
	return int(f), true
}

func numOf(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	}
	return 0, false
}

type fpNeg struct{ x fpExpr }

func (n *fpNeg) eval(c *fpCtx, focus []item) ([]item, error) {
	in, err := n.x.eval(c, focus)
	if err != nil || len(in) == 0 {
		return nil, err
	}
	if len(in) != 1 {
		return nil, fmt.Errorf("unary minus needs a single number")
	}
	f, ok := numOf(in[0].v)
	if !ok {
		return nil, fmt.Errorf("unary minus needs a number")
	}
	return []item{{v: -f, t: "decimal"}}, nil
}

// fpTypeOp is "x is T" / "x as T" (fhirpath.html#types).
type fpTypeOp struct {
	op  string
	x   fpExpr
	typ string
}

func (n *fpTypeOp) eval(c *fpCtx, focus []item) ([]item, error) {
	in, err := n.x.eval(c, focus)
	if err != nil {
		return nil, err
	}
	if n.op == "is" {
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, fmt.Errorf("'is' needs a single item, got %d", len(in))
		}
		return boolItem(c.m.isA(typeOf(in[0]), n.typ)), nil
	}
	// "as" on a collection filters it; R4 expressions use it on repeating
	// elements (e.g. useContext.value as Quantity), so be lenient.
	return ofType(c.m, in, n.typ), nil
}

func ofType(m *typeModel, in []item, typ string) []item {
	var out []item
	for _, it := range in {
		if m.isA(typeOf(it), typ) {
			out = append(out, it)
		}
	}
	return out
}

func boolItem(b bool) []item { return []item{{v: b, t: "boolean"}} }

// fpBinary is a binary operator (fhirpath.html#operations).
type fpBinary struct {
	op   string
	l, r fpExpr
}

func (n *fpBinary) eval(c *fpCtx, focus []item) ([]item, error) {
	l, err := n.l.eval(c, focus)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "and", "or", "xor", "implies":
		return n.logic(c, focus, l)
	}
	r, err := n.r.eval(c, focus)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "|":
		return union(l, r), nil
	case "=", "!=", "~", "!~":
		if (n.op == "=" || n.op == "!=") && (len(l) == 0 || len(r) == 0) {
			return nil, nil
		}
		eq := len(l) == len(r)
		for i := 0; eq && i < len(l); i++ {
			if n.op == "~" || n.op == "!~" {
				eq = itemEquivalent(l[i], r[i])
			} else {
				eq = itemEqual(l[i], r[i])
			}
		}
		if n.op == "!=" || n.op == "!~" {
			eq = !eq
		}
		return boolItem(eq), nil
	case "<", ">", "<=", ">=":
		if len(l) == 0 || len(r) == 0 {
			return nil, nil
		}
		if len(l) != 1 || len(r) != 1 {
			return nil, fmt.Errorf("%s needs single items", n.op)
		}
		cmp, ok := compareItems(l[0], r[0])
		if !ok {
			return nil, nil
		}
		switch n.op {
		case "<":
			return boolItem(cmp < 0), nil
		case ">":
			return boolItem(cmp > 0), nil
		case "<=":
			return boolItem(cmp <= 0), nil
		}
		return boolItem(cmp >= 0), nil
	case "in", "contains":
		elem, coll := l, r
		if n.op == "contains" {
			elem, coll = r, l
		}
		if len(elem) == 0 {
			return nil, nil
		}
		if len(elem) != 1 {
			return nil, fmt.Errorf("%s needs a single item", n.op)
		}
		for _, it := range coll {
			if itemEqual(it, elem[0]) {
				return boolItem(true), nil
			}
		}
		return boolItem(false), nil
	case "&":
		ls, _ := stringOf(l)
		rs, _ := stringOf(r)
		return []item{{v: ls + rs, t: "string"}}, nil
	case "+", "-", "*", "/", "div", "mod":
		return arith(n.op, l, r)
	}
	return nil, fmt.Errorf("unsupported operator %s", n.op)
}

// logic implements three-valued and/or/xor/implies (fhirpath.html#boolean-logic).
func (n *fpBinary) logic(c *fpCtx, focus []item, l []item) ([]item, error) {
	lb, lok, err := boolOf(l)
	if err != nil {
		return nil, err
	}
	// Short-circuit where the result is known.
	switch {
	case n.op == "and" && lok && !lb:
		return boolItem(false), nil
	case n.op == "or" && lok && lb:
		return boolItem(true), nil
	case n.op == "implies" && lok && !lb:
		return boolItem(true), nil
	}
	r, err := n.r.eval(c, focus)
	if err != nil {
		return nil, err
	}
	rb, rok, err := boolOf(r)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "and":
		if rok && !rb {
			return boolItem(false), nil
		}
		if lok && rok {
			return boolItem(true), nil
		}
	case "or":
		if rok && rb {
			return boolItem(true), nil
		}
		if lok && rok {
			return boolItem(false), nil
		}
	case "xor":
		if lok && rok {
			return boolItem(lb != rb), nil
		}
	case "implies":
		if rok && rb {
			return boolItem(true), nil
		}
		if lok && rok {
			return boolItem(!rb), nil
		}
	}
	return nil, nil
}

// boolOf converts a collection to a boolean (fhirpath.html#singleton):
// ok is false for the empty collection.
func boolOf(items []item) (val, ok bool, err error) {
	switch len(items) {
	case 0:
		return false, false, nil
	case 1:
		if b, isBool := items[0].v.(bool); isBool {
			return b, true, nil
		}
		return true, true, nil
	}
	return false, false, fmt.Errorf("expected a single boolean, got %d items", len(items))
}

func stringOf(items []item) (string, bool) {
	if len(items) != 1 {
		return "", false
	}
	switch x := items[0].v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	case float64:
		return json.Number(fmt.Sprint(x)).String(), true
	}
	return "", false
}

// union merges two collections (fhirpath.html#union). Duplicates are
// removed for small collections only: extraction deduplicates index values
// anyway, and large code lists would make pairwise comparison quadratic.
func union(l, r []item) []item {
	switch {
	case len(r) == 0:
		return l
	case len(l) == 0:
		return r
	}
	out := make([]item, 0, len(l)+len(r))
	if len(l)+len(r) > 32 {
		return append(append(out, l...), r...)
	}
	for _, it := range l {
		out = appendDistinct(out, it)
	}
	for _, it := range r {
		out = appendDistinct(out, it)
	}
	return out
}

func appendDistinct(out []item, it item) []item {
	for _, o := range out {
		if sameItem(o, it) {
			return out
		}
	}
	return append(out, it)
}

// sameItem is a cheap identity test for union: the same primitive value,
// or the same JSON object (by pointer).
func sameItem(a, b item) bool {
	switch x := a.v.(type) {
	case map[string]any:
		y, ok := b.v.(map[string]any)
		return ok && len(x) == len(y) && reflect.ValueOf(x).UnsafePointer() == reflect.ValueOf(y).UnsafePointer()
	case []any:
		return false
	}
	return itemEqual(a, b)
}

func itemEqual(a, b item) bool {
	switch x := a.v.(type) {
	case string:
		y, ok := b.v.(string)
		return ok && x == y
	case bool:
		y, ok := b.v.(bool)
		return ok && x == y
	case resolvedRef:
		y, ok := b.v.(resolvedRef)
		return ok && x == y
	case map[string]any:
		y, ok := b.v.(map[string]any)
		return ok && jsonEqual(x, y)
	}
	if x, ok := numOf(a.v); ok {
		y, ok := numOf(b.v)
		return ok && x == y
	}
	return false
}

func itemEquivalent(a, b item) bool {
	if x, ok := a.v.(string); ok {
		y, ok := b.v.(string)
		return ok && Fold(x) == Fold(y)
	}
	return itemEqual(a, b)
}

func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return itemEqual(item{v: a}, item{v: b})
}

func compareItems(a, b item) (int, bool) {
	if x, ok := numOf(a.v); ok {
		y, ok := numOf(b.v)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	}
	x, ok1 := a.v.(string)
	y, ok2 := b.v.(string)
	if !ok1 || !ok2 {
		return 0, false
	}
	return strings.Compare(x, y), true
}

func arith(op string, l, r []item) ([]item, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) != 1 || len(r) != 1 {
		return nil, fmt.Errorf("%s needs single items", op)
	}
	if op == "+" {
		if x, ok := l[0].v.(string); ok {
			if y, ok := r[0].v.(string); ok {
				return []item{{v: x + y, t: "string"}}, nil
			}
		}
	}
	x, ok1 := numOf(l[0].v)
	y, ok2 := numOf(r[0].v)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%s needs numbers", op)
	}
	var v float64
	switch op {
	case "+":
		v = x + y
	case "-":
		v = x - y
	case "*":
		v = x * y
	case "/", "div", "mod":
		if y == 0 {
			return nil, nil
		}
		switch op {
		case "/":
			v = x / y
		case "div":
			v = float64(int64(x / y))
		default:
			v = x - y*float64(int64(x/y))
		}
	}
	return []item{{v: v, t: "decimal"}}, nil
}

// ---------------------------------------------------------------- functions

// fpCall is a function invocation (fhirpath.html#functions).
type fpCall struct {
	x    fpExpr // nil: the focus
	name string
	args []fpExpr
	typ  string // as/is/ofType argument
}

var fnArity = map[string][2]int{
	"where": {1, 1}, "select": {1, 1}, "exists": {0, 1}, "all": {1, 1}, "empty": {0, 0}, "not": {0, 0},
	"first": {0, 0}, "last": {0, 0}, "tail": {0, 0}, "skip": {1, 1}, "take": {1, 1}, "count": {0, 0},
	"single": {0, 0}, "distinct": {0, 0}, "ofType": {1, 1}, "as": {1, 1}, "is": {1, 1}, "resolve": {0, 0},
	"extension": {1, 1}, "hasExtension": {1, 1}, "hasValue": {0, 0}, "iif": {2, 3}, "union": {1, 1},
	"combine": {1, 1}, "startsWith": {1, 1}, "endsWith": {1, 1}, "contains": {1, 1}, "lower": {0, 0},
	"upper": {0, 0}, "toString": {0, 0}, "trace": {1, 2}, "children": {0, 0}, "getValue": {0, 0},
}

func newCall(x fpExpr, name string, args []fpExpr) (fpExpr, error) {
	ar, ok := fnArity[name]
	if !ok {
		return nil, fmt.Errorf("function %s() is not supported", name)
	}
	if len(args) < ar[0] || len(args) > ar[1] {
		return nil, fmt.Errorf("%s() takes %d..%d arguments, got %d", name, ar[0], ar[1], len(args))
	}
	c := &fpCall{x: x, name: name, args: args}
	switch name {
	case "as", "is", "ofType":
		t, ok := typeName(args[0])
		if !ok {
			return nil, fmt.Errorf("%s() needs a type name", name)
		}
		c.typ = normType(t)
	}
	return c, nil
}

func typeName(e fpExpr) (string, bool) {
	m, ok := e.(*fpMember)
	if !ok {
		return "", false
	}
	if m.x == nil {
		return m.name, true
	}
	prefix, ok := typeName(m.x)
	if !ok {
		return "", false
	}
	return prefix + "." + m.name, true
}

func (n *fpCall) eval(c *fpCtx, focus []item) ([]item, error) {
	in := focus
	if n.x != nil {
		var err error
		if in, err = n.x.eval(c, focus); err != nil {
			return nil, err
		}
	}
	switch n.name {
	case "where", "select", "all", "exists":
		if n.name == "exists" && len(n.args) == 0 {
			return boolItem(len(in) > 0), nil
		}
		var out []item
		for _, it := range in {
			r, err := n.args[0].eval(c, []item{it})
			if err != nil {
				return nil, err
			}
			if n.name == "select" {
				out = append(out, r...)
				continue
			}
			b, ok, err := boolOf(r)
			if err != nil {
				return nil, fmt.Errorf("%s(): %w", n.name, err)
			}
			switch n.name {
			case "where":
				if ok && b {
					out = append(out, it)
				}
			case "exists":
				if ok && b {
					return boolItem(true), nil
				}
			case "all":
				if !ok || !b {
					return boolItem(false), nil
				}
			}
		}
		switch n.name {
		case "exists":
			return boolItem(false), nil
		case "all":
			return boolItem(true), nil
		}
		return out, nil
	case "empty":
		return boolItem(len(in) == 0), nil
	case "not":
		b, ok, err := boolOf(in)
		if err != nil || !ok {
			return nil, err
		}
		return boolItem(!b), nil
	case "first":
		if len(in) == 0 {
			return nil, nil
		}
		return in[:1], nil
	case "last":
		if len(in) == 0 {
			return nil, nil
		}
		return in[len(in)-1:], nil
	case "tail":
		if len(in) <= 1 {
			return nil, nil
		}
		return in[1:], nil
	case "skip", "take":
		a, err := n.args[0].eval(c, focus)
		if err != nil {
			return nil, err
		}
		k, ok := intOf(a)
		if !ok {
			return nil, fmt.Errorf("%s() needs an integer", n.name)
		}
		k = max(0, min(k, len(in)))
		if n.name == "skip" {
			return in[k:], nil
		}
		return in[:k], nil
	case "count":
		return []item{{v: json.Number(fmt.Sprint(len(in))), t: "integer"}}, nil
	case "single":
		if len(in) > 1 {
			return nil, fmt.Errorf("single(): %d items", len(in))
		}
		return in, nil
	case "distinct":
		var out []item
		for _, it := range in {
			dup := false
			for _, o := range out {
				if itemEqual(o, it) {
					dup = true
					break
				}
			}
			if !dup {
				out = append(out, it)
			}
		}
		return out, nil
	case "ofType", "as":
		return ofType(c.m, in, n.typ), nil
	case "is":
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, fmt.Errorf("is(): %d items", len(in))
		}
		return boolItem(c.m.isA(typeOf(in[0]), n.typ)), nil
	case "resolve":
		var out []item
		for _, it := range in {
			if r, ok := c.resolve(it); ok {
				out = append(out, r)
			}
		}
		return out, nil
	case "extension", "hasExtension":
		a, err := n.args[0].eval(c, focus)
		if err != nil {
			return nil, err
		}
		url, _ := stringOf(a)
		var out []item
		for _, it := range in {
			obj, ok := it.v.(map[string]any)
			if !ok {
				continue
			}
			exts, _ := obj["extension"].([]any)
			for _, e := range exts {
				if em, ok := e.(map[string]any); ok && em["url"] == url {
					out = append(out, item{v: em, t: "Extension"})
				}
			}
		}
		if n.name == "hasExtension" {
			return boolItem(len(out) > 0), nil
		}
		return out, nil
	case "hasValue":
		if len(in) != 1 {
			return boolItem(false), nil
		}
		switch in[0].v.(type) {
		case string, bool, json.Number, float64:
			return boolItem(true), nil
		}
		return boolItem(false), nil
	case "getValue":
		if len(in) != 1 {
			return nil, nil
		}
		switch in[0].v.(type) {
		case string, bool, json.Number, float64:
			return in, nil
		}
		return nil, nil
	case "iif":
		cond, err := n.args[0].eval(c, in)
		if err != nil {
			return nil, err
		}
		b, ok, err := boolOf(cond)
		if err != nil {
			return nil, err
		}
		if ok && b {
			return n.args[1].eval(c, in)
		}
		if len(n.args) == 3 {
			return n.args[2].eval(c, in)
		}
		return nil, nil
	case "union", "combine":
		other, err := n.args[0].eval(c, focus)
		if err != nil {
			return nil, err
		}
		if n.name == "union" {
			return union(in, other), nil
		}
		return append(append([]item(nil), in...), other...), nil
	case "startsWith", "endsWith", "contains":
		if len(in) == 0 {
			return nil, nil
		}
		s, ok := stringOf(in)
		if !ok {
			return nil, fmt.Errorf("%s() needs a single string", n.name)
		}
		a, err := n.args[0].eval(c, focus)
		if err != nil {
			return nil, err
		}
		sub, ok := stringOf(a)
		if !ok {
			return nil, nil
		}
		switch n.name {
		case "startsWith":
			return boolItem(strings.HasPrefix(s, sub)), nil
		case "endsWith":
			return boolItem(strings.HasSuffix(s, sub)), nil
		}
		return boolItem(strings.Contains(s, sub)), nil
	case "lower", "upper", "toString":
		if len(in) == 0 {
			return nil, nil
		}
		s, ok := stringOf(in)
		if !ok {
			return nil, nil
		}
		switch n.name {
		case "lower":
			s = strings.ToLower(s)
		case "upper":
			s = strings.ToUpper(s)
		}
		return []item{{v: s, t: "string"}}, nil
	case "trace":
		return in, nil
	case "children":
		var out []item
		for _, it := range in {
			if obj, ok := it.v.(map[string]any); ok {
				for k := range obj {
					if k != "resourceType" && k[0] != '_' {
						out = c.m.child(it, k, out)
					}
				}
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("function %s() is not supported", n.name)
}

// resolve follows a Reference (or canonical/uri) as far as the evaluator
// can without a database: contained references ("#id") yield the contained
// resource, others a resolvedRef carrying the target type and id, which is
// enough for "resolve() is Patient" (fhirpath.html#functions, resolve()).
func (c *fpCtx) resolve(it item) (item, bool) {
	var ref, typ string
	switch x := it.v.(type) {
	case string:
		ref = x
	case map[string]any:
		if rt, ok := x["resourceType"].(string); ok {
			return item{v: x, t: rt}, true
		}
		ref, _ = x["reference"].(string)
		typ, _ = x["type"].(string)
	default:
		return item{}, false
	}
	if id, ok := strings.CutPrefix(ref, "#"); ok {
		root, _ := c.root.v.(map[string]any)
		contained, _ := root["contained"].([]any)
		for _, r := range contained {
			if rm, ok := r.(map[string]any); ok && rm["id"] == id {
				rt, _ := rm["resourceType"].(string)
				return item{v: rm, t: rt}, true
			}
		}
		return item{}, false
	}
	rt, id := refTypeID(ref)
	if rt == "" || !c.m.resources[rt] {
		rt = typ
	}
	if rt == "" {
		return item{}, false
	}
	return item{v: resolvedRef{typ: rt, id: id}, t: rt}, true
}

// refTypeID extracts Type and id from "Type/id", "Type/id/_history/v" or
// an absolute URL ending in one of these (references.html#literal).
func refTypeID(ref string) (typ, id string) {
	ref, _, _ = strings.Cut(ref, "|")
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	ref = strings.TrimSuffix(ref, "/")
	slash := strings.LastIndexByte(ref, '/')
	if slash <= 0 {
		return "", ""
	}
	id = ref[slash+1:]
	rest := ref[:slash]
	typ = rest[strings.LastIndexByte(rest, '/')+1:]
	if typ == "" || typ[0] < 'A' || typ[0] > 'Z' || id == "" {
		return "", ""
	}
	return typ, id
}
