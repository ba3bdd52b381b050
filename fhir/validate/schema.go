package validate

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"github.com/fhirgate/fhirgate/fhir"
	"io"
	"strings"
	"time"
)

// schemaGz is the official FHIR R4 (4.0.1) JSON schema, fhir.schema.json from
// json.html#schema, gzipped and unmodified (provenance in README.md).
//
//go:embed fhir.schema.json.gz
var schemaGz []byte

// SchemaID is the id of the official R4 schema; definitions are addressed
// as SchemaID + "#/definitions/<Type>".
const SchemaID = "http://hl7.org/fhir/json-schema/4.0"

// fhirDateFormat is the name of the format added to date, dateTime and
// instant: "Dates SHALL be valid dates" (datatypes.html#date), which the
// schema's patterns cannot say (they accept 2023-02-31).
const fhirDateFormat = "fhir-calendar-date"

// itemSuffix marks the copies of primitive definitions that also accept null,
// used for the items of repeating primitives (see patchSchema).
const itemSuffix = "__item"

// rawSchema returns the embedded schema document, decompressed.
func rawSchema() ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(schemaGz))
	if err != nil {
		return nil, fmt.Errorf("validate: open embedded schema: %w", err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("validate: read embedded schema: %w", err)
	}
	return data, nil
}

