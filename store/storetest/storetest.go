// Package storetest is the conformance suite of store.Store: every backend
// runs Run against fresh, empty stores and must pass every case. The cases
// pin down the contract of store/store.go (R4 http.html: read, vread,
// update, delete, history, transaction; search.html#paging for Search
// paging). Search semantics beyond IDCond, KeyCond, Const and And, and
// _sort on _lastUpdated / Index.Sort, belong to the query compiler's tests.
package storetest

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/store"
)

// Run runs every conformance case, each against a store newStore returns
// (fresh and empty; newStore registers its own clean-up with t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newStore(t)) })
	}
}

var cases = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"CreateReadKeepsBytes", testCreateRead},
	{"ReadNotFound", testReadNotFound},
	{"VersionIncrementsAndVRead", testVersions},
	{"IfVersionConflict", testIfVersionConflict},
	{"CreateExistsConflict", testCreateExists},
	{"InvalidOps", testInvalidOps},
	{"DeleteTombstone", testDelete},
	{"RecreateAfterDelete", testRecreate},
	{"TransactAtomic", testTransactAtomic},
	{"TransactMany", testTransactMany},
	{"ConcurrentTransactOneWins", testConcurrentTransact},
	{"ConcurrentCreateOneWins", testConcurrentCreate},
	{"HistoryInstanceTypeSystem", testHistory},
	{"HistorySinceAt", testHistorySinceAt},
	{"HistoryPaging", testHistoryPaging},
	{"HistoryFilter", testHistoryFilter},
	{"SearchTypesAndDeleted", testSearchTypes},
	{"SearchCountZeroTotal", testSearchCountZero},
	{"SearchFilterIDKeyConstAnd", testSearchFilter},
	{"SearchPagingWithConcurrentWrites", testSearchPaging},
	{"SearchSortLastUpdated", testSearchSortLastUpdated},
	{"SearchSortParamMissingValues", testSearchSortParam},
	{"SearchBadCursor", testSearchBadCursor},
	{"LockMutualExclusion", testLockExclusion},
	{"LockTTLExpiry", testLockTTL},
	{"ForEach", testForEach},
	{"SetDerived", testSetDerived},
	{"AppendIndependentCreates", testAppend},
	{"Ping", testPing},
}

// base is the clock of the records the suite writes; it has nanoseconds
// (FHIR instants may carry sub-millisecond digits).
var base = time.Date(2024, 3, 1, 10, 0, 0, 123456789, time.UTC)

func at(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

// rec builds a record whose Raw is a small resource tagged with note.
func rec(typ, id string, vid int64, lu time.Time, note string) store.Record {
	raw := fmt.Sprintf(`{"resourceType":%q,"id":%q,"meta":{"versionId":"%d","lastUpdated":%q},"text":{"status":"generated","div":%q}}`,
		typ, id, vid, lu.Format(time.RFC3339Nano), note)
	return store.Record{Type: typ, ID: id, VersionID: vid, LastUpdated: lu, Raw: []byte(raw)}
}

func tomb(typ, id string, vid int64, lu time.Time) store.Record {
	return store.Record{Type: typ, ID: id, VersionID: vid, LastUpdated: lu, Deleted: true}
}

func create(r store.Record) store.Op { return store.Op{Kind: store.OpCreate, Record: r} }

func put(r store.Record) store.Op {
	return store.Op{Kind: store.OpPut, Record: r, IfVersion: r.VersionID - 1}
}

func del(r store.Record) store.Op {
	return store.Op{Kind: store.OpDelete, Record: r, IfVersion: r.VersionID - 1}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustTx(t *testing.T, s store.Store, ops ...store.Op) {
	t.Helper()
	if err := s.Transact(ctxT(t), ops); err != nil {
		t.Fatalf("Transact: %v", err)
	}
}

func mustRead(t *testing.T, s store.Store, typ, id string) store.Record {
	t.Helper()
	r, err := s.Read(ctxT(t), typ, id)
	if err != nil {
		t.Fatalf("Read %s/%s: %v", typ, id, err)
	}
	return r
}

func sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	return d < time.Millisecond && d > -time.Millisecond
}

// checkRecord compares what a store returned with what was written. Times
// must agree to the millisecond (a store may keep more).
func checkRecord(t *testing.T, got, want store.Record) {
	t.Helper()
	if got.Type != want.Type || got.ID != want.ID || got.VersionID != want.VersionID || got.Deleted != want.Deleted {
		t.Errorf("record = %s v%d deleted=%v, want %s v%d deleted=%v", got.Key(), got.VersionID, got.Deleted, want.Key(), want.VersionID, want.Deleted)
	}
	if !sameTime(got.LastUpdated, want.LastUpdated) {
		t.Errorf("%s: LastUpdated = %v, want %v", want.Key(), got.LastUpdated, want.LastUpdated)
	}
	if !bytes.Equal(got.Raw, want.Raw) {
		t.Errorf("%s v%d: Raw =\n%s\nwant\n%s", want.Key(), want.VersionID, got.Raw, want.Raw)
	}
}

func keys(rs []store.Record) []string {
	if len(rs) == 0 {
		return nil
	}
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s/%d", r.Key(), r.VersionID)
	}
	return out
}
