package server_test

// Extended operations at every level (R4 operations.html#levels), WalkAs
// and HandleAsService.

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/fhir/server/servertest"
	"github.com/fhirgate/fhirgate/smart"
)

func TestOperationLevels(t *testing.T) {
	s, _ := servertest.New(t, servertest.Options{})
	ran := map[string]server.OperationCall{}
	reg := func(l server.Level, typ, name string, staff bool) {
		s.RegisterOperation(server.ExtraOperation{Name: name, Type: typ, Level: l, Staff: staff,
			Run: func(ctx context.Context, c server.OperationCall) (*fhir.Response, error) {
				ran[l.String()+" "+typ+name] = c
				return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: []byte(`{"resourceType":"Parameters"}`)}, nil
			}})
	}
	reg(server.SystemLevel, "Patient", "$x", true) // the type is ignored at the system level
	reg(server.TypeLevel, "Patient", "$x", false)
	reg(server.Instance, "Patient", "$x", false)
	emr := servertest.As(t, "system/*.cruds", "", "")
	for _, p := range []string{"Patient/a", "Patient/b"} {
		if r := servertest.Do(emr, s, "PUT", p, `{"resourceType":"Patient","id":"`+strings.TrimPrefix(p, "Patient/")+`"}`); r.Status != 201 {
			t.Fatalf("PUT %s: %d %s", p, r.Status, r.Body)
		}
	}
	pa := servertest.As(t, "patient/*.rs", "a", "Patient/a")
	cases := []struct {
		ctx    context.Context
		method string
		path   string
		status int
		ran    string
	}{
		{emr, "POST", "$x", 200, "system Patient$x"},
		{pa, "GET", "$x", 403, ""}, // Staff
		{pa, "GET", "Patient/$x", 200, "type Patient$x"},
		{pa, "GET", "Observation/$x", 404, ""}, // not registered on the type
		{pa, "GET", "Patient/a/$x", 200, "instance Patient$x"},
		{pa, "GET", "Patient/b/$x", 404, ""}, // outside the patient's reach
		{pa, "DELETE", "Patient/$x", 405, ""},
		{servertest.As(t, "patient/Observation.rs", "a", "Patient/a"), "GET", "Patient/$x", 403, ""},
	}
	for _, c := range cases {
		clear(ran)
		r := servertest.Do(c.ctx, s, c.method, c.path, "")
		if r.Status != c.status {
			t.Errorf("%s %s = %d, want %d: %s", c.method, c.path, r.Status, c.status, r.Body)
		}
		if _, ok := ran[c.ran]; c.ran != "" && (!ok || len(ran) != 1) {
			t.Errorf("%s %s ran %v, want %q", c.method, c.path, ran, c.ran)
		}
		if c.ran == "" && len(ran) > 0 {
			t.Errorf("%s %s ran %v", c.method, c.path, ran)
		}
	}
	clear(ran)
	servertest.Do(pa, s, "GET", "Patient/$x", "")
	if c := ran["type Patient$x"]; !c.PatientFacing || len(c.Patients) != 1 || c.Patients[0] != "Patient/a" {
		t.Errorf("type-level call of a patient: %+v", c)
	}
}

func TestWalkAsAndService(t *testing.T) {
	s, _ := servertest.New(t, servertest.Options{})
	emr := servertest.As(t, "system/*.cruds", "", "")
	for i := range 25 {
		subj := "a"
		if i%5 == 0 {
			subj = "b"
		}
		id := "o" + strconv.Itoa(i)
		r := servertest.Do(emr, s, "PUT", "Observation/"+id, `{"resourceType":"Observation","id":"`+id+`","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+subj+`"}}`)
		if r.Status != 201 {
			t.Fatalf("PUT: %d %s", r.Status, r.Body)
		}
	}
	sc, _ := smart.ParseScopes("patient/*.rs")
	pa := &smart.Principal{Scopes: sc, Patient: "a", FHIRUser: "Patient/a", Subject: "s", ClientID: "c"}
	walked := func(p *smart.Principal) (n, pages int) {
		t.Helper()
		err := s.WalkAs(context.Background(), p, engine.Request{Types: []string{"Observation"}, Params: map[string][]string{"_count": {"7"}}},
			func(r *engine.Result) error {
				pages++
				n += len(r.Matches)
				for _, m := range r.Matches {
					if p != nil && p.Patient == "a" && strings.Contains(string(m.Raw), "Patient/b") {
						t.Errorf("walk of patient a returned %s", m.Key())
					}
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		return n, pages
	}
	if n, pages := walked(pa); n != 20 || pages != 3 {
		t.Errorf("patient a walked %d in %d pages, want 20 in 3", n, pages)
	}
	if err := s.WalkAs(context.Background(), nil, engine.Request{Types: []string{"Observation"}}, func(*engine.Result) error { return nil }); err == nil {
		t.Error("a walk without a principal ran with authorization on")
	}
	// The service authority writes what the patient could not, and the
	// answer names nobody else's data.
	r := s.HandleAsService(context.Background(), pa, &fhir.Request{Method: "PUT", Path: "Observation/o1", Header: http.Header{"Content-Type": {"application/fhir+json"}},
		Body: []byte(`{"resourceType":"Observation","id":"o1","status":"amended","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`), Entry: -1})
	if r.Status != 200 {
		t.Errorf("service update: %d %s", r.Status, r.Body)
	}
	if r := servertest.Do(smart.WithPrincipal(context.Background(), pa), s, "PUT", "Observation/o2", `{"resourceType":"Observation","id":"o2","status":"amended","code":{"text":"x"},"subject":{"reference":"Patient/a"}}`); r.Status != 403 {
		t.Errorf("the patient's own update of a result: %d, want 403", r.Status)
	}
}
