package bundle

// Robustness of batch and transaction processing. Spec sections:
// http.html#transaction (a batch or transaction is a POST of a Bundle to
// the base; a transaction fails as a whole, a batch entry fails on its
// own; entry.request.url is relative to the base or absolute on it),
// json.html ("objects SHALL NOT have duplicate properties") and RFC 8259
// (sections 6 and 8.2: numbers beyond float64 and lone surrogate escapes;
// nesting bounded like every resource body, fhir.MaxDepth) for the body.

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

// An entry that is itself a batch or transaction (a POST to the base) is
// refused: a transaction stores nothing, a batch answers 400 for that entry
// and runs the others. A Bundle stored as a resource (POST Bundle) is fine.
func TestNestedBundleRejected(t *testing.T) {
	inner := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`
	for _, u := range []string{"", "/", base, base + "/", "?_format=json", base + "?_format=json"} {
		for _, typ := range []string{"transaction", "batch"} {
			t.Run(fmt.Sprintf("%s %q", typ, u), func(t *testing.T) {
				f := newFake()
				body := bundleOf(typ,
					ent("urn:uuid:p", "POST", "Patient", `{"resourceType":"Patient"}`),
					ent("", "POST", u, inner),
					ent("", "POST", "Bundle", strings.Replace(inner, `"transaction"`, `"collection"`, 1)),
				)
				resp, b := run(t, f, body)
				if typ == "transaction" {
					if resp.Status != 400 || f.commits != 0 || len(f.calls) != 0 || len(f.res) != 0 {
						t.Fatalf("status %d, commits %d, calls %v, stored %d: %s", resp.Status, f.commits, f.calls, len(f.res), resp.Body)
					}
					if is := outcome(t, resp.Body).Issue[0]; is.Expression[0] != "Bundle.entry[1].request.url" {
						t.Fatalf("issue %+v", is)
					}
					return
				}
				if want := "201 Created,400 Bad Request,201 Created"; strings.Join(statuses(b), ",") != want {
					t.Fatalf("statuses %v, want %s", statuses(b), want)
				}
				if is := outcome(t, b.Entry[1].Response.Outcome).Issue[0]; is.Expression[0] != "Bundle.entry[1].request.url" {
					t.Fatalf("issue %+v", is)
				}
				for _, c := range f.calls {
					if c != "POST Patient" && c != "POST Bundle" {
						t.Fatalf("the nested Bundle reached the pipeline: %v", f.calls)
					}
				}
			})
		}
	}
	// A document Bundle stored by a transaction entry is still a create.
	f := newFake()
	resp, b := run(t, f, bundleOf("transaction", ent("", "POST", "Bundle", `{"resourceType":"Bundle","type":"document"}`)))
	if resp.Status != 200 || statuses(b)[0] != "201 Created" || f.commits != 1 {
		t.Fatalf("POST Bundle: %d %v", resp.Status, statuses(b))
	}
}

// The Bundle body is parsed by the fhir parser before it is decoded: a
// duplicate property anywhere is a 400 (encoding/json would keep the last
// one silently), and so are the parser's limits. Nothing runs.
func TestBundleBodyJSON(t *testing.T) {
	okEntry := ent("", "POST", "Patient", `{"resourceType":"Patient"}`)
	deep := `{"resourceType":"Patient","extension":` + strings.Repeat(`[{"url":"http://x","extension":`, 40) + `[]` + strings.Repeat(`}]`, 40) + `}`
	tests := []struct {
		name, body, expr, msg string
	}{
		{"duplicate entry", `{"resourceType":"Bundle","type":"transaction","entry":[` + okEntry + `],"entry":[]}`, "Bundle.entry", `duplicate property "entry"`},
		{"duplicate type", `{"resourceType":"Bundle","type":"batch","entry":[` + okEntry + `],"type":"transaction"}`, "Bundle.type", `duplicate property "type"`},
		{"duplicate request url", string(bundleOf("transaction", `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient","url":"Observation"}}`)),
			"Bundle.entry[0].request.url", `duplicate property "url"`},
		{"duplicate inside a resource", string(bundleOf("batch", ent("", "POST", "Patient", `{"resourceType":"Patient","name":[{"family":"a","family":"b"}]}`))),
			"Bundle.entry[0].resource.name[0].family", `duplicate property "family"`},
		{"nested deeper than fhir.MaxDepth", string(bundleOf("batch", ent("", "POST", "Patient", deep))), "", "nest deeper than 64"},
		{"number beyond float64", string(bundleOf("batch", ent("", "POST", "Observation", `{"resourceType":"Observation","valueQuantity":{"value":-1e400}}`))),
			"Bundle.entry[0].resource.valueQuantity.value", "out of range"},
		{"lone surrogate", string(bundleOf("batch", `{"fullUrl":"urn:uuid:\udc00","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}`)),
			"Bundle.entry[0].fullUrl", "lone UTF-16 surrogate"},
		{"not JSON", `{"resourceType":"Bundle",`, "", "invalid JSON at byte offset 25"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			resp, _ := run(t, f, []byte(tt.body))
			if resp.Status != 400 || len(f.calls) != 0 || f.commits != 0 {
				t.Fatalf("status %d, calls %v: %s", resp.Status, f.calls, resp.Body)
			}
			if fe, ok := resp.Err.(*fhir.Error); !ok || fe.Kind != fhir.KindInvalid {
				t.Fatalf("Err %T %v, want a *fhir.Error of KindInvalid", resp.Err, resp.Err)
			}
			is := outcome(t, resp.Body).Issue[0]
			if !strings.Contains(is.Diagnostics, tt.msg) {
				t.Fatalf("diagnostics %q, want %q", is.Diagnostics, tt.msg)
			}
			if tt.expr != "" && (len(is.Expression) == 0 || is.Expression[0] != tt.expr) {
				t.Fatalf("expression %v, want %q", is.Expression, tt.expr)
			}
		})
	}
}
