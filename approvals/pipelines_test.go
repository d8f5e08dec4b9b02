package approvals_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/internal/enginetest"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// pipelineScenarios run from TestEngine, each on an engine under pipelinePolicy.
var pipelineScenarios = []enginetest.Scenario{
	{Name: "PipelineHeartbeatKeepsGrantAlive", Fn: pipelineEnv(testPipelineHeartbeat)},
	{Name: "PipelineMissedHeartbeatRevokes", Fn: pipelineEnv(testPipelineMissedHeartbeat)},
	{Name: "PipelineReleaseAndOwnership", Fn: pipelineEnv(testPipelineRelease)},
	{Name: "PipelineTriggeringActorCannotApprove", Fn: pipelineEnv(testPipelineActor)},
	{Name: "PipelineAutoApproval", Fn: pipelineEnv(testPipelineAutoApproval)},
	{Name: "RoleConditions", Fn: pipelineEnv(testRoleConditions)},
}

const (
	octocat  = "U0OCTO" // Slack user mapped to the GitHub login "octocat"
	wlDeploy = "deploy-main"
)

func pipelinePolicy(t testing.TB) *policy.Policy {
	t.Helper()
	src := `version: 1
defaults:
  approval_channel: C0APPROVALS
  pending_ttl: 10m
providers:
  fake:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "http://127.0.0.1:1/unused", secret_env: UNUSED_SECRET}
issuers:
  gh:
    url: https://token.actions.githubusercontent.com
    audience: jitbot-test
workloads:
  deploy-main:
    issuer: gh
    claims: {repository: acme/web}
    heartbeat_timeout: 30s
    principals: {fake: ci-deployer}
  other:
    issuer: gh
    claims: {repository: acme/other}
    principals: {fake: ci-other}
identities:
  U0OCTO: {gh: octocat}
roles:
  deploy:
    provider: fake
    target: {app: web}
    requesters: {workloads: [deploy-main, other]}
    approvers: {users: [U0BOB, U0OCTO]}
    max_duration: 1h
    auto_approve:
      - workloads: [deploy-main]
        when: 'claims.ref == "refs/heads/main" && claims.environment == "production"'
        max_duration: 15m
  frozen:
    provider: fake
    target: {db: frozen}
    requesters: {users: [U0ALICE], workloads: [deploy-main]}
    approvers: {users: [U0BOB]}
    conditions:
      - 'request.reason.matches("^INC-[0-9]+")'
      - 'requester.kind == "user" || request.duration <= duration("10m")'
  bgfreeze:
    provider: fake
    target: {db: bgfreeze}
    requesters: {users: [U0ALICE]}
    approvers: {users: [U0BOB]}
    breakglass: {source: pd, schedules: [PSCHED], on_source_error: allow}
    conditions:
      - 'request.break_glass && request.reason.startsWith("INC-")'
oncall_sources:
  pd:
    type: static
    rota: [{user: U0ALICE, schedule: PSCHED, level: 1, weekly: ["Mon-Sun 00:00-24:00 UTC"]}]
`
	p, err := policy.Parse("pipelines.yaml", []byte(src))
	if err != nil {
		t.Fatalf("pipeline test policy: %v", err)
	}
	return p
}

func pipelineEnv(fn func(*testing.T, *enginetest.Env)) func(*testing.T, *enginetest.Env) {
	return func(t *testing.T, e *enginetest.Env) {
		fn(t, enginetest.NewEnvPolicy(t, e.St, pipelinePolicy(t)))
	}
}

func claims(ref, env string) map[string]any {
	return map[string]any{"repository": "acme/web", "ref": ref, "environment": env, "actor": "octocat", "run_id": "42"}
}

func pipelineReq(role, reason string, d time.Duration, c map[string]any) approvals.WorkloadRequest {
	return approvals.WorkloadRequest{Workload: wlDeploy, Role: role, Duration: d, Reason: reason, Claims: c,
		Pipeline: store.PipelineContext{Method: "oidc", Issuer: "gh", Subject: "repo:acme/web:ref:" + c["ref"].(string), RunID: "42",
			Repository: "acme/web", Ref: c["ref"].(string), Environment: c["environment"].(string), Actor: "octocat", ActorUser: "U0FORGED"}}
}

