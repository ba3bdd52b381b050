package server

// Secure patient–clinician messaging (docs/messaging.md), under the
// organisation's "messaging:" rules (policy.Messaging). R4
// communication.html: a thread is a Communication header (no partOf);
// its messages are Communications partOf it, inResponseTo for replies.
//
// What the server keeps in the thread so inboxes are single indexed
// queries:
//   - meta.tag ThreadSystem|thread on every header a patient-facing app
//     starts (and kept on every later version of it);
//   - meta.tag StateSystem|awaiting-reply on every patient-side message
//     (the header included) until a staff member posts in the thread or
//     closes it; the message's sent (server time) says since when;
//   - sent, sender and status of patient-side messages are the server's.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/store"
)

// Tag systems of the messaging model.
const (
	// ThreadSystem|ThreadCode marks a thread header (Communication?_tag=...).
	ThreadSystem = "http://fhirgate.dev/CodeSystem/message-thread"
	ThreadCode   = "thread"
	// StateSystem|AwaitingReply marks a patient-side message no staff
	// member has answered yet.
	StateSystem   = "http://fhirgate.dev/CodeSystem/message-state"
	AwaitingReply = "awaiting-reply"
	// AutoReplyCode is the category code of the automatic reply.
	AutoReplyCode = "auto-reply"
	// EscalationSystem codes the ServiceRequest $escalate creates.
	EscalationSystem = "http://fhirgate.dev/CodeSystem/message-escalation"
)

// UnreadParam is the SearchParameter Communication "unread-for": the
// recipients of a message that has no received yet (not read), so an
// inbox of unread messages is one equality on a reference index
// (Communication?unread-for=CareTeam/triage) whose size is that inbox's,
// however much history the recipient has. Reading (setting received)
// takes the message out of it. The app loads it into the registry.
const UnreadParam = `{"resourceType":"SearchParameter","url":"http://fhirgate.dev/SearchParameter/Communication-unread-for",` +
	`"name":"unread-for","code":"unread-for","status":"active","base":["Communication"],"type":"reference",` +
	`"target":["Patient","RelatedPerson","Practitioner","PractitionerRole","CareTeam","Organization","Group","Device","HealthcareService"],` +
	`"expression":"Communication.where(received.empty()).recipient",` +
	`"description":"A recipient of a message not read yet (no received): the unread inbox of a practitioner, a pool or a patient."}`

// OpenThreadParam is the SearchParameter Communication "open-thread-for":
// the recipients of a thread header (no partOf) that is in-progress, so
// a clinician's or a pool's open threads are one equality on a reference
// index (Communication?open-thread-for=Practitioner/dr-lee); closing the
// thread takes it out.
const OpenThreadParam = `{"resourceType":"SearchParameter","url":"http://fhirgate.dev/SearchParameter/Communication-open-thread-for",` +
	`"name":"open-thread-for","code":"open-thread-for","status":"active","base":["Communication"],"type":"reference",` +
	`"target":["Patient","RelatedPerson","Practitioner","PractitionerRole","CareTeam","Organization","Group","Device","HealthcareService"],` +
	`"expression":"Communication.where(partOf.empty() and status = 'in-progress').recipient",` +
	`"description":"A recipient of an open thread (a header without partOf, status in-progress): the open threads of a practitioner or a pool."}`

// InboxParams are the messaging inboxes' SearchParameters (UnreadParam,
// OpenThreadParam), for search.LoadCustom.
var InboxParams = []string{UnreadParam, OpenThreadParam}

// maxThreadScan bounds the messages of one thread the server updates when
// a staff reply or a close clears their awaiting-reply tag.
const maxThreadScan = 1000

