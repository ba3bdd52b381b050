package export

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/audit"
	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// runJob runs one queued job to its end: complete, failed, cancelled
// (deleted meanwhile) or interrupted by Close (left running, run again at
// the next start).
func (s *Service) runJob(id string) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	j, err := s.cfg.Storage.Get(ctx, id)
	if err != nil || j.Status != StatusQueued {
		return // cancelled while queued, or finished already
	}
	s.mu.Lock()
	s.running[id] = &run{cancel: cancel, progress: "starting"}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
	}()
	now := s.cfg.Now()
	j.Status, j.Started, j.TransactionTime, j.Attempts = StatusRunning, now, now.UTC().Truncate(time.Millisecond), j.Attempts+1
	j.Output, j.Errors, j.Error = nil, nil, ""
	if err := s.cfg.Storage.Put(ctx, j); err != nil {
		return // deleted (cancelled) meanwhile
	}
	dir := s.jobDir(id)
	_ = os.RemoveAll(dir) // a previous attempt's partial files
	err = s.export(ctx, &j, dir)
	switch {
	case s.ctx.Err() != nil:
		// Shutting down: the job stays running in Storage and runs again
		// at the next start; its partial files are removed then.
		return
	case ctx.Err() != nil:
		// Cancelled (DELETE): the record is gone already.
		_ = os.RemoveAll(dir)
		return
	}
	if err != nil {
		_ = os.RemoveAll(dir)
	}
	s.finish(context.WithoutCancel(ctx), &j, err)
}

// finish records a job's end: the files and the error file on success,
// the reason on failure; both expire after TTL.
func (s *Service) finish(ctx context.Context, j *Job, err error) {
	now := s.cfg.Now()
	j.Finished, j.Expires = now, now.Add(s.cfg.TTL)
	if err != nil {
		j.Status, j.Error, j.Output = StatusFailed, errorText(err), nil
		s.cfg.Logger.Warn("export: job failed", "job", j.ID, "err", err)
	} else {
		j.Status = StatusComplete
		if len(j.Notes) > 0 {
			if f, err := s.writeNotes(j); err == nil {
				j.Errors = []File{f}
			} else {
				s.cfg.Logger.Error("export: error file not written", "job", j.ID, "err", err)
			}
		}
		s.cfg.Logger.Info("export: job complete", "job", j.ID, "files", len(j.Output))
		s.auditExported(ctx, j)
	}
	if perr := s.cfg.Storage.Put(ctx, *j); errors.Is(perr, ErrNotFound) {
		_ = os.RemoveAll(s.jobDir(j.ID)) // cancelled as it finished
	} else if perr != nil {
		s.cfg.Logger.Error("export: job state not saved", "job", j.ID, "err", perr)
	}
}

// auditExported records one AuditEvent per patient whose data the
// completed job exported (IHE BALP: one event per patient), naming the
// job, so a patient's own audit view shows that a client exported their
// record; the file downloads are audited as they happen.
func (s *Service) auditExported(ctx context.Context, j *Job) {
	if s.cfg.Audit == nil || len(j.exported) == 0 {
		return
	}
	patients := make([]string, 0, len(j.exported))
	for p := range j.exported {
		patients = append(patients, p)
	}
	slices.Sort(patients)
	o := j.Owner
	for _, p := range patients {
		e := audit.Event{Interaction: "operation", Operation: "$export", Outcome: http.StatusOK, Time: s.cfg.Now(), Server: s.cfg.BaseURL,
			UserFHIR: o.FHIRUser, UserSubject: o.Subject, UserIssuer: o.Issuer, ClientID: o.ClientID,
			Resources: []string{p}, Patients: []string{p}, Query: "job=" + j.ID, RequestID: j.RequestID}
		if err := s.cfg.Audit.Log(ctx, e); err != nil {
			s.cfg.Logger.ErrorContext(ctx, "export: audit event not queued", "job", j.ID, "err", err)
			return
		}
	}
}

// errorText is what a client may see of a failure: a FHIR error's
// diagnostics, never an internal error's detail (that is logged).
func errorText(err error) string {
	var fe *fhir.Error
	if errors.As(err, &fe) && fe.Kind != fhir.KindInternal {
		_, oo := fhir.Outcome(err)
		if len(oo.Issue) > 0 && oo.Issue[0].Diagnostics != "" {
			return oo.Issue[0].Diagnostics
		}
	}
	return "the export failed (internal error); see the server log"
}

// writeNotes writes the job's notes as OperationOutcome NDJSON (the
// manifest's error array, export.html#response---complete-status).
func (s *Service) writeNotes(j *Job) (File, error) {
	if err := os.MkdirAll(s.jobDir(j.ID), 0o700); err != nil {
		return File{}, err
	}
	var b bytes.Buffer
	for _, n := range j.Notes {
		line, _ := json.Marshal(fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: []fhir.Issue{{Severity: "warning", Code: "informational", Diagnostics: n}}})
		b.Write(line)
		b.WriteByte('\n')
	}
	f := File{Type: "OperationOutcome", Name: "OperationOutcome-1.ndjson", Count: int64(len(j.Notes))}
	return f, os.WriteFile(filepath.Join(s.jobDir(j.ID), f.Name), b.Bytes(), 0o600)
}

