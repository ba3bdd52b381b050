package audit

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

var t0 = time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)

// base is a SMART patient-portal access: the patient's own app, token and address.
func base(interaction string) Event {
	return Event{
		Time: t0, Interaction: interaction, Outcome: 200,
		UserFHIR: "Patient/123", UserSubject: "u-123", UserIssuer: "https://idp.example.org",
		ClientID: "portal-app", Patient: "Patient/123", Patients: []string{"Patient/123"},
		SourceIP: "203.0.113.7", UserAgent: "Mozilla/5.0", RequestID: "req-1",
		Server: "https://fhir.example.org/r4",
	}
}

// Cases cite BALP (https://profiles.ihe.net/ITI/BALP/content.html) and R4 auditevent.html.
func TestBuild(t *testing.T) {
	tests := []struct {
		name   string
		golden bool
		event  func() Event
		check  func(t *testing.T, d doc)
	}{
		{
			// BALP PatientRead: the patient reads one of their observations.
			name: "read", golden: true,
			event: func() Event {
				e := base("read")
				e.Resources = []string{"Observation/obs-1"}
				return e
			},
			check: func(t *testing.T, d doc) {
				d.eq(t, "resourceType", "AuditEvent")
				d.eq(t, "id", "ae-1")
				d.eq(t, "meta.profile.0", balpProfile+"PatientRead")
				d.eq(t, "type.system", sysEventType)
				d.eq(t, "type.code", "rest")
				d.eq(t, "subtype.0.system", sysInteraction)
				d.eq(t, "subtype.0.code", "read")
				d.eq(t, "action", "R")
				d.eq(t, "recorded", "2024-03-01T10:00:00.000Z")
				d.eq(t, "outcome", "0")
				d.eq(t, "outcomeDesc", nil)
				u := d.agent(t, "IRCP")
				u.eq(t, "who.reference", "Patient/123")
				u.eq(t, "who.identifier.system", "https://idp.example.org")
				u.eq(t, "who.identifier.value", "u-123")
				u.eq(t, "requestor", true)
				u.eq(t, "network", nil)   // users are not network devices
				c := d.agent(t, "110152") // the client receives the data: Destination
				c.eq(t, "who.identifier.value", "portal-app")
				c.eq(t, "network.address", "203.0.113.7")
				c.eq(t, "network.type", "2")
				c.eq(t, "name", "Mozilla/5.0")
				c.eq(t, "requestor", false)
				d.agent(t, "110150").eq(t, "who.identifier.value", "portal-app")
				s := d.agent(t, "110153")
				s.eq(t, "who.display", "https://fhir.example.org/r4")
				s.eq(t, "network.type", "5")
				d.eq(t, "source.observer.display", "https://fhir.example.org/r4")
				d.eq(t, "source.type.0.code", "4")
				data := d.entity(t, sysEntityType, "2")
				data.eq(t, "what.reference", "Observation/obs-1")
				data.eq(t, "role.code", "4")
				p := d.entity(t, sysEntityType, "1")
				p.eq(t, "what.reference", "Patient/123")
				p.eq(t, "role.code", "1")
				d.entity(t, sysBALPEntity, "XrequestId").eq(t, "what.identifier.value", "req-1")
			},
		},
		{
			name:  "vread keeps the version in the reference",
			event: func() Event { e := base("vread"); e.Resources = []string{"Observation/obs-1/_history/3"}; return e },
			check: func(t *testing.T, d doc) {
				d.eq(t, "meta.profile.0", balpProfile+"PatientRead")
				d.eq(t, "subtype.0.code", "vread")
				d.entity(t, sysEntityType, "2").eq(t, "what.reference", "Observation/obs-1/_history/3")
			},
		},
		{
			// BALP PatientQuery: a practitioner searches one patient's results.
			name: "search", golden: true,
			event: func() Event {
				e := base("search-type")
				e.UserFHIR, e.UserSubject, e.ClientID, e.Patient = "Practitioner/1", "dr-1", "clinic-app", ""
				e.Query = "Observation?patient=Patient/123&code=http://loinc.org|1234-5"
				e.Resources = []string{"Observation/o1", "Observation/o2", "Observation/o1"}
				return e
			},
			check: func(t *testing.T, d doc) {
				d.eq(t, "meta.profile.0", balpProfile+"PatientQuery")
				d.eq(t, "subtype.0.code", "search-type")
				d.eq(t, "action", "E")
				d.agent(t, "IRCP").eq(t, "who.reference", "Practitioner/1")
				d.agent(t, "110153").eq(t, "who.identifier.value", "clinic-app") // client sends the query: Source
				d.agent(t, "110152").eq(t, "who.display", "https://fhir.example.org/r4")
				q := d.entity(t, sysEntityType, "2") // the only System Object: BALP's query slice
				q.eq(t, "role.code", "24")
				q.eq(t, "what", nil)
				raw, err := base64.StdEncoding.DecodeString(q.str(t, "query"))
				if err != nil || string(raw) != "Observation?patient=Patient/123&code=http://loinc.org|1234-5" {
					t.Errorf("query = %q, %v", raw, err)
				}
				if n := d.count(sysResourceType, "Observation"); n != 2 { // deduplicated
					t.Errorf("%d Observation entities, want 2", n)
				}
				d.entity(t, sysEntityType, "1").eq(t, "what.reference", "Patient/123")
			},
		},
		{
			// A parent acts for their child through a RelatedPerson.
			name: "proxy", golden: true,
			event: func() Event {
				e := base("read")
				e.UserFHIR, e.UserSubject, e.Proxy = "RelatedPerson/9", "parent-9", "RelatedPerson/9"
				e.Resources = []string{"Immunization/imm-1"}
				return e
			},
			check: func(t *testing.T, d doc) {
				d.eq(t, "meta.profile.0", balpProfile+"PatientRead")
				a := d.agent(t, "429577009")
				a.eq(t, "type.coding.0.system", sysSCT)
				a.eq(t, "who.reference", "RelatedPerson/9")
				a.eq(t, "requestor", true)
				d.agent(t, "IRCP").eq(t, "who.reference", "RelatedPerson/9")
				d.entity(t, sysEntityType, "1").eq(t, "what.reference", "Patient/123")
			},
		},
		{
			// Refused access: minor failure, no BALP profile (they describe successes).
			name: "failed", golden: true,
			event: func() Event {
				e := base("read")
				e.Outcome, e.OutcomeText = 403, "Observation/obs-9 is not in the patient compartment"
				e.Resources = []string{"Observation/obs-9"}
				return e
			},
			check: func(t *testing.T, d doc) {
				d.eq(t, "meta", nil)
				d.eq(t, "outcome", "4")
				d.eq(t, "outcomeDesc", "Observation/obs-9 is not in the patient compartment")
				d.entity(t, sysEntityType, "2").eq(t, "what.reference", "Observation/obs-9")
			},
		},
		{
			name:  "server error without text",
			event: func() Event { e := base("search-system"); e.Outcome = 500; e.Query = "_lastUpdated=gt2024"; return e },
			check: func(t *testing.T, d doc) {
				d.eq(t, "outcome", "8")
				d.eq(t, "outcomeDesc", "Internal Server Error")
				d.eq(t, "meta", nil)
			},
		},
		{
			// BALP PatientDelete: Application and Custodian, the user is an author.
			name: "delete",
			event: func() Event {
				e := base("delete")
				e.UserFHIR = "Practitioner/1"
				e.Resources = []string{"Observation/obs-1"}
				return e
			},
			check: func(t *testing.T, d doc) {
				d.eq(t, "meta.profile.0", balpProfile+"PatientDelete")
				d.eq(t, "action", "D")
				d.agent(t, "AUT").eq(t, "requestor", true)
				d.agent(t, "110150").eq(t, "network.address", "203.0.113.7")
				d.agent(t, "custodian").eq(t, "who.display", "https://fhir.example.org/r4")
				if n := d.agents("110150"); n != 1 {
					t.Errorf("%d Application agents, want 1 (BALP Delete client 1..1)", n)
				}
			},
		},
		{
			// An EMR writes through a backend client: no user, no address known.
			name: "create by backend",
			event: func() Event {
				return Event{Time: t0, Interaction: "create", Outcome: 201, ClientID: "emr",
					Resources: []string{"DiagnosticReport/dr-1"}, Patients: []string{"Patient/123"}}
			},
			check: func(t *testing.T, d doc) {
				d.eq(t, "meta", nil) // BALP needs the client's network address
				d.eq(t, "action", "C")
				d.eq(t, "agent.0.type.coding.0.code", "110153")
				d.eq(t, "agent.0.network", nil)
				d.eq(t, "source.observer.display", "fhirgate")
				d.agent(t, "110152").eq(t, "network", nil)
				if n := d.agents("IRCP") + d.agents("AUT"); n != 0 {
					t.Errorf("%d user agents, want 0", n)
				}
			},
		},
		{
			name: "update and patch are BALP Update",
			event: func() Event {
				e := base("patch")
				e.Resources = []string{"Patient/123"}
				return e
			},
			check: func(t *testing.T, d doc) {
				d.eq(t, "meta.profile.0", balpProfile+"PatientUpdate")
				d.eq(t, "action", "U")
				d.agent(t, "AUT")
			},
		},
		{
			name: "operation",
			event: func() Event {
				e := base("operation")
				e.Operation, e.Query = "$release", "DiagnosticReport/dr-1/$release?note=ok"
				e.Resources = []string{"DiagnosticReport/dr-1"}
				return e
			},
			check: func(t *testing.T, d doc) {
				d.eq(t, "meta", nil)
				d.eq(t, "subtype.0.code", "operation")
				d.eq(t, "action", "E")
				found := false
				for _, e := range d.list("entity") {
					found = found || e.get("name") == "$release"
				}
				if !found {
					t.Error("no entity names the operation")
				}
			},
		},
		{
			name:  "anonymous capabilities",
			event: func() Event { return Event{Time: t0, Interaction: "capabilities", Outcome: 200, SourceIP: "::1"} },
			check: func(t *testing.T, d doc) {
				d.eq(t, "action", "R")
				d.eq(t, "entity", nil)
				d.agent(t, "110152").eq(t, "who.display", "unidentified client")
				if n := len(d.list("agent")); n != 2 {
					t.Errorf("%d agents, want client and server", n)
				}
			},
		},
		{
			name: "several patients: no profile, every patient recorded",
			event: func() Event {
				e := base("search-type")
				e.Patient, e.Query = "", "Observation?code=1234-5"
				e.Patients = []string{"Patient/1", "Patient/2", "Patient/1"}
				return e
			},
			check: func(t *testing.T, d doc) {
				d.eq(t, "meta", nil)
				if n := d.count(sysEntityType, "1"); n != 2 {
					t.Errorf("%d patient entities, want 2", n)
				}
			},
		},
		{
			name:  "unknown interaction",
			event: func() Event { e := base("frobnicate"); return e },
			check: func(t *testing.T, d doc) {
				d.eq(t, "subtype", nil)
				d.eq(t, "action", "E")
				d.eq(t, "meta", nil)
			},
		},
	}
	schema := auditEventSchema(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := Build(tt.event(), "ae-1")
			d := parse(t, raw)
			tt.check(t, d)
			validateR4(t, schema, raw)
			checkBALP(t, d)
			if tt.golden {
				golden(t, raw)
			}
		})
	}
}

