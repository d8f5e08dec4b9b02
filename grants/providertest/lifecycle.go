package providertest

// Lifecycle cases: the failures that only show with a real cloud's history (issue 10). Every case here is
// opt-in through a Harness field (see the Harness documentation); none of them needs more than the fake.
//
// What an adapter must do to pass them:
//
//   - StandingAccessSurvives: a Grant that finds the access already present (standing access jitbot did not
//     create) succeeds; a Revoke of that lease (Assignment.Ref = what Grant returned) leaves the standing
//     access in place, and so does drift reconciliation (when the adapter implements grants.Inventory, the
//     suite runs a real grants.Manager's Reconcile over an empty store). Adapters whose grant is the very
//     object an administrator would make return grants.PreExistingRef from Grant and honour it in Revoke;
//     adapters with objects of their own just never touch the administrator's. A Revoke told grants.RefUntouched
//     (every attempt failed before changing anything) leaves the standing access too.
//   - ResumedCallFailsClosed (Harness.HonoursCallPending): a Grant whose Assignment.Ref is grants.RefCallPending (the manager's write-ahead
//     marker, seen only after a process died mid-call) never returns a pre-existing reference.
//   - OtherAccessRemains (the adapter is a grants.OtherAccessInspector, with Standing): a principal holding the
//     access both through jitbot's grant and through standing access made after it is reported by Inspect as
//     both (Ours, and Other naming the standing object); after jitbot's revoke the standing access is still
//     there, Inspect reports Ours false and Other non-empty, and Check with jitbot's reference reports absent;
//     once the standing access is removed too, Inspect reports nothing. The manager records such a revoke as
//     access-remains instead of revoke-verified (or of a failed revoke, retried and escalated).
//   - OppositeInFlight: a Revoke while a creation of the same access is still in progress, and a Grant while
//     a deletion is in progress, may return retryable errors (the suite repeats the call up to 10 times, as the
//     manager would) but must not return success until the outcome is final: after Settle, the access is absent
//     after the revoke and present after the grant.
//   - ExtensionHonoured / ExpiryFollowsRemainingLease: the provider-side end always equals the ExpiresAt of the
//     latest Grant of the binding (the manager passes the latest lease's end): later for an overlapping longer
//     lease or an extension, earlier when the longer lease ended.
//   - RepeatedCycles: Cycles grant/revoke cycles on one binding (a new grant id each time) all work, and an
//     administrator's standing access made between two cycles survives the next cycle's revoke.
//   - SlowAsyncThroughManager: with operations taking ten times the manager's attempt timeout, a real
//     grants.Manager (production ratios: MaxAttempts 5, backoff from a tenth of the attempt timeout) activates
//     the lease (no undo, exactly one grant at the fake where Count is set) and then revokes it. Declare an
//     attempt budget (grants.AttemptBudgeter) that covers the operation: resuming across attempts alone does
//     not reach (five attempts and their backoff last about 6.5 attempt timeouts). Make operations resumable
//     as well (return a reference with the error, resume from Assignment.Ref) for those that outlast a budget.

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
)

// nextLease returns a second lease of a's binding: same principal and target, a new grant id.
func nextLease(a grants.Assignment, n int, ref string, expires time.Time) grants.Assignment {
	b := a
	b.GrantID = a.GrantID + "-lease" + itoa(n)
	b.RequestID = a.RequestID + "-lease" + itoa(n)
	b.Ref = ref
	b.ExpiresAt = expires
	return b
}

func itoa(n int) string { return strconv.Itoa(n) }

func withBinding(a grants.Assignment) grants.Assignment {
	if a.BindingKey == "" {
		a.BindingKey = grants.BindingKey("providertest", a.Principal, a.Target)
	}
	return a
}

