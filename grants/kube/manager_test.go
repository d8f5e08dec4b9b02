package kube_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/kube/kubefake"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestManagerWithStandingBinding drives a real grants.Manager on both stores: a lease over a human's RoleBinding
// of the same access is recorded pre-existing and creates nothing; when it ends nothing is deleted. A lease for
// someone without standing access gets jitbot's binding, which its end removes.
func TestManagerWithStandingBinding(t *testing.T) {
	run := func(t *testing.T, st grants.Store) {
		srv := newFake(kubefake.Options{})
		t.Cleanup(srv.Close)
		p := newProvider(t, srv)
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"k8s": p}})
		if err != nil {
			t.Fatal(err)
		}
		target := map[string]string{"namespace": "payments", "cluster_role": "edit"}
		srv.PutRoleBinding(rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice-edit", Namespace: "payments"},
			Subjects: []rbacv1.Subject{subjectOf(t, "user:alice")}, RoleRef: roleRefOf(target)})
		ctx := t.Context()
		lease := func(principal string) store.Grant {
			t.Helper()
			now := time.Now()
			g := grants.NewLease(grants.LeaseSpec{RequestID: "r-" + principal, UserID: "U01ALICE", Role: "payments-edit", Provider: "k8s",
				Principal: principal, Target: target, Duration: time.Hour}, now, now.Add(m.ActivationResumeAfter()))
			if err := st.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
				t.Fatal(err)
			}
			if err := m.Activate(ctx, g.ID); err != nil {
				t.Fatal(err)
			}
			got, err := st.GetGrant(ctx, g.ID)
			if err != nil || got.State != store.GrantActive {
				t.Fatalf("lease for %s: %+v, %v", principal, got, err)
			}
			return got
		}
		alice := lease("user:alice")
		if !grants.IsPreExisting(alice.ProviderRef) {
			t.Fatalf("alice's lease ref %q, want pre-existing", alice.ProviderRef)
		}
		bob := lease("user:bob")
		if grants.IsPreExisting(bob.ProviderRef) {
			t.Fatalf("bob's lease ref %q", bob.ProviderRef)
		}
		if n := len(srv.RoleBindings()); n != 2 {
			t.Fatalf("%d RoleBindings, want alice's standing one and jitbot's for bob", n)
		}
		for _, g := range []store.Grant{alice, bob} {
			if _, err := m.Release(ctx, g.ID, "U01ALICE"); err != nil {
				t.Fatal(err)
			}
			if got, _ := st.GetGrant(ctx, g.ID); got.State != store.GrantRevoked {
				t.Fatalf("%s: %s (%s)", g.Principal, got.State, got.LastError)
			}
		}
		if rbs := srv.RoleBindings(); len(rbs) != 1 || rbs[0].Name != "alice-edit" {
			t.Fatalf("RoleBindings after both leases ended: %+v", rbs)
		}
	}
	t.Run("bolt", func(t *testing.T) {
		st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		run(t, st)
	})
	t.Run("redis", func(t *testing.T) {
		run(t, jitredis.New(redistest.Client(t), jitredis.Options{Prefix: redistest.Prefix(t)}))
	})
}

// TestManagerAccessRemainsThroughHumanBinding drives a real grants.Manager on both stores: a RoleBinding
// someone makes by hand during a jitbot grant keeps the subject's role after the grant's end. jitbot deletes
// only its own binding, and its verification records access-remains naming the human's binding: neither
// revoke-verified (the subject still has the role) nor a failed revoke (retried and escalated, though the
// binding is not jitbot's to remove).
func TestManagerAccessRemainsThroughHumanBinding(t *testing.T) {
	type auditStore interface {
		grants.Store
		ReadAudit(ctx context.Context, afterSeq uint64, limit int) ([]store.AuditRecord, error)
	}
	run := func(t *testing.T, st auditStore) {
		srv := newFake(kubefake.Options{})
		t.Cleanup(srv.Close)
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"k8s": newProvider(t, srv)}})
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		target := map[string]string{"namespace": "payments", "cluster_role": "edit"}
		now := time.Now()
		g := grants.NewLease(grants.LeaseSpec{RequestID: "r-carol", UserID: "U01CAROL", Role: "payments-edit", Provider: "k8s",
			Principal: "user:carol", Target: target, Duration: time.Hour}, now, now.Add(m.ActivationResumeAfter()))
		if err := st.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
			t.Fatal(err)
		}
		if err := m.Activate(ctx, g.ID); err != nil {
			t.Fatal(err)
		}
		srv.PutRoleBinding(rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "carol-by-hand", Namespace: "payments"},
			Subjects: []rbacv1.Subject{subjectOf(t, "user:carol")}, RoleRef: roleRefOf(target)})
		if _, err := m.Release(ctx, g.ID, "U01CAROL"); err != nil {
			t.Fatal(err)
		}
		got, err := st.GetGrant(ctx, g.ID)
		if err != nil || got.State != store.GrantRevoked || got.RecheckAt.IsZero() {
			t.Fatalf("after the release: %+v, %v", got, err)
		}
		if err := m.ConvergeDue(ctx, got.BindingKey, []store.Grant{got}); err != nil {
			t.Fatal(err)
		}
		recs, err := st.ReadAudit(ctx, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		n, other := map[string]int{}, ""
		for _, r := range recs {
			n[r.Event.Type]++
			if r.Event.Type == store.EventAccessRemains {
				other = r.Event.Details["other"]
			}
		}
		if n[store.EventAccessRemains] != 1 || other != "rolebinding/payments/carol-by-hand" || n[store.EventRevokeVerified] != 0 || n[store.EventDriftRevoked] != 0 {
			t.Fatalf("events %v (other access %q); want one access-remains naming rolebinding/payments/carol-by-hand", n, other)
		}
		if got, _ := st.GetGrant(ctx, g.ID); got.Attempts != 0 || got.VerifiedAt.IsZero() {
			t.Fatalf("after the check: %d attempts, verified at %v", got.Attempts, got.VerifiedAt)
		}
		if rbs := srv.RoleBindings(); len(rbs) != 1 || rbs[0].Name != "carol-by-hand" {
			t.Fatalf("RoleBindings after the grant ended: %+v; want only the human's", rbs)
		}
	}
	t.Run("bolt", func(t *testing.T) {
		st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		run(t, st)
	})
	t.Run("redis", func(t *testing.T) {
		run(t, jitredis.New(redistest.Client(t), jitredis.Options{Prefix: redistest.Prefix(t)}))
	})
}
