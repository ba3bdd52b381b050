package patch

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// This file is the FHIRPath subset FHIRPath Patch paths use (fhirpatch.html,
// fhirpath.html): Type.element.element navigation (choice elements by their
// base name: Observation.value), indexers [n], and the functions where(),
// first(), last(), extension(url), ofType(Type), and, inside where(),
// exists(), empty(), not(), '=', '!=', 'and', 'or', parentheses and $this.
// resolve() and everything else are rejected: a patch path SHALL NOT cross
// resources.

type stepKind int

const (
	stepName stepKind = iota
	stepIndex
	stepFunc
)

type step struct {
	kind  stepKind
	name  string // element or function name
	index int
	arg   *cond  // where() criterion
	sarg  string // extension(url), ofType(Type)
}

type pathExpr struct {
	this  bool // starts with $this
	steps []step
}

// cond is a where() criterion.
type cond struct {
	op          string // "or", "and", "=", "!=", "path", "lit"
	left, right *cond
	path        *pathExpr
	lit         any // string, json.Number, bool
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tPunct
)

type token struct {
	kind tokKind
	text string
	pos  int
}

type lexer struct {
	src  string
	toks []token
	i    int
}

func lex(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != '\''; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
					switch src[j] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					case 'f':
						b.WriteByte('\f')
					case 'u':
						if j+4 < len(src) {
							if n, err := strconv.ParseUint(src[j+1:j+5], 16, 32); err == nil {
								b.WriteRune(rune(n))
								j += 4
								continue
							}
						}
						return nil, fmt.Errorf("bad \\u escape at %d", j)
					default:
						b.WriteByte(src[j])
					}
					continue
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("unterminated string starting at %d", i)
			}
			toks = append(toks, token{tString, b.String(), i})
			i = j + 1
		case c == '`':
			j := strings.IndexByte(src[i+1:], '`')
			if j < 0 {
				return nil, fmt.Errorf("unterminated `identifier` at %d", i)
			}
			toks = append(toks, token{tIdent, src[i+1 : i+1+j], i})
			i += j + 2
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9') {
				j++
			}
			if j+1 < len(src) && src[j] == '.' && src[j+1] >= '0' && src[j+1] <= '9' {
				j++
				for j < len(src) && (src[j] >= '0' && src[j] <= '9') {
					j++
				}
			}
			toks = append(toks, token{tNumber, src[i:j], i})
			i = j
		case c == '_' || c == '$' || (c|0x20 >= 'a' && c|0x20 <= 'z'):
			j := i + 1
			for j < len(src) && (src[j] == '_' || (src[j] >= '0' && src[j] <= '9') || (src[j]|0x20 >= 'a' && src[j]|0x20 <= 'z')) {
				j++
			}
			toks = append(toks, token{tIdent, src[i:j], i})
			i = j
		case c == '!' && i+1 < len(src) && src[i+1] == '=':
			toks = append(toks, token{tPunct, "!=", i})
			i += 2
		case strings.IndexByte(".[]()=,-", c) >= 0:
			toks = append(toks, token{tPunct, string(c), i})
			i++
		default:
			return nil, fmt.Errorf("unexpected character %q at %d", c, i)
		}
	}
	return append(toks, token{tEOF, "", len(src)}), nil
}

func (l *lexer) peek() token { return l.toks[l.i] }
func (l *lexer) next() token { t := l.toks[l.i]; l.i++; return t }
func (l *lexer) isPunct(s string) bool {
	t := l.peek()
	return t.kind == tPunct && t.text == s
}
func (l *lexer) expect(s string) error {
	t := l.next()
	if t.kind != tPunct || t.text != s {
		return fmt.Errorf("expected %q at %d", s, t.pos)
	}
	return nil
}

// parsePath parses a FHIRPath Patch path.
func parsePath(src string) (*pathExpr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	l := &lexer{src: src, toks: toks}
	p, err := l.path()
	if err != nil {
		return nil, err
	}
	if t := l.peek(); t.kind != tEOF {
		return nil, fmt.Errorf("unexpected %q at %d", t.text, t.pos)
	}
	return p, nil
}

