package fhirpath

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The function table (fhirpath.html#functions): every function the engine
// implements, with its arity, in one map. Compile resolves a call against
// it once; evaluation calls the implementation directly.

// function is one entry of the table.
type function struct {
	min, max int
	// typeArg: the argument is a type specifier, read at compile time into
	// Call.Type (as, is, ofType).
	typeArg bool
	// emptyIn: the result is empty whenever the input collection is empty,
	// whatever the arguments (static analysis relies on it: see
	// PropagatesEmpty).
	emptyIn bool
	// eval computes the call: in is the evaluated input collection, focus
	// the focus the call was evaluated in (arguments that do not iterate
	// are evaluated against it).
	eval func(c *Context, n *Call, in, focus []Item) ([]Item, error)
}

var functions = map[string]*function{
	// Existence (fhirpath.html#existence).
	"empty":    {eval: fnEmpty},
	"exists":   {max: 1, eval: fnExists},
	"all":      {min: 1, max: 1, eval: fnAll},
	"hasValue": {eval: fnHasValue},
	"distinct": {emptyIn: true, eval: fnDistinct},
	"count":    {eval: fnCount},
	// Filtering and projection (fhirpath.html#filtering-and-projection).
	"where":  {min: 1, max: 1, emptyIn: true, eval: fnWhere},
	"select": {min: 1, max: 1, emptyIn: true, eval: fnSelect},
	"ofType": {min: 1, max: 1, typeArg: true, emptyIn: true, eval: fnOfType},
	// Subsetting (fhirpath.html#subsetting).
	"single": {emptyIn: true, eval: fnSingle},
	"first":  {emptyIn: true, eval: fnFirst},
	"last":   {emptyIn: true, eval: fnLast},
	"tail":   {emptyIn: true, eval: fnTail},
	"skip":   {min: 1, max: 1, emptyIn: true, eval: fnSkip},
	"take":   {min: 1, max: 1, emptyIn: true, eval: fnTake},
	// Combining (fhirpath.html#combining).
	"union":   {min: 1, max: 1, eval: fnUnion},
	"combine": {min: 1, max: 1, eval: fnCombine},
	// Conversion and strings (fhirpath.html#conversion, #string-manipulation).
	"iif":        {min: 2, max: 3, eval: fnIif},
	"toString":   {eval: fnToString},
	"startsWith": {min: 1, max: 1, eval: fnStartsWith},
	"endsWith":   {min: 1, max: 1, eval: fnEndsWith},
	"contains":   {min: 1, max: 1, eval: fnContains},
	"lower":      {eval: fnLower},
	"upper":      {eval: fnUpper},
	// Tree navigation, boolean logic, utility (fhirpath.html#tree-navigation,
	// #boolean-logic, #utility-functions).
	"children": {eval: fnChildren},
	"not":      {eval: fnNot},
	"trace":    {min: 1, max: 2, eval: fnTrace},
	// Types (fhirpath.html#types).
	"as": {min: 1, max: 1, typeArg: true, emptyIn: true, eval: fnOfType},
	"is": {min: 1, max: 1, typeArg: true, eval: fnIs},
	// FHIR additions (fhirpath.html#functions in the R4 specification).
	"extension":    {min: 1, max: 1, emptyIn: true, eval: fnExtension},
	"hasExtension": {min: 1, max: 1, eval: fnHasExtension},
	"resolve":      {emptyIn: true, eval: fnResolve},
	"getValue":     {eval: fnGetValue},
}

// Functions lists the names of the functions the engine implements, sorted.
func Functions() []string {
	out := make([]string, 0, len(functions))
	for name := range functions {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// PropagatesEmpty reports whether function name yields the empty
// collection for an empty input whatever its arguments (where, first,
// ofType, extension, resolve, ...), so that an expression ending in it is
// empty when its input is.
func PropagatesEmpty(name string) bool {
	f, ok := functions[name]
	return ok && f.emptyIn
}

func (n *Call) eval(c *Context, focus []Item) ([]Item, error) {
	in := focus
	if n.X != nil {
		var err error
		if in, err = n.X.eval(c, focus); err != nil {
			return nil, err
		}
	}
	return n.fn.eval(c, n, in, focus)
}

// filter runs the boolean criterion of where, exists and all on each item
// (fhirpath.html#filtering-and-projection): keep is told the result and
// returns false to stop.
func filter(c *Context, n *Call, in []Item, keep func(it Item, ok, b bool) bool) error {
	one := make([]Item, 1)
	for _, it := range in {
		one[0] = it
		r, err := n.Args[0].eval(c, one)
		if err != nil {
			return err
		}
		b, ok, err := boolOf(r)
		if err != nil {
			return fmt.Errorf("%s(): %w", n.Name, err)
		}
		if !keep(it, ok, b) {
			return nil
		}
	}
	return nil
}

func fnWhere(c *Context, n *Call, in, _ []Item) ([]Item, error) {
	var out []Item
	err := filter(c, n, in, func(it Item, ok, b bool) bool {
		if ok && b {
			out = append(out, it)
		}
		return true
	})
	return out, err
}

func fnExists(c *Context, n *Call, in, _ []Item) ([]Item, error) {
	if len(n.Args) == 0 {
		return boolItem(len(in) > 0), nil
	}
	found := false
	err := filter(c, n, in, func(_ Item, ok, b bool) bool {
		found = ok && b
		return !found
	})
	if err != nil {
		return nil, err
	}
	return boolItem(found), nil
}

func fnAll(c *Context, n *Call, in, _ []Item) ([]Item, error) {
	all := true
	err := filter(c, n, in, func(_ Item, ok, b bool) bool {
		all = ok && b
		return all
	})
	if err != nil {
		return nil, err
	}
	return boolItem(all), nil
}

func fnSelect(c *Context, n *Call, in, _ []Item) ([]Item, error) {
	var out []Item
	one := make([]Item, 1)
	for _, it := range in {
		one[0] = it
		r, err := n.Args[0].eval(c, one)
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	return out, nil
}

func fnEmpty(_ *Context, _ *Call, in, _ []Item) ([]Item, error) { return boolItem(len(in) == 0), nil }

func fnNot(_ *Context, _ *Call, in, _ []Item) ([]Item, error) {
	b, ok, err := boolOf(in)
	if err != nil || !ok {
		return nil, err
	}
	return boolItem(!b), nil
}

func fnFirst(_ *Context, _ *Call, in, _ []Item) ([]Item, error) {
	if len(in) == 0 {
		return nil, nil
	}
	return in[:1:1], nil
}

func fnLast(_ *Context, _ *Call, in, _ []Item) ([]Item, error) {
	if len(in) == 0 {
		return nil, nil
	}
	return in[len(in)-1:], nil
}

func fnTail(_ *Context, _ *Call, in, _ []Item) ([]Item, error) {
	if len(in) <= 1 {
		return nil, nil
	}
	return in[1:], nil
}

// count argument of skip() and take().
func countArg(c *Context, n *Call, in, focus []Item) (int, error) {
	a, err := n.Args[0].eval(c, focus)
	if err != nil {
		return 0, err
	}
	k, ok := intOf(a)
	if !ok {
		return 0, fmt.Errorf("%s() needs an integer", n.Name)
	}
	return max(0, min(k, len(in))), nil
}

func fnSkip(c *Context, n *Call, in, focus []Item) ([]Item, error) {
	k, err := countArg(c, n, in, focus)
	if err != nil {
		return nil, err
	}
	return in[k:], nil
}

func fnTake(c *Context, n *Call, in, focus []Item) ([]Item, error) {
	k, err := countArg(c, n, in, focus)
	if err != nil {
		return nil, err
	}
	return in[:k:k], nil
}

func fnCount(_ *Context, _ *Call, in, _ []Item) ([]Item, error) {
	return []Item{{V: json.Number(strconv.Itoa(len(in))), T: "integer"}}, nil
}

func fnSingle(_ *Context, _ *Call, in, _ []Item) ([]Item, error) {
	if len(in) > 1 {
		return nil, fmt.Errorf("single(): %d items", len(in))
	}
	return in, nil
}

func fnDistinct(_ *Context, _ *Call, in, _ []Item) ([]Item, error) {
	var out []Item
	for _, it := range in {
		if !slices.ContainsFunc(out, func(o Item) bool { return equal(o, it) }) {
			out = append(out, it)
		}
	}
	return out, nil
}

func fnOfType(c *Context, n *Call, in, _ []Item) ([]Item, error) { return ofType(c, in, n.Type), nil }

func fnIs(c *Context, n *Call, in, _ []Item) ([]Item, error) { return isType(c, in, n.Type, "is()") }

func fnResolve(c *Context, _ *Call, in, _ []Item) ([]Item, error) {
	var out []Item
	for _, it := range in {
		if r, ok := c.Resolve(it); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// extensions selects the extensions with the url the argument gives
// (fhirpath.html#functions, extension(url)).
func extensions(c *Context, n *Call, in, focus []Item) ([]Item, error) {
	a, err := n.Args[0].eval(c, focus)
	if err != nil {
		return nil, err
	}
	url, _ := stringOf(a)
	var out []Item
	for _, it := range in {
		if !isObject(it.V) {
			continue
		}
		mark := len(out)
		out = c.Child(it, "extension", out)
		kept := out[:mark]
		for _, e := range out[mark:] {
			if isObject(e.V) && member(e.V, "url") == url {
				e.T = "Extension"
				kept = append(kept, e)
			}
		}
		out = kept
	}
	return out, nil
}

func fnExtension(c *Context, n *Call, in, focus []Item) ([]Item, error) {
	return extensions(c, n, in, focus)
}

func fnHasExtension(c *Context, n *Call, in, focus []Item) ([]Item, error) {
	out, err := extensions(c, n, in, focus)
	if err != nil {
		return nil, err
	}
	return boolItem(len(out) > 0), nil
}

func isPrimitiveValue(v any) bool {
	switch v.(type) {
	case string, bool, json.Number, float64:
		return true
	}
	return false
}

func fnHasValue(_ *Context, _ *Call, in, _ []Item) ([]Item, error) {
	return boolItem(len(in) == 1 && isPrimitiveValue(in[0].V)), nil
}

func fnGetValue(_ *Context, _ *Call, in, _ []Item) ([]Item, error) {
	if len(in) != 1 || !isPrimitiveValue(in[0].V) {
		return nil, nil
	}
	return in, nil
}

func fnIif(c *Context, n *Call, in, _ []Item) ([]Item, error) {
	cond, err := n.Args[0].eval(c, in)
	if err != nil {
		return nil, err
	}
	b, ok, err := boolOf(cond)
	if err != nil {
		return nil, err
	}
	if ok && b {
		return n.Args[1].eval(c, in)
	}
	if len(n.Args) == 3 {
		return n.Args[2].eval(c, in)
	}
	return nil, nil
}

func fnUnion(c *Context, n *Call, in, focus []Item) ([]Item, error) {
	other, err := n.Args[0].eval(c, focus)
	if err != nil {
		return nil, err
	}
	return union(in, other), nil
}

func fnCombine(c *Context, n *Call, in, focus []Item) ([]Item, error) {
	other, err := n.Args[0].eval(c, focus)
	if err != nil {
		return nil, err
	}
	return append(append([]Item(nil), in...), other...), nil
}

// substring runs a string test of startsWith, endsWith and contains.
func substring(c *Context, n *Call, in, focus []Item, test func(s, sub string) bool) ([]Item, error) {
	if len(in) == 0 {
		return nil, nil
	}
	s, ok := stringOf(in)
	if !ok {
		return nil, fmt.Errorf("%s() needs a single string", n.Name)
	}
	a, err := n.Args[0].eval(c, focus)
	if err != nil {
		return nil, err
	}
	sub, ok := stringOf(a)
	if !ok {
		return nil, nil
	}
	return boolItem(test(s, sub)), nil
}

func fnStartsWith(c *Context, n *Call, in, focus []Item) ([]Item, error) {
	return substring(c, n, in, focus, strings.HasPrefix)
}

func fnEndsWith(c *Context, n *Call, in, focus []Item) ([]Item, error) {
	return substring(c, n, in, focus, strings.HasSuffix)
}

func fnContains(c *Context, n *Call, in, focus []Item) ([]Item, error) {
	return substring(c, n, in, focus, strings.Contains)
}

// convert runs a string conversion of toString, lower and upper.
func convert(in []Item, f func(string) string) ([]Item, error) {
	if len(in) == 0 {
		return nil, nil
	}
	s, ok := stringOf(in)
	if !ok {
		return nil, nil
	}
	return []Item{{V: f(s), T: "string"}}, nil
}

func fnToString(_ *Context, _ *Call, in, _ []Item) ([]Item, error) {
	return convert(in, func(s string) string { return s })
}

func fnLower(_ *Context, _ *Call, in, _ []Item) ([]Item, error) { return convert(in, strings.ToLower) }

func fnUpper(_ *Context, _ *Call, in, _ []Item) ([]Item, error) { return convert(in, strings.ToUpper) }

func fnTrace(_ *Context, _ *Call, in, _ []Item) ([]Item, error) { return in, nil }

func fnChildren(c *Context, _ *Call, in, _ []Item) ([]Item, error) {
	var out []Item
	for _, it := range in {
		for _, k := range keys(it.V) {
			if k != "resourceType" && k[0] != '_' {
				out = c.Child(it, k, out)
			}
		}
	}
	return out, nil
}
