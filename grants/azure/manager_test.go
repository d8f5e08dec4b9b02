package azure_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/azure/azurefake"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// bothStores runs fn with a bbolt store and with a Redis store (the shared Redis, under a test prefix).
func bothStores(t *testing.T, now func() time.Time, fn func(t *testing.T, st grants.Store)) {
	t.Run("bolt", func(t *testing.T) {
		st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		fn(t, st)
	})
	t.Run("redis", func(t *testing.T) {
		fn(t, jitredis.New(redistest.Client(t), jitredis.Options{Prefix: redistest.Prefix(t), Now: now}))
	})
}

// managerEnv is a real grants.Manager over a bbolt store driving the PIM adapter against the fake, all on one
// clock.
type managerEnv struct {
	m   *grants.Manager
	st  grants.Store
	clk *pimClock
}

func newManagerEnv(t *testing.T, st grants.Store, p grants.Provider, clk *pimClock) *managerEnv {
	t.Helper()
	m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"az": p}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &managerEnv{m: m, st: st, clk: clk}
}

func (e *managerEnv) lease(t *testing.T, base grants.Assignment, d time.Duration) store.Grant {
	t.Helper()
	ctx := t.Context()
	now := e.clk.Now()
	g := grants.NewLease(grants.LeaseSpec{RequestID: fmt.Sprintf("r-%d", now.UnixNano()), UserID: "U01ALICE", Role: "prod-reader",
		Provider: "az", Principal: base.Principal, Target: base.Target, Duration: d, MaxDuration: 8 * time.Hour}, now, now.Add(e.m.ActivationResumeAfter()))
	if err := e.st.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Activate(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	return e.get(t, g.ID)
}

func (e *managerEnv) get(t *testing.T, id string) store.Grant {
	t.Helper()
	g, err := e.st.GetGrant(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestManagerKeepsPIMEndInStep drives the real manager: activation, an extension, an overlapping longer lease,
// that lease's early release and the final revoke. At every step the end Azure enforces (the PIM schedule's end)
// is the end jitbot says the access has: the latest end of the live leases.
func TestManagerKeepsPIMEndInStep(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var clock *pimClock
	bothStores(t, func() time.Time { return clock.Now() }, func(t *testing.T, st grants.Store) {
		f, p, clk := newPIM(t)
		clk.now, clock = start, clk
		keepsPIMEndInStep(t, f, newManagerEnv(t, st, p, clk))
	})
}

func keepsPIMEndInStep(t *testing.T, f *azurefake.Server, e *managerEnv) {
	clk := e.clk
	base := newAssignment("")

	first := e.lease(t, base, time.Hour)
	if first.State != store.GrantActive {
		t.Fatalf("first lease %s: %s", first.State, first.LastError)
	}
	if end := instanceEnd(t, f, base); !end.Equal(first.ExpiresAt) {
		t.Fatalf("after activation Azure ends at %s, jitbot at %s", end, first.ExpiresAt)
	}

	clk.Advance(10 * time.Minute)
	ext, err := e.m.Extend(t.Context(), first.ID, "U01ALICE", 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if end := instanceEnd(t, f, base); !end.Equal(ext.ExpiresAt) {
		t.Fatalf("after the extension Azure ends at %s, jitbot at %s", end, ext.ExpiresAt)
	}

	clk.Advance(10 * time.Minute)
	second := e.lease(t, base, 3*time.Hour)
	if second.State != store.GrantActive || second.BindingKey != first.BindingKey {
		t.Fatalf("second lease %s (binding %s vs %s)", second.State, second.BindingKey, first.BindingKey)
	}
	if end := instanceEnd(t, f, base); !end.Equal(second.ExpiresAt) {
		t.Fatalf("with a longer overlapping lease Azure ends at %s, jitbot at %s", end, second.ExpiresAt)
	}

	clk.Advance(10 * time.Minute)
	if _, err := e.m.Release(t.Context(), second.ID, "U01ALICE"); err != nil {
		t.Fatal(err)
	}
	if end := instanceEnd(t, f, base); !end.Equal(ext.ExpiresAt) {
		t.Fatalf("after the longer lease was released Azure ends at %s, jitbot at %s", end, ext.ExpiresAt)
	}

	if _, err := e.m.Release(t.Context(), first.ID, "U01ALICE"); err != nil {
		t.Fatal(err)
	}
	if g := e.get(t, first.ID); g.State != store.GrantRevoked {
		t.Fatalf("first lease %s: %s", g.State, g.LastError)
	}
	if n := len(f.ActiveInstances(rg, base.Principal, readerID)); n != 0 {
		t.Fatalf("%d instances after the last lease ended", n)
	}
}

// TestManagerLeavesAdministratorsPIMAssignment: through the real manager, a lease over an administrator's PIM
// assignment is recorded as pre-existing, the manager never asks Azure to remove it, and it survives.
func TestManagerLeavesAdministratorsPIMAssignment(t *testing.T) {
	var clock *pimClock
	bothStores(t, func() time.Time { return clock.Now() }, func(t *testing.T, st grants.Store) {
		f, p, clk := newPIM(t)
		clock = clk
		leavesAdministratorsPIMAssignment(t, f, newManagerEnv(t, st, p, clk))
	})
}

func leavesAdministratorsPIMAssignment(t *testing.T, f *azurefake.Server, e *managerEnv) {
	clk := e.clk
	base := newAssignment("")
	f.AdminAssign(rg, base.Principal, readerDef, nil, "standing access")
	g := e.lease(t, base, time.Hour)
	if g.State != store.GrantActive || !grants.IsPreExisting(g.ProviderRef) {
		t.Fatalf("lease %s, ref %q", g.State, g.ProviderRef)
	}
	clk.Advance(10 * time.Minute)
	if _, err := e.m.Release(t.Context(), g.ID, "U01ALICE"); err != nil {
		t.Fatal(err)
	}
	if g := e.get(t, g.ID); g.State != store.GrantRevoked {
		t.Fatalf("lease %s", g.State)
	}
	if n := len(f.ActiveInstances(rg, base.Principal, readerID)); n != 1 {
		t.Fatalf("the administrator's assignment is gone (%d instances)", n)
	}
	for _, r := range f.ScheduleRequests() {
		if r.RequestType == "AdminRemove" {
			t.Fatalf("an AdminRemove was sent: %+v", r)
		}
	}
}
