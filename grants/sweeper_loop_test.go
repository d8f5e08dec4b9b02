package grants_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/internal/enginetest"
	"github.com/jitbot/jitbot/store"
)

// The sweeper's claims and its timer, on both stores, on a clock only the test moves.

const claimHold = 20 * time.Second

// sweepRig is one store and one provider with the replicas' sweepers on a shared clock.
type sweepRig struct {
	t     *testing.T
	st    grants.Store
	fake  *providerfake.Fake
	clock *enginetest.Clock
}

func newSweepRig(t *testing.T, st grants.Store) *sweepRig {
	return &sweepRig{t: t, st: st, fake: providerfake.New(), clock: enginetest.NewClock(time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC))}
}

// sweeper returns the sweeper of replica holder, reading and claiming through st (nil: the rig's store).
func (r *sweepRig) sweeper(holder string, st grants.Store, tweak func(*grants.SweeperOptions)) *grants.Sweeper {
	r.t.Helper()
	if st == nil {
		st = r.st
	}
	mgr, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"fake": r.fake}, Now: r.clock.Now, Holder: holder})
	if err != nil {
		r.t.Fatal(err)
	}
	opts := grants.SweeperOptions{Manager: mgr, Store: st, ClaimHold: claimHold, Holder: holder}
	if tweak != nil {
		tweak(&opts)
	}
	sw, err := grants.NewSweeper(opts)
	if err != nil {
		r.t.Fatal(err)
	}
	return sw
}

// activeLease stores an active lease of its own binding (principal), granted at the provider, due at its
// expiry, expiresAt.
func (r *sweepRig) activeLease(principal string, expiresAt time.Time) store.Grant {
	r.t.Helper()
	now := r.clock.Now()
	g := grants.NewLease(grants.LeaseSpec{RequestID: "r-" + principal, UserID: "U1", Role: "admin", Provider: "fake",
		Principal: principal, Target: map[string]string{"db": "main"}, Duration: time.Hour}, now, time.Time{})
	g.State, g.ActivatedAt, g.ExpiresAt, g.DueAt = store.GrantActive, now, expiresAt, expiresAt
	commitGrant(r.t, r.st, &g)
	if _, err := r.fake.Grant(context.Background(), grants.Assignment{BindingKey: g.BindingKey, GrantID: g.ID, Principal: g.Principal, Target: g.Target}); err != nil {
		r.t.Fatal(err)
	}
	return g
}

func (r *sweepRig) sweep(sw *grants.Sweeper) int {
	r.t.Helper()
	n, err := sw.Sweep(context.Background())
	if err != nil {
		r.t.Fatalf("sweep: %v", err)
	}
	return n
}

// revokedOnce checks that g was revoked, by exactly one provider call that found the access.
func (r *sweepRig) revokedOnce(g store.Grant) {
	r.t.Helper()
	got, err := r.st.GetGrant(context.Background(), g.ID)
	if err != nil || got.State != store.GrantRevoked {
		r.t.Fatalf("grant %s (%v), want revoked", got.State, err)
	}
	revokes := r.fake.Calls("revoke")
	if len(revokes) != 1 || !revokes[0].WasPresent || r.fake.PresentCount() != 0 {
		r.t.Fatalf("%d revokes (%+v), provider holds %d; want one revoke that removed the access", len(revokes), revokes, r.fake.PresentCount())
	}
}

// A due grant is claimed by one sweeper only: while the first one revokes it, a second sweeper's sweep
// claims nothing and calls nothing.
func TestSweepersClaimADueGrantOnce(t *testing.T) {
	stores(t, func(t *testing.T, st managerStore) {
		r := newSweepRig(t, st)
		g := r.activeLease("p1", r.clock.Now().Add(-time.Minute))
		a, b := r.sweeper("replica-a", nil, nil), r.sweeper("replica-b", nil, nil)

		arrived, release := r.fake.Hold("revoke")
		claimed := make(chan int, 1)
		go func() {
			n, err := a.Sweep(context.Background())
			if err != nil {
				t.Errorf("sweep by replica-a: %v", err)
			}
			claimed <- n
		}()
		<-arrived // replica-a claimed the grant and is revoking it
		if n := r.sweep(b); n != 0 || len(r.fake.Calls("revoke")) != 0 {
			t.Fatalf("replica-b's sweep during replica-a's revoke claimed %d and revoked %d times; want 0 and 0", n, len(r.fake.Calls("revoke")))
		}
		release()
		if n := <-claimed; n != 1 {
			t.Fatalf("replica-a claimed %d, want 1", n)
		}
		r.revokedOnce(g)
	})
}

