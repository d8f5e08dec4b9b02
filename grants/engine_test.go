package grants_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/internal/enginetest"
	"github.com/jitbot/jitbot/store"
)

// TestEngine runs the engine scenarios about grants, leases, the sweeper and revocation on every store back
// end, each on a fresh engine (internal/enginetest) and an empty store: among them the concurrency
// properties every back end must give the engine (concurrent sweepers revoke each grant once).
func TestEngine(t *testing.T) { enginetest.Run(t, grantScenarios) }

var grantScenarios = []enginetest.Scenario{
	{Name: "ConcurrentSweepersRevokeOnce", Fn: testConcurrentSweepers},
	{Name: "OperatorRevoke", Fn: testOperatorRevoke},
	{Name: "OverlappingLeases", Fn: testOverlappingLeases},
	{Name: "RevokeRetriesThenEscalates", Fn: testRevokeEscalation},
	{Name: "PermanentGrantFailureIsUndone", Fn: testPermanentGrantFailure},
	{Name: "WriteAheadGrantIsResumed", Fn: testWriteAheadResume},
	{Name: "ExtendAndRelease", Fn: testExtendRelease},
	{Name: "DriftReconciliation", Fn: testDriftReconciliation},
	{Name: "SweepDuringReleaseRevokesOnce", Fn: testSweepDuringRelease},
	{Name: "LockLostMidGrantLeavesNothing", Fn: testLockLostMidGrant},
	{Name: "LateGrantAfterRevokeIsRevokedAgain", Fn: testLateGrantAfterRevoke},
	{Name: "ReminderSurvivesRestart", Fn: testReminderSurvivesRestart},
	{Name: "RevokeIsVerified", Fn: testRevokeVerified},
	{Name: "GenerationsStayOrderedWithTheLeases", Fn: testGenerationsStored},
	{Name: "RevokeVerifiedAfterPropagationDelay", Fn: testRevokePropagationDelay},
}

// The people of the engine policy (enginetest.Policy).
const (
	alice = enginetest.Alice
	erin  = enginetest.Erin
	bob   = enginetest.Bob
	dave  = enginetest.Dave
)

func testConcurrentSweepers(t *testing.T, e *enginetest.Env) {
	const n = 300
	now := e.Clock.Now()
	var puts []store.GrantPut
	for i := range n {
		g := grants.NewLease(grants.LeaseSpec{RequestID: fmt.Sprintf("r-%d", i), UserID: fmt.Sprintf("U0USER%03d", i), Role: "db",
			Provider: "fake", Principal: fmt.Sprintf("U0USER%03d", i), Target: map[string]string{"db": "main"}, Duration: time.Minute}, now.Add(-2*time.Minute), time.Time{})
		g.State, g.ActivatedAt, g.ExpiresAt = store.GrantActive, now.Add(-2*time.Minute), now.Add(-time.Minute+time.Duration(i)*time.Millisecond)
		g.DueAt = g.ExpiresAt
		if _, err := e.Fake.Grant(e.Ctx, grants.Assignment{GrantID: g.ID, Principal: g.Principal, Target: g.Target}); err != nil {
			t.Fatal(err)
		}
		puts = append(puts, store.GrantPut{Grant: &g})
		if len(puts) == 100 {
			if err := e.St.Commit(e.Ctx, store.Batch{Grants: puts}); err != nil {
				t.Fatal(err)
			}
			puts = nil
		}
	}
	e.Fake.SetLatency(time.Millisecond)
	_, sw2 := e.NewManager("replica-b")
	var wg sync.WaitGroup
	for _, sw := range []*grants.Sweeper{e.Sw, sw2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := sw.Sweep(e.Ctx); err != nil {
				t.Errorf("sweep: %v", err)
			}
		}()
	}
	wg.Wait()
	revokes := e.Fake.Calls("revoke")
	if len(revokes) != n {
		t.Errorf("provider revoke calls = %d, want %d", len(revokes), n)
	}
	for _, c := range revokes {
		if !c.WasPresent {
			t.Errorf("grant %s was revoked twice (second revoke found nothing to remove)", c.Assignment.GrantID)
		}
	}
	if e.Fake.PresentCount() != 0 {
		t.Errorf("%d bindings still present", e.Fake.PresentCount())
	}
	live, err := e.St.ListGrants(e.Ctx, store.GrantQuery{States: store.LiveGrantStates})
	if err != nil || len(live) != 0 {
		t.Errorf("live grants after sweep = %d (%v)", len(live), err)
	}
	e.AuditLen()
}

