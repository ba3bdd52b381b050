package mongo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

// Read returns the current version (a tombstone with Deleted set).
// A create placeholder of a transaction in flight reads as absent.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Record, error) {
	if !validType(typ) {
		return store.Record{}, notFound(currentID(typ, id))
	}
	if s.legacy != nil {
		return store.Record{}, s.legacy
	}
	var d doc
	err := decodeOne(s.resColl(typ).FindOne(ctx, bson.D{{Key: "_id", Value: currentID(typ, id)}}), &d)
	if errors.Is(err, mongo.ErrNoDocuments) || (err == nil && d.Pending) {
		return store.Record{}, notFound(currentID(typ, id))
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("mongo: read %s/%s: %w", typ, id, err)
	}
	return d.record(), nil
}

// decodeOne decodes a FindOne result into d directly (doc.UnmarshalBSON),
// without the driver's decoder set-up.
func decodeOne(r *mongo.SingleResult, d *doc) error {
	raw, err := r.Raw()
	if err != nil {
		return err
	}
	return d.UnmarshalBSON(raw)
}

// VRead returns version vid (http.html#vread): the current document when
// it is that version, else the history copy.
func (s *Store) VRead(ctx context.Context, typ, id string, vid int64) (store.Record, error) {
	if !validType(typ) {
		return store.Record{}, notFound(historyID(typ, id, vid))
	}
	if s.legacy != nil {
		return store.Record{}, s.legacy
	}
	var d doc
	err := decodeOne(s.resColl(typ).FindOne(ctx, bson.D{{Key: "_id", Value: currentID(typ, id)}}), &d)
	if err == nil && !d.Pending && d.V == vid {
		return d.record(), nil
	}
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return store.Record{}, fmt.Errorf("mongo: vread %s: %w", historyID(typ, id, vid), err)
	}
	if err == nil && (d.Pending || d.V < vid) {
		return store.Record{}, notFound(historyID(typ, id, vid))
	}
	d = doc{}
	err = decodeOne(s.histColl(typ).FindOne(ctx, bson.D{{Key: "_id", Value: historyID(typ, id, vid)}}), &d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Record{}, notFound(historyID(typ, id, vid))
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("mongo: vread %s: %w", historyID(typ, id, vid), err)
	}
	return d.record(), nil
}

// searchOrder is the order of a search: the _sort keys compiled by mquery,
// then t and i ascending (the tie-breakers of the store.Query contract).
func (s *Store) searchOrder(keys []search.SortKey) ([]sortField, error) {
	var fields []sortField
	seen := map[string]bool{}
	for _, e := range mquery.SortFields(keys) {
		dir, ok := direction(e.Value)
		if !ok {
			return nil, fmt.Errorf("mongo: unsupported sort direction %v for %s", e.Value, e.Key)
		}
		if seen[e.Key] {
			continue
		}
		seen[e.Key] = true
		fields = append(fields, sortField{e.Key, dir})
	}
	for _, p := range []string{"t", "i"} {
		if !seen[p] {
			fields = append(fields, sortField{p, 1})
		}
	}
	return fields, nil
}

func direction(v any) (int, bool) {
	var f float64
	switch v := v.(type) {
	case int:
		f = float64(v)
	case int32:
		f = float64(v)
	case int64:
		f = float64(v)
	case float64:
		f = v
	default:
		return 0, false
	}
	switch {
	case f > 0:
		return 1, true
	case f < 0:
		return -1, true
	}
	return 0, false
}

// historyOrder is newest first; t, i, v make it total.
var historyOrder = []sortField{{"lu", -1}, {"t", 1}, {"i", 1}, {"v", -1}}

