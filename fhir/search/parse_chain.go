package search

import (
	"slices"
	"strings"
)

// Chained parameters and reverse chaining (search.html#chaining, search.html#has).

// chain parses "param[:Type].rest" (search.html#chaining).
func (p *parser) chain(types []string, full, name, value string, depth int) (*Criteria, error) {
	head, rest, _ := strings.Cut(name, ".")
	code, typ, _ := strings.Cut(head, ":")
	prm, ok, err := p.lookup(types, code)
	if err != nil {
		return nil, err
	}
	if !ok {
		return p.unknown(types, full, code)
	}
	if prm.Type != TypeReference {
		return nil, perr(full, "search parameter %s is not a reference and cannot be chained", code)
	}
	if rest == "" {
		return nil, perr(full, "empty chained parameter")
	}
	if typ != "" {
		if !p.r.IsResourceType(typ) {
			return nil, perr(full, "unknown resource type %q in chain", typ)
		}
		if len(prm.Target) > 0 && !slices.Contains(prm.Target, typ) {
			return nil, perr(full, "search parameter %s cannot refer to %s", code, typ)
		}
	} else {
		// Infer the target type: among the parameter's targets, those that
		// define the next parameter (search.html#chaining: ambiguous
		// chains must name the type, "subject:Patient.name").
		next := rest
		if !strings.HasPrefix(next, "_has:") {
			next, _, _ = strings.Cut(next, ".")
			next, _, _ = strings.Cut(next, ":")
		} else {
			next = "_has"
		}
		var cands []string
		for _, t := range prm.Target {
			if next == "_has" {
				cands = append(cands, t)
				continue
			}
			if _, ok := p.r.Lookup(t, next); ok {
				cands = append(cands, t)
			}
		}
		switch {
		case len(prm.Target) == 0:
			return nil, perr(full, "search parameter %s can refer to any type: name it, e.g. %s:Patient.%s", code, code, rest)
		case len(cands) == 0:
			return p.unknown(prm.Target, full, next)
		case len(cands) > 1:
			return nil, perr(full, "chained parameter %s is ambiguous (%s): name the type, e.g. %s:%s.%s", full, strings.Join(cands, ", "), code, cands[0], rest)
		}
		typ = cands[0]
	}
	inner, err := p.criterionAt([]string{typ}, full, rest, value, depth+1)
	if err != nil || inner == nil {
		return nil, err
	}
	return &Criteria{Chains: []Chain{{Name: full, Param: code, Type: typ, Where: *inner}}}, nil
}

// has parses "_has:Type:param:rest" (search.html#has).
func (p *parser) has(types []string, full, name, value string, depth int) (*Criteria, error) {
	parts := strings.SplitN(name, ":", 4)
	if len(parts) != 4 || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return nil, perr(full, "_has must be _has:Type:parameter:search-parameter")
	}
	typ, code, rest := parts[1], parts[2], parts[3]
	if !p.r.IsResourceType(typ) {
		return nil, perr(full, "unknown resource type %q in _has", typ)
	}
	prm, ok := p.r.Lookup(typ, code)
	if !ok {
		return p.unknown([]string{typ}, full, code)
	}
	if prm.Type != TypeReference {
		return nil, perr(full, "search parameter %s of %s is not a reference", code, typ)
	}
	if len(prm.Target) > 0 && len(types) > 0 {
		hit := false
		for _, t := range types {
			hit = hit || slices.Contains(prm.Target, t)
		}
		if !hit {
			return nil, perr(full, "search parameter %s of %s cannot refer to %s", code, typ, typesLabel(types))
		}
	}
	inner, err := p.criterionAt([]string{typ}, full, rest, value, depth+1)
	if err != nil || inner == nil {
		return nil, err
	}
	return &Criteria{Has: []Has{{Name: full, Type: typ, Param: code, Where: *inner}}}, nil
}
