package app

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitbot/jitbot/grants/kube/kubefake"
	"github.com/jitbot/jitbot/policy"
)

// TestProbePolicyFindsMissingKubernetesRoles: `jitbot policy check --probe` connects to the cluster and reports a
// role whose target names a ClusterRole that does not exist (with the policy's file, line and field); a cluster
// that cannot be reached is a warning, not a problem. Nothing is created.
func TestProbePolicyFindsMissingKubernetesRoles(t *testing.T) {
	srv := kubefake.New(kubefake.Options{TLS: true})
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {server: %q, certificate-authority-data: %q}
- name: gone
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: bot
  user: {token: %q}
contexts:
- name: fake
  context: {cluster: fake, user: bot}
- name: gone
  context: {cluster: gone, user: bot}
current-context: fake
`, srv.URL(), base64.StdEncoding.EncodeToString(srv.CAData()), srv.Token())), 0o600); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`version: 1
defaults: {approval_channel: C0APPROVALS}
providers:
  k8s:
    type: kubernetes
    kubernetes: {kubeconfig: %q, context: fake}
  k8s-gone:
    type: kubernetes
    kubernetes: {kubeconfig: %q, context: gone}
roles:
  view:
    provider: k8s
    target: {cluster_role: view}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
  typo:
    provider: k8s
    target: {namespace: payments, cluster_role: veiw}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
  elsewhere:
    provider: k8s-gone
    target: {cluster_role: view}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
`, kc, kc)
	p, err := policy.Parse("k8s.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if probs := CheckPolicy(p); len(probs) != 0 {
		t.Fatalf("offline check: %v", probs)
	}
	probs, warns := ProbePolicy(t.Context(), p, func(string) string { return "" })
	if len(probs) != 1 || probs[0].Field != "roles.typo.target" || probs[0].File != "k8s.yaml" || probs[0].Line == 0 ||
		!strings.Contains(probs[0].Message, `ClusterRole "veiw" does not exist`) {
		t.Fatalf("problems = %+v", probs)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "roles.elsewhere.target: not verified") {
		t.Fatalf("warnings = %q", warns)
	}
	if n := len(srv.RoleBindings()) + len(srv.ClusterRoleBindings()); n != 0 {
		t.Fatalf("the probe created %d bindings", n)
	}
	for _, w := range warns {
		if strings.Contains(w, srv.Token()) {
			t.Fatal("a warning contains the token")
		}
	}
}
