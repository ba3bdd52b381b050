package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Conditional single-document writes, the one primitive the transaction
// locks, the journal commit point and Lock are built on.
//
// On MongoDB a write whose filter carries the condition is atomic. On
// FerretDB v1.24 it is not (a query, then a write by _id), and only a
// filter that is exactly {_id: "string"} avoids decoding the collection;
// so there (Flavor.emulatedCAS) each conditional write reads the document
// by _id, checks the condition in Go and writes by _id, all under the
// per-database mutex of this process (Flavor.serialised). Both paths give
// the same answers.

// cond is one condition on a top-level field.
type cond struct {
	field string
	op    byte // '=' equals v, '!' absent, '<' a date <= v, 'l' absent or an int64 <= v
	v     any  // string, int64, bool or time.Time
}

func eq(f string, v any) cond             { return cond{f, '=', v} }
func absent(f string) cond                { return cond{f, '!', nil} }
func notAfter(f string, t time.Time) cond { return cond{f, '<', t} }
func notAbove(f string, n int64) cond     { return cond{f, 'l', n} }

// condFilter renders id and cs as a MongoDB filter.
func condFilter(id string, cs []cond) bson.D {
	f := bson.D{{Key: "_id", Value: id}}
	for _, c := range cs {
		switch c.op {
		case '=':
			f = append(f, bson.E{Key: c.field, Value: c.v})
		case '!':
			f = append(f, bson.E{Key: c.field, Value: bson.D{{Key: "$exists", Value: false}}})
		case '<':
			f = append(f, bson.E{Key: c.field, Value: bson.D{{Key: "$lte", Value: c.v}}})
		case 'l':
			f = append(f, bson.E{Key: "$or", Value: bson.A{
				bson.D{{Key: c.field, Value: bson.D{{Key: "$exists", Value: false}}}},
				bson.D{{Key: c.field, Value: bson.D{{Key: "$lte", Value: c.v}}}},
			}})
		}
	}
	return f
}

// condHolds evaluates cs on a document, as condFilter would match it.
func condHolds(doc bson.Raw, cs []cond) bool {
	for _, c := range cs {
		v, err := doc.LookupErr(c.field)
		if c.op == '!' {
			if err == nil {
				return false
			}
			continue
		}
		if c.op == 'l' {
			if n, ok := v.AsInt64OK(); err == nil && (!ok || n > c.v.(int64)) {
				return false
			}
			continue
		}
		if err != nil {
			return false
		}
		switch want := c.v.(type) {
		case string:
			if s, ok := v.StringValueOK(); !ok || s != want {
				return false
			}
		case int64:
			if n, ok := v.AsInt64OK(); !ok || n != want {
				return false
			}
		case bool:
			if b, ok := v.BooleanOK(); !ok || b != want {
				return false
			}
		case time.Time:
			t, ok := v.TimeOK()
			if !ok || (c.op == '<' && t.After(want)) || (c.op == '=' && !t.Equal(want)) {
				return false
			}
		default:
			panic(fmt.Sprintf("mongo: condition value of type %T", c.v))
		}
	}
	return true
}

// condWrite is a conditional update (Update, with operators) or
// replacement (Replace) of document ID.
type condWrite struct {
	ID      string
	If      []cond
	Update  bson.D
	Replace any
}

// writeEach applies every write whose condition holds; it returns which
// matched (nil on MongoDB, where a bulk write only counts) and how many.
func (s *Store) writeEach(ctx context.Context, coll *mongo.Collection, ws []condWrite) ([]bool, int, error) {
	if len(ws) == 0 {
		return nil, 0, nil
	}
	if !s.flavor.emulatedCAS() {
		if s.serial != nil {
			s.serial.Lock()
			defer s.serial.Unlock()
		}
		models := make([]mongo.WriteModel, len(ws))
		for i, w := range ws {
			if w.Replace != nil {
				models[i] = mongo.NewReplaceOneModel().SetFilter(condFilter(w.ID, w.If)).SetReplacement(w.Replace)
			} else {
				models[i] = mongo.NewUpdateOneModel().SetFilter(condFilter(w.ID, w.If)).SetUpdate(w.Update)
			}
		}
		res, err := s.bulkWrite(ctx, coll, models)
		if err != nil {
			return nil, 0, err
		}
		return nil, int(res.MatchedCount), nil
	}
	s.serial.Lock()
	defer s.serial.Unlock()
	ids := make([]string, len(ws))
	for i, w := range ws {
		ids[i] = w.ID
	}
	docs, err := s.docsByID(ctx, coll, ids)
	if err != nil {
		return nil, 0, err
	}
	matched := make([]bool, len(ws))
	var models []mongo.WriteModel
	for i, w := range ws {
		if d, ok := docs[w.ID]; !ok || !condHolds(d, w.If) {
			continue
		}
		matched[i] = true
		byID := bson.D{{Key: "_id", Value: w.ID}}
		if w.Replace != nil {
			models = append(models, mongo.NewReplaceOneModel().SetFilter(byID).SetReplacement(w.Replace))
		} else {
			models = append(models, mongo.NewUpdateOneModel().SetFilter(byID).SetUpdate(w.Update))
		}
	}
	if len(models) == 0 {
		return matched, 0, nil
	}
	// Nothing else of this process writes these documents meanwhile, and
	// documents are never deleted while a condition on them holds, so
	// every model matches.
	if _, err := s.bulkWrite(ctx, coll, models); err != nil {
		return nil, 0, err
	}
	return matched, len(models), nil
}

