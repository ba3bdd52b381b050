package fhir

import (
	"net/url"
	"testing"
)

// Operation input parameters, R4 operations.html#request: the query and
// a Parameters body.
func TestReadParams(t *testing.T) {
	req := &Request{Query: url.Values{"a": {"1"}}, Body: []byte(`{"resourceType":"Parameters","parameter":[
		{"name":"s","valueString":"x"},{"name":"n","valueInteger":7},{"name":"b","valueBoolean":true},
		{"name":"r","valueReference":{"reference":"Slot/1"}},{"name":"c","valueCoding":{"system":"http://x","code":"y"}},
		{"name":"s","valueCode":"z"}]}`)}
	p, err := ReadParams(req)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "1", "s": "x", "n": "7", "b": "true", "r": "Slot/1", "c": "http://x|y", "none": ""} {
		if got := p.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if all := p.All("s"); len(all) != 2 || all[1] != "z" {
		t.Errorf("All(s) = %v", all)
	}
	for _, bad := range []string{
		`{"resourceType":"Patient"}`,
		`not json`,
		`{"resourceType":"Parameters","parameter":[{"valueString":"x"}]}`,
		`{"resourceType":"Parameters","parameter":[{"name":"x"}]}`,
		`{"resourceType":"Parameters","parameter":[{"name":"x","valueQuantity":{"value":1}}]}`,
	} {
		_, err := ReadParams(&Request{Body: []byte(bad)})
		if fe, ok := err.(*Error); !ok || fe.Kind != KindInvalid {
			t.Errorf("%s: %v, want a 400", bad, err)
		}
	}
}
