package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	"github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// rewindable is a store back end that can be set back to an earlier state, as a Redis restarted from an old
// snapshot (or without persistence after a failover), or a restored backup of the data file, would be.
type rewindable struct {
	name     string
	open     func() store.Store
	snapshot func() (restore func())
}

func rewindables(t *testing.T) []rewindable {
	boltPath := filepath.Join(t.TempDir(), "jitbot.db")
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	raw := redistest.Client(t)
	return []rewindable{
		{name: "bolt",
			open: func() store.Store {
				s, err := bolt.Open(boltPath, bolt.Options{NoSync: true})
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			snapshot: func() func() {
				data, err := os.ReadFile(boltPath)
				if err != nil {
					t.Fatal(err)
				}
				return func() {
					if err := os.WriteFile(boltPath, data, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}},
		{name: "redis",
			open: func() store.Store {
				s, err := redis.Open(context.Background(), url, redis.Options{Prefix: prefix})
				if err != nil {
					t.Fatal(err)
				}
				return s
			},
			snapshot: func() func() { return redisSnapshot(t, raw, prefix) }},
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// waitFor polls cond; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after 30s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSweeperRefusesAStoreThatWentBackwards(t *testing.T) {
	for _, b := range rewindables(t) {
		t.Run(b.name, func(t *testing.T) { testStoreWentBackwards(t, b) })
	}
}

func testStoreWentBackwards(t *testing.T, b rewindable) {
	recv := webhookfake.NewServer(hookSecret)
	t.Cleanup(recv.Close)
	pol := testPolicy(t, recv.URL+"/hook")
	cpFile := filepath.Join(t.TempDir(), "checkpoints")
	var (
		st     store.Store
		a      *app.App
		reg    *prometheus.Registry
		cancel context.CancelFunc
		done   chan error
	)
	start := func() {
		st = b.open()
		reg = prometheus.NewRegistry()
		var err error
		a, err = app.New(t.Context(), app.Deps{
			Policy: pol, Store: st, Registry: reg, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			Getenv: func(k string) string {
				if k == hookSecretEnv {
					return string(hookSecret)
				}
				return ""
			},
			Tuning: app.Tuning{SweepInterval: time.Second, ProviderTimeout: 2 * time.Second, LeaderTTL: 3 * time.Second},
			Audit:  app.AuditOptions{CheckpointFile: cpFile, CheckpointInterval: time.Hour},
		})
		if err != nil {
			t.Fatal(err)
		}
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		done = make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
	}
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine stopped with %v", err)
		}
		_ = st.Close()
	}
	ctx := context.Background()
	grant := func(reason string) string {
		req, err := a.Approvals.Create(ctx, approvals.NewRequest{Requester: alice, Role: "db-admin", Reason: reason, Duration: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Approvals.Approve(ctx, req.ID, bob, ""); err != nil {
			t.Fatal(err)
		}
		out, err := a.Approvals.Approve(ctx, req.ID, carol, "")
		if err != nil || out.GrantID == "" {
			t.Fatalf("approve: %+v %v", out, err)
		}
		waitFor(t, "the grant delivery", func() bool { return recv.Count("grant", out.GrantID) == 1 })
		return out.GrantID
	}

	start()
	first := grant("INC-1")
	stop()
	restore := b.snapshot() // the store as it is now; everything after this is about to be lost
	start()
	second := grant("INC-2")
	head, err := st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop() // a graceful stop writes a checkpoint: the next process knows the head it left
	if cs, err := audit.ReadCheckpointFile(cpFile); err != nil || len(cs) == 0 || cs[len(cs)-1].Seq != head.Seq || cs[len(cs)-1].Hash != head.Hash {
		t.Fatalf("checkpoint file after a graceful stop: %+v, %v; want the head %+v", cs, err, head)
	}
	restore() // the store comes back without the second grant and its audit entries

	start()
	defer stop()
	// The first grant falls due; the sweeper must not act on a store that lost writes.
	g, err := st.GetGrant(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetGrant(ctx, second); err == nil {
		t.Fatal("test bug: the second grant survived the rewind")
	}
	waitFor(t, "the first grant to fall due", func() bool { return time.Now().After(g.DueAt) })
	refused := gauge(t, reg, "jitbot_audit_sweeps_refused_total")
	a.Sweeper.Kick()
	waitFor(t, "a sweep refused after the grant fell due", func() bool { return gauge(t, reg, "jitbot_audit_sweeps_refused_total") > refused })
	if n := recv.Count("revoke", first); n != 0 {
		t.Fatalf("the sweeper revoked through a store that went backwards (%d revokes)", n)
	}
	if got, _ := st.GetGrant(ctx, first); got.State != store.GrantActive {
		t.Fatalf("grant state = %s: the sweeper acted on a diverged store", got.State)
	}
	if v := gauge(t, reg, "jitbot_audit_store_diverged"); v != 1 {
		t.Fatalf("jitbot_audit_store_diverged = %v, want 1", v)
	}
	recs, err := st.ReadAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	alert := recs[len(recs)-1].Event
	if alert.Type != audit.EventStoreDiverged || !strings.Contains(alert.Details["reason"], "behind seq") {
		t.Fatalf("last audit event = %+v, want the %s alert", alert, audit.EventStoreDiverged)
	}

	// The operator checks the store and accepts it as it is: the sweeper resumes and revokes the due grant.
	head, err = st.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.AppendCheckpoint(cpFile, (*audit.Signer)(nil).Checkpoint(head.Seq, head.Hash, time.Now().Add(time.Millisecond), true)); err != nil {
		t.Fatal(err)
	}
	a.Sweeper.Kick()
	waitFor(t, "the revoke after acceptance", func() bool { return recv.Count("revoke", first) == 1 })
	if v := gauge(t, reg, "jitbot_audit_store_diverged"); v != 0 {
		t.Fatalf("jitbot_audit_store_diverged = %v after acceptance, want 0", v)
	}
}

// redisSnapshot saves every key under prefix (with its remaining ttl, so a lock taken at the time still
// expires) and returns a function that puts the keys back as they were, dropping everything written since:
// a Redis restarted from an older snapshot, or a failover to a replica that had not received the last writes.
func redisSnapshot(t *testing.T, raw goredis.UniversalClient, prefix string) (restore func()) {
	t.Helper()
	ctx := context.Background()
	type saved struct {
		dump string
		ttl  time.Duration
	}
	dumps := map[string]saved{}
	keys, err := raw.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		d, err := raw.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		ttl, err := raw.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		dumps[k] = saved{d, max(ttl, 0)}
	}
	return func() {
		now, err := raw.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(now) > 0 {
			if err := raw.Del(ctx, now...).Err(); err != nil {
				t.Fatal(err)
			}
		}
		for k, d := range dumps {
			if err := raw.Restore(ctx, k, d.ttl, d.dump).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
