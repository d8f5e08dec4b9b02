// Package enginetest is the rig of the engine scenarios: an approvals service and a grants manager and
// sweeper on one store, with a settable clock, fake providers, a recording publisher and a fake on-call
// source. The scenarios themselves live beside the code they are about (approvals/engine_test.go,
// grants/engine_test.go), and Run runs them on every store back end.
package enginetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// The people of Policy.
const (
	Alice = "U0ALICE"
	Erin  = "U0ERIN"
	Bob   = "U0BOB"
	Dave  = "U0DAVE"
)

// ApproverIDs are the 50 members of the approver group S0APPROVERS: U0APP00 … U0APP49.
func ApproverIDs() []string {
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = fmt.Sprintf("U0APP%02d", i)
	}
	return ids
}

// Policy is the engine scenarios' policy: fake (by Slack user id) and fakemail (by Slack email) providers,
// the roles db, mail, bg, bgopen, auto and quorum, and a static on-call rota with Alice on call.
func Policy(t testing.TB) *policy.Policy {
	t.Helper()
	src := strings.NewReplacer("{APPROVERS}", strings.Join(ApproverIDs(), ", "), "{ALICE}", Alice, "{ERIN}", Erin, "{BOB}", Bob).Replace(`version: 1
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

// NewClock returns a clock that stands at at until advanced.
func NewClock(at time.Time) *Clock { return &Clock{now: at} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Recorder is the engine's publisher: it keeps every published event.
type Recorder struct {
	mu     sync.Mutex
	events []store.AuditEvent
	// then, when set, runs after each published event, as a subscriber's own work would (the Slack notifier
	// recording where its approval message is).
	then func(store.AuditEvent)
}

// Publish records evs and runs the function set by Then on each.
func (r *Recorder) Publish(_ context.Context, evs ...store.AuditEvent) {
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

// Then makes fn run after each published event (nil: nothing runs).
func (r *Recorder) Then(fn func(store.AuditEvent)) {
	r.mu.Lock()
	r.then = fn
	r.mu.Unlock()
}

// Count returns how many events of type typ were published.
func (r *Recorder) Count(typ string) int {
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

// Last returns the newest published event of type typ (zero if none).
func (r *Recorder) Last(typ string) store.AuditEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Type == typ {
			return r.events[i]
		}
	}
	return store.AuditEvent{}
}

// Env is one engine on one store: the approvals service, and the manager and sweeper of replica-a.
type Env struct {
	T    *testing.T
	Ctx  context.Context
	St   store.Store
	Fake *providerfake.Fake
	// MailFake backs the provider that maps users by Slack email.
	MailFake *providerfake.Fake
	OnCall   *OnCall
	Clock    *Clock
	Pol      *policy.Policy
	Pub      *Recorder
	Svc      *approvals.Service
	Mgr      *grants.Manager
	Sw       *grants.Sweeper
}

// NewEnv builds the engine on st under Policy.
func NewEnv(t *testing.T, st store.Store) *Env { return NewEnvPolicy(t, st, Policy(t)) }

// NewEnvPolicy builds the engine on st under pol. Alice has a profile email; nobody is on call.
func NewEnvPolicy(t *testing.T, st store.Store, pol *policy.Policy) *Env {
	e := &Env{T: t, St: st, Fake: providerfake.New(), MailFake: providerfake.New(), OnCall: &OnCall{on: map[string]int{}}, Clock: NewClock(time.Now().Truncate(time.Millisecond)), Pol: pol, Pub: &Recorder{}}
	e.Ctx = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).WithContext(context.Background())
	e.Mgr, e.Sw = e.NewManager("replica-a")
	svc, err := approvals.New(approvals.Options{Store: st, Policy: e.Pol, Activator: e.Mgr, Publisher: e.Pub, Now: e.Clock.Now,
		Emails: emails{Alice: "alice@example.com"}, OnCall: e.OnCall})
	if err != nil {
		t.Fatal(err)
	}
	e.Svc = svc
	return e
}

// NewManager returns another replica's manager and sweeper on the same store, providers and clock.
func (e *Env) NewManager(holder string) (*grants.Manager, *grants.Sweeper) {
	return e.NewManagerWith(holder, nil)
}

// NewManagerWith is NewManager with tweak applied to the manager's options.
func (e *Env) NewManagerWith(holder string, tweak func(*grants.Options)) (*grants.Manager, *grants.Sweeper) {
	opts := grants.Options{
		Store: e.St, Providers: map[string]grants.Provider{"fake": e.Fake, "fakemail": e.MailFake}, Publisher: e.Pub, Now: e.Clock.Now,
		Holder: holder, AttemptTimeout: 5 * time.Second, MaxAttempts: 3, BackoffBase: time.Second, BackoffMax: 4 * time.Second,
	}
	if tweak != nil {
		tweak(&opts)
	}
	mgr, err := grants.NewManager(opts)
	if err != nil {
		e.T.Fatal(err)
	}
	sw, err := grants.NewSweeper(grants.SweeperOptions{Manager: mgr, Store: opts.Store, Batch: 64, Concurrency: 16})
	if err != nil {
		e.T.Fatal(err)
	}
	return mgr, sw
}

// Request reads request id from the store.
func (e *Env) Request(id string) store.Request {
	e.T.Helper()
	r, err := e.St.GetRequest(e.Ctx, id)
	if err != nil {
		e.T.Fatalf("get request %s: %v", id, err)
	}
	return r
}

// Grant reads grant id from the store.
func (e *Env) Grant(id string) store.Grant {
	e.T.Helper()
	g, err := e.St.GetGrant(e.Ctx, id)
	if err != nil {
		e.T.Fatalf("get grant %s: %v", id, err)
	}
	return g
}

// Sweep runs one sweep of replica-a.
func (e *Env) Sweep() {
	e.T.Helper()
	if _, err := e.Sw.Sweep(e.Ctx); err != nil {
		e.T.Fatalf("sweep: %v", err)
	}
}

// Approved creates a request for role by user and approves it, returning the grant.
func (e *Env) Approved(user, role string, d time.Duration) store.Grant {
	e.T.Helper()
	req, err := e.Svc.Create(e.Ctx, approvals.NewRequest{Requester: user, Role: role, Duration: d, Reason: "test"})
	if err != nil {
		e.T.Fatalf("create: %v", err)
	}
	out, err := e.Svc.Approve(e.Ctx, req.ID, "U0APP00", "")
	if err != nil || out.GrantID == "" {
		e.T.Fatalf("approve: %+v %v", out, err)
	}
	return e.Grant(out.GrantID)
}

// AuditLen verifies the audit chain and returns its length.
func (e *Env) AuditLen() uint64 {
	e.T.Helper()
	rep, err := audit.Verify(e.Ctx, e.St, "")
	if err != nil {
		e.T.Fatalf("audit verify: %v", err)
	}
	return rep.Entries
}

// WriteAhead stores an activating lease for user on role db, as approval does before calling the provider.
func (e *Env) WriteAhead(user, requestID string) store.Grant {
	e.T.Helper()
	now := e.Clock.Now()
	g := grants.NewLease(grants.LeaseSpec{RequestID: requestID, UserID: user, Role: "db", Provider: "fake", Principal: user,
		Target: map[string]string{"db": "main"}, Duration: 10 * time.Minute, MaxDuration: time.Hour}, now, now.Add(30*time.Second))
	if err := e.St.Commit(e.Ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		e.T.Fatal(err)
	}
	return g
}

// LastCall returns the newest call of op at f (zero if none).
func LastCall(f *providerfake.Fake, op string) providerfake.Call {
	calls := f.Calls(op)
	if len(calls) == 0 {
		return providerfake.Call{}
	}
	return calls[len(calls)-1]
}

// emails stands in for Slack's users.info: profile emails by user id.
type emails map[string]string

func (m emails) Email(_ context.Context, user string) (string, error) {
	if e, ok := m[user]; ok {
		return e, nil
	}
	return "", errors.New("users.info: no email on this profile")
}

// OnCall answers on-call checks from a map user -> level; SetDown makes the source unreachable.
type OnCall struct {
	mu   sync.Mutex
	on   map[string]int
	down bool
}

// Set puts user on call at level.
func (f *OnCall) Set(user string, level int) {
	f.mu.Lock()
	f.on[user] = level
	f.mu.Unlock()
}

// SetDown makes the source unreachable (true) or reachable again.
func (f *OnCall) SetDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

// Check implements approvals.OnCall.
func (f *OnCall) Check(_ context.Context, user string, rule policy.BreakGlass) (approvals.OnCallAnswer, error) {
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

// Scenario is one engine scenario, run on a fresh engine.
type Scenario struct {
	Name string
	Fn   func(*testing.T, *Env)
}

// Run runs every scenario on every store back end, each on a fresh, empty store.
func Run(t *testing.T, scenarios []Scenario) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			for _, sc := range scenarios {
				t.Run(sc.Name, func(t *testing.T) { sc.Fn(t, NewEnv(t, b.Open(t))) })
			}
		})
	}
}
