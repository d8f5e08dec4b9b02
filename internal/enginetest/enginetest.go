// Package enginetest holds the engine scenarios: approvals, grants and the sweeper driven against every
// store back end (run from the approvals and grants packages' tests), including the concurrency properties
// every back end must give the engine (50 concurrent approvals make one grant; concurrent sweepers revoke
// each grant once).
package enginetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

const (
	alice = "U0ALICE"
	erin  = "U0ERIN"
	bob   = "U0BOB"
	dave  = "U0DAVE"
)

// approverGroup has 50 members: U0APP00 … U0APP49.
func approverIDs() []string {
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = fmt.Sprintf("U0APP%02d", i)
	}
	return ids
}

func testPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	src := strings.NewReplacer("{APPROVERS}", strings.Join(approverIDs(), ", "), "{ALICE}", alice, "{ERIN}", erin, "{BOB}", bob).Replace(`version: 1
defaults:
  approval_channel: C0APPROVALS
  pending_ttl: 1m
providers:
  fake:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "http://127.0.0.1:1/unused", secret_env: UNUSED_SECRET}
  fakemail:
    type: webhook
    principal_from: slack_email
    webhook: {url: "http://127.0.0.1:1/unused", secret_env: UNUSED_SECRET}
groups:
  S0APPROVERS: [{APPROVERS}]
oncall_sources:
  pd:
    type: static
    rota: [{user: "{ALICE}", schedule: PSCHED, level: 1, weekly: ["Mon-Sun 00:00-24:00 UTC"]}]
roles:
  db:
    provider: fake
    target: {db: main}
    requesters: {users: [{ALICE}, {ERIN}]}
    approvers: {groups: [S0APPROVERS], users: [{BOB}]}
    approvals: 1
    default_duration: 10m
    max_duration: 1h
  mail:
    provider: fakemail
    target: {db: mail}
    requesters: {users: [{ALICE}, {ERIN}]}
    approvers: {groups: [S0APPROVERS]}
  bg:
    provider: fake
    target: {db: bg}
    requesters: {users: [{ALICE}, {ERIN}]}
    approvers: {groups: [S0APPROVERS]}
    max_duration: 4h
    breakglass: {source: pd, schedules: [PSCHED], max_level: 1, max_duration: 1h, daily_limit: 2, review_every: 1h}
  bgopen:
    provider: fake
    target: {db: bgopen}
    requesters: {users: [{ALICE}]}
    approvers: {groups: [S0APPROVERS]}
    breakglass: {source: pd, schedules: [PSCHED], on_source_error: allow}
  auto:
    provider: fake
    target: {db: auto}
    requesters: {users: [{ALICE}, {ERIN}]}
    approvers: {groups: [S0APPROVERS]}
    approvals: 2
    breakglass: {allowed: false, auto_approve: true, source: pd, schedules: [PSCHED]}
  quorum:
    provider: fake
    target: {db: quorum}
    requesters: {users: [{ALICE}]}
    approvers: {groups: [S0APPROVERS]}
    approvals: 3
    max_duration: 1h
`)
	p, err := policy.Parse("enginetest.yaml", []byte(src))
	if err != nil {
		t.Fatalf("engine test policy: %v", err)
	}
	return p
}

// Clock is a settable clock shared by the engine under test.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type recorder struct {
	mu     sync.Mutex
	events []store.AuditEvent
	// then, when set, runs after each published event, as a subscriber's own work would (the Slack notifier
	// recording where its approval message is).
	then func(store.AuditEvent)
}

func (r *recorder) Publish(_ context.Context, evs ...store.AuditEvent) {
	r.mu.Lock()
	r.events = append(r.events, evs...)
	then := r.then
	r.mu.Unlock()
	if then != nil {
		for _, ev := range evs {
			then(ev)
		}
	}
}

func (r *recorder) count(typ string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

type env struct {
	t    *testing.T
	ctx  context.Context
	st   store.Store
	fake *providerfake.Fake
	// mailFake backs the provider that maps users by Slack email.
	mailFake *providerfake.Fake
	onCall   *fakeOnCall
	clock    *Clock
	pol      *policy.Policy
	pub      *recorder
	svc      *approvals.Service
	mgr      *grants.Manager
	sw       *grants.Sweeper
}

func newEnv(t *testing.T, st store.Store) *env { return newEnvPolicy(t, st, testPolicy(t)) }

func newEnvPolicy(t *testing.T, st store.Store, pol *policy.Policy) *env {
	e := &env{t: t, st: st, fake: providerfake.New(), mailFake: providerfake.New(), onCall: &fakeOnCall{on: map[string]int{}}, clock: &Clock{now: time.Now().Truncate(time.Millisecond)}, pol: pol, pub: &recorder{}}
	e.ctx = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).WithContext(context.Background())
	e.mgr, e.sw = e.newManager("replica-a")
	svc, err := approvals.New(approvals.Options{Store: st, Policy: e.pol, Activator: e.mgr, Publisher: e.pub, Now: e.clock.Now,
		Emails: emails{alice: "alice@example.com"}, OnCall: e.onCall})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e
}

func (e *env) newManager(holder string) (*grants.Manager, *grants.Sweeper) {
	return e.newManagerWith(holder, nil)
}

// newManagerWith is newManager with tweak applied to the manager's options.
func (e *env) newManagerWith(holder string, tweak func(*grants.Options)) (*grants.Manager, *grants.Sweeper) {
	opts := grants.Options{
		Store: e.st, Providers: map[string]grants.Provider{"fake": e.fake, "fakemail": e.mailFake}, Publisher: e.pub, Now: e.clock.Now,
		Holder: holder, AttemptTimeout: 5 * time.Second, MaxAttempts: 3, BackoffBase: time.Second, BackoffMax: 4 * time.Second,
	}
	if tweak != nil {
		tweak(&opts)
	}
	mgr, err := grants.NewManager(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	sw, err := grants.NewSweeper(grants.SweeperOptions{Manager: mgr, Store: opts.Store, Batch: 64, Concurrency: 16})
	if err != nil {
		e.t.Fatal(err)
	}
	return mgr, sw
}

func (e *env) request(id string) store.Request {
	e.t.Helper()
	r, err := e.st.GetRequest(e.ctx, id)
	if err != nil {
		e.t.Fatalf("get request %s: %v", id, err)
	}
	return r
}

func (e *env) grant(id string) store.Grant {
	e.t.Helper()
	g, err := e.st.GetGrant(e.ctx, id)
	if err != nil {
		e.t.Fatalf("get grant %s: %v", id, err)
	}
	return g
}

func (e *env) sweep() {
	e.t.Helper()
	if _, err := e.sw.Sweep(e.ctx); err != nil {
		e.t.Fatalf("sweep: %v", err)
	}
}

// approved creates a request for role by user and approves it, returning the grant.
func (e *env) approved(user, role string, d time.Duration) store.Grant {
	e.t.Helper()
	req, err := e.svc.Create(e.ctx, approvals.NewRequest{Requester: user, Role: role, Duration: d, Reason: "test"})
	if err != nil {
		e.t.Fatalf("create: %v", err)
	}
	out, err := e.svc.Approve(e.ctx, req.ID, "U0APP00", "")
	if err != nil || out.GrantID == "" {
		e.t.Fatalf("approve: %+v %v", out, err)
	}
	return e.grant(out.GrantID)
}

func (e *env) auditLen() uint64 {
	e.t.Helper()
	rep, err := audit.Verify(e.ctx, e.st, "")
	if err != nil {
		e.t.Fatalf("audit verify: %v", err)
	}
	return rep.Entries
}

type scenario struct {
	name string
	fn   func(*testing.T, *env)
}

// approvalScenarios are mainly about the approvals service; they run from the approvals package's tests.
var approvalScenarios = []scenario{
	{"ConcurrentApprovalsMakeOneGrant", testConcurrentApprovals},
	{"ConcurrentClicksBySameApprover", testConcurrentSameApprover},
	{"PendingRequestsExpire", testPendingExpiry},
	{"BadInputChangesNothing", testBadInput},
	{"DenyAndCancel", testDenyCancel},
	{"PrincipalFromSlackEmail", testSlackEmail},
	{"BreakGlass", testBreakGlass},
	{"BreakGlassReview", testBreakGlassReview},
	{"BreakGlassDailyLimitUnderConcurrency", testBreakGlassLimitConcurrent},
	{"PolicyChangeAppliesToPendingRequests", testPolicyChangeAtApproval},
	{"OnCallAutoApproval", testAutoApprove},
}

// grantScenarios are mainly about grants, leases and the sweeper; they run from the grants package's tests.
var grantScenarios = []scenario{
	{"ConcurrentSweepersRevokeOnce", testConcurrentSweepers},
	{"OperatorRevoke", testOperatorRevoke},
	{"OverlappingLeases", testOverlappingLeases},
	{"RevokeRetriesThenEscalates", testRevokeEscalation},
	{"PermanentGrantFailureIsUndone", testPermanentGrantFailure},
	{"WriteAheadGrantIsResumed", testWriteAheadResume},
	{"ExtendAndRelease", testExtendRelease},
	{"DriftReconciliation", testDriftReconciliation},
	{"SweepDuringReleaseRevokesOnce", testSweepDuringRelease},
	{"LockLostMidGrantLeavesNothing", testLockLostMidGrant},
	{"LateGrantAfterRevokeIsRevokedAgain", testLateGrantAfterRevoke},
	{"ReminderSurvivesRestart", testReminderSurvivesRestart},
	{"RevokeIsVerified", testRevokeVerified},
	{"GenerationsStayOrderedWithTheLeases", testGenerationsStored},
	{"RevokeVerifiedAfterPropagationDelay", testRevokePropagationDelay},
}

// RunApprovals runs the approval scenarios (with the pipeline ones) on every store back end, each on a
// fresh, empty store.
func RunApprovals(t *testing.T) { run(t, append(slices.Clone(approvalScenarios), pipelineTests...)) }

// RunGrants runs the grant and sweeper scenarios on every store back end.
func RunGrants(t *testing.T) { run(t, grantScenarios) }

func run(t *testing.T, tests []scenario) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t, b.Open(t))) })
			}
		})
	}
}

