package fhirpath

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Numbers (fhirpath.html#integer, #decimal, #math). A number is kept as the
// text of its literal, a json.Number, as the resource parser keeps it
// (fhir.ParseJSON), so a decimal's value and precision are never rounded
// through a float64: 0.1 + 0.2 = 0.3, 1.50 = 1.5, and toString() of a value
// read from the resource is its literal. Arithmetic is exact (math/big)
// except division, whose non-terminating quotients are rounded to
// divScale decimal places (FHIRPath requires at least 8).

// divScale is the number of decimal places of a non-terminating quotient.
const divScale = 16

// maxExp and maxDigits bound the exponent and the length of a literal read
// as an exact number; beyond them (an exponent only a tree not made by
// fhir.ParseJSON can hold, or a literal of more than a thousand digits) the
// float64 value is used, so no literal makes the evaluator build huge
// integers.
const (
	maxExp    = 400
	maxDigits = 1000
)

// numOf is the number v holds: a json.Number, or a float64 or int from a
// tree built by other means.
func numOf(v any) (json.Number, bool) {
	switch x := v.(type) {
	case json.Number:
		return x, true
	case float64:
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64)), true
	case int:
		return json.Number(strconv.Itoa(x)), true
	}
	return "", false
}

// rat is the exact value of a number literal; ok is false for text that is
// not a number.
func rat(n json.Number) (*big.Rat, bool) {
	s := string(n)
	huge := len(s) > maxDigits
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		huge = huge || err != nil || e > maxExp || e < -maxExp
	}
	if huge {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, false
		}
		r := new(big.Rat)
		if r.SetFloat64(f) == nil { // ±Inf
			return nil, false
		}
		return r, true
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

// compareNum orders two numbers by value.
func compareNum(a, b json.Number) (int, bool) {
	if a == b {
		return 0, true
	}
	// Fast path: two integers that fit in an int64.
	if x, err := strconv.ParseInt(string(a), 10, 64); err == nil {
		if y, err := strconv.ParseInt(string(b), 10, 64); err == nil {
			switch {
			case x < y:
				return -1, true
			case x > y:
				return 1, true
			}
			return 0, true
		}
	}
	x, ok1 := rat(a)
	y, ok2 := rat(b)
	if !ok1 || !ok2 {
		return 0, false
	}
	return x.Cmp(y), true
}

// intOf is the value of a singleton integer (an indexer, skip(), take()).
func intOf(items []Item) (int, bool) {
	if len(items) != 1 {
		return 0, false
	}
	n, ok := numOf(items[0].V)
	if !ok {
		return 0, false
	}
	if i, err := strconv.Atoi(string(n)); err == nil {
		return i, true
	}
	r, ok := rat(n)
	if !ok || !r.IsInt() || !r.Num().IsInt64() {
		return 0, false
	}
	i := r.Num().Int64()
	if int64(int(i)) != i {
		return 0, false
	}
	return int(i), true
}

// scale is the number of decimal places a literal is written with
// ("1.50" has 2, "1e-3" 3, "1e2" 0).
func scale(n json.Number) int {
	s := string(n)
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		exp, _ = strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		s = s[:i]
	}
	places := 0
	if _, frac, ok := strings.Cut(s, "."); ok {
		places = len(frac)
	}
	return max(places-exp, 0)
}

// isInteger reports whether an item is an Integer (fhirpath.html#integer):
// typed integer (or a type derived from it: positiveInt, unsignedInt), or
// an untyped literal without a fraction or exponent.
func isInteger(it Item) bool {
	switch it.T {
	case "integer", "positiveInt", "unsignedInt", "integer64":
		return true
	case "":
		t, _ := PrimitiveType(it.V)
		return t == "integer"
	}
	return false
}

// numType is the FHIRPath type of a number item: integer or decimal.
func numType(it Item) string {
	if isInteger(it) {
		return "integer"
	}
	return "decimal"
}

// negate is -n, exactly (unary minus, fhirpath.html#math).
func negate(n json.Number) json.Number {
	s := string(n)
	if strings.Trim(s, "-+0.eE") == "" {
		return n // zero stays unsigned
	}
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		return json.Number(rest)
	}
	return json.Number("-" + strings.TrimPrefix(s, "+"))
}

// format writes r with the given number of decimal places (r is exact at it).
func format(r *big.Rat, places int) json.Number {
	if places == 0 && r.IsInt() {
		return json.Number(r.Num().String())
	}
	return json.Number(r.FloatString(places))
}

// decimalPlaces is the number of decimal places of r when its decimal
// expansion terminates within limit places; ok is false otherwise.
func decimalPlaces(r *big.Rat, limit int) (int, bool) {
	d := new(big.Int).Set(r.Denom())
	two, five := big.NewInt(2), big.NewInt(5)
	var twos, fives int
	m := new(big.Int)
	for {
		if q, rem := new(big.Int).QuoRem(d, two, m); rem.Sign() == 0 {
			d, twos = q, twos+1
			continue
		}
		break
	}
	for {
		if q, rem := new(big.Int).QuoRem(d, five, m); rem.Sign() == 0 {
			d, fives = q, fives+1
			continue
		}
		break
	}
	places := max(twos, fives)
	return places, d.IsInt64() && d.Int64() == 1 && places <= limit
}

// arith is + - * / div mod (fhirpath.html#math) on two singletons; + also
// concatenates strings. Division by zero is empty.
func arith(op string, l, r []Item) ([]Item, error) {
	if len(l) == 0 || len(r) == 0 {
		return nil, nil
	}
	if len(l) != 1 || len(r) != 1 {
		return nil, fmt.Errorf("%s needs single items", op)
	}
	if op == "+" {
		if x, ok := l[0].V.(string); ok {
			if y, ok := r[0].V.(string); ok {
				return []Item{{V: x + y, T: "string"}}, nil
			}
		}
	}
	a, ok1 := numOf(l[0].V)
	b, ok2 := numOf(r[0].V)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%s needs numbers", op)
	}
	x, ok1 := rat(a)
	y, ok2 := rat(b)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("%s needs numbers", op)
	}
	ints := isInteger(l[0]) && isInteger(r[0])
	typ := "decimal"
	if ints {
		typ = "integer"
	}
	sa, sb := scale(a), scale(b)
	v := new(big.Rat)
	var n json.Number
	switch op {
	case "+":
		n = format(v.Add(x, y), max(sa, sb))
	case "-":
		n = format(v.Sub(x, y), max(sa, sb))
	case "*":
		n = format(v.Mul(x, y), sa+sb)
	case "/", "div", "mod":
		if y.Sign() == 0 {
			return nil, nil
		}
		q := new(big.Rat).Quo(x, y)
		switch op {
		case "/":
			typ = "decimal"
			if places, ok := decimalPlaces(q, 2*divScale); ok {
				n = format(q, places)
			} else {
				n = json.Number(strings.TrimSuffix(strings.TrimRight(q.FloatString(divScale), "0"), "."))
			}
		case "div":
			typ = "integer"
			n = json.Number(new(big.Int).Quo(q.Num(), q.Denom()).String())
		default:
			t := new(big.Rat).SetInt(new(big.Int).Quo(q.Num(), q.Denom()))
			n = format(v.Sub(x, t.Mul(t, y)), max(sa, sb))
		}
	}
	return []Item{{V: n, T: typ}}, nil
}