// messagingWrite applies the secure-messaging rules to obj, the new
// version of typ/id a caller writes (cur: the live version it replaces,
// nil for a create). It returns the object to store — obj completed by
// the server, or, for a patient's read receipt, a copy of cur with only
// received set — and the extra operations to commit with it (the
// automatic reply; awaiting-reply tags cleared). Without a messaging
// section it returns obj unchanged.
func (s *Server) messagingWrite(ctx context.Context, x *exchange, typ, id string, obj *fhir.Object, cur *store.Record) (*fhir.Object, []store.Op, error) {
	m := s.Policy().Messaging()
	if !m.On() || typ != "Communication" && typ != "Binary" {
		return obj, nil, nil
	}
	c := x.c
	if typ == "Binary" {
		if c.patientFacing() {
			return obj, nil, checkUpload(m, obj.Tree())
		}
		return obj, nil, nil
	}
	if !c.patientFacing() {
		extra, err := s.staffMessage(ctx, id, obj, cur)
		return obj, extra, err
	}
	if !m.Enabled {
		return nil, nil, fhir.Errorf(fhir.KindForbidden, "this organisation does not offer secure messaging through the portal")
	}
	if cur != nil {
		o, err := s.readReceipt(c, obj, cur)
		return o, nil, err
	}
	return s.patientMessage(ctx, x, m, id, obj)
}

// messagingExisting is what existingForWrite asks of an existing
// Communication under the messaging rules: patient-facing apps never
// delete a message, and may update one only to set its read receipt
// (readReceipt decides), whoever wrote it.
func (s *Server) messagingExisting(interaction string) error {
	if interaction == "delete" {
		return fhir.Errorf(fhir.KindForbidden, "a sent message cannot be deleted from a patient-facing app")
	}
	return nil
}

// messagingOn reports whether messaging rules govern typ.
func (s *Server) messagingOn(typ string) bool {
	return typ == "Communication" && s.Policy().Messaging().On()
}

