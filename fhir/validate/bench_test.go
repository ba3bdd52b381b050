package validate

// Side-by-side benchmark of the two JSON Schema libraries considered for
// resource validation (json.html#schema): github.com/xeipuuv/gojsonschema
// (the design card's choice) and github.com/santhosh-tekuri/jsonschema/v6
// (the one kept). Both get the same patched schema document and validate
// against #/definitions/Observation, never the root oneOf.
//
// Goals: validating a typical Observation <= 0.2 ms; server start-up <= 1 s.
//
//	go test ./fhir/validate -run '^$' -bench . -benchmem
//
// The all-types gojsonschema compile takes many seconds per iteration; it
// runs with -benchtime=1x only when FHIRGATE_BENCH_SLOW=1.

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/xeipuuv/gojsonschema"
)

// typicalObservations are official examples: a vital sign with one value
// (body weight, 2 kB) and one with components (blood pressure, 5 kB).
var typicalObservations = []string{"Observation-example.json", "Observation-blood-pressure.json"}

func readExample(b *testing.B, name string) []byte {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(examplesDir, name))
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// gojsonschemaCalendarDate adapts checkCalendarDate to gojsonschema.
type gojsonschemaCalendarDate struct{}

func (gojsonschemaCalendarDate) IsFormat(v any) bool { return checkCalendarDate(v) == nil }

func gojsonschemaCompile(b *testing.B, doc map[string]any, typ string) *gojsonschema.Schema {
	b.Helper()
	gojsonschema.FormatCheckers.Add(fhirDateFormat, gojsonschemaCalendarDate{})
	sl := gojsonschema.NewSchemaLoader()
	sl.Draft = gojsonschema.Draft6
	if err := sl.AddSchema(SchemaID, gojsonschema.NewRawLoader(doc)); err != nil {
		b.Fatal(err)
	}
	s, err := sl.Compile(gojsonschema.NewStringLoader(`{"$ref": "` + SchemaID + `#/definitions/` + typ + `"}`))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkValidateObservation(b *testing.B) {
	v, err := New()
	if err != nil {
		b.Fatal(err)
	}
	v6, err := v.schema("Observation")
	if err != nil {
		b.Fatal(err)
	}
	doc, err := loadSchema()
	if err != nil {
		b.Fatal(err)
	}
	gjs := gojsonschemaCompile(b, doc, "Observation")

	for _, name := range typicalObservations {
		raw := readExample(b, name)
		parsed, _, err := fhir.ParseJSON(raw)
		if err != nil {
			b.Fatal(err)
		}
		// Everything a request pays: parse, FHIR JSON rules, schema, messages.
		b.Run(name+"/jsonschema-v6/Validate", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if err := v.Validate("Observation", raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The schema step alone, on an already decoded value.
		b.Run(name+"/jsonschema-v6/schema-only", func(b *testing.B) {
			for b.Loop() {
				if err := v6.Validate(parsed); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/gojsonschema/schema-only", func(b *testing.B) {
			for b.Loop() {
				res, err := gjs.Validate(gojsonschema.NewRawLoader(parsed))
				if err != nil || !res.Valid() {
					b.Fatal(err, res.Errors())
				}
			}
		})
		// gojsonschema decoding the bytes itself.
		b.Run(name+"/gojsonschema/bytes", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				res, err := gjs.Validate(gojsonschema.NewBytesLoader(raw))
				if err != nil || !res.Valid() {
					b.Fatal(err, res.Errors())
				}
			}
		})
	}
}

// BenchmarkStartup measures what start-up costs: New (decompress and decode
// the schema), New plus the first type compiled (what a lazy server pays
// before its first request), and New plus Warm (every type compiled).
func BenchmarkStartup(b *testing.B) {
	b.Run("jsonschema-v6/New", func(b *testing.B) {
		for b.Loop() {
			if _, err := New(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jsonschema-v6/New+Observation", func(b *testing.B) {
		for b.Loop() {
			v, err := New()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := v.schema("Observation"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jsonschema-v6/New+Warm(all types)", func(b *testing.B) {
		var v *Validator
		for b.Loop() {
			var err error
			if v, err = New(); err != nil {
				b.Fatal(err)
			}
			v.Warm(context.Background())
		}
		reportRetained(b)
		runtime.KeepAlive(v)
	})
	// For comparison: the official document unpatched, where contained's
	// ResourceList (a oneOf of all 146 types) makes the first compile of any
	// resource type compile every type.
	b.Run("jsonschema-v6/unpatched-schema/load+Observation", func(b *testing.B) {
		for b.Loop() {
			raw, err := rawSchema()
			if err != nil {
				b.Fatal(err)
			}
			doc, _, err := fhir.ParseJSON(raw)
			if err != nil {
				b.Fatal(err)
			}
			c := jsonschema.NewCompiler()
			c.DefaultDraft(jsonschema.Draft6)
			if err := c.AddResource(SchemaID, doc); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Compile(SchemaID + "#/definitions/Observation"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gojsonschema/load+Observation", func(b *testing.B) {
		for b.Loop() {
			doc, err := loadSchema()
			if err != nil {
				b.Fatal(err)
			}
			gojsonschemaCompile(b, doc, "Observation")
		}
	})
	var keep []*gojsonschema.Schema
	if os.Getenv("FHIRGATE_BENCH_SLOW") == "1" {
		b.Run("gojsonschema/load+all types", func(b *testing.B) {
			for b.Loop() {
				doc, err := loadSchema()
				if err != nil {
					b.Fatal(err)
				}
				keep = keep[:0]
				for _, t := range fhir.ResourceTypes {
					keep = append(keep, gojsonschemaCompile(b, doc, t))
				}
			}
			reportRetained(b)
			runtime.KeepAlive(keep)
		})
	}
}

// reportRetained reports the heap still in use after the last iteration,
// which holds the compiled schemas.
func reportRetained(b *testing.B) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(m.HeapInuse)/(1<<20), "MB-heap-in-use")
}
