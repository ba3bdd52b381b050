package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
)

// rank is the processing order of a transaction (http.html#trules):
// DELETE, then POST, then PUT and PATCH, then GET and HEAD.
func rank(method string) int {
	switch method {
	case http.MethodDelete:
		return 0
	case http.MethodPost:
		return 1
	case http.MethodPut, http.MethodPatch:
		return 2
	}
	return 3
}

func isRead(e *entry) bool { return e.method == http.MethodGet || e.method == http.MethodHead }

// txState is the identity bookkeeping of one transaction.
type txState struct {
	p *processor
	// ph maps a fullUrl (urn:uuid:, urn:oid:, or absolute) to "Type/id".
	ph map[string]string
	// condRefs caches resolved conditional references by ConditionKey.
	condRefs map[string]string
}

// transaction runs entries as one all-or-nothing transaction. On success
// every entry has its resp; on failure nothing was committed.
func (p *processor) transaction(ctx context.Context, entries []*entry) error {
	st := &txState{p: p, ph: map[string]string{}, condRefs: map[string]string{}}

	// fullUrl must be unique within the Bundle (bundle.html#bundle-unique).
	seen := map[string]int{}
	for _, e := range entries {
		if e.fullURL == "" {
			continue
		}
		if j, dup := seen[e.fullURL]; dup {
			return fhir.Invalid(entryExpr(e.i, "fullUrl"), "entry %d: fullUrl %q is also the fullUrl of entry %d", e.i, e.fullURL, j)
		}
		seen[e.fullURL] = e.i
	}

	// Ids of plain creates are chosen now so that placeholders can be
	// rewritten before any entry runs; PUT and PATCH entries resolve to
	// their url.
	for _, e := range entries {
		switch {
		case e.create && e.hdr.IfNoneExist == "":
			e.id = p.h.NewID()
			e.assign = e.id
			st.bind(e, e.typ+"/"+e.id)
		case (e.method == http.MethodPut || e.method == http.MethodPatch) && e.id != "":
			st.bind(e, e.typ+"/"+e.id)
		}
	}

	// Placeholders in conditional urls (Observation?subject=urn:uuid:...).
	for _, e := range entries {
		st.rewriteQuery(e.query)
	}

	// Conditional creates and updates: lock every condition first, in
	// sorted order (no deadlock between transactions), until the end.
	conds := map[*entry]url.Values{}
	lockKeys := map[string]bool{}
	for _, e := range entries {
		var q url.Values
		switch {
		case e.create && e.hdr.IfNoneExist != "":
			var err error
			if q, err = ifNoneExist(e); err != nil || len(q) == 0 {
				return fhir.Invalid(entryExpr(e.i, "request.ifNoneExist"), "entry %d: ifNoneExist %q is not a search query", e.i, e.hdr.IfNoneExist)
			}
			st.rewriteQuery(q)
		case e.method == http.MethodPut && e.id == "" && e.typ != "" && len(e.query) > 0:
			q = e.query
		default:
			continue
		}
		conds[e] = q
		lockKeys[ConditionKey(e.typ, q)] = true
	}
	keys := make([]string, 0, len(lockKeys))
	for k := range lockKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var unlocks []func()
	defer func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}()
	for _, k := range keys {
		unlock, err := p.h.Lock(ctx, k)
		if err != nil {
			return commitError(err)
		}
		if unlock != nil {
			unlocks = append(unlocks, unlock)
		}
	}

	if err := st.resolveConditionals(ctx, entries, conds); err != nil {
		return err
	}

	// A resource may be touched by one entry only (http.html#trules).
	touched := map[string]int{}
	for _, e := range entries {
		if isRead(e) || e.matched != "" || e.id == "" || e.typ == "" {
			continue
		}
		if e.method == http.MethodPost && !e.create {
			continue
		}
		k := e.typ + "/" + e.id
		if j, dup := touched[k]; dup {
			return fhir.Invalid(entryExpr(e.i, "request"), "entry %d: %s is also changed by entry %d; a transaction may touch a resource only once", e.i, k, j)
		}
		touched[k] = e.i
	}

	// Rewrite placeholders and conditional references in every resource.
	for _, e := range entries {
		if e.resource == nil {
			continue
		}
		if rt, _ := resourceType(e.resource); rt == "Bundle" {
			// A document or message Bundle keeps its own urn:uuid references.
			continue
		}
		res, err := rewriteStrings(e.resource, st.refFunc(ctx, e))
		if err != nil {
			return entryError(e, asInvalid(err, entryExpr(e.i, "resource")))
		}
		e.resource = res
		if e.bodyIsOp {
			if e.body, err = rewriteStrings(e.body, st.refFunc(ctx, e)); err != nil {
				return entryError(e, asInvalid(err, entryExpr(e.i, "resource.data")))
			}
		} else if e.body != nil {
			e.body = res
		}
		if e.needID {
			if e.body, err = setTopLevelString(e.body, "id", e.id); err != nil {
				return entryError(e, fhir.Invalid(entryExpr(e.i, "resource"), "%v", err))
			}
		}
	}

	// Run the writes in transaction order into one Tx, then commit.
	order := make([]*entry, 0, len(entries))
	for _, e := range entries {
		if !isRead(e) {
			order = append(order, e)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return rank(order[a].method) < rank(order[b].method) })
	tx := &Tx{Reserved: map[string]bool{}}
	tctx := WithTx(ctx, tx)
	for _, e := range order {
		if e.matched != "" {
			e.resp = &fhir.Response{Status: http.StatusOK, Header: http.Header{"Location": {p.location(e.matched)}}}
			continue
		}
		resp := p.h.Handle(tctx, p.request(e))
		if resp == nil {
			return entryError(e, fhir.Errorf(fhir.KindInternal, "no response"))
		}
		if resp.Status >= 400 || resp.Err != nil {
			return entryError(e, respErr(resp))
		}
		e.resp = resp
	}
	if err := p.h.Commit(ctx, tx); err != nil {
		return commitError(err)
	}

	// Reads run after the commit and see its result; a failed read does
	// not undo the transaction and is reported in its entry.
	rctx := WithTx(ctx, nil)
	for _, e := range entries {
		if !isRead(e) {
			continue
		}
		resp := p.h.Handle(rctx, p.request(e))
		if resp == nil {
			resp = failed(e, fhir.Errorf(fhir.KindInternal, "no response"))
		} else if resp.Status >= 400 || resp.Err != nil {
			resp = failed(e, respErr(resp))
		}
		e.resp = resp
	}
	return nil
}

