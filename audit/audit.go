// Package audit records every access to fhirgate as a FHIR R4 AuditEvent
// (auditevent.html) shaped after IHE Basic Audit Log Patterns (BALP,
// https://profiles.ihe.net/ITI/BALP/), so that a patient can see who looked
// at their record: AuditEvent?patient=Patient/123 finds every event whose
// entity names that patient.
//
// Build turns one Event into AuditEvent JSON. Logger takes events off the
// request path: a bounded queue, a writer goroutine that hands batches to a
// Sink with retry, and back-pressure instead of silent drops.
package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is one audited interaction, as the request pipeline saw it.
type Event struct {
	// ID is the AuditEvent's id; Logger.Log fills it (random, 32 hex
	// digits) when empty, so a retried batch writes the same ids again.
	ID   string
	Time time.Time // when the interaction happened (zero: Logger.Log fills it)
	// Interaction is the restful-interaction code (codesystem-restful-interaction):
	// read vread search history create update patch delete operation batch
	// transaction capabilities, or a finer code such as search-type,
	// search-system, history-instance, history-type, history-system.
	Interaction string
	Operation   string // for Interaction "operation": its name, e.g. "$release"
	Outcome     int    // HTTP status of the response
	OutcomeText string // failure reason (the OperationOutcome's diagnostics)

	UserFHIR    string // fhirUser claim, e.g. "Practitioner/1"; "" if none
	UserSubject string // "sub" of the access token
	UserIssuer  string // "iss" of the access token
	ClientID    string // OAuth client_id of the app

	Patient string // "Patient/123" the user acted for (launch context); "" unknown
	Proxy   string // "RelatedPerson/9" when a proxy acted for Patient

	Resources []string // "Type/id" or "Type/id/_history/n" touched or returned
	Patients  []string // every patient whose data was returned or touched

	// Query is the raw search request (for searches, history and operations),
	// ideally as sent relative to the base, e.g. "Observation?code=1234-5";
	// it is recorded base64-encoded, unmodified (BALP Query).
	Query     string
	SourceIP  string // client network address
	UserAgent string // User-Agent header
	RequestID string // X-Request-Id
	Server    string // base URL of this server (the observer)

	// HeldUntilPatient / HeldUntilProxy are the latest release instants of
	// the resources named (zero: all released). Not rendered: the sink
	// gives the AuditEvent this release state, so a patient's audit view
	// does not reveal a held resource before it is released.
	HeldUntilPatient, HeldUntilProxy time.Time

	// Labels are the security labels ("system|code") of the resources the
	// event names: the event carries them in meta.security, so an event
	// about a sensitive resource is withheld from whoever the resource is.
	Labels []string

	// Seq orders the event's request among the server's requests (a
	// $hold makes the writer re-check events of requests that began before
	// it ended).
	Seq int64

	flush chan struct{} // a Flush barrier, not an event
}

// Code systems and profiles (R4 terminology, DICOM, IHE BALP).
const (
	sysEventType     = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	sysInteraction   = "http://hl7.org/fhir/restful-interaction"
	sysDCM           = "http://dicom.nema.org/resources/ontology/DCM"
	sysParticipation = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	sysProvenance    = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
	sysSCT           = "http://snomed.info/sct"
	sysSourceType    = "http://terminology.hl7.org/CodeSystem/security-source-type"
	sysEntityType    = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	sysObjectRole    = "http://terminology.hl7.org/CodeSystem/object-role"
	sysResourceType  = "http://hl7.org/fhir/resource-types"
	sysBALPEntity    = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
	balpProfile      = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."

	// defaultServer names the observer when Event.Server is empty.
	defaultServer = "fhirgate"
)

var (
	roleSource      = coding{sysDCM, "110153", "Source Role ID"}
	roleDestination = coding{sysDCM, "110152", "Destination Role ID"}
	roleApplication = coding{sysDCM, "110150", "Application"}
	roleCustodian   = coding{sysProvenance, "custodian", "Custodian"}
	roleRecipient   = coding{sysParticipation, "IRCP", "information recipient"}
	roleAuthor      = coding{sysParticipation, "AUT", "author (originator)"}
	// BALP uses SNOMED CT "Patient advocate" for whoever represents the
	// patient (PrivacyDisclosure authorizer); a proxy is exactly that.
	roleAdvocate = coding{sysSCT, "429577009", "Patient advocate"}

	entitySystemObject = coding{sysEntityType, "2", "System Object"}
	entityPerson       = coding{sysEntityType, "1", "Person"}
	entityRequestID    = coding{sysBALPEntity, "XrequestId", "transport specific unique identifier where http X-Request-Id is used"}
	objectPatient      = coding{sysObjectRole, "1", "Patient"}
	objectResource     = coding{sysObjectRole, "4", "Domain Resource"}
	objectQuery        = coding{sysObjectRole, "24", "Query"}
)

