package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// read is http.html#read. A resource outside the caller's reach (scopes,
// compartment, release rules) is 404, exactly like one that does not exist.
func (s *Server) read(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if _, err := s.allow(x.c, "read", x.rt.typ); err != nil {
		return nil, err
	}
	rec, ok, err := s.current(ctx, x.c, x.rt.typ, x.rt.id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fhir.NotFound(x.rt.typ, x.rt.id)
	}
	if rec.Deleted {
		return nil, gone(rec)
	}
	x.touched(rec)
	if r := notModified(x.req, rec); r != nil {
		return r, nil
	}
	return found(rec), nil
}

func gone(rec store.Record) error {
	e := fhir.Errorf(fhir.KindGone, "resource %s/%s was deleted (version %d)", rec.Type, rec.ID, rec.VersionID)
	e.Header = map[string]string{"ETag": fhir.ETag(rec.VersionID)}
	return e
}

// notModified answers conditional reads (http.html#cread): If-None-Match and
// If-Modified-Since.
func notModified(req *fhir.Request, rec store.Record) *fhir.Response {
	if inm := req.Header.Get("If-None-Match"); inm != "" {
		if v, ok := fhir.ParseETag(inm); ok && v == rec.VersionID {
			h := http.Header{}
			versionHeaders(h, rec)
			return &fhir.Response{Status: http.StatusNotModified, Header: h}
		}
		return nil
	}
	if ims := req.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !rec.LastUpdated.Truncate(time.Second).After(t) {
			h := http.Header{}
			versionHeaders(h, rec)
			return &fhir.Response{Status: http.StatusNotModified, Header: h}
		}
	}
	return nil
}

// current returns the current version of typ/id when the caller may see
// the resource (canSee): for a tombstone, when it could see the version
// before (the tombstone tells nothing about the content, but a caller that
// could never see the resource must not learn it existed). ok is false
// for a missing resource and for one outside the caller's reach alike.
func (s *Server) current(ctx context.Context, c *caller, typ, id string) (store.Record, bool, error) {
	return s.currentFor(ctx, c, smart.Read, typ, id)
}

// currentFor is current for interaction (reach).
func (s *Server) currentFor(ctx context.Context, c *caller, interaction smart.Interaction, typ, id string) (store.Record, bool, error) {
	rec, err := s.cfg.Store.Read(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	shown := rec
	if rec.Deleted {
		prev, err := s.cfg.Store.VRead(ctx, typ, id, rec.VersionID-1)
		if errors.Is(err, store.ErrNotFound) {
			return rec, c == nil || c.p == nil, nil
		}
		if err != nil {
			return rec, false, err
		}
		shown = prev
	}
	ok, err := s.reach(ctx, c, interaction, shown)
	return rec, ok, err
}

// vread is http.html#vread. The version must be visible, and so must the
// resource now: a resource held or excluded since hides every version.
func (s *Server) vread(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if _, err := s.allow(x.c, "vread", x.rt.typ); err != nil {
		return nil, err
	}
	vid, err := strconv.ParseInt(x.rt.vid, 10, 64)
	if err != nil || vid < 1 {
		return nil, fhir.Errorf(fhir.KindNotFound, "version %q of %s/%s is not known", x.rt.vid, x.rt.typ, x.rt.id)
	}
	rec, err := s.cfg.Store.VRead(ctx, x.rt.typ, x.rt.id, vid)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fhir.Errorf(fhir.KindNotFound, "version %d of %s/%s is not known", vid, x.rt.typ, x.rt.id)
	}
	if err != nil {
		return nil, err
	}
	notKnown := fhir.Errorf(fhir.KindNotFound, "version %d of %s/%s is not known", vid, x.rt.typ, x.rt.id)
	if x.c != nil && x.c.p != nil {
		if _, ok, err := s.current(ctx, x.c, x.rt.typ, x.rt.id); err != nil {
			return nil, err
		} else if !ok {
			return nil, notKnown
		}
	}
	if rec.Deleted {
		if prev, perr := s.cfg.Store.VRead(ctx, rec.Type, rec.ID, vid-1); perr == nil {
			if ok, err := s.canSee(ctx, x.c, prev); err != nil {
				return nil, err
			} else if !ok {
				return nil, notKnown
			}
		}
		return nil, gone(rec)
	}
	if ok, err := s.canSee(ctx, x.c, rec); err != nil {
		return nil, err
	} else if !ok {
		return nil, notKnown
	}
	x.touched(rec)
	return found(rec), nil
}

