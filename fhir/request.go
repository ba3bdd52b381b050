package fhir

import (
	"net/http"
	"net/url"
)

// Request is one FHIR interaction, independent of HTTP (http.html). The
// REST adapter builds it from an HTTP request; the bundle processor builds
// it from a Bundle entry, so both run through exactly the same pipeline.
type Request struct {
	Method string // GET, HEAD, POST, PUT, PATCH, DELETE
	// Path is relative to the FHIR base without leading slash or query:
	// "", "metadata", "Patient", "Patient/123", "Patient/123/_history/2",
	// "Patient/123/$release", "Patient/_search", "Patient/123/Observation".
	Path   string
	Query  url.Values
	Header http.Header // If-Match, If-None-Exist, If-None-Match, If-Modified-Since, Prefer, Content-Type
	Body   []byte
	// Entry is the index of the Bundle entry this request came from (-1 for HTTP).
	Entry int
	// AssignID, for a create inside a transaction Bundle, is the id the
	// bundle processor already chose (so urn:uuid placeholders can be
	// rewritten before the entry runs). Empty: the server assigns one.
	AssignID string
}

// Response is the result of a Request.
type Response struct {
	Status int
	Header http.Header // ETag, Location, Last-Modified, Content-Location
	// Body is the resource JSON (a resource, a Bundle or an OperationOutcome); nil for none.
	Body []byte
	// Err is set when the interaction failed; Body then holds its OperationOutcome.
	Err error
}
