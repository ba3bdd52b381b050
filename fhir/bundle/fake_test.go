package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/patch"
	"github.com/fhirgate/fhirgate/store"
)

// fake is an in-memory Handler with the Tx semantics of the real pipeline:
// with a Tx in ctx writes are prepared into tx.Ops, Commit applies them all
// or none.
type fake struct {
	mu      sync.Mutex
	res     map[string][]byte // current resource by "Type/id"
	ver     map[string]int64
	nextID  int
	commits int
	// calls records "METHOD path" of every Handle call, in order.
	calls []string
	// reqs records every request by entry index.
	reqs map[int]*fhir.Request
	// txSeen records whether a Tx was in ctx, by entry index.
	txSeen   map[int]bool
	locked   []string
	unlocked []string
	keyLocks map[string]*sync.Mutex
	// commitErr makes Commit fail.
	commitErr error
	now       time.Time
	// matchDelay widens the window between a search and the commit.
	matchDelay time.Duration
}

func newFake() *fake {
	return &fake{res: map[string][]byte{}, ver: map[string]int64{}, reqs: map[int]*fhir.Request{}, txSeen: map[int]bool{},
		keyLocks: map[string]*sync.Mutex{}, now: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}
}

func (f *fake) put(key, raw string) {
	f.res[key] = []byte(raw)
	f.ver[key]++
}

func (f *fake) NewID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	return fmt.Sprintf("id%d", f.nextID)
}

func (f *fake) Lock(ctx context.Context, key string) (func(), error) {
	f.mu.Lock()
	m := f.keyLocks[key]
	if m == nil {
		m = &sync.Mutex{}
		f.keyLocks[key] = m
	}
	f.locked = append(f.locked, key)
	f.mu.Unlock()
	m.Lock()
	return func() {
		f.mu.Lock()
		f.unlocked = append(f.unlocked, key)
		f.mu.Unlock()
		m.Unlock()
	}, nil
}

// Match supports identifier=[system|]value and _id.
func (f *fake) Match(ctx context.Context, typ string, q url.Values) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range q {
		if k != "identifier" && k != "_id" {
			return nil, fhir.Invalid(k, "unknown search parameter %q", k)
		}
	}
	var keys []string
	for key, raw := range f.res {
		if !strings.HasPrefix(key, typ+"/") || raw == nil {
			continue
		}
		var r struct {
			ID         string `json:"id"`
			Identifier []struct{ System, Value string }
		}
		_ = json.Unmarshal(raw, &r)
		ok := true
		for _, v := range q["_id"] {
			ok = ok && r.ID == v
		}
		for _, v := range q["identifier"] {
			sys, val, hasSys := strings.Cut(v, "|")
			if !hasSys {
				val, sys = sys, ""
			}
			hit := false
			for _, id := range r.Identifier {
				if id.Value == val && (!hasSys || id.System == sys) {
					hit = true
				}
			}
			ok = ok && hit
		}
		if ok {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	if f.matchDelay > 0 {
		f.mu.Unlock()
		time.Sleep(f.matchDelay)
		f.mu.Lock()
	}
	if len(keys) > 2 {
		keys = keys[:2]
	}
	return keys, nil
}

func (f *fake) fail(err *fhir.Error) *fhir.Response {
	status, oo := fhir.Outcome(err)
	b, _ := json.Marshal(oo)
	return &fhir.Response{Status: status, Err: err, Body: b}
}

func (f *fake) Handle(ctx context.Context, req *fhir.Request) *fhir.Response {
	tx := TxFrom(ctx)
	f.mu.Lock()
	f.calls = append(f.calls, req.Method+" "+req.Path)
	f.reqs[req.Entry] = req
	f.txSeen[req.Entry] = tx != nil
	f.mu.Unlock()
	segs := strings.Split(req.Path, "/")
	typ := segs[0]
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		if len(segs) == 1 {
			keys, err := f.Match(ctx, typ, req.Query)
			if err != nil {
				return f.fail(fhir.AsError(err))
			}
			return &fhir.Response{Status: 200, Body: []byte(fmt.Sprintf(`{"resourceType":"Bundle","type":"searchset","total":%d}`, len(keys)))}
		}
		f.mu.Lock()
		raw, ok := f.res[req.Path]
		v := f.ver[req.Path]
		f.mu.Unlock()
		if !ok || raw == nil {
			return f.fail(fhir.NotFound(typ, segs[1]))
		}
		return &fhir.Response{Status: 200, Body: raw, Header: f.headers(req.Path, v, false)}
	case http.MethodPost:
		if len(segs) != 1 {
			return &fhir.Response{Status: 200, Body: []byte(`{"resourceType":"Parameters"}`)}
		}
		if ine := req.Header.Get("If-None-Exist"); ine != "" {
			q, _ := url.ParseQuery(ine)
			keys, err := f.Match(ctx, typ, q)
			if err != nil {
				return f.fail(fhir.AsError(err))
			}
			if len(keys) == 1 {
				return &fhir.Response{Status: 200, Header: http.Header{"Location": {keys[0]}}}
			}
		}
		id := req.AssignID
		if id == "" {
			id = f.NewID()
		}
		return f.write(ctx, tx, req, typ, id, req.Body, true)
	case http.MethodPut:
		if len(segs) != 2 {
			return f.fail(fhir.Errorf(fhir.KindInvalid, "fake: conditional update not supported"))
		}
		if got := topLevelID(req.Body); got != segs[1] {
			return f.fail(fhir.Invalid(typ+".id", "id %q does not match the url", got))
		}
		return f.write(ctx, tx, req, typ, segs[1], req.Body, false)
	case http.MethodPatch:
		f.mu.Lock()
		cur, ok := f.res[req.Path]
		f.mu.Unlock()
		if !ok || cur == nil {
			return f.fail(fhir.NotFound(typ, segs[1]))
		}
		var out []byte
		var err error
		if req.Header.Get("Content-Type") == "application/json-patch+json" {
			out, err = patch.JSONPatch(cur, req.Body)
		} else {
			out, err = patch.FHIRPathPatch(cur, req.Body)
		}
		if err != nil {
			return f.fail(fhir.AsError(err))
		}
		return f.write(ctx, tx, req, typ, segs[1], out, false)
	case http.MethodDelete:
		if tx != nil {
			tx.Ops = append(tx.Ops, store.Op{Kind: store.OpDelete, Record: store.Record{Type: typ, ID: segs[1], Deleted: true}, IfVersion: f.version(req.Path)})
		} else {
			f.mu.Lock()
			f.res[req.Path] = nil
			f.ver[req.Path]++
			f.mu.Unlock()
		}
		return &fhir.Response{Status: 204}
	}
	return f.fail(fhir.Errorf(fhir.KindNotAllowed, "fake: %s", req.Method))
}

