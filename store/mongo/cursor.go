package mongo

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/store"
)

// Keyset paging (search.html#paging is silent on how; this is what keeps a
// page sequence free of duplicates and skips while others write): a cursor
// carries the sort values of the last record of a page, and the next page
// is the records whose sort tuple comes strictly after it. Every order ends
// with fields that make the tuple unique (t, i in resources; lu, t, i, v in
// history), so "strictly after" is well defined.
//
// Missing values follow MongoDB's own order, which FerretDB shares: a
// missing (or null) sort value is lower than every value, so such records
// come first in an ascending order and last in a descending one.

// sortField is one key of an order: a document path and 1 or -1.
type sortField struct {
	Path string
	Dir  int
}

const cursorVersion = 1

// cursorPayload is the signed content of a cursor.
type cursorPayload struct {
	Kind string        `json:"k"` // "s" search, "h" history
	Sig  string        `json:"g"` // order (and types) the cursor belongs to
	Vals []cursorValue `json:"v"` // one per sort field
}

// cursorValue is one BSON value: its type byte and value bytes.
type cursorValue struct {
	T byte   `json:"t"`
	B []byte `json:"b"`
}

// allowedCursorTypes are the scalar BSON types a sort value may have.
var allowedCursorTypes = map[bson.Type]bool{
	bson.TypeDouble:     true,
	bson.TypeString:     true,
	bson.TypeBoolean:    true,
	bson.TypeDateTime:   true,
	bson.TypeNull:       true,
	bson.TypeInt32:      true,
	bson.TypeInt64:      true,
	bson.TypeDecimal128: true,
}

// orderSig identifies an order (and the query parts a cursor must not
// outlive): a cursor only continues the query shape that issued it.
func orderSig(kind string, parts []string, fields []sortField) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", kind, strings.Join(parts, "\x01"))
	for _, f := range fields {
		fmt.Fprintf(h, "%s:%d\x00", f.Path, f.Dir)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// sortDoc is fields as a MongoDB sort document.
func sortDoc(fields []sortField) bson.D {
	d := make(bson.D, len(fields))
	for i, f := range fields {
		d[i] = bson.E{Key: f.Path, Value: f.Dir}
	}
	return d
}

// sortValues reads the sort values of a stored document (null if missing).
func sortValues(raw bson.Raw, fields []sortField) []bson.RawValue {
	vals := make([]bson.RawValue, len(fields))
	for i, f := range fields {
		v, err := raw.LookupErr(strings.Split(f.Path, ".")...)
		if err != nil || !allowedCursorTypes[v.Type] {
			// Missing, or not a scalar: treated as null (see above).
			v = bson.RawValue{Type: bson.TypeNull}
		}
		vals[i] = v
	}
	return vals
}

// encodeCursor signs the sort values of the last record of a page.
func (s *Store) encodeCursor(kind, sig string, vals []bson.RawValue) (string, error) {
	p := cursorPayload{Kind: kind, Sig: sig, Vals: make([]cursorValue, len(vals))}
	for i, v := range vals {
		p.Vals[i] = cursorValue{T: byte(v.Type), B: v.Value}
	}
	js, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("mongo: encode cursor: %w", err)
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte{cursorVersion})
	mac.Write(js)
	buf := make([]byte, 0, 1+16+len(js))
	buf = append(buf, cursorVersion)
	buf = append(buf, mac.Sum(nil)[:16]...)
	buf = append(buf, js...)
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// decodeCursor verifies a cursor and returns its sort values. Anything but
// an unmodified cursor of this store for the same query shape is
// store.ErrBadCursor.
func (s *Store) decodeCursor(c, kind, sig string, n int) ([]bson.RawValue, error) {
	bad := func(why string) error { return fmt.Errorf("mongo: cursor: %s: %w", why, store.ErrBadCursor) }
	buf, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, bad("not base64url")
	}
	if len(buf) < 1+16+2 {
		return nil, bad("too short")
	}
	if buf[0] != cursorVersion {
		return nil, bad("unknown version")
	}
	js := buf[17:]
	mac := hmac.New(sha256.New, s.key)
	mac.Write(buf[:1])
	mac.Write(js)
	if !hmac.Equal(mac.Sum(nil)[:16], buf[1:17]) {
		return nil, bad("signature mismatch")
	}
	var p cursorPayload
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || dec.More() {
		return nil, bad("malformed")
	}
	if p.Kind != kind {
		return nil, bad("issued by another kind of query")
	}
	if p.Sig != sig {
		return nil, bad("issued for another order or types")
	}
	if len(p.Vals) != n {
		return nil, bad("wrong number of values")
	}
	vals := make([]bson.RawValue, n)
	for i, cv := range p.Vals {
		v := bson.RawValue{Type: bson.Type(cv.T), Value: cv.B}
		if !allowedCursorTypes[v.Type] || v.Validate() != nil {
			return nil, bad("invalid value")
		}
		vals[i] = v
	}
	return vals, nil
}

