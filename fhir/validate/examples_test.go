package validate

// The official R4 examples (hl7.fhir.r4.examples@4.0.1, CC0) must validate:
// the vendored focus types always (testdata/examples), the whole package when
// scripts/fetch-examples.sh has put it in the cache. Spec: json.html#schema.

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// examplesDir holds the vendored official examples of the focus types.
const examplesDir = "../../testdata/examples"

// focusTypes are the resource types fhirgate serves first; every official
// example of them is vendored.
var focusTypes = []string{
	"Appointment", "AuditEvent", "Communication", "Consent", "DocumentReference", "Observation",
	"Patient", "Practitioner", "Provenance", "RelatedPerson", "ServiceRequest",
}

// focusSkip lists vendored examples that fail validation, with the reason.
// Empty: all of them pass.
var focusSkip = map[string]string{}

// officialSkip lists examples of the whole package that fail validation, each
// with the true reason. TestAllOfficialExamples fails on an unlisted failure
// and on a listed example that passes.
var officialSkip = map[string]string{
	"SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json": "" +
		`the example's own id "questionnaireresponse-extensions-QuestionnaireResponse-item-subject" has 67 ` +
		`characters, but an id has at most 64 (datatypes.html#id; the official schema's id pattern is ` +
		`[A-Za-z0-9\-\.]{1,64}), so the example violates the official schema`,
}

func TestOfficialFocusExamples(t *testing.T) {
	v := validator(t)
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	perType := map[string]int{}
	for _, f := range files {
		name := filepath.Base(f)
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		typ, _, _ := strings.Cut(name, "-")
		if !slices.Contains(focusTypes, typ) {
			t.Errorf("%s: not an example of a focus type", name)
			continue
		}
		perType[typ]++
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			err := v.Validate(typ, raw)
			if reason, skip := focusSkip[name]; skip {
				if err == nil {
					t.Fatalf("on the skip list (%s) but passes now; remove it", reason)
				}
				t.Skip(reason)
			}
			if err != nil {
				t.Fatalf("Validate: %v%s", err, dump(issues(t, err)))
			}
			// The same example with an unknown element must fail, at that
			// element: validation of this type is not vacuous.
			bad := append([]byte(`{"fhirgateBogus":1,`), raw[1+strings.IndexByte(string(raw), '{'):]...)
			is := issues(t, v.Validate(typ, bad))
			if len(is) != 1 || is[0].Expression[0] != typ+".fhirgateBogus" {
				t.Errorf("with an unknown element: got%s", dump(is))
			}
		})
	}
	for _, typ := range focusTypes {
		if perType[typ] == 0 {
			t.Errorf("no vendored example of %s", typ)
		}
	}
}

// officialExamplesDir is where scripts/fetch-examples.sh unpacks the package:
// $FHIRGATE_EXAMPLES_DIR, else
// ${FHIRGATE_EXAMPLES_CACHE:-$HOME/.cache/fhirgate}/hl7.fhir.r4.examples-4.0.1.
// A "package" directory inside it (npm's layout) is used when present.
func officialExamplesDir() string {
	dir := os.Getenv("FHIRGATE_EXAMPLES_DIR")
	if dir == "" {
		cache := os.Getenv("FHIRGATE_EXAMPLES_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return ""
			}
			cache = filepath.Join(home, ".cache", "fhirgate")
		}
		dir = filepath.Join(cache, "hl7.fhir.r4.examples-4.0.1")
	}
	if fi, err := os.Stat(filepath.Join(dir, "package")); err == nil && fi.IsDir() {
		dir = filepath.Join(dir, "package")
	}
	return dir
}

func TestAllOfficialExamples(t *testing.T) {
	dir := officialExamplesDir()
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		msg := fmt.Sprintf("official examples not found in %q: run scripts/fetch-examples.sh or set FHIRGATE_EXAMPLES_DIR", dir)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	// package.json describes the npm package; every other file is a resource.
	files = slices.DeleteFunc(files, func(f string) bool { return filepath.Base(f) == "package.json" })
	if len(files) == 0 {
		t.Fatalf("no resource files in %s", dir)
	}

	v := validator(t)
	start := time.Now()
	var (
		mu       sync.Mutex
		failures = map[string]string{}
		next     = make(chan string)
		wg       sync.WaitGroup
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for f := range next {
				raw, err := os.ReadFile(f)
				if err == nil {
					err = v.Validate("", raw)
				}
				if err != nil {
					msg := err.Error()
					if fe, ok := err.(*fhir.Error); ok {
						msg = dump(fe.Issues)
					}
					mu.Lock()
					failures[filepath.Base(f)] = msg
					mu.Unlock()
				}
			}
		})
	}
	for _, f := range files {
		next <- f
	}
	close(next)
	wg.Wait()

	skipped := 0
	for _, f := range files {
		name := filepath.Base(f)
		msg, failed := failures[name]
		reason, listed := officialSkip[name]
		switch {
		case failed && listed:
			skipped++
		case failed:
			t.Errorf("%s fails:%s", name, msg)
		case listed:
			t.Errorf("%s is on the skip list (%s) but passes now; remove it", name, reason)
		}
	}
	for name := range officialSkip {
		if !slices.Contains(files, filepath.Join(dir, name)) {
			t.Errorf("skip-listed %s is not in %s", name, dir)
		}
	}
	t.Logf("%d official examples in %s: %d valid, %d skipped (listed), %d unlisted failures; validated in %v",
		len(files), dir, len(files)-len(failures), skipped, len(failures)-skipped, time.Since(start).Round(time.Millisecond))
}