// export walks what the job asks for and writes it.
func (s *Service) export(ctx context.Context, j *Job, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	out := &writers{dir: dir, max: s.cfg.MaxLines, files: map[string]*ndjson{}}
	defer out.abort()
	p := j.Owner.Principal()
	var err error
	switch {
	case j.Level == LevelGroup:
		var members []string
		if members, err = s.groupMembers(ctx, j, p); err == nil {
			if len(j.Patients) > 0 {
				members = slices.DeleteFunc(members, func(m string) bool { return !slices.Contains(j.Patients, m) })
			}
			err = s.exportMembers(ctx, j, p, members, out)
		}
	case j.Level == LevelPatient && len(j.Patients) > 0:
		err = s.exportMembers(ctx, j, p, j.Patients, out)
	default:
		err = s.exportTypes(ctx, j, p, out)
	}
	if err != nil {
		return err
	}
	files, err := out.close()
	j.exported = out.patients
	if err != nil {
		return err
	}
	j.Output = files
	return nil
}

// baseParams are the parameters of every walk: the page size, _since,
// and nothing changed after the transaction time.
func (s *Service) baseParams(j *Job) url.Values {
	q := url.Values{"_count": {strconv.Itoa(s.cfg.PageSize)}}
	q.Add("_lastUpdated", "le"+j.TransactionTime.Format("2006-01-02T15:04:05.000Z07:00"))
	if !j.Since.IsZero() {
		q.Add("_lastUpdated", "ge"+j.Since.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	}
	return q
}

// exportTypes is the system level (every type) and the Patient level
// (every type that holds patient data, the resources in some patient's
// compartment): one walk per type, type by type.
func (s *Service) exportTypes(ctx context.Context, j *Job, p *smart.Principal, out *writers) error {
	types := j.Types
	if len(types) == 0 {
		all := allTypes(s.cfg.Registry)
		if j.Level == LevelPatient {
			all = patientDataTypes(s.cfg.Registry)
		}
		for _, t := range all {
			if canExport(p, t) {
				types = append(types, t)
			}
		}
	}
	for i, typ := range types {
		total := s.count(ctx, j, p, typ)
		var done int64
		req := engine.Request{Types: []string{typ}, Params: s.baseParams(j)}
		err := s.cfg.Server.WalkAs(ctx, p, req, func(res *engine.Result) error {
			if err := s.beforePage(ctx, j.ID); err != nil {
				return err
			}
			for _, rec := range res.Matches {
				if j.Level == LevelPatient && !inSomePatient(rec) {
					continue
				}
				if err := out.write(rec); err != nil {
					return err
				}
			}
			done += int64(len(res.Matches))
			s.setProgress(j.ID, fmt.Sprintf("%s %s of ~%s (type %d of %d)", typ, thousands(done), thousands(max(total, done)), i+1, len(types)))
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// count estimates a type's matches for the progress line (-1 unknown).
func (s *Service) count(ctx context.Context, j *Job, p *smart.Principal, typ string) int64 {
	q := s.baseParams(j)
	q.Set("_summary", "count")
	q.Set("_total", "accurate")
	q.Set("_count", "0")
	var n int64 = -1
	_ = s.cfg.Server.WalkAs(ctx, p, engine.Request{Types: []string{typ}, Params: q}, func(res *engine.Result) error {
		n = res.Total
		return nil
	})
	return n
}

func inSomePatient(rec store.Record) bool {
	for _, c := range rec.Index.Compartments {
		if strings.HasPrefix(c, "Patient/") {
			return true
		}
	}
	return false
}

// groupMembers are the Group's member Patients ("Patient/1"), active
// ones, in order; members of other types are noted and skipped.
func (s *Service) groupMembers(ctx context.Context, j *Job, p *smart.Principal) ([]string, error) {
	var members []string
	found := false
	err := s.cfg.Server.WalkAs(ctx, p, engine.Request{Types: []string{"Group"}, Params: url.Values{"_id": {j.Group}}}, func(res *engine.Result) error {
		for _, rec := range res.Matches {
			found = true
			var g struct {
				Member []struct {
					Entity struct {
						Reference string `json:"reference"`
					} `json:"entity"`
					Inactive bool `json:"inactive"`
				} `json:"member"`
			}
			if err := json.Unmarshal(rec.Raw, &g); err != nil {
				return err
			}
			base := strings.TrimRight(s.cfg.BaseURL, "/") + "/"
			for _, m := range g.Member {
				ref := strings.TrimPrefix(m.Entity.Reference, base)
				if m.Inactive {
					continue
				}
				id, ok := strings.CutPrefix(ref, "Patient/")
				if !ok || !fhir.ValidID(id) {
					j.Notes = append(j.Notes, "Group/"+j.Group+": the member "+m.Entity.Reference+" is not a Patient of this server and was skipped")
					continue
				}
				if !slices.Contains(members, ref) {
					members = append(members, ref)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fhir.NotFound("Group", j.Group)
	}
	return members, nil
}

// exportMembers is the Group level (and the Patient level with the
// patient parameter): each member's compartment in turn, one walk over
// every type per member. A resource in several members' compartments is
// written once, with the first of them.
func (s *Service) exportMembers(ctx context.Context, j *Job, p *smart.Principal, members []string, out *writers) error {
	index := make(map[string]int, len(members))
	for i, m := range members {
		index[m] = i
	}
	var done int64
	for i, m := range members {
		req := engine.Request{Compartment: m, Params: s.baseParams(j)}
		err := s.cfg.Server.WalkAs(ctx, p, req, func(res *engine.Result) error {
			if err := s.beforePage(ctx, j.ID); err != nil {
				return err
			}
			for _, rec := range res.Matches {
				if len(j.Types) > 0 && !slices.Contains(j.Types, rec.Type) {
					continue
				}
				if firstMember(rec, index) != i {
					continue
				}
				if err := out.write(rec); err != nil {
					return err
				}
				done++
			}
			s.setProgress(j.ID, fmt.Sprintf("patient %s of %s, %s resources", thousands(int64(i+1)), thousands(int64(len(members))), thousands(done)))
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// firstMember is the index of the first member whose compartment rec is
// in (-1: none).
func firstMember(rec store.Record, index map[string]int) int {
	first := -1
	for _, c := range rec.Index.Compartments {
		if i, ok := index[c]; ok && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

func (s *Service) beforePage(ctx context.Context, id string) error {
	if s.cfg.BeforePage != nil {
		return s.cfg.BeforePage(ctx, id)
	}
	return ctx.Err()
}

// thousands renders n with thousands separators ("10,000").
func thousands(n int64) string {
	if n < 0 {
		return "?"
	}
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// writers are a job's NDJSON files, one series per type.
type writers struct {
	dir   string
	max   int
	files map[string]*ndjson
	order []string
	done  []File
	// patients: every patient whose compartment a written resource is in
	// (the per-patient AuditEvents of a completed export).
	patients map[string]struct{}
}

// ndjson is the open file of a type.
type ndjson struct {
	typ   string
	n     int // file number
	lines int64
	f     *os.File
	w     *bufio.Writer
}

func (ws *writers) write(rec store.Record) error {
	for _, c := range rec.Index.Compartments {
		if ws.patients == nil {
			ws.patients = map[string]struct{}{}
		}
		ws.patients[c] = struct{}{}
	}
	f := ws.files[rec.Type]
	if f != nil && f.lines >= int64(ws.max) {
		if err := ws.closeFile(f); err != nil {
			return err
		}
		next := f.n + 1
		f = nil
		if err := ws.open(rec.Type, next); err != nil {
			return err
		}
		f = ws.files[rec.Type]
	}
	if f == nil {
		if err := ws.open(rec.Type, 1); err != nil {
			return err
		}
		f = ws.files[rec.Type]
	}
	raw := rec.Raw
	if bytes.ContainsAny(raw, "\r\n") {
		// Stored as sent: a resource sent pretty-printed is one line here.
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return fmt.Errorf("export: %s: %w", rec.Key(), err)
		}
		raw = b.Bytes()
	}
	if _, err := f.w.Write(raw); err != nil {
		return err
	}
	if err := f.w.WriteByte('\n'); err != nil {
		return err
	}
	f.lines++
	return nil
}

func fileName(typ string, n int) string { return typ + "-" + strconv.Itoa(n) + ".ndjson" }

func (ws *writers) open(typ string, n int) error {
	f, err := os.OpenFile(filepath.Join(ws.dir, fileName(typ, n)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if !slices.Contains(ws.order, typ) {
		ws.order = append(ws.order, typ)
	}
	ws.files[typ] = &ndjson{typ: typ, n: n, f: f, w: bufio.NewWriterSize(f, 64<<10)}
	return nil
}

func (ws *writers) closeFile(f *ndjson) error {
	delete(ws.files, f.typ)
	err := f.w.Flush()
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	ws.done = append(ws.done, File{Type: f.typ, Name: fileName(f.typ, f.n), Count: f.lines})
	return nil
}

// close flushes every file and returns them, by type in the order they
// were first written, then by number.
func (ws *writers) close() ([]File, error) {
	for _, typ := range ws.order {
		if f := ws.files[typ]; f != nil {
			if err := ws.closeFile(f); err != nil {
				return nil, err
			}
		}
	}
	rank := map[string]int{}
	for i, t := range ws.order {
		rank[t] = i
	}
	num := func(f File) int {
		n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(f.Name, f.Type+"-"), ".ndjson"))
		return n
	}
	slices.SortFunc(ws.done, func(a, b File) int {
		if rank[a.Type] != rank[b.Type] {
			return rank[a.Type] - rank[b.Type]
		}
		return num(a) - num(b)
	})
	return ws.done, nil
}

// abort closes what is still open (after a failure).
func (ws *writers) abort() {
	for _, f := range ws.files {
		_ = f.f.Close()
	}
	ws.files = map[string]*ndjson{}
}