// Search answers q from the current versions (search.html). Deleted
// resources and create placeholders never match. Each type is one
// collection; a search of several types (or all: system search) runs the
// same query on each and merges the pages (see page).
func (s *Store) Search(ctx context.Context, q store.Query) (store.Page, error) {
	if s.legacy != nil {
		return store.Page{}, s.legacy
	}
	f, m, err := s.compile(q.Filter, false)
	if err != nil {
		return store.Page{}, err
	}
	fields, err := s.searchOrder(q.Sort)
	if err != nil {
		return store.Page{}, err
	}
	types := append([]string(nil), q.Types...)
	sort.Strings(types)
	sig := orderSig("s", types, fields)
	scan := types
	if len(scan) == 0 {
		if scan, err = s.storedTypes(ctx, resPrefix); err != nil {
			return store.Page{}, err
		}
	}
	var parts []part
	for i, t := range scan {
		if !validType(t) || (i > 0 && scan[i-1] == t) {
			continue
		}
		parts = append(parts, part{s.resColl(t), and(bson.D{{Key: "t", Value: t}}, bson.D{{Key: "del", Value: false}}, f)})
	}
	return s.page(ctx, "s", sig, parts, m, fields, q.Count, q.Cursor, q.Total)
}

// compile compiles a search filter in the flavor's dialect: exact on
// MongoDB (the Matcher is nil); on FerretDB (Flavor.dialect) the filter
// may select a superset, and the returned Matcher (nil when the filter is
// exact after all) decides in Go.
func (s *Store) compile(e search.Expr, history bool) (bson.D, *mquery.Matcher, error) {
	f, exact, err := mquery.Compile(e, mquery.Options{Dialect: s.flavor.dialect(), History: history})
	if err != nil {
		return nil, nil, fmt.Errorf("mongo: filter: %w", err)
	}
	if exact {
		return f, nil, nil
	}
	m, err := mquery.NewMatcher(e)
	if err != nil {
		return nil, nil, fmt.Errorf("mongo: filter: %w", err)
	}
	return f, m, nil
}

func typesFilter(types []string) bson.D {
	switch len(types) {
	case 0:
		return nil
	case 1:
		return bson.D{{Key: "t", Value: types[0]}}
	}
	return bson.D{{Key: "t", Value: bson.D{{Key: "$in", Value: types}}}}
}

// part is one collection of a query and its filter there.
type part struct {
	coll *mongo.Collection
	base bson.D
}

// hit is one record found and the values of its sort fields.
type hit struct {
	r    store.Record
	vals []bson.RawValue
}

// page runs one keyset page of the parts (and m, if not nil) in order
// fields: on each collection the records after the cursor, at most
// count+1 of them, merged in the same order (which ends with fields that
// are unique across collections: t, i), of which the first count are the
// page; the cursor is taken from the last of them. Total is the sum.
func (s *Store) page(ctx context.Context, kind, sig string, parts []part, m *mquery.Matcher, fields []sortField, count int, cursor string, total bool) (store.Page, error) {
	p := store.Page{Total: -1}
	var vals []bson.RawValue
	if cursor != "" {
		var err error
		if vals, err = s.decodeCursor(cursor, kind, sig, len(fields)); err != nil {
			return store.Page{}, err
		}
	}
	countParts := func() error {
		p.Total = 0
		for _, pt := range parts {
			n, err := s.count(ctx, pt.coll, pt.base, m)
			if err != nil {
				return err
			}
			p.Total += n
		}
		return nil
	}
	if count <= 0 {
		if total {
			if err := countParts(); err != nil {
				return store.Page{}, err
			}
		}
		return p, nil
	}
	// Flavor.totalInScan: a first page that needs the total counts the
	// matches while it reads the page, in the same scan.
	single := total && vals == nil && s.flavor.totalInScan()
	var hits []hit
	var matched int64
	for _, pt := range parts {
		filter := pt.base
		if vals != nil {
			filter = and(pt.base, keysetFilter(fields, vals))
		}
		h, n, err := s.fetch(ctx, pt.coll, filter, m, fields, count+1, single)
		if err != nil {
			return store.Page{}, err
		}
		hits = append(hits, h...)
		matched += n
	}
	switch {
	case single:
		p.Total = matched
	case total && vals == nil && len(hits) <= count:
		p.Total = int64(len(hits)) // every match is on this first page
	case total:
		if err := countParts(); err != nil {
			return store.Page{}, err
		}
	}
	if len(parts) > 1 {
		sort.SliceStable(hits, func(a, b int) bool { return compareTuples(hits[a].vals, hits[b].vals, fields) < 0 })
	}
	if kind == "h" {
		// A version in both collections (an update cut between its two
		// writes, or under way) is listed once; the copies are adjacent,
		// with equal sort values. Dropping one cannot cut the page short:
		// a part that filled its count+1 still leaves count+1 distinct.
		out := hits[:0]
		for i, h := range hits {
			if i > 0 && sameKey(hits[i-1].r, h.r) {
				continue
			}
			out = append(out, h)
		}
		hits = out
	}
	if len(hits) > count {
		next, err := s.encodeCursor(kind, sig, hits[count-1].vals)
		if err != nil {
			return store.Page{}, err
		}
		p.Next = next
		hits = hits[:count]
	}
	for _, h := range hits {
		p.Records = append(p.Records, h.r)
	}
	return p, nil
}

