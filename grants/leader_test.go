package grants_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/internal/enginetest"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// The leader loop, driven turn by turn: each replica's ticker is a channel the test sends on, and every
// operation on the sweeper lock is reported once the store answered it. Time passes only when the test
// says so (age), on the replicas' clock and on the store's lock expiry alike.

const leaderTTL = time.Hour

// lockStores runs fn on both back ends with a clock the test moves: age(d) lets d pass for the managers and
// for the sweeper lock's expiry (bolt: the store's clock; Redis: the lock key's remaining ttl, as the server
// keeps its own time). The server's time also runs, by the milliseconds the test takes, so the tests age
// the lease in steps far from its ttl's boundary. Call age only while a replica holds the lock.
func lockStores(t *testing.T, fn func(t *testing.T, st grants.Store, clock *enginetest.Clock, age func(time.Duration))) {
	t.Run("bolt", func(t *testing.T) {
		clock := enginetest.NewClock(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))
		st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		fn(t, st, clock, clock.Advance)
	})
	t.Run("redis", func(t *testing.T) {
		clock := enginetest.NewClock(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))
		c, prefix := redistest.Client(t), redistest.Prefix(t)
		st := jitredis.New(c, jitredis.Options{Prefix: prefix})
		key := prefix + ":lock:sweeper" // where store/redis keeps the lock named sweeper
		fn(t, st, clock, func(d time.Duration) {
			clock.Advance(d)
			ctx := context.Background()
			left, err := c.PTTL(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if left < 0 { // -2: no such key, -1: no ttl
				t.Fatalf("no sweeper lock with a ttl at %s (PTTL %d): the test no longer knows where store/redis keeps it", key, left)
			}
			// The server's own time only shortens the lease further; a ttl of zero or less deletes the key: the
			// lease ran out.
			if err := c.PExpire(ctx, key, left-d).Err(); err != nil {
				t.Fatal(err)
			}
		})
	})
}

// lockOp is one answered operation of the leader loop on the sweeper lock.
type lockOp struct {
	op  string // acquire, renew or release
	err error
}

// leaderSpy reports every operation on the sweeper lock once the store answered it.
type leaderSpy struct {
	grants.Store
	ops chan lockOp
}

func (s *leaderSpy) AcquireLock(ctx context.Context, name, holder string, ttl time.Duration) (store.Lock, error) {
	l, err := s.Store.AcquireLock(ctx, name, holder, ttl)
	if name == "sweeper" {
		s.ops <- lockOp{"acquire", err}
	}
	return l, err
}

func (s *leaderSpy) RenewLock(ctx context.Context, l store.Lock, ttl time.Duration) error {
	err := s.Store.RenewLock(ctx, l, ttl)
	if l.Name == "sweeper" {
		s.ops <- lockOp{"renew", err}
	}
	return err
}

func (s *leaderSpy) ReleaseLock(ctx context.Context, l store.Lock) error {
	err := s.Store.ReleaseLock(ctx, l)
	if l.Name == "sweeper" {
		s.ops <- lockOp{"release", err}
	}
	return err
}

// stepTimers are a sweeper's ticker and timer, fired only by the test: every send on tick is one turn of
// the leader loop; fire fires Run's timer; armed, when set, receives every duration the timer is set to.
type stepTimers struct {
	tick  chan time.Time
	fire  chan time.Time
	armed chan time.Duration
}

func (s *stepTimers) NewTicker(time.Duration) (<-chan time.Time, func()) { return s.tick, func() {} }

func (s *stepTimers) NewTimer(d time.Duration) (<-chan time.Time, func(time.Duration), func()) {
	s.set(d)
	return s.fire, s.set, func() {}
}

func (s *stepTimers) set(d time.Duration) {
	if s.armed != nil {
		s.armed <- d
	}
}

// replica is one running sweeper (Run) whose leader loop the test steps.
type replica struct {
	sw     *grants.Sweeper
	tick   chan time.Time
	ops    chan lockOp
	cancel context.CancelFunc
	done   chan error
}

func startReplica(t *testing.T, st grants.Store, clock *enginetest.Clock, holder string) *replica {
	t.Helper()
	mgr, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"fake": providerfake.New()}, Now: clock.Now, Holder: holder})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{tick: make(chan time.Time), ops: make(chan lockOp, 8), done: make(chan error, 1)}
	// The cron safety nets (Interval, SlowInterval) are a day away: nothing but the test moves the loops.
	r.sw, err = grants.NewSweeper(grants.SweeperOptions{Manager: mgr, Store: &leaderSpy{Store: st, ops: r.ops}, Holder: holder,
		LeaderTTL: leaderTTL, Interval: 24 * time.Hour, SlowInterval: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r.sw.SetTimers(&stepTimers{tick: r.tick})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.sw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
		r.done <- nil // for a test that stopped it already
	})
	return r
}

