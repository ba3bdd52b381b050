// Package feed turns committed writes of the FHIR store into
// notifications: it reads the store's system history in commit order
// (http.html#history) from a durable cursor kept in notify storage, and
// runs a release scheduler for results whose patient release instant
// passes later (a delayed release is otherwise only a query condition,
// search.ReleaseCond). What it enqueues carries no personal health
// information: a template name, a language, a link to a portal section,
// the person's email address.
//
// What is notified, to whom:
//
//   - message: a new Communication (version 1) to its recipients that are
//     a Patient or a RelatedPerson, once visible to them (release rules
//     apply to messages);
//   - result: an Observation or DiagnosticReport with status final,
//     amended, corrected or appended, or a current DocumentReference, to
//     its subject Patient once visible to patients (at once, or when the
//     scheduler sees the release instant pass);
//   - reminder: a booked Appointment with a start, to its Patient and
//     RelatedPerson participants (not declined), ReminderLead before the
//     start; delivered only if the appointment is still booked at that
//     start (notify.Notification.Cond, checked by Check);
//   - every notification of a Patient goes to the proxies who may act for
//     them too (smart.Grants: a parent of a young child, a delegation
//     Consent), visible to proxies and without a sensitive label.
//
// Each person gets a kind only when opted in (notify.Prefs; default
// Config.DefaultOptIn) and has a Patient/RelatedPerson.telecom email.
// Keys are "<kind>/<Type>/<id>/<person>" (reminders add the start), so a
// replay, a second process or the scheduler re-finding a result enqueue
// nothing twice.
//
// One process produces at a time (a store.Lock lease, "notify/producer");
// every process may deliver (notify.Worker).
package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// Config configures the producer.
type Config struct {
	Store   store.Store
	Storage notify.Storage
	Outbox  notify.Outbox
	Proxy   smart.ProxyConfig
	// PortalURL is the patient portal; links point to its sections
	// (/messages, /results, /appointments).
	PortalURL string
	// ReminderLead: how long before an appointment the reminder goes (24 h).
	ReminderLead time.Duration
	// DefaultOptIn applies to kinds a person never set (default off).
	DefaultOptIn bool
	// Subscriptions, when set, is given every committed version too, and
	// the versions the release scheduler finds released (FHIR
	// Subscriptions, notify/subscription; it must be idempotent).
	Subscriptions func(ctx context.Context, rec store.Record) error

	Now    func() time.Time
	Logger *slog.Logger
	Poll   time.Duration // default 1 s
	// Lag re-reads this much history before the cursor on every pass: a
	// write whose lastUpdated was taken before a later one's but that
	// committed after it is not missed (default 5 s).
	Lag time.Duration
	// SchedulePoll: how often the release scheduler runs (default 30 s).
	SchedulePoll time.Duration
	PageSize     int // default 1,000
	// MaxBatch is the most versions a pass processes (default 10,000,
	// tens of MB): a pass also re-reads the Lag, so a pass should hold
	// more than a Lag of a bulk load (2,000 versions/s).
	MaxBatch int
}

// Producer reads the feed and runs the scheduler.
type Producer struct {
	c        Config
	stop     context.CancelFunc
	done     chan struct{}
	once     sync.Once
	lastSked time.Time
	// seen are the versions of the last Lag before the cursor already
	// processed ("Type/id/vid" -> lastUpdated), kept in memory only: they
	// are read again for late commits and skipped; after a restart the
	// Lag is processed again, which the outbox's idempotent keys make
	// harmless (persisting them cost a state write of every version of
	// the last Lag on every pass: half the ingest rate under load).
	seen   map[string]time.Time
	window time.Duration // the history a pass reads when behind (feedWindow, doubled while empty)
	// processed counts the versions the passes of one RunOnce processed.
	processed int
	// cache holds, for cacheTTL, what a burst of results for one patient
	// would otherwise read again for each (a lab panel, an ingest): the
	// people's preferences and the patient's proxies. A preference set
	// through $notification-preferences takes effect within cacheTTL.
	cacheMu sync.Mutex
	prefs   map[string]cachedPrefs
	proxies map[string]cachedProxies
}

const cacheTTL = 30 * time.Second

// feedWindow bounds the history a feed pass reads after its cursor.
const feedWindow = 10 * time.Second

// PrefsChanged drops who's cached preferences (the operation that set
// them runs in this process; other processes see them within cacheTTL).
func (p *Producer) PrefsChanged(who string) {
	p.cacheMu.Lock()
	delete(p.prefs, who)
	p.cacheMu.Unlock()
}

