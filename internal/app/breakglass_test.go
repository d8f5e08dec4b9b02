package app_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/oncall/opsgenie/ogfake"
	"github.com/jitbot/jitbot/oncall/pagerduty/pdfake"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// TestBreakGlassAgainstOnCallTools: break-glass decided by local PagerDuty and Opsgenie servers that speak
// each API's documented format, through the real clients, resolver and engine.
func TestBreakGlassAgainstOnCallTools(t *testing.T) {
	now := time.Now()
	pd := pdfake.New("pd-test-key")
	t.Cleanup(pd.Close)
	pd.AddUser(pdfake.User{ID: "PALICE", Name: "Alice", Email: "alice@example.com"})
	pd.AddUser(pdfake.User{ID: "PCAROL", Name: "Carol", Email: "carol@example.com"})
	pd.AddOnCall(
		pdfake.OnCall{UserID: "PALICE", ScheduleID: "PSCHED", ScheduleName: "Payments", EscalationPolicyID: "PEP", EscalationPolicyName: "Payments", Level: 1, Start: now.Add(-time.Hour), End: now.Add(time.Hour)},
		pdfake.OnCall{UserID: "PCAROL", ScheduleID: "PSCHED", ScheduleName: "Payments", EscalationPolicyID: "PEP", EscalationPolicyName: "Payments", Level: 2, Start: now.Add(-time.Hour), End: now.Add(time.Hour)},
	)
	og := ogfake.New("og-test-key")
	t.Cleanup(og.Close)
	og.AddSchedule(ogfake.Schedule{ID: "sched-ops", Name: "Ops"})
	og.AddShift(ogfake.Shift{Schedule: "sched-ops", Start: now.Add(-time.Hour), End: now.Add(time.Hour),
		Participant: ogfake.Participant{ID: "og-erin", Name: "erin@example.com", Type: "user"}})
	recv := webhookfake.NewServer(hookSecret)
	t.Cleanup(recv.Close)

	src := fmt.Sprintf(`version: 1
defaults: {approval_channel: C0APPROVALS}
providers:
  target:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "%s/hook", secret_env: %s}
oncall_sources:
  pd:
    type: pagerduty
    api_key_env: PD_KEY
    base_url: %s
    users: {U0ALICE: PALICE, U0CAROL: PCAROL}
  og:
    type: opsgenie
    api_key_env: OG_KEY
    base_url: %s
    users: {U0ERIN: og-erin}
roles:
  db:
    provider: target
    target: {db: prod}
    requesters: {users: [U0ALICE, U0CAROL, U0DAVE]}
    approvers: {users: [U0BOB]}
    breakglass: {source: pd, schedules: [PSCHED], max_level: 1, max_duration: 30m, daily_limit: 1}
  db-lenient:
    provider: target
    target: {db: lenient}
    requesters: {users: [U0CAROL]}
    approvers: {users: [U0BOB]}
    breakglass: {source: pd, schedules: [PSCHED], on_source_error: allow}
  ops:
    provider: target
    target: {db: ops}
    requesters: {users: [U0ERIN]}
    approvers: {users: [U0BOB]}
    breakglass: {source: og, schedules: [sched-ops]}
`, recv.URL, hookSecretEnv, pd.URL, og.URL)
	pol, err := policy.Parse("breakglass.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{hookSecretEnv: string(hookSecret), "PD_KEY": "pd-test-key", "OG_KEY": "og-test-key"}
	st := backendtest.All()[0].Prepare(t)()
	defer st.Close()
	a, err := app.New(t.Context(), app.Deps{Policy: pol, Store: st, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
		Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bg := func(user, role string) (approvals.Outcome, error) {
		return a.Approvals.BreakGlass(ctx, approvals.NewRequest{Requester: user, Role: role, Reason: "INC-77 payments down"})
	}
	waitGrant := func(id string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := recv.WaitFor(wctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "grant" && d.Payload.GrantID == id }); err != nil {
			t.Fatalf("no grant for %s at the provider: %v", id, err)
		}
	}

	// PagerDuty down (answers are never cached while it is): denied by default, allowed where the policy
	// says so.
	pd.FailAlways(pdfake.Fault{Status: 503})
	if _, err := bg("U0CAROL", "db"); !errors.Is(err, approvals.ErrOnCallUnavailable) {
		t.Fatalf("source down: %v", err)
	}
	allowed, err := bg("U0CAROL", "db-lenient")
	if err != nil {
		t.Fatalf("source down, on_source_error: allow: %v", err)
	}
	waitGrant(allowed.GrantID)
	pd.Heal()

	// PagerDuty: primary on call -> granted at once, no approver involved.
	out, err := bg("U0ALICE", "db")
	if err != nil {
		t.Fatalf("primary on call: %v", err)
	}
	waitGrant(out.GrantID)
	if g, _ := st.GetGrant(ctx, out.GrantID); g.State != store.GrantActive || g.Duration != 30*time.Minute {
		t.Fatalf("break-glass grant %+v", g)
	}
	// Daily limit 1.
	if _, err := bg("U0ALICE", "db"); !errors.Is(err, approvals.ErrDailyLimit) {
		t.Fatalf("second activation: %v", err)
	}
	// Secondary (level 2) with max_level 1; off call entirely.
	if _, err := bg("U0CAROL", "db"); !errors.Is(err, approvals.ErrNotOnCall) {
		t.Fatalf("secondary on call: %v", err)
	}
	if _, err := bg("U0DAVE", "db"); !errors.Is(err, approvals.ErrNotOnCall) {
		t.Fatalf("not on call: %v", err)
	}
	// Opsgenie: on-call participant -> granted.
	ops, err := bg("U0ERIN", "ops")
	if err != nil {
		t.Fatalf("opsgenie on call: %v", err)
	}
	waitGrant(ops.GrantID)

	rep, err := audit.Verify(ctx, st, "")
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	recs, _ := st.ReadAudit(ctx, 0, 0)
	loud := 0
	for _, r := range recs {
		if r.Event.Type == store.EventBreakGlass {
			loud++
		}
	}
	if loud != 3 {
		t.Fatalf("break-glass audit events = %d of %d entries, want 3", loud, rep.Entries)
	}
	if pd.Count("/oncalls") == 0 || og.Count() == 0 {
		t.Fatal("the on-call tools were never asked")
	}
}