func (l *lexer) path() (*pathExpr, error) {
	p := &pathExpr{}
	t := l.peek()
	if t.kind != tIdent {
		return nil, fmt.Errorf("expected an element name at %d", t.pos)
	}
	if t.text == "$this" {
		l.next()
		p.this = true
	} else if err := l.invocation(p); err != nil {
		return nil, err
	}
	for {
		switch {
		case l.isPunct("."):
			l.next()
			if err := l.invocation(p); err != nil {
				return nil, err
			}
		case l.isPunct("["):
			l.next()
			t := l.next()
			if t.kind != tNumber || strings.Contains(t.text, ".") {
				return nil, fmt.Errorf("expected an integer index at %d", t.pos)
			}
			n, err := strconv.Atoi(t.text)
			if err != nil {
				return nil, fmt.Errorf("bad index %q at %d", t.text, t.pos)
			}
			if err := l.expect("]"); err != nil {
				return nil, err
			}
			p.steps = append(p.steps, step{kind: stepIndex, index: n})
		default:
			return p, nil
		}
	}
}

func (l *lexer) invocation(p *pathExpr) error {
	t := l.next()
	if t.kind != tIdent || strings.HasPrefix(t.text, "$") {
		return fmt.Errorf("expected an element or function name at %d", t.pos)
	}
	if !l.isPunct("(") {
		p.steps = append(p.steps, step{kind: stepName, name: t.text})
		return nil
	}
	l.next()
	s := step{kind: stepFunc, name: t.text}
	switch t.text {
	case "first", "last", "exists", "empty", "not":
	case "where":
		c, err := l.or()
		if err != nil {
			return err
		}
		s.arg = c
	case "extension", "ofType":
		a := l.next()
		if (t.text == "extension" && a.kind != tString) || (t.text == "ofType" && a.kind != tIdent) {
			return fmt.Errorf("bad argument of %s() at %d", t.text, a.pos)
		}
		s.sarg = a.text
	default:
		return fmt.Errorf("function %s() is not supported in a patch path", t.text)
	}
	if err := l.expect(")"); err != nil {
		return err
	}
	p.steps = append(p.steps, s)
	return nil
}

func (l *lexer) or() (*cond, error) {
	left, err := l.and()
	if err != nil {
		return nil, err
	}
	for t := l.peek(); t.kind == tIdent && t.text == "or"; t = l.peek() {
		l.next()
		right, err := l.and()
		if err != nil {
			return nil, err
		}
		left = &cond{op: "or", left: left, right: right}
	}
	return left, nil
}

func (l *lexer) and() (*cond, error) {
	left, err := l.cmp()
	if err != nil {
		return nil, err
	}
	for t := l.peek(); t.kind == tIdent && t.text == "and"; t = l.peek() {
		l.next()
		right, err := l.cmp()
		if err != nil {
			return nil, err
		}
		left = &cond{op: "and", left: left, right: right}
	}
	return left, nil
}

func (l *lexer) cmp() (*cond, error) {
	if l.isPunct("(") {
		l.next()
		c, err := l.or()
		if err != nil {
			return nil, err
		}
		return c, l.expect(")")
	}
	left, err := l.operand()
	if err != nil {
		return nil, err
	}
	if l.isPunct("=") || l.isPunct("!=") {
		op := l.next().text
		right, err := l.operand()
		if err != nil {
			return nil, err
		}
		return &cond{op: op, left: left, right: right}, nil
	}
	return left, nil
}

func (l *lexer) operand() (*cond, error) {
	t := l.peek()
	switch {
	case t.kind == tString:
		l.next()
		return &cond{op: "lit", lit: t.text}, nil
	case t.kind == tNumber:
		l.next()
		return &cond{op: "lit", lit: json.Number(t.text)}, nil
	case t.kind == tPunct && t.text == "-":
		l.next()
		n := l.next()
		if n.kind != tNumber {
			return nil, fmt.Errorf("expected a number at %d", n.pos)
		}
		return &cond{op: "lit", lit: json.Number("-" + n.text)}, nil
	case t.kind == tIdent && (t.text == "true" || t.text == "false"):
		l.next()
		return &cond{op: "lit", lit: t.text == "true"}, nil
	case t.kind == tIdent:
		p, err := l.path()
		if err != nil {
			return nil, err
		}
		return &cond{op: "path", path: p}, nil
	}
	return nil, fmt.Errorf("unexpected %q at %d", t.text, t.pos)
}

