package export

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/smart"
)

// The status and file endpoints (export.html#bulk-data-status-request,
// #bulk-data-delete-request, #bulk-data-output-file-request), outside
// /fhir at /bulk:
//
//	GET    /bulk/jobs/{id}               202 + X-Progress, Retry-After | 200 manifest | 500 OperationOutcome
//	DELETE /bulk/jobs/{id}               202: cancelled, files removed
//	GET    /bulk/jobs/{id}/files/{name}  200 application/fhir+ndjson
//
// Each needs a bearer token of the client that kicked the job off (same
// issuer, client id and subject): another client's job is 404, exactly as
// a missing one.

// manifest is the complete-status body (export.html#response---complete-status).
type manifest struct {
	TransactionTime     string         `json:"transactionTime"`
	Request             string         `json:"request"`
	RequiresAccessToken bool           `json:"requiresAccessToken"`
	Output              []manifestFile `json:"output"`
	Error               []manifestFile `json:"error"`
}

type manifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int64  `json:"count,omitempty"`
}

func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, PathPrefix+"/jobs/")
	parts := strings.Split(rest, "/")
	if !ok || parts[0] == "" || !fhir.ValidID(parts[0]) {
		writeError(w, fhir.Errorf(fhir.KindNotFound, "no export endpoint at %s", r.URL.Path))
		return
	}
	id := parts[0]
	p, err := s.authenticate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	// The same client's user-facing token (patient/ or user/ scopes, a
	// fhirUser) is no backend service: it may not read, download or
	// cancel what the backend exported (the kick-off's rule, backendOnly),
	// whichever job it names (no answer depends on the job).
	if err := backendOnly(p); err != nil {
		writeError(w, err)
		return
	}
	j, err := s.owned(r, id, p)
	if err != nil {
		writeError(w, err)
		return
	}
	switch {
	case len(parts) == 1 && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.status(w, r, j)
	case len(parts) == 1 && r.Method == http.MethodDelete:
		s.delete(w, r, j, p)
	case len(parts) == 3 && parts[1] == "files" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.file(w, r, j, parts[2], p)
	case len(parts) == 1 || len(parts) == 3 && parts[1] == "files":
		w.Header().Set("Allow", "GET, HEAD, DELETE")
		writeError(w, fhir.Errorf(fhir.KindNotAllowed, "method %s is not allowed here", r.Method))
	default:
		writeError(w, fhir.Errorf(fhir.KindNotFound, "no export endpoint at %s", r.URL.Path))
	}
}

func (s *Service) authenticate(r *http.Request) (*smart.Principal, error) {
	if s.cfg.Verifier == nil {
		return nil, nil // authorization disabled
	}
	a := r.Header.Get("Authorization")
	if len(a) <= 7 || !strings.EqualFold(a[:7], "bearer ") || strings.TrimSpace(a[7:]) == "" {
		return nil, smart.MissingToken()
	}
	return s.cfg.Verifier.Verify(r.Context(), strings.TrimSpace(a[7:]))
}

// owned reads the job if p owns it; otherwise 404.
func (s *Service) owned(r *http.Request, id string, p *smart.Principal) (Job, error) {
	j, err := s.cfg.Storage.Get(r.Context(), id)
	if errors.Is(err, ErrNotFound) || err == nil && !j.Owner.Is(p) {
		return Job{}, fhir.Errorf(fhir.KindNotFound, "export job %s is not known (it may have expired or been cancelled)", id)
	}
	return j, err
}

func (s *Service) status(w http.ResponseWriter, r *http.Request, j Job) {
	switch j.Status {
	case StatusQueued, StatusRunning:
		p, ok := s.progress(j.ID)
		if !ok || p == "" {
			p = j.Status
		}
		w.Header().Set("X-Progress", p)
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(s.cfg.RetryAfter.Seconds()))))
		w.WriteHeader(http.StatusAccepted)
	case StatusFailed:
		writeError(w, fhir.Errorf(fhir.KindInternal, "the export failed: %s", j.Error))
	default:
		m := manifest{TransactionTime: j.TransactionTime.UTC().Format("2006-01-02T15:04:05.000Z07:00"), Request: j.Request,
			RequiresAccessToken: s.cfg.Verifier != nil, Output: []manifestFile{}, Error: []manifestFile{}}
		for _, f := range j.Output {
			m.Output = append(m.Output, manifestFile{Type: f.Type, URL: s.fileURL(j.ID, f.Name), Count: f.Count})
		}
		for _, f := range j.Errors {
			m.Error = append(m.Error, manifestFile{Type: f.Type, URL: s.fileURL(j.ID, f.Name), Count: f.Count})
		}
		b, _ := json.Marshal(m)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Expires", j.Expires.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(b)
		}
	}
}

func (s *Service) delete(w http.ResponseWriter, r *http.Request, j Job, p *smart.Principal) {
	if err := s.cfg.Storage.Delete(r.Context(), j.ID); err != nil {
		writeError(w, err)
		return
	}
	if !s.cancel(j.ID) {
		_ = os.RemoveAll(s.jobDir(j.ID)) // a running job's worker removes them when it stops
	}
	s.auditEvent(r.Context(), r, p, audit.Event{Operation: "$export-cancel", Outcome: http.StatusAccepted, Query: "job=" + j.ID})
	oo, _ := json.Marshal(fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: []fhir.Issue{{Severity: "information", Code: "informational",
		Diagnostics: "export job " + j.ID + " cancelled; its files are deleted"}}})
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(oo)
}

func (s *Service) file(w http.ResponseWriter, r *http.Request, j Job, name string, p *smart.Principal) {
	var f *File
	for _, list := range [][]File{j.Output, j.Errors} {
		for i := range list {
			if list[i].Name == name {
				f = &list[i]
			}
		}
	}
	if j.Status != StatusComplete || f == nil {
		writeError(w, fhir.Errorf(fhir.KindNotFound, "export job %s has no file %s", j.ID, name))
		return
	}
	fh, err := os.Open(filepath.Join(s.jobDir(j.ID), f.Name))
	if err != nil {
		s.cfg.Logger.Error("export: file missing", "job", j.ID, "file", name, "err", err)
		writeError(w, fhir.Errorf(fhir.KindNotFound, "export job %s has no file %s", j.ID, name))
		return
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		writeError(w, err)
		return
	}
	if r.Method == http.MethodGet {
		// One AuditEvent per download: which job and file, how many
		// resources of which type, the client (BALP Export is the shape;
		// the resources are not listed one by one).
		s.auditEvent(r.Context(), r, p, audit.Event{Operation: "$export-download", Outcome: http.StatusOK,
			Query:     "job=" + j.ID + "&file=" + f.Name + "&type=" + f.Type + "&count=" + strconv.FormatInt(f.Count, 10) + "&kickoff=" + j.RequestID,
			Resources: groupRef(j)})
	}
	w.Header().Set("Content-Type", "application/fhir+ndjson")
	http.ServeContent(w, r, "", fi.ModTime(), fh) // Range requests: resumable downloads
}

func groupRef(j Job) []string {
	if j.Group != "" {
		return []string{"Group/" + j.Group}
	}
	return nil
}

func writeError(w http.ResponseWriter, err error) {
	status, oo := fhir.Outcome(err)
	for k, v := range fhir.AsError(err).Header {
		w.Header().Set(k, v)
	}
	b, _ := json.Marshal(oo)
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
