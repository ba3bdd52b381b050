// Package subscription implements FHIR R4 Subscriptions (subscription.html)
// for apps: rest-hook channels only, with the payloads of the Subscriptions
// R5 Backport IG (backport-payload-content `empty` or `id-only`; never
// `full-resource`, so no personal health information travels to an
// endpoint), delivered by the notification outbox (notify.Worker).
//
//   - Prepare validates a Subscription a client writes and takes over its
//     status: every client write makes it `requested` (or leaves it `off`).
//   - The owner's access rights (the SMART principal that wrote it, minus
//     its token) are kept in notify storage, not in the resource; a
//     version is notified only when the owner could find it by a search
//     now (Config.Visible: scopes, patient compartment, proxy grants,
//     release rules), so a patient app is never told another patient's
//     resource ids, nor of a held result before its release.
//   - OnVersion (the change feed's Subscriptions callback) sends the
//     handshake of each requested Subscription (a notification Bundle of
//     type `handshake`) and, for each committed version matching an active
//     Subscription's criteria, one event notification (Bundle type
//     `history`, first entry the SubscriptionStatus Parameters,
//     backport-subscription-status-r4).
//   - A deleted resource is notified when its last version matched the
//     criteria and was visible to the owner (the id-only entry's request
//     is a DELETE).
//   - Subscription.end: the server turns the Subscription `off` at end
//     and notifies nothing after it.
//   - Done (the delivery worker's callback) makes the Subscription
//     `active` after its handshake was delivered, `error` when the
//     handshake or a notification could not be delivered.
//   - Status and Events answer the backport IG's $status and $events
//     operations from the event log kept in notify storage.
package subscription

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/notify/feed"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// Canonical URLs of the Subscriptions R5 Backport IG (STU 1.1).
const (
	ProfileSubscription = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"
	ExtPayloadContent   = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
	ProfileStatus       = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
	ProfileNotification = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4"
	// ExtPatient links a Subscription written by a patient-facing app to
	// the patient it acts for, so the Subscription is in that patient's
	// compartment (the app can write, read and search it; no other
	// patient can). The server sets it; the search parameter
	// PatientParam indexes it.
	ExtPatient = "http://fhirgate.dev/StructureDefinition/subscription-patient"
)

// PatientParam is the SearchParameter (Subscription "patient") that puts
// a patient app's Subscription in the patient's compartment.
const PatientParam = `{"resourceType":"SearchParameter","url":"http://fhirgate.dev/SearchParameter/Subscription-patient",` +
	`"name":"patient","code":"patient","status":"active","base":["Subscription"],"type":"reference","target":["Patient"],` +
	`"expression":"Subscription.extension('` + ExtPatient + `').value",` +
	`"description":"The patient a patient-facing app's Subscription acts for (set by the server)."}`

// Payload contents (backport-content-code-system).
const (
	Empty  = "empty"
	IDOnly = "id-only"
)

// Config wires an Engine.
type Config struct {
	Store    store.Store
	Storage  notify.Storage
	Outbox   notify.Outbox
	Registry *search.Registry
	// Base is the public FHIR base URL (references in notifications).
	Base string
	// Visible reports whether principal p could find rec by a search now
	// (fhir/server.Server.Visible); p nil: authorization is disabled.
	Visible func(ctx context.Context, p *smart.Principal, rec store.Record) (bool, error)
	// Derive computes the search values and release state of a version
	// the engine writes itself (a status change; fhir/server.Server.Derive).
	Derive func(ctx context.Context, typ string, m map[string]any, lastUpdated time.Time, prev *store.Release) (search.Index, store.Release, error)
	// HandshakeWindow: a handshake not delivered this long after it was
	// enqueued makes the Subscription `error` (default 10 min).
	HandshakeWindow time.Duration
	// Refresh: how often the active Subscriptions are read again from the
	// store besides the versions the feed shows (default 30 s).
	Refresh time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
}

// Engine matches committed versions against Subscriptions.
type Engine struct {
	c      Config
	mu     sync.Mutex
	subs   map[string]*sub // by id: the latest version seen
	loaded time.Time       // wall time of the last full load
}

