package mongo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// One collection pair per resource type (README.md, "Document layout"):
// the current versions of type T in res_T, its versions in hist_T. A
// search of one type reads one collection, which is what keeps FerretDB
// (it decodes every document of a collection for any query) proportional
// to the size of the type searched; keys stay "Type/id" and "Type/id/vid",
// so every write of a journal is routed by the type of its key.
const (
	resPrefix  = "res_"
	histPrefix = "hist_"
)

// validType reports whether typ can name a collection: FHIR resource
// type names are letters (and digits); anything else is not stored.
func validType(typ string) bool {
	if typ == "" || len(typ) > 64 {
		return false
	}
	for _, c := range typ {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// resColl is the collection of the current versions of typ.
func (s *Store) resColl(typ string) *mongo.Collection { return s.db.Collection(resPrefix + typ) }

// histColl is the collection of the versions of typ.
func (s *Store) histColl(typ string) *mongo.Collection { return s.db.Collection(histPrefix + typ) }

// typeOf is the type of a key "Type/id" or "Type/id/vid".
func typeOf(key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i]
	}
	return key
}

// ensureType creates the collections of typ and their indexes the first
// time this process writes typ, then calls Options.OnNewCollection (hook
// set). Idempotent: collections or indexes that exist are kept.
func (s *Store) ensureType(ctx context.Context, typ string, hook bool) error {
	if _, ok := s.ensured.Load(typ); ok {
		return nil
	}
	if !validType(typ) {
		return fmt.Errorf("mongo: invalid resource type %q", typ)
	}
	s.ensureMu.Lock()
	defer s.ensureMu.Unlock()
	if _, ok := s.ensured.Load(typ); ok {
		return nil
	}
	for _, c := range []string{resPrefix + typ, histPrefix + typ} {
		if err := s.createCollection(ctx, c); err != nil {
			return err
		}
	}
	if err := s.ensureIndexes(ctx, s.typeIndexes(typ)); err != nil {
		return err
	}
	if hook && s.onNew != nil {
		if err := s.onNew(ctx); err != nil {
			return fmt.Errorf("mongo: new collection hook for %s: %w", typ, err)
		}
	}
	s.ensured.Store(typ, true)
	return nil
}

// ensureKeys ensures the types of the given keys.
func (s *Store) ensureKeys(ctx context.Context, keys []jkey) error {
	for _, k := range keys {
		if err := s.ensureType(ctx, typeOf(k.K), true); err != nil {
			return err
		}
	}
	return nil
}

// createCollection creates c unless it exists.
func (s *Store) createCollection(ctx context.Context, c string) error {
	err := s.db.CreateCollection(ctx, c)
	var ce mongo.CommandError
	if err == nil || (errors.As(err, &ce) && ce.Code == 48) || strings.Contains(err.Error(), "already exists") {
		return nil
	}
	return fmt.Errorf("mongo: create collection %s: %w", c, err)
}

// storedTypes lists the types that have a current-version collection,
// sorted (every process's, not only those this one wrote).
func (s *Store) storedTypes(ctx context.Context, prefix string) ([]string, error) {
	names, err := s.db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("mongo: list collections: %w", err)
	}
	var types []string
	for _, n := range names {
		if t, ok := strings.CutPrefix(n, prefix); ok && validType(t) {
			types = append(types, t)
		}
	}
	sort.Strings(types)
	return types, nil
}

// ensureStored ensures the collections (and indexes) of every type stored
// already, checks their layout (checkLayout), then calls the hook once.
func (s *Store) ensureStored(ctx context.Context) error {
	seen := map[string]bool{}
	for _, p := range []string{resPrefix, histPrefix} {
		types, err := s.storedTypes(ctx, p)
		if err != nil {
			return err
		}
		for _, t := range types {
			if err := s.checkLayout(ctx, s.db.Collection(p+t)); err != nil {
				return err
			}
			if seen[t] {
				continue
			}
			seen[t] = true
			if err := s.ensureType(ctx, t, false); err != nil {
				return err
			}
		}
	}
	if s.onNew != nil && len(seen) > 0 {
		if err := s.onNew(ctx); err != nil {
			return fmt.Errorf("mongo: new collection hook: %w", err)
		}
	}
	return nil
}

