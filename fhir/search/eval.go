package search

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Subject is what Eval needs of one stored version.
type Subject struct {
	Type, ID    string
	LastUpdated time.Time
	Index       *Index
	// PatientVisible / ProxyVisible: release instants (zero: immediate).
	PatientVisible, ProxyVisible time.Time
}

// Eval decides in memory whether s matches e, with the same semantics as a
// store compiling e. The pipeline uses it for single-resource decisions
// (read, vread, and checking that a write lands inside the caller's reach).
// Nodes it cannot evaluate return an error; callers must fail closed.
func Eval(e Expr, s Subject) (bool, error) {
	if e == nil {
		return true, nil
	}
	idx := s.Index
	if idx == nil {
		idx = &Index{}
	}
	switch n := e.(type) {
	case And:
		for _, a := range n.Args {
			ok, err := Eval(a, s)
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case Or:
		for _, a := range n.Args {
			ok, err := Eval(a, s)
			if err != nil {
				return false, err
			}
			if ok {
				return true, nil
			}
		}
		return false, nil
	case Not:
		ok, err := Eval(n.Arg, s)
		return !ok && err == nil, err
	case Const:
		return n.Value, nil
	case IDCond:
		return slices.Contains(n.IDs, s.ID), nil
	case TypeCond:
		return slices.Contains(n.Types, s.Type), nil
	case KeyCond:
		return slices.Contains(n.Keys, s.Type+"/"+s.ID), nil
	case CompartmentCond:
		for _, c := range n.Compartments {
			if slices.Contains(idx.Compartments, c) {
				return true, nil
			}
		}
		return false, nil
	case SecurityCond:
		for _, l := range n.Labels {
			if slices.Contains(idx.Security, l) {
				return true, nil
			}
		}
		return false, nil
	case ReleaseCond:
		at := s.PatientVisible
		if n.Audience == "proxy" {
			at = s.ProxyVisible
		}
		return at.IsZero() || !at.After(n.Now), nil
	case MissingCond:
		return slices.Contains(idx.Has, n.Param) != n.Missing, nil
	case TokenCond:
		for _, t := range idx.Tok {
			if t.P == n.Param && tokenMatch(n, t) {
				return true, nil
			}
		}
		return false, nil
	case StringCond:
		for _, v := range idx.Str {
			if v.P != n.Param {
				continue
			}
			switch n.Mode {
			case StringExact:
				if v.X == n.Value {
					return true, nil
				}
			case StringContains:
				if strings.Contains(v.V, n.Value) {
					return true, nil
				}
			default:
				if strings.HasPrefix(v.V, n.Value) {
					return true, nil
				}
			}
		}
		return false, nil
	case RefCond:
		if n.Identifier != nil || n.Below {
			break
		}
		for _, r := range idx.Ref {
			if r.P != n.Param {
				continue
			}
			if slices.Contains(n.Targets, r.R) || slices.Contains(n.URLs, r.R) && (n.Version == "" || n.Version == r.V) {
				return true, nil
			}
			if slices.Contains(n.IDs, r.I) && (len(n.Types) == 0 || slices.Contains(n.Types, r.T)) {
				return true, nil
			}
		}
		return false, nil
	case URICond:
		for _, u := range idx.URI {
			if u.P != n.Param {
				continue
			}
			switch n.Mode {
			case URIBelow:
				if strings.HasPrefix(u.V, n.Value) {
					return true, nil
				}
			case URIAbove:
				if strings.HasPrefix(n.Value, u.V) {
					return true, nil
				}
			default:
				if u.V == n.Value {
					return true, nil
				}
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("search: cannot evaluate %T in memory", e)
}

func tokenMatch(n TokenCond, t TokValue) bool {
	if n.Text != "" {
		return strings.HasPrefix(t.T, n.Text)
	}
	if n.OfType {
		return t.TS == n.TypeSystem && t.TC == n.TypeCode && (n.Code == nil || t.C == *n.Code)
	}
	if n.System != nil && t.S != *n.System {
		return false
	}
	if n.Code != nil {
		if n.CodeFold {
			return strings.EqualFold(t.C, *n.Code)
		}
		return t.C == *n.Code
	}
	return true
}
