package app

// Round-trip of every official R4 example of the focus types
// (testdata/examples, CC0): create through the API, read back, and compare
// JSON semantically — nothing the client sent may be lost or changed
// besides the server-owned id and meta.versionId / meta.lastUpdated.

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func decodeNumbers(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return m
}

// withoutServerMeta removes what the server owns (resource.html#Meta).
func withoutServerMeta(m map[string]any) {
	delete(m, "id")
	if meta, ok := m["meta"].(map[string]any); ok {
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		if len(meta) == 0 {
			delete(m, "meta")
		}
	}
}

func TestOfficialExamplesRoundTrip(t *testing.T) {
	h := newHarness(t)
	files, err := filepath.Glob("../../testdata/examples/*.json")
	if err != nil || len(files) < 150 {
		t.Fatalf("vendored examples missing: %d files, %v", len(files), err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want := decodeNumbers(t, raw)
			typ := want["resourceType"].(string)
			created := h.req("POST", typ, raw, "").must(t, 201)
			id := created.str("id")
			got := h.req("GET", typ+"/"+id, nil, "").must(t, 200)
			if !bytes.Equal(got.Body, created.Body) {
				t.Errorf("read differs from the create response")
			}
			gm := decodeNumbers(t, got.Body)
			if gm["id"] != id {
				t.Errorf("id %v, want %s", gm["id"], id)
			}
			withoutServerMeta(gm)
			withoutServerMeta(want)
			if !reflect.DeepEqual(gm, want) {
				a, _ := json.Marshal(want)
				b, _ := json.Marshal(gm)
				t.Errorf("round trip changed the resource:\nsent %s\ngot  %s", truncate(a), truncate(b))
			}
		})
	}
}

// capabilitystatement.html: GET metadata is generated from the running
// tables; the golden file pins its shape (rewrite with -update).
func TestCapabilityStatementGolden(t *testing.T) {
	h := newHarness(t)
	r := h.req("GET", "metadata", nil, "-").must(t, 200)
	m := r.JSON
	m["implementation"].(map[string]any)["url"] = "BASE"
	rest := m["rest"].([]any)[0].(map[string]any)
	sec := rest["security"].(map[string]any)
	sec["description"] = "SECURITY"
	for _, e := range sec["extension"].([]any)[0].(map[string]any)["extension"].([]any) {
		e.(map[string]any)["valueUri"] = "URI"
	}
	got, _ := json.MarshalIndent(m, "", " ")
	golden := "../../testdata/capabilitystatement.golden.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("CapabilityStatement differs from %s (run go test ./internal/app -run Golden -update and review the diff)", golden)
	}
	// Facts the golden must hold, independent of the file.
	if m["fhirVersion"] != "4.0.1" || m["kind"] != "instance" {
		t.Errorf("fhirVersion/kind: %v %v", m["fhirVersion"], m["kind"])
	}
	types := map[string]map[string]any{}
	for _, res := range rest["resource"].([]any) {
		rm := res.(map[string]any)
		types[rm["type"].(string)] = rm
	}
	if len(types) != 146 {
		t.Errorf("%d resource types, want all 146 of R4", len(types))
	}
	obs := types["Observation"]
	params := map[string]bool{}
	for _, p := range obs["searchParam"].([]any) {
		params[p.(map[string]any)["name"].(string)] = true
	}
	for _, want := range []string{"code", "date", "patient", "category", "code-value-quantity", "_id", "_lastUpdated"} {
		if !params[want] {
			t.Errorf("Observation searchParam lacks %s", want)
		}
	}
	for _, i := range types["AuditEvent"]["interaction"].([]any) {
		if c := i.(map[string]any)["code"]; c == "delete" || c == "update" {
			t.Errorf("AuditEvent advertises %v", c)
		}
	}
	svc := sec["service"].([]any)[0].(map[string]any)["coding"].([]any)[0].(map[string]any)
	if svc["code"] != "SMART-on-FHIR" {
		t.Errorf("security service: %v", svc)
	}
}
