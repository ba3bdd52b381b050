package mongo

import (
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

// doc is one stored version: the current document in res_<Type> (_id
// "Type/id") or a superseded version in hist_<Type> (_id "Type/id/vid").
// The field names are the layout mquery compiles queries against and the
// indexes cover (README.md, "Document layout"); the store writes a doc
// through the driver as it is, on both flavors.
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
