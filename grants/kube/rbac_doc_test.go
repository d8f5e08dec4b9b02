package kube_test

import (
	"os"
	"strings"
	"testing"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/kube/kubefake"
	rbacv1 "k8s.io/api/rbac/v1"
)

// documentedBotRules reads the least-privilege RBAC from docs/providers/kubernetes.md (the first yaml block
// after its heading) and returns the rules of every Role and ClusterRole in it.
func documentedBotRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	raw, err := os.ReadFile("../../docs/providers/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "## The RBAC the bot needs")
	if !ok {
		t.Fatal("docs/providers/kubernetes.md has no RBAC section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block in the RBAC section")
	}
	var rules []rbacv1.PolicyRule
	for _, doc := range strings.Split(block, "\n---\n") {
		var kind struct {
			Kind string `json:"kind"`
		}
		strictDecodeLoose(t, doc, &kind)
		if kind.Kind == "Role" || kind.Kind == "ClusterRole" {
			var role rbacv1.ClusterRole // a Role decodes the same way (metadata and rules)
			strictDecode(t, doc, &role)
			rules = append(rules, role.Rules...)
		}
	}
	if len(rules) == 0 {
		t.Fatal("no rules found in the documented RBAC")
	}
	return rules
}

// TestDocumentedRBACSuffices: with exactly the documented rules (the fake authorizes every request against
// them and applies escalation prevention), the adapter grants, checks, revokes and reconciles the roles the
// documented policy names; a role outside the documented list is refused permanently. The fake applies the
// namespaced Role's rules cluster-wide, a simplification that can only make it more permissive.
func TestDocumentedRBACSuffices(t *testing.T) {
	srv := newFake(kubefake.Options{CallerRules: documentedBotRules(t)})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	for i, target := range []map[string]string{
		{"namespace": "payments", "role": "debugger"},
		{"namespace": "payments", "cluster_role": "edit"},
		{"cluster_role": "view"},
	} {
		a := assignment("g-doc-"+string(rune('a'+i)), "user:alice", target)
		if _, err := p.Grant(t.Context(), a); err != nil {
			t.Fatalf("grant %v: %v", target, err)
		}
		if ok, err := p.Check(t.Context(), a); err != nil || !ok {
			t.Fatalf("check %v: %v %v", target, ok, err)
		}
		if _, err := p.ListOwned(t.Context()); err != nil {
			t.Fatalf("ListOwned: %v", err)
		}
		if err := p.Revoke(t.Context(), a); err != nil {
			t.Fatalf("revoke %v: %v", target, err)
		}
	}
	_, err := p.Grant(t.Context(), assignment("g-doc-admin", "user:alice", map[string]string{"cluster_role": "admin"}))
	if err == nil || !grants.IsPermanent(err) {
		t.Fatalf("grant of a role outside the documented RBAC: %v", err)
	}
	if n := len(srv.ClusterRoleBindings()); n != 0 {
		t.Fatalf("%d ClusterRoleBindings left", n)
	}
}
