package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/bundle"
	"github.com/fhirgate/fhirgate/fhir/engine"
	"github.com/fhirgate/fhirgate/fhir/patch"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// maxRetries bounds optimistic-concurrency retries of unconditional writes.
const maxRetries = 8

// lockTTL bounds how long a conditional write may hold its condition lock.
const lockTTL = 30 * time.Second

// checkBody checks what the body of a create/update must be before schema
// validation: a JSON object of the URL's type (http.html#create).
func (s *Server) checkBody(typ string, body []byte) (*fhir.Object, error) {
	if len(body) == 0 {
		return nil, fhir.Invalid("", "the request has no body; a %s resource is required", typ)
	}
	obj, err := fhir.ParseObject(body)
	if err != nil {
		// Locations inside the body start with its type, as the
		// validator's do ("Patient.gender", not "gender").
		if fe, ok := err.(*fhir.Error); ok {
			for i := range fe.Issues {
				for k, ex := range fe.Issues[i].Expression {
					fe.Issues[i].Expression[k] = typ + "." + ex
				}
			}
		}
		return nil, err
	}
	rt := obj.String("resourceType")
	if rt == "" {
		return nil, fhir.Invalid("resourceType", "the body has no resourceType")
	}
	if rt != typ {
		return nil, fhir.Invalid("resourceType", "resourceType %q does not match the URL's type %q", rt, typ)
	}
	if err := s.cfg.Validator.ValidateObject(typ, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// version builds the stored Record of a new version from a checked body:
// server-owned id and meta, extracted search values, release state.
func (s *Server) version(typ, id string, vid int64, obj *fhir.Object, prev *store.Record) (store.Record, error) {
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	if err := fhir.StampMeta(obj, id, vid, now); err != nil {
		return store.Record{}, err
	}
	raw := obj.Bytes()
	m := obj.Tree() // the same content as raw, decoded in the parse that checked it
	var prevRel *store.Release
	if prev != nil && !prev.Deleted {
		prevRel = &prev.Release
	}
	idx, rel, err := s.Derive(context.Background(), typ, m, now, prevRel)
	if err != nil {
		return store.Record{}, fhir.Invalid("", "search values cannot be extracted: %v", err).Wrap(err)
	}
	return store.Record{Type: typ, ID: id, VersionID: vid, LastUpdated: now, Raw: raw, Index: idx, Release: rel}, nil
}

// Derive computes what the server stores beside a version's JSON: its
// search values (with the compartments that link it to patients) and its
// release state under the active policy (prev: the state of the version
// it replaces, which keeps a clinician's $release or $hold). Writes and
// reindexing both use it, so they cannot disagree.
//   - A Bundle is released when every entry is: the most restrictive state
//     of its entries applies, unless a clinician released or held it.
//   - An AuditEvent follows what it names (HeldUntil).
func (s *Server) Derive(ctx context.Context, typ string, m map[string]any, lastUpdated time.Time, prev *store.Release) (search.Index, store.Release, error) {
	idx, err := s.cfg.Registry.Extract(typ, m)
	if err != nil {
		return search.Index{}, store.Release{}, err
	}
	if typ == "AuditEvent" {
		return idx, s.HeldUntil(ctx, auditKeys(m)), nil
	}
	pol := s.Policy()
	rel := pol.Evaluate(policy.Input{Type: typ, Resource: m, LastUpdated: lastUpdated, Previous: prev})
	if typ == "Bundle" && rel.State != policy.StateReleased && rel.State != policy.StateHeld {
		entries, _ := m["entry"].([]any)
		for _, e := range entries {
			em, _ := e.(map[string]any)
			res, _ := em["resource"].(map[string]any)
			rt, _ := res["resourceType"].(string)
			if rt == "" || !fhir.IsResourceType(rt) {
				continue
			}
			er := pol.Evaluate(policy.Input{Type: rt, Resource: res, LastUpdated: lastUpdated})
			if er.Patient.After(rel.Patient) {
				rel.Patient, rel.Rule, rel.State = er.Patient, er.Rule, er.State
			}
			if er.Proxy.After(rel.Proxy) {
				rel.Proxy = er.Proxy
			}
		}
	}
	return idx, rel, nil
}

// auditKeys lists the "Type/id" entities an AuditEvent names.
func auditKeys(m map[string]any) []string {
	var keys []string
	ents, _ := m["entity"].([]any)
	for _, e := range ents {
		em, _ := e.(map[string]any)
		what, _ := em["what"].(map[string]any)
		if ref, ok := what["reference"].(string); ok && strings.Count(ref, "/") >= 1 {
			keys = append(keys, ref)
		}
	}
	return keys
}

// commit applies ops now, or, inside a transaction Bundle, prepares them
// into the Tx (a resource may be written once per transaction).
func (s *Server) commit(ctx context.Context, ops ...store.Op) error {
	if tx := bundle.TxFrom(ctx); tx != nil {
		if tx.Reserved == nil {
			tx.Reserved = map[string]bool{}
		}
		for _, op := range ops {
			k := op.Record.Key()
			if tx.Reserved[k] {
				return fhir.Invalid("", "the transaction touches %s more than once", k)
			}
			tx.Reserved[k] = true
		}
		tx.Ops = append(tx.Ops, ops...)
		return nil
	}
	return s.cfg.Store.Transact(ctx, ops)
}

func inTx(ctx context.Context) bool { return bundle.TxFrom(ctx) != nil }

// checkWritable fails when the caller may not write rec (SMART scopes and
// compartment: a write must land inside the caller's reach).
func (s *Server) checkWritable(c *caller, interaction smart.Interaction, rec store.Record) error {
	where, err := s.allow(c, interaction, rec.Type)
	if err != nil {
		return err
	}
	if !visible(where, rec) {
		return fhir.Errorf(fhir.KindForbidden, "%s/%s would be outside the data you may write (patient compartment or scope restriction)", rec.Type, rec.ID)
	}
	return nil
}

// create is http.html#create, with If-None-Exist (conditional create).
func (s *Server) create(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if _, err := s.allowWrite(x.c, "create", x.rt.typ); err != nil {
		return nil, err
	}
	obj, err := s.checkBody(x.rt.typ, x.req.Body)
	if err != nil {
		return nil, err
	}
	if err := fhir.SetTag(obj, smart.OriginSystem, writerOrigin(x.c), ""); err != nil {
		return nil, err
	}
	if cond := x.req.Header.Get("If-None-Exist"); cond != "" {
		q, err := conditionQuery(x.rt.typ, cond)
		if err != nil {
			return nil, err
		}
		unlock, err := s.lockCondition(ctx, x.rt.typ, q)
		if err != nil {
			return nil, err
		}
		defer unlock()
		matches, err := s.match(ctx, x.c, x.rt.typ, q, "If-None-Exist")
		if err != nil {
			return nil, err
		}
		switch len(matches) {
		case 0:
		case 1:
			x.touched(matches[0])
			r := s.written(x.req, http.StatusOK, matches[0])
			r.Header.Del("Location")
			return r, nil
		default:
			return nil, fhir.Errorf(fhir.KindPreconditionFailed, "If-None-Exist matches %d resources", len(matches))
		}
	}
	id := x.req.AssignID
	if id == "" {
		id = s.cfg.NewID()
	}
	obj, extra, err := s.hookedWrite(ctx, x, x.rt.typ, id, obj, nil) // messaging.go
	if err != nil {
		return nil, err
	}
	rec, err := s.version(x.rt.typ, id, 1, obj, nil)
	if err != nil {
		return nil, err
	}
	if err := s.checkWritable(x.c, "create", rec); err != nil {
		return nil, err
	}
	if err := s.checkPatientContent(ctx, x.c, rec, obj.Tree(), nil); err != nil {
		return nil, err
	}
	if err := s.commit(ctx, append([]store.Op{{Kind: store.OpCreate, Record: rec}}, extra...)...); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, fhir.Errorf(fhir.KindConflict, "%s/%s already exists", rec.Type, rec.ID).Wrap(err)
		}
		return nil, err
	}
	x.touched(rec)
	x.touched(opRecords(extra)...)
	return s.written(x.req, http.StatusCreated, rec), nil
}