func testConcurrentApprovals(t *testing.T, e *env) {
	req, err := e.svc.Create(e.ctx, approvals.NewRequest{Requester: alice, Role: "quorum", Duration: 30 * time.Minute, Reason: "INC-1"})
	if err != nil {
		t.Fatal(err)
	}
	var grantsMade atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 50)
	for _, approver := range approverIDs() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out, err := e.svc.Approve(e.ctx, req.ID, approver, "")
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
	got, _ := e.st.GetRequest(e.ctx, req.ID)
	if got.State != store.RequestApproved || len(got.Approvals) != 3 {
		t.Fatalf("request state %s with %d approvals, want approved with 3", got.State, len(got.Approvals))
	}
	gs, err := e.st.ListGrants(e.ctx, store.GrantQuery{UserID: alice})
	if err != nil || len(gs) != 1 {
		t.Fatalf("grants of requester = %d (%v), want 1", len(gs), err)
	}
	if n := len(e.fake.Calls("grant")); n != 1 {
		t.Fatalf("provider grant calls = %d, want 1", n)
	}
	if e.grant(got.GrantID).State != store.GrantActive {
		t.Fatalf("grant not active")
	}
}

func testConcurrentSameApprover(t *testing.T, e *env) {
	req, err := e.svc.Create(e.ctx, approvals.NewRequest{Requester: alice, Role: "quorum", Reason: "INC-2"})
	if err != nil {
		t.Fatal(err)
	}
	var ok, dup atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.Approve(e.ctx, req.ID, "U0APP07", "")
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
	got, _ := e.st.GetRequest(e.ctx, req.ID)
	if len(got.Approvals) != 1 || got.State != store.RequestPending {
		t.Fatalf("request has %d approvals in state %s", len(got.Approvals), got.State)
	}
}

func testConcurrentSweepers(t *testing.T, e *env) {
	const n = 300
	now := e.clock.Now()
	var puts []store.GrantPut
	for i := range n {
		g := grants.NewLease(grants.LeaseSpec{RequestID: fmt.Sprintf("r-%d", i), UserID: fmt.Sprintf("U0USER%03d", i), Role: "db",
			Provider: "fake", Principal: fmt.Sprintf("U0USER%03d", i), Target: map[string]string{"db": "main"}, Duration: time.Minute}, now.Add(-2*time.Minute), time.Time{})
		g.State, g.ActivatedAt, g.ExpiresAt = store.GrantActive, now.Add(-2*time.Minute), now.Add(-time.Minute+time.Duration(i)*time.Millisecond)
		g.DueAt = g.ExpiresAt
		if _, err := e.fake.Grant(e.ctx, grants.Assignment{GrantID: g.ID, Principal: g.Principal, Target: g.Target}); err != nil {
			t.Fatal(err)
		}
		puts = append(puts, store.GrantPut{Grant: &g})
		if len(puts) == 100 {
			if err := e.st.Commit(e.ctx, store.Batch{Grants: puts}); err != nil {
				t.Fatal(err)
			}
			puts = nil
		}
	}
	e.fake.SetLatency(time.Millisecond)
	_, sw2 := e.newManager("replica-b")
	var wg sync.WaitGroup
	for _, sw := range []*grants.Sweeper{e.sw, sw2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := sw.Sweep(e.ctx); err != nil {
				t.Errorf("sweep: %v", err)
			}
		}()
	}
	wg.Wait()
	revokes := e.fake.Calls("revoke")
	if len(revokes) != n {
		t.Errorf("provider revoke calls = %d, want %d", len(revokes), n)
	}
	for _, c := range revokes {
		if !c.WasPresent {
			t.Errorf("grant %s was revoked twice (second revoke found nothing to remove)", c.Assignment.GrantID)
		}
	}
	if e.fake.PresentCount() != 0 {
		t.Errorf("%d bindings still present", e.fake.PresentCount())
	}
	live, err := e.st.ListGrants(e.ctx, store.GrantQuery{States: store.LiveGrantStates})
	if err != nil || len(live) != 0 {
		t.Errorf("live grants after sweep = %d (%v)", len(live), err)
	}
	e.auditLen()
}

func testOverlappingLeases(t *testing.T, e *env) {
	first := e.approved(alice, "db", 10*time.Minute)
	e.clock.Advance(time.Minute)
	second := e.approved(alice, "db", 30*time.Minute)
	if first.BindingKey != second.BindingKey {
		t.Fatal("same role and person should share a binding")
	}
	a := grants.Assignment{Principal: alice, Target: map[string]string{"db": "main"}}
	// Releasing the first lease must not remove access the second still covers.
	rel, err := e.mgr.Release(e.ctx, first.ID, alice)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	if rel.State != store.GrantRevoked || rel.CoveredBy != second.ID {
		t.Fatalf("released lease = %s covered by %q", rel.State, rel.CoveredBy)
	}
	if len(e.fake.Calls("revoke")) != 0 || !e.fake.Present(a) {
		t.Fatal("release of an overlapped lease removed access at the provider")
	}
	// A third lease that expires before the second: the provider is told the later expiry of the two, and
	// the third's expiry must not remove access either.
	third := e.approved(alice, "db", 5*time.Minute)
	if last := lastCall(e.fake, "grant"); !last.Assignment.ExpiresAt.Equal(second.ExpiresAt) || last.Assignment.BindingKey != second.BindingKey {
		t.Fatalf("grant of a shorter overlapping lease told the provider expiry %v (binding %q), want %v", last.Assignment.ExpiresAt, last.Assignment.BindingKey, second.ExpiresAt)
	}
	e.clock.Advance(6 * time.Minute)
	e.sweep()
	if g := e.grant(third.ID); g.State != store.GrantRevoked || g.CoveredBy != second.ID {
		t.Fatalf("expired overlapped lease = %s covered by %q", g.State, g.CoveredBy)
	}
	if len(e.fake.Calls("revoke")) != 0 || !e.fake.Present(a) {
		t.Fatal("expiry of an overlapped lease removed access at the provider")
	}
	// When the last lease expires, access goes.
	e.clock.Advance(30 * time.Minute)
	e.sweep()
	if g := e.grant(second.ID); g.State != store.GrantRevoked || g.CoveredBy != "" {
		t.Fatalf("last lease = %s covered by %q", g.State, g.CoveredBy)
	}
	if len(e.fake.Calls("revoke")) != 1 || e.fake.Present(a) {
		t.Fatal("the last lease's expiry did not revoke exactly once")
	}
	// Another user's grant on the same role is a different binding.
	long := e.approved(erin, "db", 50*time.Minute)
	if long.BindingKey == second.BindingKey {
		t.Fatal("different principals share a binding")
	}
	short := e.approved(erin, "db", 10*time.Minute)
	// Releasing the longer lease leaves the shorter one: a provider that expires access itself is told the
	// earlier end, and nothing is revoked.
	revokes := len(e.fake.Calls("revoke"))
	if _, err := e.mgr.Release(e.ctx, long.ID, erin); err != nil {
		t.Fatal(err)
	}
	if last := lastCall(e.fake, "grant"); !last.Assignment.ExpiresAt.Equal(short.ExpiresAt) {
		t.Fatalf("after releasing the longer lease the provider expiry is %v, want %v", last.Assignment.ExpiresAt, short.ExpiresAt)
	}
	if len(e.fake.Calls("revoke")) != revokes {
		t.Fatal("releasing a covered lease revoked access")
	}
}

