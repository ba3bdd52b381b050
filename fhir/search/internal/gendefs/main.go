// Command gendefs builds fhir/search/definitions/r4.json.gz, the compact
// vendored copy of the core FHIR R4 search definitions that package search
// embeds: every core SearchParameter (searchparameter.html, only the fields
// the registry uses) and the patient CompartmentDefinition
// (compartmentdefinition-patient.html). The element types the expressions
// navigate are the R4 model's (fhir/model, generated from the same package).
//
// Input: the unpacked npm package hl7.fhir.r4.examples@4.0.1 (CC0), as
// `make examples` fetches it.
//
//	go run ./internal/gendefs -pkg $HOME/.cache/fhirgate/hl7.fhir.r4.examples-4.0.1/package -out definitions/r4.json.gz
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

// Param mirrors the JSON layout read by package search (definitions.go).
type Param struct {
	URL         string      `json:"url"`
	Code        string      `json:"code"`
	Name        string      `json:"name,omitempty"`
	Type        string      `json:"type"`
	Base        []string    `json:"base"`
	Expression  string      `json:"expression,omitempty"`
	Target      []string    `json:"target,omitempty"`
	Modifier    []string    `json:"modifier,omitempty"`
	Comparator  []string    `json:"comparator,omitempty"`
	Component   []Component `json:"component,omitempty"`
	MultipleOr  *bool       `json:"multipleOr,omitempty"`
	MultipleAnd *bool       `json:"multipleAnd,omitempty"`
}

// Component is a composite parameter part.
type Component struct {
	Definition string `json:"definition"`
	Expression string `json:"expression"`
}

// Defs is the whole vendored file.
type Defs struct {
	Source      string              `json:"source"`
	Params      []Param             `json:"params"`
	Compartment map[string][]string `json:"compartment"`
}

func main() {
	pkg := flag.String("pkg", os.ExpandEnv("$HOME/.cache/fhirgate/hl7.fhir.r4.examples-4.0.1/package"), "unpacked hl7.fhir.r4.examples@4.0.1 package directory")
	out := flag.String("out", "definitions/r4.json.gz", "output file")
	flag.Parse()
	defs, err := build(*pkg)
	if err != nil {
		log.Fatal(err)
	}
	raw, err := json.Marshal(defs)
	if err != nil {
		log.Fatal(err)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(raw); err != nil {
		log.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d params, %d compartment types, %d bytes (%d raw)\n", *out, len(defs.Params), len(defs.Compartment), buf.Len(), len(raw))
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func build(pkg string) (*Defs, error) {
	defs := &Defs{
		Source:      "hl7.fhir.r4.examples@4.0.1 (CC0)",
		Compartment: map[string][]string{},
	}
	files, err := filepath.Glob(filepath.Join(pkg, "SearchParameter-*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no SearchParameter-*.json in %s", pkg)
	}
	for _, f := range files {
		var sp struct {
			ID string `json:"id"`
			Param
		}
		if err := readJSON(f, &sp); err != nil {
			return nil, err
		}
		p := sp.Param
		// Core parameters only: skip the spec's illustrative examples and the
		// extension-defined parameters that have neither base nor expression.
		if !strings.HasPrefix(p.URL, "http://hl7.org/fhir/SearchParameter/") || strings.HasPrefix(sp.ID, "example") || len(p.Base) == 0 {
			continue
		}
		if p.Expression == "" && !strings.HasPrefix(p.Code, "_") && p.Type != "special" {
			continue
		}
		defs.Params = append(defs.Params, p)
	}
	sort.Slice(defs.Params, func(i, j int) bool { return defs.Params[i].URL < defs.Params[j].URL })

	var cd struct {
		Resource []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := readJSON(filepath.Join(pkg, "CompartmentDefinition-patient.json"), &cd); err != nil {
		return nil, err
	}
	for _, r := range cd.Resource {
		if len(r.Param) > 0 {
			defs.Compartment[r.Code] = r.Param
		}
	}

	return defs, nil
}
