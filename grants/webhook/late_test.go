package webhook_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/webhook"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
)

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// The case, scaled down and driven by the real grant manager (issue 8 item 2): the first grant call
// takes longer than the attempt timeout (14 s against 10 s; here the receiver holds it until the test lets it
// go), jitbot gives up and retries, the retry succeeds, the user releases, the revoke is applied, and then the
// first call lands. Its generation is older than the revoke's, so a receiver following the contract ignores
// it and the access stays gone.
func TestLateGrantAfterRevokeIsIgnored(t *testing.T) {
	key, err := webhook.ParseSecret("whsec_c2VjcmV0LWtleS1mb3ItbGF0ZS1jYWxscy10ZXN0cw==")
	if err != nil {
		t.Fatal(err)
	}
	rcv := webhookfake.NewServer(key)
	t.Cleanup(rcv.Close)
	p, err := webhook.New(webhook.Config{URL: rcv.URL + "/jitbot", Secret: key, Timeout: time.Hour}) // the manager's attempt timeout applies
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	clock := &testClock{now: time.Now().Truncate(time.Millisecond)}
	// The first attempt's replica gives up after 20 ms (jitbot's 10 s, scaled down); the receiver holds that
	// call, so the timeout fires whatever the load. The rest runs with a timeout that nothing reaches.
	newManager := func(timeout time.Duration) *grants.Manager {
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"hook": p}, Now: clock.Now,
			AttemptTimeout: timeout, LockTTL: time.Hour, LockWait: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	impatient, mgr := newManager(20*time.Millisecond), newManager(time.Hour)
	ctx := t.Context()
	g := grants.NewLease(grants.LeaseSpec{RequestID: "r-1", UserID: "U1", Role: "admin", Provider: "hook", Principal: "alice",
		Target: map[string]string{"account": "1"}, Duration: 10 * time.Minute}, clock.Now(), clock.Now().Add(time.Minute))
	if err := st.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		t.Fatal(err)
	}

	arrived, land := rcv.HoldNext()
	if err := impatient.Activate(ctx, g.ID); err != nil { // the receiver holds the call; jitbot gives up on it
		t.Fatal(err)
	}
	<-arrived
	if got, _ := st.GetGrant(ctx, g.ID); got.State != store.GrantActivating || got.Attempts != 1 {
		t.Fatalf("after the abandoned attempt: %s attempts %d", got.State, got.Attempts)
	}
	if err := mgr.Activate(ctx, g.ID); err != nil { // the retry
		t.Fatal(err)
	}
	if !rcv.Present(g.BindingKey) {
		t.Fatal("the retry was not applied")
	}
	if _, err := mgr.Release(ctx, g.ID, "U1"); err != nil {
		t.Fatal(err)
	}
	got, _ := st.GetGrant(ctx, g.ID)
	if got.State != store.GrantRevoked || rcv.Present(g.BindingKey) {
		t.Fatalf("after release: %s, present %v", got.State, rcv.Present(g.BindingKey))
	}
	if !got.RecheckAt.Equal(got.RevokedAt) {
		t.Errorf("verification at %v, want at the revoke %v", got.RecheckAt, got.RevokedAt)
	}

	var retry, revoke webhookfake.Delivery
	for _, d := range rcv.Deliveries() {
		switch d.Payload.Type {
		case "grant":
			retry = d
		case "revoke":
			revoke = d
		}
	}
	land() // the first call lands now
	late, err := rcv.WaitFor(ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "grant" && d.ID != retry.ID })
	if err != nil {
		t.Fatal(err)
	}
	if !late.Stale || rcv.Present(g.BindingKey) {
		t.Fatal("the late grant was applied after the revoke: the provider's last word is grant")
	}
	if late.Payload.Generation == 0 || late.Payload.Generation >= retry.Payload.Generation || retry.Payload.Generation >= revoke.Payload.Generation {
		t.Fatalf("generations: late grant %d, retry %d, revoke %d", late.Payload.Generation, retry.Payload.Generation, revoke.Payload.Generation)
	}
	if late.ID == retry.ID || late.ID == revoke.ID {
		t.Fatal("two operations share a webhook-id")
	}

	// The sweeper's verification of the revoke: a check finds the access gone; a sequenced provider needs no
	// later check for late calls.
	if err := mgr.ConvergeDue(ctx, g.BindingKey, []store.Grant{got}); err != nil {
		t.Fatal(err)
	}
	got, _ = st.GetGrant(ctx, g.ID)
	if got.VerifiedAt.IsZero() || !got.RecheckAt.IsZero() || !got.DueAt.IsZero() {
		t.Fatalf("after verification: verified %v, next check %v, due %v", got.VerifiedAt, got.RecheckAt, got.DueAt)
	}
}