// conditionQuery parses the query of If-None-Exist / a conditional URL.
func conditionQuery(typ, cond string) (url.Values, error) {
	cond = strings.TrimPrefix(cond, typ)
	cond = strings.TrimPrefix(cond, "?")
	q, err := url.ParseQuery(cond)
	if err != nil || len(q) == 0 {
		return nil, fhir.Invalid("If-None-Exist", "the condition %q is not a valid search query", cond)
	}
	return q, nil
}

// lockCondition serialises conditional writes with the same condition, so N
// concurrent identical conditional creates yield exactly one resource.
func (s *Server) lockCondition(ctx context.Context, typ string, q url.Values) (func(), error) {
	return s.cfg.Store.Lock(ctx, bundle.ConditionKey(typ, q), lockTTL) // store.ErrLocked is a 409 (fhir.AsError)
}

// match runs a conditional search (strict) within the caller's reach.
//
// A caller that is not a patient-facing app (an EMR, a practitioner) never
// matches what a patient-facing app wrote: a patient cannot make an EMR's
// If-None-Exist or conditional update land on a resource they wrote by
// copying the EMR's identifier into it (identifier squatting).
func (s *Server) match(ctx context.Context, c *caller, typ string, q url.Values, what string) ([]store.Record, error) {
	constrain := s.constrain(c)
	if !c.patientFacing() {
		base := constrain
		constrain = func(t string) search.Expr {
			var e search.Expr
			if base != nil {
				e = base(t)
			}
			return search.AllOf(e, notPatientAuthored())
		}
	}
	recs, err := s.engine.Match(ctx, typ, q, constrain, 2)
	if err != nil {
		return nil, engine.AsFHIR(err)
	}
	return recs, nil
}

