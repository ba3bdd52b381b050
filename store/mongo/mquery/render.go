package mquery

import (
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// falseFilter matches no document (every document has an _id).
func falseFilter() bson.D {
	return bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{}}}}}
}

var opNames = map[op]string{
	opEq: "$eq", opIn: "$in", opGt: "$gt", opGte: "$gte", opLt: "$lt", opLte: "$lte", opExists: "$exists",
}

// opDoc renders the operator document of one condition.
func opDoc(c fcond) bson.D {
	switch c.op {
	case opRegex:
		r := c.val.(rx)
		d := bson.D{{Key: "$regex", Value: r.Pattern}}
		if r.Options != "" {
			d = append(d, bson.E{Key: "$options", Value: r.Options})
		}
		return d
	case opIn:
		vals := c.val.([]string)
		a := make(bson.A, len(vals))
		for i, v := range vals {
			a[i] = v
		}
		return bson.D{{Key: "$in", Value: a}}
	}
	return bson.D{{Key: opNames[c.op], Value: bsonValue(c.val)}}
}

func bsonValue(v any) any {
	if t, ok := v.(time.Time); ok {
		return bson.NewDateTimeFromTime(t)
	}
	return v
}

// fieldsDoc renders conditions on (possibly dotted) fields as one
// document, merging the operators of a repeated field; conditions that
// would repeat an operator on a field go to a $and.
func fieldsDoc(conds []fcond, prefix string) bson.D {
	var out bson.D
	var extra bson.A
	pos := map[string]int{}
	for _, c := range conds {
		f := prefix + c.field
		od := opDoc(c)
		i, seen := pos[f]
		if !seen {
			pos[f] = len(out)
			if c.op == opEq {
				out = append(out, bson.E{Key: f, Value: bsonValue(c.val)})
			} else {
				out = append(out, bson.E{Key: f, Value: od})
			}
			continue
		}
		cur, isDoc := out[i].Value.(bson.D)
		if isDoc && c.op != opEq && !hasKey(cur, od[0].Key) && !hasKey(cur, "$regex") && od[0].Key != "$regex" {
			out[i].Value = append(cur, od...)
			continue
		}
		extra = append(extra, bson.D{{Key: f, Value: od}})
	}
	if len(extra) > 0 {
		out = append(out, bson.E{Key: "$and", Value: extra})
	}
	return out
}

func hasKey(d bson.D, k string) bool {
	for _, e := range d {
		if e.Key == k {
			return true
		}
	}
	return false
}

// renderExact renders n for MongoDB: array conditions are $elemMatch.
func renderExact(n node) bson.D {
	switch x := n.(type) {
	case constN:
		if x {
			return bson.D{}
		}
		return falseFilter()
	case andN:
		a := make(bson.A, len(x))
		for i, c := range x {
			a[i] = renderExact(c)
		}
		return bson.D{{Key: "$and", Value: a}}
	case orN:
		a := make(bson.A, len(x))
		for i, c := range x {
			a[i] = renderExact(c)
		}
		return bson.D{{Key: "$or", Value: a}}
	case notN:
		return bson.D{{Key: "$nor", Value: bson.A{renderExact(x.n)}}}
	case topN:
		return fieldsDoc(x, "")
	case elemN:
		return bson.D{{Key: x.path, Value: bson.D{{Key: "$elemMatch", Value: elemDoc(elem(x))}}}}
	}
	panic("mquery: unknown node")
}

// elemDoc is the $elemMatch document of e; nested element matches of the
// same array go to a $and (a document cannot repeat a key).
func elemDoc(e elem) bson.D {
	d := fieldsDoc(e.conds, "")
	count := map[string]int{}
	for _, n := range e.nested {
		count[n.path]++
	}
	var and bson.A
	for _, n := range e.nested {
		m := bson.E{Key: n.path, Value: bson.D{{Key: "$elemMatch", Value: elemDoc(n)}}}
		if count[n.path] > 1 {
			and = append(and, bson.D{m})
		} else {
			d = append(d, m)
		}
	}
	if len(and) > 0 {
		d = append(d, bson.E{Key: "$and", Value: and})
	}
	return d
}

// renderCoarse renders n for servers without $elemMatch on documents
// (FerretDB v1.24): element conditions become independent dot-notation
// conditions, which select a superset. exact reports whether the filter
// selects exactly the matches (no element conditions were loosened).
func renderCoarse(n node) (bson.D, bool) {
	return renderSuperset(n, func(n node) (bson.D, bool) {
		if x, ok := n.(elemN); ok {
			return fieldsDoc(flatConds(elem(x), x.path+"."), ""), false
		}
		return renderExact(n), true // constN, topN
	})
}

// renderSuperset renders the And/Or/Not structure of n around leaves that
// leaf renders, each possibly as a superset (exact false); the result is
// a superset of the matches, exact when every leaf that counts is.
func renderSuperset(n node, leaf func(node) (bson.D, bool)) (bson.D, bool) {
	switch x := n.(type) {
	case andN:
		a := bson.A{}
		exact := true
		for _, c := range x {
			d, ok := renderSuperset(c, leaf)
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
			d, ok := renderSuperset(c, leaf)
			exact = exact && ok
			if len(d) == 0 {
				// One alternative matches everything: so does the Or.
				return bson.D{}, exact && allExact(x[i+1:], leaf)
			}
			a[i] = d
		}
		return bson.D{{Key: "$or", Value: a}}, exact
	case notN:
		d, ok := renderSuperset(x.n, leaf)
		if !ok {
			// The complement of a superset is a subset: match everything
			// and leave the decision to Match.
			return bson.D{}, false
		}
		return bson.D{{Key: "$nor", Value: bson.A{d}}}, true
	}
	return leaf(n)
}

func allExact(ns []node, leaf func(node) (bson.D, bool)) bool {
	for _, n := range ns {
		if _, ok := renderSuperset(n, leaf); !ok {
			return false
		}
	}
	return true
}

// flatConds lists the element conditions of e with full dotted paths,
// dropping those that are not implied by a correlated match
// ($exists false: another element may lack the field).
func flatConds(e elem, prefix string) []fcond {
	var out []fcond
	for _, c := range e.conds {
		if c.op == opExists && c.val == false {
			continue
		}
		c.field = prefix + c.field
		out = append(out, c)
	}
	for _, n := range e.nested {
		out = append(out, flatConds(n, prefix+n.path+".")...)
	}
	return out
}
