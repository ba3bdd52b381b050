package bundle

import (
	"context"

	"github.com/fhirgate/fhirgate/store"
)

// Tx collects the writes of a transaction Bundle (http.html#transaction): while a Tx is in the
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