// BALP PatientQuery: "one AuditEvent is created for every Patient identified
// in the resulting search set".
func TestSplit(t *testing.T) {
	e := base("search-type")
	e.Query = "Patient?name=smith"
	e.Patients = []string{"Patient/123", "Patient/456"}
	e.Proxy = "RelatedPerson/9"
	e.Resources = []string{"Patient/123", "Patient/456/_history/2", "Observation/o1"}
	parts := Split(e)
	if len(parts) != 2 {
		t.Fatalf("%d parts, want 2", len(parts))
	}
	want := []struct {
		patient, proxy string
		resources      []string
	}{
		{"Patient/123", "RelatedPerson/9", []string{"Patient/123", "Observation/o1"}},
		{"", "", []string{"Patient/456/_history/2", "Observation/o1"}},
	}
	for i, p := range parts {
		if p.Patient != want[i].patient || p.Proxy != want[i].proxy || !slices.Equal(p.Resources, want[i].resources) {
			t.Errorf("part %d: patient %q proxy %q resources %v, want %+v", i, p.Patient, p.Proxy, p.Resources, want[i])
		}
		d := parse(t, Build(p, "x"))
		d.eq(t, "meta.profile.0", balpProfile+"PatientQuery")
		checkBALP(t, d)
	}
	if got := Split(base("read")); len(got) != 1 || got[0].Patient != "Patient/123" {
		t.Errorf("single patient: %+v", got)
	}
	if e.Resources[1] != "Patient/456/_history/2" {
		t.Error("Split modified its input")
	}
}