// interactions maps restful-interaction codes to AuditEvent.action
// (valueset-audit-event-action) and the BALP profile family they belong to.
var interactions = map[string]struct{ action, profile string }{
	"read":             {"R", "Read"},
	"vread":            {"R", "Read"},
	"history":          {"R", ""},
	"history-instance": {"R", ""},
	"history-type":     {"R", ""},
	"history-system":   {"R", ""},
	"capabilities":     {"R", ""},
	"search":           {"E", "Query"},
	"search-type":      {"E", "Query"},
	"search-system":    {"E", "Query"},
	"create":           {"C", "Create"},
	"update":           {"U", "Update"},
	"patch":            {"U", "Update"},
	"delete":           {"D", "Delete"},
	"operation":        {"E", ""},
	"batch":            {"E", ""},
	"transaction":      {"E", ""},
}

// Build returns the AuditEvent JSON for e with the given id ("" for none).
//
// Shape (BALP RESTful patterns, server side, with the OAuth token pattern):
//   - type rest; subtype the restful-interaction code; action C/R/U/D/E;
//     outcome 0 (status < 400), 4 (4xx) or 8 (5xx) with outcomeDesc.
//   - agent: the user (IRCP for reads and searches, AUT for writes; who =
//     fhirUser reference plus identifier {iss, sub}; requestor); the client
//     as DICOM Source/Destination Role ID by data direction (Application for
//     delete) with its network address; the OAuth app (110150, client_id);
//     a proxy as Patient advocate (requestor); the server (Role ID, or
//     Custodian for delete) with its base URL.
//   - source: observer = the server, type 4 Application Server.
//   - entity: each resource (System Object, Domain Resource; results of a
//     search are typed by resource type instead, because BALP Query treats
//     every System Object entity as the query), each patient (Person,
//     Patient), the query (System Object, Query, base64), the operation
//     name, the X-Request-Id (BALP XrequestId).
//
// meta.profile names the BALP profile only when the event satisfies it:
// a success with the client's address known, exactly one resource (read,
// create, update, delete) or a query (search), and at most one patient.
func Build(e Event, id string) []byte {
	raw, _ := build(e, id, time.Time{})
	return raw
}

// BuildVersion is Build of version 1 of AuditEvent id, last updated at
// lastUpdated (meta.versionId and meta.lastUpdated set, as the server
// stamps every version), and the same resource decoded (the values
// fhir.ParseJSON gives), so the writer indexes it without parsing its own
// JSON.
func BuildVersion(e Event, id string, lastUpdated time.Time) ([]byte, map[string]any) {
	return build(e, id, lastUpdated)
}

func build(e Event, id string, lastUpdated time.Time) ([]byte, map[string]any) {
	raw, ae := buildEvent(e, id, lastUpdated)
	if lastUpdated.IsZero() {
		return raw, nil
	}
	return raw, ae.tree()
}