func (f *fake) version(key string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ver[key]
}

func (f *fake) headers(key string, v int64, created bool) http.Header {
	h := http.Header{}
	h.Set("ETag", fmt.Sprintf(`W/"%d"`, v))
	h.Set("Last-Modified", f.now.Format(http.TimeFormat))
	if created {
		h.Set("Location", "http://localhost/fhir/"+key+"/_history/"+fmt.Sprint(v))
	}
	return h
}

func (f *fake) write(ctx context.Context, tx *Tx, req *fhir.Request, typ, id string, body []byte, create bool) *fhir.Response {
	if strings.Contains(string(body), `"invalid":true`) {
		return f.fail(fhir.Invalid(typ+".invalid", "fake validation failed"))
	}
	key := typ + "/" + id
	raw, err := setTopLevelString(body, "id", id)
	if err != nil {
		return f.fail(fhir.Invalid(typ, "%v", err))
	}
	cur := f.version(key)
	if im := req.Header.Get("If-Match"); im != "" && im != fmt.Sprintf(`W/"%d"`, cur) {
		return f.fail(fhir.Errorf(fhir.KindPreconditionFailed, "version mismatch").At("If-Match"))
	}
	kind := store.OpPut
	if create {
		kind = store.OpCreate
	}
	rec := store.Record{Type: typ, ID: id, VersionID: cur + 1, Raw: raw}
	if tx != nil {
		if tx.Reserved[key] {
			return f.fail(fhir.Errorf(fhir.KindInvalid, "%s touched twice", key))
		}
		tx.Reserved[key] = true
		tx.Ops = append(tx.Ops, store.Op{Kind: kind, Record: rec, IfVersion: cur})
	} else {
		f.mu.Lock()
		f.res[key] = raw
		f.ver[key] = cur + 1
		f.mu.Unlock()
	}
	status := 200
	if cur == 0 {
		status = 201
	}
	return &fhir.Response{Status: status, Body: raw, Header: f.headers(key, cur+1, status == 201)}
}

func (f *fake) Commit(ctx context.Context, tx *Tx) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commits++
	if f.commitErr != nil {
		return f.commitErr
	}
	for i, op := range tx.Ops {
		if f.ver[op.Record.Key()] != op.IfVersion {
			return &store.OpError{Index: i, Err: store.ErrConflict}
		}
	}
	for _, op := range tx.Ops {
		k := op.Record.Key()
		if op.Kind == store.OpDelete {
			f.res[k] = nil
		} else {
			f.res[k] = op.Record.Raw
		}
		f.ver[k]++
	}
	for _, fn := range tx.After {
		fn(ctx)
	}
	return nil
}

var _ Handler = (*fake)(nil)

var errBoom = errors.New("boom")
