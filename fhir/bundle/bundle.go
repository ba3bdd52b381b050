// Package bundle processes batch and transaction Bundles (R4
// http.html#transaction, bundle.html#transaction): it turns each entry into
// a fhir.Request that runs through the same pipeline as the equivalent HTTP
// request (the Handler), and answers with a batch-response or
// transaction-response Bundle.
//
// The body is checked by fhir.CheckJSON (no duplicate properties, the
// parser's limits) before it is decoded. An entry that is itself a batch
// or transaction (a POST to the base) is refused: in a transaction nothing
// runs, in a batch that entry answers 400.
//
// A transaction is all-or-nothing: entries are processed in the order
// DELETE, POST, PUT/PATCH, GET/HEAD (http.html#trules); fullUrl placeholders
// (urn:uuid:, urn:oid:, and absolute fullUrls of created resources) and
// conditional references are resolved and rewritten inside every resource
// before any entry runs; every write is prepared into one Tx and
// committed at once by Handler.Commit. A failed transaction answers with the
// failing entry's status and an OperationOutcome, not a Bundle.
package bundle

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

// Handler is what the bundle processor needs from the request pipeline.
type Handler interface {
	// Handle runs one interaction exactly as the same HTTP request would.
	// With a *Tx in ctx (WithTx), writes are validated and
	// prepared into tx.Ops (not committed) and the Response is what the
	// entry will return (201/200, Location, ETag, Last-Modified, Body).
	// Error responses have Status >= 400, Err set and an OperationOutcome Body.
	Handle(ctx context.Context, req *fhir.Request) *fhir.Response
	// Commit atomically applies tx.Ops (store.Transact) then runs tx.After.
	Commit(ctx context.Context, tx *Tx) error
	// Match runs a conditional search ("Patient?identifier=a|b": type +
	// query) with strict parsing and returns the "Type/id" keys of up to 2
	// matches (access rules applied).
	Match(ctx context.Context, resourceType string, query url.Values) ([]string, error)
	// Lock takes a lease on key (race-free conditional creates); unlock releases it.
	Lock(ctx context.Context, key string) (unlock func(), err error)
	NewID() string
}

// Options configure Process.
type Options struct {
	// MaxEntries is the most entries a Bundle may have (default 10000);
	// more is a 413.
	MaxEntries int
	// Base is the service base URL, e.g. http://localhost:8080/fhir, used to
	// read absolute entry.request.url values and to resolve references
	// (bundle.html#references).
	Base string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Prefer is the Prefer header of the Bundle request; it is passed to
	// every entry (http.html#return applies per entry).
	Prefer string
}

// DefaultMaxEntries is the default of Options.MaxEntries.
const DefaultMaxEntries = 10000

type wireBundle struct {
	ResourceType string      `json:"resourceType"`
	Type         string      `json:"type"`
	Entry        []wireEntry `json:"entry"`
}

type wireEntry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Request  *wireRequest    `json:"request"`
}

type wireRequest struct {
	Method          string `json:"method"`
	URL             string `json:"url"`
	IfNoneMatch     string `json:"ifNoneMatch"`
	IfModifiedSince string `json:"ifModifiedSince"`
	IfMatch         string `json:"ifMatch"`
	IfNoneExist     string `json:"ifNoneExist"`
}

// entry is one Bundle entry being processed.
type entry struct {
	i        int
	method   string
	path     string // relative to the base, no query
	query    url.Values
	fullURL  string
	resource []byte // entry.resource (rewritten in a transaction)
	body     []byte // the request body (for PATCH: the patch document)
	ctype    string
	hdr      wireRequest
	typ, id  string // target resource for instance-level requests and creates
	create   bool   // a type-level POST that creates a resource
	assign   string // Request.AssignID
	matched  string // a conditional create that matched: "Type/id", no write
	resp     *fhir.Response
	err      error // a parse error of this entry (batch reports it per entry)
	bodyIsOp bool  // body is the patch document, not entry.resource
	// reqMethod overrides method for the request (a conditional update that
	// matched nothing becomes a create); needID: the body gets id set.
	reqMethod string
	needID    bool
}