// patientMessage completes and checks a Communication a patient or proxy
// creates: a new thread header, or a message in one of the patient's
// open threads.
func (s *Server) patientMessage(ctx context.Context, x *exchange, m *policy.Messaging, id string, obj *fhir.Object) (*fhir.Object, []store.Op, error) {
	c := x.c
	tree := obj.Tree()
	subj := reference(tree["subject"])
	if subj == "" || !contains(c.actingPatients(), subj) {
		return nil, nil, fhir.Errorf(fhir.KindForbidden, "a message's subject must be the patient this app acts for").At("Communication.subject")
	}
	sender, err := s.senderFor(c, subj)
	if err != nil {
		return nil, nil, err
	}
	if given := reference(tree["sender"]); tree["sender"] != nil && given != sender {
		return nil, nil, fhir.Errorf(fhir.KindForbidden, "sender must be %s: the server sets the sender, a message cannot be sent in someone else's name", sender).At("Communication.sender")
	}
	if _, ok := tree["received"]; ok {
		return nil, nil, fhir.Errorf(fhir.KindUnprocessable, "received is the recipient's read receipt; a new message cannot carry it").At("Communication.received")
	}
	if err := s.checkAttachments(ctx, m, tree); err != nil {
		return nil, nil, err
	}
	status, _ := tree["status"].(string)
	parts := references(tree["partOf"])
	header := len(parts) == 0
	var recipients []string
	if header {
		if status != "in-progress" {
			return nil, nil, fhir.Errorf(fhir.KindUnprocessable, "a new thread's status must be in-progress, not %q", status).At("Communication.status")
		}
		if tree["inResponseTo"] != nil {
			return nil, nil, fhir.Errorf(fhir.KindUnprocessable, "a new thread (no partOf) cannot be inResponseTo another message").At("Communication.inResponseTo")
		}
		recipients, err = s.threadRecipients(ctx, m, subj, references(tree["recipient"]))
	} else {
		if status != "completed" {
			return nil, nil, fhir.Errorf(fhir.KindUnprocessable, "a message in a thread is sent: its status must be completed, not %q", status).At("Communication.status")
		}
		recipients, err = s.threadMessage(ctx, c, subj, parts, tree)
	}
	if err != nil {
		return nil, nil, err
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	if err := setJSON(obj, "sender", map[string]any{"reference": sender}, "subject", "recipient"); err != nil {
		return nil, nil, err
	}
	if err := setJSON(obj, "sent", fhir.Instant(now), "sender", "subject"); err != nil {
		return nil, nil, err
	}
	recs := make([]any, len(recipients))
	for i, r := range recipients {
		recs[i] = map[string]any{"reference": r}
	}
	if err := setJSON(obj, "recipient", recs, "subject"); err != nil {
		return nil, nil, err
	}
	if header {
		if err := fhir.SetTag(obj, ThreadSystem, ThreadCode, ""); err != nil {
			return nil, nil, err
		}
	} else if err := fhir.SetTag(obj, ThreadSystem, "", ""); err != nil {
		return nil, nil, err
	}
	if err := fhir.SetTag(obj, StateSystem, AwaitingReply, ""); err != nil {
		return nil, nil, err
	}
	if !header {
		return obj, nil, nil
	}
	reply, err := s.autoReply(m, id, subj, sender, obj.String("language"), now)
	if err != nil {
		return nil, nil, err
	}
	return obj, []store.Op{{Kind: store.OpCreate, Record: reply}}, nil
}

// senderFor is the sender of a patient-facing caller's messages about
// patient subj: the Patient themself, or the proxy's RelatedPerson.
func (s *Server) senderFor(c *caller, subj string) (string, error) {
	if c.proxy == "" {
		return subj, nil
	}
	if strings.HasPrefix(c.proxy, "RelatedPerson/") {
		return c.proxy, nil
	}
	// A Person acting through one of its RelatedPersons (Person.link).
	for _, g := range c.grants {
		if "Patient/"+strings.TrimPrefix(g.Patient, "Patient/") == subj && strings.HasPrefix(g.ID, "RelatedPerson/") {
			return g.ID, nil
		}
	}
	return "", fhir.Errorf(fhir.KindForbidden, "%s has no RelatedPerson for %s to send messages as", c.proxy, subj)
}

// threadRecipients decides the recipients of a new thread: the
// organisation's default pool when patients do not choose, else each
// named recipient must be allowed (a pool, or a member of one of the
// patient's active CareTeams, or such a CareTeam).
func (s *Server) threadRecipients(ctx context.Context, m *policy.Messaging, subj string, named []string) ([]string, error) {
	if !m.PatientChooses {
		for _, r := range named {
			if r != m.DefaultPool {
				return nil, fhir.Errorf(fhir.KindForbidden, "this organisation routes new threads to its care team; leave recipient empty (%s is not a recipient patients choose)", r).At("Communication.recipient")
			}
		}
		return []string{m.DefaultPool}, nil
	}
	if len(named) == 0 {
		return nil, fhir.Errorf(fhir.KindUnprocessable, "a new thread needs a recipient: a member of your care team or one of %v", m.Pools).At("Communication.recipient")
	}
	var team []string
	if m.CareTeam {
		var err error
		if team, err = s.careTeam(ctx, subj); err != nil {
			return nil, err
		}
	}
	for _, r := range named {
		if !m.IsPool(r) && !slices.Contains(team, r) {
			return nil, fhir.Errorf(fhir.KindForbidden, "%s is not a recipient this patient may write to (their active care team or the organisation's pools)", r).At("Communication.recipient")
		}
	}
	return named, nil
}

// careTeam lists who a patient's active CareTeams make reachable: each
// CareTeam and its Practitioner and PractitionerRole members.
func (s *Server) careTeam(ctx context.Context, subj string) ([]string, error) {
	active := "active"
	page, err := s.cfg.Store.Search(ctx, store.Query{Types: []string{"CareTeam"}, Count: 100,
		Filter: search.AllOf(search.RefCond{Param: "patient", Targets: []string{subj}}, search.TokenCond{Param: "status", Code: &active})})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range page.Records {
		out = append(out, "CareTeam/"+r.ID)
		tree, err := fhir.Decode(r.Raw)
		if err != nil {
			return nil, err
		}
		ps, _ := tree["participant"].([]any)
		for _, p := range ps {
			pm, _ := p.(map[string]any)
			ref := reference(pm["member"])
			if strings.HasPrefix(ref, "Practitioner/") || strings.HasPrefix(ref, "PractitionerRole/") {
				out = append(out, ref)
			}
		}
	}
	return out, nil
}

// threadMessage checks a patient-side message partOf a thread: one
// header, the patient's, open; inResponseTo inside the thread; recipients
// among the thread's (default: the header's recipients).
func (s *Server) threadMessage(ctx context.Context, c *caller, subj string, parts []string, tree map[string]any) ([]string, error) {
	if len(parts) != 1 {
		return nil, fhir.Errorf(fhir.KindUnprocessable, "a message is partOf exactly one thread").At("Communication.partOf")
	}
	hid, ok := strings.CutPrefix(parts[0], "Communication/")
	notThread := fhir.Errorf(fhir.KindUnprocessable, "partOf must be one of this patient's message threads (a Communication/id header)").At("Communication.partOf")
	if !ok || !fhir.ValidID(hid) {
		return nil, notThread
	}
	hrec, htree, err := s.communication(ctx, hid)
	if err != nil {
		return nil, err
	}
	if hrec == nil {
		return nil, notThread
	}
	if seen, err := s.canSee(ctx, c, *hrec); err != nil {
		return nil, err
	} else if !seen {
		return nil, notThread
	}
	if !hasTag(*hrec, ThreadSystem, ThreadCode) || htree["partOf"] != nil || reference(htree["subject"]) != subj {
		return nil, notThread
	}
	if st, _ := htree["status"].(string); st != "in-progress" {
		return nil, fhir.Errorf(fhir.KindConflict, "the thread Communication/%s is closed (status %s): it takes no new messages; start a new thread", hid, st).At("Communication.partOf")
	}
	allowed := references(htree["recipient"])
	for _, ref := range references(tree["inResponseTo"]) {
		mid, ok := strings.CutPrefix(ref, "Communication/")
		bad := fhir.Errorf(fhir.KindUnprocessable, "inResponseTo %s is not a message of the thread Communication/%s", ref, hid).At("Communication.inResponseTo")
		if !ok || !fhir.ValidID(mid) {
			return nil, bad
		}
		if mid == hid {
			continue
		}
		mrec, mtree, err := s.communication(ctx, mid)
		if err != nil {
			return nil, err
		}
		if mrec == nil || !slices.Equal(references(mtree["partOf"]), []string{"Communication/" + hid}) {
			return nil, bad
		}
		if snd := reference(mtree["sender"]); staffRef(snd) && !slices.Contains(allowed, snd) {
			allowed = append(allowed, snd) // answering the clinician who wrote
		}
	}
	named := references(tree["recipient"])
	if len(named) == 0 {
		return references(htree["recipient"]), nil
	}
	for _, r := range named {
		if !slices.Contains(allowed, r) {
			return nil, fhir.Errorf(fhir.KindForbidden, "%s is not a recipient of this thread", r).At("Communication.recipient")
		}
	}
	return named, nil
}

// staffRef reports whether ref names a member of staff or a pool.
func staffRef(ref string) bool {
	t, _, _ := strings.Cut(ref, "/")
	return t == "Practitioner" || t == "PractitionerRole" || t == "CareTeam"
}

// communication reads Communication/id, from the transaction under way
// first; nil when missing or deleted.
func (s *Server) communication(ctx context.Context, id string) (*store.Record, map[string]any, error) {
	rec, ok := pending(ctx, "Communication", id)
	if !ok {
		var err error
		rec, err = s.cfg.Store.Read(ctx, "Communication", id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if rec.Deleted {
		return nil, nil, nil
	}
	tree, err := fhir.Decode(rec.Raw)
	if err != nil {
		return nil, nil, err
	}
	return &rec, tree, nil
}

// readReceipt is the only change a patient-facing app may make to an
// existing message: set received on a message addressed to the patient
// (or to the proxy). The new version is cur with received set to the
// server's time (kept when already set); any other difference is refused.
func (s *Server) readReceipt(c *caller, obj *fhir.Object, cur *store.Record) (*fhir.Object, error) {
	old, err := fhir.ParseObject(cur.Raw)
	if err != nil {
		return nil, err
	}
	refuse := fhir.Errorf(fhir.KindForbidden, "a patient-facing app may change a sent message only by setting received (a read receipt) on a message addressed to the patient")
	subj := reference(old.Tree()["subject"])
	to := references(old.Tree()["recipient"])
	addressed := slices.Contains(to, subj) && contains(c.actingPatients(), subj) || c.proxy != "" && slices.Contains(to, c.proxy)
	if !addressed || obj.Tree()["received"] == nil {
		return nil, refuse
	}
	strip := func(m map[string]any) map[string]any {
		out := make(map[string]any, len(m))
		for k, v := range m {
			if k != "meta" && k != "received" && k != "_received" && k != "text" {
				out[k] = v
			}
		}
		return out
	}
	if !reflect.DeepEqual(strip(old.Tree()), strip(obj.Tree())) {
		return nil, refuse
	}
	if old.Tree()["received"] == nil {
		if err := setJSON(old, "received", fhir.Instant(s.cfg.Now()), "sent"); err != nil {
			return nil, err
		}
	}
	return old, nil
}

// staffMessage keeps the thread state when staff (or a backend) write a
// Communication: a new message in a thread answers it (every
// awaiting-reply tag of the thread is cleared, in the same transaction);
// an update keeps the server's tags of the version it replaces; closing a
// thread (status completed, or any status but in-progress) clears them
// too. A staff message without sent gets the server's time.
func (s *Server) staffMessage(ctx context.Context, id string, obj *fhir.Object, cur *store.Record) ([]store.Op, error) {
	tree := obj.Tree()
	parts := references(tree["partOf"])
	if cur == nil {
		if len(parts) != 1 {
			return nil, nil
		}
		hid, ok := strings.CutPrefix(parts[0], "Communication/")
		if !ok {
			return nil, nil
		}
		hrec, _, err := s.communication(ctx, hid)
		if err != nil || hrec == nil || !hasTag(*hrec, ThreadSystem, ThreadCode) {
			return nil, err
		}
		if tree["sent"] == nil {
			if err := setJSON(obj, "sent", fhir.Instant(s.cfg.Now()), "subject"); err != nil {
				return nil, err
			}
		}
		return s.clearAwaiting(ctx, hid)
	}
	thread := hasTag(*cur, ThreadSystem, ThreadCode)
	if thread {
		if err := fhir.SetTag(obj, ThreadSystem, ThreadCode, ""); err != nil {
			return nil, err
		}
	}
	status, _ := tree["status"].(string)
	if thread && status != "in-progress" {
		if err := fhir.SetTag(obj, StateSystem, "", ""); err != nil {
			return nil, err
		}
		ops, err := s.clearAwaiting(ctx, id)
		// The header itself is written by the caller's own op.
		return slices.DeleteFunc(ops, func(op store.Op) bool { return op.Record.ID == id }), err
	}
	if hasTag(*cur, StateSystem, AwaitingReply) {
		return nil, fhir.SetTag(obj, StateSystem, AwaitingReply, "")
	}
	return nil, nil
}

// clearAwaiting returns the new versions of the header hid and its
// messages that carry the awaiting-reply tag, without it.
func (s *Server) clearAwaiting(ctx context.Context, hid string) ([]store.Op, error) {
	sys, code := StateSystem, AwaitingReply
	page, err := s.cfg.Store.Search(ctx, store.Query{Types: []string{"Communication"}, Count: maxThreadScan,
		Filter: search.AllOf(
			search.Or{Args: []search.Expr{
				search.RefCond{Param: "part-of", Targets: []string{"Communication/" + hid}},
				search.IDCond{IDs: []string{hid}},
			}},
			search.TokenCond{Param: "_tag", System: &sys, Code: &code})})
	if err != nil {
		return nil, err
	}
	var ops []store.Op
	for _, r := range page.Records {
		if p, ok := pending(ctx, r.Type, r.ID); ok && p.VersionID > r.VersionID {
			continue // rewritten by this transaction already
		}
		obj, err := fhir.ParseObject(r.Raw)
		if err != nil {
			return nil, err
		}
		if err := fhir.SetTag(obj, StateSystem, "", ""); err != nil {
			return nil, err
		}
		rec, err := s.version(r.Type, r.ID, r.VersionID+1, obj, &r)
		if err != nil {
			return nil, err
		}
		ops = append(ops, store.Op{Kind: store.OpPut, Record: rec, IfVersion: r.VersionID})
	}
	return ops, nil
}

// autoReply builds the organisation's automatic reply to the new thread
// hid: partOf and inResponseTo it, to the patient (and the proxy who
// wrote), with the expected response time and the not-for-emergencies
// sentence, in the thread's language (Resource.language "fr…": French).
func (s *Server) autoReply(m *policy.Messaging, hid, subj, sender, lang string, now time.Time) (store.Record, error) {
	from := map[string]any{"display": "Automatic reply"}
	if m.Sender != "" {
		from = map[string]any{"reference": m.Sender}
	}
	to := []any{map[string]any{"reference": subj}}
	if sender != subj {
		to = append(to, map[string]any{"reference": sender})
	}
	key := "en"
	if strings.HasPrefix(strings.ToLower(lang), "fr") {
		key = "fr"
	}
	body, err := json.Marshal(map[string]any{
		"resourceType": "Communication",
		"language":     key,
		"status":       "completed",
		"category":     []any{map[string]any{"coding": []any{map[string]any{"system": ThreadSystem, "code": AutoReplyCode}}}},
		"partOf":       []any{map[string]any{"reference": "Communication/" + hid}},
		"inResponseTo": []any{map[string]any{"reference": "Communication/" + hid}},
		"subject":      map[string]any{"reference": subj},
		"sent":         fhir.Instant(now),
		"recipient":    to,
		"sender":       from,
		"payload":      []any{map[string]any{"contentString": m.Reply(key)}},
	})
	if err != nil {
		return store.Record{}, err
	}
	obj, err := fhir.ParseObject(body)
	if err != nil {
		return store.Record{}, err
	}
	return s.version("Communication", s.cfg.NewID(), 1, obj, nil)
}

// checkAttachments checks every payload.contentAttachment of a
// patient-side message: a reference to an uploaded Binary (url
// "Binary/id"; inline data is refused) of an allowed content type and
// size. (That the app may read the Binary is checkPatientElements'.)
func (s *Server) checkAttachments(ctx context.Context, m *policy.Messaging, tree map[string]any) error {
	payload, _ := tree["payload"].([]any)
	for i, p := range payload {
		pm, _ := p.(map[string]any)
		att, ok := pm["contentAttachment"].(map[string]any)
		if !ok {
			continue
		}
		at := "Communication.payload[" + itoa(int64(i)) + "].contentAttachment"
		if att["data"] != nil {
			return fhir.Errorf(fhir.KindUnprocessable, "upload the file as a Binary first and reference it (url Binary/id); inline attachment data is not accepted").At(at + ".data")
		}
		u, _ := att["url"].(string)
		id, ok := strings.CutPrefix(strings.TrimPrefix(u, strings.TrimSuffix(s.cfg.Base, "/")+"/"), "Binary/")
		if !ok || !fhir.ValidID(id) {
			return fhir.Errorf(fhir.KindUnprocessable, "an attachment must reference an uploaded Binary (url Binary/id), not %q", u).At(at + ".url")
		}
		b, ok := pending(ctx, "Binary", id)
		if !ok {
			var err error
			b, err = s.cfg.Store.Read(ctx, "Binary", id)
			if errors.Is(err, store.ErrNotFound) {
				return fhir.Errorf(fhir.KindUnprocessable, "the attachment's Binary/%s does not exist", id).At(at + ".url")
			}
			if err != nil {
				return err
			}
		}
		if b.Deleted {
			return fhir.Errorf(fhir.KindUnprocessable, "the attachment's Binary/%s does not exist", id).At(at + ".url")
		}
		bt, err := fhir.Decode(b.Raw)
		if err != nil {
			return err
		}
		if err := checkUpload(m, bt); err != nil {
			return err
		}
		if ct, _ := att["contentType"].(string); ct != "" && !strings.EqualFold(ct, stringOf(bt["contentType"])) {
			return fhir.Errorf(fhir.KindUnprocessable, "the attachment's contentType %q is not its Binary's (%q)", ct, stringOf(bt["contentType"])).At(at + ".contentType")
		}
	}
	return nil
}

// checkUpload checks a Binary a patient-facing app uploads (or attaches)
// against the attachment allow-list and size limit.
func checkUpload(m *policy.Messaging, tree map[string]any) error {
	ct := stringOf(tree["contentType"])
	if !m.AllowsType(ct) {
		return fhir.Errorf(fhir.KindUnprocessable, "files of type %q are not accepted; allowed: %s", ct, strings.Join(m.ContentTypes, ", ")).At("Binary.contentType")
	}
	if n := decodedLen(stringOf(tree["data"])); n > m.MaxAttachment {
		return fhir.Errorf(fhir.KindTooLarge, "the file is %d bytes; at most %d are accepted", n, m.MaxAttachment).At("Binary.data")
	}
	return nil
}

// decodedLen is the byte length of base64 data (padding aware).
func decodedLen(b64 string) int64 {
	n := int64(len(b64))
	pad := int64(0)
	for i := len(b64) - 1; i >= 0 && i >= len(b64)-2 && b64[i] == '='; i-- {
		pad++
	}
	return n/4*3 + map[int64]int64{0: 0, 1: 0, 2: 1, 3: 2}[n%4] - pad
}

// escalate is POST Communication/[id]/$escalate: a clinician turns a
// thread into an eConsult or a visit request. One transaction creates a
// ServiceRequest (code EscalationSystem|econsult or |visit,
// supportingInfo the thread) and a Task (focus the ServiceRequest,
// reasonReference the thread) for the thread's patient; the parameter
// "close" (boolean) also closes the thread. Staff only.
func (s *Server) escalate(ctx context.Context, x *exchange) (*fhir.Response, error) {
	if x.rt.typ != "Communication" {
		return nil, fhir.Errorf(fhir.KindNotFound, "operation $escalate is defined on Communication threads only")
	}
	if x.req.Method != http.MethodPost {
		return nil, notAllowed(x.req.Method)
	}
	if err := s.staffOnly(x, "ServiceRequest", "Task"); err != nil {
		return nil, err
	}
	kind, note, closeThread, err := escalateParams(x.req)
	if err != nil {
		return nil, err
	}
	hrec, ok, err := s.currentFor(ctx, x.c, "read", "Communication", x.rt.id)
	if err != nil {
		return nil, err
	}
	if !ok || hrec.Deleted {
		return nil, fhir.NotFound("Communication", x.rt.id)
	}
	htree, err := fhir.Decode(hrec.Raw)
	if err != nil {
		return nil, err
	}
	if htree["partOf"] != nil {
		return nil, fhir.Errorf(fhir.KindUnprocessable, "Communication/%s is a message, not a thread header: escalate its thread", x.rt.id)
	}
	subj := reference(htree["subject"])
	if !strings.HasPrefix(subj, "Patient/") {
		return nil, fhir.Errorf(fhir.KindUnprocessable, "the thread has no patient subject")
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	thread := map[string]any{"reference": "Communication/" + hrec.ID}
	text := map[string]string{"econsult": "eConsult", "visit": "Visit request"}[kind]
	sr := map[string]any{
		"resourceType": "ServiceRequest", "status": "active", "intent": "order",
		"code":           map[string]any{"coding": []any{map[string]any{"system": EscalationSystem, "code": kind, "display": text}}, "text": text},
		"subject":        map[string]any{"reference": subj},
		"authoredOn":     fhir.Instant(now),
		"supportingInfo": []any{thread},
	}
	srID, taskID := s.cfg.NewID(), s.cfg.NewID()
	task := map[string]any{
		"resourceType": "Task", "status": "requested", "intent": "order",
		"code":            map[string]any{"coding": []any{map[string]any{"system": EscalationSystem, "code": kind, "display": text}}, "text": text},
		"focus":           map[string]any{"reference": "ServiceRequest/" + srID},
		"basedOn":         []any{map[string]any{"reference": "ServiceRequest/" + srID}},
		"for":             map[string]any{"reference": subj},
		"authoredOn":      fhir.Instant(now),
		"reasonReference": thread,
	}
	if by := x.c.fhirUser(); strings.HasPrefix(by, "Practitioner/") || strings.HasPrefix(by, "PractitionerRole/") {
		sr["requester"] = map[string]any{"reference": by}
		task["requester"] = map[string]any{"reference": by}
	}
	if note != "" {
		sr["note"] = []any{map[string]any{"text": note, "time": fhir.Instant(now)}}
		task["description"] = note
	}
	var ops []store.Op
	var recs []store.Record
	for _, r := range []struct {
		typ, id string
		body    map[string]any
	}{{"ServiceRequest", srID, sr}, {"Task", taskID, task}} {
		b, _ := json.Marshal(r.body)
		obj, err := fhir.ParseObject(b)
		if err != nil {
			return nil, err
		}
		rec, err := s.version(r.typ, r.id, 1, obj, nil)
		if err != nil {
			return nil, err
		}
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: rec})
		recs = append(recs, rec)
	}
	if closeThread && htree["status"] != "completed" {
		obj, err := fhir.ParseObject(hrec.Raw)
		if err != nil {
			return nil, err
		}
		if err := setJSON(obj, "status", "completed"); err != nil {
			return nil, err
		}
		extra, err := s.staffMessage(ctx, hrec.ID, obj, &hrec)
		if err != nil {
			return nil, err
		}
		rec, err := s.version("Communication", hrec.ID, hrec.VersionID+1, obj, &hrec)
		if err != nil {
			return nil, err
		}
		ops = append(ops, store.Op{Kind: store.OpPut, Record: rec, IfVersion: hrec.VersionID})
		ops = append(ops, extra...)
		recs = append(recs, rec)
	}
	if err := s.commit(ctx, ops...); err != nil {
		return nil, err
	}
	x.touched(hrec)
	x.touched(recs...)
	out, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []any{
		map[string]any{"name": "serviceRequest", "valueReference": map[string]any{"reference": "ServiceRequest/" + srID}},
		map[string]any{"name": "task", "valueReference": map[string]any{"reference": "Task/" + taskID}},
	}})
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: out}, nil
}