func (p *processor) location(key string) string {
	if p.opt.Base == "" {
		return key
	}
	return p.opt.Base + "/" + key
}

// bind makes e's fullUrl a placeholder for key.
func (st *txState) bind(e *entry, key string) {
	if e.fullURL != "" {
		st.ph[e.fullURL] = key
	}
}

func (st *txState) rewriteQuery(q url.Values) {
	for k, vs := range q {
		for i, v := range vs {
			if r, ok := st.ph[v]; ok {
				q[k][i] = r
			}
		}
	}
}

// ifNoneExist parses e's request.ifNoneExist ("[Type?]query", a leading
// "?" allowed).
func ifNoneExist(e *entry) (url.Values, error) {
	raw := strings.TrimPrefix(e.hdr.IfNoneExist, "?")
	if t, rest, ok := strings.Cut(raw, "?"); ok && t == e.typ {
		raw = rest
	}
	return url.ParseQuery(raw)
}

// resolveConditionals resolves conditional creates (ifNoneExist,
// http.html#ccreate), conditional updates (http.html#cond-update) and
// conditional patches to concrete identities.
func (st *txState) resolveConditionals(ctx context.Context, entries []*entry, conds map[*entry]url.Values) error {
	p := st.p
	created := map[string]string{} // ConditionKey -> resolved key, for repeated conditions
	for _, e := range entries {
		q, ok := conds[e]
		if !ok {
			if e.method == http.MethodPatch && e.id == "" && e.typ != "" && len(e.query) > 0 {
				keys, err := p.h.Match(ctx, e.typ, e.query)
				if err != nil {
					return entryError(e, err)
				}
				switch len(keys) {
				case 0:
					return entryError(e, fhir.Errorf(fhir.KindNotFound, "no %s matches the conditional patch %s", e.typ, e.hdr.URL))
				case 1:
					e.typ, e.id = splitKey(keys[0])
					e.path, e.query = keys[0], nil
					st.bind(e, keys[0])
				default:
					return entryError(e, fhir.Errorf(fhir.KindPreconditionFailed, "more than one %s matches the conditional patch %s", e.typ, e.hdr.URL))
				}
			}
			continue
		}
		ck := ConditionKey(e.typ, q)
		if e.create {
			if prev, ok := created[ck]; ok {
				e.matched = prev
				st.bind(e, prev)
				continue
			}
			keys, err := p.h.Match(ctx, e.typ, q)
			if err != nil {
				return entryError(e, err)
			}
			switch len(keys) {
			case 0:
				e.id = p.h.NewID()
				e.assign = e.id
				// Resolved here under the lock; the pipeline must not search again.
				e.hdr.IfNoneExist = ""
				st.bind(e, e.typ+"/"+e.id)
				created[ck] = e.typ + "/" + e.id
			case 1:
				e.matched = keys[0]
				st.bind(e, keys[0])
				created[ck] = keys[0]
			default:
				return entryError(e, fhir.Errorf(fhir.KindPreconditionFailed, "ifNoneExist %q matches more than one %s (http.html#ccreate)", e.hdr.IfNoneExist, e.typ).At(entryExpr(e.i, "request.ifNoneExist")))
			}
			continue
		}
		// Conditional update.
		keys, err := p.h.Match(ctx, e.typ, q)
		if err != nil {
			return entryError(e, err)
		}
		bodyID := topLevelID(e.resource)
		switch len(keys) {
		case 0:
			if bodyID != "" {
				e.id = bodyID // update as create with the client's id
				e.path, e.query = e.typ+"/"+bodyID, nil
			} else {
				e.id = p.h.NewID()
				e.assign = e.id
				e.reqMethod = http.MethodPost
				e.path, e.query = e.typ, nil
			}
		case 1:
			_, id := splitKey(keys[0])
			if bodyID != "" && bodyID != id {
				return entryError(e, fhir.Invalid(entryExpr(e.i, "resource.id"), "the resource id %q differs from the id %q of the resource the condition matches (http.html#cond-update)", bodyID, id))
			}
			e.id = id
			e.path, e.query = e.typ+"/"+id, nil
			e.needID = bodyID == ""
		default:
			return entryError(e, fhir.Errorf(fhir.KindPreconditionFailed, "the conditional update %s matches more than one %s (http.html#cond-update)", e.hdr.URL, e.typ))
		}
		st.bind(e, e.typ+"/"+e.id)
	}
	return nil
}

