package patch

// Robustness of both patch formats. Spec sections: RFC 8259 (section 6:
// a parser may limit the range of numbers; section 8.1: UTF-8; section 8.2:
// a lone surrogate is not Unicode) and FHIR R4 json.html (no duplicate
// properties) for the documents, parsed by the fhir package's parser with
// its nesting limit; RFC 6902 section 4.5 (copy: the value at "from" is
// added at "path", so a few bytes of patch can double the document) and
// section 4.6 (test), fhirpatch.html (a Parameters of operations) and
// http.html#patch (a patch that cannot be applied is refused and nothing
// changes) for the limits: at most MaxOperations, a result of at most
// MaxSize, a failed test that names the operation and path but never
// quotes the stored value.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// Both patch documents get the limits of every other body: the old decoder
// recursed without bound (16 MB of '[' overflowed the stack) and replaced
// what the resource parser refuses.
func TestPatchDocumentParserLimits(t *testing.T) {
	doc := `{"resourceType":"Patient","id":"p","active":true}`
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	tests := []struct {
		name, value string // the value of an add, in JSON
		contains    string
	}{
		{"nesting deeper than fhir.MaxDepth", nest(fhir.MaxDepth), "nest deeper than 64"},
		{"a megabyte of nested arrays", nest(1 << 20), "nest deeper than 64"},
		{"number beyond float64", `1e400`, "out of range"},
		{"negative number beyond float64", `[-1e400]`, "out of range"},
		{"lone high surrogate", `"\ud800"`, "lone UTF-16 surrogate"},
		{"lone low surrogate", `{"x":"\udc00x"}`, "lone UTF-16 surrogate"},
		{"invalid UTF-8", "\"\xff\"", "not valid UTF-8"},
		{"duplicate property", `{"a":1,"a":2}`, "duplicate object member"},
	}
	for _, tt := range tests {
		t.Run("JSON Patch: "+tt.name, func(t *testing.T) {
			_, err := JSONPatch([]byte(doc), []byte(`[{"op":"add","path":"/x","value":`+tt.value+`}]`))
			wantKind(t, err, fhir.KindInvalid, tt.contains)
		})
		t.Run("FHIRPath Patch: "+tt.name, func(t *testing.T) {
			p := params(op("add", "Patient", name("extension"), `{"name":"value","valueString":"s","x":`+tt.value+`}`))
			_, err := FHIRPathPatch([]byte(doc), p)
			wantKind(t, err, fhir.KindInvalid, tt.contains)
		})
	}
	// A stored resource the parser refuses (stored before a limit existed)
	// is a 422 that does not quote it.
	_, err := JSONPatch([]byte(`{"resourceType":"Patient","id":"p","x":"secret\ud800"}`), []byte(`[]`))
	wantKind(t, err, fhir.KindUnprocessable, "stored resource cannot be parsed")
	if d := diagnostics(err); strings.Contains(d, "secret") || strings.Contains(d, "d800") {
		t.Fatalf("the client's diagnostics quote the stored resource: %s", d)
	}
}

