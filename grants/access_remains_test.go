package grants_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/store"
)

// remainsEnv is a manager over the fake provider on one store, with a clock the test moves.
type remainsEnv struct {
	st   managerStore
	fake *providerfake.Fake
	m    *grants.Manager
	now  time.Time
}

const lateWindow = time.Minute

func newRemainsEnv(t *testing.T, st managerStore) *remainsEnv {
	t.Helper()
	e := &remainsEnv{st: st, fake: providerfake.New(), now: time.Now().Truncate(time.Millisecond)}
	var err error
	e.m, err = grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"fake": e.fake},
		Now: func() time.Time { return e.now }, LateCallWindow: lateWindow, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// active stores an activating lease for principal and activates it.
func (e *remainsEnv) active(t *testing.T, principal string) store.Grant {
	t.Helper()
	g := grants.NewLease(grants.LeaseSpec{RequestID: store.NewID("r"), UserID: "U1", Role: "payments-admin", Provider: "fake",
		Principal: principal, Target: map[string]string{"namespace": "payments", "role": "admin"}, Duration: time.Hour},
		e.now, e.now.Add(e.m.ActivationResumeAfter()))
	commitGrant(t, e.st, &g)
	if err := e.m.Activate(t.Context(), g.ID); err != nil {
		t.Fatal(err)
	}
	return e.grant(t, g.ID)
}