// Process runs a batch or transaction Bundle (http.html#transaction) and
// returns the response: 200 with a batch-response / transaction-response
// Bundle, or for a Bundle that cannot be processed (or a transaction that
// failed) the error status with an OperationOutcome.
func Process(ctx context.Context, h Handler, body []byte, opt Options) *fhir.Response {
	if opt.MaxEntries <= 0 {
		opt.MaxEntries = DefaultMaxEntries
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	opt.Base = strings.TrimRight(opt.Base, "/")
	// The fhir parser first: encoding/json keeps the last of two duplicate
	// properties silently (json.html forbids them) and nests 10,000 deep;
	// the Bundle gets the limits of every resource body.
	if err := fhir.CheckJSON(body, "Bundle"); err != nil {
		return errorResponse(err)
	}
	var b wireBundle
	if err := json.Unmarshal(body, &b); err != nil {
		return errorResponse(fhir.Errorf(fhir.KindInvalid, "the Bundle is not valid JSON: %v", err).Wrap(err))
	}
	if b.ResourceType != "Bundle" {
		return errorResponse(fhir.Invalid("resourceType", "expected a Bundle, got %q", b.ResourceType))
	}
	if b.Type != "batch" && b.Type != "transaction" {
		return errorResponse(fhir.Invalid("Bundle.type", "only a batch or transaction Bundle can be processed, not %q (http.html#transaction)", b.Type))
	}
	if len(b.Entry) > opt.MaxEntries {
		return errorResponse(fhir.Errorf(fhir.KindTooLarge, "the Bundle has %d entries; at most %d are allowed", len(b.Entry), opt.MaxEntries).At("Bundle.entry"))
	}
	p := &processor{h: h, opt: opt}
	entries := make([]*entry, len(b.Entry))
	for i := range b.Entry {
		entries[i] = p.parseEntry(i, &b.Entry[i])
	}
	if b.Type == "transaction" {
		for _, e := range entries {
			if e.err != nil {
				return errorResponse(e.err)
			}
		}
		if err := p.transaction(ctx, entries); err != nil {
			return errorResponse(err)
		}
		return p.response("transaction-response", entries)
	}
	p.batch(ctx, entries)
	return p.response("batch-response", entries)
}

type processor struct {
	h   Handler
	opt Options
}

func entryExpr(i int, rest string) string {
	s := fmt.Sprintf("Bundle.entry[%d]", i)
	if rest != "" {
		s += "." + rest
	}
	return s
}

// parseEntry checks one entry and builds what its request needs.
func (p *processor) parseEntry(i int, w *wireEntry) *entry {
	e := &entry{i: i, fullURL: w.FullURL, resource: w.Resource}
	if len(bytesTrim(e.resource)) == 0 || string(bytesTrim(e.resource)) == "null" {
		e.resource = nil
	}
	if w.Request == nil {
		e.err = fhir.Invalid(entryExpr(i, "request"), "entry %d has no request (required in a batch or transaction)", i)
		return e
	}
	e.hdr = *w.Request
	e.method = strings.ToUpper(w.Request.Method)
	switch e.method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	case "":
		e.err = fhir.Invalid(entryExpr(i, "request.method"), "entry %d has no request.method", i)
		return e
	default:
		e.err = fhir.Invalid(entryExpr(i, "request.method"), "entry %d: unknown request.method %q", i, w.Request.Method)
		return e
	}
	if w.Request.URL == "" {
		e.err = fhir.Invalid(entryExpr(i, "request.url"), "entry %d has no request.url", i)
		return e
	}
	path, query, err := p.splitURL(w.Request.URL)
	if err != nil {
		e.err = fhir.Invalid(entryExpr(i, "request.url"), "entry %d: request.url %q: %v", i, w.Request.URL, err)
		return e
	}
	if path == "" && e.method == http.MethodPost {
		// A POST to the base is itself a batch or transaction
		// (http.html#transaction); one inside another would run the
		// pipeline recursively and, in a transaction, commit on its own.
		e.err = fhir.Invalid(entryExpr(i, "request.url"), "entry %d: a POST to the base is a batch or transaction, which cannot be nested in a Bundle entry (http.html#transaction)", i)
		return e
	}
	e.path, e.query = path, query
	segs := strings.Split(path, "/")
	switch {
	case len(segs) == 1 && isTypeName(segs[0]):
		e.typ = segs[0]
		e.create = e.method == http.MethodPost
	case len(segs) == 2 && isTypeName(segs[0]) && segs[1] != "" && !strings.HasPrefix(segs[1], "$") && !strings.HasPrefix(segs[1], "_"):
		e.typ, e.id = segs[0], segs[1]
	}
	switch e.method {
	case http.MethodPost, http.MethodPut:
		if e.resource == nil && (e.create || e.method == http.MethodPut) {
			e.err = fhir.Invalid(entryExpr(i, "resource"), "entry %d: a %s needs a resource", i, e.method)
			return e
		}
		if e.resource != nil {
			if _, err := resourceType(e.resource); err != nil {
				e.err = fhir.Invalid(entryExpr(i, "resource"), "entry %d: %v", i, err)
				return e
			}
			e.body, e.ctype = e.resource, "application/fhir+json"
		}
	case http.MethodPatch:
		if e.resource == nil {
			e.err = fhir.Invalid(entryExpr(i, "resource"), "entry %d: a PATCH needs a Binary (JSON Patch) or Parameters (FHIRPath Patch) resource", i)
			return e
		}
		if err := e.patchBody(); err != nil {
			e.err = err
			return e
		}
	}
	return e
}

