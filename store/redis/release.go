package redis

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jitbot/jitbot/store"
)

// Lock releases are sent without waiting for Redis's answer. Every sweeper revocation ends with one (lock,
// list, call, commit, unlock), so waiting cost each of the sweeper's workers a round trip per revocation and
// per check before it could take the next binding. ReleaseLock now starts the release and returns; this
// process's later operations on the same lock (AcquireLock, RenewLock, a Commit fenced by it, another
// ReleaseLock) wait until it is answered, so within the process everything happens in the order it was asked
// for, exactly as before. Another process may see the lock held a round trip longer, as if the release had
// been slower; the release script deletes only the value it was given, so however late it lands it never
// frees a lock someone took meanwhile. A release that fails (or is lost with the process) leaves the lock to
// expire, as a failed release always did. Close waits for the releases in flight.

// releaseTimeout bounds one release sent in the background.
const releaseTimeout = 5 * time.Second

type releases struct {
	mu       sync.Mutex
	inFlight map[string]chan struct{} // lock name -> closed once its release is answered
	wg       sync.WaitGroup
}

// await waits until no release of the named lock is in flight.
func (r *releases) await(ctx context.Context, name string) error {
	r.mu.Lock()
	ch := r.inFlight[name]
	r.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ReleaseLock implements store.Store: it frees l if l still holds it, without waiting for the answer (see
// above).
func (s *Store) ReleaseLock(ctx context.Context, l store.Lock) error {
	if l.Name == "" {
		return fmt.Errorf("redis: release lock: empty name: %w", store.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis: release lock %q: %w", l.Name, err)
	}
	if err := s.rel.await(ctx, l.Name); err != nil {
		return fmt.Errorf("redis: release lock %q: %w", l.Name, err)
	}
	done := make(chan struct{})
	r := &s.rel
	r.mu.Lock()
	if r.inFlight == nil {
		r.inFlight = map[string]chan struct{}{}
	}
	r.inFlight[l.Name] = done
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		_ = scriptLockRelease.Run(rctx, s.c, []string{s.keys.lock(l.Name)}, lockValue(l)).Err()
		cancel()
		r.mu.Lock()
		if r.inFlight[l.Name] == done {
			delete(r.inFlight, l.Name)
		}
		r.mu.Unlock()
		close(done)
	}()
	return nil
}
