package search

import (
	"bytes"
	"cmp"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// officialExamples is the unpacked hl7.fhir.r4.examples@4.0.1 package
// (FHIRGATE_EXAMPLES_DIR, which make test sets after fetching it); the
// exhaustive tests skip without it (testdata/examples always runs).
var officialExamples = cmp.Or(os.Getenv("FHIRGATE_EXAMPLES_DIR"), "/tmp/fhirpkg/package")

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return m
}

// loadExamples reads every resource in dir (and the resources inside
// Bundles), keyed by resource type.
func loadExamples(t testing.TB, dir string) map[string][]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]map[string]any{}
	var add func(m map[string]any)
	add = func(m map[string]any) {
		rt, _ := m["resourceType"].(string)
		if rt == "" {
			return
		}
		out[rt] = append(out[rt], m)
		if rt == "Bundle" {
			entries, _ := m["entry"].([]any)
			for _, e := range entries {
				em, _ := e.(map[string]any)
				if res, ok := em["resource"].(map[string]any); ok {
					add(res)
				}
			}
		}
	}
	// Decode in parallel: the package holds 190 MB of JSON.
	docs := make([]map[string]any, len(files))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				b, err := os.ReadFile(files[i])
				if err != nil {
					t.Error(err)
					continue
				}
				d := json.NewDecoder(bytes.NewReader(b))
				d.UseNumber()
				if err := d.Decode(&docs[i]); err != nil {
					t.Errorf("%s: %v", files[i], err)
				}
			}
		}()
	}
	for i, f := range files {
		base := filepath.Base(f)
		if strings.HasPrefix(base, "package") || strings.HasPrefix(base, ".") {
			continue
		}
		next <- i
	}
	close(next)
	wg.Wait()
	for _, m := range docs {
		if m != nil {
			add(m)
		}
	}
	return out
}

// evalAll evaluates every parameter expression (and composite component
// expression) of the registry against every example of its base types and
// returns the evaluation errors and the number of evaluations.
func evalAll(t *testing.T, r *Registry, examples map[string][]map[string]any) (errs []string, evals, nonEmpty int) {
	for rt, tp := range r.types {
		for _, cp := range tp.sorted {
			if cp.expr == nil {
				continue
			}
			for _, res := range examples[rt] {
				ctx := &fhirpath.Context{Model: r.model, Root: fhirpath.Item{V: res, T: rt}}
				items, err := ctx.Eval(cp.expr, []fhirpath.Item{ctx.Root})
				evals++
				if err != nil {
					errs = append(errs, rt+"/"+str(res, "id")+" "+cp.p.Code+": "+err.Error())
					continue
				}
				if len(items) > 0 {
					nonEmpty++
				}
				for _, it := range items {
					for k, c := range cp.comps {
						if _, err := ctx.Eval(c.expr, []fhirpath.Item{it}); err != nil {
							errs = append(errs, rt+"/"+str(res, "id")+" "+cp.p.Code+" component "+c.p.Code+": "+err.Error())
						}
						_ = k
					}
				}
			}
		}
	}
	sort.Strings(errs)
	return errs, evals, nonEmpty
}

// TestAllCoreExpressionsOnOfficialExamples: every expression of every core
// R4 SearchParameter (searchparameter.html) parses, and evaluates without
// error on every official example of its base type (fhirpath.html).
func TestAllCoreExpressionsOnOfficialExamples(t *testing.T) {
	if _, err := os.Stat(officialExamples); err != nil {
		t.Skip("official examples not unpacked at " + officialExamples)
	}
	if testing.Short() {
		t.Skip("-short: 190 MB of examples")
	}
	r := Default()
	examples := loadExamples(t, officialExamples)
	errs, evals, nonEmpty := evalAll(t, r, examples)
	t.Logf("%d evaluations, %d with values, %d errors", evals, nonEmpty, len(errs))
	for _, e := range errs {
		t.Error(e)
	}
	// Extraction of every example reports no skipped value.
	var warns []string
	for rt, list := range examples {
		if !r.IsResourceType(rt) {
			continue
		}
		for _, res := range list {
			_, w, err := r.ExtractWithWarnings(rt, res)
			if err != nil {
				t.Errorf("%s/%s: %v", rt, str(res, "id"), err)
			}
			for _, s := range w {
				warns = append(warns, rt+"/"+str(res, "id")+" "+s)
			}
		}
	}
	sort.Strings(warns)
	for _, w := range warns {
		t.Log("warning: " + w)
	}
	t.Logf("%d warnings", len(warns))
}
