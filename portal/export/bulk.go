package export

import (
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/smart"
)

// Bulk Data Access 2.0 kick-off (export.html#bulk-data-kick-off-request).

// outputFormats are the _outputFormat values accepted; all mean NDJSON.
var outputFormats = map[string]bool{"application/fhir+ndjson": true, "application/ndjson": true, "ndjson": true}

// unsupported are the optional kick-off parameters fhirgate does not
// implement: 400 unless the client sent Prefer: handling=lenient, then
// ignored with a note in the job's error file
// (export.html#query-parameters: "If a server does not support a
// parameter ... it SHALL return an error ... unless handling=lenient").
var unsupported = map[string]bool{"_typeFilter": true, "_elements": true, "includeAssociatedData": true}

func hasPrefer(h http.Header, token string) bool {
	for _, v := range h.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.ReplaceAll(strings.TrimSpace(p), " ", ""), token) {
				return true
			}
		}
	}
	return false
}

// backendOnly refuses callers that are not backend services: Bulk Data
// is for SMART Backend Services (system/ scopes). A user-facing token
// (user/ or patient/ scopes, a fhirUser) is 403: its reach is decided per
// request on a person's behalf, which a job running later must not stretch.
func backendOnly(p *smart.Principal) error {
	if p == nil {
		return nil // authorization disabled
	}
	if p.FHIRUser != "" {
		return fhir.Errorf(fhir.KindForbidden, "$export is for backend services (SMART Backend Services with system/ scopes), not for a user's app (fhirUser %s)", p.FHIRUser)
	}
	n := 0
	for _, sc := range p.Scopes {
		if !sc.IsResource() {
			continue
		}
		if sc.Context != smart.ContextSystem {
			return fhir.Errorf(fhir.KindForbidden, "$export is for backend services: the token carries the %s scope %s; use a token with system/ scopes only", sc.Context, sc.Raw)
		}
		n++
	}
	if n == 0 {
		return smart.InsufficientScope("system/*.rs")
	}
	return nil
}

// canExport reports whether p's scopes let it read and search typ.
func canExport(p *smart.Principal, typ string) bool {
	if p == nil {
		return true
	}
	for _, sc := range p.Scopes {
		if sc.Context == smart.ContextSystem && (sc.Type == "*" || sc.Type == typ) && sc.Perms.Has(smart.PermSearch) {
			return true
		}
	}
	return false
}