// answer returns the answer of the leader loop's next lock operation (the first one Run starts with, or
// one a turn or the shutdown makes).
func (r *replica) answer() lockOp { return <-r.ops }

// turn lets the leader loop take one turn and returns the answer of its lock operation.
func (r *replica) turn() lockOp {
	r.tick <- time.Time{}
	return r.answer()
}

// stop ends Run and returns once it has returned.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("run: %v", err)
	}
	r.done <- nil
}

func wantOp(t *testing.T, who string, got lockOp, op string, want error) {
	t.Helper()
	if got.op != op || !errors.Is(got.err, want) || (want == nil && got.err != nil) {
		t.Fatalf("%s: %s answered %v, want %s answered %v", who, got.op, got.err, op, want)
	}
}

// leads checks that r leads: its turn renews the lock (a replica that does not lead tries to acquire it).
func leads(t *testing.T, who string, r *replica) {
	t.Helper()
	wantOp(t, who, r.turn(), "renew", nil)
	if !r.sw.Leading() {
		t.Fatalf("%s renewed the sweeper lock but does not report leading", who)
	}
}

// follows checks that r follows: its turn tries to acquire the lock and is refused, another replica holds it.
func follows(t *testing.T, who string, r *replica) {
	t.Helper()
	wantOp(t, who, r.turn(), "acquire", store.ErrLockHeld)
	if r.sw.Leading() {
		t.Fatalf("%s was refused the sweeper lock but reports leading", who)
	}
}

// startPair starts replica-a, which takes the lock, then replica-b, which is refused it.
func startPair(t *testing.T, st grants.Store, clock *enginetest.Clock) (a, b *replica) {
	t.Helper()
	a = startReplica(t, st, clock, "replica-a")
	wantOp(t, "replica-a at start", a.answer(), "acquire", nil)
	b = startReplica(t, st, clock, "replica-b")
	wantOp(t, "replica-b at start", b.answer(), "acquire", store.ErrLockHeld)
	leads(t, "replica-a", a)
	follows(t, "replica-b", b)
	return a, b
}

// A leader that stops renewing (stalled, partitioned) loses the lease once its ttl has passed: another
// replica takes over, and the stalled one, when it runs again, finds the lock lost and follows.
func TestLeaderFailsOverWhenTheLeaseIsNotRenewed(t *testing.T) {
	lockStores(t, func(t *testing.T, st grants.Store, clock *enginetest.Clock, age func(time.Duration)) {
		a, b := startPair(t, st, clock)
		// replica-a stalls: it takes no turn while the lease runs down.
		age(leaderTTL / 2)
		follows(t, "replica-b before the lease ran out", b)
		age(leaderTTL / 2)
		wantOp(t, "replica-b once the lease ran out", b.turn(), "acquire", nil)
		leads(t, "replica-b", b)
		// replica-a wakes up: its renewal is refused, and from then on it follows.
		wantOp(t, "replica-a after its stall", a.turn(), "renew", store.ErrLockLost)
		follows(t, "replica-a", a)
		leads(t, "replica-b", b)
	})
}

// Renewing at every turn keeps the lease however long the leader runs: replica-a keeps the lock for twice
// its ttl, renewing every two thirds of it, and replica-b is refused at every turn; once replica-a stops
// renewing, the same ttl hands the lock to replica-b.
func TestLeaderRenewalKeepsLeadership(t *testing.T) {
	lockStores(t, func(t *testing.T, st grants.Store, clock *enginetest.Clock, age func(time.Duration)) {
		a, b := startPair(t, st, clock)
		for range 3 {
			age(2 * leaderTTL / 3)
			leads(t, "replica-a", a)
			follows(t, "replica-b", b)
		}
		age(leaderTTL)
		wantOp(t, "replica-b once replica-a stopped renewing", b.turn(), "acquire", nil)
		leads(t, "replica-b", b)
	})
}

// A replica that shuts down gives the lock up: another takes over at its next turn, without waiting for the
// lease to run out.
func TestLeaderReleasesOnShutdown(t *testing.T) {
	lockStores(t, func(t *testing.T, st grants.Store, clock *enginetest.Clock, _ func(time.Duration)) {
		a, b := startPair(t, st, clock)
		a.stop(t)
		wantOp(t, "replica-a at shutdown", a.answer(), "release", nil)
		if a.sw.Leading() {
			t.Fatal("replica-a still reports leading after Run returned")
		}
		wantOp(t, "replica-b right after replica-a shut down", b.turn(), "acquire", nil)
		leads(t, "replica-b", b)
	})
}