// item is one node a path selected, with where it lives so an operation
// can change it: parent.vals[key] (or parent.vals[key][idx] when idx >= 0).
type item struct {
	val    any
	parent *object
	key    string // the JSON key (a choice element's key carries its type: valueQuantity)
	idx    int
	ctx    string   // model context for the children (a type or backbone path)
	def    *elemDef // nil for the root or elements outside the model
	typ    string   // the FHIR type of the value when known
}

// evalError is a path that cannot be evaluated against this resource.
type evalError struct{ msg string }

func (e *evalError) Error() string { return e.msg }

func evalErrorf(format string, args ...any) error {
	return &evalError{fmt.Sprintf(format, args...)}
}

// evalRoot evaluates p against the resource root.
func evalRoot(m *model, root *object, p *pathExpr) ([]item, error) {
	rt, _ := root.vals["resourceType"].(string)
	r := item{val: root, idx: -1, ctx: rt, typ: rt}
	steps := p.steps
	if p.this {
		return evalSteps(m, []item{r}, steps)
	}
	if len(steps) > 0 && steps[0].kind == stepName {
		n := steps[0].name
		if n == rt || n == "Resource" || n == "DomainResource" {
			return evalSteps(m, []item{r}, steps[1:])
		}
		if n[0] >= 'A' && n[0] <= 'Z' {
			return nil, evalErrorf("the path starts with %s but the resource is a %s", n, rt)
		}
	}
	return evalSteps(m, []item{r}, steps)
}

func evalSteps(m *model, in []item, steps []step) ([]item, error) {
	cur := in
	for _, s := range steps {
		var next []item
		switch s.kind {
		case stepName:
			for _, it := range cur {
				kids, err := children(m, it, s.name)
				if err != nil {
					return nil, err
				}
				next = append(next, kids...)
			}
		case stepIndex:
			if s.index < len(cur) {
				next = []item{cur[s.index]}
			}
		case stepFunc:
			switch s.name {
			case "first":
				if len(cur) > 0 {
					next = cur[:1]
				}
			case "last":
				if len(cur) > 0 {
					next = cur[len(cur)-1:]
				}
			case "exists":
				next = []item{{val: len(cur) > 0, idx: -1}}
			case "empty":
				next = []item{{val: len(cur) == 0, idx: -1}}
			case "not":
				b, ok := singleBool(cur)
				if !ok {
					return nil, evalErrorf("not() needs a single boolean")
				}
				next = []item{{val: !b, idx: -1}}
			case "where":
				for _, it := range cur {
					ok, err := evalCond(m, it, s.arg)
					if err != nil {
						return nil, err
					}
					if ok {
						next = append(next, it)
					}
				}
			case "extension":
				for _, it := range cur {
					kids, err := children(m, it, "extension")
					if err != nil {
						return nil, err
					}
					for _, k := range kids {
						if o, ok := k.val.(*object); ok && o.vals["url"] == s.sarg {
							next = append(next, k)
						}
					}
				}
			case "ofType":
				for _, it := range cur {
					if strings.EqualFold(it.typ, s.sarg) {
						next = append(next, it)
					}
				}
			}
		}
		cur = next
	}
	return cur, nil
}

func singleBool(items []item) (bool, bool) {
	if len(items) != 1 {
		return false, len(items) == 0
	}
	b, ok := items[0].val.(bool)
	return b, ok
}

// children navigates from it to the element name (fhirpath.html#paths).
func children(m *model, it item, name string) ([]item, error) {
	o, ok := it.val.(*object)
	if !ok {
		return nil, nil
	}
	key, def, typ := resolveChild(m, o, it.ctx, name)
	if def == nil && it.ctx != "" && m.known(it.ctx) && key == "" {
		return nil, evalErrorf("%s has no element %q", it.ctx, name)
	}
	if key == "" {
		return nil, nil
	}
	v, ok := o.vals[key]
	if !ok {
		return nil, nil
	}
	mk := func(val any, idx int) item {
		return item{val: val, parent: o, key: key, idx: idx, def: def, typ: typ, ctx: m.childCtx(def, typ, val)}
	}
	if a, ok := v.([]any); ok {
		out := make([]item, 0, len(a))
		for i, e := range a {
			if e == nil {
				continue // a primitive repetition with only extensions
			}
			out = append(out, mk(e, i))
		}
		return out, nil
	}
	if v == nil {
		return nil, nil
	}
	return []item{mk(v, -1)}, nil
}