// ErrCompactLayout is returned by every operation on the resources of a
// database written in the compact layout of the embedded FerretDB store
// (fhirgate before issue 13: the search values in ixb, k and srt instead
// of idx), which this version does not read: its searches would miss
// every such resource. Open still succeeds, and recovers unfinished
// transactions, so that `fhirgate migrate` can read the database.
var ErrCompactLayout = errors.New("mongo: the database holds resources in the compact layout of the embedded FerretDB store (written by an earlier fhirgate), which this version does not read: run `fhirgate migrate` to move them to a current store")

// checkLayout looks at the first document of coll (one read, no filter:
// no scan on either flavor) and records ErrCompactLayout in s.legacy when
// it is in the compact layout. A store wrote one layout into a
// collection, so one document tells.
func (s *Store) checkLayout(ctx context.Context, coll *mongo.Collection) error {
	if s.legacy != nil {
		return nil
	}
	raw, err := coll.FindOne(ctx, bson.D{}, options.FindOne().SetProjection(bson.D{{Key: "ixb", Value: 1}})).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mongo: check layout of %s: %w", coll.Name(), err)
	}
	if _, err := raw.LookupErr("ixb"); err == nil {
		s.legacy = fmt.Errorf("%w (collection %s)", ErrCompactLayout, coll.Name())
	}
	return nil
}

// groupByType splits indexes 0..n-1 by the type of key(i), in order of
// first appearance.
func groupByType(n int, key func(int) string) (types []string, groups map[string][]int) {
	groups = map[string][]int{}
	for i := 0; i < n; i++ {
		t := typeOf(key(i))
		if _, ok := groups[t]; !ok {
			types = append(types, t)
		}
		groups[t] = append(groups[t], i)
	}
	return types, groups
}

// writeEachRes is writeEach on the current-version collections, each
// write routed by the type of its _id. matched is nil when some
// collection reported counts only (MongoDB).
func (s *Store) writeEachRes(ctx context.Context, ws []condWrite) ([]bool, int, error) {
	if len(ws) == 0 {
		return nil, 0, nil
	}
	types, groups := groupByType(len(ws), func(i int) string { return ws[i].ID })
	matched := make([]bool, len(ws))
	counted := false
	total := 0
	for _, t := range types {
		idx := groups[t]
		sub := make([]condWrite, len(idx))
		for j, i := range idx {
			sub[j] = ws[i]
		}
		m, n, err := s.writeEach(ctx, s.resColl(t), sub)
		if err != nil {
			return nil, 0, err
		}
		total += n
		if m == nil {
			counted = true
			continue
		}
		for j, i := range idx {
			matched[i] = m[j]
		}
	}
	if counted {
		return nil, total, nil
	}
	return matched, total, nil
}

// deleteIfRes is deleteIf on the current-version collections.
func (s *Store) deleteIfRes(ctx context.Context, ids []string, cs []cond) (int, error) {
	types, groups := groupByType(len(ids), func(i int) string { return ids[i] })
	total := 0
	for _, t := range types {
		sub := make([]string, 0, len(groups[t]))
		for _, i := range groups[t] {
			sub = append(sub, ids[i])
		}
		n, err := s.deleteIf(ctx, s.resColl(t), sub, cs)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// findIDsRes is findIDs on the current-version collections.
func (s *Store) findIDsRes(ctx context.Context, ids []string, projection bson.D) ([]bson.Raw, error) {
	types, groups := groupByType(len(ids), func(i int) string { return ids[i] })
	var out []bson.Raw
	for _, t := range types {
		sub := make([]string, 0, len(groups[t]))
		for _, i := range groups[t] {
			sub = append(sub, ids[i])
		}
		raws, err := s.findIDs(ctx, s.resColl(t), sub, projection)
		if err != nil {
			return nil, err
		}
		out = append(out, raws...)
	}
	return out, nil
}

// docsByIDRes is docsByID on the current-version collections.
func (s *Store) docsByIDRes(ctx context.Context, ids []string) (map[string]bson.Raw, error) {
	raws, err := s.findIDsRes(ctx, ids, nil)
	if err != nil {
		return nil, err
	}
	m := make(map[string]bson.Raw, len(raws))
	for _, r := range raws {
		if id, ok := r.Lookup("_id").StringValueOK(); ok {
			m[id] = r
		}
	}
	return m, nil
}