// asInvalid keeps a *fhir.Error and turns anything else (a JSON syntax
// error) into a 400 at expr.
func asInvalid(err error, expr string) error {
	var fe *fhir.Error
	if errors.As(err, &fe) {
		return fe
	}
	return fhir.Invalid(expr, "%v", err).Wrap(err)
}

func splitKey(k string) (string, string) {
	t, id, _ := strings.Cut(k, "/")
	return t, id
}

func topLevelID(raw []byte) string {
	var r struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &r)
	return r.ID
}

// entryBase is the base that relative references inside e resolve
// against (bundle.html#references): the base of an absolute RESTful
// fullUrl, else the server's base.
func (st *txState) entryBase(e *entry) string {
	if m := restfulURL.FindStringSubmatch(e.fullURL); m != nil {
		return m[1]
	}
	return st.p.opt.Base
}

var (
	restfulURL = regexp.MustCompile(`^(https?://.+)/[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$`)
	relRef     = regexp.MustCompile(`^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$`)
	// divAttr finds href and src attributes in narrative XHTML.
	divAttr = regexp.MustCompile(`(?i)(\b(?:href|src)\s*=\s*)("[^"]*"|'[^']*')`)
)

// mayHaveLink is a cheap pre-check before the attribute regexp.
func mayHaveLink(s string) bool {
	for i := 0; i+3 <= len(s); i++ {
		switch s[i] | 0x20 {
		case 'r':
			if s[i+1]|0x20 == 'e' && s[i+2]|0x20 == 'f' {
				return true
			}
		case 's':
			if s[i+1]|0x20 == 'r' && s[i+2]|0x20 == 'c' {
				return true
			}
		}
	}
	return false
}

