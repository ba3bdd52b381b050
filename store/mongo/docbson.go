package mongo

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

// appendBSON encodes c as the driver's reflection would (same field names,
// order and omitempty rules; srt keys sorted), without reflection: every
// write on the embedded store encodes one, and the reflective encoder was
// a measurable share of a create. TestCompactDocBSON compares the two.
func (c *cdoc) appendBSON(dst []byte) ([]byte, error) {
	start, dst := bsoncore.AppendDocumentStart(dst)
	dst = bsoncore.AppendStringElement(dst, "_id", c.ID)
	dst = bsoncore.AppendStringElement(dst, "t", c.T)
	dst = bsoncore.AppendStringElement(dst, "i", c.I)
	dst = bsoncore.AppendInt64Element(dst, "v", c.V)
	dst = bsoncore.AppendDateTimeElement(dst, "lu", bsonMillis(c.LU))
	if c.LUN != 0 {
		dst = bsoncore.AppendInt64Element(dst, "lun", c.LUN)
	}
	dst = bsoncore.AppendBooleanElement(dst, "del", c.Del)
	if len(c.Raw) > 0 {
		dst = bsoncore.AppendBinaryElement(dst, "raw", bson.TypeBinaryGeneric, c.Raw)
	}
	if len(c.IXB) > 0 {
		dst = bsoncore.AppendBinaryElement(dst, "ixb", bson.TypeBinaryGeneric, c.IXB)
	}
	if c.K != "" {
		dst = bsoncore.AppendStringElement(dst, "k", c.K)
	}
	if len(c.Srt) > 0 {
		var err error
		if dst, err = appendScalars(dst, "srt", c.Srt); err != nil {
			return nil, fmt.Errorf("mongo: encode %s: %w", c.ID, err)
		}
	}
	dst = appendRelease(dst, "rel", (*store.Release)(&c.Rel))
	if c.Tx != "" {
		dst = bsoncore.AppendStringElement(dst, "tx", c.Tx)
	}
	if c.Pending {
		dst = bsoncore.AppendBooleanElement(dst, "pending", true)
	}
	if c.DV != 0 {
		dst = bsoncore.AppendInt64Element(dst, "dv", c.DV)
	}
	if c.C != "" {
		dst = bsoncore.AppendStringElement(dst, "c", c.C)
	}
	return bsoncore.AppendDocumentEnd(dst, start)
}

// bsonMillis is a time as a BSON date: milliseconds since the epoch,
// truncated as the driver truncates.
func bsonMillis(t time.Time) int64 { return t.Unix()*1e3 + int64(t.Nanosecond()/1e6) }

// appendScalars appends the _sort scalars (search.Index.Sort: string,
// float64 or time.Time) as an embedded document, keys sorted.
func appendScalars(dst []byte, key string, m map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	start, dst := bsoncore.AppendDocumentElementStart(dst, key)
	for _, k := range keys {
		switch v := m[k].(type) {
		case string:
			dst = bsoncore.AppendStringElement(dst, k, v)
		case float64:
			dst = bsoncore.AppendDoubleElement(dst, k, v)
		case time.Time:
			dst = bsoncore.AppendDateTimeElement(dst, k, bsonMillis(v))
		default:
			t, b, err := bson.MarshalValue(v)
			if err != nil {
				return nil, fmt.Errorf("sort key %s: %w", k, err)
			}
			dst = bsoncore.AppendValueElement(dst, k, bsoncore.Value{Type: bsoncore.Type(t), Data: b})
		}
	}
	return bsoncore.AppendDocumentEnd(dst, start)
}

// appendRelease appends a store.Release as its bson tags describe it.
func appendRelease(dst []byte, key string, r *store.Release) []byte {
	start, dst := bsoncore.AppendDocumentElementStart(dst, key)
	if !r.Patient.IsZero() {
		dst = bsoncore.AppendDateTimeElement(dst, "p", bsonMillis(r.Patient))
	}
	if !r.Proxy.IsZero() {
		dst = bsoncore.AppendDateTimeElement(dst, "x", bsonMillis(r.Proxy))
	}
	if r.Rule != "" {
		dst = bsoncore.AppendStringElement(dst, "r", r.Rule)
	}
	if r.State != "" {
		dst = bsoncore.AppendStringElement(dst, "s", r.State)
	}
	if r.By != "" {
		dst = bsoncore.AppendStringElement(dst, "b", r.By)
	}
	if !r.At.IsZero() {
		dst = bsoncore.AppendDateTimeElement(dst, "a", bsonMillis(r.At))
	}
	if r.Note != "" {
		dst = bsoncore.AppendStringElement(dst, "n", r.Note)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, start)
	return dst
}

