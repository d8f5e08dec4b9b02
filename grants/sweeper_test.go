package grants_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/store"
)

// In a sweep that claims both revocations and the checks of earlier revokes, every revocation is made
// before any check (checks confirm access already removed; revocations remove access still held), even when
// the checks fell due first; and every check still runs in the same sweep and verifies its revoke.
func TestSweepRevokesBeforeItChecks(t *testing.T) {
	stores(t, func(t *testing.T, st managerStore) {
		ctx := context.Background()
		fake := providerfake.New()
		now := time.Now().Truncate(time.Millisecond)
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"fake": fake}, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		s, err := grants.NewSweeper(grants.SweeperOptions{Manager: m, Store: st, Concurrency: 1, Batch: 2})
		if err != nil {
			t.Fatal(err)
		}
		var checks, revokes []string
		for i := range 3 {
			// A revoked lease whose check fell due before any of the expiries below.
			g := lease(fmt.Sprintf("checked%d", i), now)
			g.State, g.EndReason, g.EndedAt, g.RevokedAt = store.GrantRevoked, "expired", g.ExpiresAt, now.Add(-3*time.Minute)
			g.RecheckAt, g.DueAt = now.Add(-3*time.Minute+time.Duration(i)*time.Millisecond), now.Add(-3*time.Minute+time.Duration(i)*time.Millisecond)
			commitGrant(t, st, &g)
			checks = append(checks, g.ID)
			// An active lease that expired after those checks fell due.
			e := lease(fmt.Sprintf("expired%d", i), now)
			e.State, e.DueAt = store.GrantActive, e.ExpiresAt
			commitGrant(t, st, &e)
			revokes = append(revokes, e.ID)
		}
		if _, err := s.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		var order []string
		checked := false
		for _, c := range fake.Calls("") {
			order = append(order, c.Op+" "+c.Assignment.GrantID)
			switch c.Op {
			case "check":
				checked = true
			case "revoke":
				if checked {
					t.Fatalf("provider calls %v: every revoke must come before the checks", order)
				}
			}
		}
		if n := len(fake.Calls("revoke")); n != 3 {
			t.Fatalf("provider calls %v: %d revokes, want 3", order, n)
		}
		for _, id := range checks {
			g, err := st.GetGrant(ctx, id)
			if err != nil || g.VerifiedAt.IsZero() || !g.RecheckAt.IsZero() {
				t.Fatalf("%s: verified at %v, re-check at %v (%v); want verified in the sweep", id, g.VerifiedAt, g.RecheckAt, err)
			}
		}
		for _, id := range revokes {
			if g, err := st.GetGrant(ctx, id); err != nil || g.State != store.GrantRevoked {
				t.Fatalf("%s: %s (%v), want revoked", id, g.State, err)
			}
		}
	})
}

// lease is a lease of its own binding (principal) that expired a minute before now.
func lease(principal string, now time.Time) store.Grant {
	g := grants.NewLease(grants.LeaseSpec{RequestID: "r-" + principal, UserID: "U1", Role: "admin", Provider: "fake",
		Principal: principal, Target: map[string]string{"db": "main"}, Duration: time.Hour}, now.Add(-2*time.Hour), time.Time{})
	g.ActivatedAt, g.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Minute)
	return g
}

func commitGrant(t *testing.T, st grants.Store, g *store.Grant) {
	t.Helper()
	if err := st.Commit(context.Background(), store.Batch{Grants: []store.GrantPut{{Grant: g}}}); err != nil {
		t.Fatal(err)
	}
}

// signalRevokes reports every revoke call's grant when the call returns.
type signalRevokes struct {
	*providerfake.Fake
	returned chan string
}

func (p signalRevokes) Revoke(ctx context.Context, a grants.Assignment) error {
	err := p.Fake.Revoke(ctx, a)
	p.returned <- a.GrantID
	return err
}

// A sweep claims its next batch while the workers still converge the last one: a slow binding of one batch
// does not keep the others' workers idle (in a burst of expiries every worker is needed). Here one revoke of
// the first batch is held at the provider; the second batch is claimed and revoked meanwhile.
func TestSweepClaimsTheNextBatchWhileABindingIsSlow(t *testing.T) {
	stores(t, func(t *testing.T, st managerStore) {
		ctx := context.Background()
		fake := providerfake.New()
		p := signalRevokes{Fake: fake, returned: make(chan string, 16)}
		now := time.Now().Truncate(time.Millisecond)
		// The held call ends only when released, or after the attempt timeout, which a sweep that waits for
		// the whole batch before claiming again would need to reach the third grant.
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"fake": p}, Now: func() time.Time { return now }, AttemptTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s, err := grants.NewSweeper(grants.SweeperOptions{Manager: m, Store: st, Concurrency: 2, Batch: 2})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for i := range 3 {
			g := lease(fmt.Sprintf("slow%d", i), now)
			g.State, g.DueAt = store.GrantActive, now.Add(time.Duration(i-3)*time.Minute) // claimed in this order
			commitGrant(t, st, &g)
			ids = append(ids, g.ID)
		}
		arrived, release := fake.Hold("revoke")
		done := make(chan error, 1)
		go func() { _, err := s.Sweep(ctx); done <- err }()
		<-arrived // one of the first batch's two revokes is held
		returned := map[string]bool{}
		for !returned[ids[2]] {
			returned[<-p.returned] = true
			if returned[ids[0]] && returned[ids[1]] && !returned[ids[2]] {
				t.Fatal("the held revoke ended (attempt timeout) before the second batch was revoked")
			}
		}
		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if g, err := st.GetGrant(ctx, id); err != nil || g.State != store.GrantRevoked {
				t.Fatalf("%s: %s (%v), want revoked", id, g.State, err)
			}
		}
	})
}

