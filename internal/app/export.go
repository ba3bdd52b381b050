package app

import (
	"context"
	"net/http"
)

// startExport starts the service (placeholder until its issue part lands).
func (a *App) startExport(ctx context.Context, extra map[string]http.Handler) error { return nil }
