// Command genmodel writes the compact element model FHIRPath Patch needs
// (cardinality and types of every element of the R4 resources and data
// types) from the StructureDefinitions of the official R4 package
// (hl7.fhir.r4.examples@4.0.1, CC0).
//
//	go run ./internal/genmodel -pkg /tmp/fhirpkg/package -out model.tsv.gz
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type sd struct {
	ResourceType string `json:"resourceType"`
	Kind         string `json:"kind"`
	Type         string `json:"type"`
	Derivation   string `json:"derivation"`
	Snapshot     struct {
		Element []struct {
			Path             string `json:"path"`
			Max              string `json:"max"`
			ContentReference string `json:"contentReference"`
			Type             []struct {
				Code      string `json:"code"`
				Extension []struct {
					URL      string `json:"url"`
					ValueURL string `json:"valueUrl"`
				} `json:"extension"`
			} `json:"type"`
		} `json:"element"`
	} `json:"snapshot"`
}

func main() {
	pkg := flag.String("pkg", "/tmp/fhirpkg/package", "unpacked hl7.fhir.r4.examples package")
	out := flag.String("out", "model.tsv.gz", "output file")
	flag.Parse()
	files, err := filepath.Glob(filepath.Join(*pkg, "StructureDefinition-*.json"))
	if err != nil {
		log.Fatal(err)
	}
	var prims, lines []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			log.Fatal(err)
		}
		var d sd
		if err := json.Unmarshal(data, &d); err != nil {
			log.Fatalf("%s: %v", f, err)
		}
		if d.ResourceType != "StructureDefinition" || d.Derivation == "constraint" || d.Kind == "logical" {
			continue
		}
		if d.Kind == "primitive-type" {
			prims = append(prims, d.Type)
			continue
		}
		if d.Kind != "resource" && d.Kind != "complex-type" {
			continue
		}
		for _, e := range d.Snapshot.Element {
			if !strings.Contains(e.Path, ".") {
				continue
			}
			var types []string
			for _, t := range e.Type {
				code := t.Code
				if strings.HasPrefix(code, "http://hl7.org/fhirpath/System.") {
					code = "string"
					for _, x := range t.Extension {
						if x.URL == "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type" && x.ValueURL != "" {
							code = x.ValueURL
						}
					}
				}
				types = append(types, code)
			}
			max := "1"
			if e.Max != "1" && e.Max != "0" {
				max = "*"
			}
			if e.Max == "0" {
				continue
			}
			lines = append(lines, fmt.Sprintf("%s\t%s\t%s\t%s", e.Path, max, strings.Join(types, ","), strings.TrimPrefix(e.ContentReference, "#")))
		}
	}
	sort.Strings(prims)
	sort.Strings(lines)
	var raw bytes.Buffer
	raw.WriteString("primitives\t" + strings.Join(prims, ",") + "\n")
	for _, l := range lines {
		raw.WriteString(l + "\n")
	}
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	w.Write(raw.Bytes())
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, gz.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("%d primitives, %d elements, %d bytes (%d uncompressed)", len(prims), len(lines), gz.Len(), raw.Len())
}
