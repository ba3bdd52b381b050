package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
)

type respBundle struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id,omitempty"`
	Meta         respMeta    `json:"meta"`
	Type         string      `json:"type"`
	Entry        []respEntry `json:"entry,omitempty"`
}

type respMeta struct {
	LastUpdated string `json:"lastUpdated"`
}

type respEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Response respResponse    `json:"response"`
}

// respResponse is Bundle.entry.response (bundle.html).
type respResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// response builds the batch-response / transaction-response Bundle with
// one entry per request entry, in the original order.
func (p *processor) response(typ string, entries []*entry) *fhir.Response {
	b := respBundle{
		ResourceType: "Bundle",
		ID:           p.h.NewID(),
		Meta:         respMeta{LastUpdated: p.opt.Now().UTC().Format(time.RFC3339Nano)},
		Type:         typ,
		Entry:        make([]respEntry, len(entries)),
	}
	for i, e := range entries {
		b.Entry[i] = p.responseEntry(e)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep narrative and resources as the pipeline wrote them
	if err := enc.Encode(b); err != nil {
		return errorResponse(fhir.Errorf(fhir.KindInternal, "cannot encode the response Bundle").Wrap(err))
	}
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: bytes.TrimRight(buf.Bytes(), "\n")}
}

func (p *processor) responseEntry(e *entry) respEntry {
	r := e.resp
	if r == nil {
		r = failed(e, fhir.Errorf(fhir.KindInternal, "entry %d was not processed", e.i))
	}
	out := respEntry{Response: respResponse{Status: fmt.Sprintf("%d %s", r.Status, http.StatusText(r.Status))}}
	if r.Header != nil {
		out.Response.Location = r.Header.Get("Location")
		out.Response.Etag = r.Header.Get("ETag")
		if lm := r.Header.Get("Last-Modified"); lm != "" {
			if t, err := http.ParseTime(lm); err == nil {
				out.Response.LastModified = t.UTC().Format(time.RFC3339)
			}
		}
	}
	body := r.Body
	if len(body) == 0 || !json.Valid(body) {
		return out
	}
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
	}
	_ = json.Unmarshal(body, &head)
	if r.Err != nil || r.Status >= 400 || (head.ResourceType == "OperationOutcome" && !isRead(e)) {
		out.Response.Outcome = body
		return out
	}
	out.Resource = body
	if head.ResourceType != "" && head.ID != "" && head.ResourceType != "Bundle" {
		out.FullURL = p.location(head.ResourceType + "/" + head.ID)
	}
	return out
}
