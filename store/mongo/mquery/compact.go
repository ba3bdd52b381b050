package mquery

import (
	"regexp"
	"slices"
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
//	ixb  the whole search.Index as one binary (EncodeIndex; decoded in Go
//	     for Match and Record.Index)
//	k    one string of sorted, distinct keys "kind.field=value", each on a
//	     line of its own (the string starts and ends with a newline): every
//	     string field of every element that a filter compares for equality
//	     (keyed), e.g. "tok.c=8867-4", "ref.r=Patient/1", "cmp.x.tok.c=…",
//	     and "cpt=Patient/1" (compartments), "sec=…" (security labels),
//	     "has=code" (parameters with a value)
//	srt  the sort scalars (idx.srt), so _sort and paging run in FerretDB
//
// One string, not an array: FerretDB decodes a document in time that grows
// with its values, and an array of 40 strings cost it five times a whole
// small document (measured: 87 µs of 300 µs per scanned document).
//
// CompileCompact renders a filter for that layout: top-level conditions as
// they are, those on compartments, labels and parameters with values, and
// the equality conditions of each element condition as $regex conditions
// on k ("\nkey\n"), a superset the Matcher then narrows in Go, exactly as
// with the dot-notation dialect.

// CompactFields is the compact form of an Index.
type CompactFields struct {
	IXB []byte         `bson:"ixb,omitempty"`
	K   string         `bson:"k,omitempty"`
	Srt map[string]any `bson:"srt,omitempty"`
}

// Keys returns the keys of K.
func (c CompactFields) Keys() []string {
	return strings.FieldsFunc(c.K, func(r rune) bool { return r == '\n' })
}

// key is the key of value v of field path: a newline in v (free text in
// an identifier, say) becomes a space, in the stored keys and the queried
// ones alike, so the key stays one line (and matches a superset).
func key(path, v string) string {
	if strings.IndexByte(v, '\n') >= 0 {
		v = strings.ReplaceAll(v, "\n", " ")
	}
	return path + "=" + v
}

// keyPattern matches any of keys as a whole line of k.
func keyPattern(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = regexp.QuoteMeta(k)
	}
	if len(q) == 1 {
		return "\n" + q[0] + "\n"
	}
	return "\n(?:" + strings.Join(q, "|") + ")\n"
}

func keyCond(keys []string) bson.D {
	return bson.D{{Key: "k", Value: bson.D{{Key: "$regex", Value: keyPattern(keys)}}}}
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
	b, err := EncodeIndex(x)
	if err != nil {
		return CompactFields{}, err
	}
	keys := make([]string, 0, 64)
	keys = addKeys(keys, x, "")
	for _, v := range x.Compartments {
		keys = append(keys, key("cpt", v))
	}
	for _, v := range x.Security {
		keys = append(keys, key("sec", v))
	}
	for _, v := range x.Has {
		keys = append(keys, key("has", v))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	k := ""
	if len(keys) > 0 {
		k = "\n" + strings.Join(keys, "\n") + "\n"
	}
	return CompactFields{IXB: b, K: k, Srt: x.Sort}, nil
}

// addKeys appends the keys of x's element fields; every field it names is
// keyed (TestCompactKeysAreKeyed).
func addKeys(keys []string, x *search.Index, prefix string) []string {
	add := func(path, v string) {
		if v == "" {
			return
		}
		if strings.IndexByte(v, '\n') >= 0 {
			v = strings.ReplaceAll(v, "\n", " ")
		}
		keys = append(keys, prefix+path+"="+v) // key(prefix+path, v), one allocation
	}
	for _, v := range x.Str {
		add("str.p", v.Param)
		add("str.v", v.Value)
		add("str.x", v.Exact)
	}
	for _, v := range x.Tok {
		add("tok.p", v.Param)
		add("tok.s", v.System)
		add("tok.c", v.Code)
		add("tok.ts", v.TypeSystem)
		add("tok.tc", v.TypeCode)
	}
	for _, v := range x.Ref {
		add("ref.p", v.Param)
		add("ref.r", v.Ref)
		add("ref.t", v.Type)
		add("ref.i", v.ID)
		add("ref.v", v.Version)
		add("ref.is", v.IDSystem)
		add("ref.ic", v.IDValue)
	}
	for _, v := range x.URI {
		add("uri.p", v.Param)
		add("uri.v", v.Value)
	}
	for _, v := range x.Date {
		add("dt.p", v.Param)
	}
	for _, v := range x.Num {
		add("num.p", v.Param)
	}
	for _, v := range x.Qty {
		add("qty.p", v.Param)
		add("qty.s", v.System)
		add("qty.c", v.Code)
		add("qty.u", v.Unit)
	}
	if prefix == "" {
		for i := range x.Comp {
			add("cmp.p", x.Comp[i].Param)
			keys = addKeys(keys, &x.Comp[i].Parts, "cmp.x.")
		}
	}
	return keys
}

// compactTop names the keys of the top-level index fields.
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

// renderCompact renders n for the compact layout (see CompactFields).
func renderCompact(n node) (bson.D, bool) {
	return renderSuperset(n, compactLeaf)
}

func compactLeaf(n node) (bson.D, bool) {
	switch x := n.(type) {
	case constN:
		return renderExact(n), true
	case topN:
		var conds []fcond
		var and bson.A
		exact := true
		for _, c := range x {
			to, ok := compactTop[c.field]
			if !ok {
				conds = append(conds, c)
				continue
			}
			var vals []string
			switch c.op {
			case opEq:
				vals = []string{c.val.(string)}
			case opIn:
				vals = c.val.([]string)
			default: // not produced by the lowering; leave it to Match
				exact = false
				continue
			}
			keys := make([]string, len(vals))
			for i, v := range vals {
				keys[i] = key(to, v)
			}
			if len(keys) == 0 {
				return falseFilter(), true
			}
			and = append(and, keyCond(keys))
		}
		d := fieldsDoc(conds, "")
		if len(and) == 1 && !hasKey(d, "k") {
			d = append(d, and[0].(bson.D)...)
		} else if len(and) > 0 {
			d = append(d, bson.E{Key: "$and", Value: and})
		}
		return d, exact
	case elemN:
		var and bson.A
		for _, c := range flatConds(elem(x), x.path+".") {
			path := strings.TrimPrefix(c.field, "idx.")
			if !isKeyed(path) {
				continue
			}
			var keys []string
			switch c.op {
			case opEq:
				if v, ok := c.val.(string); ok && v != "" {
					keys = []string{key(path, v)}
				}
			case opIn:
				for _, v := range c.val.([]string) {
					if v == "" { // not keyed: the condition cannot be keyed
						keys = nil
						break
					}
					keys = append(keys, key(path, v))
				}
			}
			if len(keys) > 0 {
				and = append(and, keyCond(keys))
			}
		}
		switch len(and) {
		case 0:
			return bson.D{}, false
		case 1:
			return and[0].(bson.D), false
		}
		return bson.D{{Key: "$and", Value: and}}, false
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