// stallAfterClaim is a sweeper's store that stalls once, right after its first claim of something: the
// claim is made (hidden from other sweepers for its hold), and the sweeper does nothing more until proceed.
type stallAfterClaim struct {
	grants.Store
	once    sync.Once
	claimed chan struct{}
	proceed chan struct{}
}

func (s *stallAfterClaim) ClaimDueGrants(ctx context.Context, now time.Time, limit int, hold time.Duration) ([]store.Grant, error) {
	gs, err := s.Store.ClaimDueGrants(ctx, now, limit, hold)
	if len(gs) > 0 {
		s.once.Do(func() {
			close(s.claimed)
			<-s.proceed
		})
	}
	return gs, err
}

// A claim held by a sweeper that stalled is hidden from the others for its hold and no longer: once the
// hold has passed, another sweeper claims the grant and revokes it; the stalled sweeper, resuming with its
// stale claim, revokes nothing again.
func TestStalledSweepersClaimIsTakenOverAfterItsHold(t *testing.T) {
	stores(t, func(t *testing.T, st managerStore) {
		r := newSweepRig(t, st)
		g := r.activeLease("p1", r.clock.Now().Add(-time.Minute))
		stall := &stallAfterClaim{Store: st, claimed: make(chan struct{}), proceed: make(chan struct{})}
		stalled, other := r.sweeper("replica-stalled", stall, nil), r.sweeper("replica-b", nil, nil)

		done := make(chan int, 1)
		go func() {
			n, err := stalled.Sweep(context.Background())
			if err != nil {
				t.Errorf("sweep by the stalled replica: %v", err)
			}
			done <- n
		}()
		<-stall.claimed
		if n := r.sweep(other); n != 0 {
			t.Fatalf("a sweep right after the claim claimed %d, want 0", n)
		}
		r.clock.Advance(claimHold - time.Millisecond)
		if n := r.sweep(other); n != 0 {
			t.Fatalf("a sweep just before the claim's hold ended claimed %d, want 0", n)
		}
		if n := len(r.fake.Calls("revoke")); n != 0 {
			t.Fatalf("%d revokes while the claim was held, want 0", n)
		}
		r.clock.Advance(time.Millisecond)
		if n := r.sweep(other); n != 1 {
			t.Fatalf("a sweep once the claim's hold ended claimed %d, want 1", n)
		}
		r.revokedOnce(g)

		close(stall.proceed)
		if n := <-done; n != 1 {
			t.Fatalf("the stalled sweep claimed %d, want 1", n)
		}
		r.revokedOnce(g)
	})
}

// Run's timer is set to the next due time, measured on the clock the due times are written and claimed
// with (the manager's): a leading sweeper waits exactly until the next expiry, a wake-up before it sweeps
// nothing and waits for the rest, and the wake-up at the expiry revokes.
func TestSweeperTimerWakesAtTheNextExpiry(t *testing.T) {
	stores(t, func(t *testing.T, st managerStore) {
		r := newSweepRig(t, st)
		g := r.activeLease("p1", r.clock.Now().Add(10*time.Minute))
		// The cron safety nets are a day away; the leader loop takes the lock at start and is never ticked.
		timers := &stepTimers{tick: make(chan time.Time), fire: make(chan time.Time), armed: make(chan time.Duration, 16)}
		sw := r.sweeper("replica-a", nil, func(o *grants.SweeperOptions) {
			o.Interval, o.SlowInterval, o.LeaderTTL = 24*time.Hour, 24*time.Hour, time.Hour
		})
		sw.SetTimers(timers)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sw.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}()
		want := func(what string, d time.Duration) {
			t.Helper()
			if got := <-timers.armed; got != d {
				t.Fatalf("%s: the timer was set to %s, want %s", what, got, d)
			}
		}

		want("at start", 0) // fired only by the test: the first sweep comes with leadership
		want("once leading", 10*time.Minute)
		r.clock.Advance(10*time.Minute - time.Millisecond)
		timers.fire <- time.Time{}
		want("woken a millisecond early", time.Millisecond)
		if got, err := st.GetGrant(ctx, g.ID); err != nil || got.State != store.GrantActive || len(r.fake.Calls("revoke")) != 0 {
			t.Fatalf("before its expiry the grant is %s (%v), %d revokes; want active, none", got.State, err, len(r.fake.Calls("revoke")))
		}
		r.clock.Advance(time.Millisecond)
		timers.fire <- time.Time{}
		want("after the revoke, whose verification is due at once", 0)
		r.revokedOnce(g)
	})
}