// proxyTypes are the types that decide who may act for a patient: a
// version of one drops the cached proxies (the feed reads versions in
// order, so a proxy added before a result is known when it is notified).
var proxyTypes = []string{"RelatedPerson", "Consent", "Patient", "Person"}

type cachedPrefs struct {
	p   notify.Prefs
	exp time.Time
}

type cachedProxies struct {
	rps    []store.Record
	grants [][]smart.Grant
	exp    time.Time
}

// cachedPrefsOf is Storage.Prefs through the cache.
func (p *Producer) cachedPrefsOf(ctx context.Context, who string) (notify.Prefs, error) {
	now := time.Now()
	p.cacheMu.Lock()
	c, ok := p.prefs[who]
	p.cacheMu.Unlock()
	if ok && now.Before(c.exp) {
		return c.p, nil
	}
	prefs, _, err := p.c.Storage.Prefs(ctx, who)
	if err != nil {
		return prefs, err
	}
	p.cacheMu.Lock()
	if p.prefs == nil || len(p.prefs) > 10000 {
		p.prefs = map[string]cachedPrefs{}
	}
	p.prefs[who] = cachedPrefs{prefs, now.Add(cacheTTL)}
	p.cacheMu.Unlock()
	return prefs, nil
}

// proxiesOf are the RelatedPersons of patient and their grants, through the cache.
func (p *Producer) proxiesOf(ctx context.Context, patient string) (cachedProxies, error) {
	now := time.Now()
	p.cacheMu.Lock()
	c, ok := p.proxies[patient]
	p.cacheMu.Unlock()
	if ok && now.Before(c.exp) {
		return c, nil
	}
	q := store.Query{Types: []string{"RelatedPerson"}, Count: 100,
		Filter: search.RefCond{Param: "patient", Targets: []string{patient}}}
	pg, err := p.c.Store.Search(ctx, q)
	if err != nil {
		return c, fmt.Errorf("proxies of %s: %w", patient, err)
	}
	c = cachedProxies{rps: pg.Records, exp: now.Add(cacheTTL)}
	for _, rp := range pg.Records {
		grants, err := smart.Grants(ctx, p.c.Store, p.c.Proxy, rp.Key())
		if err != nil {
			return c, err
		}
		c.grants = append(c.grants, grants)
	}
	p.cacheMu.Lock()
	if p.proxies == nil || len(p.proxies) > 10000 {
		p.proxies = map[string]cachedProxies{}
	}
	p.proxies[patient] = c
	p.cacheMu.Unlock()
	return c, nil
}

// New returns a producer; Start runs it.
func New(c Config) *Producer {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Poll == 0 {
		c.Poll = time.Second
	}
	if c.Lag == 0 {
		c.Lag = 5 * time.Second
	}
	if c.SchedulePoll == 0 {
		c.SchedulePoll = 30 * time.Second
	}
	if c.PageSize == 0 {
		c.PageSize = 1000
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 10000
	}
	if c.ReminderLead == 0 {
		c.ReminderLead = 24 * time.Hour
	}
	c.PortalURL = strings.TrimRight(c.PortalURL, "/")
	if c.Proxy.Now == nil {
		c.Proxy.Now = c.Now
	}
	return &Producer{c: c}
}

// Start runs the producer until Close.
func (p *Producer) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.stop, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		for {
			if err := p.RunOnce(ctx); err != nil && ctx.Err() == nil {
				p.c.Logger.Error("notifications: change feed pass failed", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(p.pause()):
			}
		}
	}()
}

// busyPass is the number of versions after which a run counts as busy.
const busyPass = 500

// pause is the wait before the next run: Poll, or the Lag after a busy
// run. Every pass reads the Lag before its cursor again, so passes one
// Poll apart under a bulk load would read each version Lag/Poll times
// (measured: a third of the CPU of an ingest); a Lag apart, twice. A
// notification then waits up to Lag longer while the server is loaded.
func (p *Producer) pause() time.Duration {
	if p.processed >= busyPass && p.c.Lag > p.c.Poll {
		return p.c.Lag
	}
	return p.c.Poll
}

// Close stops the producer after the pass under way.
func (p *Producer) Close() {
	p.once.Do(func() {
		if p.stop != nil {
			p.stop()
			<-p.done
		}
	})
}

