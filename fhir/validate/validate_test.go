package validate

// Spec sections covered: json.html (FHIR JSON: resourceType, no null / empty
// values, no duplicate properties, primitive _element arrays aligned with
// null), json.html#schema (the official schema per type), datatypes.html
// (primitive formats, "Dates SHALL be valid dates", integer, positiveInt and
// unsignedInt within 32 bits), RFC 8259 sections 6 and 8.2 (numbers beyond
// float64 and lone surrogate escapes refused, with their location),
// references.html#contained (contained resources, dom-2),
// operationoutcome.html (issue expression).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

var (
	sharedOnce sync.Once
	sharedV    *Validator
	sharedErr  error
)

// validator returns one Validator shared by the tests (schemas compile once).
func validator(t testing.TB) *Validator {
	t.Helper()
	sharedOnce.Do(func() { sharedV, sharedErr = New() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedV
}

// issues returns the issues of err, failing unless it is a 400 *fhir.Error.
func issues(t *testing.T, err error) []fhir.Issue {
	t.Helper()
	var fe *fhir.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *fhir.Error", err, err)
	}
	if fe.Kind != fhir.KindInvalid || fe.Kind.Status() != http.StatusBadRequest {
		t.Fatalf("kind %v, want KindInvalid (400)", fe.Kind)
	}
	return fe.Issues
}

func dump(is []fhir.Issue) string {
	var b strings.Builder
	for _, i := range is {
		fmt.Fprintf(&b, "\n  %s %v: %s", i.Code, i.Expression, i.Diagnostics)
	}
	return b.String()
}

// deep nests n extension levels: each adds an array and an object.
func deep(n int) string {
	return `{"resourceType":"Patient",` + strings.Repeat(`"extension":[{"url":"http://x",`, n) + `"valueString":"x"` + strings.Repeat(`}]`, n) + `}`
}

func TestValidateRejects(t *testing.T) {
	v := validator(t)
	many := `{"resourceType":"Patient"`
	for i := range 30 {
		many += fmt.Sprintf(`,"bogus%02d":1`, i)
	}
	many += `}`

	for _, tc := range []struct {
		name     string
		typ      string // expected type ("" = the body's own)
		body     string
		wantExpr string // "" = the issue has no expression
		wantDiag string // substring of the diagnostics
		wantCode string
	}{
		// json.html#schema: wrong JSON type of a value
		{"boolean as string", "Patient", `{"resourceType":"Patient","active":"yes"}`,
			"Patient.active", `value "yes" is a string, but a boolean must be a JSON boolean`, "structure"},
		{"date as number", "Patient", `{"resourceType":"Patient","birthDate":1990}`,
			"Patient.birthDate", `value 1990 is a number, but a date must be a JSON string`, "structure"},
		{"complex type as string", "Patient", `{"resourceType":"Patient","name":["Bob"]}`,
			"Patient.name[0]", `value "Bob" is a string, but a HumanName must be a JSON object`, "structure"},
		{"repeating element not an array", "Patient", `{"resourceType":"Patient","name":{"family":"Doe"}}`,
			"Patient.name", `"name" repeats, so its value must be a JSON array, not an object`, "structure"},
		{"single element as array", "Patient", `{"resourceType":"Patient","gender":["male"]}`,
			"Patient.gender", `"gender" does not repeat, so its value must be a single code, not an array`, "structure"},
		{"integer with a fraction", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":1.5}`,
			"Observation.valueInteger", `value 1.5 is not a whole number, but an integer must be one`, "structure"},
		{"positiveInt zero", "Appointment", `{"resourceType":"Appointment","status":"booked","participant":[{"status":"accepted"}],"minutesDuration":0}`,
			"Appointment.minutesDuration", `value 0 is below the minimum 1 of positiveInt`, "value"},
		{"unsignedInt negative", "Appointment", `{"resourceType":"Appointment","status":"booked","participant":[{"status":"accepted"}],"priority":-1}`,
			"Appointment.priority", `value -1 is below the minimum 0 of unsignedInt`, "value"},
		// datatypes.html#primitive: integer is 32-bit, positiveInt and
		// unsignedInt have the same upper bound
		{"integer above 32 bits", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":2147483648}`,
			"Observation.valueInteger", `value 2147483648 is above the maximum 2147483647 of integer`, "value"},
		{"integer below 32 bits", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":-2147483649}`,
			"Observation.valueInteger", `value -2147483649 is below the minimum -2147483648 of integer`, "value"},
		{"integer as an exponent above 32 bits", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[{"code":{"text":"c"},"valueInteger":1e10}]}`,
			"Observation.component[0].valueInteger", `above the maximum 2147483647 of integer`, "value"},
		{"integer in an extension above 32 bits", "Patient", `{"resourceType":"Patient","extension":[{"url":"http://x","valueInteger":99999999999999999999}]}`,
			"Patient.extension[0].valueInteger", `above the maximum 2147483647 of integer`, "value"},
		{"integer element above 32 bits", "Patient", `{"resourceType":"Patient","multipleBirthInteger":2147483648}`,
			"Patient.multipleBirthInteger", `above the maximum 2147483647 of integer`, "value"},
		{"positiveInt above 32 bits", "Appointment", `{"resourceType":"Appointment","status":"booked","participant":[{"status":"accepted"}],"minutesDuration":2147483648}`,
			"Appointment.minutesDuration", `value 2147483648 is above the maximum 2147483647 of positiveInt`, "value"},
		{"unsignedInt above 32 bits", "Appointment", `{"resourceType":"Appointment","status":"booked","participant":[{"status":"accepted"}],"priority":4294967296}`,
			"Appointment.priority", `value 4294967296 is above the maximum 2147483647 of unsignedInt`, "value"},
		// RFC 8259 section 6 (a parser may limit the range of numbers) and
		// section 8.2 (a lone surrogate is not Unicode), anywhere in a resource
		{"decimal beyond float64", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e400}}`,
			"Observation.valueQuantity.value", `number 1e400 is out of range`, "structure"},
		{"negative number beyond float64 in an unknown element", "Patient", `{"resourceType":"Patient","x":[-1e400]}`,
			"Patient.x[0]", `number -1e400 is out of range`, "structure"},
		{"lone high surrogate", "Patient", `{"resourceType":"Patient","name":[{"family":"\ud800"}]}`,
			"Patient.name[0].family", `lone UTF-16 surrogate \ud800`, "structure"},
		{"lone low surrogate", "Patient", `{"resourceType":"Patient","name":[{"given":["a","\udc00x"]}]}`,
			"Patient.name[0].given[1]", `lone UTF-16 surrogate \udc00`, "structure"},
		{"extension without url", "Patient", `{"resourceType":"Patient","extension":[{"valueString":"x"}]}`,
			"Patient.extension[0].url", `required element "url" is missing`, "required"},
		// unknown elements: additionalProperties false in every definition
		{"unknown element", "Patient", `{"resourceType":"Patient","foo":1}`,
			"Patient.foo", `unknown element "foo"`, "structure"},
		{"unknown nested element", "Patient", `{"resourceType":"Patient","name":[{"family":"Doe","middle":"X"}]}`,
			"Patient.name[0].middle", `unknown element "middle"`, "structure"},
		// datatypes.html#date
		{"bad date", "Patient", `{"resourceType":"Patient","birthDate":"1990-13-01"}`,
			"Patient.birthDate", `value "1990-13-01" does not match the date format`, "value"},
		{"date that does not exist", "Patient", `{"resourceType":"Patient","birthDate":"2023-02-29"}`,
			"Patient.birthDate", `value "2023-02-29" is not a valid date: February 2023 has 28 days`, "value"},
		{"dateTime without zone", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2020-01-01T10:00:00"}`,
			"Observation.effectiveDateTime", `value "2020-01-01T10:00:00" does not match the dateTime format`, "value"},
		{"id too long", "Patient", `{"resourceType":"Patient","id":"` + strings.Repeat("a", 65) + `"}`,
			"Patient.id", `does not match the id format (1 to 64 characters`, "value"},
		{"code not in value set", "Patient", `{"resourceType":"Patient","gender":"x"}`,
			"Patient.gender", `value "x" is not one of the allowed codes: male, female, other, unknown`, "code-invalid"},
		// required elements
		{"missing required element", "Observation", `{"resourceType":"Observation","status":"final"}`,
			"Observation.code", `required element "code" is missing`, "required"},
		{"missing required element in a backbone", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"bp"},"component":[{"code":{"text":"sys"},"valueString":"1"},{"valueString":"2"}]}`,
			"Observation.component[1].code", `required element "code" is missing`, "required"},
		// json.html#resources: resourceType
		{"missing resourceType", "Patient", `{"id":"x"}`,
			"Patient.resourceType", `resourceType is missing`, "required"},
		{"missing resourceType, no expected type", "", `{"id":"x"}`,
			"Resource.resourceType", `resourceType is missing`, "required"},
		{"unknown resourceType", "", `{"resourceType":"Patients"}`,
			"Resource.resourceType", `"Patients" is not an R4 resource type`, "value"},
		{"abstract resourceType", "", `{"resourceType":"DomainResource"}`,
			"Resource.resourceType", `"DomainResource" is not an R4 resource type`, "value"},
		{"resourceType not a string", "Patient", `{"resourceType":1}`,
			"Patient.resourceType", `resourceType must be a JSON string, not a number`, "value"},
		{"resourceType differs from the expected type", "Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`,
			"Patient.resourceType", `resourceType "Observation" does not match the expected type "Patient"`, "value"},
		// json.html: no null, "", {} or []
		{"null value", "Patient", `{"resourceType":"Patient","active":null}`,
			"Patient.active", `null is not allowed`, "structure"},
		{"empty array", "Patient", `{"resourceType":"Patient","name":[]}`,
			"Patient.name", `empty array`, "structure"},
		{"empty object", "Patient", `{"resourceType":"Patient","name":[{}]}`,
			"Patient.name[0]", `empty object`, "structure"},
		{"empty string", "Patient", `{"resourceType":"Patient","name":[{"family":""}]}`,
			"Patient.name[0].family", `empty string`, "structure"},
		{"empty string in array", "Patient", `{"resourceType":"Patient","name":[{"given":["a",""]}]}`,
			"Patient.name[0].given[1]", `empty string`, "structure"},
		// json.html#primitive: null only as a filler aligned with _element
		{"null without partner", "Patient", `{"resourceType":"Patient","name":[{"given":["a",null]}]}`,
			"Patient.name[0].given[1]", `null is only allowed in an array of a primitive element when the matching item of "_given" has content`, "structure"},
		{"null in both arrays", "Patient", `{"resourceType":"Patient","name":[{"given":["a",null],"_given":[{"id":"1"},null]}]}`,
			"Patient.name[0].given[1]", `null is only allowed`, "structure"},
		{"arrays not aligned", "Patient", `{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[{"id":"1"}]}]}`,
			"Patient.name[0].given", `"given" has 2 items but "_given" has 1`, "structure"},
		{"null in a complex array", "Patient", `{"resourceType":"Patient","name":[null]}`,
			"Patient.name[0]", `null is only allowed`, "structure"},
		{"nested array", "Patient", `{"resourceType":"Patient","name":[[{"family":"x"}]]}`,
			"Patient.name[0]", `an array inside an array`, "structure"},
		// json.html: duplicate properties
		{"duplicate key", "Patient", `{"resourceType":"Patient","gender":"male","gender":"female"}`,
			"Patient.gender", `duplicate property "gender"`, "structure"},
		{"duplicate nested key", "Patient", `{"resourceType":"Patient","name":[{"family":"a"},{"family":"b","family":"c"}]}`,
			"Patient.name[1].family", `duplicate property "family"`, "structure"},
		// nesting depth
		{"deep nesting", "Patient", deep(40),
			"Patient" + strings.Repeat(".extension[0]", 32), `nest deeper than 64 levels`, "structure"},
		// syntax (RFC 8259)
		{"invalid JSON", "Patient", `{"resourceType":"Patient",}`,
			"", `invalid JSON at byte offset 26 (line 1, column 27): unexpected character '}', expected a property name in double quotes`, "structure"},
		{"truncated JSON", "Patient", "{\n\"resourceType\":\"Patient\"",
			"", `invalid JSON at byte offset 26 (line 2, column 25): unexpected end of input`, "structure"},
		{"trailing data", "Patient", `{"resourceType":"Patient"} {}`,
			"", `invalid JSON at byte offset 27 (line 1, column 28): unexpected character '{' after the top-level value`, "structure"},
		{"leading zero", "Patient", `{"resourceType":"Patient","multipleBirthInteger":01}`,
			"", `number with a leading zero`, "structure"},
		{"invalid UTF-8", "Patient", "{\"resourceType\":\"Patient\",\"id\":\"a\xff\"}",
			"", `string is not valid UTF-8`, "structure"},
		{"raw control character", "Patient", "{\"resourceType\":\"Patient\",\"id\":\"a\tb\"}",
			"", `control character 0x09 in string must be escaped`, "structure"},
		{"not an object", "Patient", `[{"resourceType":"Patient"}]`,
			"", `a resource must be a JSON object, not an array`, "structure"},
		// references.html#contained: each contained resource checked as its own type
		{"contained resource invalid", "Patient", `{"resourceType":"Patient","contained":[{"resourceType":"Observation","id":"o","status":"final"}]}`,
			"Patient.contained[0].code", `required element "code" is missing`, "required"},
		{"contained unknown element", "Patient", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o"},{"resourceType":"Practitioner","id":"p","colour":"red"}]}`,
			"Patient.contained[1].colour", `unknown element "colour"`, "structure"},
		{"contained without resourceType", "Patient", `{"resourceType":"Patient","contained":[{"id":"o"}]}`,
			"Patient.contained[0].resourceType", `required element "resourceType" is missing`, "required"},
		{"contained unknown type", "Patient", `{"resourceType":"Patient","contained":[{"resourceType":"Thing","id":"o"}]}`,
			"Patient.contained[0].resourceType", `"Thing" is not an R4 resource type`, "value"},
		{"contained in contained (dom-2)", "Patient", `{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","contained":[{"resourceType":"Organization","id":"o2"}]}]}`,
			"Patient.contained[0].contained", `must not contain other resources (dom-2)`, "invariant"},
		{"bundle entry resource", "Bundle", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","birthDate":"1990-13-01"}}]}`,
			"Bundle.entry[0].resource.birthDate", `value "1990-13-01" does not match the date format`, "value"},
		{"parameters resource", "Parameters", `{"resourceType":"Parameters","parameter":[{"name":"p","resource":{"resourceType":"Patient","active":"yes"}}]}`,
			"Parameters.parameter[0].resource.active", `value "yes" is a string, but a boolean must be a JSON boolean`, "structure"},
		// the cap on issues
		{"more than MaxIssues problems", "Patient", many,
			"Patient.bogus00", `unknown element "bogus00"`, "structure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := issues(t, v.Validate(tc.typ, []byte(tc.body)))
			for _, i := range is {
				var expr string
				if len(i.Expression) > 0 {
					expr = i.Expression[0]
				}
				if expr == tc.wantExpr && strings.Contains(i.Diagnostics, tc.wantDiag) {
					if tc.wantCode != "" && i.Code != tc.wantCode {
						t.Errorf("issue code %q, want %q", i.Code, tc.wantCode)
					}
					if i.Severity != "error" {
						t.Errorf("severity %q, want error", i.Severity)
					}
					return
				}
			}
			t.Errorf("no issue at %q saying %q; got:%s", tc.wantExpr, tc.wantDiag, dump(is))
		})
	}
}

