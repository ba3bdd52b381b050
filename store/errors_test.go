package store

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

// Store errors become their OperationOutcome in fhir.AsError, the one
// place (operationoutcome.html); the store's own text goes only to the log.
func TestSentinelsKnowTheirKind(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		expr   string
	}{
		{ErrNotFound, 404, ""},
		{ErrConflict, 409, ""},
		{ErrLocked, 409, ""},
		{ErrBadCursor, 400, "_cursor"},
		{&OpError{Index: 3, Err: ErrConflict}, 409, ""},
	} {
		wrapped := fmt.Errorf("mongo: transact: %w", c.err)
		status, oo := fhir.Outcome(wrapped)
		if status != c.status {
			t.Errorf("%v: status %d, want %d", c.err, status, c.status)
		}
		iss := oo.Issue[0]
		if strings.Contains(iss.Diagnostics, "store:") || strings.Contains(iss.Diagnostics, "mongo") {
			t.Errorf("%v: internal text reaches the client: %q", c.err, iss.Diagnostics)
		}
		if c.expr != "" && (len(iss.Expression) != 1 || iss.Expression[0] != c.expr) {
			t.Errorf("%v: expression %v, want %s", c.err, iss.Expression, c.expr)
		}
	}
}