func (s *Service) kickOff(ctx context.Context, call server.OperationCall, level string) (*fhir.Response, error) {
	if err := backendOnly(call.Principal); err != nil {
		return nil, err
	}
	req := call.Request
	if !hasPrefer(req.Header, "respond-async") {
		return nil, fhir.Invalid("", "the $export kick-off needs the header Prefer: respond-async (Bulk Data Access, export.html#headers)")
	}
	if acc := req.Header.Get("Accept"); acc != "" && !acceptsFHIRJSON(acc) {
		return nil, fhir.Invalid("", "the $export kick-off takes Accept: application/fhir+json, got %q", acc)
	}
	lenient := hasPrefer(req.Header, "handling=lenient")
	ps, err := fhir.ReadParams(req)
	if err != nil {
		return nil, err
	}
	j := Job{ID: server.NewID(), Status: StatusQueued, Level: level, Format: "application/fhir+ndjson",
		RequestID: req.Header.Get("X-Request-Id"), Owner: OwnerOf(call.Principal), Created: s.cfg.Now()}
	j.Request = strings.TrimRight(s.cfg.BaseURL, "/") + "/" + req.Path
	if len(req.Query) > 0 {
		j.Request += "?" + req.Query.Encode()
	}
	if level == LevelGroup {
		j.Group = call.Resource.ID
	}
	seenFormat, seenSince := false, false
	for _, p := range ps {
		switch p.Name {
		case "_outputFormat":
			if seenFormat {
				return nil, fhir.Invalid("_outputFormat", "_outputFormat may appear only once")
			}
			seenFormat = true
			f := p.Value
			if mt, _, err := mime.ParseMediaType(f); err == nil {
				f = mt
			}
			if !outputFormats[f] {
				return nil, fhir.Invalid("_outputFormat", "_outputFormat %q is not supported; use application/fhir+ndjson", p.Value)
			}
		case "_since":
			if seenSince {
				return nil, fhir.Invalid("_since", "_since may appear only once")
			}
			seenSince = true
			t, err := time.Parse(time.RFC3339Nano, p.Value)
			if err != nil {
				return nil, fhir.Invalid("_since", "_since must be an instant with a time zone (e.g. 2026-01-01T00:00:00Z), got %q", p.Value)
			}
			j.Since = t
		case "_type":
			for _, t := range strings.Split(p.Value, ",") {
				t = strings.TrimSpace(t)
				if t == "" {
					continue
				}
				if !s.cfg.Registry.IsResourceType(t) {
					return nil, fhir.Invalid("_type", "unknown resource type %q", t)
				}
				if level != LevelSystem && search.PatientFree[t] {
					return nil, fhir.Invalid("_type", "%s holds no patient data: a %s-level export covers the patients' compartments; use the system-level $export", t, level)
				}
				if !canExport(call.Principal, t) {
					return nil, fhir.Errorf(fhir.KindForbidden, "the client's scopes do not allow exporting %s (system/%s.rs)", t, t)
				}
				if !slices.Contains(j.Types, t) {
					j.Types = append(j.Types, t)
				}
			}
		case "patient":
			if level == LevelSystem {
				return nil, fhir.Invalid("patient", "the patient parameter applies to the Patient and Group levels only")
			}
			for _, r := range strings.Split(p.Value, ",") {
				r = strings.TrimSpace(r)
				id, ok := strings.CutPrefix(r, "Patient/")
				if !ok || !fhir.ValidID(id) {
					return nil, fhir.Invalid("patient", "patient must reference a Patient (Patient/[id]), got %q", r)
				}
				if !slices.Contains(j.Patients, r) {
					j.Patients = append(j.Patients, r)
				}
			}
		default:
			if unsupported[p.Name] || strings.HasPrefix(p.Name, "_") {
				if !lenient {
					return nil, fhir.Invalid(p.Name, "the $export parameter %s is not supported (send Prefer: handling=lenient to have it ignored)", p.Name)
				}
				j.Notes = append(j.Notes, "the parameter "+p.Name+" is not supported and was ignored (Prefer: handling=lenient)")
				continue
			}
			return nil, fhir.Invalid(p.Name, "unknown $export parameter %s", p.Name)
		}
	}
	if err := s.admit(ctx, j.Owner); err != nil {
		return nil, err
	}
	if err := s.cfg.Storage.Create(ctx, j); err != nil {
		return nil, err
	}
	s.enqueue(j.ID)
	status := s.statusURL(j.ID)
	oo, _ := json.Marshal(fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: []fhir.Issue{{Severity: "information", Code: "informational",
		Diagnostics: "export job " + j.ID + " accepted; poll " + status}}})
	h := http.Header{}
	h.Set("Content-Location", status)
	return &fhir.Response{Status: http.StatusAccepted, Header: h, Body: oo}, nil
}

// admit bounds the unfinished jobs of one client (429 beyond MaxQueued).
func (s *Service) admit(ctx context.Context, o Owner) error {
	jobs, err := s.cfg.Storage.List(ctx)
	if err != nil {
		return err
	}
	n := 0
	for _, j := range jobs {
		if j.Owner == o && (j.Status == StatusQueued || j.Status == StatusRunning) {
			n++
		}
	}
	if n >= s.cfg.MaxQueued {
		e := fhir.Errorf(fhir.KindTooManyRequests, "this client has %d exports under way (at most %d); wait for one to finish or cancel one", n, s.cfg.MaxQueued)
		e.Header = map[string]string{"Retry-After": "60"}
		return e
	}
	return nil
}

func (s *Service) statusURL(id string) string {
	return strings.TrimRight(s.cfg.Origin, "/") + PathPrefix + "/jobs/" + id
}

func (s *Service) fileURL(id, name string) string {
	return s.statusURL(id) + "/files/" + name
}

func acceptsFHIRJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/fhir+json", "application/json", "*/*", "application/*":
			return true
		}
	}
	return false
}