// Exactly one issue per problem, sorted by location; the cap keeps MaxIssues
// errors and counts the rest.
func TestValidateIssueList(t *testing.T) {
	v := validator(t)
	is := issues(t, v.Validate("Patient", []byte(`{"resourceType":"Patient","name":[{"family":1},{"given":["a",""]}],"birthDate":"1990-13-01","active":null}`)))
	var got []string
	for _, i := range is {
		got = append(got, strings.Join(i.Expression, ","))
	}
	want := []string{"Patient.active", "Patient.birthDate", "Patient.name[0].family", "Patient.name[1].given[1]"}
	if !slices.Equal(got, want) {
		t.Errorf("expressions %q, want %q%s", got, want, dump(is))
	}

	many := `{"resourceType":"Patient"`
	for i := range 30 {
		many += fmt.Sprintf(`,"bogus%02d":1`, i)
	}
	is = issues(t, v.Validate("Patient", []byte(many+`}`)))
	if len(is) != MaxIssues+1 {
		t.Fatalf("%d issues, want %d", len(is), MaxIssues+1)
	}
	last := is[MaxIssues]
	if last.Severity != "information" || last.Diagnostics != "10 more problems not listed" {
		t.Errorf("last issue %+v, want the count of the rest", last)
	}
	if is[0].Expression[0] != "Patient.bogus00" || is[MaxIssues-1].Expression[0] != "Patient.bogus19" {
		t.Errorf("issues not in document order:%s", dump(is))
	}
}