func (s *suite) standingAccessSurvives(t *testing.T, p grants.Provider) {
	if s.h.Standing == nil || s.h.StandingPresent == nil {
		t.Skip("Harness.Standing and Harness.StandingPresent not provided")
	}
	a := withBinding(s.h.Assignment(t))
	s.h.Standing(t, a, true)
	if !s.h.StandingPresent(t, a) {
		t.Fatal("Harness.Standing(true) did not create standing access")
	}
	ref := s.mustGrant(t, p, a)
	s.wantPresent(t, a, true)
	s.wantCheck(t, p, a, true)
	t.Logf("Grant over standing access returned reference %q (pre-existing: %v)", ref, grants.IsPreExisting(ref))

	// A second, overlapping lease is told the first lease's reference, as the manager does.
	b := nextLease(a, 1, ref, a.ExpiresAt.Add(time.Hour))
	ref = s.mustGrant(t, p, b)
	b.Ref = ref
	s.mustRevoke(t, p, b)
	if !s.h.StandingPresent(t, a) {
		t.Fatal("the revoke of a lease over standing access removed the standing access")
	}
	// The undo of a lease whose every attempt failed before changing anything (grants.RefUntouched).
	c := nextLease(a, 2, grants.RefUntouched, a.ExpiresAt)
	s.mustRevoke(t, p, c)
	if !s.h.StandingPresent(t, a) {
		t.Fatal("a revoke told that jitbot never applied anything (grants.RefUntouched) removed the standing access")
	}
	// The retry of a lease whose first attempt changed nothing looks again as for "": what it finds is still
	// standing access, so its revoke leaves it.
	d := nextLease(a, 3, grants.RefUntouched, a.ExpiresAt)
	d.Ref = s.mustGrant(t, p, d)
	s.mustRevoke(t, p, d)
	if !s.h.StandingPresent(t, a) {
		t.Fatalf("a grant retried after an attempt that changed nothing (grants.RefUntouched) took over the standing access (ref %q), and its revoke removed it", d.Ref)
	}

	inv, ok := s.h.New(t).(grants.Inventory)
	if !ok {
		return
	}
	// Reconciliation over a store that tracks nothing must leave the standing access alone.
	m := s.manager(t, map[string]grants.Provider{"providertest": inventoryProvider{Provider: p, inv: inv}}, time.Minute)
	rep, err := m.Reconcile(s.ctx(t))
	t.Logf("reconcile: %+v, %v", rep, err)
	if !s.h.StandingPresent(t, a) {
		t.Fatal("drift reconciliation removed standing access that jitbot never granted")
	}
}

// resumedCallFailsClosed: a Grant told grants.RefCallPending is resuming after a process died mid-call, so
// access it finds may be that call's doing: it must not report it as pre-existing.
func (s *suite) resumedCallFailsClosed(t *testing.T, p grants.Provider) {
	if s.h.Standing == nil || s.h.StandingPresent == nil || !s.h.HonoursCallPending {
		t.Skip("Harness.HonoursCallPending, Standing and StandingPresent not all provided")
	}
	a := withBinding(s.h.Assignment(t))
	s.h.Standing(t, a, true)
	a.Ref = grants.RefCallPending
	ref := s.mustGrant(t, p, a)
	if grants.IsPreExisting(ref) {
		t.Fatalf("Grant resuming a call that may have created the access returned %q: it must not claim the access pre-existed", ref)
	}
	s.wantPresent(t, a, true)
}

// otherAccessRemains: after jitbot's revoke, access someone else granted keeps the principal's role, and the
// adapter's grants.OtherAccessInspector tells the two apart, so that the manager neither calls the revoke
// verified nor failed.
func (s *suite) otherAccessRemains(t *testing.T, p grants.Provider) {
	if s.h.Standing == nil || s.h.StandingPresent == nil {
		t.Skip("Harness.Standing and Harness.StandingPresent not provided")
	}
	if _, ok := s.h.New(t).(grants.OtherAccessInspector); !ok {
		t.Skip("the adapter is not a grants.OtherAccessInspector")
	}
	in := p.(grants.OtherAccessInspector) // the secret checker forwards it
	a := withBinding(s.h.Assignment(t))
	a.Ref = s.mustGrant(t, p, a)
	if grants.IsPreExisting(a.Ref) {
		t.Fatalf("Grant without standing access returned a pre-existing reference %q", a.Ref)
	}
	s.wantInspect(t, in, a, true, false)
	s.h.Standing(t, a, true) // an administrator's own binding, made while jitbot's grant is live
	if !s.h.StandingPresent(t, a) {
		t.Fatal("Harness.Standing(true) did not create standing access")
	}
	s.wantInspect(t, in, a, true, true)
	s.mustRevoke(t, p, a)
	if !s.h.StandingPresent(t, a) {
		t.Fatal("jitbot's revoke removed access jitbot did not grant")
	}
	pr := s.wantInspect(t, in, a, false, true)
	t.Logf("after the revoke, access remains through %q", pr.Other)
	s.wantCheck(t, p, a, false) // with jitbot's reference Check asks about jitbot's access: gone
	s.h.Standing(t, a, false)
	s.wantInspect(t, in, a, false, false)
}

// wantInspect fails unless Inspect reports jitbot's access as ours says and other access as other says.
func (s *suite) wantInspect(t *testing.T, in grants.OtherAccessInspector, a grants.Assignment, ours, other bool) grants.Presence {
	t.Helper()
	pr, err := in.Inspect(s.ctx(t), a)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if pr.Ours != ours || (len(pr.Other) > 0) != other {
		t.Fatalf("Inspect = %+v; want ours %v, other access %v", pr, ours, other)
	}
	for _, o := range pr.Other {
		if o == "" {
			t.Fatalf("Inspect = %+v: an empty name for other access", pr)
		}
	}
	return pr
}

