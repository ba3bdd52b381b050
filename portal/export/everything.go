package export

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/store"
)

// Patient/[id]/$everything (R4 patient-operation-everything.html).
//
// The record is a sequence of segments: the Patient (and the Patients
// that link to it: its compartment's Patients), then each type of the
// Patient CompartmentDefinition in name order (AuditEvent only when _type
// asks for it: the trail of who looked is not part of the record), then
// the linked types (LinkedParam: Task.for ...). Each segment is a search
// as the caller (OperationCall.Search), so the caller's constraint —
// scopes, compartment, proxy grants, sensitive labels, release rules — is
// in every store query, exactly as in search. A page takes up to _count
// matches from as many segments as it needs; its next link comes back here
// with _cursor "<segment>.<the engine's cursor>". Each page also holds, as
// search.mode include, the resources its matches reference that hold no
// patient data (Practitioner, Organization, Location, Medication...: the
// search.PatientFree types) or are Binaries (attachments), as far as the
// caller may read them.

// maxRefsPerPage bounds the referenced resources one page fetches.
const maxRefsPerPage = 500

// maxBinariesPerPage bounds the Binaries (attachments) one page reads.
const maxBinariesPerPage = 50

type segment struct {
	typ    string
	linked string // reference parameter of a linked type ("" : a compartment search)
}

type everythingParams struct {
	start, end, since string
	types             []string
	count             int
	cursor            string
	// link holds the parameters the page links repeat.
	link url.Values
}

var fhirDate = regexp.MustCompile(`^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$`)

func (s *Service) everythingParams(req *fhir.Request) (everythingParams, error) {
	ps, err := fhir.ReadParams(req)
	if err != nil {
		return everythingParams{}, err
	}
	q := url.Values{}
	for _, p := range ps {
		q.Add(p.Name, p.Value)
	}
	var ep everythingParams
	ep.link = url.Values{}
	one := func(name string) (string, error) {
		vs := q[name]
		if len(vs) > 1 {
			return "", fhir.Invalid(name, "%s may appear only once", name)
		}
		if len(vs) == 1 {
			ep.link.Set(name, vs[0])
			return vs[0], nil
		}
		return "", nil
	}
	if ep.start, err = one("start"); err != nil {
		return ep, err
	}
	if ep.end, err = one("end"); err != nil {
		return ep, err
	}
	for _, d := range []struct{ name, v string }{{"start", ep.start}, {"end", ep.end}} {
		if d.v != "" && !fhirDate.MatchString(d.v) {
			return ep, fhir.Invalid(d.name, "%s must be a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD), got %q", d.name, d.v)
		}
	}
	if ep.since, err = one("_since"); err != nil {
		return ep, err
	}
	if ep.since != "" {
		if _, err := time.Parse(time.RFC3339Nano, ep.since); err != nil {
			return ep, fhir.Invalid("_since", "_since must be an instant with a time zone (e.g. 2026-01-01T00:00:00Z), got %q", ep.since)
		}
	}
	c, err := one("_count")
	if err != nil {
		return ep, err
	}
	if c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return ep, fhir.Invalid("_count", "_count must be a positive integer, got %q", c)
		}
		ep.count = min(n, search.MaxCount)
	} else {
		ep.count = search.DefaultCount
	}
	for _, v := range q["_type"] {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if !s.cfg.Registry.IsResourceType(t) {
				return ep, fhir.Invalid("_type", "unknown resource type %q", t)
			}
			if !slices.Contains(ep.types, t) {
				ep.types = append(ep.types, t)
			}
		}
	}
	if len(ep.types) > 0 {
		ep.link.Set("_type", strings.Join(ep.types, ","))
	}
	if ep.cursor, err = one("_cursor"); err != nil {
		return ep, err
	}
	ep.link.Del("_cursor")
	for k := range q {
		switch k {
		case "start", "end", "_since", "_count", "_type", "_cursor":
		default:
			return ep, fhir.Invalid(k, "$everything does not support the parameter %s (start, end, _since, _type, _count)", k)
		}
	}
	return ep, nil
}

// segments lists what the record is made of for a _type list (nil: all).
func (s *Service) segments(types []string) []segment {
	want := func(t string) bool { return len(types) == 0 || slices.Contains(types, t) }
	var out []segment
	if want("Patient") {
		out = append(out, segment{typ: "Patient"})
	}
	for _, t := range compartmentTypes(s.cfg.Registry) {
		if t == "AuditEvent" && !slices.Contains(types, t) {
			continue
		}
		if want(t) {
			out = append(out, segment{typ: t})
		}
	}
	for _, t := range []string{"Contract", "Device", "GuidanceResponse", "Task"} {
		if p := linkedParam(s.cfg.Registry, t); p != "" && want(t) {
			out = append(out, segment{typ: t, linked: p})
		}
	}
	return out
}