// commitGate blocks the first commit that records a revoke until release is closed, and says whose it was.
type commitGate struct {
	managerStore
	reached  chan string
	release  chan struct{}
	blocking sync.Once
}

func (s *commitGate) Commit(ctx context.Context, b store.Batch) error {
	for _, p := range b.Grants {
		if p.Grant.State == store.GrantRevoked {
			s.blocking.Do(func() {
				s.reached <- p.Grant.ID
				<-s.release
			})
		}
	}
	return s.managerStore.Commit(ctx, b)
}

// A sweeper provider call slot serves the next binding's call while the last binding's store work is done:
// with one slot, the second binding's revoke reaches the provider while the first binding's commit waits (on
// bbolt, for a shared transaction's fsync). Before, a slot was a worker, idle for its binding's store work.
func TestSweepCallSlotIsFreeDuringStoreWork(t *testing.T) {
	stores(t, func(t *testing.T, base managerStore) {
		ctx := context.Background()
		fake := providerfake.New()
		p := signalRevokes{Fake: fake, returned: make(chan string, 16)}
		now := time.Now().Truncate(time.Millisecond)
		first, second := lease("slot0", now), lease("slot1", now)
		st := &commitGate{managerStore: base, reached: make(chan string, 1), release: make(chan struct{})}
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"fake": p}, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		s, err := grants.NewSweeper(grants.SweeperOptions{Manager: m, Store: st, Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		for i, g := range []*store.Grant{&first, &second} {
			g.State, g.DueAt = store.GrantActive, now.Add(time.Duration(i-3)*time.Minute) // claimed in this order
			commitGrant(t, base, g)
		}
		done := make(chan error, 1)
		go func() { _, err := s.Sweep(ctx); done <- err }()
		held := <-st.reached // one binding's commit is held
		other := first.ID
		if held == first.ID {
			other = second.ID
		}
		returned := map[string]bool{}
		for !returned[other] { // the other binding's revoke is made meanwhile
			returned[<-p.returned] = true
		}
		close(st.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{first.ID, second.ID} {
			if g, err := base.GetGrant(ctx, id); err != nil || g.State != store.GrantRevoked {
				t.Fatalf("%s: %s (%v), want revoked", id, g.State, err)
			}
		}
	})
}

// countInFlight holds every revoke until the test lets it through, and records the most in flight at once.
type countInFlight struct {
	*providerfake.Fake
	mu               sync.Mutex
	inFlight, most   int
	arrived, proceed chan struct{}
}

func (p *countInFlight) Revoke(ctx context.Context, a grants.Assignment) error {
	p.mu.Lock()
	p.inFlight++
	p.most = max(p.most, p.inFlight)
	p.mu.Unlock()
	p.arrived <- struct{}{}
	<-p.proceed
	p.mu.Lock()
	p.inFlight--
	p.mu.Unlock()
	return p.Fake.Revoke(ctx, a)
}

// The sweeper never has more provider calls in flight than its Concurrency, although it works on more
// bindings than that at once.
func TestSweepCallsInFlightBoundedByConcurrency(t *testing.T) {
	stores(t, func(t *testing.T, st managerStore) {
		const n, slots = 12, 3
		ctx := context.Background()
		p := &countInFlight{Fake: providerfake.New(), arrived: make(chan struct{}, n), proceed: make(chan struct{})}
		now := time.Now().Truncate(time.Millisecond)
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"fake": p}, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		s, err := grants.NewSweeper(grants.SweeperOptions{Manager: m, Store: st, Concurrency: slots})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			g := lease(fmt.Sprintf("bound%d", i), now)
			g.State, g.DueAt = store.GrantActive, g.ExpiresAt
			commitGrant(t, st, &g)
		}
		done := make(chan error, 1)
		go func() { _, err := s.Sweep(ctx); done <- err }()
		// Let one call through each time the slots are full (or every remaining call has arrived).
		arrived := 0
		for released := 0; released < n; released++ {
			for arrived < min(released+slots, n) {
				<-p.arrived
				arrived++
			}
			p.proceed <- struct{}{}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if p.most != slots {
			t.Fatalf("at most %d revokes in flight, want %d (the sweeper's Concurrency)", p.most, slots)
		}
		if got := len(p.Calls("revoke")); got != n {
			t.Fatalf("%d revokes, want %d", got, n)
		}
	})
}
