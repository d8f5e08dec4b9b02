package approvals_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/internal/enginetest"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// TestEngine runs the engine scenarios about requests, approvals, break-glass and pipelines on every store
// back end, each on a fresh engine (internal/enginetest) and an empty store: among them the concurrency
// properties every back end must give the engine (50 concurrent approvals make one grant).
func TestEngine(t *testing.T) { enginetest.Run(t, slices.Concat(approvalScenarios, pipelineScenarios)) }

var approvalScenarios = []enginetest.Scenario{
	{Name: "ConcurrentApprovalsMakeOneGrant", Fn: testConcurrentApprovals},
	{Name: "ConcurrentClicksBySameApprover", Fn: testConcurrentSameApprover},
	{Name: "PendingRequestsExpire", Fn: testPendingExpiry},
	{Name: "BadInputChangesNothing", Fn: testBadInput},
	{Name: "DenyAndCancel", Fn: testDenyCancel},
	{Name: "PrincipalFromSlackEmail", Fn: testSlackEmail},
	{Name: "BreakGlass", Fn: testBreakGlass},
	{Name: "BreakGlassReview", Fn: testBreakGlassReview},
	{Name: "BreakGlassDailyLimitUnderConcurrency", Fn: testBreakGlassLimitConcurrent},
	{Name: "PolicyChangeAppliesToPendingRequests", Fn: testPolicyChangeAtApproval},
	{Name: "OnCallAutoApproval", Fn: testAutoApprove},
}

// The people of the engine policy (enginetest.Policy).
const (
	alice = enginetest.Alice
	erin  = enginetest.Erin
	bob   = enginetest.Bob
	dave  = enginetest.Dave
)

func testConcurrentApprovals(t *testing.T, e *enginetest.Env) {
	req, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: alice, Role: "quorum", Duration: 30 * time.Minute, Reason: "INC-1"})
	if err != nil {
		t.Fatal(err)
	}
	var grantsMade atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 50)
	for _, approver := range enginetest.ApproverIDs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out, err := e.Svc.Approve(e.Ctx, req.ID, approver, "")
			if err != nil && !errors.Is(err, approvals.ErrAlreadyDecided) {
				errs <- fmt.Errorf("approve by %s: %w", approver, err)
			}
			if out.GrantID != "" {
				grantsMade.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := grantsMade.Load(); n != 1 {
		t.Fatalf("approvals that created a grant = %d, want exactly 1", n)
	}
	got, _ := e.St.GetRequest(e.Ctx, req.ID)
	if got.State != store.RequestApproved || len(got.Approvals) != 3 {
		t.Fatalf("request state %s with %d approvals, want approved with 3", got.State, len(got.Approvals))
	}
	gs, err := e.St.ListGrants(e.Ctx, store.GrantQuery{UserID: alice})
	if err != nil || len(gs) != 1 {
		t.Fatalf("grants of requester = %d (%v), want 1", len(gs), err)
	}
	if n := len(e.Fake.Calls("grant")); n != 1 {
		t.Fatalf("provider grant calls = %d, want 1", n)
	}
	if e.Grant(got.GrantID).State != store.GrantActive {
		t.Fatalf("grant not active")
	}
}

func testConcurrentSameApprover(t *testing.T, e *enginetest.Env) {
	req, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: alice, Role: "quorum", Reason: "INC-2"})
	if err != nil {
		t.Fatal(err)
	}
	var ok, dup atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.Svc.Approve(e.Ctx, req.ID, "U0APP07", "")
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, approvals.ErrAlreadyApproved):
				dup.Add(1)
			default:
				t.Errorf("approve: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || dup.Load() != 49 {
		t.Fatalf("successful approvals = %d, duplicates refused = %d; want 1 and 49", ok.Load(), dup.Load())
	}
	got, _ := e.St.GetRequest(e.Ctx, req.ID)
	if len(got.Approvals) != 1 || got.State != store.RequestPending {
		t.Fatalf("request has %d approvals in state %s", len(got.Approvals), got.State)
	}
}

func testPendingExpiry(t *testing.T, e *enginetest.Env) {
	req, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: alice, Role: "db", Reason: "later"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.Svc.ExpirePending(e.Ctx); err != nil || n != 0 {
		t.Fatalf("early expire: %d %v", n, err)
	}
	e.Clock.Advance(61 * time.Second)
	if n, err := e.Svc.ExpirePending(e.Ctx); err != nil || n != 1 {
		t.Fatalf("expire: %d %v", n, err)
	}
	if _, err := e.Svc.Approve(e.Ctx, req.ID, "U0APP01", ""); !errors.Is(err, approvals.ErrAlreadyDecided) {
		t.Fatalf("approve after expiry: %v", err)
	}
	got, _ := e.St.GetRequest(e.Ctx, req.ID)
	if got.State != store.RequestExpired {
		t.Fatalf("state %s", got.State)
	}
}

