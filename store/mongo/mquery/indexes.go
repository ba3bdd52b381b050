package mquery

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// indexKeys lists the search indexes of the current-version collection,
// each in the field order of the query shape it serves (the leading
// equality fields first, then the range or prefix field). Array fields are
// multikey; the fields of one index that sit in the same array (idx.tok.p,
// idx.tok.c) are bound together by $elemMatch.
var indexKeys = [][]string{
	// _lastUpdated conditions and _sort=_lastUpdated.
	{"t", "lu"},
	// Compartment search and patient access control (CompartmentCond).
	{"idx.cpt", "t"},
	// :missing (MissingCond).
	{"t", "idx.has"},
	// SecurityCond (mostly negated, kept for the positive form).
	{"t", "idx.sec"},
	// string: default / :contains on the folded value; :exact.
	{"t", "idx.str.p", "idx.str.v"},
	{"t", "idx.str.p", "idx.str.x"},
	// token: code [+ system]; system only; :text.
	{"t", "idx.tok.p", "idx.tok.c", "idx.tok.s"},
	{"t", "idx.tok.p", "idx.tok.s"},
	{"t", "idx.tok.p", "idx.tok.t"},
	// reference: Type/id or URL; bare id; :identifier.
	{"t", "idx.ref.p", "idx.ref.r"},
	{"t", "idx.ref.p", "idx.ref.i"},
	{"t", "idx.ref.p", "idx.ref.ic", "idx.ref.is"},
	// date: conditions on the start (eq, lt, le, ne, sa, ap); on the end (gt, eb).
	{"t", "idx.dt.p", "idx.dt.lo", "idx.dt.hi"},
	{"t", "idx.dt.p", "idx.dt.hi"},
	// number, quantity, uri, composite.
	{"t", "idx.num.p", "idx.num.v"},
	{"t", "idx.qty.p", "idx.qty.v"},
	{"t", "idx.uri.p", "idx.uri.v"},
	{"t", "idx.cmp.p"},
	// Common _sort keys (search.html#sort) of patient-facing queries.
	{"t", "idx.srt.date"},
	{"t", "idx.srt.authoredon"},
	{"t", "idx.srt.issued"},
	{"t", "idx.srt.onset-date"},
	{"t", "idx.srt.birthdate"},
	{"t", "idx.srt.family"},
}

// Indexes lists the search indexes of the current-version collection.
// Create them one at a time (FerretDB v1.24 panics on createIndexes with
// several indexes when some exist). The store itself declares {t, i}.
func Indexes() []mongo.IndexModel {
	out := make([]mongo.IndexModel, 0, len(indexKeys))
	for _, keys := range indexKeys {
		d := make(bson.D, len(keys))
		for i, k := range keys {
			d[i] = bson.E{Key: k, Value: 1}
		}
		name := "s_" + strings.NewReplacer("idx.", "", ".", "_").Replace(strings.Join(keys, "_"))
		out = append(out, mongo.IndexModel{Keys: d, Options: options.Index().SetName(name)})
	}
	return out
}
