package mongo

import (
	"bytes"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/fhirgate/fhirgate/store"
	"github.com/fhirgate/fhirgate/store/mongo/mquery"
)

// UnmarshalBSON decodes a stored document as the driver's reflection
// would (unknown fields skipped, idx by reflection), without reflection
// for the rest: every read, search and history page decodes documents,
// and reflection was a measurable share of a read. TestDocUnmarshalBSON compares the two.
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
