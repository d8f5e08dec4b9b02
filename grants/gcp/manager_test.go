package gcp_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/gcp"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// TestManagerKeepsConditionInStep drives a real grants.Manager (bbolt store) with the GCP adapter: activation,
// an extension, an overlapping longer lease, that lease's early release, and the final revoke. GCP's own expiry
// (the single jitbot binding's request.time condition) always equals the end jitbot gives the access; before the
// one-binding-per-access fix, the released lease's binding kept its later condition.
func TestManagerKeepsConditionInStep(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		var clock time.Time
		nowFn := func() time.Time { return clock }
		st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true, Now: nowFn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		keepsConditionInStep(t, st, &clock)
	})
	t.Run("redis", func(t *testing.T) {
		var clock time.Time
		st := jitredis.New(redistest.Client(t), jitredis.Options{Prefix: redistest.Prefix(t), Now: func() time.Time { return clock }})
		keepsConditionInStep(t, st, &clock)
	})
}

func keepsConditionInStep(t *testing.T, st grants.Store, clk *time.Time) {
	*clk = now
	nowFn := func() time.Time { return *clk }
	srv := newFake(t)
	srv.AddResource(resource, ownerBinding)
	p := newProvider(t, srv, func(c *gcp.Config) { c.Now = nowFn })
	m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"gcp": p}, Now: nowFn})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	lease := func(d time.Duration) store.Grant {
		t.Helper()
		g := grants.NewLease(grants.LeaseSpec{RequestID: fmt.Sprintf("r-%d", (*clk).Unix()), UserID: "U01ALICE", Role: "db-admin", Provider: "gcp",
			Principal: alice, Target: map[string]string{"project": project, "role": role}, Duration: d, MaxDuration: 8 * time.Hour},
			*clk, (*clk).Add(m.ActivationResumeAfter()))
		if err := st.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
			t.Fatal(err)
		}
		if err := m.Activate(ctx, g.ID); err != nil {
			t.Fatal(err)
		}
		got, err := st.GetGrant(ctx, g.ID)
		if err != nil || got.State != store.GrantActive {
			t.Fatalf("lease: %+v, %v", got, err)
		}
		return got
	}
	wantEnd := func(what string, want time.Time) {
		t.Helper()
		ends := jitbotEnds(mustPolicy(t, srv, resource), role, alice)
		if len(ends) != 1 || !ends[0].Equal(want.Truncate(time.Second)) {
			t.Fatalf("%s: jitbot bindings end at %v, want one ending %s", what, ends, want.Truncate(time.Second))
		}
	}

	first := lease(time.Hour)
	wantEnd("after activation", first.ExpiresAt)
	*clk = (*clk).Add(10 * time.Minute)
	ext, err := m.Extend(ctx, first.ID, "U01ALICE", 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	wantEnd("after the extension", ext.ExpiresAt)
	*clk = (*clk).Add(10 * time.Minute)
	second := lease(3 * time.Hour)
	wantEnd("with a longer overlapping lease", second.ExpiresAt)
	*clk = (*clk).Add(10 * time.Minute)
	if _, err := m.Release(ctx, second.ID, "U01ALICE"); err != nil {
		t.Fatal(err)
	}
	wantEnd("after the longer lease was released", ext.ExpiresAt)
	if _, err := m.Release(ctx, first.ID, "U01ALICE"); err != nil {
		t.Fatal(err)
	}
	if ends := jitbotEnds(mustPolicy(t, srv, resource), role, alice); len(ends) != 0 {
		t.Fatalf("after the last lease: %v", ends)
	}
}
