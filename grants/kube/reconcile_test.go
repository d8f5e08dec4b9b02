package kube_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/kube"
	"github.com/jitbot/jitbot/grants/kube/kubefake"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
)

type events []store.AuditEvent

func (e *events) Publish(_ context.Context, evs ...store.AuditEvent) { *e = append(*e, evs...) }

// TestDriftReconciliationOnKubernetes runs the engine's reconciler over the real adapter and the Kubernetes
// API fake: a binding created behind jitbot's back with jitbot's labels, and a grant whose revocation was lost,
// are both deleted and audited; a live grant's binding stays.
func TestDriftReconciliationOnKubernetes(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	srv.AddNamespace("payments")
	p, err := kube.New(t.Context(), kube.Config{RESTConfig: srv.RESTConfig()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var evs events
	mgr, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"k8s": p}, Publisher: &evs})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	target := map[string]string{"namespace": "payments", "cluster_role": "edit"}
	now := time.Now().Truncate(time.Millisecond)
	lease := func(user string) store.Grant {
		g := grants.NewLease(grants.LeaseSpec{RequestID: "r-" + user, UserID: user, Role: "payments-debug", Provider: "k8s",
			Principal: "user:" + user + "@example.com", Target: target, Duration: time.Hour, MaxDuration: time.Hour}, now, now)
		if err := st.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
			t.Fatal(err)
		}
		if err := mgr.Activate(ctx, g.ID); err != nil {
			t.Fatal(err)
		}
		g, _ = st.GetGrant(ctx, g.ID)
		if g.State != store.GrantActive {
			t.Fatalf("grant %s not active: %s %s", g.ID, g.State, g.LastError)
		}
		return g
	}
	live := lease("alice")
	lost := lease("erin")
	prev := lost.Version
	lost.State, lost.DueAt = store.GrantRevoked, time.Time{} // the store believes it revoked; the cluster disagrees
	if err := st.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &lost, PrevVersion: prev}}}); err != nil {
		t.Fatal(err)
	}
	// Behind jitbot's back: a binding with jitbot's labels that no grant record explains.
	if _, err := p.Grant(ctx, grants.Assignment{GrantID: "g-forged", Principal: "user:mallory@example.com", Target: target, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.RoleBindings()); n != 3 {
		t.Fatalf("%d bindings before reconciliation, want 3", n)
	}

	rep, err := mgr.Reconcile(ctx)
	if err != nil || rep.Revoked != 2 {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	left := srv.RoleBindings()
	if len(left) != 1 || left[0].Labels["jitbot.dev/grant-id"] != live.ID {
		t.Fatalf("bindings left: %+v", left)
	}
	drift := 0
	for _, e := range evs {
		if e.Type == store.EventDriftRevoked {
			drift++
		}
	}
	if drift != 2 {
		t.Fatalf("drift-revoked events = %d, want 2", drift)
	}
}