// patchBody reads the patch document of a PATCH entry (http.html#patch):
// a Binary holding a JSON Patch, or a Parameters resource (FHIRPath Patch).
func (e *entry) patchBody() error {
	rt, err := resourceType(e.resource)
	if err != nil {
		return fhir.Invalid(entryExpr(e.i, "resource"), "entry %d: %v", e.i, err)
	}
	switch rt {
	case "Parameters":
		e.body, e.ctype = e.resource, "application/fhir+json"
		return nil
	case "Binary":
		var bin struct {
			ContentType string `json:"contentType"`
			Data        string `json:"data"`
		}
		if err := json.Unmarshal(e.resource, &bin); err != nil {
			return fhir.Invalid(entryExpr(e.i, "resource"), "entry %d: bad Binary: %v", e.i, err)
		}
		ct := strings.TrimSpace(strings.SplitN(bin.ContentType, ";", 2)[0])
		if ct != "application/json-patch+json" {
			return fhir.Errorf(fhir.KindUnsupportedMedia, "entry %d: a PATCH Binary must have contentType application/json-patch+json, not %q", e.i, bin.ContentType).At(entryExpr(e.i, "resource.contentType"))
		}
		data, err := base64.StdEncoding.DecodeString(bin.Data)
		if err != nil {
			return fhir.Invalid(entryExpr(e.i, "resource.data"), "entry %d: Binary.data is not base64: %v", e.i, err)
		}
		e.body, e.ctype, e.bodyIsOp = data, ct, true
		return nil
	}
	return fhir.Invalid(entryExpr(e.i, "resource"), "entry %d: a PATCH entry carries a Binary (JSON Patch) or a Parameters (FHIRPath Patch), not a %s", e.i, rt)
}

func bytesTrim(b []byte) []byte { return []byte(strings.TrimSpace(string(b))) }

