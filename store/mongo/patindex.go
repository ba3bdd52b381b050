package mongo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

// The patient index of the embedded store (Options.PatientIndex).
//
// FerretDB answers every query but an exact _id by decoding the whole
// collection: a patient's search over 100,000 Observations took 23 s
// however few were the patient's. A patient portal's searches are all
// confined to a patient (the caller's compartment, or patient=X), so the
// single process that owns an embedded store keeps, in memory, which
// resources of each type reference each patient or are in its
// compartment, and answers such a search from those candidates: each read
// by _id (an SQLite index lookup), then the whole filter, order and
// paging in Go, exactly as the query would be.
//
// The index is a superset: every write adds the resource's patients
// before the document becomes visible, and nothing is ever removed (a
// candidate that no longer matches is dropped by the filter). It is built
// at start-up by one scan per type in the background; until it is ready,
// searches scan as before. It exists only on FerretDB in single-process
// mode: on MongoDB the declared indexes serve these searches.
//
// The same candidate path serves, on any FerretDB store, searches whose
// filter names ids (_id, the targets of _include, resolved chains).

// patientIndex maps type -> "Patient/id" -> ids.
type patientIndex struct {
	mu    sync.RWMutex
	m     map[string]map[string]map[string]struct{}
	ready atomic.Bool
}

func newPatientIndex() *patientIndex {
	return &patientIndex{m: map[string]map[string]map[string]struct{}{}}
}

// patientKeys lists the patients x names: its patient compartments and
// every reference to a Patient.
func patientKeys(x *search.Index) []string {
	var keys []string
	for _, c := range x.Compartments {
		if strings.HasPrefix(c, "Patient/") {
			keys = append(keys, c)
		}
	}
	for _, r := range x.Ref {
		if strings.HasPrefix(r.Ref, "Patient/") && !slices.Contains(keys, r.Ref) {
			keys = append(keys, r.Ref)
		}
	}
	return keys
}

// add records that typ/id names the patients of x.
func (p *patientIndex) add(typ, id string, x *search.Index) {
	keys := patientKeys(x)
	if len(keys) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	byPatient := p.m[typ]
	if byPatient == nil {
		byPatient = map[string]map[string]struct{}{}
		p.m[typ] = byPatient
	}
	for _, k := range keys {
		ids := byPatient[k]
		if ids == nil {
			ids = map[string]struct{}{}
			byPatient[k] = ids
		}
		ids[id] = struct{}{}
	}
}

// addDocs is add for documents about to be written.
func (p *patientIndex) addDocs(docs ...doc) {
	if p == nil {
		return
	}
	for _, d := range docs {
		if x, err := d.index(); err == nil {
			p.add(d.T, d.I, &x)
		}
	}
}

