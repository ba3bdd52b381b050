package fhir

import (
	"context"
	"net/http"
	"net/url"

	"github.com/fhirgate/fhirgate/store"
)

// Request is one FHIR interaction, independent of HTTP (http.html). The
// REST adapter builds it from an HTTP request; the bundle processor builds
// it from a Bundle entry, so both run through exactly the same pipeline.
type Request struct {
	Method string // GET, HEAD, POST, PUT, PATCH, DELETE
	// Path is relative to the FHIR base without leading slash or query:
	// "", "metadata", "Patient", "Patient/123", "Patient/123/_history/2",
	// "Patient/123/$release", "Patient/_search", "Patient/123/Observation".
	Path   string
	Query  url.Values
	Header http.Header // If-Match, If-None-Exist, If-None-Match, If-Modified-Since, Prefer, Content-Type
	Body   []byte
	// Entry is the index of the Bundle entry this request came from (-1 for HTTP).
	Entry int
	// AssignID, for a create inside a transaction Bundle, is the id the
	// bundle processor already chose (so urn:uuid placeholders can be
	// rewritten before the entry runs). Empty: the server assigns one.
	AssignID string
}

// Response is the result of a Request.
type Response struct {
	Status int
	Header http.Header // ETag, Location, Last-Modified, Content-Location
	// Body is the resource JSON (a resource, a Bundle or an OperationOutcome); nil for none.
	Body []byte
	// Err is set when the interaction failed; Body then holds its OperationOutcome.
	Err error
}

// Tx collects the writes of a transaction Bundle: while a Tx is in the
// context, the pipeline validates and prepares each write as store ops and
// appends them here instead of committing; the bundle processor commits all
// ops in one store.Transact.
type Tx struct {
	Ops []store.Op
	// Reserved maps "Type/id" to the version this Tx will write, so a later
	// entry of the same Bundle cannot touch the same resource twice.
	Reserved map[string]bool
	// After runs after a successful commit (audit, notifications).
	After []func(ctx context.Context)
}

type txKey struct{}

// WithTx returns ctx carrying tx.
func WithTx(ctx context.Context, tx *Tx) context.Context { return context.WithValue(ctx, txKey{}, tx) }

// TxFrom returns the Tx in ctx, or nil.
func TxFrom(ctx context.Context) *Tx {
	tx, _ := ctx.Value(txKey{}).(*Tx)
	return tx
}