type inventoryProvider struct {
	grants.Provider
	inv grants.Inventory
}

func (p inventoryProvider) ListOwned(ctx context.Context) ([]grants.Owned, error) {
	return p.inv.ListOwned(ctx)
}

// repeat calls op until it succeeds, at most 10 times, failing the test on a permanent error.
func (s *suite) repeat(t *testing.T, what string, op func(ctx context.Context) error) {
	t.Helper()
	var err error
	for i := 0; i < 10; i++ {
		if err = op(s.ctx(t)); err == nil {
			return
		}
		if grants.IsPermanent(err) {
			t.Fatalf("%s: permanent error: %v", what, err)
		}
		t.Logf("%s attempt %d: %v", what, i+1, err)
	}
	t.Fatalf("%s still failing after 10 attempts: %v", what, err)
}

func (s *suite) revokeWhileCreating(t *testing.T, p grants.Provider) {
	if s.h.InFlight == nil || s.h.Settle == nil {
		t.Skip("Harness.InFlight and Harness.Settle not provided")
	}
	a := withBinding(s.h.Assignment(t))
	s.h.InFlight(t, a, OpGrant)
	s.repeat(t, "Revoke while a creation is in flight", func(ctx context.Context) error { return p.Revoke(ctx, a) })
	s.h.Settle(t)
	if s.h.Present(t, a) {
		t.Fatal("Revoke returned success while a creation was in flight, and the access is present once it finished")
	}
	s.wantCheck(t, p, a, false)
}

func (s *suite) grantWhileDeleting(t *testing.T, p grants.Provider) {
	if s.h.InFlight == nil || s.h.Settle == nil {
		t.Skip("Harness.InFlight and Harness.Settle not provided")
	}
	a := withBinding(s.h.Assignment(t))
	ref := s.mustGrant(t, p, a)
	s.h.InFlight(t, a, OpRevoke)
	b := nextLease(a, 1, ref, a.ExpiresAt)
	s.repeat(t, "Grant while a deletion is in flight", func(ctx context.Context) error {
		r, err := p.Grant(ctx, b)
		if r != "" {
			b.Ref = r
		}
		return err
	})
	s.h.Settle(t)
	if !s.h.Present(t, a) {
		t.Fatal("Grant returned success while a deletion was in flight, and the access is gone once it finished")
	}
	s.wantCheck(t, p, a, true)
}

func (s *suite) wantExpiry(t *testing.T, a grants.Assignment, want time.Time, what string) {
	t.Helper()
	got, ok := s.h.ProviderExpiry(t, a)
	if !ok {
		t.Fatalf("%s: the provider holds no end for the access, want %s", what, want.UTC().Format(time.RFC3339))
	}
	if d := got.Sub(want); d < -time.Second || d > time.Second {
		t.Fatalf("%s: the provider ends access at %s, want %s", what, got.UTC().Format(time.RFC3339), want.UTC().Format(time.RFC3339))
	}
}

func (s *suite) extensionHonoured(t *testing.T, p grants.Provider) {
	if s.h.ProviderExpiry == nil {
		t.Skip("Harness.ProviderExpiry not provided (not a self-expiring provider)")
	}
	base := time.Now().Add(time.Hour).Truncate(time.Second)
	a := withBinding(s.h.Assignment(t))
	a.ExpiresAt = base
	ref := s.mustGrant(t, p, a)
	s.wantExpiry(t, a, base, "after the first grant")

	// An overlapping longer lease of the same binding: the provider must end access at the later end.
	b := nextLease(a, 1, ref, base.Add(time.Hour))
	ref = s.mustGrant(t, p, b)
	s.wantExpiry(t, a, b.ExpiresAt, "after an overlapping longer lease")

	// An extension of the first lease beyond the second: the manager calls Grant with the new, latest end.
	c := a
	c.Ref, c.ExpiresAt = ref, base.Add(3*time.Hour)
	s.mustGrant(t, p, c)
	s.wantExpiry(t, a, c.ExpiresAt, "after an extension")
	s.wantPresent(t, a, true)
}

func (s *suite) expiryFollowsRemainingLease(t *testing.T, p grants.Provider) {
	if s.h.ProviderExpiry == nil {
		t.Skip("Harness.ProviderExpiry not provided (not a self-expiring provider)")
	}
	base := time.Now().Add(time.Hour).Truncate(time.Second)
	a := withBinding(s.h.Assignment(t))
	a.ExpiresAt = base.Add(2 * time.Hour)
	ref := s.mustGrant(t, p, a)
	// A shorter lease joins: the manager grants it with the latest end of all the binding's leases.
	b := nextLease(a, 1, ref, a.ExpiresAt)
	ref = s.mustGrant(t, p, b)
	s.wantExpiry(t, a, a.ExpiresAt, "with a longer and a shorter lease")
	// The longer lease ended early (released): the manager tells the provider the remaining lease's end.
	b.Ref, b.ExpiresAt = ref, base
	s.mustGrant(t, p, b)
	s.wantExpiry(t, a, base, "after the longer lease ended")
	s.wantPresent(t, a, true)
}

