package validate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var printer = message.NewPrinter(language.English)

// schemaProblems turns the leaves of a JSON Schema error tree into problems
// with plain-words messages. obj is the resource validated, at its location
// inside the document.
func (r *run) schemaProblems(ve *jsonschema.ValidationError, obj map[string]any, at path) {
	if len(ve.Causes) > 0 {
		for _, c := range ve.Causes {
			r.schemaProblems(c, obj, at)
		}
		return
	}
	rel, val := locate(obj, ve.InstanceLocation)
	loc := append(append(path(nil), at...), rel...)
	def := definitionName(ve.SchemaURL)
	switch k := ve.ErrorKind.(type) {
	case *kind.Required:
		for _, m := range k.Missing {
			r.addSecondary(loc.Key(m), "required", "required element %q is missing", m)
		}
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			r.addSecondary(loc.Key(p), "structure", "unknown element %q", p)
		}
	case *kind.Type:
		r.addSecondary(loc, "structure", "%s", typeMessage(loc, val, def, k))
	case *kind.Pattern:
		if def != "" {
			r.addSecondary(loc, "value", "value %s does not match the %s format%s", show(val), def, formatHints[def])
		} else {
			r.addSecondary(loc, "value", "value %s does not match the pattern %s", show(val), k.Want)
		}
	case *kind.Format:
		what := def
		if what == "" {
			what = k.Want
		}
		r.addSecondary(loc, "value", "value %s is not a valid %s: %v", show(val), what, k.Err)
	case *kind.Enum:
		switch val.(type) {
		case string:
			r.addSecondary(loc, "code-invalid", "value %s is not one of the allowed codes: %s", show(val), choices(k.Want))
		case []any:
			r.addSecondary(loc, "structure", "%s does not repeat, so its value must be a single code, not an array", elementName(loc))
		default:
			r.addSecondary(loc, "structure", "value %s is %s, but a code must be a JSON string", show(val), fhir.JSONKind(val))
		}
	case *kind.Const:
		r.addSecondary(loc, "value", "value %s must be %s", show(val), show(k.Want))
	case *kind.Minimum:
		r.addSecondary(loc, "value", "value %s is below the minimum %s of %s", show(val), k.Want.RatString(), orJSON(def))
	case *kind.Maximum:
		r.addSecondary(loc, "value", "value %s is above the maximum %s of %s (datatypes.html: a 32-bit integer)", show(val), k.Want.RatString(), orJSON(def))
	default:
		r.addSecondary(loc, "invalid", "%s", ve.ErrorKind.LocalizedString(printer))
	}
}

// locate follows a JSON Schema instance location (JSON pointer tokens) in v,
// returning it as a path (array tokens become indexes) and the value there.
func locate(v any, tokens []string) (path, any) {
	p := make(path, 0, len(tokens))
	for _, t := range tokens {
		switch c := v.(type) {
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(c) {
				return append(p, seg{Key: t, Index: -1}), nil
			}
			p = append(p, seg{Index: i})
			v = c[i]
		case map[string]any:
			p = append(p, seg{Key: t, Index: -1})
			v = c[t]
		default:
			return append(p, seg{Key: t, Index: -1}), nil
		}
	}
	return p, v
}

// definitionName returns the schema definition a keyword belongs to, such as
// "date" for ".../4.0#/definitions/date", or "" when the keyword sits in a
// property schema rather than at the top of a definition.
func definitionName(schemaURL string) string {
	_, frag, ok := strings.Cut(schemaURL, "#/definitions/")
	if !ok {
		return ""
	}
	if !strings.Contains(frag, "/") {
		return strings.TrimSuffix(frag, itemSuffix)
	}
	// An inline choice element, e.g. Extension/properties/valueBase64Binary.
	if _, prop, ok := strings.Cut(frag, "/properties/"); ok && !strings.Contains(prop, "/") {
		return choicePrimitive(prop)
	}
	return ""
}

func typeMessage(loc path, val any, def string, k *kind.Type) string {
	var want []string
	for _, w := range k.Want {
		if w != "null" { // null is accepted only as an array filler (json.html#primitive)
			want = append(want, w)
		}
	}
	name := elementName(loc)
	switch {
	case len(want) == 1 && want[0] == "array":
		return fmt.Sprintf("%s repeats, so its value must be a JSON array, not %s", name, fhir.JSONKind(val))
	case k.Got == "array":
		return fmt.Sprintf("%s does not repeat, so its value must be a single %s, not an array", name, orJSON(def))
	case len(want) == 1 && want[0] == "integer" && k.Got == "number":
		return fmt.Sprintf("value %s is not a whole number, but %s must be one", show(val), article(orJSON(def)))
	}
	wantText := "JSON " + strings.Join(want, " or ")
	if def == "" {
		return fmt.Sprintf("value %s is %s, but a %s is expected", show(val), fhir.JSONKind(val), wantText)
	}
	return fmt.Sprintf("value %s is %s, but %s must be a %s", show(val), fhir.JSONKind(val), article(def), wantText)
}

// article prefixes a type name with "a" or "an".
func article(name string) string {
	if name != "" && strings.ContainsRune("aeiouAEIOU", rune(name[0])) {
		return "an " + name
	}
	return "a " + name
}

// formatHints explain the patterns of the primitive types (datatypes.html#primitive).
var formatHints = map[string]string{
	"id":        " (1 to 64 characters: letters, digits, '-' and '.')",
	"date":      " (YYYY, YYYY-MM or YYYY-MM-DD)",
	"dateTime":  " (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)",
	"instant":   " (YYYY-MM-DDThh:mm:ss[.fff] with a time zone)",
	"time":      " (hh:mm:ss[.fff])",
	"code":      " (no leading, trailing or repeated whitespace)",
	"uri":       " (no whitespace)",
	"url":       " (no whitespace)",
	"canonical": " (no whitespace)",
	"oid":       " (urn:oid: followed by a dotted number)",
	"uuid":      " (urn:uuid: followed by a lower-case UUID)",
}

// elementName is the quoted name of the element at loc.
func elementName(loc path) string {
	for i := len(loc) - 1; i >= 0; i-- {
		if loc[i].Index < 0 {
			return strconv.Quote(loc[i].Key)
		}
	}
	return "the element"
}

func orJSON(def string) string {
	if def == "" {
		return "value"
	}
	return def
}

// show renders a JSON value for a message, shortened.
func show(v any) string {
	switch v := v.(type) {
	case string:
		if r := []rune(v); len(r) > 60 {
			v = string(r[:57]) + "..."
		}
		return strconv.Quote(v)
	case nil:
		return "null"
	case map[string]any:
		return "{...}"
	case []any:
		return "[...]"
	case json.Number:
		if len(v) > 40 {
			return string(v[:37]) + "..."
		}
	}
	return fmt.Sprint(v)
}

func choices(want []any) string {
	var b strings.Builder
	for i, w := range want {
		if i == 12 {
			fmt.Fprintf(&b, ", ... (%d in all)", len(want))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, w)
	}
	return b.String()
}
