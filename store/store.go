// Package store defines how fhirgate persists versioned FHIR resources
// (R4 http.html: versions, history, tombstones). Backends implement Store and
// must pass the conformance suite in store/storetest.
package store

import (
	"context"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
)

// Sentinel errors; backends wrap them with %w. Each knows what it means to
// a client (fhir.Kinded), so fhir.AsError maps them in one place.
var (
	ErrNotFound = &kindError{"store: not found", fhir.KindNotFound, "the resource is not known", ""}
	// ErrConflict: an Op's IfVersion did not match the current version
	// (or a create found the resource existing). Nothing was written.
	ErrConflict = &kindError{"store: version conflict", fhir.KindConflict, "a resource was changed concurrently; nothing was written, retry", ""}
	// ErrLocked: a Lock key is held by someone else and ctx ended first.
	ErrLocked = &kindError{"store: locked", fhir.KindConflict, "a concurrent conditional write with the same condition did not finish in time; retry", ""}
	// ErrBadCursor: a paging cursor that this store did not issue.
	ErrBadCursor = &kindError{"store: bad cursor", fhir.KindInvalid, "the paging cursor is not valid (it may have expired)", "_cursor"}
)

// kindError is a sentinel error with its meaning to a client.
type kindError struct {
	msg        string
	kind       fhir.Kind
	text, expr string
}

func (e *kindError) Error() string { return e.msg }

// FHIRKind implements fhir.Kinded.
func (e *kindError) FHIRKind() (fhir.Kind, string, string) { return e.kind, e.text, e.expr }

// Release is the release state of one version (policy package). A zero
// time means "immediately visible"; Never means excluded or held. (Its
// MongoDB layout is store/mongo's business: mquery.BSONRelease.)
type Release struct {
	// Patient / Proxy: instant from which the version is visible to that audience.
	Patient time.Time `json:"patient,omitzero"`
	Proxy   time.Time `json:"proxy,omitzero"`
	// Rule is the name of the policy rule that decided, "" for none.
	Rule string `json:"rule,omitempty"`
	// State is a short label: "immediate", "delay", "manual", "exclude", "released", "held".
	State string `json:"state,omitempty"`
	// By and Note record a clinician's $release / $hold.
	By   string    `json:"by,omitempty"`
	At   time.Time `json:"at,omitzero"`
	Note string    `json:"note,omitempty"`
}

// Never is the visible-from instant of held or excluded data.
var Never = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// Record is one version of a resource.
type Record struct {
	Type        string
	ID          string
	VersionID   int64
	LastUpdated time.Time
	Deleted     bool
	// Raw is the resource JSON exactly as it is served (id and meta set).
	// Empty for a deletion tombstone.
	Raw []byte
	// Index holds the extracted search values (search.Extract).
	Index search.Index
	// Release is the release state of this version.
	Release Release
}

// Key is "Type/id".
func (r Record) Key() string { return r.Type + "/" + r.ID }

// OpKind is the kind of a write.
type OpKind int

const (
	// OpCreate: the resource must not exist (IfVersion 0). Its id should be
	// one the caller generated (a random id): a transaction of creates only
	// may then be applied without locks, and is rolled back whole, with
	// ErrConflict, should an id exist after all. Use OpPut with IfVersion
	// 0 for a client-chosen id.
	OpCreate OpKind = iota + 1
	OpPut           // new version; IfVersion must equal the current version (0: absent)
	OpDelete        // tombstone version; IfVersion must equal the current version
)

// Op is one write of a transaction. Record.VersionID must be IfVersion+1
// (the caller assigns versions; the store enforces them). For a tombstone
// Record.Deleted is true and Raw is empty. A tombstone counts as current
// version for IfVersion (re-creating a deleted resource puts version n+1).
type Op struct {
	Kind      OpKind
	Record    Record
	IfVersion int64
}

// Query is a search the store answers from Index values (search.Expr).
type Query struct {
	Types  []string // empty: every type
	Filter search.Expr
	// Sort orders the matches; ties are broken by Type ascending, then by
	// an order of the store's that is stable while the resource exists
	// (store/sqlite: insertion; store/mongo: ID ascending).
	Sort   []search.SortKey
	Count  int    // page size; 0 returns no records (only Total)
	Cursor string // from a previous Page.Next
	Total  bool   // compute Page.Total (exact count of matches)
	// TotalLimit, with Total, lets the store stop counting past it:
	// Page.Total is then -1 when more than TotalLimit resources match
	// (0: always exact). A store may still count exactly.
	TotalLimit int64
}

// Page is one page of results.
type Page struct {
	Records []Record
	// Next is an opaque cursor for the next page, "" at the end. It stays
	// correct while others write (keyset paging on the sort keys).
	Next  string
	Total int64 // -1 when not computed
}

// HistoryQuery selects versions (http.html#history), newest first.
// Type and ID empty: whole system; ID empty: whole type.
type HistoryQuery struct {
	Type   string
	ID     string
	Since  time.Time // versions with LastUpdated >= Since (zero: no bound)
	At     time.Time // only the version current at At for each resource (zero: all)
	Count  int
	Cursor string
	// Filter is applied to versions; stores must support CompartmentCond,
	// ReleaseCond, SecurityCond, KeyCond, IDCond and And/Or/Not/Const over them.
	Filter search.Expr
	Total  bool
}

// Store persists versioned resources. Every write goes through Transact,
// which is all-or-nothing, including across a crash of the process.
type Store interface {
	// Read returns the current version; a tombstone is returned with
	// Deleted set. ErrNotFound when the resource never existed.
	Read(ctx context.Context, typ, id string) (Record, error)
	// VRead returns one version (ErrNotFound if there is none).
	VRead(ctx context.Context, typ, id string, vid int64) (Record, error)
	// Transact applies every op or none. A version mismatch is ErrConflict
	// (wrapped in *OpError naming the op index).
	Transact(ctx context.Context, ops []Op) error
	// Append stores version 1 of new resources (creates of ids the caller
	// generated, like OpCreate), each one atomically but not all-or-nothing
	// together: after a crash any subset may be stored. It is for
	// append-only records such as AuditEvents, whose unwritten tail a
	// crash loses anyway, and costs no journal. A record whose id exists
	// fails alone (an *OpError wrapping ErrConflict; the others are stored).
	Append(ctx context.Context, recs []Record) error
	Search(ctx context.Context, q Query) (Page, error)
	History(ctx context.Context, q HistoryQuery) (Page, error)
	// Lock takes an advisory lease on key (e.g. the normalised condition of a
	// conditional create) until unlock or ttl, waiting while another holder
	// has it. It makes conditional writes race-free across processes.
	Lock(ctx context.Context, key string, ttl time.Duration) (unlock func(), err error)
	// ForEach calls fn with every current (non-deleted) version of typ ("" = all).
	ForEach(ctx context.Context, typ string, fn func(Record) error) error
	// SetDerived replaces Index and Release of version vid (current and history)
	// without creating a version: reindexing and $release / $hold.
	SetDerived(ctx context.Context, typ, id string, vid int64, idx *search.Index, rel *Release) error
	Ping(ctx context.Context) error
	Close(ctx context.Context) error
}

// OpError says which op of a Transact failed.
type OpError struct {
	Index int
	Err   error
}

func (e *OpError) Error() string { return "store: op " + strconv.Itoa(e.Index) + ": " + e.Err.Error() }
func (e *OpError) Unwrap() error { return e.Err }