// searchParams merges the query string with an application/x-www-form-urlencoded
// body (POST _search, search.html#search).
func searchParams(req *fhir.Request) (url.Values, error) {
	q := url.Values{}
	for k, v := range req.Query {
		q[k] = append(q[k], v...)
	}
	if req.Method == http.MethodPost && len(req.Body) > 0 {
		ct := strings.ToLower(req.Header.Get("Content-Type"))
		if ct != "" && !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			return nil, fhir.Errorf(fhir.KindUnsupportedMedia, "POST _search takes application/x-www-form-urlencoded, not %q", ct)
		}
		form, err := url.ParseQuery(string(req.Body))
		if err != nil {
			return nil, fhir.Invalid("", "the form body is not valid: %v", err)
		}
		for k, v := range form {
			q[k] = append(q[k], v...)
		}
	}
	return q, nil
}

// search is type, system and compartment search (search.html).
func (s *Server) search(ctx context.Context, x *exchange) (*fhir.Response, error) {
	params, err := searchParams(x.req)
	if err != nil {
		return nil, err
	}
	x.query = params.Encode()
	ereq := engine.Request{Params: params, Strict: preferStrict(x.req), Constrain: s.constrain(x.c)}
	switch {
	case x.rt.compartmentType != "":
		if x.rt.typ != "Patient" {
			return nil, fhir.Errorf(fhir.KindNotFound, "compartment %s is not supported (only Patient)", x.rt.typ)
		}
		ereq.Compartment = "Patient/" + x.rt.id
		ereq.SelfPath = "Patient/" + x.rt.id + "/" + x.rt.compartmentType
		if x.rt.compartmentType != "*" {
			ereq.Types = []string{x.rt.compartmentType}
		}
		// The compartment owner must itself be visible to the caller.
		if _, err := s.read(ctx, &exchange{req: &fhir.Request{Header: http.Header{}}, rt: route{typ: "Patient", id: x.rt.id}, c: x.c}); err != nil {
			var fe *fhir.Error
			if errors.As(err, &fe) && (fe.Kind == fhir.KindForbidden || fe.Kind == fhir.KindNotFound || fe.Kind == fhir.KindGone) {
				return nil, fhir.NotFound("Patient", x.rt.id)
			}
			return nil, err
		}
	case x.rt.typ != "":
		ereq.Types = []string{x.rt.typ}
		ereq.SelfPath = x.rt.typ
		if _, err := s.allow(x.c, "search", x.rt.typ); err != nil {
			return nil, err
		}
	}
	res, err := s.engine.Search(ctx, ereq)
	if err != nil {
		return nil, engine.AsFHIR(err)
	}
	x.touched(res.Matches...)
	x.touched(res.Included...)
	body, err := s.engine.Bundle(ereq, res)
	if err != nil {
		return nil, err
	}
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: body}, nil
}

