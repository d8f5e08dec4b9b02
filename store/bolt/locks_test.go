package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/jitbot/jitbot/store"
)

// holdWriter starts a write transaction that holds bbolt's writer until release is closed; held receives its
// result.
func holdWriter(t *testing.T, s *Store) (release chan struct{}, held chan error) {
	t.Helper()
	entered := make(chan struct{})
	release, held = make(chan struct{}), make(chan error, 1)
	go func() {
		held <- s.update(context.Background(), "hold", func(tx *bbolt.Tx) error {
			close(entered)
			<-release
			return incr("held")(tx)
		})
	}()
	<-entered
	return release, held
}

// Taking, renewing and freeing a lock never waits for the writer: a write in progress holds it here for the
// whole test (a lock operation that waited for a transaction would block the test for good), and the order
// still holds: another holder's AcquireLock right after a release finds the lock free, with a greater fence.
func TestLocksDoNotWaitForTheWriter(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "g.db"))
	defer s.Close()
	ctx := context.Background()
	l, err := s.AcquireLock(ctx, "binding:b", "one", time.Hour) // reserves the first block of fences
	if err != nil {
		t.Fatal(err)
	}
	release, held := holdWriter(t, s)
	txns := s.txnCount()
	if err := s.RenewLock(ctx, l, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireLock(ctx, "binding:b", "two", time.Hour); !errors.Is(err, store.ErrLockHeld) {
		t.Fatalf("acquire while held: %v, want ErrLockHeld", err)
	}
	if err := s.ReleaseLock(ctx, l); err != nil {
		t.Fatal(err)
	}
	l2, err := s.AcquireLock(ctx, "binding:b", "two", time.Hour)
	if err != nil {
		t.Fatalf("acquire after the release: %v", err)
	}
	if l2.Fence <= l.Fence {
		t.Fatalf("fence %d after %d, want a greater one", l2.Fence, l.Fence)
	}
	if s.queued() != 0 || s.txnCount() != txns {
		t.Fatalf("lock operations queued %d writes and began %d transactions, want none", s.queued(), s.txnCount()-txns)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// Fences grow across reservations and restarts, and no fence is handed out twice, even by a process that
// ended without writing anything after it reserved them. Locks held when the file was closed are free after.
func TestFencesGrowAcrossBlocksAndRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.db")
	ctx := context.Background()
	var last uint64
	seen := map[uint64]bool{}
	for round := range 3 {
		s := openTest(t, path)
		for i := range fenceBlock + fenceBlock/2 { // crosses a reservation every round
			name := fmt.Sprintf("binding:%d", i%50)
			l, err := s.AcquireLock(ctx, name, fmt.Sprintf("r%d-h%d", round, i), time.Hour)
			if err != nil {
				t.Fatalf("round %d, acquire %d: %v", round, i, err)
			}
			if l.Fence <= last || seen[l.Fence] {
				t.Fatalf("round %d: fence %d after %d (seen before: %v)", round, l.Fence, last, seen[l.Fence])
			}
			last, seen[l.Fence] = l.Fence, true
			if err := s.ReleaseLock(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
		l, err := s.AcquireLock(ctx, "held", fmt.Sprintf("r%d", round), time.Hour) // held when the store closes
		if err != nil || l.Fence <= last {
			t.Fatalf("round %d: a lock held when the file closed, after reopening: %+v, %v", round, l, err)
		}
		last = l.Fence
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := openTest(t, path)
	defer s.Close()
	l, err := s.AcquireLock(ctx, "held", "after", time.Hour)
	if err != nil {
		t.Fatalf("a lock held when the file closed, after reopening: %v", err)
	}
	if l.Fence <= last {
		t.Fatalf("fence %d after reopening, want more than %d", l.Fence, last)
	}
}

// A lock that expires while its holder's fenced commit is being written cannot be taken until that
// transaction is written: the next holder must read what it wrote. The commit itself is refused (the lock
// expired before its transaction ran), and then the lock is free.
func TestFencedCommitInFlightPinsItsLock(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := Open(filepath.Join(t.TempDir(), "p.db"), Options{NoSync: true, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	a, err := s.AcquireLock(ctx, "binding:p", "A", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	release, held := holdWriter(t, s)
	committed := make(chan error, 1)
	go func() {
		committed <- s.Commit(ctx, store.Batch{Audit: []store.AuditEvent{{Type: "test", Actor: "A"}}, Fence: &a})
	}()
	for s.queued() != 1 { // the commit is pinned and waits for the writer
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute) // A's lock expires
	mu.Unlock()
	if _, err := s.AcquireLock(ctx, "binding:p", "B", time.Minute); !errors.Is(err, store.ErrLockHeld) {
		t.Fatalf("acquire while A's fenced commit is in flight: %v, want ErrLockHeld", err)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := <-committed; !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("A's commit after its lock expired: %v, want ErrLockLost", err)
	}
	b, err := s.AcquireLock(ctx, "binding:p", "B", time.Minute)
	if err != nil || b.Fence <= a.Fence {
		t.Fatalf("acquire once the commit is done: %+v, %v", b, err)
	}
}

// After Close, taking or renewing a lock is refused; releasing is harmless.
func TestLocksAfterClose(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "c.db"))
	ctx := context.Background()
	l, err := s.AcquireLock(ctx, "sweeper", "A", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireLock(ctx, "other", "A", time.Minute); !errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		t.Fatalf("acquire after Close: %v", err)
	}
	if err := s.RenewLock(ctx, l, time.Minute); !errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		t.Fatalf("renew after Close: %v", err)
	}
	if err := s.ReleaseLock(ctx, l); err != nil {
		t.Fatalf("release after Close: %v", err)
	}
}