func sameKey(a, b store.Record) bool {
	return a.Type == b.Type && a.ID == b.ID && a.VersionID == b.VersionID
}

// fetch reads the first limit records of filter (that m accepts) from
// coll in order fields. With all it reads every match and also returns
// how many there are.
func (s *Store) fetch(ctx context.Context, coll *mongo.Collection, filter bson.D, m *mquery.Matcher, fields []sortField, limit int, all bool) ([]hit, int64, error) {
	opts := options.Find().SetSort(sortDoc(fields))
	switch {
	case all:
		opts.SetBatchSize(1000)
	case m == nil:
		opts.SetLimit(int64(limit))
	default:
		opts.SetBatchSize(int32(min(max(2*limit, 100), 1000)))
	}
	cur, err := coll.Find(ctx, filter, opts)
	if err != nil {
		return nil, 0, fmt.Errorf("mongo: find %s: %w", coll.Name(), err)
	}
	defer cur.Close(ctx)
	var hits []hit
	var n int64
	for (all || len(hits) < limit) && cur.Next(ctx) {
		if len(hits) >= limit && m == nil {
			n++ // counted only: not decoded
			continue
		}
		var d doc
		if err := cur.Decode(&d); err != nil {
			return nil, 0, fmt.Errorf("mongo: decode %s: %w", coll.Name(), err)
		}
		r := d.record()
		if m != nil && !m.Match(r) {
			continue
		}
		n++
		if len(hits) < limit {
			hits = append(hits, hit{r, sortValues(bytes.Clone(cur.Current), fields)})
		}
	}
	if err := cur.Err(); err != nil {
		return nil, 0, fmt.Errorf("mongo: find %s: %w", coll.Name(), err)
	}
	return hits, n, nil
}

// count counts the documents of base that m (if not nil) accepts.
func (s *Store) count(ctx context.Context, coll *mongo.Collection, base bson.D, m *mquery.Matcher) (int64, error) {
	if m == nil {
		n, err := coll.CountDocuments(ctx, base)
		if err != nil {
			return 0, fmt.Errorf("mongo: count %s: %w", coll.Name(), err)
		}
		return n, nil
	}
	cur, err := coll.Find(ctx, base, options.Find().SetProjection(bson.D{{Key: "raw", Value: 0}}))
	if err != nil {
		return 0, fmt.Errorf("mongo: count %s: %w", coll.Name(), err)
	}
	defer cur.Close(ctx)
	var n int64
	for cur.Next(ctx) {
		var d doc
		if err := cur.Decode(&d); err != nil {
			return 0, fmt.Errorf("mongo: count %s: %w", coll.Name(), err)
		}
		if m.Match(d.record()) {
			n++
		}
	}
	if err := cur.Err(); err != nil {
		return 0, fmt.Errorf("mongo: count %s: %w", coll.Name(), err)
	}
	return n, nil
}

