package export

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/fhirgate/fhirgate/smart"
)

// Job states (Bulk Data Access 2.0 export.html, "Bulk Data Status
// Request"): queued and running answer 202 with X-Progress, complete the
// manifest (200), failed an OperationOutcome (500). A cancelled job is
// deleted (404 afterwards).
const (
	StatusQueued   = "queued"
	StatusRunning  = "running"
	StatusComplete = "complete"
	StatusFailed   = "failed"
)

// Export levels (export.html#endpoint---system-level-export, -all-patients, -group-of-patients).
const (
	LevelSystem  = "system"
	LevelPatient = "patient"
	LevelGroup   = "group"
)

// Job is one Bulk Data export: what was asked, by whom, and how far it got.
// It is kept in Storage as one document, so it survives a restart.
type Job struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Level  string `json:"level"`
	// Group is the Group id of a group-level export.
	Group string `json:"group,omitempty"`
	// Types is the _type list (nil: every type the level and scopes allow).
	Types []string  `json:"types,omitempty"`
	Since time.Time `json:"since,omitzero"`
	// Patients is the kick-off's patient parameter ("Patient/1").
	Patients []string `json:"patients,omitempty"`
	Format   string   `json:"format"`
	// Request is the kick-off URL (manifest "request"); RequestID its X-Request-Id.
	Request   string `json:"request"`
	RequestID string `json:"requestId,omitempty"`
	Owner     Owner  `json:"owner"`

	Created time.Time `json:"created"`
	Started time.Time `json:"started,omitzero"`
	// TransactionTime is when the run began: resources changed later are
	// not exported (manifest transactionTime).
	TransactionTime time.Time `json:"transactionTime,omitzero"`
	Finished        time.Time `json:"finished,omitzero"`
	// Expires: a finished job and its files are deleted then.
	Expires time.Time `json:"expires,omitzero"`
	// Attempts counts runs (a job running when the server stopped is run again).
	Attempts int `json:"attempts,omitempty"`

	Output []File `json:"output,omitempty"`
	Errors []File `json:"errors,omitempty"`
	// exported: the patients whose data the run wrote (not stored; the
	// per-patient AuditEvents of a completed export).
	exported map[string]struct{}
	// Error is the reason a failed job failed.
	Error string `json:"error,omitempty"`
	// Notes are non-fatal issues reported in the error file (OperationOutcome NDJSON).
	Notes []string `json:"notes,omitempty"`
}

// File is one NDJSON file of a finished job.
type File struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// Owner is the client that kicked the job off: its status and files are
// served only to a token of the same issuer, client and subject, and the
// job reads the store with these scopes (Server.WalkAs).
type Owner struct {
	Issuer   string `json:"iss,omitempty"`
	Subject  string `json:"sub,omitempty"`
	ClientID string `json:"client,omitempty"`
	FHIRUser string `json:"fhirUser,omitempty"`
	Patient  string `json:"patient,omitempty"`
	Scope    string `json:"scope,omitempty"`
}

// OwnerOf records p (nil: authorization disabled).
func OwnerOf(p *smart.Principal) Owner {
	if p == nil {
		return Owner{}
	}
	o := Owner{Issuer: p.Issuer, Subject: p.Subject, ClientID: p.ClientID, FHIRUser: p.FHIRUser, Patient: p.Patient}
	for i, s := range p.Scopes {
		if i > 0 {
			o.Scope += " "
		}
		o.Scope += s.Raw
	}
	return o
}

// Principal rebuilds the principal the job walks the store as (nil for
// the zero Owner: authorization disabled).
func (o Owner) Principal() *smart.Principal {
	if o == (Owner{}) {
		return nil
	}
	sc, _ := smart.ParseScopes(o.Scope) // stored from parsed scopes: well formed
	return &smart.Principal{Issuer: o.Issuer, Subject: o.Subject, ClientID: o.ClientID, FHIRUser: o.FHIRUser, Patient: o.Patient, Scopes: sc}
}

// Is reports whether p is this owner (the same issuer, client and subject).
func (o Owner) Is(p *smart.Principal) bool {
	if p == nil {
		return o == (Owner{})
	}
	return o.Issuer == p.Issuer && o.ClientID == p.ClientID && o.Subject == p.Subject
}

// ErrNotFound: no job with that id (never created, cancelled or expired).
var ErrNotFound = errors.New("export: job not found")

// Storage keeps jobs durably beside the store (sqlitestore: the
// export_jobs table of fhirgate.db; mongostore: the export_jobs
// collection). storagetest is its conformance suite.
type Storage interface {
	Create(ctx context.Context, j Job) error
	Get(ctx context.Context, id string) (Job, error)
	// Put replaces a job; ErrNotFound when it was deleted meanwhile (a
	// cancelled job is never brought back by its worker).
	Put(ctx context.Context, j Job) error
	Delete(ctx context.Context, id string) error
	// List returns every job, oldest first.
	List(ctx context.Context) ([]Job, error)
	io.Closer
}
