package redis_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// holdReleases is a go-redis hook that keeps the lock release script from being sent until release is
// closed.
type holdReleases struct {
	release chan struct{}
	held    chan struct{} // receives once per release held
}

// hold holds back a lock release sent alone until the test releases it.
func (h *holdReleases) hold(cmds []goredis.Cmder) {
	if len(cmds) == 1 && redistest.IsLockRelease(cmds[0]) {
		h.held <- struct{}{}
		<-h.release
	}
}

// ReleaseLock returns without waiting for Redis; every later operation of this process on the same lock runs
// after the release, and Close waits for it.
func TestReleaseLockDoesNotWaitAndStaysOrdered(t *testing.T) {
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	client := redistest.Client(t)
	h := &holdReleases{release: make(chan struct{}), held: make(chan struct{}, 4)}
	client.AddHook(redistest.Sent(h.hold))
	s := jitredis.New(client, jitredis.Options{Prefix: prefix})
	l, err := s.AcquireLock(ctx, "binding:b1", "op-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLock(ctx, l); err != nil { // returns while the release is held back
		t.Fatal(err)
	}
	<-h.held
	renewed := make(chan error, 1)
	go func() { renewed <- s.RenewLock(ctx, l, time.Minute) }()
	acquired := make(chan error, 1)
	go func() {
		l2, err := s.AcquireLock(ctx, "binding:b1", "op-2", time.Minute)
		if err == nil && l2.Fence <= l.Fence {
			err = fmt.Errorf("fence %d after %d", l2.Fence, l.Fence)
		}
		acquired <- err
	}()
	// Another lock is not held up by this one's release.
	if _, err := s.AcquireLock(ctx, "binding:b2", "op-3", time.Minute); err != nil {
		t.Fatal(err)
	}
	close(h.release)
	if err := <-renewed; !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("renew after release: %v, want the lock lost (the renew ran before the release)", err)
	}
	if err := <-acquired; err != nil {
		t.Fatalf("acquire after release: %v", err)
	}

	// A commit fenced by a released lock waits for the release too, and is refused.
	l3, err := s.AcquireLock(ctx, "binding:b3", "op-4", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h.release = make(chan struct{})
	if err := s.ReleaseLock(ctx, l3); err != nil {
		t.Fatal(err)
	}
	<-h.held
	committed := make(chan error, 1)
	go func() {
		committed <- s.Commit(ctx, store.Batch{Fence: &l3, Grants: []store.GrantPut{{Grant: grant("g1", "U1", "b3", t0, store.GrantActive, t0)}}})
	}()
	close(h.release)
	if err := <-committed; !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("commit fenced by a released lock: %v, want the lock lost", err)
	}

	// Close waits for a release in flight.
	l4, err := s.AcquireLock(ctx, "binding:b4", "op-5", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h.release = make(chan struct{})
	if err := s.ReleaseLock(ctx, l4); err != nil {
		t.Fatal(err)
	}
	<-h.held
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	close(h.release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	other := redistest.Client(t)
	if n, err := other.Exists(ctx, prefix+":lock:binding:b4").Result(); err != nil || n != 0 {
		t.Fatalf("lock still stored after Close (%d, %v)", n, err)
	}
}

// A release asked for once Close has begun is refused with an error: it cannot be sent any more, and starting
// it would race Close's wait for the releases in flight.
func TestReleaseLockAfterCloseIsRefused(t *testing.T) {
	ctx := context.Background()
	s := jitredis.New(redistest.Client(t), jitredis.Options{Prefix: redistest.Prefix(t)})
	l, err := s.AcquireLock(ctx, "binding:b1", "op-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseLock(ctx, l); err == nil {
		t.Fatal("ReleaseLock after Close returned nil: the release was dropped without a word")
	}
}