// known reports whether ctx is a type or backbone path in the model.
func (m *model) known(ctx string) bool {
	_, ok := m.elems[ctx+".id"]
	return ok
}

// resolveChild finds the JSON key of element name in o: the name itself,
// or for a choice element (name "value" of value[x]) the key carrying the
// type suffix that is present ("valueQuantity"). It also accepts a full
// choice key ("valueQuantity") as name. key is "" when the element is
// absent; def is nil outside the model.
func resolveChild(m *model, o *object, ctx, name string) (key string, def *elemDef, typ string) {
	if def = m.child(ctx, name); def != nil {
		if !def.choice {
			t := ""
			if len(def.types) == 1 {
				t = def.types[0]
			}
			return name, def, t
		}
		for _, t := range def.types {
			k := name + upperFirst(t)
			if _, ok := o.vals[k]; ok {
				return k, def, t
			}
		}
		return "", def, ""
	}
	if d, t := m.choiceKey(ctx, name); d != nil {
		return name, d, t
	}
	if _, ok := o.vals[name]; ok && !m.known(ctx) {
		return name, nil, ""
	}
	return "", nil, ""
}

// choiceKey splits a typed choice key ("valueQuantity", "deceasedDateTime")
// into its element definition and type.
func (m *model) choiceKey(ctx, key string) (*elemDef, string) {
	for i := 1; i < len(key); i++ {
		if key[i] < 'A' || key[i] > 'Z' {
			continue
		}
		d := m.child(ctx, key[:i])
		if d == nil || !d.choice {
			continue
		}
		t, ok := m.suffix[key[i:]]
		if !ok {
			continue
		}
		for _, dt := range d.types {
			if dt == t {
				return d, t
			}
		}
	}
	return nil, ""
}

func evalCond(m *model, it item, c *cond) (bool, error) {
	switch c.op {
	case "or", "and":
		l, err := evalCond(m, it, c.left)
		if err != nil {
			return false, err
		}
		if c.op == "or" && l {
			return true, nil
		}
		if c.op == "and" && !l {
			return false, nil
		}
		return evalCond(m, it, c.right)
	case "=", "!=":
		l, err := operandValues(m, it, c.left)
		if err != nil {
			return false, err
		}
		r, err := operandValues(m, it, c.right)
		if err != nil {
			return false, err
		}
		eq := false
		for _, a := range l {
			for _, b := range r {
				if primEqual(a, b) {
					eq = true
				}
			}
		}
		if c.op == "!=" {
			return len(l) > 0 && len(r) > 0 && !eq, nil
		}
		return eq, nil
	case "path":
		items, err := evalSteps(m, []item{it}, c.path.steps)
		if err != nil {
			return false, err
		}
		if b, ok := singleBool(items); ok && len(items) == 1 {
			return b, nil
		}
		return len(items) > 0, nil
	case "lit":
		b, ok := c.lit.(bool)
		return ok && b, nil
	}
	return false, nil
}

func operandValues(m *model, it item, c *cond) ([]any, error) {
	switch c.op {
	case "lit":
		return []any{c.lit}, nil
	case "path":
		items, err := evalSteps(m, []item{it}, c.path.steps)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(items))
		for i, x := range items {
			out[i] = x.val
		}
		return out, nil
	}
	b, err := evalCond(m, it, c)
	return []any{b}, err
}

// primEqual is FHIRPath '=' on primitives (numbers by value).
func primEqual(a, b any) bool {
	if na, ok := a.(json.Number); ok {
		nb, ok := b.(json.Number)
		if !ok {
			return false
		}
		ra, oka := new(big.Rat).SetString(string(na))
		rb, okb := new(big.Rat).SetString(string(nb))
		return oka && okb && ra.Cmp(rb) == 0
	}
	switch a.(type) {
	case string, bool:
		return a == b
	}
	return false
}