// History lists versions newest first (http.html#history): by lastUpdated
// descending, then type, id ascending and version descending. Without a
// type it merges the history collections of every type (see page).
func (s *Store) History(ctx context.Context, q store.HistoryQuery) (store.Page, error) {
	if s.legacy != nil {
		return store.Page{}, s.legacy
	}
	if q.ID != "" && q.Type == "" {
		return store.Page{}, errors.New("mongo: history of an id needs a type")
	}
	f, m, err := s.compile(q.Filter, true)
	if err != nil {
		return store.Page{}, err
	}
	var since bson.D
	if !q.Since.IsZero() {
		since = bson.D{{Key: "lu", Value: bson.D{{Key: "$gte", Value: q.Since}}}}
	}
	types := []string{q.Type}
	if q.Type == "" {
		if types, err = s.storedTypes(ctx, histPrefix); err != nil {
			return store.Page{}, err
		}
	}
	// Every version is in hist_<Type> (superseded) or res_<Type>
	// (current; a create placeholder is no version yet).
	notPending := bson.D{{Key: "pending", Value: bson.D{{Key: "$ne", Value: true}}}}
	var parts []part
	for _, t := range types {
		if !validType(t) {
			continue
		}
		scope := bson.D{{Key: "t", Value: t}}
		if q.ID != "" {
			scope = append(scope, bson.E{Key: "i", Value: q.ID})
		}
		if q.At.IsZero() {
			parts = append(parts, part{s.histColl(t), and(scope, since, f)}, part{s.resColl(t), and(scope, notPending, since, f)})
			continue
		}
		histIDs, resIDs, err := s.versionsAt(ctx, t, scope, q.At)
		if err != nil {
			return store.Page{}, err
		}
		if len(histIDs) > 0 {
			parts = append(parts, part{s.histColl(t), and(bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: histIDs}}}}, since, f)})
		}
		if len(resIDs) > 0 {
			parts = append(parts, part{s.resColl(t), and(bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: resIDs}}}}, notPending, since, f)})
		}
	}
	sigParts := []string{q.Type, q.ID}
	if !q.At.IsZero() {
		sigParts = append(sigParts, q.At.UTC().Format(time.RFC3339Nano))
	}
	sig := orderSig("h", sigParts, historyOrder)
	return s.page(ctx, "h", sig, parts, m, historyOrder, q.Count, q.Cursor, q.Total)
}

// versionsAt returns, for each resource of typ in scope, the _id of its
// version that was current at at (its newest version with lu <= at): in
// hist_<typ> or in res_<typ> (the current document, preferred when both
// hold it). It reads one small projection per version up to at, so a
// whole-system _at is proportional to the history size (README.md, gaps).
func (s *Store) versionsAt(ctx context.Context, typ string, scope bson.D, at time.Time) (histIDs, resIDs []string, err error) {
	type pick struct {
		v   int64
		id  string
		res bool
	}
	picks := map[string]pick{}
	var order []string
	read := func(coll *mongo.Collection, res bool) error {
		filter := and(scope, bson.D{{Key: "lu", Value: bson.D{{Key: "$lte", Value: at}}}})
		if res {
			filter = and(filter, bson.D{{Key: "pending", Value: bson.D{{Key: "$ne", Value: true}}}})
		}
		opts := options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "t", Value: 1}, {Key: "i", Value: 1}, {Key: "v", Value: 1}})
		cur, err := coll.Find(ctx, filter, opts)
		if err != nil {
			return fmt.Errorf("mongo: history at: %w", err)
		}
		defer cur.Close(ctx)
		for cur.Next(ctx) {
			var d struct {
				ID string `bson:"_id"`
				T  string `bson:"t"`
				I  string `bson:"i"`
				V  int64  `bson:"v"`
			}
			if err := cur.Decode(&d); err != nil {
				return fmt.Errorf("mongo: history at: %w", err)
			}
			k := currentID(d.T, d.I)
			p, seen := picks[k]
			if !seen {
				order = append(order, k)
			}
			if !seen || d.V > p.v || (d.V == p.v && res) {
				picks[k] = pick{d.V, d.ID, res}
			}
		}
		return cur.Err()
	}
	if err := read(s.histColl(typ), false); err != nil {
		return nil, nil, err
	}
	if err := read(s.resColl(typ), true); err != nil {
		return nil, nil, err
	}
	for _, k := range order {
		if p := picks[k]; p.res {
			resIDs = append(resIDs, p.id)
		} else {
			histIDs = append(histIDs, p.id)
		}
	}
	return histIDs, resIDs, nil
}

