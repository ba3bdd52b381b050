package server

import (
	"context"
	"net/http"
	"sync"

	"github.com/fhirgate/fhirgate/fhir"
)

// Audit of Bundle entries (IHE BALP; like IHE MHD's Provide Bundle, one
// event for the transaction per patient instead of one per resource).
//
// The entries of a batch or transaction run through the pipeline exactly
// like the same HTTP requests, but their audit records are collected and
// written when the Bundle ends:
//   - a transaction that did not commit stored nothing, so the successful
//     writes its entries staged are not recorded as done (the Bundle's own
//     event records the refusal, and a refused entry its reason);
//   - successful reads and writes of one kind (create, update, patch,
//     delete, read, vread) are merged into one exchange, which audit
//     splits as always: one AuditEvent per patient (and per set of
//     security labels), naming that patient's resources only. An EMR's
//     transaction of 200 results for 8 patients writes about 8 events,
//     not 200;
//   - searches, history, operations and failures keep an event each;
//   - every event carries the Bundle request's client address, user agent
//     and X-Request-Id (an entry has no headers of its own).

// entryAuditMax bounds the resources one merged event names.
const entryAuditMax = 100

type entryAuditKey struct{}

// entryAudit collects the audit records of one Bundle's entries.
type entryAudit struct {
	mu sync.Mutex
	xs []*exchange
	st []*fhir.Response
}

func entryAuditFrom(ctx context.Context) *entryAudit {
	ea, _ := ctx.Value(entryAuditKey{}).(*entryAudit)
	return ea
}

// collect keeps x for the end of the Bundle; false when ctx runs no Bundle.
func (ea *entryAudit) collect(x *exchange, resp *fhir.Response) bool {
	if ea == nil {
		return false
	}
	ea.mu.Lock()
	defer ea.mu.Unlock()
	ea.xs = append(ea.xs, x)
	ea.st = append(ea.st, &fhir.Response{Status: resp.Status, Err: resp.Err})
	return true
}

// mergeable are the interactions whose successful entries share events.
var mergeable = map[string]bool{"create": true, "update": true, "patch": true, "delete": true, "read": true, "vread": true}

// staged are the interactions a transaction's entries stage in its Tx.
var staged = map[string]bool{"create": true, "update": true, "patch": true, "delete": true}

// flushEntryAudit audits the collected entries of the Bundle request
// bundle; committed is false for a transaction that stored nothing.
func (s *Server) flushEntryAudit(ctx context.Context, ea *entryAudit, bundle *fhir.Request, committed bool) {
	ea.mu.Lock()
	xs, st := ea.xs, ea.st
	ea.xs, ea.st = nil, nil
	ea.mu.Unlock()
	hdr := http.Header{}
	for _, k := range []string{"X-Request-Id", "X-Forwarded-For", "User-Agent"} {
		if v := bundle.Header.Get(k); v != "" {
			hdr.Set(k, v)
		}
	}
	// A group holds entries of one caller, kind and status, and either
	// only resources in patient compartments or only others: a resource
	// in no compartment merged with patients' would be named in each
	// patient's event, which it was not as an entry of its own.
	type group struct {
		c           *caller
		interaction string
		status      int
		patients    bool
	}
	var order []group
	merged := map[group]*exchange{}
	for i, x := range xs {
		ok := st[i].Status < 400 && st[i].Err == nil
		if ok && !committed && staged[x.interaction] {
			continue // rolled back with the transaction
		}
		req := &fhir.Request{Method: x.req.Method, Path: x.req.Path, Query: x.req.Query, Header: hdr, Entry: x.req.Entry}
		if !ok || !mergeable[x.interaction] || x.query != "" || x.operation != "" {
			cp := *x
			cp.req = req
			s.audit(ctx, &cp, st[i])
			continue
		}
		g := group{x.c, x.interaction, st[i].Status, len(x.patients) > 0}
		m := merged[g]
		if m != nil && len(m.resources)+len(x.resources) > entryAuditMax {
			s.audit(ctx, m, &fhir.Response{Status: g.status})
			m = nil
		}
		if m == nil {
			m = &exchange{req: req, rt: x.rt, c: x.c, interaction: x.interaction, seq: x.seq}
			if merged[g] == nil {
				order = append(order, g)
			}
			merged[g] = m
		}
		m.resources = append(m.resources, x.resources...)
		m.owners = append(m.owners, x.owners...)
		m.held = append(m.held, x.held...)
		m.labels = append(m.labels, x.labels...)
		for _, p := range x.patients {
			if !contains(m.patients, p) {
				m.patients = append(m.patients, p)
			}
		}
		m.seq = min(m.seq, x.seq) // the earliest: a $hold re-checks events of requests begun before it
	}
	for _, g := range order {
		s.audit(ctx, merged[g], &fhir.Response{Status: g.status})
	}
}