// New returns an Engine.
func New(c Config) *Engine {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HandshakeWindow == 0 {
		c.HandshakeWindow = 10 * time.Minute
	}
	if c.Refresh == 0 {
		c.Refresh = 30 * time.Second
	}
	c.Base = strings.TrimRight(c.Base, "/")
	return &Engine{c: c, subs: map[string]*sub{}}
}

// sub is a parsed Subscription version.
type sub struct {
	ID       string
	Vid      int64
	Status   string
	Type     string          // the criteria's resource type
	match    *search.Matcher // the criteria's conditions
	Content  string          // Empty or IDOnly
	Endpoint string
	Headers  map[string]string
	End      time.Time // Subscription.end (zero: none)
}

// ended reports whether s is past its end at now.
func (s *sub) ended(now time.Time) bool { return !s.End.IsZero() && !now.Before(s.End) }

// wire is the part of an R4 Subscription the engine reads.
type wire struct {
	Status   string `json:"status"`
	Criteria string `json:"criteria"`
	End      string `json:"end"`
	Channel  struct {
		Type     string   `json:"type"`
		Endpoint string   `json:"endpoint"`
		Payload  *string  `json:"payload"`
		Header   []string `json:"header"`
		// _payload carries the backport payload-content extension.
		PayloadExt *struct {
			Extension []struct {
				URL       string `json:"url"`
				ValueCode string `json:"valueCode"`
			} `json:"extension"`
		} `json:"_payload"`
	} `json:"channel"`
}

func unprocessable(expr, format string, args ...any) error {
	e := fhir.Errorf(fhir.KindUnprocessable, format, args...)
	if expr != "" {
		e.At(expr)
	}
	return e
}