func BenchmarkBuild(b *testing.B) {
	e := base("search-type")
	e.Query = "Observation?patient=Patient/123"
	for i := range 20 {
		e.Resources = append(e.Resources, "Observation/o"+strconv.Itoa(i))
	}
	b.ReportAllocs()
	for b.Loop() {
		Build(e, "id")
	}
}

// checkBALP checks the claimed BALP profile's slices (discriminated by
// type, as in the IG's StructureDefinitions) and fixed values.
func checkBALP(t *testing.T, d doc) {
	t.Helper()
	p, _ := d.get("meta.profile.0").(string)
	if p == "" {
		return
	}
	name := strings.TrimPrefix(p, balpProfile)
	family := strings.TrimPrefix(name, "Patient")
	spec := map[string]struct {
		subtypes       []string
		action         string
		client, server string
		users          []string
	}{
		"Read":   {[]string{"read", "vread"}, "R", "110152", "110153", []string{"IRCP"}},
		"Query":  {[]string{"search", "search-type", "search-system"}, "E", "110153", "110152", []string{"IRCP"}},
		"Create": {[]string{"create"}, "C", "110153", "110152", []string{"AUT", "INF", "CST"}},
		"Update": {[]string{"update", "patch"}, "U", "110153", "110152", []string{"AUT", "INF", "CST"}},
		"Delete": {[]string{"delete"}, "D", "110150", "custodian", []string{"AUT", "INF", "CST"}},
	}[family]
	if spec.action == "" {
		t.Fatalf("unknown profile %s", p)
	}
	d.eq(t, "type.code", "rest")
	if !slices.Contains(spec.subtypes, d.str(t, "subtype.0.code")) {
		t.Errorf("%s: subtype %v", name, d.get("subtype.0.code"))
	}
	d.eq(t, "action", spec.action)
	d.eq(t, "outcome", "0")
	if d.get("recorded") == nil {
		t.Errorf("%s: no recorded", name)
	}
	for _, slice := range []string{spec.client, spec.server} {
		if n := d.agents(slice); n != 1 {
			t.Errorf("%s: %d agents of type %s, want 1", name, n, slice)
			continue
		}
		a := d.agent(t, slice)
		if a.get("who") == nil || a.get("network.address") == nil {
			t.Errorf("%s: agent %s lacks who or network", name, slice)
		}
	}
	users := 0
	for _, u := range spec.users {
		users += d.agents(u)
		if d.agents(u) == 1 {
			a := d.agent(t, u)
			a.eq(t, "requestor", true)
			a.eq(t, "network", nil)
		}
	}
	if users > 1 {
		t.Errorf("%s: %d user agents", name, users)
	}
	systemObjects := d.list("entity")[:0]
	for _, e := range d.list("entity") {
		if e.get("type.system") == sysEntityType && e.get("type.code") == "2" {
			systemObjects = append(systemObjects, e)
		}
	}
	if len(systemObjects) != 1 {
		t.Fatalf("%s: %d System Object entities, want 1 (data or query slice)", name, len(systemObjects))
	}
	if family == "Query" {
		systemObjects[0].eq(t, "role.code", "24")
		systemObjects[0].eq(t, "what", nil)
		if systemObjects[0].get("query") == nil {
			t.Errorf("%s: query slice without query", name)
		}
	} else {
		if systemObjects[0].get("what") == nil {
			t.Errorf("%s: data entity without what", name)
		}
		if r := systemObjects[0].get("role.code"); r != "4" && r != "3" && r != "20" {
			t.Errorf("%s: data role %v not in RestObjectRoles", name, r)
		}
	}
	patients := d.count(sysEntityType, "1")
	if strings.HasPrefix(name, "Patient") {
		if patients != 1 {
			t.Errorf("%s: %d patient entities, want 1", name, patients)
		}
		d.entity(t, sysEntityType, "1").eq(t, "role.code", "1")
		if ref, _ := d.entity(t, sysEntityType, "1").get("what.reference").(string); !strings.HasPrefix(ref, "Patient/") {
			t.Errorf("%s: patient entity is %q", name, ref)
		}
	}
	if d.count(sysBALPEntity, "XrequestId") > 1 {
		t.Errorf("%s: several XrequestId entities", name)
	}
}