// buildEvent is the AuditEvent of e and its JSON (Build's when lastUpdated
// is zero; with meta.versionId and meta.lastUpdated otherwise).
func buildEvent(e Event, id string, lastUpdated time.Time) ([]byte, *auditEvent) {
	e = validStrings(e)
	in, known := interactions[e.Interaction]
	if !known {
		in.action = "E"
	}
	server := e.Server
	if server == "" {
		server = defaultServer
	}
	ae := auditEvent{
		ResourceType: "AuditEvent",
		ID:           id,
		Type:         coding{sysEventType, "rest", "Restful Operation"},
		Action:       in.action,
		Recorded:     e.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Outcome:      outcome(e.Outcome),
		Source: source{
			Observer: reference{Display: server},
			Type:     []coding{{sysSourceType, "4", "Application Server"}},
		},
	}
	if known {
		ae.Subtype = []coding{{sysInteraction, e.Interaction, e.Interaction}}
	}
	if ae.Outcome != "0" {
		ae.OutcomeDesc = e.OutcomeText
		if ae.OutcomeDesc == "" {
			ae.OutcomeDesc = http.StatusText(e.Outcome)
		}
	}

	// Agents. DICOM/IHE name the initiator of a query or write the Source
	// and the responder the Destination; for reads the data flows the
	// other way (BALP Read). BALP Delete uses Application and Custodian.
	clientRole, serverRole, userRole := roleSource, roleDestination, roleRecipient
	switch in.action {
	case "R":
		clientRole, serverRole = roleDestination, roleSource
	case "D":
		clientRole, serverRole = roleApplication, roleCustodian
	}
	if in.action == "C" || in.action == "U" || in.action == "D" {
		userRole = roleAuthor
	}
	var net *network
	if e.SourceIP != "" {
		net = &network{Address: e.SourceIP, Type: "2"} // IP Address
	}
	if e.UserFHIR != "" || e.UserSubject != "" {
		who := &reference{Reference: e.UserFHIR}
		if e.UserSubject != "" {
			who.Identifier = &identifier{System: e.UserIssuer, Value: e.UserSubject}
		}
		ae.Agent = append(ae.Agent, agent{Type: concept(userRole), Who: who, Requestor: true})
	}
	if e.Proxy != "" {
		ae.Agent = append(ae.Agent, agent{Type: concept(roleAdvocate), Who: &reference{Reference: e.Proxy}, Requestor: true})
	}
	client := agent{Type: concept(clientRole), Who: &reference{Display: "unidentified client"}, Name: e.UserAgent, Network: net}
	if e.ClientID != "" {
		client.Who = &reference{Identifier: &identifier{Value: e.ClientID}}
	}
	ae.Agent = append(ae.Agent, client)
	if e.ClientID != "" && clientRole != roleApplication {
		// BALP OAuth pattern: the app named by client_id.
		ae.Agent = append(ae.Agent, agent{Type: concept(roleApplication), Who: client.Who, Network: net})
	}
	srv := agent{Type: concept(serverRole), Who: &reference{Display: server}}
	if strings.Contains(server, "://") {
		srv.Network = &network{Address: server, Type: "5"} // URI
	}
	ae.Agent = append(ae.Agent, srv)

	// Entities.
	search := in.profile == "Query"
	for _, r := range dedupe(e.Resources) {
		ent := entity{What: &reference{Reference: r}, Type: entitySystemObject, Role: &objectResource}
		if search {
			typ, _, _ := strings.Cut(r, "/")
			ent.Type = coding{sysResourceType, typ, typ}
		}
		ae.Entity = append(ae.Entity, ent)
	}
	patients := allPatients(e)
	for _, p := range patients {
		ae.Entity = append(ae.Entity, entity{What: &reference{Reference: p}, Type: entityPerson, Role: &objectPatient})
	}
	withQuery := search || strings.HasPrefix(e.Interaction, "history") || e.Interaction == "operation"
	if e.Query != "" && withQuery {
		ae.Entity = append(ae.Entity, entity{Type: entitySystemObject, Role: &objectQuery,
			Query: base64.StdEncoding.EncodeToString([]byte(e.Query))})
	}
	if e.Operation != "" {
		ae.Entity = append(ae.Entity, entity{Type: entitySystemObject, Name: e.Operation, Description: "operation"})
	}
	if e.RequestID != "" {
		ae.Entity = append(ae.Entity, entity{Type: entityRequestID, What: &reference{Identifier: &identifier{Value: e.RequestID}}})
	}

	if p := profile(in.profile, e, len(patients)); p != "" {
		ae.Meta = &meta{Profile: []string{balpProfile + p}}
	}
	if labels := dedupe(e.Labels); len(labels) > 0 {
		if ae.Meta == nil {
			ae.Meta = &meta{}
		}
		for _, l := range labels {
			sys, code, ok := strings.Cut(l, "|")
			if !ok || code == "" {
				continue
			}
			ae.Meta.Security = append(ae.Meta.Security, coding{System: sys, Code: code})
		}
	}
	if !lastUpdated.IsZero() {
		if ae.Meta == nil {
			ae.Meta = &meta{}
		}
		ae.Meta.VersionID = "1"
		ae.Meta.LastUpdated = lastUpdated.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	if lastUpdated.IsZero() {
		return encodeJSON(ae), &ae
	}
	return ae.appendJSON(make([]byte, 0, 2048)), &ae
}

// encodeJSON is ae as encoding/json writes it (HTML characters unescaped):
// Build's JSON, and the reference appendJSON is tested against.
func encodeJSON(ae auditEvent) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(ae) // cannot fail: plain strings, slices and structs
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// validStrings is e with invalid UTF-8 in its strings (headers such as
// User-Agent carry what clients send) replaced byte by byte with U+FFFD, as
// a JSON encoder writes it, so the recorded JSON and its decoded form agree.
// Query stays as sent: it is recorded base64-encoded.
func validStrings(e Event) Event {
	fix := func(s *string) {
		if !utf8.ValidString(*s) {
			var b strings.Builder
			for i := 0; i < len(*s); {
				r, n := utf8.DecodeRuneInString((*s)[i:])
				b.WriteRune(r) // RuneError for an invalid byte
				i += n
			}
			*s = b.String()
		}
	}
	for _, f := range []*string{&e.Interaction, &e.Operation, &e.OutcomeText, &e.UserFHIR, &e.UserSubject,
		&e.UserIssuer, &e.ClientID, &e.Patient, &e.Proxy, &e.SourceIP, &e.UserAgent, &e.RequestID, &e.Server} {
		fix(f)
	}
	for _, list := range []*[]string{&e.Resources, &e.Patients} {
		for i, s := range *list {
			if !utf8.ValidString(s) {
				fixed := slices.Clone(*list)
				for j := i; j < len(fixed); j++ {
					fix(&fixed[j])
				}
				*list = fixed
				break
			}
		}
	}
	return e
}

// Split returns e as one event per patient, as BALP PatientQuery requires
// ("one AuditEvent is created for every Patient identified in the resulting
// search set"), so a patient reading their audit trail does not learn about
// other patients. Patient resources of the other patients are left out;
// Event carries no resource-to-patient map, so other resources stay in
// every part. An event with at most one patient is returned unchanged.
func Split(e Event) []Event {
	patients := allPatients(e)
	if len(patients) <= 1 {
		return []Event{e}
	}
	out := make([]Event, 0, len(patients))
	for _, p := range patients {
		part := e
		part.Patients = []string{p}
		if e.Patient != p {
			part.Patient = ""
			part.Proxy = "" // the proxy acted for e.Patient, not p
		}
		part.Resources = nil
		for _, r := range e.Resources {
			if strings.HasPrefix(r, "Patient/") && !isPatient(r, p) {
				continue
			}
			part.Resources = append(part.Resources, r)
		}
		out = append(out, part)
	}
	return out
}

// isPatient reports whether resource reference r ("Patient/1" or
// "Patient/1/_history/2") is patient p ("Patient/1").
func isPatient(r, p string) bool {
	return r == p || strings.HasPrefix(r, p+"/_history/")
}

// allPatients is Patient followed by Patients, without duplicates.
func allPatients(e Event) []string {
	if e.Patient == "" {
		return dedupe(e.Patients)
	}
	return dedupe(append([]string{e.Patient}, e.Patients...))
}

// dedupe drops empty and repeated strings, keeping the first occurrence.
func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// outcome maps an HTTP status to audit-event-outcome: 0 success, 4 minor
// failure (the request was refused or wrong), 8 serious failure (the server
// failed).
func outcome(status int) string {
	switch {
	case status >= 500:
		return "8"
	case status >= 400:
		return "4"
	}
	return "0"
}

// profile names the BALP profile e conforms to, or "". BALP profiles
// describe successful interactions; each needs the client's network
// address; Read/Create/Update/Delete have exactly one data entity and Query
// one query entity; the Patient* variants have exactly one patient.
func profile(family string, e Event, patients int) string {
	if family == "" || outcome(e.Outcome) != "0" || e.SourceIP == "" || patients > 1 {
		return ""
	}
	if family == "Query" {
		if e.Query == "" {
			return ""
		}
	} else if len(dedupe(e.Resources)) != 1 {
		return ""
	}
	if patients == 1 {
		return "Patient" + family
	}
	return family
}

// JSON shapes of the AuditEvent elements used (R4 auditevent.html).
type (
	auditEvent struct {
		ResourceType string   `json:"resourceType"`
		ID           string   `json:"id,omitempty"`
		Meta         *meta    `json:"meta,omitempty"`
		Type         coding   `json:"type"`
		Subtype      []coding `json:"subtype,omitempty"`
		Action       string   `json:"action"`
		Recorded     string   `json:"recorded"`
		Outcome      string   `json:"outcome"`
		OutcomeDesc  string   `json:"outcomeDesc,omitempty"`
		Agent        []agent  `json:"agent"`
		Source       source   `json:"source"`
		Entity       []entity `json:"entity,omitempty"`
	}
	meta struct {
		Profile     []string `json:"profile,omitempty"`
		Security    []coding `json:"security,omitempty"`
		VersionID   string   `json:"versionId,omitempty"`
		LastUpdated string   `json:"lastUpdated,omitempty"`
	}
	coding struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display,omitempty"`
	}
	codeableConcept struct {
		Coding []coding `json:"coding"`
	}
	identifier struct {
		System string `json:"system,omitempty"`
		Value  string `json:"value"`
	}
	reference struct {
		Reference  string      `json:"reference,omitempty"`
		Identifier *identifier `json:"identifier,omitempty"`
		Display    string      `json:"display,omitempty"`
	}
	network struct {
		Address string `json:"address"`
		Type    string `json:"type"` // network-type: 2 IP Address, 5 URI
	}
	agent struct {
		Type      *codeableConcept `json:"type"`
		Who       *reference       `json:"who"`
		Name      string           `json:"name,omitempty"`
		Requestor bool             `json:"requestor"`
		Network   *network         `json:"network,omitempty"`
	}
	source struct {
		Observer reference `json:"observer"`
		Type     []coding  `json:"type"`
	}
	entity struct {
		What        *reference `json:"what,omitempty"`
		Type        coding     `json:"type"`
		Role        *coding    `json:"role,omitempty"`
		Name        string     `json:"name,omitempty"`
		Description string     `json:"description,omitempty"`
		Query       string     `json:"query,omitempty"`
	}
)