// loadSchema decodes the embedded schema and returns it patched by patchSchema.
func loadSchema() (map[string]any, error) {
	data, err := rawSchema()
	if err != nil {
		return nil, err
	}
	v, _, err := fhir.ParseJSON(data)
	if err != nil {
		return nil, fmt.Errorf("validate: decode embedded schema: %w", err)
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("validate: embedded schema is not a JSON object")
	}
	if err := patchSchema(doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// patchSchema adapts the official schema to per-type validation and closes
// gaps where it is looser than FHIR JSON (json.html). Every patch only
// rejects what the specification already forbids, except the last two, which
// accept what json.html explicitly allows:
//
//   - descriptions and the root oneOf are dropped (never used: a resource is
//     validated against #/definitions/<Type>, never the root);
//   - choice elements such as Observation.valueInteger, which inline their
//     primitive type, refer to its definition instead (same constraints), so
//     the patches below reach them;
//   - ResourceList (contained, Bundle.entry.resource, Bundle.entry.response.outcome,
//     Parameters.parameter.resource) becomes "an object with a resourceType":
//     the validator checks each such resource against its own type, which gives
//     precise messages instead of a 146-way oneOf;
//   - every definition with properties (complex types and resources) gets
//     "type": "object" — the official schema omits it, so `"name": ["Bob"]`
//     would pass;
//   - integer, positiveInt and unsignedInt must be JSON integers within
//     their 32-bit range (datatypes.html#primitive: integer is
//     -2,147,483,648..2,147,483,647, positiveInt 1.., unsignedInt 0..); the
//     official schema says "number" and sets no bound;
//   - xhtml must be a string (narrative.html); Extension.url is required;
//   - date, dateTime and instant get a format that checks the day exists;
//   - canonical-typed elements get their _element partner, which the
//     official schema forgot (json.html#primitive allows it for every
//     primitive; official examples use _baseDefinition);
//   - items of a repeating primitive with an _element partner may be null
//     (json.html#primitive: "null" keeps the two arrays aligned); the
//     validator still checks that each null has a non-null partner.
func patchSchema(doc map[string]any) error {
	defs, ok := doc["definitions"].(map[string]any)
	if !ok {
		return fmt.Errorf("validate: embedded schema has no definitions")
	}
	delete(doc, "oneOf")
	dropDescriptions(doc)

	// Choice elements (value[x]) inline their primitive type instead of
	// referencing it; point them at the definition so the patches below apply
	// to them too and messages can name the type.
	for _, d := range defs {
		props, _ := asMap(d)["properties"].(map[string]any)
		for pname, p := range props {
			ps := asMap(p)
			if _, ok := ps["$ref"]; ok || ps["pattern"] == nil {
				continue
			}
			prim := choicePrimitive(pname)
			def := asMap(defs[prim])
			if prim != "" && def["pattern"] == ps["pattern"] && def["type"] == ps["type"] {
				props[pname] = map[string]any{"$ref": "#/definitions/" + prim}
			}
		}
	}

	defs["ResourceList"] = map[string]any{"type": "object", "required": []any{"resourceType"}}
	for _, d := range defs {
		def, ok := d.(map[string]any)
		if !ok {
			continue
		}
		if _, ok := def["properties"]; ok {
			if _, ok := def["type"]; !ok {
				def["type"] = "object"
			}
		}
	}
	// datatypes.html#integer: "32 bit number; for values larger than this,
	// use decimal"; positiveInt and unsignedInt have the same upper bound.
	for name, minimum := range map[string]string{"integer": "-2147483648", "positiveInt": "1", "unsignedInt": "0"} {
		def, ok := defs[name].(map[string]any)
		if !ok {
			return fmt.Errorf("validate: embedded schema lacks definition %s", name)
		}
		def["type"] = "integer"
		def["minimum"] = json.Number(minimum)
		def["maximum"] = json.Number("2147483647")
	}
	defs["xhtml"] = map[string]any{"type": "string"}
	// Extension.url is 1..1 (extensibility.html#Extension) and, being an XML
	// attribute, has no _url form; the official schema forgot to require it
	// (it requires every other element of that kind, such as Narrative.div).
	asMap(defs["Extension"])["required"] = []any{"url"}
	for _, name := range []string{"date", "dateTime", "instant"} {
		def, ok := defs[name].(map[string]any)
		if !ok {
			return fmt.Errorf("validate: embedded schema lacks definition %s", name)
		}
		def["format"] = fhirDateFormat
	}

	// The official schema leaves out the _element partner of every
	// canonical-typed element (72 of 74), yet json.html#primitive gives one to
	// every primitive, and official examples use it (StructureDefinition
	// _baseDefinition, ElementDefinition.type._profile).
	for _, d := range defs {
		props, _ := asMap(d)["properties"].(map[string]any)
		for pname, p := range props {
			if strings.HasPrefix(pname, "_") {
				continue
			}
			if _, ok := props["_"+pname]; ok {
				continue
			}
			ps := asMap(p)
			if ref, _ := ps["$ref"].(string); ref == "#/definitions/canonical" {
				props["_"+pname] = map[string]any{"$ref": "#/definitions/Element"}
			} else if ref, _ := asMap(ps["items"])["$ref"].(string); ref == "#/definitions/canonical" {
				props["_"+pname] = map[string]any{"type": "array", "items": map[string]any{"$ref": "#/definitions/Element"}}
			}
		}
	}

	// Nullable copies for the items of repeating primitives.
	nullable := map[string]bool{}
	for _, d := range defs {
		def, ok := d.(map[string]any)
		if !ok {
			continue
		}
		props, _ := def["properties"].(map[string]any)
		for pname, p := range props {
			if strings.HasPrefix(pname, "_") {
				continue
			}
			partner, ok := props["_"+pname].(map[string]any)
			if !ok {
				continue
			}
			for _, ps := range []map[string]any{asMap(p), partner} {
				items := asMap(ps["items"])
				ref, _ := items["$ref"].(string)
				target, ok := strings.CutPrefix(ref, "#/definitions/")
				if !ok {
					continue
				}
				items["$ref"] = ref + itemSuffix
				nullable[target] = true
			}
		}
	}
	for name := range nullable {
		def, ok := defs[name].(map[string]any)
		if !ok {
			return fmt.Errorf("validate: embedded schema lacks definition %s", name)
		}
		cp := make(map[string]any, len(def))
		for k, v := range def {
			cp[k] = v
		}
		t, _ := cp["type"].(string)
		if t == "" {
			return fmt.Errorf("validate: definition %s has no single type", name)
		}
		cp["type"] = []any{t, "null"}
		defs[name+itemSuffix] = cp
	}
	return nil
}

// primitiveTypes are the R4 primitive types (datatypes.html#primitive).
var primitiveTypes = []string{
	"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant",
	"integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid",
}

// choicePrimitive returns the primitive type a choice element name ends
// with ("effectiveDateTime" -> "dateTime"), the longest match, or "".
func choicePrimitive(name string) string {
	best := ""
	for _, p := range primitiveTypes {
		suffix := strings.ToUpper(p[:1]) + p[1:]
		if strings.HasSuffix(name, suffix) && len(name) > len(suffix) && len(p) > len(best) {
			best = p
		}
	}
	return best
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// dropDescriptions removes the documentation keyword "description" from
// every schema object (a third of the document; it never affects validation).
func dropDescriptions(v any) {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["description"].(string); ok {
			delete(v, "description")
		}
		for k, c := range v {
			if k == "enum" || k == "const" {
				continue
			}
			dropDescriptions(c)
		}
	case []any:
		for _, c := range v {
			dropDescriptions(c)
		}
	}
}

// checkCalendarDate is the fhirDateFormat check: when the value has a day
// (YYYY-MM-DD...), that day must exist in that month (datatypes.html#date:
// "Dates SHALL be valid dates"). The layout itself is the pattern's job, so
// anything it cannot read is left alone here.
func checkCalendarDate(v any) error {
	s, ok := v.(string)
	if !ok || len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return nil
	}
	num := func(t string) (int, bool) {
		n := 0
		for _, c := range []byte(t) {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(s[0:4])
	m, ok2 := num(s[5:7])
	d, ok3 := num(s[8:10])
	if !ok1 || !ok2 || !ok3 || m < 1 || m > 12 || d < 1 {
		return nil
	}
	// Day 0 of the next month is the last day of this one.
	last := time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if d > last {
		return fmt.Errorf("%s %d has %d days", time.Month(m), y, last)
	}
	return nil
}
