package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"time"
)

// Watch polls the policy file at path every interval (default 10s) until ctx
// is done, and blocks until then: run it in its own goroutine after Load.
//
// Each poll reads the file and compares a SHA-256 of its content with the
// content last handled (policy files are small; hashing beats trusting
// mtimes with a coarse granularity). A change is acted on only once the
// content is the same on two consecutive polls, so a file caught half
// written (editors, os.WriteFile truncate then write) is not reported. Then:
//   - a file that loads and whose effective rules differ (Hash, or the
//     messaging section's Messaging.Hash) from the last good policy is
//     passed to onChange; comment or formatting edits do not call it;
//   - a file that does not load, or cannot be read, is passed to onError
//     once, and nothing else happens: the caller keeps the policy it has.
//
// The baseline is the file as it is when Watch starts (the caller has just
// loaded it). A policy passed to onChange has a nil Now (time.Now). The
// callbacks run on Watch's goroutine, one at a time.
func Watch(ctx context.Context, path string, interval time.Duration, onChange func(*Policy), onError func(error)) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	w := &watcher{path: path}
	w.baseline()
	if testHookWatchReady != nil {
		testHookWatchReady()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p, err := w.poll()
			switch {
			case err != nil && onError != nil:
				onError(err)
			case p != nil && onChange != nil:
				onChange(p)
			}
		}
	}
}

// testHookWatchReady is called once Watch has its baseline (tests only).
var testHookWatchReady func()

type watcher struct {
	path string
	sum  [32]byte // content last handled
	good string   // Hash of the last good policy ("" if none yet)

	pending    bool // content differing from sum was seen once
	pendingSum [32]byte

	pendingErr string // read error seen once
	readErr    string // read error reported (until a read succeeds)
}

func (w *watcher) baseline() {
	data, err := w.read()
	if err != nil {
		return
	}
	w.sum = sha256.Sum256(data)
	if p, err := Parse(data, w.path); err == nil {
		w.good = p.reloadKey()
	}
}

func (w *watcher) read() ([]byte, error) {
	f, err := os.Open(w.path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	return readLimited(f, w.path)
}

// poll returns a new policy to apply, an error to report, or neither.
func (w *watcher) poll() (*Policy, error) {
	data, err := w.read()
	if err != nil {
		msg := err.Error()
		switch {
		case msg == w.readErr:
			return nil, nil // already reported
		case msg != w.pendingErr:
			w.pendingErr = msg // report if it persists
			return nil, nil
		}
		w.readErr, w.pendingErr = msg, ""
		w.sum = [32]byte{} // re-handle the file when it is back
		return nil, err
	}
	w.readErr, w.pendingErr = "", ""
	sum := sha256.Sum256(data)
	if sum == w.sum {
		w.pending = false
		return nil, nil
	}
	if !w.pending || w.pendingSum != sum {
		w.pending, w.pendingSum = true, sum // act when it is stable
		return nil, nil
	}
	w.pending, w.sum = false, sum
	p, err := Parse(data, w.path)
	if err != nil {
		return nil, err
	}
	if p.reloadKey() == w.good {
		return nil, nil
	}
	w.good = p.reloadKey()
	return p, nil
}