func concept(c coding) *codeableConcept { return &codeableConcept{Coding: []coding{c}} }

// The decoded form of the same shapes: what decoding their JSON gives
// (TestBuildVersionTree checks it against fhir.ParseJSON).

// tree sets key to v in m unless v is empty (omitempty).
func put(m map[string]any, key, v string) {
	if v != "" {
		m[key] = v
	}
}

func (a *auditEvent) tree() map[string]any {
	m := map[string]any{"resourceType": a.ResourceType, "type": a.Type.tree(), "action": a.Action,
		"recorded": a.Recorded, "outcome": a.Outcome, "source": a.Source.tree()}
	put(m, "id", a.ID)
	put(m, "outcomeDesc", a.OutcomeDesc)
	if a.Meta != nil {
		mt := map[string]any{}
		if len(a.Meta.Profile) > 0 {
			ps := make([]any, len(a.Meta.Profile))
			for i, p := range a.Meta.Profile {
				ps[i] = p
			}
			mt["profile"] = ps
		}
		if len(a.Meta.Security) > 0 {
			mt["security"] = codings(a.Meta.Security)
		}
		put(mt, "versionId", a.Meta.VersionID)
		put(mt, "lastUpdated", a.Meta.LastUpdated)
		m["meta"] = mt
	}
	if len(a.Subtype) > 0 {
		m["subtype"] = codings(a.Subtype)
	}
	if a.Agent == nil {
		m["agent"] = nil
	} else {
		ag := make([]any, len(a.Agent))
		for i := range a.Agent {
			ag[i] = a.Agent[i].tree()
		}
		m["agent"] = ag
	}
	if len(a.Entity) > 0 {
		en := make([]any, len(a.Entity))
		for i := range a.Entity {
			en[i] = a.Entity[i].tree()
		}
		m["entity"] = en
	}
	return m
}

