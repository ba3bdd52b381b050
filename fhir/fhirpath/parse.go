package fhirpath

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
)

// The parser (fhirpath.html#grammar) and the syntax tree it builds. The
// tree is exported so that callers can analyse an expression statically
// (search prunes union branches and computes extraction gates; FHIRPath
// Patch checks that a path only selects elements); it is evaluated by
// Context.Eval.

// MaxLen bounds the length of an expression (custom SearchParameters and
// patch paths are client input).
const MaxLen = 8192

// Expr is a compiled FHIRPath expression: one of *Literal, This, *Var,
// *Member, *Index, *Neg, *TypeOp, *Binary and *Call. A compiled expression
// is immutable and safe for concurrent evaluation.
type Expr interface {
	eval(c *Context, focus []Item) ([]Item, error)
}

// Literal is a literal (fhirpath.html#literals): a string, a number
// (json.Number, typed integer or decimal), a boolean, a date or dateTime
// (as its text), or {} (no items).
type Literal struct{ Items []Item }

// This is $this, the focus (fhirpath.html#functions).
type This struct{}

// Var is an environment variable %Name (fhirpath.html#environment-variables).
type Var struct{ Name string }

// Member navigates to the child elements Name of each item of X (nil: of the
// focus); as the first step of a path, a type name selects the focus items
// of that type (fhirpath.html#path-selection).
type Member struct {
	X    Expr
	Name string
	// last caches the model's answer for the parent type seen last
	// (evaluation mostly meets one parent type per node): an atomic
	// pointer to an immutable entry, so concurrent evaluations share it.
	last atomic.Pointer[memberInfo]
}

// Index is X[Index] (fhirpath.html#index-invocations).
type Index struct{ X, Index Expr }

// Neg is unary minus (fhirpath.html#math).
type Neg struct{ X Expr }

// TypeOp is "X is Type" or "X as Type" (fhirpath.html#types); Type is the
// type name without the FHIR namespace.
type TypeOp struct {
	Op   string // "is" or "as"
	X    Expr
	Type string
}

// Binary is a binary operator (fhirpath.html#operations): | = != ~ !~ < >
// <= >= + - * / & div mod in contains and or xor implies.
type Binary struct {
	Op   string
	L, R Expr
}

// Call is a function invocation (fhirpath.html#functions) on X (nil: the
// focus). Type is the type argument of as(), is() and ofType().
type Call struct {
	X    Expr
	Name string
	Args []Expr
	Type string
	fn   *function
}

type parser struct {
	toks []token
	i    int
}

// SyntaxError is an expression Compile refuses.
type SyntaxError struct {
	Expr string // the expression (cut to 100 bytes)
	Msg  string // what is wrong, with the byte offset where it applies
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("fhirpath %q: %s", e.Expr, e.Msg) }

// Compile parses a FHIRPath expression. It fails, with a *SyntaxError, on
// syntax errors, on functions the engine does not implement (Functions) and
// on a wrong number of arguments.
func Compile(src string) (Expr, error) {
	fail := func(err error) (Expr, error) {
		short := src
		if len(short) > 100 {
			short = short[:97] + "..."
		}
		return nil, &SyntaxError{Expr: short, Msg: err.Error()}
	}
	if len(src) > MaxLen {
		return fail(fmt.Errorf("longer than %d characters", MaxLen))
	}
	toks, err := lex(src)
	if err != nil {
		return fail(err)
	}
	p := &parser{toks: toks}
	e, err := p.expr(0)
	if err != nil {
		return fail(err)
	}
	if t := p.peek(); t.kind != tkEOF {
		return fail(fmt.Errorf("unexpected %q at %d", t.s, t.pos))
	}
	return e, nil
}

// MustCompile is Compile for expressions known to be valid; it panics on an error.
func MustCompile(src string) Expr {
	e, err := Compile(src)
	if err != nil {
		panic(err)
	}
	return e
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *parser) expect(op string) error {
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

func (p *parser) expr(minPrec int) (Expr, error) {
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
			left = &TypeOp{Op: t.s, X: left, Type: typ}
			continue
		}
		right, err := p.expr(prec + 1)
		if err != nil {
			return nil, err
		}
		left = &Binary{Op: t.s, L: left, R: right}
	}
}

func (p *parser) typeSpec() (string, error) {
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

// normType strips the FHIR. / System. namespace of a type specifier
// (fhirpath.html#types); System types are named by the FHIR primitive that
// carries them.
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

func (p *parser) unary() (Expr, error) {
	if t := p.peek(); t.kind == tkOp && (t.s == "-" || t.s == "+") {
		p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if t.s == "+" {
			return x, nil
		}
		return &Neg{X: x}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (Expr, error) {
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
			if x, err = p.invocation(x, id); err != nil {
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
			x = &Index{X: x, Index: idx}
		default:
			return x, nil
		}
	}
}

// invocation parses a member or function call on target (nil: the focus).
func (p *parser) invocation(target Expr, id token) (Expr, error) {
	if n := p.peek(); n.kind != tkOp || n.s != "(" || id.quoted {
		return &Member{X: target, Name: id.s}, nil
	}
	p.next()
	var args []Expr
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

func newCall(x Expr, name string, args []Expr) (Expr, error) {
	f, ok := functions[name]
	if !ok {
		return nil, fmt.Errorf("function %s() is not supported", name)
	}
	if len(args) < f.min || len(args) > f.max {
		return nil, fmt.Errorf("%s() takes %d..%d arguments, got %d", name, f.min, f.max, len(args))
	}
	c := &Call{X: x, Name: name, Args: args, fn: f}
	if f.typeArg {
		t, ok := typeName(args[0])
		if !ok {
			return nil, fmt.Errorf("%s() needs a type name", name)
		}
		c.Type = normType(t)
	}
	return c, nil
}

// typeName reads a type specifier given as a function argument (ofType(FHIR.Quantity)).
func typeName(e Expr) (string, bool) {
	m, ok := e.(*Member)
	if !ok {
		return "", false
	}
	if m.X == nil {
		return m.Name, true
	}
	prefix, ok := typeName(m.X)
	if !ok {
		return "", false
	}
	return prefix + "." + m.Name, true
}

func (p *parser) term() (Expr, error) {
	t := p.next()
	switch t.kind {
	case tkString:
		return &Literal{Items: []Item{{V: t.s, T: "string"}}}, nil
	case tkNumber:
		typ := "integer"
		if strings.Contains(t.s, ".") {
			typ = "decimal"
		}
		return &Literal{Items: []Item{{V: json.Number(t.s), T: typ}}}, nil
	case tkDate:
		typ := "dateTime"
		if !strings.Contains(t.s, "T") {
			typ = "date"
		}
		return &Literal{Items: []Item{{V: strings.TrimPrefix(t.s, "T"), T: typ}}}, nil
	case tkVar:
		return &Var{Name: t.s}, nil
	case tkIdent:
		if !t.quoted {
			switch t.s {
			case "true", "false":
				return &Literal{Items: []Item{{V: t.s == "true", T: "boolean"}}}, nil
			case "$this":
				return This{}, nil
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
			return &Literal{}, nil
		}
	case tkEOF:
		return nil, fmt.Errorf("unexpected end of expression")
	}
	return nil, fmt.Errorf("unexpected %q at %d", t.s, t.pos)
}