// RFC 6902 section 4.5: copy adds the value at "from", so each copy of the
// root doubles the document. The size is checked as operations apply.
func TestJSONPatchGrowthBounds(t *testing.T) {
	kb := strings.Repeat("x", 1000)
	doubling := make([]string, 22) // 1 kB doubled 22 times is 4 GB
	for i := range doubling {
		doubling[i] = fmt.Sprintf(`{"op":"copy","from":"","path":"/c%d"}`, i)
	}
	copyRemove := strings.Repeat(`{"op":"copy","from":"/a","path":"/b"},{"op":"remove","path":"/b"},`, 5)
	tests := []struct {
		name, doc, patch string
		opts             []Option
		kind             fhir.Kind // 0: applies
		contains         []string
	}{
		{"22 copies of the root", `{"a":"` + kb + `"}`, `[` + strings.Join(doubling, ",") + `]`, nil,
			fhir.KindTooLarge, []string{"operation 14 (copy /c14)", "larger than 16777216 bytes"}},
		{"copy beyond MaxSize", `{"a":"` + kb + `"}`, `[{"op":"copy","from":"/a","path":"/b"}]`, []Option{MaxSize(1500)},
			fhir.KindTooLarge, []string{"operation 0 (copy /b)", "larger than 1500 bytes"}},
		{"copy within MaxSize", `{"a":"` + kb + `"}`, `[{"op":"copy","from":"/a","path":"/b"}]`, []Option{MaxSize(2100)}, 0, nil},
		{"add beyond MaxSize", `{"a":1}`, `[{"op":"test","path":"/a","value":1},{"op":"add","path":"/b","value":"` + kb + `"}]`, []Option{MaxSize(900)},
			fhir.KindTooLarge, []string{"operation 1 (add /b)"}},
		{"replace counts what it replaces", `{"a":"` + kb + `"}`, `[{"op":"replace","path":"/a","value":"` + kb + `y"}]`, []Option{MaxSize(1100)}, 0, nil},
		{"add over a member counts what it replaces", `{"a":"` + kb + `"}`, `[{"op":"add","path":"/a","value":"` + kb + `y"}]`, []Option{MaxSize(1100)}, 0, nil},
		{"removal frees room", `{"a":"` + kb + `","b":"` + kb + `"}`, `[{"op":"remove","path":"/b"},{"op":"copy","from":"/a","path":"/c"}]`, []Option{MaxSize(2100)}, 0, nil},
		{"move is not growth", `{"a":"` + kb + `"}`, `[{"op":"move","from":"/a","path":"/b"},{"op":"move","from":"/b","path":"/a"}]`, []Option{MaxSize(1100)}, 0, nil},
		{"copy and remove in a loop: additions are summed", `{"a":"` + kb + `"}`, `[` + strings.TrimSuffix(copyRemove, ",") + `]`, []Option{MaxSize(4000)},
			fhir.KindTooLarge, []string{"operation 6 (copy /b)"}},
		{"more than MaxOperations", `{"a":1}`, `[` + strings.TrimSuffix(strings.Repeat(`{"op":"test","path":"/a","value":1},`, MaxOperations+1), ",") + `]`, nil,
			fhir.KindTooLarge, []string{"1001 operations", "at most 1000"}},
		{"MaxOperations", `{"a":1}`, `[` + strings.TrimSuffix(strings.Repeat(`{"op":"test","path":"/a","value":1},`, MaxOperations), ",") + `]`, nil, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			got, err := JSONPatch([]byte(tt.doc), []byte(tt.patch), tt.opts...)
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			if tt.kind == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if max := newLimits(tt.opts).maxSize; len(got) > max {
					t.Fatalf("result of %d bytes exceeds %d", len(got), max)
				}
				return
			}
			wantKind(t, err, tt.kind, tt.contains...)
			if got != nil {
				t.Fatal("a document was returned with the error")
			}
			if fe := err.(*fhir.Error); fe.Kind.Status() != 413 || fe.Issues[0].Code != "too-costly" {
				t.Fatalf("status %d code %s", fe.Kind.Status(), fe.Issues[0].Code)
			}
		})
	}
}

// fhirpatch.html: a FHIRPath Patch is bounded by the same operation count
// and result size.
func TestFHIRPathPatchBounds(t *testing.T) {
	doc := `{"resourceType":"Patient","id":"p"}`
	ops := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = op("add", "Patient", name("identifier"), value("Identifier", `{"value":"v"}`))
		}
		return out
	}
	_, err := FHIRPathPatch([]byte(doc), params(ops(MaxOperations+1)...))
	wantKind(t, err, fhir.KindTooLarge, "1001 operations", "at most 1000")
	if got, err := FHIRPathPatch([]byte(doc), params(ops(MaxOperations)...)); err != nil || strings.Count(string(got), `"value":"v"`) != MaxOperations {
		t.Fatalf("MaxOperations: %v", err)
	}
	ext := `{"name":"value","part":[{"name":"url","valueUri":"http://x"},` + value("String", `"`+strings.Repeat("x", 1000)+`"`) + `]}`
	_, err = FHIRPathPatch([]byte(doc), params(op("add", "Patient", name("extension"), ext)), MaxSize(800))
	wantKind(t, err, fhir.KindTooLarge, "larger than 800 bytes")
}

// RFC 6902 section 4.6: a failed test is a 422 naming the operation and
// its path; it never quotes the stored value (nor the version), which the
// client may not be allowed to read, nor echoes the given one.
func TestJSONPatchTestDoesNotEcho(t *testing.T) {
	doc := `{"resourceType":"Patient","id":"p","meta":{"versionId":"7431"},"name":[{"family":"Secretname"}],"multipleBirthInteger":98765,"address":[{"city":"Hiddenville"}]}`
	for _, tt := range []struct{ path, value string }{
		{"/name/0/family", `"Guess"`},
		{"/meta/versionId", `"1"`},
		{"/multipleBirthInteger", `4242`},
		{"/address/0", `{"city":"Guess"}`},
		{"/name", `[]`},
	} {
		t.Run(tt.path, func(t *testing.T) {
			_, err := JSONPatch([]byte(doc), []byte(`[{"op":"add","path":"/active","value":true},{"op":"test","path":"`+tt.path+`","value":`+tt.value+`}]`))
			wantKind(t, err, fhir.KindUnprocessable, "operation 1 (test "+tt.path+")", "test failed")
			d := diagnostics(err)
			for _, secret := range []string{"Secretname", "7431", "98765", "Hiddenville", "Guess", tt.value} {
				if strings.Contains(d, secret) {
					t.Fatalf("the diagnostics quote %q: %s", secret, d)
				}
			}
		})
	}
}

// diagnostics is what the client sees of err: its issues' diagnostics.
func diagnostics(err error) string {
	var b strings.Builder
	for _, is := range fhir.AsError(err).Issues {
		b.WriteString(is.Diagnostics + "\n")
	}
	return b.String()
}