// update is http.html#update, with create-on-update and If-Match.
func (s *Server) update(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if _, err := s.allowWrite(x.c, "update", x.rt.typ); err != nil {
		return nil, err
	}
	obj, err := s.checkBody(x.rt.typ, x.req.Body)
	if err != nil {
		return nil, err
	}
	bodyID := obj.String("id")
	if bodyID == "" {
		return nil, fhir.Invalid(x.rt.typ+".id", "the resource must have an id equal to the URL's id %q", x.rt.id)
	}
	if bodyID != x.rt.id {
		return nil, fhir.Invalid(x.rt.typ+".id", "the resource id %q does not match the URL's id %q", bodyID, x.rt.id)
	}
	return s.put(ctx, x, x.rt.id, obj, x.req.Header.Get("If-Match"), false)
}

// put writes a new version of typ/id from obj, retrying lost races unless
// the client asked for a specific version (If-Match). A caller whose
// access is constrained (a patient-facing app, a granular scope) cannot
// create by PUT to an id unless found is set (a conditional update that
// matched nothing): a missing id and one outside its reach both answer 404.
func (s *Server) put(ctx context.Context, x *exchange, id string, obj *fhir.Object, ifMatch string, found bool) (*fhir.Response, error) {
	typ := x.rt.typ
	where, err := s.allow(x.c, "update", typ)
	if err != nil {
		return nil, err
	}
	constrained := where != nil || x.c.patientFacing()
	if err := fhir.SetTag(obj, smart.OriginSystem, writerOrigin(x.c), ""); err != nil {
		return nil, err
	}
	var want int64
	if ifMatch != "" {
		v, ok := fhir.ParseETag(ifMatch)
		if !ok {
			return nil, fhir.Invalid("If-Match", "If-Match must be a version ETag like W/\"3\", got %q", ifMatch)
		}
		want = v
	}
	return retryConflicts(ctx, typ+"/"+id, ifMatch, func() (*fhir.Response, error) {
		cur, err := s.cfg.Store.Read(ctx, typ, id)
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		var prev *store.Record
		var curVid int64
		if !exists && constrained && !found {
			return nil, fhir.NotFound(typ, id)
		}
		if exists {
			prev, curVid = &cur, cur.VersionID
			if err := s.existingForWrite(ctx, x.c, "update", typ, id, cur); err != nil {
				return nil, err
			}
			if !cur.Deleted && !visible(where, cur) {
				return nil, fhir.Errorf(fhir.KindForbidden, "%s/%s is outside the data you may write", typ, id)
			}
		}
		if want != 0 && (!exists || cur.Deleted || curVid != want) {
			return nil, fhir.Errorf(fhir.KindPreconditionFailed, "If-Match %s is not the current version of %s/%s", ifMatch, typ, id)
		}
		interaction := smart.Interaction("update")
		if !exists || cur.Deleted {
			interaction = "create"
			if err := checkPatientType(x.c, smart.Create, typ); err != nil {
				return nil, err
			}
		}
		mobj, extra, err := s.hookedWrite(ctx, x, typ, id, obj, live(prev)) // messaging.go
		if err != nil {
			return nil, err
		}
		rec, err := s.version(typ, id, curVid+1, mobj, prev)
		if err != nil {
			return nil, err
		}
		if err := s.checkWritable(x.c, interaction, rec); err != nil {
			return nil, err
		}
		if err := s.checkPatientContent(ctx, x.c, rec, mobj.Tree(), prev); err != nil {
			return nil, err
		}
		if err := s.commit(ctx, append([]store.Op{{Kind: store.OpPut, Record: rec, IfVersion: curVid}}, extra...)...); err != nil {
			return nil, err
		}
		x.touched(rec)
		x.touched(opRecords(extra)...)
		status := http.StatusOK
		if interaction == "create" {
			status = http.StatusCreated
		}
		return s.written(x.req, status, rec), nil
	})
}

