// Package embedded runs FerretDB v1.24 in-process on SQLite files: a real
// MongoDB wire-protocol server that fhirgate reaches through the official
// Mongo driver exactly as it reaches MongoDB. It is store/mongo's test
// server (no MongoDB server runs here), the store of `--store ferretdb`
// data directories (the default before store/sqlite) and the source of
// `fhirgate migrate`. What FerretDB does differently from MongoDB, and how
// store/mongo copes, is store/mongo's Flavor (store/mongo/flavor.go).
package embedded

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Server is a running embedded FerretDB.
type Server struct {
	URI    string
	dir    string
	cancel context.CancelFunc
	done   chan error
}

// Start starts FerretDB with its SQLite files under dir, listening on addr
// ("" = a free loopback port; set it to reach the store with mongosh). Logs go to logger at error level (FerretDB warns about every command it lacks, e.g. endSessions) (nil: discarded).
func Start(ctx context.Context, dir, addr string, logger *slog.Logger) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded: data dir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: create data dir: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	} else {
		logger = slog.New(levelFilter{Handler: logger.Handler(), min: slog.LevelError})
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/?_pragma=synchronous(normal)",
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded: start ferretdb: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	s := &Server{cancel: cancel, done: make(chan error, 1), dir: abs}
	go func() { s.done <- f.Run(rctx) }()
	s.URI = f.MongoDBURI()
	return s, nil
}

// Stop stops the server and waits (at most 10 s) for it to close its files.
func (s *Server) Stop() {
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

// levelFilter passes records at or above min to the wrapped handler. It
// keeps attributes and groups itself and applies them only to records it
// passes: FerretDB derives a logger per connection and command, and the
// wrapped handler's WithAttrs would copy its state every time.
type levelFilter struct {
	slog.Handler
	min   slog.Level
	steps []func(slog.Handler) slog.Handler
}

func (l levelFilter) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.Handler.Enabled(ctx, lv)
}

func (l levelFilter) Handle(ctx context.Context, r slog.Record) error {
	h := l.Handler
	for _, s := range l.steps {
		h = s(h)
	}
	return h.Handle(ctx, r)
}

func (l levelFilter) with(step func(slog.Handler) slog.Handler) slog.Handler {
	steps := make([]func(slog.Handler) slog.Handler, len(l.steps), len(l.steps)+1)
	copy(steps, l.steps)
	return levelFilter{l.Handler, l.min, append(steps, step)}
}

func (l levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return l.with(func(h slog.Handler) slog.Handler { return h.WithAttrs(a) })
}

func (l levelFilter) WithGroup(n string) slog.Handler {
	return l.with(func(h slog.Handler) slog.Handler { return h.WithGroup(n) })
}
