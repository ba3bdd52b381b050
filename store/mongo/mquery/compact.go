package mquery

import (
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// # The compact layout (FerretDB)
//
// FerretDB v1.24 decodes every document of a collection for any filter but
// an exact _id, and its cost grows with the number of fields: the nested
// idx arrays of small documents were most of every search and every read.
// On FerretDB the store therefore writes the search values in a compact
// form (Compact) instead of idx:
//
//	ixb  the whole search.Index as one BSON binary (decoded in Go by Match)
//	k    flat, sorted, distinct strings "kind.field=value" for every string
//	     field of every element that a filter compares for equality
//	     (KeyFields), e.g. "tok.c=8867-4", "ref.r=Patient/1", "cmp.x.tok.c=…"
//	cpt  compartments, sec security labels, has parameters with values
//	srt  the sort scalars (idx.srt), so _sort and paging run in FerretDB
//
// CompileCompact renders a filter for that layout: top-level conditions as
// they are (cpt/sec/has renamed), each element condition as the keys of
// its equality conditions ({k: {$all: [...]}}), a superset the Matcher
// then narrows in Go, exactly as with the dot-notation dialect.

// CompactFields is the compact form of an Index.
type CompactFields struct {
	IXB []byte         `bson:"ixb,omitempty"`
	K   []string       `bson:"k,omitempty"`
	Cpt []string       `bson:"cpt,omitempty"`
	Sec []string       `bson:"sec,omitempty"`
	Has []string       `bson:"has,omitempty"`
	Srt map[string]any `bson:"srt,omitempty"`
}

// keyed lists the element fields (paths below idx) that become keys.
// Free text (tok.t, the folded display) and numbers are left to Match.
var keyed = map[string]bool{
	"str.p": true, "str.v": true, "str.x": true,
	"tok.p": true, "tok.s": true, "tok.c": true, "tok.ts": true, "tok.tc": true,
	"ref.p": true, "ref.r": true, "ref.t": true, "ref.i": true, "ref.v": true, "ref.is": true, "ref.ic": true,
	"uri.p": true, "uri.v": true,
	"dt.p": true, "num.p": true,
	"qty.p": true, "qty.s": true, "qty.c": true, "qty.u": true,
	"cmp.p": true,
}

// isKeyed reports whether the element field path (below idx, composites
// as cmp.x.<kind>.<field>) is keyed.
func isKeyed(path string) bool {
	if rest, ok := strings.CutPrefix(path, "cmp.x."); ok {
		return keyed[rest]
	}
	return keyed[path]
}

// Compact returns the compact form of x (ixb holds x itself).
func Compact(x *search.Index) (CompactFields, error) {
	b, err := bson.Marshal(x)
	if err != nil {
		return CompactFields{}, err
	}
	set := map[string]bool{}
	addKeys(set, x, "")
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return CompactFields{IXB: b, K: keys, Cpt: x.Compartments, Sec: x.Security, Has: x.Has, Srt: x.Sort}, nil
}

func addKeys(set map[string]bool, x *search.Index, prefix string) {
	add := func(path, v string) {
		if v != "" && isKeyed(prefix+path) {
			set[prefix+path+"="+v] = true
		}
	}
	for _, v := range x.Str {
		add("str.p", v.P)
		add("str.v", v.V)
		add("str.x", v.X)
	}
	for _, v := range x.Tok {
		add("tok.p", v.P)
		add("tok.s", v.S)
		add("tok.c", v.C)
		add("tok.ts", v.TS)
		add("tok.tc", v.TC)
	}
	for _, v := range x.Ref {
		add("ref.p", v.P)
		add("ref.r", v.R)
		add("ref.t", v.T)
		add("ref.i", v.I)
		add("ref.v", v.V)
		add("ref.is", v.IS)
		add("ref.ic", v.IC)
	}
	for _, v := range x.URI {
		add("uri.p", v.P)
		add("uri.v", v.V)
	}
	for _, v := range x.Date {
		add("dt.p", v.P)
	}
	for _, v := range x.Num {
		add("num.p", v.P)
	}
	for _, v := range x.Qty {
		add("qty.p", v.P)
		add("qty.s", v.S)
		add("qty.c", v.C)
		add("qty.u", v.U)
	}
	if prefix == "" {
		for i := range x.Comp {
			add("cmp.p", x.Comp[i].P)
			addKeys(set, &x.Comp[i].X, "cmp.x.")
		}
	}
}

// compactTop renames the top-level index fields of the compact layout.
var compactTop = map[string]string{"idx.cpt": "cpt", "idx.sec": "sec", "idx.has": "has"}

// CompileCompact compiles e (nil: match all) for the compact layout; the
// filter is a superset unless exact (then no Matcher is needed).
func CompileCompact(e search.Expr, history bool) (bson.D, bool, error) {
	n, err := lowerer{history: history}.lower(e)
	if err != nil {
		return nil, false, err
	}
	f, exact := renderCompact(n)
	return f, exact, nil
}

func renderCompact(n node) (bson.D, bool) {
	switch x := n.(type) {
	case constN:
		return renderExact(n), true
	case topN:
		conds := make([]fcond, len(x))
		for i, c := range x {
			if to, ok := compactTop[c.field]; ok {
				c.field = to
			}
			conds[i] = c
		}
		return fieldsDoc(conds, ""), true
	case andN:
		a := bson.A{}
		exact := true
		for _, c := range x {
			d, ok := renderCompact(c)
			exact = exact && ok
			if len(d) > 0 {
				a = append(a, d)
			}
		}
		if len(a) == 0 {
			return bson.D{}, exact
		}
		return bson.D{{Key: "$and", Value: a}}, exact
	case orN:
		a := make(bson.A, len(x))
		exact := true
		for i, c := range x {
			d, ok := renderCompact(c)
			exact = exact && ok
			if len(d) == 0 {
				return bson.D{}, false
			}
			a[i] = d
		}
		return bson.D{{Key: "$or", Value: a}}, exact
	case notN:
		d, ok := renderCompact(x.n)
		if !ok {
			// The complement of a superset is a subset: match everything
			// and leave the decision to Match.
			return bson.D{}, false
		}
		return bson.D{{Key: "$nor", Value: bson.A{d}}}, true
	case elemN:
		var all bson.A
		var and bson.A
		for _, c := range flatConds(elem(x), x.path+".") {
			path := strings.TrimPrefix(c.field, "idx.")
			if !isKeyed(path) {
				continue
			}
			switch c.op {
			case opEq:
				if v, ok := c.val.(string); ok && v != "" {
					all = append(all, path+"="+v)
				}
			case opIn:
				vals := c.val.([]string)
				in := make(bson.A, 0, len(vals))
				for _, v := range vals {
					if v == "" { // not keyed: the condition cannot be keyed
						in = nil
						break
					}
					in = append(in, path+"="+v)
				}
				if len(in) > 0 {
					and = append(and, bson.D{{Key: "k", Value: bson.D{{Key: "$in", Value: in}}}})
				}
			}
		}
		var d bson.D
		if len(all) > 0 {
			d = bson.D{{Key: "k", Value: bson.D{{Key: "$all", Value: all}}}}
		}
		if len(and) > 0 {
			d = append(d, bson.E{Key: "$and", Value: and})
		}
		return d, false
	}
	panic("mquery: unknown node")
}

// CompactPath maps a sort or cursor field path to the compact layout.
func CompactPath(p string) string {
	if rest, ok := strings.CutPrefix(p, "idx."); ok {
		return rest
	}
	return p
}