func (s *Service) everything(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
	pid := call.Resource.ID
	patient := "Patient/" + pid
	// A patient runs it on themselves, a proxy on a patient they act for
	// (a Patient they can read through a link is not theirs to export).
	if call.PatientFacing && !slices.Contains(call.Patients, patient) {
		return nil, fhir.NotFound("Patient", pid)
	}
	ep, err := s.everythingParams(call.Request)
	if err != nil {
		return nil, err
	}
	segs := s.segments(ep.types)
	seg, inner := 0, ""
	if ep.cursor != "" {
		a, b, ok := strings.Cut(ep.cursor, ".")
		n, err := strconv.Atoi(a)
		if !ok || err != nil || n < 0 || n >= len(segs) {
			return nil, fhir.Invalid("_cursor", "the paging cursor is not valid")
		}
		seg, inner = n, b
	}
	page := &engine.Result{Total: -1}
	for seg < len(segs) && len(page.Matches) < ep.count {
		sg := segs[seg]
		params := url.Values{"_count": {strconv.Itoa(ep.count - len(page.Matches))}, "_total": {"none"}}
		if ep.since != "" {
			params.Set("_lastUpdated", "ge"+ep.since)
		}
		if dp := dateParam(s.cfg.Registry, sg.typ); dp != "" {
			if ep.start != "" {
				params.Add(dp, "ge"+ep.start)
			}
			if ep.end != "" {
				params.Add(dp, "le"+ep.end)
			}
		}
		req := engine.Request{Types: []string{sg.typ}}
		if sg.linked != "" {
			params.Set(sg.linked, patient)
		} else {
			req.Compartment = patient
		}
		if inner != "" {
			params.Set("_cursor", inner)
		}
		req.Params = params
		res, err := call.Search(ctx, req)
		if err != nil {
			return nil, err
		}
		page.Matches = append(page.Matches, res.Matches...)
		if res.Next != "" {
			inner = res.Next
			continue
		}
		seg, inner = seg+1, ""
	}
	if seg < len(segs) {
		page.Next = strconv.Itoa(seg) + "." + inner
	}
	inc, err := s.referenced(ctx, call, page.Matches)
	if err != nil {
		return nil, err
	}
	page.Included = inc
	body, err := call.Bundle(engine.Request{SelfPath: patient + "/$everything", Params: ep.link}, page)
	if err != nil {
		return nil, err
	}
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: body}, nil
}

// referenced returns the resources holding no patient data (and the
// Binaries) that matches reference, as the caller may read them.
func (s *Service) referenced(ctx context.Context, call server.OperationCall, matches []store.Record) ([]store.Record, error) {
	have := map[string]bool{}
	for _, m := range matches {
		have[m.Key()] = true
	}
	byType := map[string][]string{}
	var order []string
	n := 0
	add := func(typ, id string) {
		k := typ + "/" + id
		if have[k] || n >= maxRefsPerPage {
			return
		}
		have[k] = true
		n++
		if _, ok := byType[typ]; !ok {
			order = append(order, typ)
		}
		byType[typ] = append(byType[typ], id)
	}
	base := strings.TrimRight(s.cfg.BaseURL, "/") + "/"
	for _, m := range matches {
		for _, ref := range references(m.Raw) {
			ref = strings.TrimPrefix(ref, base)
			typ, id, ok := strings.Cut(ref, "/")
			if !ok {
				continue
			}
			id, _, _ = strings.Cut(id, "/") // Type/id/_history/n
			if !fhir.ValidID(id) || !(search.PatientFree[typ] || typ == "Binary") || !s.cfg.Registry.IsResourceType(typ) {
				continue
			}
			add(typ, id)
		}
		for _, v := range m.Index.Ref { // Attachment.url of a Binary of this server
			if v.Param == search.BinaryLinkParam && v.Type == "Binary" && fhir.ValidID(v.ID) {
				add("Binary", v.ID)
			}
		}
	}
	var out []store.Record
	for _, typ := range order {
		ids := byType[typ]
		if typ == "Binary" {
			// A Binary's visibility is decided per read (its
			// securityContext and the resources carrying it): read it as
			// the caller through the pipeline (audited as a read).
			for i, id := range ids {
				if i >= maxBinariesPerPage {
					break
				}
				r := s.cfg.Server.Handle(ctx, &fhir.Request{Method: http.MethodGet, Path: "Binary/" + id, Header: http.Header{}, Entry: -1})
				if r.Status == http.StatusOK && json.Valid(r.Body) {
					out = append(out, store.Record{Type: "Binary", ID: id, Raw: r.Body})
				}
			}
			continue
		}
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), 100)]
			ids = ids[len(chunk):]
			res, err := call.Search(ctx, engine.Request{Types: []string{typ},
				Params: url.Values{"_id": {strings.Join(chunk, ",")}, "_count": {strconv.Itoa(len(chunk))}, "_total": {"none"}}})
			if err != nil {
				return nil, err
			}
			out = append(out, res.Matches...)
		}
	}
	return out, nil
}

// references lists the Reference.reference strings of a resource.
func references(raw []byte) []string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(x any) {
		switch t := x.(type) {
		case map[string]any:
			for k, c := range t {
				if s, ok := c.(string); ok && k == "reference" {
					out = append(out, s)
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	walk(v)
	return out
}

// param is one parameter of a Parameters body, its value as a string.
