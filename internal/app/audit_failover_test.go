package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// TestFailoverThatLostWritesIsCaughtByTheNextLeader: two replicas on one Redis, no checkpoint file. The
// leader grants; the follower follows the audit head. The leader goes away and Redis fails over to a state
// without the last writes. The follower takes over the sweeper and must refuse to sweep, from what it saw
// while following.
func TestFailoverThatLostWritesIsCaughtByTheNextLeader(t *testing.T) {
	recv := webhookfake.NewServer(hookSecret)
	t.Cleanup(recv.Close)
	pol := testPolicy(t, recv.URL+"/hook")
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	raw := redistest.Client(t)
	ctx := context.Background()

	type replica struct {
		st     store.Store
		a      *app.App
		reg    *prometheus.Registry
		cancel context.CancelFunc
		done   chan error
	}
	start := func(name string) *replica {
		st, err := redis.Open(ctx, url, redis.Options{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{st: st, reg: prometheus.NewRegistry()}
		r.a, err = app.New(t.Context(), app.Deps{
			Policy: pol, Store: st, Registry: r.reg, Holder: name,
			Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("replica", name).Logger(),
			Getenv: func(k string) string {
				if k == hookSecretEnv {
					return string(hookSecret)
				}
				return ""
			},
			Tuning: app.Tuning{SweepInterval: 100 * time.Millisecond, ProviderTimeout: 2 * time.Second, LeaderTTL: 3 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		var rctx context.Context
		rctx, r.cancel = context.WithCancel(ctx)
		r.done = make(chan error, 1)
		go func() { r.done <- r.a.Run(rctx) }()
		return r
	}
	stop := func(r *replica) {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("engine stopped with %v", err)
		}
		_ = r.st.Close()
	}

	leader := start("replica-a")
	waitFor(t, "replica-a to lead", leader.a.Sweeper.Leading)
	follower := start("replica-b")
	defer stop(follower)

	grant := func(reason string) string {
		req, err := leader.a.Approvals.Create(ctx, approvals.NewRequest{Requester: alice, Role: "db-admin", Reason: reason, Duration: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leader.a.Approvals.Approve(ctx, req.ID, bob, ""); err != nil {
			t.Fatal(err)
		}
		out, err := leader.a.Approvals.Approve(ctx, req.ID, carol, "")
		if err != nil || out.GrantID == "" {
			t.Fatalf("approve: %+v %v", out, err)
		}
		return out.GrantID
	}
	first := grant("INC-1")
	restore := redisSnapshot(t, raw, prefix) // what the Redis replica that takes over has
	grant("INC-2")
	head, err := leader.st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follower to see the head", func() bool { return follower.a.Monitor.Seen().Seq == head.Seq })
	if follower.a.Sweeper.Leading() {
		t.Fatal("test bug: the follower leads")
	}

	restore() // the failover loses the second grant (the sweeper lock keeps its remaining ttl)
	stop(leader)
	waitFor(t, "the follower to take over the sweeper", follower.a.Sweeper.Leading)
	waitFor(t, "the new leader to refuse a sweep", func() bool { return gauge(t, follower.reg, "jitbot_audit_sweeps_refused_total") > 0 })
	if v := gauge(t, follower.reg, "jitbot_audit_store_diverged"); v != 1 {
		t.Fatalf("jitbot_audit_store_diverged = %v on the new leader, want 1", v)
	}
	recs, err := follower.st.ReadAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ev := recs[len(recs)-1].Event; ev.Type != audit.EventStoreDiverged || ev.Details["seen_seq"] == "" {
		t.Fatalf("last event = %+v, want the divergence alert", ev)
	}
	// The first grant falls due while the sweeper is paused: it is not revoked.
	g, err := follower.st.GetGrant(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first grant to fall due", func() bool { return time.Now().After(g.DueAt) })
	refused := gauge(t, follower.reg, "jitbot_audit_sweeps_refused_total")
	follower.a.Sweeper.Kick()
	waitFor(t, "another refused sweep", func() bool { return gauge(t, follower.reg, "jitbot_audit_sweeps_refused_total") > refused })
	if n := recv.Count("revoke", first); n != 0 {
		t.Fatalf("the new leader revoked through a store that lost writes (%d revokes)", n)
	}
}