// ---- JSON assertions ----

// doc is decoded JSON with dotted-path access ("agent.0.type.coding.0.code").
type doc struct{ v any }

func parse(t *testing.T, raw []byte) doc {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, raw)
	}
	return doc{v}
}

func (d doc) get(path string) any {
	cur := d.v
	for _, k := range strings.Split(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[k]
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

func (d doc) eq(t *testing.T, path string, want any) {
	t.Helper()
	if got := d.get(path); fmt.Sprint(got) != fmt.Sprint(want) || (got == nil) != (want == nil) {
		t.Errorf("%s = %v, want %v", path, got, want)
	}
}

func (d doc) str(t *testing.T, path string) string {
	t.Helper()
	s, ok := d.get(path).(string)
	if !ok {
		t.Errorf("%s is not a string: %v", path, d.get(path))
	}
	return s
}

func (d doc) list(path string) []doc {
	l, _ := d.get(path).([]any)
	out := make([]doc, len(l))
	for i, v := range l {
		out[i] = doc{v}
	}
	return out
}

// agents counts agents with a type coding of that code.
func (d doc) agents(code string) int {
	n := 0
	for _, a := range d.list("agent") {
		if a.get("type.coding.0.code") == code {
			n++
		}
	}
	return n
}

// agent returns the single agent with that type code.
func (d doc) agent(t *testing.T, code string) doc {
	t.Helper()
	for _, a := range d.list("agent") {
		if a.get("type.coding.0.code") == code {
			return a
		}
	}
	t.Fatalf("no agent of type %s", code)
	return doc{}
}

func (d doc) count(system, code string) int {
	n := 0
	for _, e := range d.list("entity") {
		if e.get("type.system") == system && e.get("type.code") == code {
			n++
		}
	}
	return n
}

// entity returns the first entity of that type.
func (d doc) entity(t *testing.T, system, code string) doc {
	t.Helper()
	for _, e := range d.list("entity") {
		if e.get("type.system") == system && e.get("type.code") == code {
			return e
		}
	}
	t.Fatalf("no entity of type %s|%s", system, code)
	return doc{}
}

func golden(t *testing.T, raw []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", strings.ReplaceAll(t.Name(), "/", "_")+".json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./audit -update)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("%s differs from the golden file; got:\n%s", path, pretty.Bytes())
	}
}

