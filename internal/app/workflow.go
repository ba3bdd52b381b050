package app

import (
	"context"
	"net/http"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// startWorkflow starts the service (placeholder until its issue part lands).
func (a *App) startWorkflow(ctx context.Context, extra map[string]http.Handler) error { return nil }

// WorkflowOptions configure the service (Options.Workflow); WorkflowFromEnv reads them
// from FHIRGATE_* variables (cmd/fhirgate wires it).
type WorkflowOptions struct{}

// WorkflowFromEnv reads WorkflowOptions from the environment.
func WorkflowFromEnv(getenv func(string) string) (WorkflowOptions, error) {
	return WorkflowOptions{}, nil
}

// withWorkflowParams adds the service's search parameters to the registry
// (search.LoadCustom), e.g. a worklist's due date.
func withWorkflowParams(reg *search.Registry) (*search.Registry, error) { return reg, nil }