func isNull(v bson.RawValue) bool {
	return v.Type == bson.TypeNull || v.Type == bson.TypeUndefined || v.Type == 0
}

// keysetFilter matches the documents whose sort tuple comes strictly after
// vals in the order fields: the disjunction over k of "the first k-1 keys
// equal and key k after".
func keysetFilter(fields []sortField, vals []bson.RawValue) bson.D {
	var ors bson.A
	for k, f := range fields {
		after := afterCond(f, vals[k])
		if after == nil {
			continue
		}
		conj := make(bson.A, 0, k+1)
		for j := 0; j < k; j++ {
			conj = append(conj, eqCond(fields[j].Path, vals[j]))
		}
		conj = append(conj, after)
		if len(conj) == 1 {
			ors = append(ors, conj[0])
		} else {
			ors = append(ors, bson.D{{Key: "$and", Value: conj}})
		}
	}
	switch len(ors) {
	case 0:
		return matchNothing()
	case 1:
		return ors[0].(bson.D)
	}
	return bson.D{{Key: "$or", Value: ors}}
}

func eqCond(path string, v bson.RawValue) bson.D {
	if isNull(v) {
		return bson.D{{Key: path, Value: nil}} // null or missing
	}
	return bson.D{{Key: path, Value: v}}
}

// afterCond matches values strictly after v in direction f.Dir, where null
// and missing are lower than every value; nil when nothing comes after.
func afterCond(f sortField, v bson.RawValue) bson.D {
	switch {
	case f.Dir > 0 && isNull(v):
		return bson.D{{Key: f.Path, Value: bson.D{{Key: "$ne", Value: nil}}}}
	case f.Dir > 0:
		return bson.D{{Key: f.Path, Value: bson.D{{Key: "$gt", Value: v}}}}
	case isNull(v):
		return nil
	default:
		return bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: f.Path, Value: bson.D{{Key: "$lt", Value: v}}}},
			bson.D{{Key: f.Path, Value: nil}},
		}}}
	}
}

// matchNothing is a filter no document satisfies.
func matchNothing() bson.D {
	return bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{}}}}}
}

// and combines filters (skipping empty ones).
func and(fs ...bson.D) bson.D {
	var xs bson.A
	for _, f := range fs {
		if len(f) > 0 {
			xs = append(xs, f)
		}
	}
	switch len(xs) {
	case 0:
		return bson.D{}
	case 1:
		return xs[0].(bson.D)
	}
	return bson.D{{Key: "$and", Value: xs}}
}

// compareTuples compares two sort tuples in the order fields, as MongoDB
// (and FerretDB) sort them: what merges the pages of several collections.
func compareTuples(a, b []bson.RawValue, fields []sortField) int {
	for i, f := range fields {
		if c := compareValues(a[i], b[i]); c != 0 {
			if f.Dir < 0 {
				return -c
			}
			return c
		}
	}
	return 0
}

// typeRank is the BSON comparison order of the scalar types a sort value
// may have (null and missing lowest, then numbers, strings, booleans,
// dates).
func typeRank(v bson.RawValue) int {
	switch v.Type {
	case bson.TypeDouble, bson.TypeInt32, bson.TypeInt64, bson.TypeDecimal128:
		return 2
	case bson.TypeString:
		return 3
	case bson.TypeBoolean:
		return 8
	case bson.TypeDateTime:
		return 9
	}
	return 1 // null, missing, anything sortValues treats as null
}

func compareValues(a, b bson.RawValue) int {
	ra, rb := typeRank(a), typeRank(b)
	if ra != rb {
		return cmpInt(ra, rb)
	}
	switch ra {
	case 2:
		x, y := number(a), number(b)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case 3:
		return strings.Compare(a.StringValue(), b.StringValue())
	case 8:
		x, y := 0, 0
		if a.Boolean() {
			x = 1
		}
		if b.Boolean() {
			y = 1
		}
		return cmpInt(x, y)
	case 9:
		x, y := a.DateTime(), b.DateTime()
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	return 0
}

func number(v bson.RawValue) float64 {
	switch v.Type {
	case bson.TypeDouble:
		return v.Double()
	case bson.TypeInt32:
		return float64(v.Int32())
	case bson.TypeInt64:
		return float64(v.Int64())
	case bson.TypeDecimal128:
		f, _ := strconv.ParseFloat(v.Decimal128().String(), 64)
		return f
	}
	return 0
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