func testOverlappingLeases(t *testing.T, e *enginetest.Env) {
	first := e.Approved(alice, "db", 10*time.Minute)
	e.Clock.Advance(time.Minute)
	second := e.Approved(alice, "db", 30*time.Minute)
	if first.BindingKey != second.BindingKey {
		t.Fatal("same role and person should share a binding")
	}
	a := grants.Assignment{Principal: alice, Target: map[string]string{"db": "main"}}
	// Releasing the first lease must not remove access the second still covers.
	rel, err := e.Mgr.Release(e.Ctx, first.ID, alice)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	if rel.State != store.GrantRevoked || rel.CoveredBy != second.ID {
		t.Fatalf("released lease = %s covered by %q", rel.State, rel.CoveredBy)
	}
	if len(e.Fake.Calls("revoke")) != 0 || !e.Fake.Present(a) {
		t.Fatal("release of an overlapped lease removed access at the provider")
	}
	// A third lease that expires before the second: the provider is told the later expiry of the two, and
	// the third's expiry must not remove access either.
	third := e.Approved(alice, "db", 5*time.Minute)
	if last := enginetest.LastCall(e.Fake, "grant"); !last.Assignment.ExpiresAt.Equal(second.ExpiresAt) || last.Assignment.BindingKey != second.BindingKey {
		t.Fatalf("grant of a shorter overlapping lease told the provider expiry %v (binding %q), want %v", last.Assignment.ExpiresAt, last.Assignment.BindingKey, second.ExpiresAt)
	}
	e.Clock.Advance(6 * time.Minute)
	e.Sweep()
	if g := e.Grant(third.ID); g.State != store.GrantRevoked || g.CoveredBy != second.ID {
		t.Fatalf("expired overlapped lease = %s covered by %q", g.State, g.CoveredBy)
	}
	if len(e.Fake.Calls("revoke")) != 0 || !e.Fake.Present(a) {
		t.Fatal("expiry of an overlapped lease removed access at the provider")
	}
	// When the last lease expires, access goes.
	e.Clock.Advance(30 * time.Minute)
	e.Sweep()
	if g := e.Grant(second.ID); g.State != store.GrantRevoked || g.CoveredBy != "" {
		t.Fatalf("last lease = %s covered by %q", g.State, g.CoveredBy)
	}
	if len(e.Fake.Calls("revoke")) != 1 || e.Fake.Present(a) {
		t.Fatal("the last lease's expiry did not revoke exactly once")
	}
	// Another user's grant on the same role is a different binding.
	long := e.Approved(erin, "db", 50*time.Minute)
	if long.BindingKey == second.BindingKey {
		t.Fatal("different principals share a binding")
	}
	short := e.Approved(erin, "db", 10*time.Minute)
	// Releasing the longer lease leaves the shorter one: a provider that expires access itself is told the
	// earlier end, and nothing is revoked.
	revokes := len(e.Fake.Calls("revoke"))
	if _, err := e.Mgr.Release(e.Ctx, long.ID, erin); err != nil {
		t.Fatal(err)
	}
	if last := enginetest.LastCall(e.Fake, "grant"); !last.Assignment.ExpiresAt.Equal(short.ExpiresAt) {
		t.Fatalf("after releasing the longer lease the provider expiry is %v, want %v", last.Assignment.ExpiresAt, short.ExpiresAt)
	}
	if len(e.Fake.Calls("revoke")) != revokes {
		t.Fatal("releasing a covered lease revoked access")
	}
}

