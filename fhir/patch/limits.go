package patch

import (
	"encoding/json"

	"github.com/fhirgate/fhirgate/fhir"
)

// MaxOperations is the most operations one patch may have, JSON Patch or
// FHIRPath Patch. Real patches have a handful; a thousand leaves room for
// generated ones while bounding the work one request can ask for. More is
// a 413 (fhir.KindTooLarge, issue code too-costly), nothing is applied.
const MaxOperations = 1000

// DefaultMaxSize is the default of MaxSize: 16 MiB, the server's default
// request body limit (FHIRGATE_MAX_BODY), so that a patch cannot produce a
// resource larger than a client could send.
const DefaultMaxSize = 16 << 20

// Option configures JSONPatch and FHIRPathPatch.
type Option func(*limits)

// MaxSize bounds the patched resource to n bytes of compact JSON (n <= 0
// means DefaultMaxSize). The server passes its body limit. For JSON Patch,
// whose copy operation can double the document with a few bytes of patch,
// the bound holds after every operation (an estimate of the document's size
// is kept as operations apply, so a huge document is never built), and the
// values and copies all operations add may not exceed n bytes in all either.
// Exceeding it is a 413 (fhir.KindTooLarge) naming the operation, and
// nothing is returned.
func MaxSize(n int) Option {
	return func(l *limits) {
		if n > 0 {
			l.maxSize = n
		}
	}
}

type limits struct{ maxSize int }

func newLimits(opts []Option) limits {
	l := limits{maxSize: DefaultMaxSize}
	for _, o := range opts {
		o(&l)
	}
	return l
}

// tooManyOps is the error of a patch with more than MaxOperations.
func tooManyOps(format string, n int, at ...string) *fhir.Error {
	return fhir.Errorf(fhir.KindTooLarge, "the %s has %d operations; at most %d are allowed", format, n, MaxOperations).At(at...)
}

// tooLarge is the error of a patched document beyond the size limit.
func (l limits) tooLarge(format string) *fhir.Error {
	return fhir.Errorf(fhir.KindTooLarge, "the patched resource would be larger than %d bytes (the %s was not applied)", l.maxSize, format)
}

// sizeOf estimates the compact JSON size of v in bytes: strings count their
// bytes and quotes (escapes are not counted), numbers their literal. It
// stops as soon as the size exceeds limit and then reports ok = false, so
// measuring a large value against a small budget is cheap.
func sizeOf(v any, limit int) (n int, ok bool) {
	s := sizer{limit: limit}
	ok = s.add(v)
	return s.n, ok
}

type sizer struct{ n, limit int }

func (s *sizer) add(v any) bool {
	switch t := v.(type) {
	case nil:
		s.n += 4
	case bool:
		s.n += 5
	case json.Number:
		s.n += len(t)
	case string:
		s.n += len(t) + 2
	case []any:
		s.n += 1 + max(len(t), 1) // brackets and commas
		for _, e := range t {
			if !s.add(e) {
				return false
			}
		}
	case *object:
		s.n += 1 + max(len(t.keys), 1)
		for _, k := range t.keys {
			s.n += len(k) + 3 // quotes and colon
			if !s.add(t.vals[k]) {
				return false
			}
		}
	}
	return s.n <= s.limit
}
