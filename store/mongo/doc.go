package mongo

import (
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

// doc is one stored version: the current document in res_<Type> (_id
// "Type/id") or a superseded version in hist_<Type> (_id "Type/id/vid"). The field names
// are the layout mquery compiles queries against (see README.md).
type doc struct {
	ID  string    `bson:"_id"`
	T   string    `bson:"t"`
	I   string    `bson:"i"`
	V   int64     `bson:"v"`
	LU  time.Time `bson:"lu"`            // millisecond BSON date, for queries
	LUN int64     `bson:"lun,omitempty"` // nanoseconds below the millisecond
	Del bool      `bson:"del"`
	// Raw is stored as BSON binary, so it comes back byte for byte.
	Raw []byte             `bson:"raw,omitempty"`
	Idx mquery.BSONIndex   `bson:"idx"`
	Rel mquery.BSONRelease `bson:"rel"`
	// Tx is the id of the transaction that holds this current document
	// (step 3 of Transact); absent when unlocked. Never in history.
	Tx string `bson:"tx,omitempty"`
	// Pending marks a create placeholder (v 0, del true) that readers
	// treat as absent.
	Pending bool `bson:"pending,omitempty"`
	// DV counts the SetDerived changes of this version; the conditional
	// writes of an update compare it, so a concurrent $release is never
	// lost to the history copy of the version it changed.
	DV int64 `bson:"dv,omitempty"`
	// C is the transaction that inserted this document in insert mode
	// (only creates of fresh ids, see fast.go): inert, it lets a
	// transaction that collided delete exactly its own documents.
	C string `bson:"c,omitempty"`
	// IXB is Idx in the compact layout (FerretDB, mquery.Compact); a
	// decoded compact document has it and no Idx.
	IXB []byte `bson:"ixb,omitempty"`
}

// cdoc is a doc as the compact layout stores it (mquery.Compact).
type cdoc struct {
	ID                   string    `bson:"_id"`
	T                    string    `bson:"t"`
	I                    string    `bson:"i"`
	V                    int64     `bson:"v"`
	LU                   time.Time `bson:"lu"`
	LUN                  int64     `bson:"lun,omitempty"`
	Del                  bool      `bson:"del"`
	Raw                  []byte    `bson:"raw,omitempty"`
	mquery.CompactFields `bson:",inline"`
	Rel                  mquery.BSONRelease `bson:"rel"`
	Tx                   string             `bson:"tx,omitempty"`
	Pending              bool               `bson:"pending,omitempty"`
	DV                   int64              `bson:"dv,omitempty"`
	C                    string             `bson:"c,omitempty"`
}

// index returns the search values of d, from either layout.
func (d doc) index() (search.Index, error) {
	if len(d.IXB) == 0 {
		return mquery.FromBSON(d.Idx), nil
	}
	x, err := mquery.DecodeIndex(d.IXB)
	if err != nil {
		return search.Index{}, fmt.Errorf("mongo: decode search values of %s: %w", d.ID, err)
	}
	return x, nil
}

// wdoc is d in the layout this store writes: as it is on MongoDB, compact
// on FerretDB (see mquery.Compact).
func (s *Store) wdoc(d doc) (any, error) {
	if !s.compact {
		if len(d.IXB) > 0 {
			x, err := d.index()
			if err != nil {
				return nil, err
			}
			d.Idx, d.IXB = mquery.ToBSON(x), nil
		}
		return d, nil
	}
	x, err := d.index()
	if err != nil {
		return nil, err
	}
	cf, err := mquery.Compact(&x)
	if err != nil {
		return nil, fmt.Errorf("mongo: encode search values of %s: %w", d.ID, err)
	}
	c := cdoc{ID: d.ID, T: d.T, I: d.I, V: d.V, LU: d.LU, LUN: d.LUN, Del: d.Del, Raw: d.Raw,
		CompactFields: cf, Rel: d.Rel, Tx: d.Tx, Pending: d.Pending, DV: d.DV, C: d.C}
	b, err := c.appendBSON(make([]byte, 0, 256+len(d.Raw)+len(cf.IXB)+len(cf.K)))
	if err != nil {
		return nil, err
	}
	return bson.Raw(b), nil
}

// wdocs is wdoc of each.
func (s *Store) wdocs(ds []doc) ([]any, error) {
	out := make([]any, len(ds))
	for i, d := range ds {
		w, err := s.wdoc(d)
		if err != nil {
			return nil, err
		}
		out[i] = w
	}
	return out, nil
}

// indexSet is the $set of new search values in this store's layout.
func (s *Store) indexSet(x *search.Index) (bson.D, error) {
	if !s.compact {
		return bson.D{{Key: "idx", Value: mquery.ToBSON(*x)}}, nil
	}
	cf, err := mquery.Compact(x)
	if err != nil {
		return nil, err
	}
	srt := cf.Srt
	if srt == nil {
		srt = map[string]any{}
	}
	return bson.D{{Key: "ixb", Value: cf.IXB}, {Key: "k", Value: cf.K}, {Key: "srt", Value: srt}}, nil
}

func currentID(typ, id string) string { return typ + "/" + id }

func historyID(typ, id string, vid int64) string {
	return typ + "/" + id + "/" + strconv.FormatInt(vid, 10)
}

// toDoc converts a record to its current-collection document.
func toDoc(r store.Record) doc {
	lu := r.LastUpdated.UTC()
	ms := lu.Truncate(time.Millisecond)
	return doc{
		ID:  currentID(r.Type, r.ID),
		T:   r.Type,
		I:   r.ID,
		V:   r.VersionID,
		LU:  ms,
		LUN: int64(lu.Sub(ms)),
		Del: r.Deleted,
		Raw: r.Raw,
		Idx: mquery.ToBSON(r.Index),
		Rel: mquery.BSONRelease(r.Release),
	}
}

// historyDoc is d as stored in the history collection.
func (d doc) historyDoc() doc {
	d.ID = historyID(d.T, d.I, d.V)
	d.Tx = ""
	d.Pending = false
	d.C = ""
	return d
}

func (d doc) record() store.Record {
	if len(d.IXB) > 0 {
		if x, err := d.index(); err == nil {
			d.Idx = mquery.ToBSON(x)
		}
	}
	r := store.Record{
		Type:        d.T,
		ID:          d.I,
		VersionID:   d.V,
		LastUpdated: d.LU.Add(time.Duration(d.LUN)).UTC(),
		Deleted:     d.Del,
		Raw:         d.Raw,
		Index:       mquery.FromBSON(d.Idx),
		Release:     store.Release(d.Rel),
	}
	if r.Deleted && len(r.Raw) == 0 {
		r.Raw = nil
	}
	normIndex(&r.Index)
	normRelease(&r.Release)
	return r
}

// normIndex turns what the driver decodes into Index.Sort's interface
// values back into the documented Go types (string, float64, time.Time).
func normIndex(x *search.Index) {
	for k, v := range x.Sort {
		switch v := v.(type) {
		case bson.DateTime:
			x.Sort[k] = v.Time().UTC()
		case int32:
			x.Sort[k] = float64(v)
		case int64:
			x.Sort[k] = float64(v)
		}
	}
	for i := range x.Date {
		x.Date[i].Lo = x.Date[i].Lo.UTC()
		x.Date[i].Hi = x.Date[i].Hi.UTC()
	}
	for i := range x.Comp {
		normIndex(&x.Comp[i].Parts)
	}
}

func normRelease(r *store.Release) {
	utc := func(t *time.Time) {
		if !t.IsZero() {
			*t = t.UTC()
		}
	}
	utc(&r.Patient)
	utc(&r.Proxy)
	utc(&r.At)
}
