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
