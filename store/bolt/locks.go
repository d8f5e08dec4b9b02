package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/jitbot/jitbot/store"
)

// Locks live in the memory of the process that has the data file open, not in the file. Open takes the file's
// exclusive lock, so every holder of a store lock is in this process: a lock record written to the file
// protected nothing that a map does not, and it cost a write transaction (an fsync) to take and another to
// free on every revocation (lock, list, provider call, commit, unlock), which made bbolt the slower store in a
// mass expiry.
//
// What must outlive the process is the fence. It orders provider operations across restarts (a provider's
// far end ignores an operation older than the last it applied; see grants.binding.next), so every fence
// handed out must be greater than every fence handed out before, by this process or an earlier one. The file
// keeps a ceiling (meta "lock_fence"): every fence ever handed out is at most the ceiling. Fences are handed
// out from memory up to it, and before the next one a write transaction raises it by fenceBlock. After a
// restart, handing out resumes above the stored ceiling: a restart skips at most fenceBlock fences, and a
// crash never lets a fence be handed out twice. (Files written before locks moved here hold the last fence
// handed out under the same key, which is a valid ceiling.)
//
// A lock held when the process ended is free once the file is opened again: its holder ended with the process.

// fenceBlock is how many fences one write of the ceiling reserves.
const fenceBlock = 1024

// lockSweepEvery is how many acquisitions pass between two removals of expired locks nobody released.
const lockSweepEvery = 1024

type memLock struct {
	holder  string
	fence   uint64
	expires int64 // unix nanoseconds; 0 once released while pinned
	// pinned counts commits fenced by this lock whose transaction is not written yet (see pin).
	pinned int
}

type lockTable struct {
	mu       sync.Mutex
	locks    map[string]*memLock
	closed   bool
	last     uint64 // the last fence handed out
	ceiling  uint64 // fences up to here are reserved in the file
	acquired int    // acquisitions since the last sweep of expired locks

	raising sync.Mutex // one ceiling write at a time
	// reserve writes a new ceiling to the file: above both the stored one and after (the last fence handed
	// out), by fenceBlock. It returns the fences now free to hand out, (from, to].
	reserve func(ctx context.Context, after uint64) (from, to uint64, err error)
}

var errStoreClosed = fmt.Errorf("the store is closed: %w", bolterrors.ErrDatabaseNotOpen)

func validLockArgs(name, holder string, ttl time.Duration) error {
	if name == "" || holder == "" {
		return fmt.Errorf("empty lock name or holder: %w", store.ErrInvalid)
	}
	if ttl <= 0 {
		return fmt.Errorf("lock ttl must be positive: %w", store.ErrInvalid)
	}
	return nil
}

// AcquireLock takes the named lock for holder for ttl, or returns store.ErrLockHeld. The same holder taking a
// lock it holds renews it and keeps its fence.
func (s *Store) AcquireLock(ctx context.Context, name, holder string, ttl time.Duration) (store.Lock, error) {
	if err := validLockArgs(name, holder, ttl); err != nil {
		return store.Lock{}, fmt.Errorf("bolt: acquire lock: %w", err)
	}
	t := &s.locks
	for {
		if err := ctx.Err(); err != nil {
			return store.Lock{}, fmt.Errorf("bolt: acquire lock: %w", err)
		}
		now := s.now().UnixNano()
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return store.Lock{}, fmt.Errorf("bolt: acquire lock: %w", errStoreClosed)
		}
		cur := t.locks[name]
		switch {
		case cur != nil && now < cur.expires && cur.holder == holder:
			cur.expires = now + int64(ttl)
			l := store.Lock{Name: name, Holder: holder, Fence: cur.fence}
			t.mu.Unlock()
			return l, nil
		case cur != nil && (now < cur.expires || cur.pinned > 0):
			// Held, or expired while its holder's fenced commit is still being written.
			t.mu.Unlock()
			return store.Lock{}, fmt.Errorf("bolt: acquire lock: lock %q: %w", name, store.ErrLockHeld)
		case t.last < t.ceiling:
			t.last++
			if t.locks == nil {
				t.locks = map[string]*memLock{}
			}
			t.locks[name] = &memLock{holder: holder, fence: t.last, expires: now + int64(ttl)}
			t.sweepExpired(now)
			l := store.Lock{Name: name, Holder: holder, Fence: t.last}
			t.mu.Unlock()
			return l, nil
		}
		t.mu.Unlock()
		if err := t.raise(ctx); err != nil {
			return store.Lock{}, fmt.Errorf("bolt: acquire lock %q: reserve fences: %w", name, err)
		}
	}
}