func (e *remainsEnv) grant(t *testing.T, id string) store.Grant {
	t.Helper()
	g, err := e.st.GetGrant(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// recheck runs the grant's due check, as the sweeper would.
func (e *remainsEnv) recheck(t *testing.T, id string) error {
	t.Helper()
	g := e.grant(t, id)
	return e.m.ConvergeDue(t.Context(), g.BindingKey, []store.Grant{g})
}

// events counts the audit events per type (of grantID, or of every grant when grantID is "") and returns the
// details of the last one of each type.
func (e *remainsEnv) events(t *testing.T, grantID string) (map[string]int, map[string]map[string]string) {
	t.Helper()
	recs, err := e.st.ReadAudit(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	n, last := map[string]int{}, map[string]map[string]string{}
	for _, r := range recs {
		if grantID == "" || r.Event.GrantID == grantID {
			n[r.Event.Type]++
			last[r.Event.Type] = r.Event.Details
		}
	}
	return n, last
}

func assignmentOf(g store.Grant) grants.Assignment {
	return grants.Assignment{BindingKey: g.BindingKey, GrantID: g.ID, Principal: g.Principal, Target: g.Target}
}

// TestRevokeWithOtherAccessRemaining: when the principal still holds the access through objects jitbot did not
// grant (a hand-made RoleBinding, an IAM binding without jitbot's condition) after jitbot's own access is
// correctly gone, the verification records access-remains naming those objects - not revoke-verified (a lie)
// and not a failed revoke (retried and escalated forever). jitbot's own access still present keeps today's
// path: revoked again, escalated after MaxAttempts. Drift reconciliation reports the same.
func TestRevokeWithOtherAccessRemaining(t *testing.T) {
	const other = "rolebinding/payments/oncall-admins"
	stores(t, func(t *testing.T, st managerStore) {
		t.Run("recheck", func(t *testing.T) {
			e := newRemainsEnv(t, st)
			g := e.active(t, "alice")
			e.fake.SetOther(assignmentOf(g), other)
			if _, err := e.m.Release(t.Context(), g.ID, g.UserID); err != nil {
				t.Fatal(err)
			}
			if err := e.recheck(t, g.ID); err != nil {
				t.Fatal(err)
			}
			n, last := e.events(t, g.ID)
			if n[store.EventAccessRemains] != 1 || n[store.EventRevokeVerified] != 0 || n[store.EventDriftRevoked] != 0 || n[store.EventRevokeFailed] != 0 {
				t.Fatalf("events %v; want one access-remains and no revoke-verified, drift-revoked or revoke-failed", n)
			}
			d := last[store.EventAccessRemains]
			if d["provider"] != "fake" || d["other"] != other || d["verified_at"] == "" {
				t.Fatalf("access-remains details %v; want provider fake, other %q, verified_at", d, other)
			}
			got := e.grant(t, g.ID)
			if got.State != store.GrantRevoked || got.Attempts != 0 || got.VerifiedAt.IsZero() {
				t.Fatalf("after the check: %s, %d attempts, verified at %v; want revoked, 0, set", got.State, got.Attempts, got.VerifiedAt)
			}
			// The fake cannot order operations: one more check once a late call can no longer land, and then
			// nothing more - no second report, no retry.
			if want := got.RevokedAt.Add(lateWindow); !got.RecheckAt.Equal(want) {
				t.Fatalf("next check at %v, want the late-call check at %v", got.RecheckAt, want)
			}
			e.now = got.RecheckAt
			if err := e.recheck(t, g.ID); err != nil {
				t.Fatal(err)
			}
			if n, _ := e.events(t, g.ID); n[store.EventAccessRemains] != 1 || n[store.EventRevokeVerified] != 0 || n[store.EventDriftRevoked] != 0 {
				t.Fatalf("after the late-call check: events %v; want still one access-remains and nothing else", n)
			}
			if got := e.grant(t, g.ID); !got.RecheckAt.IsZero() || !got.DueAt.IsZero() {
				t.Fatalf("after the late-call check: check at %v, due %v; want done", got.RecheckAt, got.DueAt)
			}
			if n := len(e.fake.Calls("revoke")); n != 1 {
				t.Fatalf("%d revokes, want 1 (the other access is not jitbot's to remove)", n)
			}
		})

		t.Run("ours still present", func(t *testing.T) {
			e := newRemainsEnv(t, st)
			g := e.active(t, "bob")
			e.fake.SetOther(assignmentOf(g), other)
			e.fake.IgnoreNext("revoke", 2) // the release's revoke and the first revoke again do not take effect
			if _, err := e.m.Release(t.Context(), g.ID, g.UserID); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				_ = e.recheck(t, g.ID)
				e.now = e.grant(t, g.ID).DueAt
			}
			n, _ := e.events(t, g.ID)
			if n[store.EventAccessRemains] != 0 || n[store.EventRevokeVerified] != 0 || n[store.EventDriftRevoked] != 2 || n[store.EventRevokeFailed] != 1 {
				t.Fatalf("events %v; want two drift-revoked and one revoke-failed, no access-remains or revoke-verified", n)
			}
			// The revoke finally takes effect: what remains is the other access.
			if err := e.recheck(t, g.ID); err != nil {
				t.Fatal(err)
			}
			if n, last := e.events(t, g.ID); n[store.EventAccessRemains] != 1 || last[store.EventAccessRemains]["other"] != other || n[store.EventRevokeVerified] != 0 {
				t.Fatalf("events %v; want one access-remains", n)
			}
		})

		t.Run("verified without other access", func(t *testing.T) {
			e := newRemainsEnv(t, st)
			g := e.active(t, "carol")
			e.fake.SetOther(assignmentOf(g), other)
			e.fake.SetOther(assignmentOf(g)) // removed again before the revoke
			if _, err := e.m.Release(t.Context(), g.ID, g.UserID); err != nil {
				t.Fatal(err)
			}
			if err := e.recheck(t, g.ID); err != nil {
				t.Fatal(err)
			}
			if n, _ := e.events(t, g.ID); n[store.EventRevokeVerified] != 1 || n[store.EventAccessRemains] != 0 {
				t.Fatalf("events %v; want one revoke-verified", n)
			}
		})

		t.Run("reconcile", func(t *testing.T) {
			e := newRemainsEnv(t, st)
			// jitbot's object at the provider that no grant covers (its record lost), and the same access
			// through an object jitbot did not make.
			a := grants.Assignment{GrantID: "g-lost", Principal: "dave", Target: map[string]string{"namespace": "payments", "role": "admin"}}
			if _, err := e.fake.Grant(t.Context(), a); err != nil {
				t.Fatal(err)
			}
			e.fake.SetOther(a, other, "rolebinding/payments/dave-by-hand")
			rep, err := e.m.Reconcile(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Revoked != 1 || rep.Failed != 0 || e.fake.Present(a) {
				t.Fatalf("reconcile %+v, jitbot's object present %v; want it revoked", rep, e.fake.Present(a))
			}
			n, last := e.events(t, "g-lost")
			if n[store.EventDriftRevoked] != 1 || n[store.EventAccessRemains] != 1 || n[store.EventRevokeVerified] != 0 {
				t.Fatalf("events %v; want drift-revoked and access-remains", n)
			}
			if d := last[store.EventAccessRemains]; d["provider"] != "fake" || !strings.Contains(d["other"], "dave-by-hand") || !strings.Contains(d["other"], other) {
				t.Fatalf("access-remains details %v", d)
			}
			// The next run finds nothing of jitbot's: nothing more is reported.
			if rep, err := e.m.Reconcile(t.Context()); err != nil || rep.Revoked != 0 || rep.Failed != 0 {
				t.Fatalf("second reconcile %+v, %v", rep, err)
			}
		})
	})
}