func TestValidateAccepts(t *testing.T) {
	v := validator(t)
	for _, tc := range []struct {
		name, typ, body string
	}{
		{"minimal", "Patient", `{"resourceType":"Patient"}`},
		{"own type", "", `{"resourceType":"Patient","active":true}`},
		{"byte order mark", "Patient", "\xef\xbb\xbf{\"resourceType\":\"Patient\"}"},
		{"escapes and unicode", "Patient", `{"resourceType":"Patient","name":[{"family":"M\u00fcller \"Jr\" \ud83d\ude00","given":["Zoë","李"]}]}`},
		// json.html#primitive: aligned arrays with null fillers
		{"primitive extensions", "Patient", `{"resourceType":"Patient","name":[{"given":["a",null,"c"],"_given":[null,{"extension":[{"url":"http://x","valueString":"b"}]},{"id":"g3"}]}]}`},
		{"extension on a single primitive", "Patient", `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://x","valueDateTime":"1990-01-01T10:00:00+01:00"}]}}`},
		{"canonical with _element", "Questionnaire", `{"resourceType":"Questionnaire","status":"draft","derivedFrom":["http://x/Q"],"_derivedFrom":[{"id":"d"}]}`},
		{"partial dates", "Patient", `{"resourceType":"Patient","birthDate":"1990","deceasedDateTime":"2024-02-29T23:59:60.123Z"}`},
		{"decimal precision", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50,"unit":"kg"}}`},
		{"exponent decimal", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1e3}}`},
		{"contained", "Observation", `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p"}],"status":"final","code":{"text":"x"},"subject":{"reference":"#p"}}`},
		{"bundle", "Bundle", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o"}]},"request":{"method":"POST","url":"Patient"}}]}`},
		{"deepest allowed nesting", "Patient", deep(31)},
		{"32-bit integer bounds", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueInteger":2147483647,"component":[{"code":{"text":"c"},"valueInteger":-2147483648}]}`},
		{"32-bit positiveInt and unsignedInt bounds", "Appointment", `{"resourceType":"Appointment","status":"booked","participant":[{"status":"accepted"}],"minutesDuration":2147483647,"priority":2147483647}`},
		{"largest float64", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.7976931348623157e308}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := v.Validate(tc.typ, []byte(tc.body)); err != nil {
				t.Errorf("Validate: %v%s", err, dump(issues(t, err)))
			}
		})
	}
}

