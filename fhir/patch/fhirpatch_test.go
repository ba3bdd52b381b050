package patch

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
)

// op builds one FHIRPath Patch operation parameter (fhirpatch.html).
func op(typ, path string, parts ...string) string {
	all := []string{fmt.Sprintf(`{"name":"type","valueCode":%q}`, typ)}
	if path != "" {
		all = append(all, fmt.Sprintf(`{"name":"path","valueString":%q}`, path))
	}
	all = append(all, parts...)
	return `{"name":"operation","part":[` + strings.Join(all, ",") + `]}`
}

func params(ops ...string) []byte {
	return []byte(`{"resourceType":"Parameters","parameter":[` + strings.Join(ops, ",") + `]}`)
}

func name(n string) string     { return fmt.Sprintf(`{"name":"name","valueString":%q}`, n) }
func index(n int) string       { return fmt.Sprintf(`{"name":"index","valueInteger":%d}`, n) }
func value(x, v string) string { return fmt.Sprintf(`{"name":"value","value%s":%s}`, x, v) }

const patientDoc = `{"resourceType":"Patient","id":"example","identifier":[{"system":"http://a","value":"1"},{"system":"http://b","value":"2"},{"system":"http://c","value":"3"}],"active":true,"name":[{"use":"official","family":"Chalmers","given":["Peter","James"],"_given":[null,{"extension":[{"url":"http://x","valueString":"e"}]}]},{"use":"usual","given":["Jim"]}],"birthDate":"1974-12-25","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1974-12-25T14:35:45-05:00"}]},"deceasedBoolean":false}`