// Init records the starting point of a store that never had a producer
// (the feed starts at now, the scheduler's last run is now), so that what
// is written after Init returns is notified. Later starts resume from
// the saved cursor.
func (p *Producer) Init(ctx context.Context) error {
	now := p.c.Now().UTC()
	var cur cursor
	if ok, err := p.loadJSON(ctx, stateFeed, &cur); err != nil {
		return err
	} else if !ok {
		if err := p.saveJSON(ctx, stateFeed, cursor{At: now}); err != nil {
			return err
		}
	}
	var st schedState
	if ok, err := p.loadJSON(ctx, stateScheduler, &st); err != nil {
		return err
	} else if !ok {
		return p.saveJSON(ctx, stateScheduler, schedState{Last: now})
	}
	return nil
}

// LockKey is the store lock held by the producing process.
const LockKey = "notify/producer"

// RunOnce reads the feed once (and runs the scheduler when due), under
// the producer lock; another process holding it makes this a no-op.
func (p *Producer) RunOnce(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	unlock, err := p.c.Store.Lock(lctx, LockKey, 2*time.Minute)
	cancel()
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil
		}
		return err
	}
	defer unlock()
	ctx = context.WithoutCancel(ctx) // a pass that started finishes: its cursor is saved
	p.processed = 0
	for {
		more, err := p.feedPass(ctx)
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if now := time.Now(); now.Sub(p.lastSked) >= p.c.SchedulePoll {
		if err := p.SchedulerPass(ctx); err != nil {
			return err
		}
		p.lastSked = now
	}
	return nil
}

// cursor is the feed's durable position: every version up to At was
// processed (the versions of the last Lag before At are read again, for
// late commits; Producer.seen skips those processed already).
type cursor struct {
	At time.Time `json:"at"`
}

const (
	stateFeed      = "feed"
	stateScheduler = "release-scheduler"
)

func (p *Producer) loadJSON(ctx context.Context, name string, v any) (bool, error) {
	b, err := p.c.Storage.State(ctx, name)
	if err != nil || b == nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("feed: state %s: %w", name, err)
	}
	return true, nil
}

func (p *Producer) saveJSON(ctx context.Context, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("feed: state %s: %w", name, err)
	}
	return p.c.Storage.SetState(ctx, name, b)
}

func verKey(r store.Record) string { return fmt.Sprintf("%s/%s/%d", r.Type, r.ID, r.VersionID) }

// feedPass processes the versions after the cursor, oldest first, at
// most MaxBatch of them; more reports that some were left for the next.
func (p *Producer) feedPass(ctx context.Context) (more bool, err error) {
	var cur cursor
	ok, err := p.loadJSON(ctx, stateFeed, &cur)
	if err != nil {
		return false, err
	}
	if !ok {
		// First start: notify of what is written from now on, not of the past.
		return false, p.saveJSON(ctx, stateFeed, cursor{At: p.c.Now().UTC()})
	}
	// Every pass reads the last Lag before the cursor again, for versions
	// that committed after later ones (a long Bundle); p.seen skips those
	// processed already.
	since := cur.At.Add(-p.c.Lag)
	var recs []store.Record
	// AuditEvents (one per request, half of what is written) are left
	// out in the store's query: nothing is notified of them. A pass reads
	// at most feedWindow after the cursor (history is listed newest
	// first: a feed that fell behind a bulk load would otherwise read
	// the whole backlog on every pass to keep its oldest part).
	var filter search.Expr = search.Not{Arg: search.TypeCond{Types: Unfed}}
	if p.window == 0 {
		p.window = feedWindow
	}
	// A pass reads at most one window after the cursor, and only the
	// versions of a window that ended are kept for the next pass to
	// start from: a backlog is read once (plus the Lag), not again on
	// every pass of it.
	upto := cur.At.Add(p.window)
	behind := upto.Before(p.c.Now())
	if behind {
		filter = search.AllOf(filter, search.LastUpdatedCond{Prefix: search.Lt, Lo: upto, Hi: upto})
	}
	q := store.HistoryQuery{Since: since, Count: p.c.PageSize, Filter: filter}
	moved := false
	for {
		pg, err := p.c.Store.History(ctx, q)
		if err != nil {
			return false, fmt.Errorf("feed: history: %w", err)
		}
		for _, r := range pg.Records {
			if _, done := p.seen[verKey(r)]; done {
				// Processed already: the cursor may still be before it
				// (the pass that processed it failed to save the
				// cursor), and moves past it, or the feed would stay
				// behind until a newer version came.
				if r.LastUpdated.After(cur.At) {
					cur.At, moved = r.LastUpdated, true
				}
				continue
			}
			if r.LastUpdated.Before(since) {
				continue
			}
			recs = append(recs, r)
		}
		// Newest first: keep the oldest MaxBatch.
		if len(recs) > p.c.MaxBatch {
			recs = slices.Delete(recs, 0, len(recs)-p.c.MaxBatch)
			more = true
		}
		if pg.Next == "" {
			break
		}
		q.Cursor = pg.Next
	}
	if len(recs) == 0 {
		if behind {
			// An empty window long past: move on (late commits in it are
			// read again with the lag), with the next window twice as
			// long (a quiet week is crossed in a few passes).
			p.window = min(2*p.window, 24*time.Hour)
			return true, p.saveJSON(ctx, stateFeed, cursor{At: upto})
		}
		if moved {
			return false, p.saveJSON(ctx, stateFeed, cur)
		}
		return false, nil
	}
	p.window = feedWindow
	more = more || behind
	slices.Reverse(recs)
	// Equal instants: a stable order (type, id, version).
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].LastUpdated.Before(recs[j].LastUpdated) })
	if p.seen == nil {
		p.seen = map[string]time.Time{}
	}
	p.processed += len(recs)
	for _, r := range recs {
		if err := p.process(ctx, r, false); err != nil {
			return false, fmt.Errorf("feed: %s: %w", verKey(r), err)
		}
		p.seen[verKey(r)] = r.LastUpdated
		if r.LastUpdated.After(cur.At) {
			cur.At = r.LastUpdated
		}
	}
	for k, at := range p.seen {
		if at.Before(cur.At.Add(-p.c.Lag)) {
			delete(p.seen, k)
		}
	}
	return more, p.saveJSON(ctx, stateFeed, cur)
}

