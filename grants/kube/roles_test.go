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
