package fhir

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Kind classifies an error; it decides the HTTP status and the default
// OperationOutcome issue code (R4 operationoutcome.html, codesystem-issue-type).
type Kind int

const (
	KindInternal           Kind = iota // 500 exception
	KindInvalid                        // 400 invalid
	KindUnauthorized                   // 401 login
	KindForbidden                      // 403 forbidden
	KindNotFound                       // 404 not-found
	KindNotAllowed                     // 405 not-supported
	KindNotAcceptable                  // 406 not-supported
	KindConflict                       // 409 conflict
	KindGone                           // 410 deleted
	KindPreconditionFailed             // 412 conflict
	KindTooLarge                       // 413 too-costly
	KindUnsupportedMedia               // 415 not-supported
	KindUnprocessable                  // 422 processing (business rule / not supported content)
	KindTooManyRequests                // 429 throttled
	KindClientClosed                   // 499 transient (the client went away; see StatusClientClosed)
	KindUnavailable                    // 503 transient
)

// StatusClientClosed is the status of a request the client abandoned
// before it completed (its context was cancelled). No client reads it: it
// is for the access log, the audit trail and the error log, where it must
// not count as a server error (the 499 "client closed request" of nginx;
// net/http has no constant for it).
const StatusClientClosed = 499

// RetryAfterUnavailable is the Retry-After (seconds) of the 503 for a
// request that ran out of time.
const RetryAfterUnavailable = "5"

// Status is the HTTP status for the kind.
func (k Kind) Status() int {
	switch k {
	case KindInvalid:
		return http.StatusBadRequest
	case KindUnauthorized:
		return http.StatusUnauthorized
	case KindForbidden:
		return http.StatusForbidden
	case KindNotFound:
		return http.StatusNotFound
	case KindNotAllowed:
		return http.StatusMethodNotAllowed
	case KindNotAcceptable:
		return http.StatusNotAcceptable
	case KindConflict:
		return http.StatusConflict
	case KindGone:
		return http.StatusGone
	case KindPreconditionFailed:
		return http.StatusPreconditionFailed
	case KindTooLarge:
		return http.StatusRequestEntityTooLarge
	case KindUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case KindUnprocessable:
		return http.StatusUnprocessableEntity
	case KindTooManyRequests:
		return http.StatusTooManyRequests
	case KindClientClosed:
		return StatusClientClosed
	case KindUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// IssueCode is the default issue-type code for the kind.
func (k Kind) IssueCode() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindUnauthorized:
		return "login"
	case KindForbidden:
		return "forbidden"
	case KindNotFound:
		return "not-found"
	case KindNotAllowed, KindNotAcceptable, KindUnsupportedMedia:
		return "not-supported"
	case KindConflict, KindPreconditionFailed:
		return "conflict"
	case KindGone:
		return "deleted"
	case KindTooLarge:
		return "too-costly"
	case KindUnprocessable:
		return "processing"
	case KindTooManyRequests:
		return "throttled"
	case KindClientClosed, KindUnavailable:
		return "transient"
	}
	return "exception"
}

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string   `json:"severity"` // fatal | error | warning | information
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// Error is the one error type of fhirgate. Its Kind picks the status, its
// Issues are what the client sees, Cause is for the log only.
type Error struct {
	Kind   Kind
	Issues []Issue
	// Header holds extra response headers (e.g. WWW-Authenticate).
	Header map[string]string
	Cause  error
}

func (e *Error) Error() string {
	msg := e.Kind.IssueCode()
	if len(e.Issues) > 0 {
		msg = e.Issues[0].Diagnostics
		if len(e.Issues[0].Expression) > 0 {
			msg += " (at " + e.Issues[0].Expression[0] + ")"
		}
	}
	if e.Cause != nil {
		return msg + ": " + e.Cause.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Cause }

// Errorf builds an *Error of kind with one error issue whose diagnostics is
// the formatted message. Use At to add the JSON path.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Issues: []Issue{{Severity: "error", Code: kind.IssueCode(), Diagnostics: fmt.Sprintf(format, args...)}}}
}