func lastCall(f *providerfake.Fake, op string) providerfake.Call {
	calls := f.Calls(op)
	if len(calls) == 0 {
		return providerfake.Call{}
	}
	return calls[len(calls)-1]
}

func testRevokeEscalation(t *testing.T, e *env) {
	g := e.approved(alice, "db", 10*time.Minute)
	e.fake.FailNext("revoke", providerfake.ErrUnavailable, 4)
	e.clock.Advance(10 * time.Minute)
	for i := 1; i <= 3; i++ {
		e.sweep()
		got := e.grant(g.ID)
		if got.Attempts != i {
			t.Fatalf("after sweep %d: attempts = %d", i, got.Attempts)
		}
		if i < 3 {
			if got.State != store.GrantRevoking || !got.DueAt.After(e.clock.Now()) {
				t.Fatalf("after failure %d: state %s due %v", i, got.State, got.DueAt)
			}
			e.clock.Advance(got.DueAt.Sub(e.clock.Now()))
		}
	}
	got := e.grant(g.ID)
	if got.State != store.GrantRevokeFailed || !got.DueAt.IsZero() || got.LastError == "" {
		t.Fatalf("after max attempts: state %s due %v err %q", got.State, got.DueAt, got.LastError)
	}
	if e.pub.count(store.EventRevokeFailed) != 1 || e.pub.count(store.EventRevokeRetry) != 2 {
		t.Fatalf("events: revoke-failed %d, revoke-retry %d", e.pub.count(store.EventRevokeFailed), e.pub.count(store.EventRevokeRetry))
	}
	// The ordinary sweep no longer touches it; the slow job keeps trying.
	e.sweep()
	if err := e.sw.RetryRevokeFailed(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.grant(g.ID); got.State != store.GrantRevokeFailed {
		t.Fatalf("after a failed slow retry: %s", got.State)
	}
	if err := e.sw.RetryRevokeFailed(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.grant(g.ID); got.State != store.GrantRevoked {
		t.Fatalf("after a successful slow retry: %s", got.State)
	}
	if e.fake.PresentCount() != 0 {
		t.Fatal("access still present")
	}
}

func testPermanentGrantFailure(t *testing.T, e *env) {
	e.fake.FailNext("grant", grants.Permanent(errors.New("access denied")), 1)
	g := e.approved(alice, "db", 10*time.Minute)
	// The undo's successful revoke must not erase why the grant failed.
	if g.State != store.GrantFailed || g.EndReason != "activation_failed" || !strings.Contains(g.LastError, "access denied") {
		t.Fatalf("grant after permanent failure: state %s reason %s err %q", g.State, g.EndReason, g.LastError)
	}
	if len(e.fake.Calls("revoke")) != 1 {
		t.Fatal("a failed activation must be undone at the provider")
	}
	if e.pub.count(store.EventGrantFailed) != 1 {
		t.Fatal("no grant-failed event")
	}
}

func testWriteAheadResume(t *testing.T, e *env) {
	// The process died right after storing the grant, before calling the provider.
	now := e.clock.Now()
	g := grants.NewLease(grants.LeaseSpec{RequestID: "r-crash", UserID: alice, Role: "db", Provider: "fake", Principal: alice,
		Target: map[string]string{"db": "main"}, Duration: 10 * time.Minute, MaxDuration: time.Hour}, now, now.Add(30*time.Second))
	if err := e.st.Commit(e.ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		t.Fatal(err)
	}
	e.sweep()
	if e.grant(g.ID).State != store.GrantActivating {
		t.Fatal("a fresh activating grant must be left to its activator until its resume time")
	}
	e.clock.Advance(31 * time.Second)
	e.sweep()
	got := e.grant(g.ID)
	if got.State != store.GrantActive || !got.ExpiresAt.Equal(got.ActivatedAt.Add(10*time.Minute)) {
		t.Fatalf("resumed grant: %s expires %v", got.State, got.ExpiresAt)
	}
	if !e.fake.Present(grants.Assignment{Principal: alice, Target: g.Target}) {
		t.Fatal("resumed grant not applied")
	}
}

func testExtendRelease(t *testing.T, e *env) {
	g := e.approved(alice, "db", 20*time.Minute)
	if _, err := e.mgr.Extend(e.ctx, g.ID, erin, 10*time.Minute); !errors.Is(err, grants.ErrNotHolder) {
		t.Fatalf("extend by another user: %v", err)
	}
	if _, err := e.mgr.Extend(e.ctx, g.ID, alice, 50*time.Minute); !errors.Is(err, grants.ErrBadExtension) {
		t.Fatalf("extend beyond the maximum: %v", err)
	}
	before := len(e.fake.Calls("grant"))
	ext, err := e.mgr.Extend(e.ctx, g.ID, alice, 40*time.Minute)
	if err != nil {
		t.Fatalf("extend: %v", err)
	}
	// Due first for the reminder, 10 minutes before the new expiry (see ReminderSurvivesRestart).
	if !ext.ExpiresAt.Equal(g.ExpiresAt.Add(40*time.Minute)) || !ext.DueAt.Equal(ext.ExpiresAt.Add(-10*time.Minute)) {
		t.Fatalf("extended expiry %v due %v", ext.ExpiresAt, ext.DueAt)
	}
	calls := e.fake.Calls("grant")
	if len(calls) != before+1 || !calls[len(calls)-1].Assignment.ExpiresAt.Equal(ext.ExpiresAt) {
		t.Fatal("the provider was not told the new expiry")
	}
	if _, err := e.mgr.Release(e.ctx, g.ID, erin); !errors.Is(err, grants.ErrNotHolder) {
		t.Fatalf("release by another user: %v", err)
	}
	rel, err := e.mgr.Release(e.ctx, g.ID, alice)
	if err != nil || rel.State != store.GrantRevoked || rel.EndReason != "released" {
		t.Fatalf("release: %+v %v", rel, err)
	}
	if _, err := e.mgr.Release(e.ctx, g.ID, alice); !errors.Is(err, grants.ErrNotActive) {
		t.Fatalf("second release: %v", err)
	}
	if _, err := e.mgr.Extend(e.ctx, g.ID, alice, time.Minute); !errors.Is(err, grants.ErrNotActive) {
		t.Fatalf("extend after release: %v", err)
	}
	if e.fake.PresentCount() != 0 {
		t.Fatal("released access still present")
	}
}

func testPendingExpiry(t *testing.T, e *env) {
	req, err := e.svc.Create(e.ctx, approvals.NewRequest{Requester: alice, Role: "db", Reason: "later"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.ExpirePending(e.ctx); err != nil || n != 0 {
		t.Fatalf("early expire: %d %v", n, err)
	}
	e.clock.Advance(61 * time.Second)
	if n, err := e.svc.ExpirePending(e.ctx); err != nil || n != 1 {
		t.Fatalf("expire: %d %v", n, err)
	}
	if _, err := e.svc.Approve(e.ctx, req.ID, "U0APP01", ""); !errors.Is(err, approvals.ErrAlreadyDecided) {
		t.Fatalf("approve after expiry: %v", err)
	}
	got, _ := e.st.GetRequest(e.ctx, req.ID)
	if got.State != store.RequestExpired {
		t.Fatalf("state %s", got.State)
	}
}

func testBadInput(t *testing.T, e *env) {
	before := e.auditLen()
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
		if _, err := e.svc.Create(e.ctx, c.in); !errors.Is(err, c.kind) {
			t.Errorf("create %+v: got %v, want %v", c.in, err, c.kind)
		} else if msg := err.Error(); msg == "" || strings.Contains(msg, "approvals:") {
			t.Errorf("refusal message %q is not written for a person", msg)
		}
	}
	if _, err := e.svc.Approve(e.ctx, "r-missing", bob, ""); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("approve unknown: %v", err)
	}
	if after := e.auditLen(); after != before {
		t.Fatalf("refused input wrote %d audit entries", after-before)
	}
}

func testDenyCancel(t *testing.T, e *env) {
	req, err := e.svc.Create(e.ctx, approvals.NewRequest{Requester: alice, Role: "db", Reason: "INC-3"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Deny(e.ctx, req.ID, bob, ""); !errors.Is(err, approvals.ErrBadReason) {
		t.Fatalf("deny without reason: %v", err)
	}
	if _, err := e.svc.Deny(e.ctx, req.ID, dave, "no"); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("deny by non-approver: %v", err)
	}
	if _, err := e.svc.Cancel(e.ctx, req.ID, bob); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("cancel by non-requester: %v", err)
	}
	denied, err := e.svc.Deny(e.ctx, req.ID, bob, "use the read-only role")
	if err != nil || denied.State != store.RequestDenied || denied.Denial.Note != "use the read-only role" {
		t.Fatalf("deny: %+v %v", denied, err)
	}
	if _, err := e.svc.Approve(e.ctx, req.ID, "U0APP03", ""); !errors.Is(err, approvals.ErrAlreadyDecided) || !strings.Contains(err.Error(), "denied by") {
		t.Fatalf("approve after deny: %v", err)
	}
	req2, _ := e.svc.Create(e.ctx, approvals.NewRequest{Requester: alice, Role: "db", Reason: "INC-4"})
	if c, err := e.svc.Cancel(e.ctx, req2.ID, alice); err != nil || c.State != store.RequestCancelled {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	if len(e.fake.Calls("")) != 0 {
		t.Fatal("denied or cancelled requests reached the provider")
	}
}

func testDriftReconciliation(t *testing.T, e *env) {
	live := e.approved(alice, "db", 30*time.Minute)
	// Access granted behind jitbot's back, labelled as if jitbot had made it.
	rogue := grants.Assignment{BindingKey: grants.BindingKey("fake", "U0MALLORY", map[string]string{"db": "main"}), GrantID: "g-forged",
		Principal: "U0MALLORY", Target: map[string]string{"db": "main"}}
	if _, err := e.fake.Grant(e.ctx, rogue); err != nil {
		t.Fatal(err)
	}
	// A grant whose revocation was lost: the store says revoked, the provider still has it.
	lost := e.approved(erin, "db", 30*time.Minute)
	prev := lost.Version
	lost.State, lost.RevokedAt, lost.DueAt = store.GrantRevoked, e.clock.Now(), time.Time{}
	if err := e.st.Commit(e.ctx, store.Batch{Grants: []store.GrantPut{{Grant: &lost, PrevVersion: prev}}}); err != nil {
		t.Fatal(err)
	}
	before := e.pub.count(store.EventDriftRevoked)
	rep, err := e.mgr.Reconcile(e.ctx)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if rep.Checked != 3 || rep.Revoked != 2 || rep.Failed != 0 {
		t.Fatalf("report %+v, want 3 checked, 2 revoked", rep)
	}
	if e.fake.Present(rogue) || e.fake.Present(grants.Assignment{Principal: erin, Target: lost.Target}) {
		t.Fatal("drift left in place")
	}
	if !e.fake.Present(grants.Assignment{Principal: alice, Target: live.Target}) {
		t.Fatal("reconciliation removed a live grant")
	}
	if got := e.pub.count(store.EventDriftRevoked) - before; got != 2 {
		t.Fatalf("drift-revoked events = %d, want 2", got)
	}
	if got := e.pub.count(store.EventRevokeVerified); got != 2 {
		t.Fatalf("revoke-verified events = %d, want one per drift removal", got)
	}
	recs, err := e.st.ReadAudit(e.ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, r := range recs {
		if r.Event.Type == store.EventDriftRevoked {
			reasons[r.Event.Details["principal"]] = r.Event.Details["reason"]
		}
	}
	if !strings.Contains(reasons["U0MALLORY"], "no grant was ever recorded") || !strings.Contains(reasons[erin], "is revoked") {
		t.Fatalf("drift reasons = %v", reasons)
	}
	// A second run finds nothing more to do.
	if rep, err := e.mgr.Reconcile(e.ctx); err != nil || rep.Revoked != 0 {
		t.Fatalf("second run: %+v %v", rep, err)
	}
}

// emails stands in for Slack's users.info: profile emails by user id.
type emails map[string]string

func (m emails) Email(_ context.Context, user string) (string, error) {
	if e, ok := m[user]; ok {
		return e, nil
	}
	return "", errors.New("users.info: no email on this profile")
}

func testSlackEmail(t *testing.T, e *env) {
	g := e.approved(alice, "mail", 10*time.Minute)
	if g.Principal != "alice@example.com" {
		t.Fatalf("principal = %q, want the profile email", g.Principal)
	}
	if last := lastCall(e.mailFake, "grant"); last.Assignment.Principal != "alice@example.com" {
		t.Fatalf("provider got principal %q", last.Assignment.Principal)
	}
	// No email on the profile: refused, fail closed, nothing stored.
	before := e.auditLen()
	if _, err := e.svc.Create(e.ctx, approvals.NewRequest{Requester: erin, Role: "mail", Reason: "x"}); !errors.Is(err, approvals.ErrNoIdentity) {
		t.Fatalf("create without a profile email: %v", err)
	}
	if e.auditLen() != before {
		t.Fatal("a refused request was stored")
	}
}

// fakeOnCall answers on-call checks from a map user -> level; down makes the source unreachable.
type fakeOnCall struct {
	mu   sync.Mutex
	on   map[string]int
	down bool
}

func (f *fakeOnCall) set(user string, level int) {
	f.mu.Lock()
	f.on[user] = level
	f.mu.Unlock()
}

func (f *fakeOnCall) Check(_ context.Context, user string, rule policy.BreakGlass) (approvals.OnCallAnswer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return approvals.OnCallAnswer{}, errors.New("on-call source: connection refused")
	}
	lvl, ok := f.on[user]
	if !ok {
		return approvals.OnCallAnswer{Reason: "U0BOB is on call for PSCHED now"}, nil
	}
	if rule.MaxLevel > 0 && lvl > rule.MaxLevel {
		return approvals.OnCallAnswer{Level: lvl, Reason: fmt.Sprintf("you are level %d, only level %d qualifies", lvl, rule.MaxLevel)}, nil
	}
	return approvals.OnCallAnswer{OnCall: true, Level: lvl, Reason: fmt.Sprintf("level %d on call for PSCHED", lvl)}, nil
}

func testBreakGlass(t *testing.T, e *env) {
	bgReq := func(user, role string, d time.Duration) (approvals.Outcome, error) {
		return e.svc.BreakGlass(e.ctx, approvals.NewRequest{Requester: user, Role: role, Duration: d, Reason: "INC-9 outage"})
	}
	before := e.auditLen()
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
	e.onCall.set(erin, 2) // secondary only: the rule wants primary
	if _, err := bgReq(erin, "bg", 0); !errors.Is(err, approvals.ErrNotOnCall) || !strings.Contains(err.Error(), "only level 1") {
		t.Fatalf("escalation-level filter: %v", err)
	}
	e.onCall.mu.Lock()
	e.onCall.down = true
	e.onCall.mu.Unlock()
	if _, err := bgReq(alice, "bg", 0); !errors.Is(err, approvals.ErrOnCallUnavailable) {
		t.Fatalf("source down, deny by default: %v", err)
	}
	if e.auditLen() != before || len(e.fake.Calls("grant")) != 0 {
		t.Fatal("a refused break-glass changed something")
	}
	out, err := bgReq(alice, "bgopen", 0) // on_source_error: allow
	if err != nil || out.GrantID == "" {
		t.Fatalf("source down, allowed by policy: %+v %v", out, err)
	}
	e.onCall.mu.Lock()
	e.onCall.down = false
	e.onCall.mu.Unlock()

	e.onCall.set(alice, 1)
	out, err = bgReq(alice, "bg", 0)
	if err != nil {
		t.Fatalf("on-call break-glass: %v", err)
	}
	g := e.grant(out.GrantID)
	if g.State != store.GrantActive || !g.BreakGlass || g.Duration != time.Hour {
		t.Fatalf("break-glass grant %+v", g)
	}
	if out.Request.State != store.RequestApproved || len(out.Request.Approvals) != 0 || !out.Request.BreakGlass || out.Request.ReviewDueAt.IsZero() {
		t.Fatalf("break-glass request %+v", out.Request)
	}
	if e.pub.count(store.EventBreakGlass) != 2 {
		t.Fatalf("break-glass events = %d, want 2 (one per activation)", e.pub.count(store.EventBreakGlass))
	}
	// Daily limit 2 for bg: one more is fine, the next is refused.
	if _, err := bgReq(alice, "bg", 30*time.Minute); err != nil {
		t.Fatalf("second activation: %v", err)
	}
	if _, err := bgReq(alice, "bg", 30*time.Minute); !errors.Is(err, approvals.ErrDailyLimit) {
		t.Fatalf("third activation within 24h: %v", err)
	}
	e.clock.Advance(25 * time.Hour)
	if _, err := bgReq(alice, "bg", 30*time.Minute); err != nil {
		t.Fatalf("activation after 24h: %v", err)
	}
}

// testBreakGlassLimitConcurrent: ten break-glass requests at once by one on-call person against
// daily_limit: 2 grant exactly two; the rest are refused with the limit named, and nothing of theirs is stored.
func testBreakGlassLimitConcurrent(t *testing.T, e *env) {
	e.onCall.set(alice, 1)
	const n = 10
	outs := make([]approvals.Outcome, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			outs[i], errs[i] = e.svc.BreakGlass(e.ctx, approvals.NewRequest{Requester: alice, Role: "bg", Duration: 30 * time.Minute, Reason: fmt.Sprintf("INC-%d outage", i)})
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
	reqs, err := e.st.ListRequests(e.ctx, store.RequestQuery{Requester: alice})
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 2 {
		t.Fatalf("%d break-glass requests stored, want 2", len(reqs))
	}
	if got := e.pub.count(store.EventBreakGlass); got != 2 {
		t.Fatalf("%d break-glass audit events, want 2", got)
	}
	if got := len(e.fake.Calls("grant")); got != 2 {
		t.Fatalf("%d provider grant calls, want 2", got)
	}
	// The window still rolls: a day later the person may break glass again.
	e.clock.Advance(24*time.Hour + time.Second)
	if _, err := e.svc.BreakGlass(e.ctx, approvals.NewRequest{Requester: alice, Role: "bg", Duration: 30 * time.Minute, Reason: "INC-11"}); err != nil {
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
func testPolicyChangeAtApproval(t *testing.T, e *env) {
	create := func(user string, d time.Duration) store.Request {
		t.Helper()
		r, err := e.svc.Create(e.ctx, approvals.NewRequest{Requester: user, Role: "db", Duration: d, Reason: "INC-42"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	byAlice, byErin, quorum, long := create(alice, 0), create(erin, 0), create(alice, 0), create(alice, 50*time.Minute)
	orig := e.svc.Policy()

	e.svc.SetPolicy(withRole(orig, "db", func(r *policy.Role) {
		r.Approvers.Users = slices.DeleteFunc(r.Approvers.Users, func(u string) bool { return u == bob })
	}))
	if _, err := e.svc.Approve(e.ctx, byAlice.ID, bob, ""); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("approval by an approver removed from the policy: %v, want ErrNotEligible", err)
	}
	if _, err := e.svc.MayDecide(e.ctx, byAlice.ID, bob); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("MayDecide by a removed approver: %v", err)
	}
	if _, err := e.svc.Deny(e.ctx, byAlice.ID, bob, "no"); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("deny by a removed approver: %v", err)
	}

	e.svc.SetPolicy(withRole(orig, "db", func(r *policy.Role) { r.Requesters.Users = []string{alice} }))
	_, err := e.svc.Approve(e.ctx, byErin.ID, "U0APP01", "")
	if !errors.Is(err, approvals.ErrNotEligible) || !strings.Contains(err.Error(), "may no longer request db") {
		t.Fatalf("approval of a request whose requester was removed: %v", err)
	}
	if got, _ := e.st.GetRequest(e.ctx, byErin.ID); got.State != store.RequestPending || len(got.Approvals) != 0 || got.GrantID != "" {
		t.Fatalf("a refused approval changed the request: %+v", got)
	}

	e.svc.SetPolicy(withRole(orig, "db", func(r *policy.Role) { r.Approvals = 2 }))
	if out, err := e.svc.Approve(e.ctx, quorum.ID, "U0APP01", ""); err != nil || out.GrantID != "" {
		t.Fatalf("first approval after the count was raised to 2: %+v %v (want no grant yet)", out, err)
	}
	if out, err := e.svc.Approve(e.ctx, quorum.ID, "U0APP02", ""); err != nil || out.GrantID == "" {
		t.Fatalf("second approval: %+v %v", out, err)
	}

	e.svc.SetPolicy(withRole(orig, "db", func(r *policy.Role) { r.MaxDuration = 30 * time.Minute; r.DefaultDuration = 10 * time.Minute }))
	if _, err := e.svc.Approve(e.ctx, long.ID, "U0APP01", ""); !errors.Is(err, approvals.ErrBadDuration) {
		t.Fatalf("approval of a request longer than the new maximum: %v", err)
	}

	// Back to the original policy, the approver who was removed may approve again.
	e.svc.SetPolicy(orig)
	if out, err := e.svc.Approve(e.ctx, byAlice.ID, bob, ""); err != nil || out.GrantID == "" {
		t.Fatalf("approval once reinstated: %+v %v", out, err)
	}
	if len(e.fake.Calls("grant")) != 2 {
		t.Fatalf("provider grant calls = %d, want 2", len(e.fake.Calls("grant")))
	}
	// A role read before a reload is not checked against the next policy's groups: the check refuses.
	stale, _ := e.svc.Policy().Role("db")
	e.svc.SetPolicy(withRole(orig, "db", func(*policy.Role) {}))
	if _, err := e.svc.CanApprove(e.ctx, stale, "U0APP01"); !errors.Is(err, approvals.ErrUnavailable) {
		t.Fatalf("membership check with a role of a replaced policy: %v, want ErrUnavailable", err)
	}
}

func testBreakGlassReview(t *testing.T, e *env) {
	e.onCall.set(alice, 1)
	out, err := e.svc.BreakGlass(e.ctx, approvals.NewRequest{Requester: alice, Role: "bg", Reason: "INC-10"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.RemindReviews(e.ctx); err != nil || n != 0 {
		t.Fatalf("reminders before review_every: %d %v", n, err)
	}
	e.clock.Advance(61 * time.Minute)
	if n, err := e.svc.RemindReviews(e.ctx); err != nil || n != 1 {
		t.Fatalf("reminders after review_every: %d %v", n, err)
	}
	if n, _ := e.svc.RemindReviews(e.ctx); n != 0 {
		t.Fatal("a reminder was repeated before the next interval")
	}
	e.clock.Advance(61 * time.Minute)
	if n, _ := e.svc.RemindReviews(e.ctx); n != 1 {
		t.Fatal("the unreviewed grant was not announced again")
	}
	if _, err := e.svc.Review(e.ctx, out.Request.ID, alice, ""); !errors.Is(err, approvals.ErrSelfApproval) {
		t.Fatalf("self-review: %v", err)
	}
	if _, err := e.svc.Review(e.ctx, out.Request.ID, dave, ""); !errors.Is(err, approvals.ErrNotEligible) {
		t.Fatalf("review by a non-approver: %v", err)
	}
	r, err := e.svc.Review(e.ctx, out.Request.ID, "U0APP04", "checked the incident timeline")
	if err != nil || r.Review == nil || !r.ReviewDueAt.IsZero() {
		t.Fatalf("review: %+v %v", r, err)
	}
	if _, err := e.svc.Review(e.ctx, out.Request.ID, "U0APP05", ""); !errors.Is(err, approvals.ErrAlreadyDecided) {
		t.Fatalf("second review: %v", err)
	}
	e.clock.Advance(5 * time.Hour)
	if n, _ := e.svc.RemindReviews(e.ctx); n != 0 {
		t.Fatal("a reviewed grant was announced again")
	}
	if e.pub.count(store.EventReviewPending) != 2 || e.pub.count(store.EventReviewed) != 1 {
		t.Fatalf("events: unreviewed %d, reviewed %d", e.pub.count(store.EventReviewPending), e.pub.count(store.EventReviewed))
	}
	// An ordinary request cannot be "reviewed".
	g := e.approved(alice, "db", 10*time.Minute)
	if _, err := e.svc.Review(e.ctx, g.RequestID, "U0APP04", ""); !errors.Is(err, approvals.ErrNotReviewable) {
		t.Fatalf("review of an ordinary request: %v", err)
	}
	e.auditLen()
}

func testAutoApprove(t *testing.T, e *env) {
	e.onCall.set(alice, 1)
	req, err := e.svc.Create(e.ctx, approvals.NewRequest{Requester: alice, Role: "auto", Reason: "deploy fix"})
	if err != nil {
		t.Fatal(err)
	}
	if req.State != store.RequestApproved || req.GrantID == "" || req.Approvals[0].By != "system:on-call" {
		t.Fatalf("on-call request not auto-approved: %+v", req)
	}
	if e.grant(req.GrantID).State != store.GrantActive {
		t.Fatal("auto-approved grant not active")
	}
	// Not on call: the ordinary path (two human approvals).
	off, err := e.svc.Create(e.ctx, approvals.NewRequest{Requester: erin, Role: "auto", Reason: "deploy fix"})
	if err != nil || off.State != store.RequestPending {
		t.Fatalf("off-call request: %+v %v", off, err)
	}
	// auto_approve does not make break-glass possible on a role that disallows it.
	if _, err := e.svc.BreakGlass(e.ctx, approvals.NewRequest{Requester: alice, Role: "auto", Reason: "x"}); !errors.Is(err, approvals.ErrBreakGlassNotAllowed) {
		t.Fatalf("break-glass on a role with allowed: false: %v", err)
	}
}

// lockWatch reports every refused AcquireLock of one lock name, so a test can wait until an operation is
// blocked on a lock instead of guessing how long it takes to get there.
type lockWatch struct {
	store.Store
	name    string
	refused chan struct{}
}

func (w *lockWatch) AcquireLock(ctx context.Context, name, holder string, ttl time.Duration) (store.Lock, error) {
	l, err := w.Store.AcquireLock(ctx, name, holder, ttl)
	if name == w.name && errors.Is(err, store.ErrLockHeld) {
		select {
		case w.refused <- struct{}{}:
		default:
		}
	}
	return l, err
}

// A sweep that starts while a release is revoking at the provider must wait for it, not revoke again:
// operations on one binding are serialised even inside one process. Deterministic: the test proceeds when
// either the sweep reaches the provider (the bug) or the sweep was refused the binding lock (it waits).
func testSweepDuringRelease(t *testing.T, e *env) {
	g := e.approved(alice, "db", 30*time.Minute)
	// The manager's lock for a binding is named "binding:<binding key>".
	watch := &lockWatch{Store: e.st, name: "binding:" + g.BindingKey, refused: make(chan struct{}, 1)}
	_, sweeper := e.newManagerWith("replica-a", func(o *grants.Options) { o.Store, o.LockWait = watch, time.Hour })
	arrived, release := e.fake.Hold("revoke")
	done := make(chan error, 1)
	go func() {
		_, err := e.mgr.Release(e.ctx, g.ID, alice)
		done <- err
	}()
	<-arrived // the release's revoke is at the provider now
	second, releaseSecond := e.fake.Hold("revoke")
	defer releaseSecond()
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		if _, err := sweeper.Sweep(e.ctx); err != nil {
			t.Errorf("sweep: %v", err)
		}
	}()
	select {
	case <-second:
		release()
		t.Fatal("a sweep revoked at the provider while a release of the same binding was in flight")
	case <-watch.refused: // the sweep claimed the grant and waits for the binding lock
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("release: %v", err)
	}
	<-swept
	if n := len(e.fake.Calls("revoke")); n != 1 {
		t.Fatalf("provider revokes = %d, want 1", n)
	}
	if got := e.grant(g.ID); got.State != store.GrantRevoked {
		t.Fatalf("grant state %s", got.State)
	}
}

// writeAhead stores an activating lease for user on role db, as approval does before calling the provider.
func (e *env) writeAhead(user, requestID string) store.Grant {
	e.t.Helper()
	now := e.clock.Now()
	g := grants.NewLease(grants.LeaseSpec{RequestID: requestID, UserID: user, Role: "db", Provider: "fake", Principal: user,
		Target: map[string]string{"db": "main"}, Duration: 10 * time.Minute, MaxDuration: time.Hour}, now, now.Add(30*time.Second))
	if err := e.st.Commit(e.ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		e.t.Fatal(err)
	}
	return g
}

// A replica whose provider Grant stalls past its binding lock's ttl must not leave access behind: meanwhile
// another replica activates the grant and the holder releases it (revoked, recorded revoked); then the stalled
// Grant lands. The stalled replica's commit is refused (fence and version), and it must converge the binding
// to what the store says: nothing live, so the provider must hold nothing.
func testLockLostMidGrant(t *testing.T, e *env) {
	// The ttl only decides how long the other replica waits for the lock (it waits for the lock, not for a
	// time); it is long enough that the stalled replica's own realigning steps never outlive it.
	stalled, _ := e.newManagerWith("replica-stalled", func(o *grants.Options) { o.LockTTL, o.AttemptTimeout = 500*time.Millisecond, time.Hour })
	other, _ := e.newManagerWith("replica-b", func(o *grants.Options) { o.LockWait = time.Hour })
	g := e.writeAhead(alice, "r-stall")

	arrived, release, landed := e.fake.HoldLanding("grant")
	done := make(chan error, 1)
	go func() { done <- stalled.Activate(e.ctx, g.ID) }()
	<-arrived // the stalled replica's Grant is at the provider; its lock expires while it waits

	// The other replica waits for the lock (it can only get it once the stalled holder's ttl has passed),
	// activates, and the holder releases.
	if err := other.Activate(e.ctx, g.ID); err != nil {
		t.Fatalf("activate by the other replica: %v", err)
	}
	if got := e.grant(g.ID); got.State != store.GrantActive {
		t.Fatalf("after the other replica's activation: %s", got.State)
	}
	if _, err := other.Release(e.ctx, g.ID, alice); err != nil {
		t.Fatalf("release: %v", err)
	}
	if got := e.grant(g.ID); got.State != store.GrantRevoked || e.fake.PresentCount() != 0 {
		t.Fatalf("after release: state %s, provider holds %d", got.State, e.fake.PresentCount())
	}

	release()
	<-landed // the stalled Grant is applied at the provider now
	<-done
	if n := e.fake.PresentCount(); n != 0 {
		t.Fatalf("the provider holds %d assignments after the grant was released and recorded revoked", n)
	}
	if got := e.grant(g.ID); got.State != store.GrantRevoked {
		t.Fatalf("grant state %s, want revoked", got.State)
	}
	if e.pub.count(store.EventDriftRevoked) != 1 {
		t.Fatalf("drift-revoked events = %d, want 1 for the stray grant", e.pub.count(store.EventDriftRevoked))
	}
	// The realigning revoke is verified like any other.
	if got := e.grant(g.ID); !got.RecheckAt.Equal(got.DueAt) || got.RecheckAt.IsZero() || !got.VerifiedAt.IsZero() {
		t.Fatalf("after realigning: check at %v due %v verified %v", got.RecheckAt, got.DueAt, got.VerifiedAt)
	}
	e.sweep()
	if got := e.grant(g.ID); got.VerifiedAt.IsZero() || e.pub.count(store.EventRevokeVerified) != 1 {
		t.Fatalf("verified %v, revoke-verified %d; want set and 1", got.VerifiedAt, e.pub.count(store.EventRevokeVerified))
	}
	if _, err := audit.Verify(e.ctx, e.st, ""); err != nil {
		t.Fatalf("audit: %v", err)
	}
}

// The 14 s / 10 s case at a provider that cannot order operations: the first Grant attempt times out
// (jitbot gives up) but the provider applies it later, after the retry succeeded, the holder released and
// the revoke was applied. The revoke schedules a re-check in the durable due index for when such a call can no
// longer land; a sweeper of a freshly started replica runs it, finds the access back and revokes it again.
func testLateGrantAfterRevoke(t *testing.T, e *env) {
	const window = 20 * time.Second
	// The first attempt's replica gives up after 20 ms; the held call cannot answer before, so the timeout
	// fires whatever the load. Everything after runs with a timeout that nothing reaches.
	impatient, _ := e.newManagerWith("replica-a", func(o *grants.Options) { o.AttemptTimeout = 20 * time.Millisecond })
	mgr, _ := e.newManagerWith("replica-b", func(o *grants.Options) { o.AttemptTimeout, o.LateCallWindow = time.Hour, window })
	g := e.writeAhead(alice, "r-late")

	arrived, land, landed := e.fake.HoldLanding("grant")
	if err := impatient.Activate(e.ctx, g.ID); err != nil {
		t.Fatalf("activate: %v", err)
	}
	<-arrived
	if got := e.grant(g.ID); got.State != store.GrantActivating || got.Attempts != 1 {
		t.Fatalf("after the timed-out attempt: %s attempts %d, want activating 1", got.State, got.Attempts)
	}
	if err := mgr.Activate(e.ctx, g.ID); err != nil { // the retry
		t.Fatalf("retry: %v", err)
	}
	if _, err := mgr.Release(e.ctx, g.ID, alice); err != nil {
		t.Fatalf("release: %v", err)
	}
	revoked := e.grant(g.ID)
	if revoked.State != store.GrantRevoked || e.fake.PresentCount() != 0 {
		t.Fatalf("after release: %s, provider holds %d", revoked.State, e.fake.PresentCount())
	}
	if !revoked.RecheckAt.Equal(revoked.RevokedAt) || !revoked.DueAt.Equal(revoked.RecheckAt) {
		t.Fatalf("check at %v due %v, want both at revoke time %v (the revoke's verification)", revoked.RecheckAt, revoked.DueAt, revoked.RevokedAt)
	}

	// A restart: a new manager and sweeper on the same store verify the revoke and schedule the late-call check.
	_, sw := e.newManagerWith("replica-restarted", func(o *grants.Options) { o.LateCallWindow = window })
	sweep := func() {
		t.Helper()
		if _, err := sw.Sweep(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	sweep()
	verified := e.grant(g.ID)
	if verified.VerifiedAt.IsZero() || e.pub.count(store.EventRevokeVerified) != 1 || !verified.RecheckAt.Equal(revoked.RevokedAt.Add(window)) {
		t.Fatalf("after verification: verified %v (%d events), next check %v, want revoke time + %s", verified.VerifiedAt, e.pub.count(store.EventRevokeVerified), verified.RecheckAt, window)
	}

	land()
	<-landed // the abandoned first attempt lands: the provider's last word is "grant"
	if e.fake.PresentCount() != 1 {
		t.Fatal("the late grant did not land at the fake")
	}
	sweep()
	if e.fake.PresentCount() != 1 || len(e.fake.Calls("check")) != 1 {
		t.Fatal("the late-call check ran before its time")
	}
	e.clock.Advance(window)
	sweep()
	if n := e.fake.PresentCount(); n != 0 {
		t.Fatalf("provider holds %d assignments after the late-call check", n)
	}
	if e.pub.count(store.EventDriftRevoked) != 1 {
		t.Fatalf("drift-revoked events = %d, want 1", e.pub.count(store.EventDriftRevoked))
	}
	e.clock.Advance(4 * time.Second) // BackoffMax: a revoke that found the access is checked again after backoff
	sweep()
	got := e.grant(g.ID)
	if got.State != store.GrantRevoked || !got.RecheckAt.IsZero() || !got.DueAt.IsZero() || e.fake.PresentCount() != 0 {
		t.Fatalf("after the checks: %s recheck %v due %v, provider holds %d", got.State, got.RecheckAt, got.DueAt, e.fake.PresentCount())
	}
	if e.pub.count(store.EventRevokeVerified) != 1 || len(e.fake.Calls("check")) != 3 {
		t.Fatalf("revoke-verified %d, checks %d; want 1 and 3", e.pub.count(store.EventRevokeVerified), len(e.fake.Calls("check")))
	}
	// Generations increase with every operation on the binding; the late call carries the lowest.
	gr, rv := e.fake.Calls("grant"), e.fake.Calls("revoke")
	if len(gr) != 2 || len(rv) != 2 {
		t.Fatalf("grants %d revokes %d, want 2 and 2", len(gr), len(rv))
	}
	late, retry := gr[1].Assignment.Generation, gr[0].Assignment.Generation
	if !(0 < late && late < retry && retry < rv[0].Assignment.Generation && rv[0].Assignment.Generation < rv[1].Assignment.Generation) {
		t.Fatalf("generations: late grant %d, retry %d, revoke %d, revoke again %d: want strictly increasing", late, retry, rv[0].Assignment.Generation, rv[1].Assignment.Generation)
	}
	e.sweep()
	if len(e.fake.Calls("check")) != 3 {
		t.Fatal("a done re-check ran again")
	}
}

// The reminder before expiry lives in the durable due index (issue 8 item 8): a replica restarted between
// activation and the reminder's time still sends it, exactly once however many sweeps and sweepers run, and
// an extension schedules a new one for the new expiry.
func testReminderSurvivesRestart(t *testing.T, e *env) {
	g := e.approved(alice, "db", 20*time.Minute) // reminded min(10m, 20m/5) = 4m before expiry
	want := g.ExpiresAt.Add(-4 * time.Minute)
	if !g.RemindAt.Equal(want) || !g.DueAt.Equal(want) {
		t.Fatalf("remind at %v due %v, want both %v", g.RemindAt, g.DueAt, want)
	}
	if at, ok, err := e.st.NextDue(e.ctx); err != nil || !ok || at.After(want) {
		t.Fatalf("NextDue = %v %v %v, want the reminder %v", at, ok, err, want)
	}

	// Restart: the process that activated the grant is gone; two fresh replicas sweep.
	_, sw1 := e.newManager("replica-new-1")
	_, sw2 := e.newManager("replica-new-2")
	sweepBoth := func() {
		t.Helper()
		for _, sw := range []*grants.Sweeper{sw1, sw2} {
			if _, err := sw.Sweep(e.ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.clock.Advance(want.Sub(e.clock.Now()) - time.Millisecond)
	sweepBoth()
	if n := e.pub.count(store.EventGrantReminder); n != 0 {
		t.Fatalf("%d reminders before the reminder time", n)
	}
	e.clock.Advance(time.Millisecond)
	sweepBoth()
	sweepBoth()
	if n := e.pub.count(store.EventGrantReminder); n != 1 {
		t.Fatalf("reminders = %d, want exactly 1", n)
	}
	got := e.grant(g.ID)
	if got.State != store.GrantActive || !got.RemindAt.IsZero() || !got.DueAt.Equal(got.ExpiresAt) {
		t.Fatalf("after the reminder: %s remind %v due %v", got.State, got.RemindAt, got.DueAt)
	}

	// An extension moves the expiry and schedules a reminder for it.
	ext, err := e.mgr.Extend(e.ctx, g.ID, alice, 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := ext.ExpiresAt.Add(-8 * time.Minute); !ext.RemindAt.Equal(want) || !ext.DueAt.Equal(want) {
		t.Fatalf("after extension: remind %v due %v, want %v", ext.RemindAt, ext.DueAt, want)
	}
	e.clock.Advance(ext.RemindAt.Sub(e.clock.Now()))
	sweepBoth()
	if n := e.pub.count(store.EventGrantReminder); n != 2 {
		t.Fatalf("reminders = %d after the extended grant's reminder time, want 2", n)
	}
	e.clock.Advance(ext.ExpiresAt.Sub(e.clock.Now()))
	sweepBoth()
	if got := e.grant(g.ID); got.State != store.GrantRevoked || !got.RemindAt.IsZero() {
		t.Fatalf("at expiry: %s remind %v", got.State, got.RemindAt)
	}
	if n := e.pub.count(store.EventGrantReminder); n != 2 {
		t.Fatalf("reminders = %d after expiry, want 2", n)
	}
}

// Verified revocation (issue 10): after a revoke the provider is asked whether the access is really gone. A
// revoke the provider acknowledged without applying is caught, revoked again and verified; one that never
// takes effect raises the revoke-failed alert after MaxAttempts rounds and jitbot keeps trying.
func testRevokeVerified(t *testing.T, e *env) {
	g := e.approved(alice, "db", 30*time.Minute)
	e.fake.IgnoreNext("revoke", 1)
	if _, err := e.mgr.Release(e.ctx, g.ID, alice); err != nil {
		t.Fatal(err)
	}
	if got := e.grant(g.ID); got.State != store.GrantRevoked || !got.RecheckAt.Equal(got.RevokedAt) || e.fake.PresentCount() != 1 {
		t.Fatalf("after an acknowledged but unapplied revoke: %s check at %v (revoked %v), provider holds %d", got.State, got.RecheckAt, got.RevokedAt, e.fake.PresentCount())
	}
	e.sweep() // the verification finds the access and revokes again
	if e.fake.PresentCount() != 0 || e.pub.count(store.EventDriftRevoked) != 1 || e.pub.count(store.EventRevokeVerified) != 0 {
		t.Fatalf("provider holds %d, drift-revoked %d, revoke-verified %d; want 0, 1, 0", e.fake.PresentCount(), e.pub.count(store.EventDriftRevoked), e.pub.count(store.EventRevokeVerified))
	}
	e.clock.Advance(4 * time.Second) // BackoffMax
	e.sweep()
	got := e.grant(g.ID)
	if e.pub.count(store.EventRevokeVerified) != 1 || got.VerifiedAt.IsZero() {
		t.Fatalf("revoke-verified %d, verified at %v; want 1 and set", e.pub.count(store.EventRevokeVerified), got.VerifiedAt)
	}
	var ev store.AuditEvent
	for _, r := range e.pub.events {
		if r.Type == store.EventRevokeVerified {
			ev = r
		}
	}
	if ev.GrantID != g.ID || ev.Details["lag_ms"] == "" || ev.Details["verified_at"] == "" {
		t.Fatalf("revoke-verified event %+v", ev)
	}

	// A revoke that never takes effect: every check finds the access.
	h := e.approved(erin, "db", 30*time.Minute)
	e.fake.IgnoreNext("revoke", 100)
	if _, err := e.mgr.Release(e.ctx, h.ID, erin); err != nil {
		t.Fatal(err)
	}
	before := e.pub.count(store.EventRevokeFailed)
	for range 3 { // MaxAttempts
		e.sweep()
		e.clock.Advance(4 * time.Second)
	}
	if n := e.pub.count(store.EventRevokeFailed) - before; n != 1 {
		t.Fatalf("revoke-failed alerts = %d after MaxAttempts rounds, want 1", n)
	}
	if got := e.grant(h.ID); got.RecheckAt.IsZero() || !got.VerifiedAt.IsZero() {
		t.Fatalf("a revoke that never took effect: check at %v verified %v; want still checking, unverified", got.RecheckAt, got.VerifiedAt)
	}
}

// delayed is a provider whose revokes take effect only after a documented delay.
type delayed struct {
	*providerfake.Fake
	d time.Duration
}

func (p delayed) PropagationDelay() time.Duration { return p.d }

func testRevokePropagationDelay(t *testing.T, e *env) {
	const delay = 30 * time.Second
	mgr, sw := e.newManagerWith("replica-delayed", func(o *grants.Options) {
		o.Providers = map[string]grants.Provider{"fake": delayed{e.fake, delay}, "fakemail": e.mailFake}
	})
	g := e.writeAhead(alice, "r-delayed")
	if err := mgr.Activate(e.ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.Release(e.ctx, g.ID, alice); err != nil {
		t.Fatal(err)
	}
	got := e.grant(g.ID)
	if !got.RecheckAt.Equal(got.RevokedAt.Add(delay)) {
		t.Fatalf("verification at %v, want the revoke time %v + %s", got.RecheckAt, got.RevokedAt, delay)
	}
	if _, err := sw.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.fake.Calls("check")) != 0 {
		t.Fatal("verified before the provider's propagation delay")
	}
	e.clock.Advance(delay)
	if _, err := sw.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.fake.Calls("check")) != 1 || e.pub.count(store.EventRevokeVerified) != 1 {
		t.Fatalf("checks %d, revoke-verified %d after the delay; want 1 and 1", len(e.fake.Calls("check")), e.pub.count(store.EventRevokeVerified))
	}
}

// Every provider operation's generation is stored on its lease, and the next operation on the binding gets a
// greater one than any lease records, even one far above the lock's fence counter (a store whose counter was
// lost while the leases remained).
func testGenerationsStored(t *testing.T, e *env) {
	g := e.approved(alice, "db", 30*time.Minute)
	granted := lastCall(e.fake, "grant").Assignment.Generation
	if granted == 0 || e.grant(g.ID).Generation != granted {
		t.Fatalf("stored generation %d, the grant call's %d", e.grant(g.ID).Generation, granted)
	}
	// A second lease on the same binding records a far later generation.
	h := e.approved(alice, "db", 40*time.Minute)
	cur := e.grant(h.ID)
	prev := cur.Version
	cur.Generation = 1 << 50
	if err := e.st.Commit(e.ctx, store.Batch{Grants: []store.GrantPut{{Grant: &cur, PrevVersion: prev}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mgr.Release(e.ctx, g.ID, alice); err != nil { // covered by h: the provider keeps access
		t.Fatal(err)
	}
	if _, err := e.mgr.Release(e.ctx, h.ID, alice); err != nil {
		t.Fatal(err)
	}
	rv := lastCall(e.fake, "revoke").Assignment.Generation
	if rv <= 1<<50 || e.grant(h.ID).Generation < rv {
		t.Fatalf("revoke generation %d, stored %d; want above the lease's 2^50", rv, e.grant(h.ID).Generation)
	}
}
