package audit

import (
	"bytes"
	"fmt"
	"github.com/fhirgate/fhirgate/fhir/search"
	"reflect"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// BuildVersion's tree is exactly its JSON decoded, and its JSON is Build's
// with meta.versionId and meta.lastUpdated added (resource.html#Meta), for
// every interaction and every optional part of an event.
func TestBuildVersionTree(t *testing.T) {
	lu := time.Date(2026, 11, 23, 1, 2, 3, 456e6, time.UTC)
	forEachVariant(func(name string, e Event) {
		raw, tree := BuildVersion(e, "ae1", lu)
		got, dups, err := fhir.ParseJSON(raw)
		if err != nil || len(dups) > 0 {
			t.Fatalf("%s: %v %v\n%s", name, err, dups, raw)
		}
		if !reflect.DeepEqual(got, any(tree)) {
			t.Fatalf("%s: tree differs from the JSON\ntree: %#v\njson: %s", name, tree, raw)
		}
		// The same bytes as Build plus the stamped meta.
		o, err := fhir.ParseObject(Build(e, "ae1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := fhir.StampMeta(o, "ae1", 1, lu); err != nil {
			t.Fatal(err)
		}
		if want := o.Bytes(); !bytes.Equal(raw, want) {
			t.Fatalf("%s: BuildVersion\n%s\nBuild + StampMeta\n%s", name, raw, want)
		}
	})
}

// BuildIndexed's search values are exactly what extraction with the
// default R4 parameters gives for the same AuditEvent (auditevent.html#search),
// for every interaction and optional part, under two server bases.
func TestIndexEqualsExtract(t *testing.T) {
	lu := time.Date(2026, 11, 23, 1, 2, 3, 456e6, time.UTC)
	for _, base := range []string{"", "https://fhir.example.org/r4"} {
		reg := search.Default().WithBase(base)
		if !reg.SameParams(search.Default(), "AuditEvent") {
			t.Fatal("the registry's AuditEvent parameters are not the default ones")
		}
		forEachVariant(func(name string, e Event) {
			raw, idx := BuildIndexed(e, "ae1", lu, reg.NewBuilder("AuditEvent"))
			_, tree := BuildVersion(e, "ae1", lu)
			want, err := reg.Extract("AuditEvent", tree)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(idx, want) {
				t.Fatalf("%s (base %q): BuildIndexed\n%+v\nExtract\n%+v\n%s", name, base, idx, want, raw)
			}
		})
	}
}

// forEachVariant calls fn with an event of every interaction (and an
// unknown one) combined with each optional part.
func forEachVariant(fn func(name string, e Event)) {
	variants := []func(*Event){
		func(*Event) {},
		func(e *Event) { e.UserFHIR, e.UserSubject, e.UserIssuer = "", "", "" },
		func(e *Event) { e.UserFHIR = "" },
		func(e *Event) { e.UserIssuer = "" },
		func(e *Event) { e.ClientID = "" },
		func(e *Event) { e.Proxy = "RelatedPerson/rp" },
		func(e *Event) { e.Outcome = 404; e.OutcomeText = "" },
		func(e *Event) { e.Outcome = 500; e.OutcomeText = "boom <&>" },
		func(e *Event) { e.SourceIP, e.UserAgent = "", "" },
		func(e *Event) { e.Server = "" },
		func(e *Event) { e.Server = "fhirgate" },
		func(e *Event) { e.Patient, e.Patients = "", nil },
		func(e *Event) { e.Patients = []string{"Patient/1", "Patient/2", "Patient/1"} },
		func(e *Event) {
			e.Resources = []string{"Observation/o1", "Patient/123/_history/2", "Observation/o1"}
		},
		func(e *Event) { e.Query = "Observation?code=1234-5&_count=10" },
		func(e *Event) { e.Operation = "$release" },
		func(e *Event) { e.RequestID = "" },
		// Strings encoding/json escapes (json.html: FHIR JSON is RFC 8259).
		func(e *Event) { e.UserAgent = "Mozilla \"x\" \\ <b>&amp; \x01\t\n\b\f\r\x1f" },
		func(e *Event) { e.UserAgent, e.RequestID = "caf\u00e9 \u2028\u2029 \U0001F600", "r\xffq" },
		func(e *Event) { e.OutcomeText, e.Outcome, e.UserSubject = "bad \"input\"\n", 400, "\x7f\u0080" },
		// References: absolute (under a base or not), versioned, odd.
		func(e *Event) { e.UserFHIR = "https://fhir.example.org/r4/Practitioner/7" },
		func(e *Event) { e.UserFHIR, e.Patient = "https://elsewhere.example/Patient/9", "" },
		func(e *Event) {
			e.Resources = []string{"Patient/123/_history/3", "Observation/x/_history/1", "Bundle/b", "weird", "#c"}
		},
		func(e *Event) { e.Patients = []string{"Patient/a", "Patient/b"}; e.Patient = "Patient/b" },
		func(e *Event) { e.UserFHIR, e.UserSubject = "Patient/123", "" },
		func(e *Event) { e.UserAgent = "  " },
		// Labels of the named resources become meta.security (withheld like them).
		func(e *Event) {
			e.Labels = []string{"http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV", "http://terminology.hl7.org/CodeSystem/v3-ActCode|PSY"}
		},
		func(e *Event) {
			e.Labels = []string{"http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV"}
			e.Interaction = "search-type"
		},
	}
	for in := range interactions {
		for _, extra := range []string{in, "unknown-interaction"} {
			for i, v := range variants {
				e := base(extra)
				e.Resources = []string{"Observation/o1"}
				v(&e)
				fn(fmt.Sprintf("%s/%d", extra, i), e)
			}
		}
	}
}

// The writer's per-event work: JSON and search values from the event
// (BuildIndexed) against JSON, decoded form and generic extraction.
func BenchmarkIndexEvent(b *testing.B) {
	lu := time.Date(2026, 11, 23, 1, 2, 3, 456e6, time.UTC)
	e := base("create")
	e.Resources = []string{"Observation/o1/_history/1"}
	reg := search.Default()
	b.Run("BuildIndexed", func(b *testing.B) {
		for b.Loop() {
			BuildIndexed(e, "ae1", lu, reg.NewBuilder("AuditEvent"))
		}
	})
	b.Run("BuildVersion+Extract", func(b *testing.B) {
		for b.Loop() {
			_, tree := BuildVersion(e, "ae1", lu)
			if _, err := reg.Extract("AuditEvent", tree); err != nil {
				b.Fatal(err)
			}
		}
	})
}
