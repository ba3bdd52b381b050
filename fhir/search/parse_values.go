package search

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The values of each search parameter type (search.html#ptypes): string,
// token, reference, uri, date, number, quantity and composite.

// unsupportedMod handles a known but unimplemented modifier.
func (p *parser) unsupportedMod(full, mod string) (Expr, error) {
	if err := p.warn(full, "modifier :%s is not supported", mod); err != nil {
		return nil, err
	}
	return nil, nil
}

// stringParam: search.html#string.
func (p *parser) stringParam(full string, prm *Param, mod string, hasMod bool, value string) (Expr, error) {
	mode := StringStartsWith
	switch {
	case !hasMod:
	case mod == "exact":
		mode = StringExact
	case mod == "contains":
		mode = StringContains
	case mod == "text" || mod == "above" || mod == "below":
		return p.unsupportedMod(full, mod)
	default:
		return nil, perr(full, "unknown modifier %q for a string parameter", mod)
	}
	return p.orOf1(full, value, func(v string) (Expr, error) {
		v = unesc(v)
		if mode != StringExact {
			v = Fold(v)
		}
		return StringCond{Param: prm.Code, Value: v, Mode: mode}, nil
	})
}

// tokenParam: search.html#token.
func (p *parser) tokenParam(full string, prm *Param, mod string, hasMod bool, value string) (Expr, error) {
	switch {
	case !hasMod, mod == "not", mod == "text", mod == "of-type":
	case mod == "in" || mod == "not-in" || mod == "above" || mod == "below":
		return p.unsupportedMod(full, mod)
	default:
		return nil, perr(full, "unknown modifier %q for a token parameter", mod)
	}
	e, err := p.orOf1(full, value, func(v string) (Expr, error) {
		if mod == "text" {
			return TokenCond{Param: prm.Code, Text: Fold(unesc(v))}, nil
		}
		parts := splitEsc(v, '|')
		if mod == "of-type" {
			// search.html#token: identifier:of-type=system|code|value
			if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
				return nil, perr(full, ":of-type needs system|code|value, got %q", v)
			}
			c := unesc(parts[2])
			return TokenCond{Param: prm.Code, OfType: true, TypeSystem: unesc(parts[0]), TypeCode: unesc(parts[1]), Code: &c}, nil
		}
		return tokenValue(full, prm.Code, v)
	})
	if err != nil || e == nil {
		return e, err
	}
	if mod == "not" {
		// :not matches resources with no matching token (search.html#token).
		return Not{Arg: e}, nil
	}
	return e, nil
}

// tokenValue parses [system]|[code] forms.
func tokenValue(full, code, v string) (TokenCond, error) {
	parts := splitEsc(v, '|')
	t := TokenCond{Param: code}
	switch len(parts) {
	case 1:
		c := unesc(parts[0])
		t.Code = &c
	case 2:
		s, c := unesc(parts[0]), unesc(parts[1])
		if s == "" && c == "" {
			return t, perr(full, "token %q has neither system nor code", v)
		}
		t.System = &s
		if c != "" {
			t.Code = &c
		}
	default:
		return t, perr(full, "token %q has more than one unescaped '|'", v)
	}
	return t, nil
}

// refParam: search.html#reference.
func (p *parser) refParam(full string, prm *Param, mod string, hasMod bool, value string) (Expr, error) {
	var typ string
	switch {
	case !hasMod:
	case mod == "identifier":
		return p.orOf1(full, value, func(v string) (Expr, error) {
			t, err := tokenValue(full, "", v)
			if err != nil {
				return nil, err
			}
			return RefCond{Param: prm.Code, Identifier: &t}, nil
		})
	case mod == "below":
		return p.orOf1(full, value, func(v string) (Expr, error) {
			return RefCond{Param: prm.Code, URLs: []string{unesc(v)}, Below: true}, nil
		})
	case mod == "above" || mod == "text" || mod == "not":
		return p.unsupportedMod(full, mod)
	case p.r.IsResourceType(mod):
		if len(prm.Target) > 0 && !slices.Contains(prm.Target, mod) {
			return nil, perr(full, "search parameter %s cannot refer to %s", prm.Code, mod)
		}
		typ = mod
	default:
		return nil, perr(full, "unknown modifier %q for a reference parameter", mod)
	}
	return p.orOf1(full, value, func(v string) (Expr, error) {
		return p.refValue(full, prm, typ, unesc(v))
	})
}

func (p *parser) refValue(full string, prm *Param, typ, v string) (Expr, error) {
	base := strings.TrimRight(p.opt.Base, "/")
	if base != "" && strings.HasPrefix(v, base+"/") {
		v = v[len(base)+1:]
	}
	if strings.Contains(v, ":") {
		// An absolute or canonical URL, optionally url|version.
		u, version, _ := strings.Cut(v, "|")
		if i := strings.Index(u, "/_history/"); i >= 0 && version == "" {
			u = u[:i]
		}
		return RefCond{Param: prm.Code, URLs: []string{u}, Version: version}, nil
	}
	if i := strings.Index(v, "/_history/"); i >= 0 {
		v = v[:i]
	}
	if t, id, ok := strings.Cut(v, "/"); ok {
		if !p.r.IsResourceType(t) || id == "" || strings.Contains(id, "/") {
			return nil, perr(full, "invalid reference %q", v)
		}
		if typ != "" && t != typ {
			return nil, perr(full, "reference %q is not a %s", v, typ)
		}
		return RefCond{Param: prm.Code, Targets: []string{v}}, nil
	}
	if typ != "" {
		return RefCond{Param: prm.Code, Targets: []string{typ + "/" + v}}, nil
	}
	if len(prm.Target) == 1 {
		return RefCond{Param: prm.Code, Targets: []string{prm.Target[0] + "/" + v}}, nil
	}
	return RefCond{Param: prm.Code, IDs: []string{v}}, nil
}