// pendingPipelineGrant creates a pipeline request that needs a person and approves it as bob.
func pendingPipelineGrant(e *enginetest.Env, d time.Duration) store.Grant {
	e.T.Helper()
	req, err := e.Svc.CreateForWorkload(e.Ctx, pipelineReq("deploy", "deploy v1.2", d, claims("refs/heads/feature", "staging")))
	if err != nil || req.State != store.RequestPending {
		e.T.Fatalf("create: %+v %v", req, err)
	}
	out, err := e.Svc.Approve(e.Ctx, req.ID, bob, "")
	if err != nil || out.GrantID == "" {
		e.T.Fatalf("approve: %+v %v", out, err)
	}
	return e.Grant(out.GrantID)
}

func testPipelineHeartbeat(t *testing.T, e *enginetest.Env) {
	g := pendingPipelineGrant(e, 30*time.Minute)
	if g.State != store.GrantActive || g.UserID != store.WorkloadRequester(wlDeploy) || g.Principal != "ci-deployer" || g.HeartbeatTimeout != 30*time.Second {
		t.Fatalf("grant = %+v", g)
	}
	if !g.HeartbeatDeadline.Equal(g.ActivatedAt.Add(30*time.Second)) || !g.DueAt.Equal(g.HeartbeatDeadline) {
		t.Fatalf("deadline %v due %v, want activation+30s", g.HeartbeatDeadline, g.DueAt)
	}
	// Heartbeats every 20s keep it alive well past the first deadline; nothing is called at the provider.
	calls := len(e.Fake.Calls("grant")) + len(e.Fake.Calls("revoke"))
	for range 6 {
		e.Clock.Advance(20 * time.Second)
		hb, err := e.Mgr.Heartbeat(e.Ctx, g.ID, g.UserID)
		if err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		if !hb.HeartbeatDeadline.Equal(e.Clock.Now().Add(30*time.Second)) || !hb.DueAt.Equal(hb.HeartbeatDeadline) {
			t.Fatalf("deadline not moved: %+v", hb)
		}
		e.Sweep()
		if st := e.Grant(g.ID).State; st != store.GrantActive {
			t.Fatalf("grant %s after a timely heartbeat", st)
		}
	}
	if n := len(e.Fake.Calls("grant")) + len(e.Fake.Calls("revoke")); n != calls {
		t.Fatalf("heartbeats called the provider (%d calls)", n-calls)
	}
	if _, err := e.Mgr.Heartbeat(e.Ctx, g.ID, store.WorkloadRequester("other")); !errors.Is(err, grants.ErrNotHolder) {
		t.Fatalf("heartbeat by another workload: %v", err)
	}
	// Near expiry the due time is the expiry, not a deadline past it.
	var hb store.Grant
	var err error
	for g.ExpiresAt.Sub(e.Clock.Now()) > 20*time.Second {
		e.Clock.Advance(min(20*time.Second, g.ExpiresAt.Sub(e.Clock.Now())-10*time.Second))
		if hb, err = e.Mgr.Heartbeat(e.Ctx, g.ID, g.UserID); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	if !hb.DueAt.Equal(hb.ExpiresAt) {
		t.Fatalf("heartbeat near expiry: due %v expires %v err %v", hb.DueAt, hb.ExpiresAt, err)
	}
	e.Clock.Advance(g.ExpiresAt.Sub(e.Clock.Now()))
	e.Sweep()
	if got := e.Grant(g.ID); got.State != store.GrantRevoked || got.EndReason != "expired" {
		t.Fatalf("at expiry: %s %s", got.State, got.EndReason)
	}
}

func testPipelineMissedHeartbeat(t *testing.T, e *enginetest.Env) {
	g := pendingPipelineGrant(e, 30*time.Minute)
	e.Clock.Advance(29 * time.Second)
	e.Sweep()
	if e.Grant(g.ID).State != store.GrantActive {
		t.Fatal("revoked before the heartbeat deadline")
	}
	e.Clock.Advance(time.Second)
	e.Sweep()
	got := e.Grant(g.ID)
	if got.State != store.GrantRevoked || got.EndReason != "heartbeat_missed" || !got.EndedAt.Equal(got.HeartbeatDeadline) {
		t.Fatalf("after the deadline: %s %s ended %v", got.State, got.EndReason, got.EndedAt)
	}
	if e.Fake.PresentCount() != 0 {
		t.Fatal("access still present after a missed heartbeat")
	}
	if e.Pub.Count(store.EventHeartbeatMissed) != 1 {
		t.Fatalf("heartbeat-missed events = %d", e.Pub.Count(store.EventHeartbeatMissed))
	}
	// A late heartbeat does not bring it back.
	if _, err := e.Mgr.Heartbeat(e.Ctx, g.ID, g.UserID); !errors.Is(err, grants.ErrNotActive) {
		t.Fatalf("late heartbeat: %v", err)
	}

	// Survives a restart: a fresh manager and sweeper (another replica) find the deadline in the store.
	g2 := pendingPipelineGrant(e, 30*time.Minute)
	_, sw2 := e.NewManager("replica-b")
	e.Clock.Advance(31 * time.Second)
	if _, err := e.Mgr.Heartbeat(e.Ctx, g2.ID, g2.UserID); !errors.Is(err, grants.ErrHeartbeatMissed) {
		t.Fatalf("heartbeat after the deadline, before the sweep: %v", err)
	}
	if _, err := sw2.Sweep(e.Ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.Grant(g2.ID); got.State != store.GrantRevoked || got.EndReason != "heartbeat_missed" {
		t.Fatalf("other replica: %s %s", got.State, got.EndReason)
	}
}

func testPipelineRelease(t *testing.T, e *enginetest.Env) {
	g := pendingPipelineGrant(e, 30*time.Minute)
	if _, err := e.Mgr.Release(e.Ctx, g.ID, store.WorkloadRequester("other")); !errors.Is(err, grants.ErrNotHolder) {
		t.Fatalf("release by another workload: %v", err)
	}
	rel, err := e.Mgr.Release(e.Ctx, g.ID, g.UserID)
	if err != nil || rel.State != store.GrantRevoked || rel.EndReason != "released" {
		t.Fatalf("release: %+v %v", rel, err)
	}
	if e.Fake.PresentCount() != 0 {
		t.Fatal("released access still present")
	}
	if _, err := e.Mgr.Heartbeat(e.Ctx, g.ID, g.UserID); !errors.Is(err, grants.ErrNotActive) {
		t.Fatalf("heartbeat after release: %v", err)
	}
}

func testPipelineActor(t *testing.T, e *enginetest.Env) {
	req, err := e.Svc.CreateForWorkload(e.Ctx, pipelineReq("deploy", "deploy", 30*time.Minute, claims("refs/heads/x", "staging")))
	if err != nil {
		t.Fatal(err)
	}
	// The caller's ActorUser is ignored: the policy maps the login.
	if req.Pipeline == nil || req.Pipeline.ActorUser != octocat || req.RequesterKind != store.RequesterWorkload || req.Workload != wlDeploy {
		t.Fatalf("request = %+v %+v", req, req.Pipeline)
	}
	if _, err := e.Svc.Approve(e.Ctx, req.ID, octocat, ""); !errors.Is(err, approvals.ErrSelfApproval) {
		t.Fatalf("approval by the triggering person: %v", err)
	}
	if got, _ := e.St.GetRequest(e.Ctx, req.ID); got.State != store.RequestPending || len(got.Approvals) != 0 {
		t.Fatalf("refused approval changed the request: %+v", got)
	}
	if out, err := e.Svc.Approve(e.Ctx, req.ID, bob, ""); err != nil || out.GrantID == "" {
		t.Fatalf("approval by another approver: %v", err)
	}
	// Not eligible: a workload the role does not list, a role without workloads.
	in := pipelineReq("deploy", "x", time.Minute, claims("refs/heads/main", "production"))
	in.Workload = "nobody"
	if _, err := e.Svc.CreateForWorkload(e.Ctx, in); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("unknown workload: %v", err)
	}
	if _, err := e.Svc.CreateForWorkload(e.Ctx, pipelineReq("deploy", "x", 2*time.Hour, claims("refs/heads/main", "production"))); !errors.Is(err, approvals.ErrBadDuration) {
		t.Fatalf("too long: %v", err)
	}
}

func testPipelineAutoApproval(t *testing.T, e *enginetest.Env) {
	req, err := e.Svc.CreateForWorkload(e.Ctx, pipelineReq("deploy", "deploy", 10*time.Minute, claims("refs/heads/main", "production")))
	if err != nil {
		t.Fatal(err)
	}
	if req.State != store.RequestApproved || req.GrantID == "" || len(req.Approvals) != 1 || req.Approvals[0].By != "system:auto-approve" {
		t.Fatalf("matching pipeline: %+v", req)
	}
	if g := e.Grant(req.GrantID); g.State != store.GrantActive {
		t.Fatalf("auto-approved grant %s", g.State)
	}
	if e.Pub.Count(store.EventRequested) != 1 || e.Pub.Count(store.EventApproved) != 1 {
		t.Fatal("auto-approval was not announced like an approval")
	}
	// Each unmet part of the rule leaves the request waiting for a person.
	for name, c := range map[string]struct {
		ref, env string
		d        time.Duration
	}{"branch": {"refs/heads/dev", "production", 10 * time.Minute}, "environment": {"refs/heads/main", "staging", 10 * time.Minute}, "duration": {"refs/heads/main", "production", 20 * time.Minute}} {
		r, err := e.Svc.CreateForWorkload(e.Ctx, pipelineReq("deploy", "deploy", c.d, claims(c.ref, c.env)))
		if err != nil || r.State != store.RequestPending || r.GrantID != "" {
			t.Fatalf("non-matching %s: %+v %v", name, r, err)
		}
	}
	// A claim missing from the token makes the rule not apply (fail closed), without an error.
	c := claims("refs/heads/main", "production")
	delete(c, "environment")
	in := pipelineReq("deploy", "deploy", 10*time.Minute, claims("refs/heads/main", "production"))
	in.Claims = c
	if r, err := e.Svc.CreateForWorkload(e.Ctx, in); err != nil || r.State != store.RequestPending {
		t.Fatalf("missing claim: %+v %v", r, err)
	}
	// A subscriber writes the request between its creation and the auto-approval (the Slack notifier records
	// its approval message there): the approval is retried on the new version, not silently dropped.
	e.Pub.Then(func(ev store.AuditEvent) {
		if ev.Type != store.EventRequested {
			return
		}
		r, err := e.St.GetRequest(e.Ctx, ev.RequestID)
		if err != nil {
			t.Error(err)
			return
		}
		prev := r.Version
		r.Meta = map[string]string{"slack_message": "C0APPROVALS/1.000001"}
		if err := e.St.Commit(e.Ctx, store.Batch{Requests: []store.RequestPut{{Request: &r, PrevVersion: prev}}}); err != nil {
			t.Error(err)
		}
	})
	defer e.Pub.Then(nil)
	r, err := e.Svc.CreateForWorkload(e.Ctx, pipelineReq("deploy", "deploy", 10*time.Minute, claims("refs/heads/main", "production")))
	if err != nil || r.State != store.RequestApproved || r.GrantID == "" {
		t.Fatalf("auto-approval after a concurrent write of the request: %+v %v", r, err)
	}
	if got := e.Request(r.ID); got.Meta["slack_message"] == "" || got.State != store.RequestApproved {
		t.Fatalf("stored request %+v: the subscriber's write or the approval was lost", got)
	}
}

func testRoleConditions(t *testing.T, e *enginetest.Env) {
	// People's requests use the same conditions.
	if _, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: alice, Role: "frozen", Reason: "no ticket"}); !errors.Is(err, approvals.ErrConditionFailed) {
		t.Fatalf("person without a ticket: %v", err)
	} else if !strings.Contains(err.Error(), "condition 1 of frozen") {
		t.Fatalf("message: %v", err)
	}
	if _, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: alice, Role: "frozen", Reason: "INC-7 db", Duration: 30 * time.Minute}); err != nil {
		t.Fatalf("person with a ticket: %v", err)
	}
	if _, err := e.Svc.CreateForWorkload(e.Ctx, pipelineReq("frozen", "INC-8", 30*time.Minute, claims("refs/heads/main", "production"))); !errors.Is(err, approvals.ErrConditionFailed) {
		t.Fatalf("pipeline over 10m: %v", err)
	}
	if _, err := e.Svc.CreateForWorkload(e.Ctx, pipelineReq("frozen", "INC-8", 10*time.Minute, claims("refs/heads/main", "production"))); err != nil {
		t.Fatalf("pipeline within 10m: %v", err)
	}
	// Break-glass requests are evaluated with request.break_glass set.
	e.OnCall.Set(alice, 1)
	if _, err := e.Svc.BreakGlass(e.Ctx, approvals.NewRequest{Requester: alice, Role: "bgfreeze", Reason: "outage"}); !errors.Is(err, approvals.ErrConditionFailed) {
		t.Fatalf("break-glass without an incident: %v", err)
	}
	if _, err := e.Svc.BreakGlass(e.Ctx, approvals.NewRequest{Requester: alice, Role: "bgfreeze", Reason: "INC-9 outage"}); err != nil {
		t.Fatalf("break-glass with an incident: %v", err)
	}
	if _, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: alice, Role: "bgfreeze", Reason: "INC-9 outage"}); !errors.Is(err, approvals.ErrConditionFailed) {
		t.Fatalf("an ordinary request passed a break-glass-only condition: %v", err)
	}
	reqs, _ := e.St.ListRequests(e.Ctx, store.RequestQuery{State: store.RequestPending})
	if len(reqs) != 2 {
		t.Fatalf("pending requests = %d, want 2 (refused ones store nothing)", len(reqs))
	}
}