// retryConflicts runs attempt — read the current version, check, commit a
// compare-and-set write of key ("Type/id") — again while its commit loses
// a race with another writer (store.ErrConflict), at most maxRetries
// times: every unconditional update, patch and delete goes through it, so
// they answer races alike. With If-Match the client asked for one version:
// no retry, 412 (http.html#concurrency). Inside a transaction Bundle
// nothing commits here (the bundle's one Transact does). A race lost
// every time is 409: the client may retry.
func retryConflicts(ctx context.Context, key, ifMatch string, attempt func() (*fhir.Response, error)) (*fhir.Response, error) {
	for try := 0; ; try++ {
		resp, err := attempt()
		if err == nil || !errors.Is(err, store.ErrConflict) {
			return resp, err
		}
		if ifMatch == "" && try < maxRetries && !inTx(ctx) {
			continue
		}
		if ifMatch != "" {
			return nil, fhir.Errorf(fhir.KindPreconditionFailed, "%s was changed concurrently; version %s is no longer current", key, ifMatch).Wrap(err)
		}
		return nil, fhir.Errorf(fhir.KindConflict, "%s was changed concurrently; retry", key).Wrap(err)
	}
}

// conditionalUpdate is http.html#cond-update.
func (s *Server) conditionalUpdate(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if len(x.req.Query) == 0 {
		return nil, fhir.Errorf(fhir.KindNotAllowed, "PUT needs a resource id or a search condition")
	}
	if _, err := s.allowWrite(x.c, "update", x.rt.typ); err != nil {
		return nil, err
	}
	obj, err := s.checkBody(x.rt.typ, x.req.Body)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lockCondition(ctx, x.rt.typ, x.req.Query)
	if err != nil {
		return nil, err
	}
	defer unlock()
	matches, err := s.match(ctx, x.c, x.rt.typ, x.req.Query, "condition")
	if err != nil {
		return nil, err
	}
	bodyID := obj.String("id")
	switch len(matches) {
	case 0:
		id := bodyID
		if id == "" {
			id = x.req.AssignID
		}
		found := bodyID == "" // a client-chosen id is a PUT to that id
		if id == "" {
			id = s.cfg.NewID()
		}
		return s.put(ctx, x, id, obj, "", found)
	case 1:
		if bodyID != "" && bodyID != matches[0].ID {
			return nil, fhir.Invalid(x.rt.typ+".id", "the resource id %q does not match the resource %s/%s found by the condition", bodyID, matches[0].Type, matches[0].ID)
		}
		return s.put(ctx, x, matches[0].ID, obj, x.req.Header.Get("If-Match"), true)
	}
	return nil, fhir.Errorf(fhir.KindPreconditionFailed, "the condition matches %d resources", len(matches))
}

// patch is http.html#patch: JSON Patch or FHIRPath Patch, validated like any write.
func (s *Server) patch(ctx context.Context, x *exchange) (*fhir.Response, error) {
	return s.patchID(ctx, x, x.rt.id)
}