// UnmarshalBSON decodes a stored document of either layout as the
// driver's reflection would (unknown fields such as k and srt skipped, the
// MongoDB layout's idx by reflection), without reflection for the rest:
// every read, search and history page decodes documents, and reflection
// was a measurable share of a read. TestDocUnmarshalBSON compares the two.
func (d *doc) UnmarshalBSON(b []byte) error {
	*d = doc{}
	es, err := bsoncore.Document(b).Elements()
	if err != nil {
		return fmt.Errorf("mongo: decode document: %w", err)
	}
	for _, e := range es {
		v := e.Value()
		var err error
		switch e.Key() {
		case "_id":
			d.ID, err = bsonString(v)
		case "t":
			d.T, err = bsonString(v)
		case "i":
			d.I, err = bsonString(v)
		case "v":
			d.V, err = bsonInt(v)
		case "lu":
			d.LU, err = bsonTime(v)
		case "lun":
			d.LUN, err = bsonInt(v)
		case "del":
			d.Del, err = bsonBool(v)
		case "raw":
			d.Raw, err = bsonBinary(v)
		case "ixb":
			d.IXB, err = bsonBinary(v)
		case "idx":
			if v.Type != bsoncore.TypeNull {
				err = bson.UnmarshalValue(bson.Type(v.Type), v.Data, &d.Idx)
			}
		case "rel":
			var rel store.Release
			rel, err = bsonRelease(v)
			d.Rel = mquery.BSONRelease(rel)
		case "tx":
			d.Tx, err = bsonString(v)
		case "pending":
			d.Pending, err = bsonBool(v)
		case "dv":
			d.DV, err = bsonInt(v)
		case "c":
			d.C, err = bsonString(v)
		}
		if err != nil {
			return fmt.Errorf("mongo: decode document field %s: %w", e.Key(), err)
		}
	}
	return nil
}

func bsonString(v bsoncore.Value) (string, error) {
	switch v.Type {
	case bsoncore.TypeString:
		return v.StringValue(), nil
	case bsoncore.TypeNull:
		return "", nil
	}
	return "", fmt.Errorf("%s is not a string", v.Type)
}

func bsonInt(v bsoncore.Value) (int64, error) {
	switch v.Type {
	case bsoncore.TypeInt64:
		return v.Int64(), nil
	case bsoncore.TypeInt32:
		return int64(v.Int32()), nil
	case bsoncore.TypeDouble:
		f := v.Double()
		if f != float64(int64(f)) {
			return 0, fmt.Errorf("%v is not an integer", f)
		}
		return int64(f), nil
	case bsoncore.TypeNull:
		return 0, nil
	}
	return 0, fmt.Errorf("%s is not an integer", v.Type)
}

func bsonBool(v bsoncore.Value) (bool, error) {
	switch v.Type {
	case bsoncore.TypeBoolean:
		return v.Boolean(), nil
	case bsoncore.TypeNull:
		return false, nil
	}
	return false, fmt.Errorf("%s is not a boolean", v.Type)
}

func bsonTime(v bsoncore.Value) (time.Time, error) {
	switch v.Type {
	case bsoncore.TypeDateTime:
		return time.UnixMilli(v.DateTime()).UTC(), nil
	case bsoncore.TypeNull:
		return time.Time{}, nil
	}
	return time.Time{}, fmt.Errorf("%s is not a date", v.Type)
}

// bsonBinary copies a binary's bytes (the reply buffer is not ours).
func bsonBinary(v bsoncore.Value) ([]byte, error) {
	switch v.Type {
	case bsoncore.TypeBinary:
		_, data := v.Binary()
		return bytes.Clone(data), nil
	case bsoncore.TypeNull:
		return nil, nil
	}
	return nil, fmt.Errorf("%s is not binary", v.Type)
}

func bsonRelease(v bsoncore.Value) (store.Release, error) {
	var r store.Release
	if v.Type == bsoncore.TypeNull {
		return r, nil
	}
	if v.Type != bsoncore.TypeEmbeddedDocument {
		return r, fmt.Errorf("%s is not a document", v.Type)
	}
	es, err := v.Document().Elements()
	if err != nil {
		return r, err
	}
	for _, e := range es {
		v := e.Value()
		var err error
		switch e.Key() {
		case "p":
			r.Patient, err = bsonTime(v)
		case "x":
			r.Proxy, err = bsonTime(v)
		case "r":
			r.Rule, err = bsonString(v)
		case "s":
			r.State, err = bsonString(v)
		case "b":
			r.By, err = bsonString(v)
		case "a":
			r.At, err = bsonTime(v)
		case "n":
			r.Note, err = bsonString(v)
		}
		if err != nil {
			return r, fmt.Errorf("%s: %w", e.Key(), err)
		}
	}
	return r, nil
}