func testRevokeEscalation(t *testing.T, e *enginetest.Env) {
	g := e.Approved(alice, "db", 10*time.Minute)
	e.Fake.FailNext("revoke", providerfake.ErrUnavailable, 4)
	e.Clock.Advance(10 * time.Minute)
	for i := 1; i <= 3; i++ {
		e.Sweep()
		got := e.Grant(g.ID)
		if got.Attempts != i {
			t.Fatalf("after sweep %d: attempts = %d", i, got.Attempts)
		}
		if i < 3 {
			if got.State != store.GrantRevoking || !got.DueAt.After(e.Clock.Now()) {
				t.Fatalf("after failure %d: state %s due %v", i, got.State, got.DueAt)
			}
			e.Clock.Advance(got.DueAt.Sub(e.Clock.Now()))
		}
	}
	got := e.Grant(g.ID)
	if got.State != store.GrantRevokeFailed || !got.DueAt.IsZero() || got.LastError == "" {
		t.Fatalf("after max attempts: state %s due %v err %q", got.State, got.DueAt, got.LastError)
	}
	if e.Pub.Count(store.EventRevokeFailed) != 1 || e.Pub.Count(store.EventRevokeRetry) != 2 {
		t.Fatalf("events: revoke-failed %d, revoke-retry %d", e.Pub.Count(store.EventRevokeFailed), e.Pub.Count(store.EventRevokeRetry))
	}
	// The ordinary sweep no longer touches it; the slow job keeps trying.
	e.Sweep()
	if err := e.Sw.RetryRevokeFailed(e.Ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.Grant(g.ID); got.State != store.GrantRevokeFailed {
		t.Fatalf("after a failed slow retry: %s", got.State)
	}
	if err := e.Sw.RetryRevokeFailed(e.Ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.Grant(g.ID); got.State != store.GrantRevoked {
		t.Fatalf("after a successful slow retry: %s", got.State)
	}
	if e.Fake.PresentCount() != 0 {
		t.Fatal("access still present")
	}
}

func testPermanentGrantFailure(t *testing.T, e *enginetest.Env) {
	e.Fake.FailNext("grant", grants.Permanent(errors.New("access denied")), 1)
	g := e.Approved(alice, "db", 10*time.Minute)
	// The undo's successful revoke must not erase why the grant failed.
	if g.State != store.GrantFailed || g.EndReason != "activation_failed" || !strings.Contains(g.LastError, "access denied") {
		t.Fatalf("grant after permanent failure: state %s reason %s err %q", g.State, g.EndReason, g.LastError)
	}
	if len(e.Fake.Calls("revoke")) != 1 {
		t.Fatal("a failed activation must be undone at the provider")
	}
	if e.Pub.Count(store.EventGrantFailed) != 1 {
		t.Fatal("no grant-failed event")
	}
}

func testWriteAheadResume(t *testing.T, e *enginetest.Env) {
	// The process died right after storing the grant, before calling the provider.
	now := e.Clock.Now()
	g := grants.NewLease(grants.LeaseSpec{RequestID: "r-crash", UserID: alice, Role: "db", Provider: "fake", Principal: alice,
		Target: map[string]string{"db": "main"}, Duration: 10 * time.Minute, MaxDuration: time.Hour}, now, now.Add(30*time.Second))
	if err := e.St.Commit(e.Ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		t.Fatal(err)
	}
	e.Sweep()
	if e.Grant(g.ID).State != store.GrantActivating {
		t.Fatal("a fresh activating grant must be left to its activator until its resume time")
	}
	e.Clock.Advance(31 * time.Second)
	e.Sweep()
	got := e.Grant(g.ID)
	if got.State != store.GrantActive || !got.ExpiresAt.Equal(got.ActivatedAt.Add(10*time.Minute)) {
		t.Fatalf("resumed grant: %s expires %v", got.State, got.ExpiresAt)
	}
	if !e.Fake.Present(grants.Assignment{Principal: alice, Target: g.Target}) {
		t.Fatal("resumed grant not applied")
	}
}

func testExtendRelease(t *testing.T, e *enginetest.Env) {
	g := e.Approved(alice, "db", 20*time.Minute)
	if _, err := e.Mgr.Extend(e.Ctx, g.ID, erin, 10*time.Minute); !errors.Is(err, grants.ErrNotHolder) {
		t.Fatalf("extend by another user: %v", err)
	}
	if _, err := e.Mgr.Extend(e.Ctx, g.ID, alice, 50*time.Minute); !errors.Is(err, grants.ErrBadExtension) {
		t.Fatalf("extend beyond the maximum: %v", err)
	}
	before := len(e.Fake.Calls("grant"))
	ext, err := e.Mgr.Extend(e.Ctx, g.ID, alice, 40*time.Minute)
	if err != nil {
		t.Fatalf("extend: %v", err)
	}
	// Due first for the reminder, 10 minutes before the new expiry (see ReminderSurvivesRestart).
	if !ext.ExpiresAt.Equal(g.ExpiresAt.Add(40*time.Minute)) || !ext.DueAt.Equal(ext.ExpiresAt.Add(-10*time.Minute)) {
		t.Fatalf("extended expiry %v due %v", ext.ExpiresAt, ext.DueAt)
	}
	calls := e.Fake.Calls("grant")
	if len(calls) != before+1 || !calls[len(calls)-1].Assignment.ExpiresAt.Equal(ext.ExpiresAt) {
		t.Fatal("the provider was not told the new expiry")
	}
	if _, err := e.Mgr.Release(e.Ctx, g.ID, erin); !errors.Is(err, grants.ErrNotHolder) {
		t.Fatalf("release by another user: %v", err)
	}
	rel, err := e.Mgr.Release(e.Ctx, g.ID, alice)
	if err != nil || rel.State != store.GrantRevoked || rel.EndReason != "released" {
		t.Fatalf("release: %+v %v", rel, err)
	}
	if _, err := e.Mgr.Release(e.Ctx, g.ID, alice); !errors.Is(err, grants.ErrNotActive) {
		t.Fatalf("second release: %v", err)
	}
	if _, err := e.Mgr.Extend(e.Ctx, g.ID, alice, time.Minute); !errors.Is(err, grants.ErrNotActive) {
		t.Fatalf("extend after release: %v", err)
	}
	if e.Fake.PresentCount() != 0 {
		t.Fatal("released access still present")
	}
}

func testDriftReconciliation(t *testing.T, e *enginetest.Env) {
	live := e.Approved(alice, "db", 30*time.Minute)
	// Access granted behind jitbot's back, labelled as if jitbot had made it.
	rogue := grants.Assignment{BindingKey: grants.BindingKey("fake", "U0MALLORY", map[string]string{"db": "main"}), GrantID: "g-forged",
		Principal: "U0MALLORY", Target: map[string]string{"db": "main"}}
	if _, err := e.Fake.Grant(e.Ctx, rogue); err != nil {
		t.Fatal(err)
	}
	// A grant whose revocation was lost: the store says revoked, the provider still has it.
	lost := e.Approved(erin, "db", 30*time.Minute)
	prev := lost.Version
	lost.State, lost.RevokedAt, lost.DueAt = store.GrantRevoked, e.Clock.Now(), time.Time{}
	if err := e.St.Commit(e.Ctx, store.Batch{Grants: []store.GrantPut{{Grant: &lost, PrevVersion: prev}}}); err != nil {
		t.Fatal(err)
	}
	before := e.Pub.Count(store.EventDriftRevoked)
	rep, err := e.Mgr.Reconcile(e.Ctx)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if rep.Checked != 3 || rep.Revoked != 2 || rep.Failed != 0 {
		t.Fatalf("report %+v, want 3 checked, 2 revoked", rep)
	}
	if e.Fake.Present(rogue) || e.Fake.Present(grants.Assignment{Principal: erin, Target: lost.Target}) {
		t.Fatal("drift left in place")
	}
	if !e.Fake.Present(grants.Assignment{Principal: alice, Target: live.Target}) {
		t.Fatal("reconciliation removed a live grant")
	}
	if got := e.Pub.Count(store.EventDriftRevoked) - before; got != 2 {
		t.Fatalf("drift-revoked events = %d, want 2", got)
	}
	if got := e.Pub.Count(store.EventRevokeVerified); got != 2 {
		t.Fatalf("revoke-verified events = %d, want one per drift removal", got)
	}
	recs, err := e.St.ReadAudit(e.Ctx, 0, 0)
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
	if rep, err := e.Mgr.Reconcile(e.Ctx); err != nil || rep.Revoked != 0 {
		t.Fatalf("second run: %+v %v", rep, err)
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
func testSweepDuringRelease(t *testing.T, e *enginetest.Env) {
	g := e.Approved(alice, "db", 30*time.Minute)
	// The manager's lock for a binding is named "binding:<binding key>".
	watch := &lockWatch{Store: e.St, name: "binding:" + g.BindingKey, refused: make(chan struct{}, 1)}
	_, sweeper := e.NewManagerWith("replica-a", func(o *grants.Options) { o.Store, o.LockWait = watch, time.Hour })
	arrived, release := e.Fake.Hold("revoke")
	done := make(chan error, 1)
	go func() {
		_, err := e.Mgr.Release(e.Ctx, g.ID, alice)
		done <- err
	}()
	<-arrived // the release's revoke is at the provider now
	second, releaseSecond := e.Fake.Hold("revoke")
	defer releaseSecond()
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		if _, err := sweeper.Sweep(e.Ctx); err != nil {
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
	if n := len(e.Fake.Calls("revoke")); n != 1 {
		t.Fatalf("provider revokes = %d, want 1", n)
	}
	if got := e.Grant(g.ID); got.State != store.GrantRevoked {
		t.Fatalf("grant state %s", got.State)
	}
}

// A replica whose provider Grant stalls past its binding lock's ttl must not leave access behind: meanwhile
// another replica activates the grant and the holder releases it (revoked, recorded revoked); then the stalled
// Grant lands. The stalled replica's commit is refused (fence and version), and it must converge the binding
// to what the store says: nothing live, so the provider must hold nothing.
func testLockLostMidGrant(t *testing.T, e *enginetest.Env) {
	// The ttl only decides how long the other replica waits for the lock (it waits for the lock, not for a
	// time); it is long enough that the stalled replica's own realigning steps never outlive it.
	stalled, _ := e.NewManagerWith("replica-stalled", func(o *grants.Options) { o.LockTTL, o.AttemptTimeout = 500*time.Millisecond, time.Hour })
	other, _ := e.NewManagerWith("replica-b", func(o *grants.Options) { o.LockWait = time.Hour })
	g := e.WriteAhead(alice, "r-stall")

	arrived, release, landed := e.Fake.HoldLanding("grant")
	done := make(chan error, 1)
	go func() { done <- stalled.Activate(e.Ctx, g.ID) }()
	<-arrived // the stalled replica's Grant is at the provider; its lock expires while it waits

	// The other replica waits for the lock (it can only get it once the stalled holder's ttl has passed),
	// activates, and the holder releases.
	if err := other.Activate(e.Ctx, g.ID); err != nil {
		t.Fatalf("activate by the other replica: %v", err)
	}
	if got := e.Grant(g.ID); got.State != store.GrantActive {
		t.Fatalf("after the other replica's activation: %s", got.State)
	}
	if _, err := other.Release(e.Ctx, g.ID, alice); err != nil {
		t.Fatalf("release: %v", err)
	}
	if got := e.Grant(g.ID); got.State != store.GrantRevoked || e.Fake.PresentCount() != 0 {
		t.Fatalf("after release: state %s, provider holds %d", got.State, e.Fake.PresentCount())
	}

	release()
	<-landed // the stalled Grant is applied at the provider now
	<-done
	if n := e.Fake.PresentCount(); n != 0 {
		t.Fatalf("the provider holds %d assignments after the grant was released and recorded revoked", n)
	}
	if got := e.Grant(g.ID); got.State != store.GrantRevoked {
		t.Fatalf("grant state %s, want revoked", got.State)
	}
	if e.Pub.Count(store.EventDriftRevoked) != 1 {
		t.Fatalf("drift-revoked events = %d, want 1 for the stray grant", e.Pub.Count(store.EventDriftRevoked))
	}
	// The realigning revoke is verified like any other.
	if got := e.Grant(g.ID); !got.RecheckAt.Equal(got.DueAt) || got.RecheckAt.IsZero() || !got.VerifiedAt.IsZero() {
		t.Fatalf("after realigning: check at %v due %v verified %v", got.RecheckAt, got.DueAt, got.VerifiedAt)
	}
	e.Sweep()
	if got := e.Grant(g.ID); got.VerifiedAt.IsZero() || e.Pub.Count(store.EventRevokeVerified) != 1 {
		t.Fatalf("verified %v, revoke-verified %d; want set and 1", got.VerifiedAt, e.Pub.Count(store.EventRevokeVerified))
	}
	if _, err := audit.Verify(e.Ctx, e.St, ""); err != nil {
		t.Fatalf("audit: %v", err)
	}
}

// The 14 s / 10 s case at a provider that cannot order operations: the first Grant attempt times out
// (jitbot gives up) but the provider applies it later, after the retry succeeded, the holder released and
// the revoke was applied. The revoke schedules a re-check in the durable due index for when such a call can no
// longer land; a sweeper of a freshly started replica runs it, finds the access back and revokes it again.
func testLateGrantAfterRevoke(t *testing.T, e *enginetest.Env) {
	const window = 20 * time.Second
	// The first attempt's replica gives up after 20 ms; the held call cannot answer before, so the timeout
	// fires whatever the load. Everything after runs with a timeout that nothing reaches.
	impatient, _ := e.NewManagerWith("replica-a", func(o *grants.Options) { o.AttemptTimeout = 20 * time.Millisecond })
	mgr, _ := e.NewManagerWith("replica-b", func(o *grants.Options) { o.AttemptTimeout, o.LateCallWindow = time.Hour, window })
	g := e.WriteAhead(alice, "r-late")

	arrived, land, landed := e.Fake.HoldLanding("grant")
	if err := impatient.Activate(e.Ctx, g.ID); err != nil {
		t.Fatalf("activate: %v", err)
	}
	<-arrived
	if got := e.Grant(g.ID); got.State != store.GrantActivating || got.Attempts != 1 {
		t.Fatalf("after the timed-out attempt: %s attempts %d, want activating 1", got.State, got.Attempts)
	}
	if err := mgr.Activate(e.Ctx, g.ID); err != nil { // the retry
		t.Fatalf("retry: %v", err)
	}
	if _, err := mgr.Release(e.Ctx, g.ID, alice); err != nil {
		t.Fatalf("release: %v", err)
	}
	revoked := e.Grant(g.ID)
	if revoked.State != store.GrantRevoked || e.Fake.PresentCount() != 0 {
		t.Fatalf("after release: %s, provider holds %d", revoked.State, e.Fake.PresentCount())
	}
	if !revoked.RecheckAt.Equal(revoked.RevokedAt) || !revoked.DueAt.Equal(revoked.RecheckAt) {
		t.Fatalf("check at %v due %v, want both at revoke time %v (the revoke's verification)", revoked.RecheckAt, revoked.DueAt, revoked.RevokedAt)
	}

	// A restart: a new manager and sweeper on the same store verify the revoke and schedule the late-call check.
	_, sw := e.NewManagerWith("replica-restarted", func(o *grants.Options) { o.LateCallWindow = window })
	sweep := func() {
		t.Helper()
		if _, err := sw.Sweep(e.Ctx); err != nil {
			t.Fatal(err)
		}
	}
	sweep()
	verified := e.Grant(g.ID)
	if verified.VerifiedAt.IsZero() || e.Pub.Count(store.EventRevokeVerified) != 1 || !verified.RecheckAt.Equal(revoked.RevokedAt.Add(window)) {
		t.Fatalf("after verification: verified %v (%d events), next check %v, want revoke time + %s", verified.VerifiedAt, e.Pub.Count(store.EventRevokeVerified), verified.RecheckAt, window)
	}

	land()
	<-landed // the abandoned first attempt lands: the provider's last word is "grant"
	if e.Fake.PresentCount() != 1 {
		t.Fatal("the late grant did not land at the fake")
	}
	sweep()
	if e.Fake.PresentCount() != 1 || len(e.Fake.Calls("check")) != 1 {
		t.Fatal("the late-call check ran before its time")
	}
	e.Clock.Advance(window)
	sweep()
	if n := e.Fake.PresentCount(); n != 0 {
		t.Fatalf("provider holds %d assignments after the late-call check", n)
	}
	if e.Pub.Count(store.EventDriftRevoked) != 1 {
		t.Fatalf("drift-revoked events = %d, want 1", e.Pub.Count(store.EventDriftRevoked))
	}
	e.Clock.Advance(4 * time.Second) // BackoffMax: a revoke that found the access is checked again after backoff
	sweep()
	got := e.Grant(g.ID)
	if got.State != store.GrantRevoked || !got.RecheckAt.IsZero() || !got.DueAt.IsZero() || e.Fake.PresentCount() != 0 {
		t.Fatalf("after the checks: %s recheck %v due %v, provider holds %d", got.State, got.RecheckAt, got.DueAt, e.Fake.PresentCount())
	}
	if e.Pub.Count(store.EventRevokeVerified) != 1 || len(e.Fake.Calls("check")) != 3 {
		t.Fatalf("revoke-verified %d, checks %d; want 1 and 3", e.Pub.Count(store.EventRevokeVerified), len(e.Fake.Calls("check")))
	}
	// Generations increase with every operation on the binding; the late call carries the lowest.
	gr, rv := e.Fake.Calls("grant"), e.Fake.Calls("revoke")
	if len(gr) != 2 || len(rv) != 2 {
		t.Fatalf("grants %d revokes %d, want 2 and 2", len(gr), len(rv))
	}
	late, retry := gr[1].Assignment.Generation, gr[0].Assignment.Generation
	if !(0 < late && late < retry && retry < rv[0].Assignment.Generation && rv[0].Assignment.Generation < rv[1].Assignment.Generation) {
		t.Fatalf("generations: late grant %d, retry %d, revoke %d, revoke again %d: want strictly increasing", late, retry, rv[0].Assignment.Generation, rv[1].Assignment.Generation)
	}
	e.Sweep()
	if len(e.Fake.Calls("check")) != 3 {
		t.Fatal("a done re-check ran again")
	}
}

// The reminder before expiry lives in the durable due index (issue 8 item 8): a replica restarted between
// activation and the reminder's time still sends it, exactly once however many sweeps and sweepers run, and
// an extension schedules a new one for the new expiry.
func testReminderSurvivesRestart(t *testing.T, e *enginetest.Env) {
	g := e.Approved(alice, "db", 20*time.Minute) // reminded min(10m, 20m/5) = 4m before expiry
	want := g.ExpiresAt.Add(-4 * time.Minute)
	if !g.RemindAt.Equal(want) || !g.DueAt.Equal(want) {
		t.Fatalf("remind at %v due %v, want both %v", g.RemindAt, g.DueAt, want)
	}
	if at, ok, err := e.St.NextDue(e.Ctx); err != nil || !ok || at.After(want) {
		t.Fatalf("NextDue = %v %v %v, want the reminder %v", at, ok, err, want)
	}

	// Restart: the process that activated the grant is gone; two fresh replicas sweep.
	_, sw1 := e.NewManager("replica-new-1")
	_, sw2 := e.NewManager("replica-new-2")
	sweepBoth := func() {
		t.Helper()
		for _, sw := range []*grants.Sweeper{sw1, sw2} {
			if _, err := sw.Sweep(e.Ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.Clock.Advance(want.Sub(e.Clock.Now()) - time.Millisecond)
	sweepBoth()
	if n := e.Pub.Count(store.EventGrantReminder); n != 0 {
		t.Fatalf("%d reminders before the reminder time", n)
	}
	e.Clock.Advance(time.Millisecond)
	sweepBoth()
	sweepBoth()
	if n := e.Pub.Count(store.EventGrantReminder); n != 1 {
		t.Fatalf("reminders = %d, want exactly 1", n)
	}
	got := e.Grant(g.ID)
	if got.State != store.GrantActive || !got.RemindAt.IsZero() || !got.DueAt.Equal(got.ExpiresAt) {
		t.Fatalf("after the reminder: %s remind %v due %v", got.State, got.RemindAt, got.DueAt)
	}

	// An extension moves the expiry and schedules a reminder for it.
	ext, err := e.Mgr.Extend(e.Ctx, g.ID, alice, 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := ext.ExpiresAt.Add(-8 * time.Minute); !ext.RemindAt.Equal(want) || !ext.DueAt.Equal(want) {
		t.Fatalf("after extension: remind %v due %v, want %v", ext.RemindAt, ext.DueAt, want)
	}
	e.Clock.Advance(ext.RemindAt.Sub(e.Clock.Now()))
	sweepBoth()
	if n := e.Pub.Count(store.EventGrantReminder); n != 2 {
		t.Fatalf("reminders = %d after the extended grant's reminder time, want 2", n)
	}
	e.Clock.Advance(ext.ExpiresAt.Sub(e.Clock.Now()))
	sweepBoth()
	if got := e.Grant(g.ID); got.State != store.GrantRevoked || !got.RemindAt.IsZero() {
		t.Fatalf("at expiry: %s remind %v", got.State, got.RemindAt)
	}
	if n := e.Pub.Count(store.EventGrantReminder); n != 2 {
		t.Fatalf("reminders = %d after expiry, want 2", n)
	}
}

// Verified revocation (issue 10): after a revoke the provider is asked whether the access is really gone. A
// revoke the provider acknowledged without applying is caught, revoked again and verified; one that never
// takes effect raises the revoke-failed alert after MaxAttempts rounds and jitbot keeps trying.
func testRevokeVerified(t *testing.T, e *enginetest.Env) {
	g := e.Approved(alice, "db", 30*time.Minute)
	e.Fake.IgnoreNext("revoke", 1)
	if _, err := e.Mgr.Release(e.Ctx, g.ID, alice); err != nil {
		t.Fatal(err)
	}
	if got := e.Grant(g.ID); got.State != store.GrantRevoked || !got.RecheckAt.Equal(got.RevokedAt) || e.Fake.PresentCount() != 1 {
		t.Fatalf("after an acknowledged but unapplied revoke: %s check at %v (revoked %v), provider holds %d", got.State, got.RecheckAt, got.RevokedAt, e.Fake.PresentCount())
	}
	e.Sweep() // the verification finds the access and revokes again
	if e.Fake.PresentCount() != 0 || e.Pub.Count(store.EventDriftRevoked) != 1 || e.Pub.Count(store.EventRevokeVerified) != 0 {
		t.Fatalf("provider holds %d, drift-revoked %d, revoke-verified %d; want 0, 1, 0", e.Fake.PresentCount(), e.Pub.Count(store.EventDriftRevoked), e.Pub.Count(store.EventRevokeVerified))
	}
	e.Clock.Advance(4 * time.Second) // BackoffMax
	e.Sweep()
	got := e.Grant(g.ID)
	if e.Pub.Count(store.EventRevokeVerified) != 1 || got.VerifiedAt.IsZero() {
		t.Fatalf("revoke-verified %d, verified at %v; want 1 and set", e.Pub.Count(store.EventRevokeVerified), got.VerifiedAt)
	}
	ev := e.Pub.Last(store.EventRevokeVerified)
	if ev.GrantID != g.ID || ev.Details["lag_ms"] == "" || ev.Details["verified_at"] == "" {
		t.Fatalf("revoke-verified event %+v", ev)
	}

	// A revoke that never takes effect: every check finds the access.
	h := e.Approved(erin, "db", 30*time.Minute)
	e.Fake.IgnoreNext("revoke", 100)
	if _, err := e.Mgr.Release(e.Ctx, h.ID, erin); err != nil {
		t.Fatal(err)
	}
	before := e.Pub.Count(store.EventRevokeFailed)
	for range 3 { // MaxAttempts
		e.Sweep()
		e.Clock.Advance(4 * time.Second)
	}
	if n := e.Pub.Count(store.EventRevokeFailed) - before; n != 1 {
		t.Fatalf("revoke-failed alerts = %d after MaxAttempts rounds, want 1", n)
	}
	if got := e.Grant(h.ID); got.RecheckAt.IsZero() || !got.VerifiedAt.IsZero() {
		t.Fatalf("a revoke that never took effect: check at %v verified %v; want still checking, unverified", got.RecheckAt, got.VerifiedAt)
	}
}

// delayed is a provider whose revokes take effect only after a documented delay.
type delayed struct {
	*providerfake.Fake
	d time.Duration
}

func (p delayed) PropagationDelay() time.Duration { return p.d }

func testRevokePropagationDelay(t *testing.T, e *enginetest.Env) {
	const delay = 30 * time.Second
	mgr, sw := e.NewManagerWith("replica-delayed", func(o *grants.Options) {
		o.Providers = map[string]grants.Provider{"fake": delayed{e.Fake, delay}, "fakemail": e.MailFake}
	})
	g := e.WriteAhead(alice, "r-delayed")
	if err := mgr.Activate(e.Ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.Release(e.Ctx, g.ID, alice); err != nil {
		t.Fatal(err)
	}
	got := e.Grant(g.ID)
	if !got.RecheckAt.Equal(got.RevokedAt.Add(delay)) {
		t.Fatalf("verification at %v, want the revoke time %v + %s", got.RecheckAt, got.RevokedAt, delay)
	}
	if _, err := sw.Sweep(e.Ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.Fake.Calls("check")) != 0 {
		t.Fatal("verified before the provider's propagation delay")
	}
	e.Clock.Advance(delay)
	if _, err := sw.Sweep(e.Ctx); err != nil {
		t.Fatal(err)
	}
	if len(e.Fake.Calls("check")) != 1 || e.Pub.Count(store.EventRevokeVerified) != 1 {
		t.Fatalf("checks %d, revoke-verified %d after the delay; want 1 and 1", len(e.Fake.Calls("check")), e.Pub.Count(store.EventRevokeVerified))
	}
}

// Every provider operation's generation is stored on its lease, and the next operation on the binding gets a
// greater one than any lease records, even one far above the lock's fence counter (a store whose counter was
// lost while the leases remained).
func testGenerationsStored(t *testing.T, e *enginetest.Env) {
	g := e.Approved(alice, "db", 30*time.Minute)
	granted := enginetest.LastCall(e.Fake, "grant").Assignment.Generation
	if granted == 0 || e.Grant(g.ID).Generation != granted {
		t.Fatalf("stored generation %d, the grant call's %d", e.Grant(g.ID).Generation, granted)
	}
	// A second lease on the same binding records a far later generation.
	h := e.Approved(alice, "db", 40*time.Minute)
	cur := e.Grant(h.ID)
	prev := cur.Version
	cur.Generation = 1 << 50
	if err := e.St.Commit(e.Ctx, store.Batch{Grants: []store.GrantPut{{Grant: &cur, PrevVersion: prev}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Mgr.Release(e.Ctx, g.ID, alice); err != nil { // covered by h: the provider keeps access
		t.Fatal(err)
	}
	if _, err := e.Mgr.Release(e.Ctx, h.ID, alice); err != nil {
		t.Fatal(err)
	}
	rv := enginetest.LastCall(e.Fake, "revoke").Assignment.Generation
	if rv <= 1<<50 || e.Grant(h.ID).Generation < rv {
		t.Fatalf("revoke generation %d, stored %d; want above the lease's 2^50", rv, e.Grant(h.ID).Generation)
	}
}
