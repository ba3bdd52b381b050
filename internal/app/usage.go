package app

import (
	"context"
	"net/http"
)

// startUsage starts the service (placeholder until its issue part lands).
func (a *App) startUsage(ctx context.Context, extra map[string]http.Handler) error { return nil }

// instrument wraps the HTTP handler (placeholder until request metrics land).
func (a *App) instrument(h http.Handler) http.Handler { return h }

// UsageOptions configure the service (Options.Usage); UsageFromEnv reads them
// from FHIRGATE_* variables (cmd/fhirgate wires it).
type UsageOptions struct{}

// UsageFromEnv reads UsageOptions from the environment.
func UsageFromEnv(getenv func(string) string) (UsageOptions, error) { return UsageOptions{}, nil }
