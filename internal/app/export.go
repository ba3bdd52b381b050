package app

import (
	"context"
	"net/http"
)

// startExport starts the service (placeholder until its issue part lands).
func (a *App) startExport(ctx context.Context, extra map[string]http.Handler) error { return nil }

// ExportOptions configure the service (Options.Export); ExportFromEnv reads them
// from FHIRGATE_* variables (cmd/fhirgate wires it).
type ExportOptions struct{}

// ExportFromEnv reads ExportOptions from the environment.
func ExportFromEnv(getenv func(string) string) (ExportOptions, error) { return ExportOptions{}, nil }