// staffOnly refuses patient-facing callers (403) and callers that may not
// create every one of types.
func (s *Server) staffOnly(x *exchange, types ...string) error {
	c := x.c
	if c == nil || c.p == nil {
		return nil
	}
	if c.patientFacing() || strings.HasPrefix(c.p.FHIRUser, "Patient/") || strings.HasPrefix(c.p.FHIRUser, "RelatedPerson/") || strings.HasPrefix(c.p.FHIRUser, "Person/") {
		return fhir.Errorf(fhir.KindForbidden, "only clinicians and backend services may escalate a thread")
	}
	for _, t := range types {
		if _, err := s.allow(c, "create", t); err != nil {
			return err
		}
	}
	return nil
}

// fhirUser is the caller's fhirUser ("" when none or auth is off).
func (c *caller) fhirUser() string {
	if c == nil || c.p == nil {
		return ""
	}
	return c.p.FHIRUser
}

// escalateParams reads $escalate's Parameters: kind (econsult | visit,
// default econsult), note (string), close (boolean); query parameters of
// the same names also work.
func escalateParams(req *fhir.Request) (kind, note string, closeThread bool, err error) {
	kind, note = req.Query.Get("kind"), req.Query.Get("note")
	closeThread = req.Query.Get("close") == "true"
	if len(req.Body) > 0 {
		var p struct {
			ResourceType string `json:"resourceType"`
			Parameter    []struct {
				Name         string `json:"name"`
				ValueString  string `json:"valueString"`
				ValueCode    string `json:"valueCode"`
				ValueBoolean bool   `json:"valueBoolean"`
			} `json:"parameter"`
		}
		if json.Unmarshal(req.Body, &p) != nil || p.ResourceType != "Parameters" {
			return "", "", false, fhir.Invalid("", "the body must be a Parameters resource")
		}
		for _, prm := range p.Parameter {
			switch prm.Name {
			case "kind":
				kind = prm.ValueCode + prm.ValueString
			case "note":
				note = prm.ValueString
			case "close":
				closeThread = prm.ValueBoolean
			}
		}
	}
	if kind == "" {
		kind = "econsult"
	}
	if kind != "econsult" && kind != "visit" {
		return "", "", false, fhir.Invalid("Parameters.parameter.kind", "kind must be econsult or visit, not %q", kind)
	}
	return kind, note, closeThread, nil
}

// hasTag reports whether rec carries meta.tag system|code.
func hasTag(rec store.Record, system, code string) bool {
	for _, t := range rec.Index.Tok {
		if t.Param == "_tag" && t.System == system && t.Code == code {
			return true
		}
	}
	return false
}

// reference is v.reference of a Reference value ("" for none).
func reference(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["reference"].(string)
	return s
}

// references lists the references of a list of Reference values.
func references(v any) []string {
	xs, _ := v.([]any)
	var out []string
	for _, x := range xs {
		if r := reference(x); r != "" {
			out = append(out, r)
		}
	}
	return out
}

func stringOf(v any) string {
	s, _ := v.(string)
	return s
}

// setJSON sets obj's member key to v (encoded), inserted after the first
// existing member of after when new.
func setJSON(obj *fhir.Object, key string, v any, after ...string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return obj.Set(key, b, after...)
}

// live is rec when it is a live version (nil for none or a tombstone).
func live(rec *store.Record) *store.Record {
	if rec == nil || rec.Deleted {
		return nil
	}
	return rec
}

// opRecords lists the records of ops.
func opRecords(ops []store.Op) []store.Record {
	out := make([]store.Record, len(ops))
	for i, op := range ops {
		out[i] = op.Record
	}
	return out
}