// candidates returns the ids of typ naming any of patients (sorted).
func (p *patientIndex) candidates(typ string, patients []string) []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	set := map[string]struct{}{}
	for _, k := range patients {
		for id := range p.m[typ][k] {
			set[id] = struct{}{}
		}
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// build scans every stored type once and marks the index ready.
func (s *Store) buildPatientIndex(ctx context.Context) {
	start := time.Now()
	types, err := s.storedTypes(ctx, resPrefix)
	if err != nil {
		s.log.Warn("mongo: patient index not built; patient searches scan", "err", err)
		return
	}
	n := 0
	for _, t := range types {
		if !validType(t) {
			continue
		}
		cur, err := s.resColl(t).Find(ctx, bson.D{}, options.Find().SetProjection(bson.D{{Key: "i", Value: 1}, {Key: "t", Value: 1}, {Key: "ixb", Value: 1}, {Key: "idx", Value: 1}}))
		if err != nil {
			s.log.Warn("mongo: patient index not built; patient searches scan", "err", err)
			return
		}
		for cur.Next(ctx) {
			var d doc
			if err := cur.Decode(&d); err != nil {
				continue
			}
			s.pidx.addDocs(d)
			n++
		}
		err = cur.Err()
		cur.Close(ctx)
		if err != nil {
			s.log.Warn("mongo: patient index not built; patient searches scan", "err", err)
			return
		}
	}
	s.pidx.ready.Store(true)
	s.log.Info("mongo: patient index ready", "resources", n, "took", time.Since(start).Round(time.Millisecond))
}

// maxCandidates bounds a search answered from the patient index: beyond
// it, reading the candidates one by one costs about what a scan does.
var maxCandidates = 5000

// patientFilter reports whether a condition confines a search to patients
// and which: a compartment condition, or a reference condition whose every
// accepted value is "Patient/id" (patient=X, subject=Patient/X).
// candidateIDs looks through And for one.
func (p *patientIndex) patientFilter(e search.Expr) ([]string, bool) {
	switch x := e.(type) {
	case search.CompartmentCond:
		for _, c := range x.Compartments {
			if !strings.HasPrefix(c, "Patient/") {
				return nil, false
			}
		}
		return x.Compartments, len(x.Compartments) > 0
	case search.RefCond:
		if len(x.URLs) > 0 || x.Identifier != nil || x.Below || (len(x.IDs) > 0 && !slices.Equal(x.Types, []string{"Patient"})) {
			return nil, false
		}
		var keys []string
		for _, t := range x.Targets {
			typ, _, _ := strings.Cut(t, "/")
			if len(x.Types) > 0 && !slices.Contains(x.Types, typ) {
				continue // the condition never accepts it
			}
			if typ != "Patient" {
				return nil, false
			}
			keys = append(keys, t)
		}
		for _, id := range x.IDs {
			keys = append(keys, "Patient/"+id)
		}
		return keys, len(keys) > 0
	}
	return nil, false
}

// candidateIDs returns ids of typ that include every match of e, when e
// names them: by id (_id, the targets of _include and of resolved chains)
// or, with the patient index ready, by patient. It looks through And and
// returns the fewest.
func (s *Store) candidateIDs(typ string, e search.Expr) ([]string, bool) {
	switch x := e.(type) {
	case search.IDCond:
		ids := slices.Clone(x.IDs)
		slices.Sort(ids)
		return slices.Compact(ids), true
	case search.KeyCond:
		var ids []string
		for _, k := range x.Keys {
			if t, id, ok := strings.Cut(k, "/"); ok && t == typ {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return slices.Compact(ids), true
	case search.And:
		var best []string
		found := false
		for _, a := range x.Args {
			if ids, ok := s.candidateIDs(typ, a); ok && (!found || len(ids) < len(best)) {
				best, found = ids, true
			}
		}
		return best, found
	}
	if s.pidx == nil || !s.pidx.ready.Load() {
		return nil, false
	}
	patients, ok := s.pidx.patientFilter(e)
	if !ok {
		return nil, false
	}
	return s.pidx.candidates(typ, patients), true
}

// searchCandidates answers q (one type, on FerretDB) by reading its
// candidates by _id when its filter names at most maxCandidates of them
// (candidateIDs); ok is false otherwise (the caller scans).
func (s *Store) searchCandidates(ctx context.Context, q store.Query, fields []sortField, sig string) (store.Page, bool, error) {
	if !s.compact || s.scanOnly || len(q.Types) != 1 || !validType(q.Types[0]) {
		return store.Page{}, false, nil
	}
	typ := q.Types[0]
	ids, ok := s.candidateIDs(typ, q.Filter)
	if !ok || len(ids) > maxCandidates {
		return store.Page{}, false, nil
	}
	m, err := mquery.NewMatcher(q.Filter)
	if err != nil {
		return store.Page{}, false, fmt.Errorf("mongo: filter: %w", err)
	}
	var vals []bson.RawValue
	if q.Cursor != "" {
		if vals, err = s.decodeCursor(q.Cursor, "s", sig, len(fields)); err != nil {
			return store.Page{}, false, err
		}
	}
	// Read the candidates by _id, a few at a time.
	hits := make([]*hit, len(ids))
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	var next atomic.Int64
	coll := s.resColl(typ)
	for w := 0; w < min(4, len(ids)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				raw, err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: currentID(typ, ids[i])}}).Raw()
				if errors.Is(err, mongo.ErrNoDocuments) {
					continue
				}
				if err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
					return
				}
				var d doc
				if err := bson.Unmarshal(raw, &d); err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
					return
				}
				if d.T != typ || d.Del || d.Pending {
					continue
				}
				r := d.record()
				if !m.Match(r) {
					continue
				}
				hits[i] = &hit{r, sortValues(raw, fields)}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return store.Page{}, false, fmt.Errorf("mongo: search %s: %w", typ, firstErr)
	}
	var all []hit
	for _, h := range hits {
		if h != nil {
			all = append(all, *h)
		}
	}
	slices.SortStableFunc(all, func(a, b hit) int { return compareTuples(a.vals, b.vals, fields) })
	p := store.Page{Total: -1}
	if q.Total {
		p.Total = int64(len(all))
	}
	if vals != nil {
		i := 0
		for i < len(all) && compareTuples(all[i].vals, vals, fields) <= 0 {
			i++
		}
		all = all[i:]
	}
	if q.Count <= 0 {
		return p, true, nil
	}
	if len(all) > q.Count {
		next, err := s.encodeCursor("s", sig, all[q.Count-1].vals)
		if err != nil {
			return store.Page{}, false, err
		}
		p.Next = next
		all = all[:q.Count]
	}
	for _, h := range all {
		p.Records = append(p.Records, h.r)
	}
	return p, true, nil
}