func isPlaceholder(s string) bool {
	return strings.HasPrefix(s, "urn:uuid:") || strings.HasPrefix(s, "urn:oid:")
}

// refFunc rewrites the string values of e's resource (bundle.html#references):
// Reference.reference values that are placeholders, resolve relative to the
// entry's base to a placeholder, or are conditional references; other
// (uri / canonical) values equal to a placeholder; and href / src in the
// narrative div. Identifier.value and other "value" strings are data and
// are never rewritten.
func (st *txState) refFunc(ctx context.Context, e *entry) stringFunc {
	base := st.entryBase(e)
	return func(path []seg, s string) (string, bool, error) {
		switch lastKey(path) {
		case "reference":
			return st.resolveRef(ctx, e, base, path, s)
		case "div":
			if len(st.ph) == 0 || !mayHaveLink(s) {
				return s, false, nil
			}
			out := divAttr.ReplaceAllStringFunc(s, func(attr string) string {
				m := divAttr.FindStringSubmatch(attr)
				q := m[2][:1]
				v := m[2][1 : len(m[2])-1]
				if r, ok := st.lookup(base, v); ok {
					return m[1] + q + r + q
				}
				return attr
			})
			return out, out != s, nil
		case "value", "fullUrl":
			return s, false, nil
		}
		if r, ok := st.ph[s]; ok {
			return r, r != s, nil
		}
		return s, false, nil
	}
}

// lookup finds the placeholder a reference value stands for.
func (st *txState) lookup(base, s string) (string, bool) {
	if r, ok := st.ph[s]; ok {
		return r, true
	}
	if base != "" && relRef.MatchString(s) {
		if r, ok := st.ph[base+"/"+s]; ok {
			return r, true
		}
	}
	return "", false
}

func (st *txState) resolveRef(ctx context.Context, e *entry, base string, path []seg, s string) (string, bool, error) {
	if s == "" || s[0] == '#' {
		return s, false, nil
	}
	if r, ok := st.lookup(base, s); ok {
		return r, r != s, nil
	}
	expr := entryExpr(e.i, "resource."+jsonPath(path))
	if e.bodyIsOp {
		expr = entryExpr(e.i, "resource.data")
	}
	if isPlaceholder(s) {
		return "", false, fhir.Invalid(expr, "reference %q is not the fullUrl of any entry of this Bundle", s)
	}
	typ, rawQuery, ok := strings.Cut(s, "?")
	if !ok || !isTypeName(typ) {
		return s, false, nil
	}
	// A conditional reference (http.html#trules): exactly one match.
	q, err := url.ParseQuery(rawQuery)
	if err != nil || len(q) == 0 {
		return "", false, fhir.Invalid(expr, "conditional reference %q has a bad query", s)
	}
	st.rewriteQuery(q)
	ck := ConditionKey(typ, q)
	if r, ok := st.condRefs[ck]; ok {
		return r, true, nil
	}
	keys, err := st.p.h.Match(ctx, typ, q)
	if err != nil {
		fe := fhir.AsError(err)
		out := &fhir.Error{Kind: fe.Kind, Cause: fe.Cause}
		for _, is := range fe.Issues {
			is.Diagnostics = "conditional reference " + s + ": " + is.Diagnostics
			is.Expression = []string{expr}
			out.Issues = append(out.Issues, is)
		}
		return "", false, out
	}
	switch len(keys) {
	case 1:
		st.condRefs[ck] = keys[0]
		return keys[0], true, nil
	case 0:
		return "", false, fhir.Errorf(fhir.KindPreconditionFailed, "conditional reference %q matches no resource", s).At(expr)
	}
	return "", false, fhir.Errorf(fhir.KindPreconditionFailed, "conditional reference %q matches more than one resource", s).At(expr)
}