// uriParam: search.html#uri.
func (p *parser) uriParam(full string, prm *Param, mod string, hasMod bool, value string) (Expr, error) {
	mode := URIExact
	switch {
	case !hasMod:
	case mod == "below":
		mode = URIBelow
	case mod == "above":
		mode = URIAbove
	default:
		return nil, perr(full, "unknown modifier %q for a uri parameter", mod)
	}
	return p.orOf1(full, value, func(v string) (Expr, error) {
		return URICond{Param: prm.Code, Value: unesc(v), Mode: mode}, nil
	})
}

var prefixes = map[string]Prefix{
	"eq": Eq, "ne": Ne, "gt": Gt, "lt": Lt, "ge": Ge, "le": Le, "sa": Sa, "eb": Eb, "ap": Ap,
}

// splitPrefix separates a comparison prefix (search.html#prefix).
func splitPrefix(v string) (Prefix, string) {
	if len(v) >= 2 {
		if pre, ok := prefixes[v[:2]]; ok {
			return pre, v[2:]
		}
	}
	return Eq, v
}

func (p *parser) dateValue(full, v string) (Prefix, time.Time, time.Time, error) {
	pre, rest := splitPrefix(v)
	lo, hi, err := ParseDateRange(rest)
	if err != nil {
		return "", time.Time{}, time.Time{}, perr(full, "invalid date %q: expected [prefix]YYYY[-MM[-DD[Thh:mm[:ss[.sss]][Z|±hh:mm]]]]", v)
	}
	if pre == Ap {
		// search.html#prefix: ap is approximately the value; we allow 10%
		// of the distance between the value and now on each side.
		d := p.now.Sub(lo)
		if d < 0 {
			d = -d
		}
		d /= 10
		lo, hi = lo.Add(-d), hi.Add(d)
	}
	return pre, lo, hi, nil
}

// ordered parses a date, number or quantity value with its prefix; code
// is the parameter (or composite component position).
func (p *parser) ordered(full string, typ ParamType, code, v string) (Expr, error) {
	switch typ {
	case TypeDate:
		pre, lo, hi, err := p.dateValue(full, v)
		if err != nil {
			return nil, err
		}
		return DateCond{Param: code, Prefix: pre, Lo: lo, Hi: hi}, nil
	case TypeNumber:
		pre, n, lo, hi, err := numberValue(full, v)
		if err != nil {
			return nil, err
		}
		return NumberCond{Param: code, Prefix: pre, Value: n, Lo: lo, Hi: hi}, nil
	case TypeQuantity:
		parts := splitEsc(v, '|')
		if len(parts) != 1 && len(parts) != 3 {
			return nil, perr(full, "quantity must be [prefix]number[|system|code], got %q", v)
		}
		pre, n, lo, hi, err := numberValue(full, parts[0])
		if err != nil {
			return nil, err
		}
		q := QuantityCond{Param: code, Prefix: pre, Value: n, Lo: lo, Hi: hi}
		if len(parts) == 3 {
			q.System, q.Code = unesc(parts[1]), unesc(parts[2])
			if q.System != "" && q.Code == "" {
				return nil, perr(full, "quantity %q has a system but no code", v)
			}
		}
		return q, nil
	}
	return nil, perr(full, "parameter type %s has no ordered values", typ)
}

func numberValue(full, v string) (Prefix, float64, float64, float64, error) {
	pre, rest := splitPrefix(v)
	n, lo, hi, err := NumberRange(rest)
	if err != nil {
		return "", 0, 0, 0, perr(full, "invalid number %q", v)
	}
	if pre == Ap {
		// search.html#prefix: within 10% of the value (at least its precision).
		d := math.Abs(n) / 10
		lo, hi = min(lo, n-d), max(hi, n+d)
	}
	return pre, n, lo, hi, nil
}

// composite: search.html#composite, components separated by '$'.
func (p *parser) composite(full string, prm *Param, v string) (Expr, error) {
	parts := splitEsc(v, '$')
	if len(parts) != len(prm.Components) {
		return nil, perr(full, "composite parameter %s needs %d values separated by '$', got %q", prm.Code, len(prm.Components), v)
	}
	c := CompositeCond{Param: prm.Code}
	for i, part := range parts {
		comp := prm.Components[i].Param
		if comp == nil {
			return nil, perr(full, "composite parameter %s has an unresolved component", prm.Code)
		}
		code := strconv.Itoa(i)
		var e Expr
		var err error
		switch comp.Type {
		case TypeToken:
			e, err = tokenValue(full, code, part)
		case TypeString:
			e = StringCond{Param: code, Value: Fold(unesc(part))}
		case TypeURI:
			e = URICond{Param: code, Value: unesc(part)}
		case TypeReference:
			e, err = p.refValue(full, comp, "", unesc(part))
			if r, ok := e.(RefCond); ok {
				r.Param = code
				e = r
			}
		case TypeDate, TypeNumber, TypeQuantity:
			e, err = p.ordered(full, comp.Type, code, part)
		default:
			return nil, perr(full, "composite parameter %s: component type %s is not supported", prm.Code, comp.Type)
		}
		if err != nil {
			return nil, err
		}
		c.Parts = append(c.Parts, e)
	}
	return c, nil
}
