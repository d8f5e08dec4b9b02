package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

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
// expire, as a failed release always did. Close waits for the releases in flight and refuses later ones.
//
// Releases asked for while others are being sent wait for that round trip to end and are then sent together,
// in one pipeline: in a mass expiry each revocation's release had its own round trip, and its own goroutine,
// which took about a tenth of jitbot's CPU.

// releaseTimeout bounds one release sent in the background.
const releaseTimeout = 5 * time.Second

type releases struct {
	mu       sync.Mutex
	inFlight map[string]chan struct{} // lock name -> closed once its release is answered
	closed   bool                     // Close has begun: no release starts any more
	wg       sync.WaitGroup
	queue    []queuedRelease // started, not sent yet
	sending  bool            // a goroutine is sending releases (and then whatever queued meanwhile)
}

type queuedRelease struct {
	l    store.Lock
	done chan struct{}
}

// errClosed refuses a release asked for once Close has begun.
var errClosed = errors.New("the store is closed")

// start waits until no release of the named lock is in flight and records a new one, in one step under the
// lock (two releases of one name never both see nothing in flight), or refuses once Close has begun. The
// returned channel is closed by finish.
func (r *releases) start(ctx context.Context, name string) (chan struct{}, error) {
	r.mu.Lock()
	for ch := r.inFlight[name]; ch != nil; ch = r.inFlight[name] {
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if r.closed {
		return nil, errClosed
	}
	done := make(chan struct{})
	if r.inFlight == nil {
		r.inFlight = map[string]chan struct{}{}
	}
	r.inFlight[name] = done
	r.wg.Add(1)
	return done, nil
}

// finish marks the release of name answered.
func (r *releases) finish(name string, done chan struct{}) {
	r.mu.Lock()
	if r.inFlight[name] == done {
		delete(r.inFlight, name)
	}
	r.mu.Unlock()
	close(done)
	r.wg.Done()
}

// close refuses every later release and waits for those in flight.
func (r *releases) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
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
	done, err := s.rel.start(ctx, l.Name)
	if err != nil {
		return fmt.Errorf("redis: release lock %q: %w", l.Name, err)
	}
	r := &s.rel
	r.mu.Lock()
	r.queue = append(r.queue, queuedRelease{l: l, done: done})
	send := !r.sending
	r.sending = true
	r.mu.Unlock()
	if send {
		go s.sendReleases()
	}
	return nil
}

// sendReleases sends the queued releases in one pipeline, then those queued meanwhile, until none is left.
func (s *Store) sendReleases() {
	r := &s.rel
	for {
		r.mu.Lock()
		batch := r.queue
		r.queue = nil
		if len(batch) == 0 {
			r.sending = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		cmds := make([]*goredis.Cmd, len(batch))
		pipe := s.c.Pipeline()
		for i, q := range batch {
			cmds[i] = scriptLockRelease.EvalSha(ctx, pipe, []string{s.keys.lock(q.l.Name)}, lockValue(q.l))
		}
		_, _ = pipe.Exec(ctx)
		for i, q := range batch {
			if goredis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") { // Redis restarted or its scripts were flushed
				_ = scriptLockRelease.Run(ctx, s.c, []string{s.keys.lock(q.l.Name)}, lockValue(q.l)).Err()
			}
		}
		cancel()
		for _, q := range batch {
			r.finish(q.l.Name, q.done)
		}
	}
}