func resourceType(raw []byte) (string, error) {
	var r struct {
		ResourceType string `json:"resourceType"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", fmt.Errorf("the resource is not a JSON object: %w", err)
	}
	if r.ResourceType == "" {
		return "", fmt.Errorf("the resource has no resourceType")
	}
	return r.ResourceType, nil
}

// isTypeName reports whether s looks like a resource type name.
func isTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// splitURL reads entry.request.url: relative to the base, or absolute
// starting with the base (the base itself included).
func (p *processor) splitURL(raw string) (string, url.Values, error) {
	u := raw
	if i := strings.Index(u, "://"); i > 0 && !strings.ContainsAny(u[:i], "/?") {
		b := p.opt.Base
		if b == "" || !(u == b || strings.HasPrefix(u, b+"/") || strings.HasPrefix(u, b+"?")) {
			return "", nil, fmt.Errorf("an absolute url must start with this server's base %q", p.opt.Base)
		}
		u = u[len(p.opt.Base):]
	}
	u = strings.TrimLeft(u, "/")
	path, rawQuery, _ := strings.Cut(u, "?")
	if strings.Contains(path, "#") {
		return "", nil, fmt.Errorf("a fragment is not allowed")
	}
	path = strings.TrimRight(path, "/")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", nil, fmt.Errorf("bad query: %w", err)
	}
	return path, q, nil
}

// request builds the fhir.Request of e.
func (p *processor) request(e *entry) *fhir.Request {
	h := http.Header{}
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	set("If-Match", e.hdr.IfMatch)
	set("If-None-Match", e.hdr.IfNoneMatch)
	set("If-Modified-Since", e.hdr.IfModifiedSince)
	set("If-None-Exist", e.hdr.IfNoneExist)
	set("Prefer", p.opt.Prefer)
	if e.body != nil {
		set("Content-Type", e.ctype)
	}
	q := e.query
	if q == nil {
		q = url.Values{}
	}
	method := e.method
	if e.reqMethod != "" {
		method = e.reqMethod
	}
	return &fhir.Request{Method: method, Path: e.path, Query: q, Header: h, Body: e.body, Entry: e.i, AssignID: e.assign}
}

// batch runs each entry on its own (http.html#transaction: batch); GET and
// HEAD entries run last so reads see the batch's writes.
func (p *processor) batch(ctx context.Context, entries []*entry) {
	ctx = WithTx(ctx, nil)
	run := func(e *entry) {
		if e.err != nil {
			e.resp = failed(e, e.err)
			return
		}
		resp := p.h.Handle(ctx, p.request(e))
		if resp == nil {
			resp = failed(e, fhir.Errorf(fhir.KindInternal, "entry %d produced no response", e.i))
		}
		if resp.Status >= 400 || resp.Err != nil {
			resp = failed(e, respErr(resp))
		}
		e.resp = resp
	}
	// Writes run batchParallel at a time, like as many HTTP requests (the
	// store commits them together); entries naming the same resource or
	// the same condition run one after the other, in Bundle order.
	chains := map[string][]*entry{}
	var order []string
	for _, e := range entries {
		if e.method == http.MethodGet || e.method == http.MethodHead {
			continue
		}
		k := batchKey(e)
		if _, ok := chains[k]; !ok {
			order = append(order, k)
		}
		chains[k] = append(chains[k], e)
	}
	work := make(chan []*entry)
	var wg sync.WaitGroup
	for range min(batchParallel, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chain := range work {
				for _, e := range chain {
					run(e)
				}
			}
		}()
	}
	for _, k := range order {
		work <- chains[k]
	}
	close(work)
	wg.Wait()
	for _, e := range entries {
		if e.method == http.MethodGet || e.method == http.MethodHead {
			run(e)
		}
	}
}

// batchParallel is how many write entries of a batch run at once.
const batchParallel = 4

// batchKey names what a batch write entry changes: its resource, its
// condition, or (a create without one) nothing another entry names.
func batchKey(e *entry) string {
	switch {
	case e.err != nil || e.typ == "":
		return "entry/" + strconv.Itoa(e.i)
	case e.create && e.hdr.IfNoneExist != "":
		if q, err := ifNoneExist(e); err == nil && len(q) > 0 {
			return "cond/" + ConditionKey(e.typ, q) // the key its lock takes
		}
		return "entry/" + strconv.Itoa(e.i) // refused when it runs
	case e.id != "":
		return "res/" + e.typ + "/" + e.id
	case len(e.query) > 0:
		return "cond/" + ConditionKey(e.typ, e.query)
	}
	return "entry/" + strconv.Itoa(e.i)
}

// respErr is the error of a failed Response.
func respErr(r *fhir.Response) error {
	if r.Err != nil {
		return r.Err
	}
	kind := fhir.KindInternal
	for k := fhir.KindInternal; k <= fhir.KindUnavailable; k++ {
		if k.Status() == r.Status {
			kind = k
			break
		}
	}
	return fhir.Errorf(kind, "%s", http.StatusText(r.Status))
}

// failed is the per-entry response of a failed batch entry.
func failed(e *entry, err error) *fhir.Response {
	fe := entryError(e, err)
	status, oo := fhir.Outcome(fe)
	body, _ := json.Marshal(oo)
	return &fhir.Response{Status: status, Body: body, Err: fe}
}

// entryError re-roots the issues of an entry's error on the Bundle:
// expressions on the resource become Bundle.entry[i].resource..., others
// Bundle.entry[i]..., and diagnostics name the entry.
func entryError(e *entry, err error) *fhir.Error {
	fe := fhir.AsError(err)
	out := &fhir.Error{Kind: fe.Kind, Header: fe.Header, Cause: fe.Cause}
	if out.Cause == nil && fe != err {
		out.Cause = err
	}
	issues := fe.Issues
	if len(issues) == 0 {
		issues = []fhir.Issue{{Severity: "error", Code: fe.Kind.IssueCode(), Diagnostics: http.StatusText(fe.Kind.Status())}}
	}
	prefix := fmt.Sprintf("Bundle.entry[%d]", e.i)
	label := prefix
	if e.method != "" {
		label += " (" + e.method + " " + e.hdr.URL + ")"
	}
	rt, _ := resourceType(e.resource)
	for _, is := range issues {
		n := is
		if !strings.HasPrefix(n.Diagnostics, prefix) {
			n.Diagnostics = label + ": " + n.Diagnostics
		}
		n.Expression = nil
		for _, x := range is.Expression {
			n.Expression = append(n.Expression, rerootExpr(x, prefix, rt, e.typ))
		}
		if len(n.Expression) == 0 {
			n.Expression = []string{prefix}
		}
		out.Issues = append(out.Issues, n)
	}
	return out
}

var headerExpr = map[string]string{
	"if-match": "request.ifMatch", "if-none-match": "request.ifNoneMatch",
	"if-modified-since": "request.ifModifiedSince", "if-none-exist": "request.ifNoneExist",
}

func rerootExpr(x, prefix, rt, typ string) string {
	if strings.HasPrefix(x, "Bundle.entry[") {
		return x
	}
	root, rest := x, ""
	if i := strings.IndexAny(x, ".["); i >= 0 {
		root, rest = x[:i], x[i:]
	}
	if root != "" && (root == rt || root == typ || root == "Resource") {
		return prefix + ".resource" + rest
	}
	if h, ok := headerExpr[strings.ToLower(x)]; ok {
		return prefix + "." + h
	}
	return prefix + ".request"
}

func errorResponse(err error) *fhir.Response {
	status, oo := fhir.Outcome(err)
	body, _ := json.Marshal(oo)
	return &fhir.Response{Status: status, Body: body, Err: err, Header: http.Header{}}
}

// commitError maps a Commit failure to the client: a version conflict or
// a held lock is a 409 (store errors know their kind), anything else keeps
// its kind (500 when unknown).
func commitError(err error) error { return fhir.AsError(err) }

// ConditionKey is the normalised lock key of a conditional create or
// update of resourceType with query: parameters and their values sorted, so
// that equivalent conditions in any order take the same lease. The REST
// pipeline should lock the same key for conditional creates of single
// requests so both are race-free against each other.
func ConditionKey(resourceType string, query url.Values) string {
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("cond:" + resourceType + "?")
	for i, k := range keys {
		vs := append([]string(nil), query[k]...)
		sort.Strings(vs)
		for j, v := range vs {
			if i > 0 || j > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(v))
		}
	}
	return b.String()
}
