package booking

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/server"
)

// txEntry is one PUT of a commit; ifMatch is the version it replaces
// (0: none, a new resource).
type txEntry struct {
	ref     string // "Slot/1"
	body    json.RawMessage
	ifMatch int64
}

// commit writes entries in one transaction Bundle (http.html#transaction)
// with the server's own authority on the caller's behalf
// (server.HandleAsService: the AuditEvent names the caller). Each update
// carries If-Match on the version the decision was made on, and the store
// applies all of them or none (store.Transact, also on MongoDB/FerretDB):
// a Slot that changed since it was read fails the whole transaction
// (412, or 409 when two commits race past the check together), which is
// errTaken.
func (s *Service) commit(ctx context.Context, call server.OperationCall, entries ...txEntry) error {
	type request struct {
		Method  string `json:"method"`
		URL     string `json:"url"`
		IfMatch string `json:"ifMatch,omitempty"`
	}
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  request         `json:"request"`
	}
	b := struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: "transaction"}
	for _, e := range entries {
		r := request{Method: http.MethodPut, URL: e.ref}
		if e.ifMatch > 0 {
			r.IfMatch = `W/"` + strconv.FormatInt(e.ifMatch, 10) + `"`
		}
		b.Entry = append(b.Entry, entry{FullURL: s.cfg.Base + "/" + e.ref, Resource: e.body, Request: r})
	}
	if s.cfg.BeforeCommit != nil {
		s.cfg.BeforeCommit(call.Request.Path)
	}
	body, err := json.Marshal(b)
	if err != nil {
		return err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/fhir+json")
	h.Set("Prefer", "return=minimal")
	if call.Request != nil {
		for _, k := range []string{"X-Request-Id", "X-Forwarded-For", "User-Agent"} {
			if v := call.Request.Header.Get(k); v != "" {
				h.Set(k, v)
			}
		}
	}
	resp := s.cfg.Server.HandleAsService(ctx, call.Principal, &fhir.Request{Method: http.MethodPost, Path: "", Header: h, Body: body, Entry: -1})
	switch resp.Status {
	case http.StatusOK:
		return nil
	case http.StatusConflict, http.StatusPreconditionFailed:
		return errTaken
	}
	if resp.Err != nil {
		return resp.Err
	}
	return fhir.Errorf(fhir.KindInternal, "booking: the transaction answered %d", resp.Status)
}