// parse validates a Subscription (R4 subscription.html with the backport
// profile's payload content) and returns what the engine needs of it.
func (e *Engine) parse(raw []byte) (*sub, error) {
	var w wire
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, fhir.Invalid("Subscription", "invalid Subscription: %v", err)
	}
	s := &sub{Status: w.Status}
	if w.End != "" {
		end, err := time.Parse(time.RFC3339Nano, w.End)
		if err != nil {
			return nil, unprocessable("Subscription.end", "the end must be an instant with a time zone (e.g. 2027-01-01T00:00:00Z), not %q", w.End)
		}
		s.End = end
	}
	if w.Channel.Type != "rest-hook" {
		return nil, unprocessable("Subscription.channel.type", "only rest-hook channels are supported, not %q", w.Channel.Type)
	}
	u, err := url.Parse(w.Channel.Endpoint)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, unprocessable("Subscription.channel.endpoint", "the endpoint must be an absolute https URL, not %q", w.Channel.Endpoint)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && loopback(u.Hostname())) {
		return nil, unprocessable("Subscription.channel.endpoint", "the endpoint must be an https URL (http only to localhost), not %q", w.Channel.Endpoint)
	}
	s.Endpoint = w.Channel.Endpoint
	// R4: payload is the MIME type to send, absent for no payload; the
	// backport extension on it says how much (backport-payload-content).
	content := Empty
	if w.Channel.Payload != nil {
		mt := strings.TrimSpace(strings.Split(*w.Channel.Payload, ";")[0])
		if mt != "application/fhir+json" && mt != "application/json" {
			return nil, unprocessable("Subscription.channel.payload", "the payload must be application/fhir+json, not %q", *w.Channel.Payload)
		}
		content = ""
		if w.Channel.PayloadExt != nil {
			for _, x := range w.Channel.PayloadExt.Extension {
				if x.URL == ExtPayloadContent {
					content = x.ValueCode
				}
			}
		}
		switch content {
		case Empty, IDOnly:
		case "":
			return nil, unprocessable("Subscription.channel.payload", "a payload without the backport-payload-content extension means the full resource, which this server never sends: add the extension %s with empty or id-only", ExtPayloadContent)
		case "full-resource":
			return nil, unprocessable("Subscription.channel.payload", "full-resource payloads are not supported (no health information is sent to endpoints): use id-only or empty")
		default:
			return nil, unprocessable("Subscription.channel.payload", "unknown payload content %q (empty, id-only)", content)
		}
	}
	s.Content = content
	for i, h := range w.Channel.Header {
		k, v, ok := strings.Cut(h, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || strings.ContainsAny(k, " \t\r\n") || strings.ContainsAny(v, "\r\n") {
			return nil, unprocessable(fmt.Sprintf("Subscription.channel.header[%d]", i), "a header is \"Name: value\"")
		}
		switch strings.ToLower(k) {
		case "content-type", "content-length", "host", "transfer-encoding", "connection":
			return nil, unprocessable(fmt.Sprintf("Subscription.channel.header[%d]", i), "the header %s is the server's", k)
		}
		if s.Headers == nil {
			s.Headers = map[string]string{}
		}
		s.Headers[k] = v
	}
	typ, query, _ := strings.Cut(w.Criteria, "?")
	if typ == "" || !e.c.Registry.IsResourceType(typ) {
		return nil, unprocessable("Subscription.criteria", "the criteria must be a search URL of a resource type, like Observation?code=http://loinc.org|8867-4, not %q", w.Criteria)
	}
	if slices.Contains(feed.Unfed, typ) {
		return nil, unprocessable("Subscription.criteria", "%s cannot be subscribed to (the change feed does not carry it: one is written per request); search it instead", typ)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, unprocessable("Subscription.criteria", "the criteria's query is malformed: %v", err)
	}
	p, err := e.c.Registry.Parse(typ, q, search.ParseOptions{Strict: true, Now: e.c.Now, Base: e.c.Base})
	if err != nil {
		return nil, unprocessable("Subscription.criteria", "the criteria is not a valid search: %v", err)
	}
	if len(p.Chains) > 0 || len(p.Has) > 0 || len(p.Include) > 0 || len(p.RevInclude) > 0 || len(p.Sort) > 0 || p.Summary != "" || len(p.Elements) > 0 {
		return nil, unprocessable("Subscription.criteria", "the criteria may only hold conditions on the resource itself (no chains, _has, _include, _sort, _summary, _elements)")
	}
	m, err := search.NewMatcher(p.Filter)
	if err != nil {
		return nil, unprocessable("Subscription.criteria", "the criteria cannot be evaluated: %v", err)
	}
	s.Type, s.match = typ, m
	return s, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Owner is the access a Subscription's notifications are decided with:
// the principal that last wrote it, without its token.
type Owner struct {
	// Unrestricted: written with authorization disabled.
	Unrestricted bool   `json:"unrestricted,omitempty"`
	Issuer       string `json:"iss,omitempty"`
	Subject      string `json:"sub,omitempty"`
	ClientID     string `json:"client_id,omitempty"`
	Scope        string `json:"scope,omitempty"`
	Patient      string `json:"patient,omitempty"`
	FHIRUser     string `json:"fhirUser,omitempty"`
}

func ownerOf(p *smart.Principal) Owner {
	if p == nil {
		return Owner{Unrestricted: true}
	}
	raw := make([]string, len(p.Scopes))
	for i, s := range p.Scopes {
		raw[i] = s.Raw
	}
	return Owner{Issuer: p.Issuer, Subject: p.Subject, ClientID: p.ClientID, Scope: strings.Join(raw, " "), Patient: p.Patient, FHIRUser: p.FHIRUser}
}

// Principal rebuilds the principal (nil when Unrestricted).
func (o Owner) Principal() (*smart.Principal, error) {
	if o.Unrestricted {
		return nil, nil
	}
	sc, err := smart.ParseScopes(o.Scope)
	if err != nil {
		return nil, fmt.Errorf("subscription: owner scopes: %w", err)
	}
	return &smart.Principal{Issuer: o.Issuer, Subject: o.Subject, ClientID: o.ClientID, Scopes: sc, Patient: o.Patient, FHIRUser: o.FHIRUser}, nil
}

func ownerState(id string) string  { return "subscription/" + id + "/owner" }
func eventsState(id string) string { return "subscription/" + id + "/events" }

// Write is a client's write of a Subscription (fhir/server.WriteCall).
type Write struct {
	ID            string
	Object        *fhir.Object
	Principal     *smart.Principal
	PatientFacing bool
	Patients      []string
}

// Prepare validates the Subscription a client writes, sets its status
// (`requested`, or `off` when the client turns it off; the server makes
// it `active` or `error`), links a patient-facing app's Subscription to
// its patient (ExtPatient) and records the owner's access. Errors are
// 422 OperationOutcomes.
func (e *Engine) Prepare(ctx context.Context, w Write) error {
	obj := w.Object
	parsed, err := e.parse(obj.Bytes())
	if err != nil {
		return err
	}
	status := "requested"
	if obj.String("status") == "off" || parsed.ended(e.c.Now()) {
		status = "off" // R4 Subscription.end: off from then on
	}
	if err = obj.Set("status", jsonString(status), "criteria", "reason", "end", "contact"); err != nil {
		return err
	}
	obj.Delete("error")
	// The patient link is the server's: set from the writer, never taken
	// from the body.
	var exts []any
	if cur, ok := obj.Tree()["extension"].([]any); ok {
		for _, x := range cur {
			if m, _ := x.(map[string]any); m == nil || m["url"] != ExtPatient {
				exts = append(exts, x)
			}
		}
	}
	if w.PatientFacing {
		for _, p := range w.Patients {
			exts = append(exts, map[string]any{"url": ExtPatient, "valueReference": map[string]any{"reference": p}})
		}
	}
	if len(exts) == 0 {
		obj.Delete("extension")
	} else {
		b, err := json.Marshal(exts)
		if err != nil {
			return fmt.Errorf("subscription: %w", err)
		}
		if err := obj.Set("extension", b, "text", "meta", "id"); err != nil {
			return err
		}
	}
	b, err := json.Marshal(ownerOf(w.Principal))
	if err != nil {
		return fmt.Errorf("subscription: owner: %w", err)
	}
	if err := e.c.Storage.SetState(ctx, ownerState(w.ID), b); err != nil {
		return fmt.Errorf("subscription: owner: %w", err)
	}
	return nil
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// OnVersion is the change feed's Subscriptions callback (feed.Config):
// every committed version, in commit order, and the versions the release
// scheduler finds released. It runs under the feed's producer lock, the
// only writer of the event counters.
func (e *Engine) OnVersion(ctx context.Context, rec store.Record) error {
	if err := e.refresh(ctx); err != nil {
		return err
	}
	if rec.Type == "Subscription" {
		if err := e.subscriptionVersion(ctx, rec); err != nil {
			return err
		}
	}
	var match []*sub
	now := e.c.Now()
	e.mu.Lock()
	for _, s := range e.subs {
		if s.Status == "active" && s.Type == rec.Type {
			match = append(match, s)
		}
	}
	e.mu.Unlock()
	if len(match) == 0 {
		return nil
	}
	slices.SortFunc(match, func(a, b *sub) int { return strings.Compare(a.ID, b.ID) })
	// A deletion is matched, and decided for the owner, on the version it
	// ends (the tombstone has no content).
	shown := rec
	if rec.Deleted || len(rec.Raw) == 0 {
		if rec.VersionID <= 1 {
			return nil
		}
		prev, err := e.c.Store.VRead(ctx, rec.Type, rec.ID, rec.VersionID-1)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("subscription: deleted %s: %w", rec.Key(), err)
		}
		if prev.Deleted || len(prev.Raw) == 0 {
			return nil
		}
		shown = prev
	}
	subj := search.Subject{Type: shown.Type, ID: shown.ID, LastUpdated: shown.LastUpdated, Index: &shown.Index,
		PatientVisible: shown.Release.Patient, ProxyVisible: shown.Release.Proxy}
	for _, s := range match {
		if s.ended(now) {
			if err := e.turnOff(ctx, s); err != nil {
				return err
			}
			continue
		}
		if !s.match.Match(subj) {
			continue
		}
		if err := e.event(ctx, s, rec, shown); err != nil {
			return fmt.Errorf("subscription %s: %w", s.ID, err)
		}
	}
	return nil
}

// turnOff makes an active Subscription past its end `off` (R4
// Subscription.end) and forgets it.
func (e *Engine) turnOff(ctx context.Context, s *sub) error {
	if err := e.setStatus(ctx, s.ID, 0, "off", ""); err != nil {
		return fmt.Errorf("subscription %s: end: %w", s.ID, err)
	}
	e.mu.Lock()
	if cur := e.subs[s.ID]; cur == s {
		cp := *s
		cp.Status = "off"
		e.subs[s.ID] = &cp
	}
	e.mu.Unlock()
	return nil
}

// refresh reads every Subscription from the store when the cache is
// older than Refresh (another process may have been producing).
func (e *Engine) refresh(ctx context.Context) error {
	e.mu.Lock()
	stale := time.Since(e.loaded) >= e.c.Refresh
	e.mu.Unlock()
	if !stale {
		return nil
	}
	subs := map[string]*sub{}
	err := e.c.Store.ForEach(ctx, "Subscription", func(r store.Record) error {
		if s, err := e.parse(r.Raw); err == nil {
			s.ID, s.Vid = r.ID, r.VersionID
			subs[r.ID] = s
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("subscription: load: %w", err)
	}
	e.mu.Lock()
	e.subs, e.loaded = subs, time.Now()
	e.mu.Unlock()
	now := e.c.Now()
	for _, s := range subs {
		if s.Status == "active" && s.ended(now) {
			if err := e.turnOff(ctx, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// subscriptionVersion updates the cache from a Subscription version and
// sends the handshake of a requested one.
func (e *Engine) subscriptionVersion(ctx context.Context, rec store.Record) error {
	var s *sub
	if !rec.Deleted && len(rec.Raw) > 0 {
		var err error
		if s, err = e.parse(rec.Raw); err != nil {
			s = nil // stored before this version's rules: ignored
		} else {
			s.ID, s.Vid = rec.ID, rec.VersionID
		}
	}
	e.mu.Lock()
	if old := e.subs[rec.ID]; old == nil || old.Vid <= rec.VersionID {
		if s == nil {
			delete(e.subs, rec.ID)
		} else {
			e.subs[rec.ID] = s
		}
	}
	e.mu.Unlock()
	if s == nil || s.Status != "requested" {
		return nil
	}
	cur, err := e.c.Store.Read(ctx, "Subscription", rec.ID)
	if err != nil || cur.VersionID != rec.VersionID {
		return nil // superseded (or gone): its own version is handled
	}
	n, err := e.counter(ctx, s.ID)
	if err != nil {
		return err
	}
	now := e.c.Now()
	body, err := e.bundle(s, "handshake", "requested", n, nil, now)
	if err != nil {
		return err
	}
	return e.c.Outbox.Enqueue(ctx, notify.Notification{
		Key: fmt.Sprintf("sub/%s/handshake/%d", s.ID, s.Vid), Channel: notify.RestHook, To: s.Endpoint,
		Headers: s.Headers, Body: body, Expires: now.Add(e.c.HandshakeWindow),
		Cond: fmt.Sprintf("Subscription/%s/_history/%d", s.ID, s.Vid),
	})
}

// event enqueues the notification of rec to s, once per version: the
// owner must be able to find shown (rec, or for a deletion the version it
// ends) by a search now. The event is logged for $events.
func (e *Engine) event(ctx context.Context, s *sub, rec, shown store.Record) error {
	key := fmt.Sprintf("sub/%s/%s/%s/%d", s.ID, rec.Type, rec.ID, rec.VersionID)
	if _, err := e.c.Storage.Item(ctx, key); err == nil {
		return nil // notified before (a replay, or the release scheduler)
	} else if !errors.Is(err, notify.ErrNotFound) {
		return err
	}
	ob, err := e.c.Storage.State(ctx, ownerState(s.ID))
	if err != nil {
		return err
	}
	if ob == nil {
		return nil // no recorded owner: nothing is notified (fail closed)
	}
	var o Owner
	if err := json.Unmarshal(ob, &o); err != nil {
		return fmt.Errorf("owner: %w", err)
	}
	p, err := o.Principal()
	if err != nil {
		return nil
	}
	ok, err := e.c.Visible(ctx, p, shown)
	if err != nil {
		return err
	}
	if !ok {
		return nil // out of the owner's reach, or not released to them yet
	}
	// The counter is saved before the enqueue: a crash between them
	// leaves a gap in the event numbers, never a number used twice.
	n, err := e.counter(ctx, s.ID)
	if err != nil {
		return err
	}
	n++
	b, _ := json.Marshal(struct {
		N int64 `json:"n"`
	}{n})
	if err := e.c.Storage.SetState(ctx, eventsState(s.ID), b); err != nil {
		return err
	}
	now := e.c.Now()
	if err := e.logEvent(ctx, s.ID, n, loggedEvent{Type: rec.Type, ID: rec.ID, Vid: rec.VersionID, Deleted: rec.Deleted || len(rec.Raw) == 0, At: now}); err != nil {
		return err
	}
	body, err := e.bundle(s, "event-notification", "active", n, []eventRef{{n, rec.Type, rec.ID, rec.VersionID, rec.Deleted || len(rec.Raw) == 0, now}}, now)
	if err != nil {
		return err
	}
	return e.c.Outbox.Enqueue(ctx, notify.Notification{
		Key: key, Channel: notify.RestHook, To: s.Endpoint, Headers: s.Headers, Body: body,
		Cond: "Subscription/" + s.ID,
	})
}

// counter is the number of events notified to subscription id so far.
func (e *Engine) counter(ctx context.Context, id string) (int64, error) {
	b, err := e.c.Storage.State(ctx, eventsState(id))
	if err != nil || b == nil {
		return 0, err
	}
	var v struct {
		N int64 `json:"n"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, fmt.Errorf("subscription: events of %s: %w", id, err)
	}
	return v.N, nil
}

type jsonMap = map[string]any

// bundle renders a notification Bundle (backport-subscription-notification-r4):
// type history, first entry the SubscriptionStatus Parameters
// (backport-subscription-status-r4); an id-only event adds one entry
// with the focus's fullUrl and request/response, an empty one nothing.
func (e *Engine) bundle(s *sub, typ, status string, since int64, events []eventRef, now time.Time) ([]byte, error) {
	return e.bundleWith(s, typ, status, since, events, s.Content, "history", now)
}

// eventRef is one event a notification Bundle names.
type eventRef struct {
	N       int64
	Type    string
	ID      string
	Vid     int64
	Deleted bool
	At      time.Time
}

func (e *Engine) bundleWith(s *sub, typ, status string, since int64, events []eventRef, content, bundleType string, now time.Time) ([]byte, error) {
	subURL := e.c.Base + "/Subscription/" + s.ID
	params := []any{
		jsonMap{"name": "subscription", "valueReference": jsonMap{"reference": subURL}},
		jsonMap{"name": "status", "valueCode": status},
		jsonMap{"name": "type", "valueCode": typ},
		jsonMap{"name": "events-since-subscription-start", "valueString": strconv.FormatInt(since, 10)},
	}
	var entries []any
	ts := now.UTC().Format(time.RFC3339Nano)
	for _, ev := range events {
		parts := []any{
			jsonMap{"name": "event-number", "valueString": strconv.FormatInt(ev.N, 10)},
			jsonMap{"name": "timestamp", "valueInstant": ev.At.UTC().Format(time.RFC3339Nano)},
		}
		if content == IDOnly && ev.Type != "" { // $events leaves out what the caller cannot see
			focus := e.c.Base + "/" + ev.Type + "/" + ev.ID
			parts = append(parts, jsonMap{"name": "focus", "valueReference": jsonMap{"reference": focus}})
			method, code, url := "PUT", "200", ev.Type+"/"+ev.ID
			switch {
			case ev.Deleted:
				method, code = "DELETE", "204"
			case ev.Vid == 1:
				method, code, url = "POST", "201", ev.Type
			}
			entries = append(entries, jsonMap{"fullUrl": focus,
				"request": jsonMap{"method": method, "url": url}, "response": jsonMap{"status": code}})
		}
		params = append(params, jsonMap{"name": "notification-event", "part": parts})
	}
	sid := uuid()
	statusEntry := jsonMap{"fullUrl": "urn:uuid:" + sid,
		"resource": jsonMap{"resourceType": "Parameters", "id": sid, "meta": jsonMap{"profile": []any{ProfileStatus}}, "parameter": params},
		"request":  jsonMap{"method": "GET", "url": subURL + "/$status"}, "response": jsonMap{"status": "200"}}
	b := jsonMap{"resourceType": "Bundle", "id": uuid(), "meta": jsonMap{"profile": []any{ProfileNotification}},
		"type": bundleType, "timestamp": ts, "entry": append([]any{statusEntry}, entries...)}
	if bundleType == "searchset" {
		delete(b, "meta") // $status: a searchset of SubscriptionStatus resources
		statusEntry["search"] = jsonMap{"mode": "match"}
		delete(statusEntry, "request")
		delete(statusEntry, "response")
		b["total"] = 1
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("subscription: notification: %w", err)
	}
	return out, nil
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Check decides a subscription notification's Cond at delivery
// (notify.Options.Check): "Subscription/<id>" holds while the
// Subscription exists and is active; "Subscription/<id>/_history/<vid>"
// (a handshake) while vid is its current version.
func (e *Engine) Check(ctx context.Context, n notify.Notification) (bool, error) {
	rest := strings.TrimPrefix(n.Cond, "Subscription/")
	id, vs, hist := strings.Cut(rest, "/_history/")
	r, err := e.c.Store.Read(ctx, "Subscription", id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if r.Deleted {
		return false, nil
	}
	if hist {
		return strconv.FormatInt(r.VersionID, 10) == vs, nil
	}
	var w wire
	if err := json.Unmarshal(r.Raw, &w); err != nil {
		return false, nil
	}
	if end, err := time.Parse(time.RFC3339Nano, w.End); w.End != "" && (err != nil || !e.c.Now().Before(end)) {
		return false, nil // past Subscription.end: nothing more is sent
	}
	return w.Status == "active", nil
}

// Done is told of each ended outbox item (notify.Options.Done): a
// delivered handshake makes its Subscription active; a handshake or an
// event notification given up on makes it error.
func (e *Engine) Done(ctx context.Context, it notify.Item, st notify.State, cause error) {
	rest, ok := strings.CutPrefix(it.Key, "sub/")
	if !ok {
		return
	}
	id, rest, _ := strings.Cut(rest, "/")
	var err error
	if vs, hs := strings.CutPrefix(rest, "handshake/"); hs {
		vid, _ := strconv.ParseInt(vs, 10, 64)
		switch st {
		case notify.Delivered:
			err = e.setStatus(ctx, id, vid, "active", "")
		case notify.Failed:
			err = e.setStatus(ctx, id, vid, "error", "handshake failed: "+reason(it, cause))
		}
	} else if st == notify.Failed {
		err = e.setStatus(ctx, id, 0, "error", "notification failed: "+reason(it, cause))
	}
	if err != nil {
		e.c.Logger.Error("subscription status not updated", "subscription", id, "err", err)
	}
}

func reason(it notify.Item, cause error) string {
	if cause != nil {
		return cause.Error()
	}
	if it.LastError != "" {
		return it.LastError
	}
	return "not delivered in time"
}

// setStatus writes a new version of Subscription id with status (and
// error), when its current version is vid (0: any active one).
func (e *Engine) setStatus(ctx context.Context, id string, vid int64, status, msg string) error {
	for try := 0; try < 5; try++ {
		cur, err := e.c.Store.Read(ctx, "Subscription", id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.Deleted || vid != 0 && cur.VersionID != vid {
			return nil // changed since: its new version has its own handshake
		}
		obj, err := fhir.ParseObject(cur.Raw)
		if err != nil {
			return err
		}
		if vid == 0 && obj.String("status") != "active" {
			return nil
		}
		if err := obj.Set("status", jsonString(status), "criteria"); err != nil {
			return err
		}
		if msg != "" {
			if err := obj.Set("error", jsonString(msg), "status"); err != nil {
				return err
			}
		} else {
			obj.Delete("error")
		}
		now := e.c.Now().UTC().Truncate(time.Millisecond)
		if err := fhir.StampMeta(obj, id, cur.VersionID+1, now); err != nil {
			return err
		}
		idx, rel, err := e.c.Derive(ctx, "Subscription", obj.Tree(), now, &cur.Release)
		if err != nil {
			return err
		}
		rec := store.Record{Type: "Subscription", ID: id, VersionID: cur.VersionID + 1, LastUpdated: now, Raw: obj.Bytes(), Index: idx, Release: rel}
		err = e.c.Store.Transact(ctx, []store.Op{{Kind: store.OpPut, Record: rec, IfVersion: cur.VersionID}})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("subscription %s: status: too many concurrent changes", id)
}