func testBadInput(t *testing.T, e *enginetest.Env) {
	before := e.AuditLen()
	cases := []struct {
		in   approvals.NewRequest
		kind error
	}{
		{approvals.NewRequest{Requester: alice, Role: "nope", Reason: "x"}, approvals.ErrUnknownRole},
		{approvals.NewRequest{Requester: alice, Role: "db", Duration: 2 * time.Hour, Reason: "x"}, approvals.ErrBadDuration},
		{approvals.NewRequest{Requester: alice, Role: "db", Duration: -time.Minute, Reason: "x"}, approvals.ErrBadDuration},
		{approvals.NewRequest{Requester: alice, Role: "db", Reason: "   "}, approvals.ErrBadReason},
		{approvals.NewRequest{Requester: dave, Role: "db", Reason: "x"}, approvals.ErrNotEligible},
		{approvals.NewRequest{Requester: erin, Role: "quorum", Reason: "x"}, approvals.ErrNotEligible},
	}
	for _, c := range cases {
		if _, err := e.Svc.Create(e.Ctx, c.in); !errors.Is(err, c.kind) {
			t.Errorf("create %+v: got %v, want %v", c.in, err, c.kind)
		} else if msg := err.Error(); msg == "" || strings.Contains(msg, "approvals:") {
			t.Errorf("refusal message %q is not written for a person", msg)
		}
	}
	if _, err := e.Svc.Approve(e.Ctx, "r-missing", bob, ""); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("approve unknown: %v", err)
	}
	if after := e.AuditLen(); after != before {
		t.Fatalf("refused input wrote %d audit entries", after-before)
	}
}

func testDenyCancel(t *testing.T, e *enginetest.Env) {
	req, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: alice, Role: "db", Reason: "INC-3"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.Deny(e.Ctx, req.ID, bob, ""); !errors.Is(err, approvals.ErrBadReason) {
		t.Fatalf("deny without reason: %v", err)
	}
	if _, err := e.Svc.Deny(e.Ctx, req.ID, dave, "no"); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("deny by non-approver: %v", err)
	}
	if _, err := e.Svc.Cancel(e.Ctx, req.ID, bob); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("cancel by non-requester: %v", err)
	}
	denied, err := e.Svc.Deny(e.Ctx, req.ID, bob, "use the read-only role")
	if err != nil || denied.State != store.RequestDenied || denied.Denial.Note != "use the read-only role" {
		t.Fatalf("deny: %+v %v", denied, err)
	}
	if _, err := e.Svc.Approve(e.Ctx, req.ID, "U0APP03", ""); !errors.Is(err, approvals.ErrAlreadyDecided) || !strings.Contains(err.Error(), "denied by") {
		t.Fatalf("approve after deny: %v", err)
	}
	req2, _ := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: alice, Role: "db", Reason: "INC-4"})
	if c, err := e.Svc.Cancel(e.Ctx, req2.ID, alice); err != nil || c.State != store.RequestCancelled {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	if len(e.Fake.Calls("")) != 0 {
		t.Fatal("denied or cancelled requests reached the provider")
	}
}

func testSlackEmail(t *testing.T, e *enginetest.Env) {
	g := e.Approved(alice, "mail", 10*time.Minute)
	if g.Principal != "alice@example.com" {
		t.Fatalf("principal = %q, want the profile email", g.Principal)
	}
	if last := enginetest.LastCall(e.MailFake, "grant"); last.Assignment.Principal != "alice@example.com" {
		t.Fatalf("provider got principal %q", last.Assignment.Principal)
	}
	// No email on the profile: refused, fail closed, nothing stored.
	before := e.AuditLen()
	if _, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: erin, Role: "mail", Reason: "x"}); !errors.Is(err, approvals.ErrNoIdentity) {
		t.Fatalf("create without a profile email: %v", err)
	}
	if e.AuditLen() != before {
		t.Fatal("a refused request was stored")
	}
}

