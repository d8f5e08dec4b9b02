package grants_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/store"
)

// renewSpy counts RenewLock calls and can run a hook after every ListGrants (between taking a binding lock
// and the provider call).
type renewSpy struct {
	managerStore
	mu        sync.Mutex
	renews    int
	lost      bool // RenewLock answers ErrLockLost (the lock expired during a stall)
	afterList func()
}

func (s *renewSpy) RenewLock(ctx context.Context, l store.Lock, ttl time.Duration) error {
	s.mu.Lock()
	s.renews++
	lost := s.lost
	s.mu.Unlock()
	if lost {
		return store.ErrLockLost
	}
	return s.managerStore.RenewLock(ctx, l, ttl)
}

func (s *renewSpy) ListGrants(ctx context.Context, q store.GrantQuery) ([]store.Grant, error) {
	gs, err := s.managerStore.ListGrants(ctx, q)
	if s.afterList != nil {
		s.afterList()
	}
	return gs, err
}

func expiredGrant(t *testing.T, st grants.Store, now time.Time) store.Grant {
	t.Helper()
	g := grants.NewLease(grants.LeaseSpec{RequestID: "r1", UserID: "U1", Role: "admin", Provider: "fake",
		Principal: "alice", Target: map[string]string{"db": "main"}, Duration: time.Hour}, now.Add(-2*time.Hour), time.Time{})
	g.State, g.ActivatedAt, g.ExpiresAt = store.GrantActive, now.Add(-2*time.Hour), now.Add(-time.Minute).Truncate(time.Millisecond)
	g.DueAt = g.ExpiresAt
	if err := st.Commit(context.Background(), store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		t.Fatal(err)
	}
	return g
}

// A revocation right after taking the binding lock does not renew it again (one store round trip less per
// revocation), and the lock still outlives the call.
func TestRevokeRightAfterLockingSkipsTheRenew(t *testing.T) {
	stores(t, func(t *testing.T, base managerStore) {
		st := &renewSpy{managerStore: base}
		fake := providerfake.New()
		now := time.Now() // frozen: no time passes between taking the lock and the call
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"fake": fake}, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		g := expiredGrant(t, st, now)
		if err := m.ConvergeDue(context.Background(), g.BindingKey, []store.Grant{g}); err != nil {
			t.Fatal(err)
		}
		got, err := st.GetGrant(context.Background(), g.ID)
		if err != nil || got.State != store.GrantRevoked || len(fake.Calls("revoke")) != 1 {
			t.Fatalf("state %s (%v), %d revokes; want revoked by one call", got.State, err, len(fake.Calls("revoke")))
		}
		if st.renews != 0 {
			t.Fatalf("%d RenewLock calls for a lock taken just before the call, want 0", st.renews)
		}
	})
}

// A process that stalls between taking the lock and the provider call (its clock moves past the lock's TTL)
// still renews first, finds the lock lost and calls nothing.
func TestRevokeAfterAStallRenewsAndFindsTheLockLost(t *testing.T) {
	stores(t, func(t *testing.T, base managerStore) {
		var mu sync.Mutex
		now := time.Now()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		st := &renewSpy{managerStore: base}
		fake := providerfake.New()
		const ttl = 3 * time.Second
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"fake": fake}, Now: clock, LockTTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		g := expiredGrant(t, st, now)
		st.afterList = func() {
			// The stall: the manager's clock moves past the TTL, during which the lock expired.
			mu.Lock()
			now = now.Add(ttl + time.Second)
			mu.Unlock()
			st.mu.Lock()
			st.lost = true
			st.mu.Unlock()
		}
		err = m.ConvergeDue(context.Background(), g.BindingKey, []store.Grant{g})
		if !errors.Is(err, store.ErrLockLost) {
			t.Fatalf("converge: %v, want a lost lock", err)
		}
		if st.renews == 0 || len(fake.Calls("revoke")) != 0 {
			t.Fatalf("%d renews, %d provider revokes; want a renew and no call", st.renews, len(fake.Calls("revoke")))
		}
	})
}