// Unfed are the types the feed does not read (nor Subscriptions see).
var Unfed = []string{"AuditEvent"}

// resultTypes are the results notified to patients (and their release
// scheduled): the types patient release rules are about.
var resultTypes = []string{"Observation", "DiagnosticReport", "DocumentReference"}

// scheduled are the types the release scheduler looks at.
var scheduled = append([]string{"Communication"}, resultTypes...)

type schedState struct {
	Last time.Time `json:"last"`
}

// SchedulerPass finds the results and messages whose release instant for
// patients or proxies fell in (last run, now] and notifies them (what was
// visible when written was notified by the feed; keys make the overlap
// harmless).
func (p *Producer) SchedulerPass(ctx context.Context) error {
	now := p.c.Now().UTC()
	var st schedState
	ok, err := p.loadJSON(ctx, stateScheduler, &st)
	if err != nil {
		return err
	}
	if !ok {
		return p.saveJSON(ctx, stateScheduler, schedState{Last: now})
	}
	if !now.After(st.Last) {
		return nil
	}
	from := st.Last.Add(-p.c.Lag)
	for _, aud := range []string{"patient", "proxy"} {
		q := store.Query{Types: scheduled, Count: p.c.PageSize, Filter: search.AllOf(
			search.ReleaseCond{Audience: aud, Now: now},
			search.Not{Arg: search.ReleaseCond{Audience: aud, Now: from}},
		)}
		for {
			pg, err := p.c.Store.Search(ctx, q)
			if err != nil {
				return fmt.Errorf("feed: release scheduler: %w", err)
			}
			for _, r := range pg.Records {
				if err := p.process(ctx, r, true); err != nil {
					return fmt.Errorf("feed: release scheduler: %s: %w", verKey(r), err)
				}
			}
			if pg.Next == "" {
				break
			}
			q.Cursor = pg.Next
		}
	}
	return p.saveJSON(ctx, stateScheduler, schedState{Last: now})
}