// TestFHIRPathPatchSpecExamples runs the examples of fhirpatch.html (R4)
// and further cases of each operation type. Results are compared byte for
// byte: untouched members keep their order.
func TestFHIRPathPatchSpecExamples(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		ops  []string
		want string
	}{
		{"spec add birthDate", `{"resourceType":"Patient","id":"p"}`,
			[]string{op("add", "Patient", name("birthDate"), value("Date", `"1930-01-01"`))},
			`{"resourceType":"Patient","id":"p","birthDate":"1930-01-01"}`},
		{"spec add anonymous contact", `{"resourceType":"Patient","id":"p"}`,
			[]string{op("add", "Patient", name("contact"), `{"name":"value","part":[{"name":"name","valueHumanName":{"text":"a name"}}]}`)},
			`{"resourceType":"Patient","id":"p","contact":[{"name":{"text":"a name"}}]}`},
		{"spec insert identifier", `{"resourceType":"Patient","id":"p","identifier":[{"value":"a"},{"value":"c"}]}`,
			[]string{op("insert", "Patient.identifier", index(1), value("Identifier", `{"system":"http://example.org","value":"b"}`))},
			`{"resourceType":"Patient","id":"p","identifier":[{"value":"a"},{"system":"http://example.org","value":"b"},{"value":"c"}]}`},
		{"spec delete birthDate (and its extension)", patientDoc,
			[]string{op("delete", "Patient.birthDate")},
			strings.Replace(patientDoc, `"birthDate":"1974-12-25","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1974-12-25T14:35:45-05:00"}]},`, "", 1)},
		{"spec replace birthDate", `{"resourceType":"Patient","id":"p","birthDate":"1974-12-25","active":true}`,
			[]string{op("replace", "Patient.birthDate", value("Date", `"1930-01-01"`))},
			`{"resourceType":"Patient","id":"p","birthDate":"1930-01-01","active":true}`},
		{"spec move identifier", `{"resourceType":"Patient","id":"p","identifier":[{"value":"0"},{"value":"1"},{"value":"2"}]}`,
			[]string{op("move", "Patient.identifier", `{"name":"source","valueInteger":0}`, `{"name":"destination","valueInteger":2}`)},
			`{"resourceType":"Patient","id":"p","identifier":[{"value":"1"},{"value":"2"},{"value":"0"}]}`},
		{"add to repeating appends", `{"resourceType":"Patient","id":"p","identifier":[{"value":"a"}],"active":true}`,
			[]string{op("add", "Patient", name("identifier"), value("Identifier", `{"value":"b"}`))},
			`{"resourceType":"Patient","id":"p","identifier":[{"value":"a"},{"value":"b"}],"active":true}`},
		{"add creates array for repeating", `{"resourceType":"Patient","id":"p"}`,
			[]string{op("add", "Patient", name("identifier"), value("Identifier", `{"value":"b"}`))},
			`{"resourceType":"Patient","id":"p","identifier":[{"value":"b"}]}`},
		{"add choice by base name", `{"resourceType":"Patient","id":"p"}`,
			[]string{op("add", "Patient", name("deceased"), value("DateTime", `"2020-01-01"`))},
			`{"resourceType":"Patient","id":"p","deceasedDateTime":"2020-01-01"}`},
		{"add choice by typed name", `{"resourceType":"Patient","id":"p"}`,
			[]string{op("add", "Patient", name("deceasedBoolean"), value("Boolean", `true`))},
			`{"resourceType":"Patient","id":"p","deceasedBoolean":true}`},
		{"add with primitive extension", `{"resourceType":"Patient","id":"p"}`,
			[]string{op("add", "Patient", name("gender"), `{"name":"value","valueCode":"male","_valueCode":{"id":"g"}}`)},
			`{"resourceType":"Patient","id":"p","gender":"male","_gender":{"id":"g"}}`},
		{"add nested parts with repeating and choice", `{"resourceType":"Observation","id":"o","status":"final"}`,
			[]string{op("add", "Observation", name("component"), `{"name":"value","part":[{"name":"code","valueCodeableConcept":{"text":"x"}},{"name":"value","valueQuantity":{"value":1.50,"unit":"mg"}},{"name":"interpretation","valueCodeableConcept":{"text":"H"}}]}`)},
			`{"resourceType":"Observation","id":"o","status":"final","component":[{"code":{"text":"x"},"valueQuantity":{"value":1.50,"unit":"mg"},"interpretation":[{"text":"H"}]}]}`},
		{"add to element selected by where", patientDoc,
			[]string{op("add", "Patient.name.where(use='usual')", name("family"), value("String", `"Chalmers"`))},
			strings.Replace(patientDoc, `{"use":"usual","given":["Jim"]}`, `{"use":"usual","given":["Jim"],"family":"Chalmers"}`, 1)},
		{"insert into primitive list keeps _given aligned", patientDoc,
			[]string{op("insert", "Patient.name[0].given", index(0), value("String", `"Dr"`))},
			strings.Replace(patientDoc, `"given":["Peter","James"],"_given":[null,{`, `"given":["Dr","Peter","James"],"_given":[null,null,{`, 1)},
		{"delete primitive list item keeps _given aligned", patientDoc,
			[]string{op("delete", "Patient.name.first().given.first()")},
			strings.Replace(patientDoc, `"given":["Peter","James"],"_given":[null,{`, `"given":["James"],"_given":[{`, 1)},
		{"delete last item removes list and _list", patientDoc,
			[]string{op("delete", "Patient.name[0].given[1]"), op("delete", "Patient.name[0].given[0]")},
			strings.Replace(patientDoc, `,"given":["Peter","James"],"_given":[null,{"extension":[{"url":"http://x","valueString":"e"}]}]`, ``, 1)},
		{"delete by where on identifier", patientDoc,
			[]string{op("delete", "Patient.identifier.where(system='http://b' and value='2')")},
			strings.Replace(patientDoc, `{"system":"http://b","value":"2"},`, ``, 1)},
		{"delete of nothing is a no-op", patientDoc,
			[]string{op("delete", "Patient.identifier.where(system='http://zzz')"), op("delete", "Patient.gender")},
			patientDoc},
		{"replace choice changes type in place", patientDoc,
			[]string{op("replace", "Patient.deceased", value("DateTime", `"2020-02-02"`))},
			strings.Replace(patientDoc, `"deceasedBoolean":false`, `"deceasedDateTime":"2020-02-02"`, 1)},
		{"replace primitive drops its extension", patientDoc,
			[]string{op("replace", "Patient.birthDate", value("Date", `"1975"`))},
			strings.Replace(patientDoc, `"birthDate":"1974-12-25","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1974-12-25T14:35:45-05:00"}]}`, `"birthDate":"1975"`, 1)},
		{"replace list item by last()", patientDoc,
			[]string{op("replace", "Patient.identifier.last()", value("Identifier", `{"value":"9"}`))},
			strings.Replace(patientDoc, `{"system":"http://c","value":"3"}`, `{"value":"9"}`, 1)},
		{"replace code with valueString is accepted", patientDoc,
			[]string{op("add", "Patient", name("gender"), value("Code", `"male"`)), op("replace", "Patient.gender", value("String", `"female"`))},
			strings.Replace(patientDoc, `"deceasedBoolean":false}`, `"deceasedBoolean":false,"gender":"female"}`, 1)},
		{"move within primitive list moves extensions", patientDoc,
			[]string{op("move", "Patient.name[0].given", `{"name":"source","valueInteger":1}`, `{"name":"destination","valueInteger":0}`)},
			strings.Replace(patientDoc, `"given":["Peter","James"],"_given":[null,{"extension":[{"url":"http://x","valueString":"e"}]}]`, `"given":["James","Peter"],"_given":[{"extension":[{"url":"http://x","valueString":"e"}]},null]`, 1)},
		{"extension() and contained navigation", `{"resourceType":"Patient","id":"p","contained":[{"resourceType":"Organization","id":"o","name":"A"}],"extension":[{"url":"http://u","valueString":"old"}]}`,
			[]string{op("replace", "Patient.extension('http://u').value", value("String", `"new"`)), op("replace", "Patient.contained.where(id='o').name", value("String", `"B"`))},
			`{"resourceType":"Patient","id":"p","contained":[{"resourceType":"Organization","id":"o","name":"B"}],"extension":[{"url":"http://u","valueString":"new"}]}`},
		{"add contained resource", `{"resourceType":"Patient","id":"p"}`,
			[]string{op("add", "Patient", name("contained"), `{"name":"value","resource":{"resourceType":"Organization","id":"o"}}`)},
			`{"resourceType":"Patient","id":"p","contained":[{"resourceType":"Organization","id":"o"}]}`},
		{"backbone contentReference (Questionnaire.item.item)", `{"resourceType":"Questionnaire","id":"q","status":"draft","item":[{"linkId":"1","type":"group"}]}`,
			[]string{op("add", "Questionnaire.item[0]", name("item"), `{"name":"value","part":[{"name":"linkId","valueString":"1.1"},{"name":"type","valueCode":"string"}]}`)},
			`{"resourceType":"Questionnaire","id":"q","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","type":"string"}]}]}`},
		{"numbers compared by value in where; decimals untouched", `{"resourceType":"Observation","id":"o","status":"final","component":[{"valueQuantity":{"value":1.50}},{"valueQuantity":{"value":2.0}}]}`,
			[]string{op("replace", "Observation.component.where(value.value = 1.5).value.value", value("Decimal", `2.50`))},
			`{"resourceType":"Observation","id":"o","status":"final","component":[{"valueQuantity":{"value":2.50}},{"valueQuantity":{"value":2.0}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FHIRPathPatch([]byte(tt.doc), params(tt.ops...))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestFHIRPathPatchErrors: a bad Parameters is 400, an operation that does
// not apply is 422; both name the operation index and path.
func TestFHIRPathPatchErrors(t *testing.T) {
	tests := []struct {
		name     string
		body     []byte
		kind     fhir.Kind
		contains []string
	}{
		{"not Parameters", []byte(`{"resourceType":"Patient"}`), fhir.KindInvalid, []string{"Parameters"}},
		{"not JSON", []byte(`{`), fhir.KindInvalid, nil},
		{"wrong parameter name", []byte(`{"resourceType":"Parameters","parameter":[{"name":"op","part":[]}]}`), fhir.KindInvalid, []string{"operation"}},
		{"unknown type", params(op("frob", "Patient")), fhir.KindInvalid, []string{"frob"}},
		{"missing path", params(op("delete", "")), fhir.KindInvalid, []string{"path"}},
		{"add without name", params(op("add", "Patient", value("String", `"x"`))), fhir.KindInvalid, []string{"name"}},
		{"insert without index", params(op("insert", "Patient.identifier", value("Identifier", `{}`))), fhir.KindInvalid, []string{"index"}},
		{"move without source", params(op("move", "Patient.identifier", `{"name":"destination","valueInteger":0}`)), fhir.KindInvalid, []string{"source"}},
		{"unknown part", params(op("delete", "Patient.active", `{"name":"colour","valueString":"x"}`)), fhir.KindInvalid, []string{"colour"}},
		{"bad path syntax", params(op("delete", "Patient.name[x")), fhir.KindInvalid, []string{"operation 0"}},
		{"resolve not allowed", params(op("delete", "Patient.managingOrganization.resolve().name")), fhir.KindInvalid, []string{"resolve"}},
		{"bad value type shape", params(op("replace", "Patient.active", value("Boolean", `"yes"`))), fhir.KindInvalid, []string{"boolean"}},
		{"unknown value type", params(op("replace", "Patient.active", value("Frob", `1`))), fhir.KindInvalid, []string{"valueFrob"}},
		{"negative index", params(op("insert", "Patient.identifier", `{"name":"index","valueInteger":-1}`, value("Identifier", `{}`))), fhir.KindInvalid, []string{"index"}},
		{"wrong resource type", params(op("delete", "Observation.status")), fhir.KindUnprocessable, []string{"Observation"}},
		{"unknown element", params(op("delete", "Patient.colour")), fhir.KindUnprocessable, []string{"colour"}},
		{"add unknown element", params(op("add", "Patient", name("colour"), value("String", `"x"`))), fhir.KindUnprocessable, []string{"colour"}},
		{"add to non-repeating that exists", params(op("add", "Patient", name("birthDate"), value("Date", `"2000"`))), fhir.KindUnprocessable, []string{"replace"}},
		{"add choice that exists", params(op("add", "Patient", name("deceased"), value("DateTime", `"2000"`))), fhir.KindUnprocessable, []string{"deceasedBoolean"}},
		{"add typed choice name with other type", params(op("add", "Patient", name("multipleBirthBoolean"), value("Integer", `2`))), fhir.KindUnprocessable, []string{"multipleBirthBoolean"}},
		{"wrong value type", params(op("replace", "Patient.birthDate", value("HumanName", `{}`))), fhir.KindUnprocessable, []string{"HumanName", "Patient.birthDate"}},
		{"wrong choice type", params(op("replace", "Patient.deceased", value("String", `"x"`))), fhir.KindUnprocessable, []string{"string"}},
		{"replace multiple", params(op("replace", "Patient.identifier.value", value("String", `"x"`))), fhir.KindUnprocessable, []string{"3 elements"}},
		{"delete multiple", params(op("delete", "Patient.name")), fhir.KindUnprocessable, []string{"2 elements"}},
		{"replace nothing", params(op("replace", "Patient.gender", value("Code", `"male"`))), fhir.KindUnprocessable, []string{"0 elements"}},
		{"insert beyond end", params(op("insert", "Patient.identifier", index(4), value("Identifier", `{}`))), fhir.KindUnprocessable, []string{"index 4"}},
		{"insert non-repeating", params(op("insert", "Patient.birthDate", index(0), value("Date", `"2000"`))), fhir.KindUnprocessable, []string{"not repeating"}},
		{"move out of range", params(op("move", "Patient.identifier", `{"name":"source","valueInteger":0}`, `{"name":"destination","valueInteger":3}`)), fhir.KindUnprocessable, []string{"out of range"}},
		{"parts for primitive", params(op("replace", "Patient.birthDate", `{"name":"value","part":[{"name":"x","valueString":"y"}]}`)), fhir.KindUnprocessable, []string{"value[x]"}},
		{"anonymous unknown child", params(op("add", "Patient", name("contact"), `{"name":"value","part":[{"name":"colour","valueString":"y"}]}`)), fhir.KindUnprocessable, []string{"colour"}},
		{"change id", params(op("replace", "Patient.id", value("Id", `"other"`))), fhir.KindUnprocessable, []string{"id"}},
		{"delete id", params(op("delete", "Patient.id")), fhir.KindUnprocessable, []string{"id"}},
		{"delete resource", params(op("delete", "Patient")), fhir.KindUnprocessable, []string{"resource itself"}},
		{"second op fails", params(op("delete", "Patient.active"), op("replace", "Patient.active", value("Boolean", "true"))), fhir.KindUnprocessable, []string{"operation 1", "Patient.active"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FHIRPathPatch([]byte(patientDoc), tt.body)
			wantKind(t, err, tt.kind, tt.contains...)
		})
	}
}

// TestFHIRPathPatchExpression: 422 errors carry the operation's
// Parameters.parameter[i] expression for the OperationOutcome.
func TestFHIRPathPatchExpression(t *testing.T) {
	_, err := FHIRPathPatch([]byte(patientDoc), params(op("delete", "Patient.active"), op("delete", "Patient.name")))
	fe := fhir.AsError(err)
	if len(fe.Issues) != 1 || len(fe.Issues[0].Expression) != 1 || fe.Issues[0].Expression[0] != "Parameters.parameter[1]" {
		t.Fatalf("issues = %+v", fe.Issues)
	}
}

func TestParsePath(t *testing.T) {
	good := []string{
		"Patient", "Patient.name[0].given", "Patient.identifier.where(system='a\\'b' or (value = '1' and use.exists().not()))",
		"Observation.value.ofType(Quantity)", "Patient.extension('http://x').value", "name.first().`given`", "Patient.contact.where(gender != 'male')",
		"Observation.component.where(value.value = -1.5)", "Patient.name.where($this.use = 'official')",
	}
	for _, p := range good {
		if _, err := parsePath(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	bad := []string{"", ".name", "Patient..name", "Patient.name[", "Patient.name[a]", "Patient.where(", "Patient.name.count()", "Patient.name | Patient.x", "Patient.where(use='x)", "Patient.name[1.5]"}
	for _, p := range bad {
		if _, err := parsePath(p); err == nil {
			t.Errorf("%s: parsed, want error", p)
		}
	}
}

func TestModelLoads(t *testing.T) {
	m := getModel()
	for _, c := range []struct {
		path  string
		many  bool
		types string
	}{
		{"Patient.identifier", true, "Identifier"},
		{"Patient.birthDate", false, "date"},
		{"Observation.value", false, "Quantity,CodeableConcept,string,boolean,integer,Range,Ratio,SampledData,time,dateTime,Period"},
		{"HumanName.given", true, "string"},
	} {
		dot := strings.LastIndexByte(c.path, '.')
		e := m.child(c.path[:dot], c.path[dot+1:])
		if e == nil || e.Many != c.many || strings.Join(e.Types, ",") != c.types {
			t.Errorf("%s: %+v", c.path, e)
		}
	}
}

func BenchmarkFHIRPathPatch(b *testing.B) {
	p := params(op("replace", "Patient.name.where(use='official').family", value("String", `"X"`)), op("add", "Patient", name("identifier"), value("Identifier", `{"value":"4"}`)))
	doc := []byte(patientDoc)
	for b.Loop() {
		if _, err := FHIRPathPatch(doc, p); err != nil {
			b.Fatal(err)
		}
	}
}
