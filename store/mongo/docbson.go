package mongo

import (
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/fhirgate/fhirgate/store"
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
	dst = appendRelease(dst, "rel", &c.Rel)
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
