package search

import (
	"slices"
	"strings"
)

// Result parameters: _sort (search.html#sort) and _include / _revinclude
// (search.html#include).

// sort parses _sort (search.html#sort): comma-separated, "-" descending.
func (p *parser) sort(vals []string) error {
	for _, v := range values(vals) {
		for _, k := range strings.Split(v, ",") {
			k = strings.TrimSpace(k)
			if k == "" {
				continue
			}
			desc := strings.HasPrefix(k, "-")
			code := strings.TrimPrefix(k, "-")
			switch code {
			case "_id", "_lastUpdated":
			default:
				prm, ok, err := p.lookup(p.out.Types, code)
				if err != nil {
					return err
				}
				if !ok {
					if err := p.warn("_sort", "unknown sort parameter %q", code); err != nil {
						return err
					}
					continue
				}
				if prm.Type == TypeComposite || prm.Type == TypeSpecial {
					if err := p.warn("_sort", "cannot sort by %s parameter %q", prm.Type, code); err != nil {
						return err
					}
					continue
				}
			}
			p.out.Sort = append(p.out.Sort, SortKey{Param: code, Desc: desc})
		}
	}
	return nil
}

// includes parses _include / _revinclude (search.html#include).
func (p *parser) includes(name, base, mod string, vals []string) error {
	iterate := false
	switch mod {
	case "":
	case "iterate", "recurse":
		iterate = true
	default:
		return perr(name, "unknown modifier %q", mod)
	}
	for _, v := range values(vals) {
		if p.nIncludes++; p.nIncludes > MaxIncludes {
			return costly(name, "a search may have at most %d _include and _revinclude parameters", MaxIncludes)
		}
		if v == "*" {
			inc := Include{Source: "*", Param: "*", Iterate: iterate}
			p.addInclude(base, inc)
			continue
		}
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return perr(name, "%s must be Type:parameter[:targetType], got %q", base, v)
		}
		inc := Include{Source: parts[0], Param: parts[1], Iterate: iterate}
		if !p.r.IsResourceType(inc.Source) {
			return perr(name, "unknown resource type %q", inc.Source)
		}
		if len(parts) == 3 {
			inc.Target = parts[2]
			if !p.r.IsResourceType(inc.Target) {
				return perr(name, "unknown resource type %q", inc.Target)
			}
		}
		if inc.Param != "*" {
			prm, ok := p.r.Lookup(inc.Source, inc.Param)
			if !ok {
				if err := p.warn(name, "unknown search parameter %q for %s", inc.Param, inc.Source); err != nil {
					return err
				}
				continue
			}
			if prm.Type != TypeReference {
				return perr(name, "search parameter %s of %s is not a reference", inc.Param, inc.Source)
			}
			if inc.Target != "" && len(prm.Target) > 0 && !slices.Contains(prm.Target, inc.Target) {
				return perr(name, "search parameter %s of %s cannot refer to %s", inc.Param, inc.Source, inc.Target)
			}
		}
		p.addInclude(base, inc)
	}
	return nil
}

func (p *parser) addInclude(base string, inc Include) {
	list := &p.out.Include
	if base == "_revinclude" {
		list = &p.out.RevInclude
	}
	if !slices.Contains(*list, inc) {
		*list = append(*list, inc)
	}
}