// updateIf is writeEach for one update; it reports whether it matched.
func (s *Store) updateIf(ctx context.Context, coll *mongo.Collection, id string, cs []cond, update bson.D) (bool, error) {
	_, n, err := s.writeEach(ctx, coll, []condWrite{{ID: id, If: cs, Update: update}})
	return n > 0, err
}

// deleteIf deletes each of ids whose condition cs holds; it returns how
// many it deleted.
func (s *Store) deleteIf(ctx context.Context, coll *mongo.Collection, ids []string, cs []cond) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	if !s.flavor.emulatedCAS() {
		if s.serial != nil {
			s.serial.Lock()
			defer s.serial.Unlock()
		}
		models := make([]mongo.WriteModel, len(ids))
		for i, id := range ids {
			models[i] = mongo.NewDeleteOneModel().SetFilter(condFilter(id, cs))
		}
		res, err := s.bulkWrite(ctx, coll, models)
		if err != nil {
			return 0, err
		}
		return int(res.DeletedCount), nil
	}
	s.serial.Lock()
	defer s.serial.Unlock()
	docs, err := s.docsByID(ctx, coll, ids)
	if err != nil {
		return 0, err
	}
	var models []mongo.WriteModel
	for _, id := range ids {
		if d, ok := docs[id]; ok && condHolds(d, cs) {
			models = append(models, mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}))
		}
	}
	if len(models) == 0 {
		return 0, nil
	}
	res, err := s.bulkWrite(ctx, coll, models)
	if err != nil {
		return 0, err
	}
	return int(res.DeletedCount), nil
}

// bulkWrite is an unordered BulkWrite, split into batches of
// Flavor.writeBatch.
func (s *Store) bulkWrite(ctx context.Context, coll *mongo.Collection, models []mongo.WriteModel) (*mongo.BulkWriteResult, error) {
	batch := s.flavor.writeBatch()
	if batch <= 0 {
		return coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	}
	total := &mongo.BulkWriteResult{}
	for len(models) > 0 {
		n := min(len(models), batch)
		res, err := coll.BulkWrite(ctx, models[:n], options.BulkWrite().SetOrdered(false))
		if err != nil {
			return nil, err
		}
		total.MatchedCount += res.MatchedCount
		total.ModifiedCount += res.ModifiedCount
		total.DeletedCount += res.DeletedCount
		models = models[n:]
	}
	return total, nil
}

// docsByID reads the documents with the given _ids, by _id.
func (s *Store) docsByID(ctx context.Context, coll *mongo.Collection, ids []string) (map[string]bson.Raw, error) {
	raws, err := s.findIDs(ctx, coll, ids, nil)
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

// findIDs returns the documents with the given _ids (in no particular
// order): one $in, or one exact _id at a time (Flavor.byExactID).
func (s *Store) findIDs(ctx context.Context, coll *mongo.Collection, ids []string, projection bson.D) ([]bson.Raw, error) {
	if !s.flavor.byExactID(len(ids), s.indexedIDs) {
		opts := options.Find()
		if projection != nil {
			opts.SetProjection(projection)
		}
		cur, err := coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, opts)
		if err != nil {
			return nil, err
		}
		defer cur.Close(ctx)
		var out []bson.Raw
		for cur.Next(ctx) {
			out = append(out, append(bson.Raw(nil), cur.Current...))
		}
		return out, cur.Err()
	}
	var out []bson.Raw
	for _, id := range ids {
		opts := options.FindOne()
		if projection != nil {
			opts.SetProjection(projection)
		}
		raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, opts).Raw()
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	return out, nil
}
