// Package mquery compiles the backend-neutral search AST (fhir/search.Expr)
// into MongoDB filters and sorts, and declares the indexes those queries need.
//
// Document layout it relies on (owned together with store/mongo):
//
//	_id  "Type/id" (current collection) or "Type/id/vid" (history)
//	t    resource type        i   logical id        v  version (int64)
//	lu   lastUpdated (date)   del deleted (bool)    raw resource JSON
//	idx  search.Index         rel store.Release
package mquery

import (
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// Filter compiles e (nil: match all) to a MongoDB filter document.
func Filter(e search.Expr) (bson.D, error) {
	if e == nil {
		return bson.D{}, nil
	}
	return nil, errUnsupported(e)
}

// SortFields returns the document paths and directions (1 / -1) for keys;
// the caller appends its tie-breakers.
func SortFields(keys []search.SortKey) bson.D {
	return nil
}

// Indexes lists the search indexes of the current-version collection.
func Indexes() []mongo.IndexModel { return nil }