func (s *Server) patchID(ctx context.Context, x *exchange, id string) (*fhir.Response, error) {
	where, err := s.allowWrite(x.c, "patch", x.rt.typ)
	if err != nil {
		return nil, err
	}
	ct := strings.ToLower(x.req.Header.Get("Content-Type"))
	return retryConflicts(ctx, x.rt.typ+"/"+id, x.req.Header.Get("If-Match"), func() (*fhir.Response, error) {
		cur, err := s.cfg.Store.Read(ctx, x.rt.typ, id)
		if errors.Is(err, store.ErrNotFound) || err == nil && cur.Deleted {
			return nil, fhir.NotFound(x.rt.typ, id)
		}
		if err != nil {
			return nil, err
		}
		if err := s.existingForWrite(ctx, x.c, "patch", x.rt.typ, id, cur); err != nil {
			return nil, err
		}
		if !visible(where, cur) {
			return nil, fhir.Errorf(fhir.KindForbidden, "%s/%s is outside the data you may write", x.rt.typ, id)
		}
		if im := x.req.Header.Get("If-Match"); im != "" {
			v, ok := fhir.ParseETag(im)
			if !ok || v != cur.VersionID {
				return nil, fhir.Errorf(fhir.KindPreconditionFailed, "If-Match %s is not the current version of %s/%s", im, x.rt.typ, id)
			}
		}
		var patched []byte
		switch {
		case strings.HasPrefix(ct, "application/json-patch+json"):
			patched, err = patch.JSONPatch(cur.Raw, x.req.Body, s.patchLimit())
		case strings.HasPrefix(ct, "application/fhir+json"), strings.HasPrefix(ct, "application/json"):
			patched, err = patch.FHIRPathPatch(cur.Raw, x.req.Body, s.patchLimit())
		default:
			return nil, fhir.Errorf(fhir.KindUnsupportedMedia, "PATCH takes application/json-patch+json or a FHIRPath Patch Parameters resource (application/fhir+json), not %q", ct)
		}
		if err != nil {
			return nil, err
		}
		obj, err := s.checkBody(x.rt.typ, patched)
		if err != nil {
			return nil, err
		}
		if obj.String("id") != id {
			return nil, fhir.Errorf(fhir.KindUnprocessable, "a patch may not change the resource id")
		}
		if err := fhir.SetTag(obj, smart.OriginSystem, writerOrigin(x.c), ""); err != nil {
			return nil, err
		}
		obj, extra, err := s.hookedWrite(ctx, x, x.rt.typ, id, obj, &cur) // messaging.go
		if err != nil {
			return nil, err
		}
		rec, err := s.version(x.rt.typ, id, cur.VersionID+1, obj, &cur)
		if err != nil {
			return nil, err
		}
		if err := s.checkWritable(x.c, "patch", rec); err != nil {
			return nil, err
		}
		if err := s.checkPatientContent(ctx, x.c, rec, obj.Tree(), &cur); err != nil {
			return nil, err
		}
		if err := s.commit(ctx, append([]store.Op{{Kind: store.OpPut, Record: rec, IfVersion: cur.VersionID}}, extra...)...); err != nil {
			return nil, err
		}
		x.touched(rec)
		x.touched(opRecords(extra)...)
		return s.written(x.req, http.StatusOK, rec), nil
	})
}

// patchLimit bounds the patched document by the body limit (a PATCH may
// not build what a PUT could not send).
func (s *Server) patchLimit() patch.Option {
	if s.cfg.MaxBody > 0 {
		return patch.MaxSize(int(s.cfg.MaxBody))
	}
	return patch.MaxSize(patch.DefaultMaxSize)
}

// conditionalPatch patches the single match of a condition.
func (s *Server) conditionalPatch(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if len(x.req.Query) == 0 {
		return nil, fhir.Errorf(fhir.KindNotAllowed, "PATCH needs a resource id or a search condition")
	}
	matches, err := s.match(ctx, x.c, x.rt.typ, x.req.Query, "condition")
	if err != nil {
		return nil, err
	}
	switch len(matches) {
	case 0:
		return nil, fhir.Errorf(fhir.KindNotFound, "no %s matches the condition", x.rt.typ)
	case 1:
		return s.patchID(ctx, x, matches[0].ID)
	}
	return nil, fhir.Errorf(fhir.KindPreconditionFailed, "the condition matches %d resources", len(matches))
}