// fhir.ResourceTypes comes from the R4 model (fhir/model, generated from the
// StructureDefinitions); this keeps it in step with the schema's
// discriminator mapping, the validator's own list of types.
func TestResourceTypesMatchSchema(t *testing.T) {
	raw, err := rawSchema()
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := fhir.ParseJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	mapping := asMap(asMap(asMap(v)["discriminator"])["mapping"])
	var names []string
	for n, ref := range mapping {
		if ref != "#/definitions/"+n {
			t.Errorf("mapping %s -> %v", n, ref)
		}
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, fhir.ResourceTypes) {
		t.Errorf("fhir.ResourceTypes (%d) differs from the schema's discriminator mapping (%d)", len(fhir.ResourceTypes), len(names))
	}
	if !slices.IsSorted(fhir.ResourceTypes) {
		t.Error("fhir.ResourceTypes is not sorted")
	}
	for s, want := range map[string]bool{"Patient": true, "VisionPrescription": true, "Account": true, "patient": false, "Resource": false, "DomainResource": false, "": false} {
		if got := fhir.IsResourceType(s); got != want {
			t.Errorf("IsResourceType(%q) = %v, want %v", s, got, want)
		}
	}
}

// Validate compiles lazily; concurrent first uses of the same and of
// different types must agree (run with -race).
func TestValidateConcurrent(t *testing.T) {
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string]string{
		"Patient":     `{"resourceType":"Patient","birthDate":"1990-13-01"}`,
		"Observation": `{"resourceType":"Observation","status":"final"}`,
		"Consent":     `{"resourceType":"Consent"}`,
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 8 {
		for typ, body := range bodies {
			wg.Go(func() {
				is := fhir.AsError(v.Validate(typ, []byte(body))).Issues
				if len(is) == 0 || is[0].Severity != "error" {
					errs <- fmt.Sprintf("%s: no issue", typ)
				}
			})
		}
	}
	wg.Go(func() { v.Warm(context.Background()) })
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestWarm(t *testing.T) {
	count := func(v *Validator) int {
		n := 0
		v.schemas.Range(func(_, _ any) bool { n++; return true })
		return n
	}
	v, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v.Warm(ctx)
	if n := count(v); n != 0 {
		t.Errorf("Warm with a cancelled context compiled %d types", n)
	}
	v.Warm(context.Background())
	if n := count(v); n != len(fhir.ResourceTypes) {
		t.Errorf("Warm compiled %d types, want %d", n, len(fhir.ResourceTypes))
	}
}

// patchSchema must leave no inline primitive behind except base64Binary
// choices (whose pattern differs from the base64Binary definition), and every
// complex type must demand an object (see patchSchema).
func TestPatchedSchema(t *testing.T) {
	doc, err := loadSchema()
	if err != nil {
		t.Fatal(err)
	}
	defs := asMap(doc["definitions"])
	for dn, d := range defs {
		props, ok := asMap(d)["properties"].(map[string]any)
		if !ok {
			continue
		}
		if asMap(d)["type"] != "object" && !strings.HasSuffix(dn, itemSuffix) {
			t.Errorf("definition %s: type %v, want object", dn, asMap(d)["type"])
		}
		for pn, p := range props {
			if asMap(p)["pattern"] != nil && choicePrimitive(pn) != "base64Binary" {
				t.Errorf("%s.%s still inlines a primitive: %v", dn, pn, p)
			}
		}
	}
	for name, want := range map[string]string{
		"effectiveDateTime": "dateTime", "valueTime": "time", "valueInteger": "integer",
		"valuePositiveInt": "positiveInt", "valueBase64Binary": "base64Binary", "valueUri": "uri",
		"deceasedBoolean": "boolean", "multipleBirthInteger": "integer", "status": "", "Integer": "",
	} {
		if got := choicePrimitive(name); got != want {
			t.Errorf("choicePrimitive(%q) = %q, want %q", name, got, want)
		}
	}
}
