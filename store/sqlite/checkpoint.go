package sqlite

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Checkpoints (sqlite.org/wal.html#ckpt). SQLite's automatic checkpoint
// copies the WAL into the database file (and, with synchronous full,
// fsyncs it) inside the COMMIT that crossed its threshold, so every
// writer request queued behind that commit waited for it. Here the copy
// runs beside the writer instead: a goroutine with a connection of its
// own runs a PASSIVE checkpoint every checkpointEvery after commits,
// blocking neither the writer nor the readers.
//
// A WAL is only started again from its beginning by a write transaction
// that begins when every frame is copied, and under a steady load some
// commit always lands during the background checkpoint. So once the WAL
// holds restartFrames, the writer checkpoints itself between two
// transactions: by then nearly every frame is copied, so this costs a few
// pages and an fsync, and the next transaction restarts the WAL. The
// writer's own automatic checkpoint (backstopPages) is a backstop only.
//
// Measured (fhirbench ingest of transaction Bundles, 4 clients, one run):
// README.md, "Benchmarks".
const (
	checkpointEvery = 250 * time.Millisecond
	restartFrames   = 16384  // 64 MiB of 4 KiB pages
	backstopPages   = 50_000 // the writer's wal_autocheckpoint
)

type checkpointer struct {
	db   *sql.DB
	w    *writer // set by start
	log  *slog.Logger
	quit chan struct{}
	wg   sync.WaitGroup
	// frames is the WAL's size in frames at the last background
	// checkpoint; the writer restarts the WAL once it reaches
	// restartFrames.
	frames atomic.Int64
	runs   atomic.Int64 // background checkpoints (tests)
	// restart is restartFrames (tests set less)
	restart int64
}

func newCheckpointer(db *sql.DB, log *slog.Logger) *checkpointer {
	db.SetMaxOpenConns(1)
	return &checkpointer{db: db, log: log, quit: make(chan struct{}), restart: restartFrames}
}

// start runs the background checkpoints of w's commits.
func (c *checkpointer) start(w *writer) {
	c.w = w
	c.wg.Add(1)
	go c.loop()
}

func (c *checkpointer) loop() {
	defer c.wg.Done()
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	last := int64(-1)
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
		}
		n := c.w.txs.Load()
		if n == last {
			continue // nothing committed since
		}
		last = n
		var busy, frames, copied int64
		if err := c.db.QueryRowContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
			c.log.Warn("sqlite: checkpoint", "err", err)
			continue
		}
		c.frames.Store(frames)
		c.runs.Add(1)
	}
}

// maybeRestart runs on the writer between transactions: a checkpoint of
// the frames the background one did not copy yet, once the WAL holds
// restartFrames, so that the next transaction starts the WAL again.
func (c *checkpointer) maybeRestart(conn *sql.Conn) {
	if c == nil || c.frames.Load() < c.restart {
		return
	}
	c.frames.Store(0)
	if _, err := conn.ExecContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
		c.log.Warn("sqlite: checkpoint", "err", err)
	}
}

func (c *checkpointer) stop() {
	close(c.quit)
	c.wg.Wait()
	c.db.Close()
}
