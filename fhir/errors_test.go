package fhir

// Tests of the one error mapping (errors.go): the end of a request's
// context is not a server error (a cancelled request is 499, a deadline
// 503 with Retry-After), and what the client reads says nothing internal.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestOutcomeOfContextEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dctx, dcancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer dcancel()
	const secret = "mongo: search Observation: connection 7 to 10.0.0.5:27017"
	tests := []struct {
		name       string
		err        error
		status     int
		kind       Kind
		code       string
		retryAfter string
	}{
		{"canceled", context.Canceled, StatusClientClosed, KindClientClosed, "transient", ""},
		{"canceled wrapped", fmt.Errorf("engine: search: %w", fmt.Errorf("%s: %w", secret, ctx.Err())), 499, KindClientClosed, "transient", ""},
		{"cause of an internal error", Errorf(KindInternal, "cannot encode the response Bundle").Wrap(fmt.Errorf("%s: %w", secret, context.Canceled)), 499, KindClientClosed, "transient", ""},
		{"deadline", fmt.Errorf("%s: %w", secret, dctx.Err()), http.StatusServiceUnavailable, KindUnavailable, "timeout", RetryAfterUnavailable},
		{"deadline joined", errors.Join(errors.New(secret), context.DeadlineExceeded), 503, KindUnavailable, "timeout", RetryAfterUnavailable},
		// A deliberate kind decides even when the context ended.
		{"invalid stays", Invalid("date", "bad date").Wrap(context.Canceled), http.StatusBadRequest, KindInvalid, "invalid", ""},
		{"unavailable stays", Errorf(KindUnavailable, "the token issuer cannot be reached").Wrap(context.Canceled), 503, KindUnavailable, "transient", ""},
		// Anything else is still a generic 500.
		{"other", errors.New(secret), http.StatusInternalServerError, KindInternal, "exception", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, oo := Outcome(tc.err)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			fe := AsError(tc.err)
			if fe.Kind != tc.kind || fe.Kind.Status() != status {
				t.Fatalf("kind %v (status %d), want %v", fe.Kind, fe.Kind.Status(), tc.kind)
			}
			if len(oo.Issue) != 1 || oo.Issue[0].Code != tc.code || oo.Issue[0].Severity != "error" {
				t.Fatalf("issues %+v, want one error issue %s", oo.Issue, tc.code)
			}
			d := oo.Issue[0].Diagnostics
			if d == "" || strings.Contains(d, "mongo") || strings.Contains(d, "10.0.0.5") || strings.Contains(d, "context") {
				t.Fatalf("diagnostics %q tell the client internal detail", d)
			}
			if got := fe.Header["Retry-After"]; got != tc.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if tc.kind == KindClientClosed || tc.kind == KindUnavailable && tc.code == "timeout" {
				if !errors.Is(fe, context.Canceled) && !errors.Is(fe, context.DeadlineExceeded) {
					t.Fatalf("the cause is lost: %v", fe)
				}
			}
		})
	}
	// 499 is not a server error: the pipeline logs >= 500 at error level.
	if KindClientClosed.Status() >= 500 {
		t.Fatal("a cancelled request must not be a 5xx")
	}
}

// TestKindsInStatusOrder: every kind up to KindUnavailable has its own
// status (fhir/bundle maps a status back to its kind over that range).
func TestKindsInStatusOrder(t *testing.T) {
	seen := map[int]Kind{}
	for k := KindInternal; k <= KindUnavailable; k++ {
		if prev, dup := seen[k.Status()]; dup {
			t.Fatalf("kinds %v and %v share status %d", prev, k, k.Status())
		}
		seen[k.Status()] = k
		if k.IssueCode() == "" {
			t.Fatalf("kind %v has no issue code", k)
		}
	}
	if seen[StatusClientClosed] != KindClientClosed {
		t.Fatal("499 does not map back to KindClientClosed")
	}
}
