package mquery

import (
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// The binary of the compact layout's ixb: search.AppendIndex's format
// behind a magic. bson.Marshal / Unmarshal of a
// search.Index go through reflection and were 4% of a read's CPU (every
// Record carries its Index); this hand-written format is a few times
// faster. It starts with four zero bytes and a version byte, which no
// BSON document can (its first four bytes are its length, at least 5),
// so ixb written as BSON by earlier versions still decodes.

const codecVersion = 1

var codecMagic = []byte{0, 0, 0, 0, codecVersion}

// EncodeIndex returns the ixb binary of x.
func EncodeIndex(x *search.Index) ([]byte, error) {
	b, err := search.AppendIndex(append(make([]byte, 0, 1024), codecMagic...), x)
	if err != nil {
		// A sort value of a type the format does not know: BSON.
		return bson.Marshal(ToBSON(*x))
	}
	return b, nil
}

// DecodeIndex decodes an ixb binary (this format or BSON).
func DecodeIndex(b []byte) (search.Index, error) {
	var x search.Index
	if len(b) < len(codecMagic) || string(b[:4]) != "\x00\x00\x00\x00" {
		var bx BSONIndex
		err := bson.Unmarshal(b, &bx)
		return FromBSON(bx), err
	}
	if b[4] != codecVersion {
		return x, errors.New("mquery: unknown search value format")
	}
	return search.DecodeIndex(b[len(codecMagic):])
}
