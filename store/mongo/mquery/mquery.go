// Package mquery compiles the backend-neutral search AST (fhir/search.Expr)
// into MongoDB filters and sorts, and declares the indexes those queries need.
//
// Document layout it relies on (owned together with store/mongo):
//
//	_id  "Type/id" (current collection) or "Type/id/vid" (history)
//	t    resource type        i   logical id        v  version (int64)
//	lu   lastUpdated (date)   del deleted (bool)    raw resource JSON
//	idx  search.Index         rel store.Release
//
// # MongoDB and FerretDB
//
// Every search value lives in an array of small documents (idx.tok,
// idx.dt, ...) whose "p" names the parameter, so a condition must hold on
// one element: {"idx.tok": {$elemMatch: {p: "code", c: "1234-5"}}}. That is
// what Filter emits (the MongoDB dialect: exact, no Go re-check) and what
// the declared multikey indexes serve (indexes.go; TestIndexCoverage holds
// every query shape to one of them, TestFiltersAgreeWithLungo the filters
// to Match on a second MongoDB implementation).
//
// FerretDB v1.24 (store/embedded, the tests' server) rejects $elemMatch
// with field conditions ("unknown operator: p"), $and/$or/$nor inside
// $elemMatch, and equality on whole sub-documents; it has no usable $expr.
// With the FerretDB dialect (chosen by store/mongo's Flavor, nowhere
// else), Compile therefore emits independent dot-notation conditions
// ({"idx.tok.p": "code", "idx.tok.c": "1234-5"}), which select a superset,
// and reports exact=false; the store must then keep only the documents for
// which Match (the same semantics evaluated in Go) is true, paging and
// counting after that filter. FerretDB scans every document anyway, so
// the Go filter costs little beyond decoding.
package mquery

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// Dialect selects the server the filter is for.
type Dialect int

const (
	// MongoDB: exact filters with $elemMatch.
	MongoDB Dialect = iota
	// FerretDB: superset filters plus Match in Go (see package doc), for
	// FerretDB v1.24 only.
	FerretDB
)

func (d Dialect) String() string {
	if d == FerretDB {
		return "ferretdb"
	}
	return "mongodb"
}

// Options controls Compile.
type Options struct {
	Dialect Dialect
	// History compiles for the history collection, whose _id is
	// "Type/id/vid": KeyCond becomes {t, i} pairs.
	History bool
}

// Compile compiles e (nil: match all). exact is false when the filter
// selects a superset of the matches, and the caller must apply Match (or a
// Matcher) to each document it returns; it is always true for MongoDB.
func Compile(e search.Expr, o Options) (filter bson.D, exact bool, err error) {
	n, err := lowerer{history: o.History}.lower(e)
	if err != nil {
		return nil, false, err
	}
	if o.Dialect == FerretDB {
		f, exact := renderCoarse(n)
		return f, exact, nil
	}
	return renderExact(n), true, nil
}

// Filter compiles e (nil: match all) to an exact MongoDB filter document
// for the current-version collection. FerretDB cannot run it: use Compile
// with the FerretDB dialect there.
func Filter(e search.Expr) (bson.D, error) {
	f, _, err := Compile(e, Options{})
	return f, err
}

// FilterHistory is Filter for the history collection (_id "Type/id/vid"):
// KeyCond compiles to {t, i} pairs.
func FilterHistory(e search.Expr) (bson.D, error) {
	f, _, err := Compile(e, Options{History: true})
	return f, err
}

// SortFields returns the document paths and directions (1 / -1) for keys
// (search.html#sort): _id sorts by i, _lastUpdated by lu, any other
// parameter by its scalar idx.srt.<code>. The caller appends its
// tie-breakers.
func SortFields(keys []search.SortKey) bson.D {
	var out bson.D
	for _, k := range keys {
		f := "idx.srt." + k.Param
		switch k.Param {
		case "_id":
			f = "i"
		case "_lastUpdated":
			f = "lu"
		}
		dir := 1
		if k.Desc {
			dir = -1
		}
		out = append(out, bson.E{Key: f, Value: dir})
	}
	return out
}
