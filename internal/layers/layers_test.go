package layers

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/fhirgate/fhirgate/"

// TestNoUpwardImports parses every non-test Go file of the module and
// fails on an import of a higher layer (tests may reach up: they wire real
// parts).
func TestNoUpwardImports(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n != "." && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules" || n == "data") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		from, ok := Layer(rel)
		if !ok {
			t.Errorf("%s: package %s has no layer (add it to prefixes)", path, rel)
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			dep, ok := strings.CutPrefix(p, module)
			if !ok {
				continue
			}
			to, ok := Layer(dep)
			if !ok {
				t.Errorf("%s imports %s, which has no layer", rel, dep)
				continue
			}
			checked++
			if to > from {
				t.Errorf("%s (layer %d) imports %s (layer %d): an upward edge", rel, from, dep, to)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d imports checked: the walk missed the module", checked)
	}
}

func TestLayerTable(t *testing.T) {
	for pkg, want := range map[string]int{
		"fhir": 0, "fhir/patch": 0, "fhir/search": 1, "fhir/engine": 4, "store/mongo/mquery": 2,
		"smart/devissuer": 3, "fhir/server": 4, "internal/app": 5, "cmd/fhirgate": 5,
	} {
		if got, ok := Layer(pkg); !ok || got != want {
			t.Errorf("Layer(%q) = %d, %v; want %d", pkg, got, ok, want)
		}
	}
}
