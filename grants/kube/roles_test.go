package kube_test

import (
	"strings"
	"testing"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/kube/kubefake"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestGrantRefusesMissingRole: holding bind on a role name, the API server accepts a binding to a Role or
// ClusterRole that does not exist, so a typo in the policy used to "succeed" and grant nothing. The adapter
// checks that the role exists first and fails permanently, naming it; nothing is created.
func TestGrantRefusesMissingRole(t *testing.T) {
	srv := kubefake.New(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	for _, target := range []map[string]string{
		{"cluster_role": "veiw"},
		{"namespace": "payments", "cluster_role": "veiw"},
		{"namespace": "payments", "role": "debuger"},
	} {
		_, err := p.Grant(t.Context(), assignment("g-typo", "user:alice", target))
		if err == nil || !grants.IsPermanent(err) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("grant to %v: %v; want a permanent error saying the role does not exist", target, err)
		}
	}
	if n := len(srv.RoleBindings()) + len(srv.ClusterRoleBindings()); n != 0 {
		t.Fatalf("%d bindings created to roles that do not exist", n)
	}
	// The same grants succeed once the roles exist.
	srv.PutClusterRole(rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "veiw"}})
	srv.PutRole(rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "payments", Name: "debuger"}})
	if _, err := p.Grant(t.Context(), assignment("g-typo2", "user:alice", map[string]string{"namespace": "payments", "role": "debuger"})); err != nil {
		t.Fatal(err)
	}
	// A Role of that name in another namespace does not count.
	_, err := p.Grant(t.Context(), assignment("g-typo3", "user:alice", map[string]string{"namespace": "search", "role": "debuger"}))
	if err == nil || !grants.IsPermanent(err) {
		t.Fatalf("Role from another namespace: %v", err)
	}
}

// TestRoleCheckNeedsGet: without get on roles/clusterroles the grant fails permanently and says which
// permission the documented RBAC adds.
func TestRoleCheckNeedsGet(t *testing.T) {
	srv := kubefake.New(kubefake.Options{CallerRules: []rbacv1.PolicyRule{
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"rolebindings", "clusterrolebindings"}, Verbs: []string{"create", "get", "list", "delete"}},
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"bind"}, ResourceNames: []string{"view"}},
	}})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	_, err := p.Grant(t.Context(), assignment("g-noget", "user:alice", map[string]string{"cluster_role": "view"}))
	if err == nil || !grants.IsPermanent(err) || !strings.Contains(err.Error(), `cannot get resource "clusterroles"`) || !strings.Contains(err.Error(), "get") {
		t.Fatalf("grant without get on clusterroles: %v", err)
	}
}

// TestErrorsKeepTheServerMessage: GET and LIST errors name what the API server denied (its Status message),
// not client-go's generic "unknown (get rolebindings...)".
func TestErrorsKeepTheServerMessage(t *testing.T) {
	srv := kubefake.New(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	a := assignment("g-msg", "user:alice", map[string]string{"namespace": "payments", "cluster_role": "view"})
	srv.FailNext(kubefake.Forbidden)
	_, err := p.Check(t.Context(), a)
	if err == nil || !strings.Contains(err.Error(), `User "system:serviceaccount:jitbot:jitbot" cannot get resource "rolebindings"`) {
		t.Errorf("Check meeting 403: %v", err)
	}
	srv.FailNext(kubefake.Forbidden)
	err = p.Revoke(t.Context(), a)
	if err == nil || !strings.Contains(err.Error(), `cannot list resource "rolebindings"`) {
		t.Errorf("Revoke meeting 403 on list: %v", err)
	}
	srv.FailNext(kubefake.InternalError)
	_, err = p.ListOwned(t.Context())
	if err == nil || !strings.Contains(err.Error(), "kubefake: injected failure") {
		t.Errorf("ListOwned meeting 500: %v", err)
	}
}

// TestStandingBindingIsPreExisting: a binding someone else made of the same subject and role in the same scope
// is standing access: Grant creates nothing and says so; Check sees the access; Revoke and ListOwned never touch
// it. With a reference of its own (an overlapping lease) jitbot keeps ownership and creates its binding.
func TestStandingBindingIsPreExisting(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	a := assignment("g-stand", "user:alice", map[string]string{"namespace": "payments", "cluster_role": "edit"})
	srv.PutRoleBinding(rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice-edit", Namespace: "payments", Labels: map[string]string{"app.kubernetes.io/managed-by": "Helm"}},
		Subjects: []rbacv1.Subject{subjectOf(t, "user:alice"), subjectOf(t, "user:bob")}, RoleRef: roleRefOf(a.Target)})
	ref, err := p.Grant(t.Context(), a)
	if err != nil || !grants.IsPreExisting(ref) || !strings.Contains(ref, "rolebinding/payments/alice-edit") {
		t.Fatalf("Grant over standing access = %q, %v", ref, err)
	}
	if n := len(srv.RoleBindings()); n != 1 {
		t.Fatalf("%d bindings, want only the standing one", n)
	}
	if ok, err := p.Check(t.Context(), a); err != nil || !ok {
		t.Fatalf("Check = %v, %v", ok, err)
	}
	if owned, err := p.ListOwned(t.Context()); err != nil || len(owned) != 0 {
		t.Fatalf("ListOwned = %+v, %v", owned, err)
	}
	b := assignment("g-stand-2", "user:alice", a.Target)
	b.Ref = "rolebinding/payments/jitbot-g-earlier" // a reference of jitbot's own
	if ref, err := p.Grant(t.Context(), b); err != nil || grants.IsPreExisting(ref) {
		t.Fatalf("Grant with jitbot's own reference = %q, %v", ref, err)
	}
	if err := p.Revoke(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if rbs := srv.RoleBindings(); len(rbs) != 1 || rbs[0].Name != "alice-edit" {
		t.Fatalf("bindings after revoke: %+v", rbs)
	}
}

// TestCheckWithOwnReference: with the lease's own reference (verifying jitbot's revoke) Check answers for
// jitbot's bindings only; a binding someone added after the revoke does not make the revoke look failed.
func TestCheckWithOwnReference(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	a := assignment("g-own", "user:alice", map[string]string{"namespace": "payments", "cluster_role": "edit"})
	ref, err := p.Grant(t.Context(), a)
	if err != nil || grants.IsPreExisting(ref) {
		t.Fatalf("Grant = %q, %v", ref, err)
	}
	a.Ref = ref
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	srv.PutRoleBinding(rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice-edit", Namespace: "payments"},
		Subjects: []rbacv1.Subject{subjectOf(t, "user:alice")}, RoleRef: roleRefOf(a.Target)})
	if ok, err := p.Check(t.Context(), a); err != nil || ok {
		t.Fatalf("Check with jitbot's reference = %v, %v; the new binding is not jitbot's", ok, err)
	}
	a.Ref = ""
	if ok, err := p.Check(t.Context(), a); err != nil || !ok {
		t.Fatalf("Check without a reference = %v, %v; want the access from any source", ok, err)
	}
}
