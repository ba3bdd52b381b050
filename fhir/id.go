package fhir

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// NewID returns a new logical id (datatypes.html#id: 32 lowercase hex
// digits): the creation time in milliseconds (48 bits, big-endian) then 80
// random bits. The ids of resources created together sort together, so a
// store's indexes over ids and references (type and id, a reference's
// target, a patient compartment) take them in a few pages instead of one
// random page each (ids of version 4 UUIDs: 13 pages written per
// resource in a Bundle ingest on the SQLite store); the random bits keep
// ids unguessable. The time an id shows is the creation time that
// version 1's meta.lastUpdated shows to anyone who may read it.
func NewID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}