func (s *suite) repeatedCycles(t *testing.T, p grants.Provider) {
	if s.h.Cycles <= 0 {
		t.Skip("Harness.Cycles not set")
	}
	a := withBinding(s.h.Assignment(t))
	for i := 0; i < s.h.Cycles; i++ {
		standing := s.h.Standing != nil && s.h.StandingPresent != nil && i == s.h.Cycles/2
		if standing {
			s.h.Standing(t, a, true) // an administrator assigns the same access between two cycles
		}
		l := nextLease(a, i, "", time.Now().Add(time.Hour).Truncate(time.Second))
		ref, err := p.Grant(s.ctx(t), l)
		if err != nil {
			t.Fatalf("cycle %d: Grant: %v", i+1, err)
		}
		s.wantPresent(t, a, true)
		if s.h.Count != nil && !standing {
			if n := s.h.Count(t, a); n != 1 {
				t.Fatalf("cycle %d: the fake holds %d grants for the binding, want 1", i+1, n)
			}
		}
		l.Ref = ref
		if err := p.Revoke(s.ctx(t), l); err != nil {
			t.Fatalf("cycle %d: Revoke: %v", i+1, err)
		}
		if standing {
			if !s.h.StandingPresent(t, a) {
				t.Fatalf("cycle %d: the revoke removed the standing access an administrator made before the grant", i+1)
			}
			s.h.Standing(t, a, false)
		}
		if s.h.Present(t, a) {
			t.Fatalf("cycle %d: access still present after revoke", i+1)
		}
	}
}

// manager returns a real grants.Manager over a fresh bbolt store.
func (s *suite) manager(t *testing.T, providers map[string]grants.Provider, attempt time.Duration) *grants.Manager {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	m, err := grants.NewManager(grants.Options{
		Store: st, Providers: providers, AttemptTimeout: attempt, MaxAttempts: 5,
		BackoffBase: attempt / 10, BackoffMax: attempt,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.store = st
	return m
}

func (s *suite) slowAsyncThroughManager(t *testing.T, p grants.Provider) {
	if s.h.SlowAsync == nil {
		t.Skip("Harness.SlowAsync not provided")
	}
	const slow = 2 * time.Second
	attempt := slow / 10
	s.h.SlowAsync(t, slow)
	t.Cleanup(func() { s.h.SlowAsync(t, 0) })

	m := s.manager(t, map[string]grants.Provider{"providertest": p}, attempt)
	a := s.h.Assignment(t)
	now := time.Now()
	g := grants.NewLease(grants.LeaseSpec{
		RequestID: a.RequestID, UserID: "U1", Role: a.Role, Provider: "providertest", Principal: a.Principal,
		Target: a.Target, Duration: time.Hour,
	}, now, now.Add(m.ActivationResumeAfter()))
	ctx := s.ctx(t)
	if err := s.store.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		t.Fatal(err)
	}
	a.BindingKey, a.GrantID = g.BindingKey, g.ID

	// Drive the binding as the sweeper would, without waiting for due times (the backoff is not the point).
	drive := func(want store.GrantState) store.Grant {
		t.Helper()
		var cur store.Grant
		for i := 0; i < 40; i++ {
			_ = m.Converge(ctx, g.BindingKey)
			var err error
			if cur, err = s.store.GetGrant(ctx, g.ID); err != nil {
				t.Fatal(err)
			}
			if cur.State == want {
				return cur
			}
			if cur.EndReason == "activation_failed" {
				t.Fatalf("activation failed and was undone after %d attempts: %s", i+1, cur.LastError)
			}
		}
		t.Fatalf("grant still %s after 40 passes (attempts %d, last error %s), want %s", cur.State, cur.Attempts, cur.LastError, want)
		return cur
	}
	cur := drive(store.GrantActive)
	t.Logf("active, provider reference %q", cur.ProviderRef)
	s.h.SlowAsync(t, 0) // let the adapter's view settle before asserting the ground truth
	s.wantPresent(t, a, true)
	if s.h.Count != nil {
		if n := s.h.Count(t, a); n != 1 {
			t.Fatalf("after a slow activation the fake holds %d grants for the binding, want 1", n)
		}
	}
	s.h.SlowAsync(t, slow)
	if _, err := m.Release(ctx, g.ID, "U1"); err != nil {
		t.Logf("release: %v", err)
	}
	drive(store.GrantRevoked)
	s.h.SlowAsync(t, 0)
	s.wantPresent(t, a, false)
}
