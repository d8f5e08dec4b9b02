package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// hold holds back lock releases (sent alone or together) until the test releases them.
func (h *holdReleases) hold(cmds []goredis.Cmder) {
	if redistest.AllLockReleases(cmds) {
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

// Releases asked for while one is being sent are sent together, in one round trip, once it is answered
// (each had its own round trip and goroutine before: about a tenth of jitbot's CPU in a mass expiry).
func TestReleasesAskedMeanwhileShareARoundTrip(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t), redistest.Prefix(t)
	var mu sync.Mutex
	var sizes []int
	first, proceed := make(chan struct{}), make(chan struct{})
	client.AddHook(redistest.Sent(func(cmds []goredis.Cmder) {
		if !redistest.AllLockReleases(cmds) {
			return
		}
		mu.Lock()
		sizes = append(sizes, len(cmds))
		n := len(sizes)
		mu.Unlock()
		if n == 1 {
			close(first)
			<-proceed
		}
	}))
	s := jitredis.New(client, jitredis.Options{Prefix: prefix})
	var locks []store.Lock
	for i := range 6 {
		l, err := s.AcquireLock(ctx, fmt.Sprintf("binding:r%d", i), "op", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, l)
	}
	if err := s.ReleaseLock(ctx, locks[0]); err != nil {
		t.Fatal(err)
	}
	<-first // the first release is being sent
	for _, l := range locks[1:] {
		if err := s.ReleaseLock(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	close(proceed)
	if err := s.Close(); err != nil { // waits for every release
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != 5 {
		t.Fatalf("release round trips of %v commands, want [1 5]", sizes)
	}
	other := redistest.Client(t)
	for _, l := range locks {
		if n, err := other.Exists(ctx, prefix+":lock:"+l.Name).Result(); err != nil || n != 0 {
			t.Fatalf("%s still stored after Close (%d, %v)", l.Name, n, err)
		}
	}
}
