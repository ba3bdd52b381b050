package mongo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/fhirgate/fhirgate/store"
)

// defaultLockTTL is used when Lock is given a ttl <= 0.
const defaultLockTTL = 30 * time.Second

// Lock takes a lease on key in the locks collection ({_id: key, exp,
// owner}): an insert (the unique _id makes it exclusive) or the take-over
// of an expired lease with one conditional update. While someone else
// holds a live lease it retries with a growing pause (5 ms to 200 ms) until
// ctx ends, then fails with store.ErrLocked. unlock deletes the lease only
// if it is still this holder's (it may have expired and been taken over).
func (s *Store) Lock(ctx context.Context, key string, ttl time.Duration) (func(), error) {
	if ttl <= 0 {
		ttl = defaultLockTTL
	}
	token := randomID()
	pause := 5 * time.Millisecond
	for {
		now := s.now().UTC()
		exp := now.Add(ttl)
		ok, err := s.tryLock(ctx, key, token, now, exp)
		if err != nil {
			// The driver refuses to send when the deadline is too near,
			// before ctx.Err() is set: that is the end of the wait too.
			if ctx.Err() != nil || mongo.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("mongo: lock %q: %w (%w)", key, store.ErrLocked, err)
			}
			return nil, err
		}
		if ok {
			var once sync.Once
			return func() {
				once.Do(func() {
					c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
					defer cancel()
					if _, err := s.deleteIf(c, s.locks, []string{key}, []cond{eq("owner", token)}); err != nil {
						s.log.Warn("mongo: unlock failed; the lease expires by itself", "key", key, "err", err)
					}
				})
			}, nil
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("mongo: lock %q: %w (%w)", key, store.ErrLocked, ctx.Err())
		case <-t.C:
		}
		pause = min(pause*2, 200*time.Millisecond)
	}
}

func (s *Store) tryLock(ctx context.Context, key, token string, now, exp time.Time) (bool, error) {
	_, err := s.locks.InsertOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "exp", Value: exp}, {Key: "owner", Value: token}})
	if err == nil {
		return true, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return false, fmt.Errorf("mongo: lock %q: %w", key, err)
	}
	ok, err := s.updateIf(ctx, s.locks, key, []cond{notAfter("exp", now)},
		bson.D{{Key: "$set", Value: bson.D{{Key: "exp", Value: exp}, {Key: "owner", Value: token}}}})
	if err != nil {
		return false, fmt.Errorf("mongo: lock %q: %w", key, err)
	}
	return ok, nil
}