// process turns one version into notifications; released: found by the
// scheduler (its release instant just passed).
func (p *Producer) process(ctx context.Context, r store.Record, released bool) error {
	if p.c.Subscriptions != nil {
		if err := p.c.Subscriptions(ctx, r); err != nil {
			return err
		}
	}
	if slices.Contains(proxyTypes, r.Type) {
		p.cacheMu.Lock()
		p.proxies = nil
		p.cacheMu.Unlock()
	}
	if r.Deleted || len(r.Raw) == 0 {
		return nil
	}
	var res resource
	if err := json.Unmarshal(r.Raw, &res); err != nil {
		return nil // not ours to judge: the store accepted it
	}
	switch {
	case r.Type == "Communication":
		if r.VersionID != 1 && !released {
			return nil
		}
		if res.Status == "entered-in-error" || res.autoReply() {
			return nil
		}
		sender := res.Sender.Reference
		for _, to := range res.Recipient {
			if to.Reference == sender {
				continue
			}
			if err := p.notifyPerson(ctx, "message", r, to.Reference, nil); err != nil {
				return err
			}
		}
	case slices.Contains(resultTypes, r.Type):
		if !resultReady(r.Type, res) {
			return nil
		}
		if strings.HasPrefix(res.Subject.Reference, "Patient/") {
			return p.notifyPerson(ctx, "result", r, res.Subject.Reference, nil)
		}
	case r.Type == "Appointment" && !released:
		if res.Status != "booked" || res.Start == "" {
			return nil
		}
		start, err := time.Parse(time.RFC3339, res.Start)
		if err != nil {
			return nil
		}
		now := p.c.Now()
		if !start.After(now) {
			return nil
		}
		at := start.Add(-p.c.ReminderLead)
		if at.Before(now) {
			at = now
		}
		rem := &reminder{start: start, at: at}
		for _, pt := range res.Participant {
			if pt.Status == "declined" {
				continue
			}
			if err := p.notifyPerson(ctx, "reminder", r, pt.Actor.Reference, rem); err != nil {
				return err
			}
		}
	}
	return nil
}

type reminder struct{ start, at time.Time }

// resultReady: a result a patient is told about (not a preliminary one).
func resultReady(typ string, res resource) bool {
	if typ == "DocumentReference" {
		return res.Status == "current"
	}
	switch res.Status {
	case "final", "amended", "corrected", "appended":
		return true
	}
	return false
}

// resource holds the fields the feed reads.
// autoReply: the secure-messaging automatic reply (its category) answers
// the patient's own message at once, so it is not worth an email.
func (r resource) autoReply() bool {
	for _, c := range r.Category {
		for _, cd := range c.Coding {
			if cd.System == server.ThreadSystem && cd.Code == server.AutoReplyCode {
				return true
			}
		}
	}
	return false
}

type resource struct {
	Status    string `json:"status"`
	Subject   ref    `json:"subject"`
	Sender    ref    `json:"sender"`
	Recipient []ref  `json:"recipient"`
	Category  []struct {
		Coding []struct {
			System string `json:"system"`
			Code   string `json:"code"`
		} `json:"coding"`
	} `json:"category"`
	Start string `json:"start"`
	// Appointment.participant
	Participant []struct {
		Actor  ref    `json:"actor"`
		Status string `json:"status"`
	} `json:"participant"`
}

type ref struct {
	Reference string `json:"reference"`
}

// person is a Patient or RelatedPerson as the feed reads it.
type person struct {
	Active  *bool `json:"active"`
	Telecom []struct {
		System string `json:"system"`
		Value  string `json:"value"`
		Use    string `json:"use"`
		Rank   int    `json:"rank"`
	} `json:"telecom"`
	Communication []struct {
		Language struct {
			Coding []struct {
				Code string `json:"code"`
			} `json:"coding"`
		} `json:"language"`
		Preferred bool `json:"preferred"`
	} `json:"communication"`
}

func (pe person) email() string {
	best, rank := "", 0
	for _, t := range pe.Telecom {
		if t.System != "email" || t.Value == "" || t.Use == "old" {
			continue
		}
		r := t.Rank
		if r == 0 {
			r = 1 << 20
		}
		if best == "" || r < rank {
			best, rank = t.Value, r
		}
	}
	return best
}

func (pe person) lang() string {
	for _, pass := range []bool{true, false} {
		for _, c := range pe.Communication {
			if c.Preferred != pass && pass {
				continue
			}
			for _, cd := range c.Language.Coding {
				if l := strings.ToLower(cd.Code); strings.HasPrefix(l, "fr") {
					return "fr"
				} else if strings.HasPrefix(l, "en") {
					return "en"
				}
			}
		}
	}
	return "en"
}

var sections = map[string]string{"message": "/messages", "result": "/results", "reminder": "/appointments"}

// notifyPerson notifies who ("Patient/7" or "RelatedPerson/3") of r, and,
// for a Patient, the proxies who act for them.
func (p *Producer) notifyPerson(ctx context.Context, kind string, r store.Record, who string, rem *reminder) error {
	typ, _, _ := strings.Cut(who, "/")
	switch typ {
	case "Patient":
		if err := p.enqueue(ctx, kind, r, who, "patient", rem); err != nil {
			return err
		}
		return p.notifyProxies(ctx, kind, r, who, rem)
	case "RelatedPerson":
		return p.enqueue(ctx, kind, r, who, "proxy", rem)
	}
	return nil
}