func testBreakGlass(t *testing.T, e *enginetest.Env) {
	bgReq := func(user, role string, d time.Duration) (approvals.Outcome, error) {
		return e.Svc.BreakGlass(e.Ctx, approvals.NewRequest{Requester: user, Role: role, Duration: d, Reason: "INC-9 outage"})
	}
	before := e.AuditLen()
	refusals := []struct {
		user, role string
		d          time.Duration
		kind       error
	}{
		{alice, "bg", 0, approvals.ErrNotOnCall},               // not on call
		{alice, "db", 0, approvals.ErrBreakGlassNotAllowed},    // role has no break-glass
		{dave, "bg", 0, approvals.ErrNotEligible},              // not a requester
		{alice, "bg", 2 * time.Hour, approvals.ErrBadDuration}, // over the break-glass maximum
	}
	for _, c := range refusals {
		if _, err := bgReq(c.user, c.role, c.d); !errors.Is(err, c.kind) {
			t.Fatalf("break-glass %s/%s: %v, want %v", c.user, c.role, err, c.kind)
		}
	}
	e.OnCall.Set(erin, 2) // secondary only: the rule wants primary
	if _, err := bgReq(erin, "bg", 0); !errors.Is(err, approvals.ErrNotOnCall) || !strings.Contains(err.Error(), "only level 1") {
		t.Fatalf("escalation-level filter: %v", err)
	}
	e.OnCall.SetDown(true)
	if _, err := bgReq(alice, "bg", 0); !errors.Is(err, approvals.ErrOnCallUnavailable) {
		t.Fatalf("source down, deny by default: %v", err)
	}
	if e.AuditLen() != before || len(e.Fake.Calls("grant")) != 0 {
		t.Fatal("a refused break-glass changed something")
	}
	out, err := bgReq(alice, "bgopen", 0) // on_source_error: allow
	if err != nil || out.GrantID == "" {
		t.Fatalf("source down, allowed by policy: %+v %v", out, err)
	}
	e.OnCall.SetDown(false)

	e.OnCall.Set(alice, 1)
	out, err = bgReq(alice, "bg", 0)
	if err != nil {
		t.Fatalf("on-call break-glass: %v", err)
	}
	g := e.Grant(out.GrantID)
	if g.State != store.GrantActive || !g.BreakGlass || g.Duration != time.Hour {
		t.Fatalf("break-glass grant %+v", g)
	}
	if out.Request.State != store.RequestApproved || len(out.Request.Approvals) != 0 || !out.Request.BreakGlass || out.Request.ReviewDueAt.IsZero() {
		t.Fatalf("break-glass request %+v", out.Request)
	}
	if e.Pub.Count(store.EventBreakGlass) != 2 {
		t.Fatalf("break-glass events = %d, want 2 (one per activation)", e.Pub.Count(store.EventBreakGlass))
	}
	// Daily limit 2 for bg: one more is fine, the next is refused.
	if _, err := bgReq(alice, "bg", 30*time.Minute); err != nil {
		t.Fatalf("second activation: %v", err)
	}
	if _, err := bgReq(alice, "bg", 30*time.Minute); !errors.Is(err, approvals.ErrDailyLimit) {
		t.Fatalf("third activation within 24h: %v", err)
	}
	e.Clock.Advance(25 * time.Hour)
	if _, err := bgReq(alice, "bg", 30*time.Minute); err != nil {
		t.Fatalf("activation after 24h: %v", err)
	}
}

// testBreakGlassLimitConcurrent: ten break-glass requests at once by one on-call person against
// daily_limit: 2 grant exactly two; the rest are refused with the limit named, and nothing of theirs is stored.
func testBreakGlassLimitConcurrent(t *testing.T, e *enginetest.Env) {
	e.OnCall.Set(alice, 1)
	const n = 10
	outs := make([]approvals.Outcome, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			outs[i], errs[i] = e.Svc.BreakGlass(e.Ctx, approvals.NewRequest{Requester: alice, Role: "bg", Duration: 30 * time.Minute, Reason: fmt.Sprintf("INC-%d outage", i)})
		})
	}
	close(start)
	wg.Wait()
	granted := 0
	for i, err := range errs {
		switch {
		case err == nil && outs[i].GrantID != "":
			granted++
		case errors.Is(err, approvals.ErrDailyLimit):
			if msg := err.Error(); !strings.Contains(msg, "the limit is 2") {
				t.Errorf("refusal message %q does not name the limit", msg)
			}
		default:
			t.Errorf("request %d: %+v %v, want a grant or ErrDailyLimit", i, outs[i], err)
		}
	}
	if granted != 2 {
		t.Fatalf("%d of %d concurrent break-glass requests were granted, want exactly daily_limit = 2", granted, n)
	}
	reqs, err := e.St.ListRequests(e.Ctx, store.RequestQuery{Requester: alice})
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 2 {
		t.Fatalf("%d break-glass requests stored, want 2", len(reqs))
	}
	if got := e.Pub.Count(store.EventBreakGlass); got != 2 {
		t.Fatalf("%d break-glass audit events, want 2", got)
	}
	if got := len(e.Fake.Calls("grant")); got != 2 {
		t.Fatalf("%d provider grant calls, want 2", got)
	}
	// The window still rolls: a day later the person may break glass again.
	e.Clock.Advance(24*time.Hour + time.Second)
	if _, err := e.Svc.BreakGlass(e.Ctx, approvals.NewRequest{Requester: alice, Role: "bg", Duration: 30 * time.Minute, Reason: "INC-11"}); err != nil {
		t.Fatalf("break-glass a day later: %v", err)
	}
}

