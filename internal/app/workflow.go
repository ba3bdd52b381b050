package app

import (
	"context"
	"net/http"
)

// startWorkflow starts the service (placeholder until its issue part lands).
func (a *App) startWorkflow(ctx context.Context, extra map[string]http.Handler) error { return nil }
