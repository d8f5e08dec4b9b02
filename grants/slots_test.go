package grants

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store/bolt"
)

// A check takes no slot while an urgent binding that was handed out has not had one (it may still be taking
// its lock), even with a slot free; urgent work takes a free slot at once; a slot freed goes to an urgent
// waiter first. (A wait that ends with a cancelled context shows that the call would have waited.)
func TestCallSlotsServeUrgentWorkFirst(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ctx := context.Background()
	s := newCallSlots(1)
	urgent, check := s.handOut(true), s.handOut(false)
	if err := check.acquire(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("a check took the free slot while an urgent binding was still to come: %v", err)
	}
	if err := urgent.acquire(cancelled); err != nil { // free: no wait at all
		t.Fatalf("urgent work waited for a free slot: %v", err)
	}
	got := make(chan string, 2)
	later := s.handOut(true)
	go func() {
		if check.acquire(ctx) == nil {
			got <- "check"
			check.release()
		}
	}()
	go func() {
		if later.acquire(ctx) == nil {
			got <- "urgent"
			later.release()
			later.standAside()
		}
	}()
	urgent.release()
	urgent.standAside()
	if first, second := <-got, <-got; first != "urgent" || second != "check" {
		t.Fatalf("slots went to %s, then %s; want the urgent binding first", first, second)
	}
	// Work that made no call frees its place too.
	s2 := newCallSlots(1)
	idle, c2 := s2.handOut(true), s2.handOut(false)
	idle.standAside()
	if err := c2.acquire(cancelled); err != nil {
		t.Fatalf("a check waited after the urgent binding finished without a call: %v", err)
	}
}

// A binding with a revocation due that waits for its busy lock does not hold up the checks: it cannot use a
// slot until the lock is free. Before, a check waiting for a slot while holding that very lock (a check of an
// earlier revoke of the same binding) kept the two waiting on each other until LockWait ran out.
func TestUrgentBindingWaitingForItsLockStandsAside(t *testing.T) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, err := NewManager(Options{Store: st, LockWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	held, err := st.AcquireLock(ctx, "binding:X", "a check's hold", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	slots := newCallSlots(1)
	urgent, check := slots.handOut(true), slots.handOut(false)
	locked := make(chan error, 1)
	go func() {
		b, err := m.lockBinding(withCallSlot(ctx, urgent), "X", nil)
		if err == nil {
			m.unlock(ctx, b.lock)
		}
		locked <- err
	}()
	if err := check.acquire(ctx); err != nil { // waits until the urgent binding found its lock busy
		t.Fatal(err)
	}
	check.release()
	if err := st.ReleaseLock(ctx, held); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatalf("the urgent binding's lock, once free: %v", err)
	}
}
