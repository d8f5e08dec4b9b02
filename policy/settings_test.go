package policy

import (
	"strings"
	"testing"
)

// Issue 12: a provider setting written as a list where the type takes a single value was dropped without a
// word (aws-iam region: [eu-west-1] signed for us-east-1, kubernetes kubeconfig: [...] used the pod's
// service account). It is a problem naming the file, line and field; a single value where a list is
// expected stays a one-element list.
func TestProviderSettingListWhereSingleValueExpected(t *testing.T) {
	src := strings.Replace(base, "providers:\n", `providers:
  iam:
    type: aws-iam
    principal_from: slack_user_id
    aws-iam: {region: [eu-west-1], scan_users: alice}
  k8s:
    type: kubernetes
    principal_from: slack_user_id
    kubernetes:
      kubeconfig: [/etc/a, /etc/b]
      namespaces: payments
`, 1)
	expect(t, problemsOf(t, src),
		want{8, "providers.iam.aws-iam.region", "expected a single value, got a list"},
		want{13, "providers.k8s.kubernetes.kubeconfig", "expected a single value, got a list"})
}

// A webhook whose secret_env is written empty was accepted by `policy check`, and `serve` then failed to
// start looking for an environment variable with no name. It is required like an absent one.
func TestWebhookEmptySecretEnvIsRequired(t *testing.T) {
	expect(t, problemsOf(t, edit(t, "secret_env: HOOK_SECRET", `secret_env: ""`)),
		want{10, "providers.hook.webhook.secret_env", "is required"})
}
