package grants_test

import (
	"context"
	"fmt"
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