func codings(cs []coding) any {
	if cs == nil {
		return nil
	}
	out := make([]any, len(cs))
	for i := range cs {
		out[i] = cs[i].tree()
	}
	return out
}

func (c *coding) tree() map[string]any {
	m := map[string]any{"system": c.System, "code": c.Code}
	put(m, "display", c.Display)
	return m
}

func (r *reference) tree() any {
	if r == nil {
		return nil
	}
	m := map[string]any{}
	put(m, "reference", r.Reference)
	if r.Identifier != nil {
		id := map[string]any{"value": r.Identifier.Value}
		put(id, "system", r.Identifier.System)
		m["identifier"] = id
	}
	put(m, "display", r.Display)
	return m
}

func (a *agent) tree() map[string]any {
	m := map[string]any{"who": a.Who.tree(), "requestor": a.Requestor}
	if a.Type == nil {
		m["type"] = nil
	} else {
		m["type"] = map[string]any{"coding": codings(a.Type.Coding)}
	}
	put(m, "name", a.Name)
	if a.Network != nil {
		m["network"] = map[string]any{"address": a.Network.Address, "type": a.Network.Type}
	}
	return m
}

func (s *source) tree() map[string]any {
	return map[string]any{"observer": s.Observer.tree(), "type": codings(s.Type)}
}

func (e *entity) tree() map[string]any {
	m := map[string]any{"type": e.Type.tree()}
	if e.What != nil {
		m["what"] = e.What.tree()
	}
	if e.Role != nil {
		m["role"] = e.Role.tree()
	}
	put(m, "name", e.Name)
	put(m, "description", e.Description)
	put(m, "query", e.Query)
	return m
}