// ForEach calls fn with every current non-deleted version of typ ("" = all).
func (s *Store) ForEach(ctx context.Context, typ string, fn func(store.Record) error) error {
	if s.legacy != nil {
		return s.legacy
	}
	types := []string{typ}
	if typ == "" {
		var err error
		if types, err = s.storedTypes(ctx, resPrefix); err != nil {
			return err
		}
	}
	for _, t := range types {
		if !validType(t) {
			continue
		}
		if err := s.forEach(ctx, t, fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) forEach(ctx context.Context, typ string, fn func(store.Record) error) error {
	filter := and(typesFilter([]string{typ}), bson.D{{Key: "del", Value: false}})
	cur, err := s.resColl(typ).Find(ctx, filter)
	if err != nil {
		return fmt.Errorf("mongo: foreach: %w", err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d doc
		if err := cur.Decode(&d); err != nil {
			return fmt.Errorf("mongo: foreach decode: %w", err)
		}
		if err := fn(d.record()); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("mongo: foreach: %w", err)
	}
	return nil
}

// SetDerived replaces Index and/or Release (nil: unchanged) of version vid:
// in the current document when vid is current (and in a history copy of
// it, if one exists), else in history. It counts the change in dv, which
// the conditional writes of an update compare (fast.go), so the version's
// copy in history always ends with the newest derived state.
func (s *Store) SetDerived(ctx context.Context, typ, id string, vid int64, idx *search.Index, rel *store.Release) error {
	hid := historyID(typ, id, vid)
	if s.legacy != nil {
		return s.legacy
	}
	if !validType(typ) {
		return notFound(hid)
	}
	set := bson.D{}
	if idx != nil {
		set = append(set, bson.E{Key: "idx", Value: mquery.ToBSON(*idx)})
	}
	if rel != nil {
		set = append(set, bson.E{Key: "rel", Value: mquery.BSONRelease(*rel)})
	}
	hist, res := s.histColl(typ), s.resColl(typ)
	key := currentID(typ, id)
	deadline := s.now().Add(s.lease)
	for {
		var cur struct {
			V       int64  `bson:"v"`
			Tx      string `bson:"tx"`
			Pending bool   `bson:"pending"`
			DV      int64  `bson:"dv"`
		}
		err := res.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&cur)
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return fmt.Errorf("mongo: set derived %s: %w", key, err)
		}
		current := err == nil && !cur.Pending && cur.V == vid
		if current && cur.Tx != "" {
			// A transaction replacing vid copies it to history at its
			// end: wait for it, within the lease.
			if s.now().After(deadline) {
				return fmt.Errorf("mongo: set derived %s: version %d still being written", key, vid)
			}
			if err := wait(ctx, 10*time.Millisecond); err != nil {
				return fmt.Errorf("mongo: set derived %s: %w", key, err)
			}
			continue
		}
		if !current {
			if len(set) == 0 {
				n, err := hist.CountDocuments(ctx, bson.D{{Key: "_id", Value: hid}})
				if err != nil {
					return fmt.Errorf("mongo: set derived %s: %w", hid, err)
				}
				if n == 0 {
					return notFound(hid)
				}
				return nil
			}
			ok, err := s.updateIf(ctx, hist, hid, nil, bson.D{{Key: "$set", Value: set}, {Key: "$inc", Value: bson.D{{Key: "dv", Value: int64(1)}}}})
			if err != nil {
				return fmt.Errorf("mongo: set derived %s: %w", hid, err)
			}
			if !ok {
				return notFound(hid)
			}
			return nil
		}
		if len(set) == 0 {
			return nil
		}
		dv := cur.DV + 1
		upd := bson.D{{Key: "$set", Value: append(append(bson.D{}, set...), bson.E{Key: "dv", Value: dv})}}
		ok, err := s.updateIf(ctx, res, key, []cond{eq("v", vid), absent("tx"), absent("pending"), dvCond(cur.DV)}, upd)
		if err != nil {
			return fmt.Errorf("mongo: set derived %s: %w", key, err)
		}
		if !ok {
			continue // changed meanwhile: look again
		}
		// A history copy of the current version (an update cut short, or
		// under way) gets the same state.
		if _, err := s.updateIf(ctx, hist, hid, []cond{notAbove("dv", dv)}, upd); err != nil {
			return fmt.Errorf("mongo: set derived %s: %w", hid, err)
		}
		return nil
	}
}