// notifyProxies notifies the RelatedPersons of patient who may act for
// them now (smart.Grants) and see r.
func (p *Producer) notifyProxies(ctx context.Context, kind string, r store.Record, patient string, rem *reminder) error {
	px, err := p.proxiesOf(ctx, patient)
	if err != nil {
		return err
	}
	bare := strings.TrimPrefix(patient, "Patient/")
	for i, rp := range px.rps {
		if !slices.ContainsFunc(px.grants[i], func(g smart.Grant) bool { return grantCovers(g, bare, r, p.c.Proxy) }) {
			continue
		}
		if err := p.enqueue(ctx, kind, r, rp.Key(), "proxy", rem); err != nil {
			return err
		}
	}
	return nil
}

func grantCovers(g smart.Grant, patient string, r store.Record, pc smart.ProxyConfig) bool {
	if g.Patient != patient {
		return false
	}
	if g.Types != nil && !slices.Contains(g.Types, r.Type) {
		return false
	}
	if g.Sensitive {
		return true
	}
	labels := pc.SensitiveLabels
	if labels == nil {
		labels = smart.DefaultSensitiveLabels
	}
	for _, l := range r.Index.Security {
		if slices.Contains(labels, l) && !slices.Contains(g.Labels, l) {
			return false
		}
	}
	return true
}

// visible reports whether r is visible to audience now (policy.Visible).
func visible(r store.Record, audience string, now time.Time) bool {
	t := r.Release.Patient
	if audience == "proxy" {
		t = r.Release.Proxy
	}
	return t.Before(store.Never) && !t.After(now)
}

func (p *Producer) enqueue(ctx context.Context, kind string, r store.Record, who, audience string, rem *reminder) error {
	now := p.c.Now()
	if !visible(r, audience, now) {
		return nil // the release scheduler notifies it when released
	}
	if slices.Contains(r.Index.Security, search.MultiPatientLabel) {
		return nil
	}
	prefs, err := p.cachedPrefsOf(ctx, who)
	if err != nil {
		return err
	}
	if !prefs.OptedIn(kind, p.c.DefaultOptIn) {
		return nil
	}
	typ, id, _ := strings.Cut(who, "/")
	pr, err := p.c.Store.Read(ctx, typ, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if pr.Deleted {
		return nil
	}
	var pe person
	if err := json.Unmarshal(pr.Raw, &pe); err != nil {
		return nil
	}
	if pe.Active != nil && !*pe.Active {
		return nil
	}
	to := pe.email()
	if to == "" {
		return nil
	}
	lang := prefs.Lang
	if lang == "" {
		lang = pe.lang()
	}
	n := notify.Notification{
		Key:      kind + "/" + r.Type + "/" + r.ID + "/" + who,
		Channel:  notify.Email,
		To:       to,
		Template: kind,
		Lang:     lang,
		Link:     p.c.PortalURL + sections[kind],
	}
	if rem != nil {
		n.Key = fmt.Sprintf("%s/%s/%s/%d/%s", kind, r.Type, r.ID, rem.start.Unix(), who)
		n.NotBefore, n.Expires = rem.at, rem.start
		n.Cond = r.Key() + "|booked|" + rem.start.UTC().Format(time.RFC3339)
	}
	return p.c.Outbox.Enqueue(ctx, n)
}

// Check decides a notification's Cond at delivery time (notify.Options.Check):
// "Appointment/5|booked|<start>" holds while the appointment is booked
// at that start.
func Check(st store.Store) func(ctx context.Context, n notify.Notification) (bool, error) {
	return func(ctx context.Context, n notify.Notification) (bool, error) {
		parts := strings.Split(n.Cond, "|")
		if len(parts) != 3 || parts[1] != "booked" {
			return false, nil // a condition this version does not know: do not send
		}
		typ, id, _ := strings.Cut(parts[0], "/")
		r, err := st.Read(ctx, typ, id)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if r.Deleted {
			return false, nil
		}
		var res resource
		if err := json.Unmarshal(r.Raw, &res); err != nil {
			return false, nil
		}
		start, err := time.Parse(time.RFC3339, res.Start)
		if err != nil {
			return false, nil
		}
		want, err := time.Parse(time.RFC3339, parts[2])
		return err == nil && res.Status == "booked" && start.Equal(want), nil
	}
}