// history is http.html#history (instance, type, system) with _since, _at,
// _count and paging.
func (s *Server) history(ctx context.Context, x *exchange) (*fhir.Response, error) {
	q := store.HistoryQuery{Type: x.rt.typ, ID: x.rt.id, Count: 20}
	var where search.Expr
	hist := smart.HistoryType
	if x.rt.id != "" {
		hist = smart.History
	}
	if x.rt.typ != "" {
		w, err := s.allow(x.c, hist, x.rt.typ)
		if err != nil {
			return nil, err
		}
		where = w
		if x.rt.typ == "Binary" && x.rt.id == "" && x.c.patientFacing() {
			where = search.Const{Value: false} // read by id only (constrain)
		}
	} else if x.c != nil && x.c.p != nil {
		// System history: every type the caller may see, each with its constraint.
		var ors []search.Expr
		all := true
		for _, t := range fhir.ResourceTypes {
			w, err := s.allow(x.c, smart.HistoryType, t)
			if err != nil || t == "Binary" && x.c.patientFacing() {
				all = false
				continue
			}
			all = all && w == nil
			ors = append(ors, search.AllOf(typeCond(t), w))
		}
		if !all { // every type unconstrained (a backend service): no filter at all
			where = search.Or{Args: ors}
		}
	}
	q.Filter = where
	x.query = x.req.Query.Encode()
	for k, vs := range x.req.Query {
		v := vs[0]
		switch k {
		case "_count":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, fhir.Invalid("_count", "_count must be a non-negative integer, got %q", v)
			}
			q.Count = min(n, 1000)
		case "_since", "_at":
			t, err := parseInstantParam(v)
			if err != nil {
				return nil, fhir.Invalid(k, "%s must be a FHIR instant or dateTime, got %q", k, v)
			}
			if k == "_since" {
				q.Since = t
			} else {
				q.At = t
			}
		case "_cursor":
			q.Cursor = v
		case "_format", "_pretty", "_summary", "_elements":
		default:
			if preferStrict(x.req) {
				return nil, fhir.Invalid(k, "unknown history parameter %q", k)
			}
		}
	}
	if x.rt.id != "" {
		// An instance the caller cannot see now is 404 with or without
		// _since, exactly like one that does not exist.
		if _, ok, err := s.current(ctx, x.c, x.rt.typ, x.rt.id); err != nil {
			return nil, err
		} else if !ok {
			return nil, fhir.NotFound(x.rt.typ, x.rt.id)
		}
	}
	page, err := s.cfg.Store.History(ctx, q) // store.ErrBadCursor is a 400 (fhir.AsError)
	if err != nil {
		return nil, err
	}
	if x.rt.id != "" && len(page.Records) == 0 && q.Cursor == "" && q.Since.IsZero() && q.At.IsZero() {
		return nil, fhir.NotFound(x.rt.typ, x.rt.id)
	}
	x.touched(page.Records...)
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: s.historyBundle(x, page, q)}, nil
}

func typeCond(t string) search.Expr {
	return search.TypeCond{Types: []string{t}}
}

// parseInstantParam reads _since/_at: an instant, or a dateTime at any precision.
func parseInstantParam(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not an instant")
}

// historyBundle renders a history page (http.html#history): newest first,
// request/response per entry, deletes without a resource.
func (s *Server) historyBundle(x *exchange, page store.Page, q store.HistoryQuery) []byte {
	type entry struct {
		FullURL  string          `json:"fullUrl,omitempty"`
		Resource json.RawMessage `json:"resource,omitempty"`
		Request  map[string]any  `json:"request"`
		Response map[string]any  `json:"response"`
	}
	type link struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	}
	b := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Total        *int64  `json:"total,omitempty"`
		Link         []link  `json:"link"`
		Entry        []entry `json:"entry,omitempty"`
	}{ResourceType: "Bundle", Type: "history"}
	if page.Total >= 0 && q.Total {
		t := page.Total
		b.Total = &t
	}
	path := s.cfg.Base
	if x.rt.typ != "" {
		path += "/" + x.rt.typ
	}
	if x.rt.id != "" {
		path += "/" + x.rt.id
	}
	path += "/_history"
	self := url.Values{}
	for k, v := range x.req.Query {
		if k != "_cursor" {
			self[k] = v
		}
	}
	selfURL := path
	if len(self) > 0 {
		selfURL += "?" + self.Encode()
	}
	b.Link = append(b.Link, link{"self", selfURL})
	if page.Next != "" {
		next := url.Values{}
		for k, v := range self {
			next[k] = v
		}
		next.Set("_cursor", page.Next)
		b.Link = append(b.Link, link{"next", path + "?" + next.Encode()})
	}
	for _, r := range page.Records {
		e := entry{FullURL: s.cfg.Base + "/" + r.Type + "/" + r.ID,
			Response: map[string]any{"etag": fhir.ETag(r.VersionID), "lastModified": fhir.Instant(r.LastUpdated)}}
		switch {
		case r.Deleted:
			e.Request = map[string]any{"method": "DELETE", "url": r.Type + "/" + r.ID}
			e.Response["status"] = "204 No Content"
		case r.VersionID == 1:
			e.Resource = r.Raw
			e.Request = map[string]any{"method": "POST", "url": r.Type}
			e.Response["status"] = "201 Created"
		default:
			e.Resource = r.Raw
			e.Request = map[string]any{"method": "PUT", "url": r.Type + "/" + r.ID}
			e.Response["status"] = "200 OK"
		}
		b.Entry = append(b.Entry, e)
	}
	out, _ := json.Marshal(b)
	return out
}
