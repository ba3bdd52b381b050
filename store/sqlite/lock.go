package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/store"
)

// Lock takes the advisory lease key until unlock or ttl (a row of locks:
// owner token and expiry), waiting while another holder has it. Several
// processes on one database file exclude each other through the row; in
// one process a release wakes the waiters at once.
func (s *Store) Lock(ctx context.Context, key string, ttl time.Duration) (func(), error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	owner := hex.EncodeToString(b[:])
	for {
		s.lockMu.Lock()
		wake := s.lockWake
		s.lockMu.Unlock()
		now := s.opts.Now()
		r := &request{kind: reqLock, key: key, owner: owner, now: now.UnixMilli(), exp: now.Add(ttl).UnixMilli()}
		if err := s.w.do(ctx, r); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("sqlite: lock %q: %w", key, store.ErrLocked)
			}
			return nil, fmt.Errorf("sqlite: lock %q: %w", key, err)
		}
		if r.got {
			var once sync.Once
			return func() {
				once.Do(func() {
					_ = s.w.do(context.Background(), &request{kind: reqUnlock, key: key, owner: owner})
				})
			}, nil
		}
		// Wait for a release in this process, or poll (another process,
		// or the lease running out).
		wait := 25 * time.Millisecond
		if r.held > 0 {
			if until := time.Duration(r.held-now.UnixMilli()) * time.Millisecond; until > 0 && until < wait {
				wait = until
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("sqlite: lock %q: %w", key, store.ErrLocked)
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// lock tries to take r.key: a missing or expired lease becomes r's. On
// failure r.held is set to the holder's expiry.
func (w *writer) lock(ctx context.Context, r *request) error {
	res, err := w.exec(ctx, `INSERT INTO locks(k, owner, exp) VALUES (?, ?, ?)
		ON CONFLICT(k) DO UPDATE SET owner = excluded.owner, exp = excluded.exp WHERE locks.exp <= ?`,
		r.key, r.owner, r.exp, r.now)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	r.got = n == 1
	if !r.got {
		st, err := w.stmt(ctx, `SELECT exp FROM locks WHERE k = ?`)
		if err != nil {
			return err
		}
		if err := st.QueryRowContext(ctx, r.key).Scan(&r.held); err != nil {
			r.held = 0
		}
	}
	return nil
}

func (s *Store) wakeLockWaiters() {
	s.lockMu.Lock()
	close(s.lockWake)
	s.lockWake = make(chan struct{})
	s.lockMu.Unlock()
}
