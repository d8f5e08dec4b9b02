package app_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

const (
	alice         = "U0ALICE" // requester
	bob           = "U0BOB"   // approver
	carol         = "U0CAROL" // approver
	dave          = "U0DAVE"  // nobody
	hookSecretEnv = "JITBOT_TEST_HOOK_SECRET"
)

var hookSecret = []byte("e2e-test-signing-secret-0123456789")

func testPolicy(t testing.TB, hookURL string) *policy.Policy {
	t.Helper()
	src := fmt.Sprintf(`version: 1
providers:
  target-system:
    type: webhook
    principal_from: slack_user_id
    webhook:
      url: %s
      secret_env: %s
      timeout: 2s
roles:
  db-admin:
    description: Admin on the test database
    provider: target-system
    target: {resource: test-db, permission: admin}
    requesters: {users: [%s]}
    approvers: {users: [%s, %s]}
    approvals: 2
    default_duration: 2s
    max_duration: 1h
    pending_ttl: 10m
    approval_channel: C0APPROVALS
`, hookURL, hookSecretEnv, alice, bob, carol)
	p, err := policy.Parse("e2e-policy.yaml", []byte(src))
	if err != nil {
		t.Fatalf("test policy: %v", err)
	}
	return p
}

type harness struct {
	t    *testing.T
	recv *webhookfake.Server
	pol  *policy.Policy
	open func() store.Store

	st     store.Store
	app    *app.App
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, b backendtest.Backend) *harness {
	recv := webhookfake.NewServer(hookSecret)
	t.Cleanup(recv.Close)
	h := &harness{t: t, recv: recv, pol: testPolicy(t, recv.URL+"/hook"), open: b.Prepare(t)}
	h.start()
	t.Cleanup(h.stop)
	return h
}

// start runs a fresh engine on the (possibly reopened) store, as a new process would.
func (h *harness) start() {
	h.st = h.open()
	a, err := app.New(h.t.Context(), app.Deps{
		Policy: h.pol, Store: h.st, Logger: zerolog.New(zerolog.NewTestWriter(h.t)).Level(zerolog.WarnLevel),
		Getenv: func(k string) string {
			if k == hookSecretEnv {
				return string(hookSecret)
			}
			return ""
		},
		Tuning: app.Tuning{SweepInterval: time.Second, ProviderTimeout: 2 * time.Second, LeaderTTL: 3 * time.Second, BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond},
	})
	if err != nil {
		h.t.Fatalf("app.New: %v", err)
	}
	h.app = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("engine stopped with %v", err)
	}
	h.cancel = nil
	_ = h.st.Close()
}

func (h *harness) waitDelivery(typ, grantID string) webhookfake.Delivery {
	h.t.Helper()
	// The deadline only guards against a hang; it asserts nothing about speed.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := h.recv.WaitFor(ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == typ && d.Payload.GrantID == grantID })
	if err != nil {
		h.t.Fatalf("waiting for %s of %s: %v (deliveries: %+v)", typ, grantID, err, h.recv.Deliveries())
	}
	return d
}

func TestEndToEnd(t *testing.T) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("request-approve-grant-expire-revoke", func(t *testing.T) { testLifecycle(t, b, false) })
			t.Run("restart-while-active", func(t *testing.T) { testLifecycle(t, b, true) })
		})
	}
}

func testLifecycle(t *testing.T, b backendtest.Backend, restart bool) {
	h := newHarness(t, b)
	ctx := context.Background()
	svc := h.app.Approvals

	req, err := svc.Create(ctx, approvals.NewRequest{Requester: alice, Role: "db-admin", Reason: "INC-4521 failover"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if req.Duration != 2*time.Second || req.State != store.RequestPending || req.RequiredApprovals != 2 {
		t.Fatalf("created request = %+v", req)
	}
	// Refusals change nothing.
	for _, c := range []struct {
		who  string
		kind error
	}{{alice, approvals.ErrSelfApproval}, {dave, approvals.ErrNotEligible}} {
		if _, err := svc.Approve(ctx, req.ID, c.who, ""); !errors.Is(err, c.kind) {
			t.Fatalf("approve by %s: got %v, want %v", c.who, err, c.kind)
		}
	}
	out, err := svc.Approve(ctx, req.ID, bob, "")
	if err != nil || out.GrantID != "" || out.Request.State != store.RequestPending {
		t.Fatalf("first approval: %+v, %v", out, err)
	}
	if _, err := svc.Approve(ctx, req.ID, bob, ""); !errors.Is(err, approvals.ErrAlreadyApproved) {
		t.Fatalf("repeated approval by the same approver: %v", err)
	}
	approvedAt := time.Now().Truncate(time.Millisecond) // the engine stores millisecond times
	out, err = svc.Approve(ctx, req.ID, carol, "")
	if err != nil || out.GrantID == "" || out.Request.State != store.RequestApproved {
		t.Fatalf("quorum approval: %+v, %v", out, err)
	}
	granted := h.waitDelivery("grant", out.GrantID)
	if granted.Payload.Principal != alice || granted.Payload.Role != "db-admin" || granted.Payload.RequestID != req.ID || granted.Payload.Target["resource"] != "test-db" {
		t.Fatalf("grant payload = %+v", granted.Payload)
	}
	g, err := h.st.GetGrant(ctx, out.GrantID)
	if err != nil || g.State != store.GrantActive {
		t.Fatalf("grant after approval: %+v, %v", g, err)
	}
	// The clock starts at activation, not at request time.
	if g.ActivatedAt.Before(approvedAt) || !g.ExpiresAt.Equal(g.ActivatedAt.Add(2*time.Second)) {
		t.Fatalf("activation %v, expiry %v, approved %v", g.ActivatedAt, g.ExpiresAt, approvedAt)
	}
	if restart {
		h.stop()
		h.start()
	}
	revoked := h.waitDelivery("revoke", out.GrantID)
	if revoked.At.Before(g.ExpiresAt) {
		t.Fatalf("revoked at %v, before expiry %v", revoked.At, g.ExpiresAt)
	}
	if n := h.recv.Count("revoke", out.GrantID); n != 1 {
		t.Errorf("revoke deliveries = %d, want 1", n)
	}
	waitGrantState(t, h.st, out.GrantID, store.GrantRevoked)
	// Verified revocation: the sweeper asks the provider after the revoke (a check delivery) and records it.
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second) // a hang guard, not a speed check
	defer wcancel()
	if _, err := h.recv.WaitFor(wctx, func(d webhookfake.Delivery) bool {
		return d.Payload.Type == "check" && d.Payload.GrantID == out.GrantID && d.At.After(revoked.At)
	}); err != nil {
		t.Fatalf("no check after the revoke: %v", err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if g, err := h.st.GetGrant(ctx, out.GrantID); err == nil && !g.VerifiedAt.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revoke was never verified")
		}
	}

	rep, err := audit.Verify(ctx, h.st, "")
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	recs, err := h.st.ReadAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range recs {
		types = append(types, r.Event.Type)
	}
	want := []string{store.EventRequested, store.EventApproved, store.EventApproved, store.EventGranted, store.EventGrantExpired, store.EventRevoked, store.EventRevokeVerified}
	if !slices.Equal(types, want) {
		t.Fatalf("audit trail = %v, want %v (%d entries)", types, want, rep.Entries)
	}
}

func waitGrantState(t *testing.T, st store.Store, id string, want store.GrantState) store.Grant {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g, err := st.GetGrant(context.Background(), id)
		if err == nil && g.State == want {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("grant %s state = %s (err %v), want %s", id, g.State, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