// withRole returns a copy of pol in which role name was changed by edit (the shape of a policy reload).
func withRole(pol *policy.Policy, name string, edit func(r *policy.Role)) *policy.Policy {
	p := *pol
	p.Roles = maps.Clone(pol.Roles)
	r := *pol.Roles[name]
	r.Requesters.Users = slices.Clone(r.Requesters.Users)
	r.Approvers.Users = slices.Clone(r.Approvers.Users)
	edit(&r)
	p.Roles[name] = &r
	return &p
}

// testPolicyChangeAtApproval: a request created before a policy change is decided under the policy in force
// at approval time: a removed approver can no longer approve, a removed requester's request can no longer be
// approved, a raised approval count and a lowered maximum apply.
func testPolicyChangeAtApproval(t *testing.T, e *enginetest.Env) {
	create := func(user string, d time.Duration) store.Request {
		t.Helper()
		r, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: user, Role: "db", Duration: d, Reason: "INC-42"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	byAlice, byErin, quorum, long := create(alice, 0), create(erin, 0), create(alice, 0), create(alice, 50*time.Minute)
	orig := e.Svc.Policy()

	e.Svc.SetPolicy(withRole(orig, "db", func(r *policy.Role) {
		r.Approvers.Users = slices.DeleteFunc(r.Approvers.Users, func(u string) bool { return u == bob })
	}))
	if _, err := e.Svc.Approve(e.Ctx, byAlice.ID, bob, ""); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("approval by an approver removed from the policy: %v, want ErrNotEligible", err)
	}
	if _, err := e.Svc.MayDecide(e.Ctx, byAlice.ID, bob); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("MayDecide by a removed approver: %v", err)
	}
	if _, err := e.Svc.Deny(e.Ctx, byAlice.ID, bob, "no"); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("deny by a removed approver: %v", err)
	}

	e.Svc.SetPolicy(withRole(orig, "db", func(r *policy.Role) { r.Requesters.Users = []string{alice} }))
	_, err := e.Svc.Approve(e.Ctx, byErin.ID, "U0APP01", "")
	if !errors.Is(err, approvals.ErrNotEligible) || !strings.Contains(err.Error(), "may no longer request db") {
		t.Fatalf("approval of a request whose requester was removed: %v", err)
	}
	if got, _ := e.St.GetRequest(e.Ctx, byErin.ID); got.State != store.RequestPending || len(got.Approvals) != 0 || got.GrantID != "" {
		t.Fatalf("a refused approval changed the request: %+v", got)
	}

	e.Svc.SetPolicy(withRole(orig, "db", func(r *policy.Role) { r.Approvals = 2 }))
	if out, err := e.Svc.Approve(e.Ctx, quorum.ID, "U0APP01", ""); err != nil || out.GrantID != "" {
		t.Fatalf("first approval after the count was raised to 2: %+v %v (want no grant yet)", out, err)
	}
	if out, err := e.Svc.Approve(e.Ctx, quorum.ID, "U0APP02", ""); err != nil || out.GrantID == "" {
		t.Fatalf("second approval: %+v %v", out, err)
	}

	e.Svc.SetPolicy(withRole(orig, "db", func(r *policy.Role) { r.MaxDuration = 30 * time.Minute; r.DefaultDuration = 10 * time.Minute }))
	if _, err := e.Svc.Approve(e.Ctx, long.ID, "U0APP01", ""); !errors.Is(err, approvals.ErrBadDuration) {
		t.Fatalf("approval of a request longer than the new maximum: %v", err)
	}

	// Back to the original policy, the approver who was removed may approve again.
	e.Svc.SetPolicy(orig)
	if out, err := e.Svc.Approve(e.Ctx, byAlice.ID, bob, ""); err != nil || out.GrantID == "" {
		t.Fatalf("approval once reinstated: %+v %v", out, err)
	}
	if len(e.Fake.Calls("grant")) != 2 {
		t.Fatalf("provider grant calls = %d, want 2", len(e.Fake.Calls("grant")))
	}
	// A role read before a reload is not checked against the next policy's groups: the check refuses.
	stale, _ := e.Svc.Policy().Role("db")
	e.Svc.SetPolicy(withRole(orig, "db", func(*policy.Role) {}))
	if _, err := e.Svc.CanApprove(e.Ctx, stale, "U0APP01"); !errors.Is(err, approvals.ErrUnavailable) {
		t.Fatalf("membership check with a role of a replaced policy: %v, want ErrUnavailable", err)
	}
}