// At sets the expression (FHIRPath / JSON path) of the first issue.
func (e *Error) At(expr ...string) *Error {
	if len(e.Issues) > 0 {
		e.Issues[0].Expression = append(e.Issues[0].Expression, expr...)
	}
	return e
}

// WithCode overrides the issue code of the first issue.
func (e *Error) WithCode(code string) *Error {
	if len(e.Issues) > 0 {
		e.Issues[0].Code = code
	}
	return e
}

// Wrap attaches a cause (logged, never shown).
func (e *Error) Wrap(cause error) *Error { e.Cause = cause; return e }

// Invalid is shorthand for a 400 with an expression.
func Invalid(expr, format string, args ...any) *Error {
	e := Errorf(KindInvalid, format, args...)
	if expr != "" {
		e.At(expr)
	}
	return e
}

// NotFound is the 404 for Type/id.
func NotFound(typ, id string) *Error {
	if id == "" {
		return Errorf(KindNotFound, "resource type %q is not known", typ)
	}
	return Errorf(KindNotFound, "resource %s/%s is not known", typ, id)
}

// AsError maps any error to an *Error. An *Error in the chain decides,
// unless it is an internal one caused by the end of the request's context:
// a cancelled context (the client went away) is KindClientClosed (499), a
// deadline that passed is KindUnavailable (503 "timeout", with
// Retry-After) — neither is a server fault. Any other error becomes a 500
// whose client-facing text is generic. The original is kept as Cause.
//
// A Kinded error (the store's sentinels) is mapped by its own kind, so no
// layer above the store maps store errors itself.
func AsError(err error) *Error {
	var fe *Error
	if errors.As(err, &fe) && fe.Kind != KindInternal {
		return fe
	}
	switch {
	case errors.Is(err, context.Canceled):
		return &Error{Kind: KindClientClosed, Issues: []Issue{{Severity: "error", Code: "transient",
			Diagnostics: "the request was cancelled before it completed"}}, Cause: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Kind: KindUnavailable, Issues: []Issue{{Severity: "error", Code: "timeout",
			Diagnostics: "the request did not complete in time; retry later"}},
			Header: map[string]string{"Retry-After": RetryAfterUnavailable}, Cause: err}
	}
	if fe != nil {
		return fe
	}
	var k Kinded
	if errors.As(err, &k) {
		kind, text, expr := k.FHIRKind()
		e := Errorf(kind, "%s", text).Wrap(err)
		if expr != "" {
			e.At(expr)
		}
		return e
	}
	return &Error{Kind: KindInternal, Issues: []Issue{{Severity: "error", Code: "exception", Diagnostics: "internal server error"}}, Cause: err}
}

// Kinded is an error of a lower layer that knows what it means to a
// client (the store's sentinels: not found, version conflict, lock held,
// bad cursor). AsError maps it with its client text and expression; the
// error itself stays the Cause, for the log.
type Kinded interface {
	error
	FHIRKind() (kind Kind, diagnostics, expression string)
}

// OperationOutcome is the JSON body of an OperationOutcome resource.
type OperationOutcome struct {
	ResourceType string  `json:"resourceType"`
	ID           string  `json:"id,omitempty"`
	Issue        []Issue `json:"issue"`
}

// Outcome renders err (any error) as an HTTP status and OperationOutcome.
// It is the only place an error becomes an OperationOutcome.
func Outcome(err error) (int, OperationOutcome) {
	fe := AsError(err)
	issues := fe.Issues
	if len(issues) == 0 {
		issues = []Issue{{Severity: "error", Code: fe.Kind.IssueCode(), Diagnostics: http.StatusText(fe.Kind.Status())}}
	}
	return fe.Kind.Status(), OperationOutcome{ResourceType: "OperationOutcome", Issue: issues}
}

// InfoOutcome is an informational OperationOutcome (e.g. Prefer: return=OperationOutcome).
func InfoOutcome(issues ...Issue) OperationOutcome {
	if len(issues) == 0 {
		issues = []Issue{{Severity: "information", Code: "informational", Diagnostics: "ok"}}
	}
	return OperationOutcome{ResourceType: "OperationOutcome", Issue: issues}
}