// ---- R4 JSON schema (json.html#schema) ----

var (
	schemaOnce sync.Once
	schemaVal  *jsonschema.Schema
	schemaErr  error
)

// auditEventSchema compiles #/definitions/AuditEvent of the official R4
// schema that package fhir/validate embeds (read from its file, so this
// package does not depend on that one). ResourceList is reduced to "an
// object", as fhir/validate does, to avoid compiling all 146 resources.
func auditEventSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	schemaOnce.Do(func() {
		f, err := os.Open(filepath.Join("..", "fhir", "validate", "fhir.schema.json.gz"))
		if err != nil {
			schemaErr = err
			return
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			schemaErr = err
			return
		}
		v, err := jsonschema.UnmarshalJSON(zr)
		if err != nil {
			schemaErr = err
			return
		}
		root := v.(map[string]any)
		delete(root, "oneOf")
		root["definitions"].(map[string]any)["ResourceList"] = map[string]any{"type": "object"}
		const id = "http://hl7.org/fhir/json-schema/4.0"
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft6)
		if schemaErr = c.AddResource(id, root); schemaErr == nil {
			schemaVal, schemaErr = c.Compile(id + "#/definitions/AuditEvent")
		}
	})
	if os.IsNotExist(schemaErr) {
		t.Skipf("R4 schema not found: %v", schemaErr)
	}
	if schemaErr != nil {
		t.Fatal(schemaErr)
	}
	return schemaVal
}

func validateR4(t *testing.T, s *jsonschema.Schema, raw []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("not a valid R4 AuditEvent: %v", err)
	}
	// sev-1: an entity has a name or a query, not both.
	for _, e := range parse(t, raw).list("entity") {
		if e.get("name") != nil && e.get("query") != nil {
			t.Error("sev-1: entity with name and query")
		}
	}
}