// delete is http.html#delete: a tombstone version.
func (s *Server) delete(ctx context.Context, x *exchange) (*fhir.Response, error) {
	return s.deleteID(ctx, x, x.rt.id)
}

func (s *Server) deleteID(ctx context.Context, x *exchange, id string) (*fhir.Response, error) {
	where, err := s.allowWrite(x.c, "delete", x.rt.typ)
	if err != nil {
		return nil, err
	}
	// A constrained caller gets 404 for a missing resource, as for one out
	// of its reach (http.html#delete lets a server answer 404).
	constrained := where != nil || x.c.patientFacing()
	return retryConflicts(ctx, x.rt.typ+"/"+id, x.req.Header.Get("If-Match"), func() (*fhir.Response, error) {
		cur, err := s.cfg.Store.Read(ctx, x.rt.typ, id)
		if errors.Is(err, store.ErrNotFound) {
			if constrained {
				return nil, fhir.NotFound(x.rt.typ, id)
			}
			return &fhir.Response{Status: http.StatusNoContent, Header: http.Header{}}, nil
		}
		if err != nil {
			return nil, err
		}
		if err := s.existingForWrite(ctx, x.c, "delete", x.rt.typ, id, cur); err != nil {
			return nil, err
		}
		if cur.Deleted {
			h := http.Header{}
			h.Set("ETag", fhir.ETag(cur.VersionID))
			return &fhir.Response{Status: http.StatusNoContent, Header: h}, nil
		}
		if !visible(where, cur) {
			return nil, fhir.Errorf(fhir.KindForbidden, "%s/%s is outside the data you may delete", x.rt.typ, id)
		}
		if im := x.req.Header.Get("If-Match"); im != "" {
			if v, ok := fhir.ParseETag(im); !ok || v != cur.VersionID {
				return nil, fhir.Errorf(fhir.KindPreconditionFailed, "If-Match %s is not the current version of %s/%s", im, x.rt.typ, id)
			}
		}
		now := s.cfg.Now().UTC().Truncate(time.Millisecond)
		tomb := store.Record{Type: x.rt.typ, ID: id, VersionID: cur.VersionID + 1, LastUpdated: now, Deleted: true,
			Index: cur.Index, Release: cur.Release}
		if err := s.commit(ctx, store.Op{Kind: store.OpDelete, Record: tomb, IfVersion: cur.VersionID}); err != nil {
			return nil, err
		}
		x.touched(tomb)
		h := http.Header{}
		h.Set("ETag", fhir.ETag(tomb.VersionID))
		return &fhir.Response{Status: http.StatusNoContent, Header: h}, nil
	})
}

// conditionalDelete is http.html#cdelete (single match; 412 on several).
func (s *Server) conditionalDelete(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if len(x.req.Query) == 0 {
		return nil, fhir.Errorf(fhir.KindNotAllowed, "DELETE needs a resource id or a search condition")
	}
	matches, err := s.match(ctx, x.c, x.rt.typ, x.req.Query, "condition")
	if err != nil {
		return nil, err
	}
	switch len(matches) {
	case 0:
		return &fhir.Response{Status: http.StatusNoContent, Header: http.Header{}}, nil
	case 1:
		return s.deleteID(ctx, x, matches[0].ID)
	}
	return nil, fhir.Errorf(fhir.KindPreconditionFailed, "the condition matches %d resources; delete them one by one", len(matches))
}

// Indexed is the stored Record of version vid of a resource the server
// built itself (an AuditEvent): raw already carries its id and meta
// (versionId, lastUpdated), and tree is raw decoded (fhir.ParseJSON's
// values). Only search values are extracted; no release rule applies, the
// caller sets Release. The caller commits it.
func (s *Server) Indexed(typ, id string, vid int64, lastUpdated time.Time, raw []byte, tree map[string]any) (store.Record, error) {
	idx, err := s.cfg.Registry.Extract(typ, tree)
	if err != nil {
		return store.Record{}, fmt.Errorf("server: index %s/%s: %w", typ, id, err)
	}
	return store.Record{Type: typ, ID: id, VersionID: vid, LastUpdated: lastUpdated, Raw: raw, Index: idx}, nil
}