// sweepExpired forgets, now and then, expired locks that were never released (a holder that gave up). t.mu
// is held.
func (t *lockTable) sweepExpired(now int64) {
	if t.acquired++; t.acquired < lockSweepEvery {
		return
	}
	t.acquired = 0
	for name, l := range t.locks {
		if now >= l.expires && l.pinned == 0 {
			delete(t.locks, name)
		}
	}
}

// raise writes a higher fence ceiling to the file, unless another caller just did.
func (t *lockTable) raise(ctx context.Context) error {
	t.raising.Lock()
	defer t.raising.Unlock()
	t.mu.Lock()
	if t.last < t.ceiling || t.closed {
		t.mu.Unlock()
		return nil // raised meanwhile, or closed (the caller's next try says so)
	}
	after := t.last
	t.mu.Unlock()
	from, to, err := t.reserve(ctx, after)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.last, t.ceiling = max(t.last, from), to
	t.mu.Unlock()
	return nil
}

// reserveFences is the lockTable's reserve: one write transaction raising the stored ceiling.
func (s *Store) reserveFences(ctx context.Context, after uint64) (from, to uint64, err error) {
	err = s.update(ctx, "reserve lock fences", func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bMeta)
		var stored uint64
		if data := meta.Get(keyLockFence); len(data) == 8 {
			stored = binary.BigEndian.Uint64(data)
		}
		from = max(stored, after)
		to = from + fenceBlock
		return meta.Put(keyLockFence, seqKey(to))
	})
	return from, to, err
}

// RenewLock extends a held lock, or returns store.ErrLockLost.
func (s *Store) RenewLock(ctx context.Context, l store.Lock, ttl time.Duration) error {
	if err := validLockArgs(l.Name, l.Holder, ttl); err != nil {
		return fmt.Errorf("bolt: renew lock: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: renew lock: %w", err)
	}
	now := s.now().UnixNano()
	t := &s.locks
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("bolt: renew lock: %w", errStoreClosed)
	}
	cur := t.held(l, now)
	if cur == nil {
		return fmt.Errorf("bolt: renew lock: lock %q: %w", l.Name, store.ErrLockLost)
	}
	cur.expires = now + int64(ttl)
	return nil
}

// held returns l's entry when l holds it at now, exactly as given. t.mu is held.
func (t *lockTable) held(l store.Lock, now int64) *memLock {
	cur := t.locks[l.Name]
	if cur == nil || cur.holder != l.Holder || cur.fence != l.Fence || now >= cur.expires {
		return nil
	}
	return cur
}

// ReleaseLock frees the lock if l still owns it; otherwise it does nothing.
func (s *Store) ReleaseLock(ctx context.Context, l store.Lock) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: release lock: %w", err)
	}
	t := &s.locks
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.locks[l.Name]
	if cur == nil || cur.holder != l.Holder || cur.fence != l.Fence {
		return nil
	}
	if cur.pinned > 0 {
		cur.expires = 0 // free once the commit in flight is written (unpin)
		return nil
	}
	delete(t.locks, l.Name)
	return nil
}

func lostFence(l store.Lock) error {
	return fmt.Errorf("batch fenced by lock %q (fence %d), which is no longer held: %w", l.Name, l.Fence, store.ErrLockLost)
}

// pin marks a commit fenced by l as in progress, or fails with store.ErrLockLost unless l is held now. While
// pinned, the lock cannot be taken by another holder even once it expires: the next holder reads the binding
// after taking the lock, and must find what this commit wrote. (When locks were records in the file, taking
// one was a write transaction, and bbolt's single writer gave that order.) The commit's transaction checks
// the lock again (check): a lock that expired meanwhile still refuses the commit.
func (t *lockTable) pin(l store.Lock, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.held(l, now.UnixNano())
	if cur == nil {
		return lostFence(l)
	}
	cur.pinned++
	return nil
}

// unpin ends what pin began.
func (t *lockTable) unpin(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.locks[name]
	if cur == nil {
		return
	}
	if cur.pinned--; cur.pinned <= 0 && cur.expires == 0 {
		delete(t.locks, name)
	}
}

// check fails with store.ErrLockLost unless l is held now, exactly as given (see store.Batch.Fence).
func (t *lockTable) check(l store.Lock, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held(l, now.UnixNano()) == nil {
		return lostFence(l)
	}
	return nil
}

// close refuses every later AcquireLock and RenewLock.
func (t *lockTable) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
}