func testBreakGlassReview(t *testing.T, e *enginetest.Env) {
	e.OnCall.Set(alice, 1)
	out, err := e.Svc.BreakGlass(e.Ctx, approvals.NewRequest{Requester: alice, Role: "bg", Reason: "INC-10"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.Svc.RemindReviews(e.Ctx); err != nil || n != 0 {
		t.Fatalf("reminders before review_every: %d %v", n, err)
	}
	e.Clock.Advance(61 * time.Minute)
	if n, err := e.Svc.RemindReviews(e.Ctx); err != nil || n != 1 {
		t.Fatalf("reminders after review_every: %d %v", n, err)
	}
	if n, _ := e.Svc.RemindReviews(e.Ctx); n != 0 {
		t.Fatal("a reminder was repeated before the next interval")
	}
	e.Clock.Advance(61 * time.Minute)
	if n, _ := e.Svc.RemindReviews(e.Ctx); n != 1 {
		t.Fatal("the unreviewed grant was not announced again")
	}
	if _, err := e.Svc.Review(e.Ctx, out.Request.ID, alice, ""); !errors.Is(err, approvals.ErrSelfApproval) {
		t.Fatalf("self-review: %v", err)
	}
	if _, err := e.Svc.Review(e.Ctx, out.Request.ID, dave, ""); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("review by a non-approver: %v", err)
	}
	r, err := e.Svc.Review(e.Ctx, out.Request.ID, "U0APP04", "checked the incident timeline")
	if err != nil || r.Review == nil || !r.ReviewDueAt.IsZero() {
		t.Fatalf("review: %+v %v", r, err)
	}
	if _, err := e.Svc.Review(e.Ctx, out.Request.ID, "U0APP05", ""); !errors.Is(err, approvals.ErrAlreadyDecided) {
		t.Fatalf("second review: %v", err)
	}
	e.Clock.Advance(5 * time.Hour)
	if n, _ := e.Svc.RemindReviews(e.Ctx); n != 0 {
		t.Fatal("a reviewed grant was announced again")
	}
	if e.Pub.Count(store.EventReviewPending) != 2 || e.Pub.Count(store.EventReviewed) != 1 {
		t.Fatalf("events: unreviewed %d, reviewed %d", e.Pub.Count(store.EventReviewPending), e.Pub.Count(store.EventReviewed))
	}
	// An ordinary request cannot be "reviewed".
	g := e.Approved(alice, "db", 10*time.Minute)
	if _, err := e.Svc.Review(e.Ctx, g.RequestID, "U0APP04", ""); !errors.Is(err, approvals.ErrNotReviewable) {
		t.Fatalf("review of an ordinary request: %v", err)
	}
	e.AuditLen()
}

func testAutoApprove(t *testing.T, e *enginetest.Env) {
	e.OnCall.Set(alice, 1)
	req, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: alice, Role: "auto", Reason: "deploy fix"})
	if err != nil {
		t.Fatal(err)
	}
	if req.State != store.RequestApproved || req.GrantID == "" || req.Approvals[0].By != "system:on-call" {
		t.Fatalf("on-call request not auto-approved: %+v", req)
	}
	if e.Grant(req.GrantID).State != store.GrantActive {
		t.Fatal("auto-approved grant not active")
	}
	// Not on call: the ordinary path (two human approvals).
	off, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: erin, Role: "auto", Reason: "deploy fix"})
	if err != nil || off.State != store.RequestPending {
		t.Fatalf("off-call request: %+v %v", off, err)
	}
	// auto_approve does not make break-glass possible on a role that disallows it.
	if _, err := e.Svc.BreakGlass(e.Ctx, approvals.NewRequest{Requester: alice, Role: "auto", Reason: "x"}); !errors.Is(err, approvals.ErrBreakGlassNotAllowed) {
		t.Fatalf("break-glass on a role with allowed: false: %v", err)
	}
}
