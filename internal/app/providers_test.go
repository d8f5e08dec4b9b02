package app

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/aws/identitycenter"
	"github.com/jitbot/jitbot/policy"
)

func TestCheckPolicyAcceptsTheCloudExample(t *testing.T) {
	p, err := policy.Load("../../examples/policy-clouds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if probs := CheckPolicy(p); len(probs) != 0 {
		t.Fatalf("example has problems: %v", probs)
	}
}

// The adapters judge their own settings and targets; CheckPolicy reports what they say with the policy
// file's name, line and field.
func TestCheckPolicyNamesFileLineAndField(t *testing.T) {
	src := `version: 1
defaults: {approval_channel: C0APPROVALS}
providers:
  gcp:
    type: gcp-iam
    gcp-iam: {scopes: [projects/acme-prod]}
  k8s:
    type: kubernetes
    kubernetes: {namespaces: [payments]}
  az:
    type: azure-rbac
    azure-rbac: {subscription_id: not-a-guid}
  sso:
    type: aws-identity-center
    aws-identity-center: {instance_arn: "arn:aws:sso:::instance/ssoins-1234567890abcdef", identity_store_id: d-1234567890, region: us-east-1}
roles:
  gcp-owner:
    provider: gcp
    target: {project: acme-prod, role: roles/owner}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
  k8s-admin:
    provider: k8s
    target: {cluster_role: admin}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
  sso-admin:
    provider: sso
    target: {account_id: "12345", permission_set_arn: nope}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
`
	// The adapters judge their settings while the policy is read, at the key they are about.
	_, err := policy.Parse("clouds.yaml", []byte(src))
	if want := `clouds.yaml:12:35: providers.az.azure-rbac.subscription_id: "not-a-guid" is not a GUID`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Parse = %v, want a problem %q", err, want)
	}
	p, err := policy.Parse("clouds.yaml", []byte(strings.Replace(src, "not-a-guid", "00000000-0000-4000-8000-000000000001", 1)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pr := range CheckPolicy(p) {
		got = append(got, pr.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		`clouds.yaml:19:13: roles.gcp-owner.target: not a valid gcp-iam target: `,
		`basic role`,
		`clouds.yaml:24:13: roles.k8s-admin.target: not a valid kubernetes target: `,
		`clouds.yaml:29:13: roles.sso-admin.target: not a valid aws-identity-center target: `,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d problems, want 3:\n%s", len(got), all)
	}
}

// Issue 10 item 4: the Identity Center adapter's drift scopes come from the targets of the roles that use it.
func TestIdentityCenterScopesFromRoleTargets(t *testing.T) {
	src := `version: 1
defaults: {approval_channel: C0APPROVALS}
providers:
  sso:
    type: aws-identity-center
    aws-identity-center: {instance_arn: "arn:aws:sso:::instance/ssoins-1234567890abcdef", identity_store_id: d-1234567890, region: us-east-1}
  other:
    type: aws-identity-center
    aws-identity-center: {instance_arn: "arn:aws:sso:::instance/ssoins-abcdef1234567890", identity_store_id: d-0987654321, region: eu-west-1}
roles:
  prod-admin:
    provider: sso
    target: {account_id: "111122223333", permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-aaaaaaaaaaaaaaaa"}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
  prod-admin-again:
    provider: sso
    target: {account_id: "111122223333", permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-aaaaaaaaaaaaaaaa"}
    requesters: {users: [U0C]}
    approvers: {users: [U0B]}
  staging-read:
    provider: sso
    target: {account_id: "444455556666", permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-bbbbbbbbbbbbbbbb"}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
  elsewhere:
    provider: other
    target: {account_id: "777788889999", permission_set_arn: "arn:aws:sso:::permissionSet/ssoins-abcdef1234567890/ps-cccccccccccccccc"}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
`
	p, err := policy.Parse("sso.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	// Static credentials from the environment, no shared files: nothing outside the test is read.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	provs, err := BuildProviders(t.Context(), p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	got := provs["sso"].(*identitycenter.Provider).Scopes()
	want := []identitycenter.Scope{
		{AccountID: "111122223333", PermissionSetARN: "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-aaaaaaaaaaaaaaaa"},
		{AccountID: "444455556666", PermissionSetARN: "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-bbbbbbbbbbbbbbbb"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("scopes of sso = %v, want %v", got, want)
	}
	if got := provs["other"].(*identitycenter.Provider).Scopes(); len(got) != 1 || got[0].AccountID != "777788889999" {
		t.Fatalf("scopes of other = %v", got)
	}
}

// The policy's pending_timeout must reach the adapter: it is the attempt budget the manager gives a grant or
// revoke that waits for an asynchronous receiver.
func TestWebhookPendingTimeoutReachesTheProvider(t *testing.T) {
	src := `version: 1
defaults: {approval_channel: C0APPROVALS}
providers:
  hook:
    type: webhook
    webhook: {url: "https://hooks.example.com/jit", secret_env: HOOK_SECRET, timeout: 5s, pending_timeout: 3m}
roles:
  db:
    provider: hook
    target: {resource: prod-db, permission: admin}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
`
	p, err := policy.Parse("hook.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	provs, err := BuildProviders(t.Context(), p, func(name string) string {
		if name == "HOOK_SECRET" {
			return "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	b, ok := provs["hook"].(grants.AttemptBudgeter)
	if !ok {
		t.Fatalf("the webhook provider declares no attempt budget")
	}
	if got := b.AttemptBudget("grant"); got != 3*time.Minute+5*time.Second {
		t.Errorf("grant budget = %v, want pending_timeout + timeout = 3m5s", got)
	}
	if got := b.AttemptBudget("check"); got != 0 {
		t.Errorf("check budget = %v, want 0 (a check never waits for pending)", got)
	}
}

// Issue 12: docs/providers/aws.md documents inline_policy targets that name a document of the provider's
// policies, but the policy file could not set policies (its settings were strings and lists only), so a
// named target was always refused. The policies setting is a mapping of names to JSON documents, judged by
// the adapter with the targets that name them.
func TestIAMNamedInlinePolicies(t *testing.T) {
	src := `version: 1
defaults: {approval_channel: C0APPROVALS}
providers:
  iam:
    type: aws-iam
    principal_from: slack_user_id
    aws-iam:
      policies:
        logs-read: '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:GetLogEvents", "Resource": "*"}]}'
        broken: '{'
roles:
  logs:
    provider: iam
    target: {inline_policy: logs-read}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
  typo:
    provider: iam
    target: {inline_policy: logs-reed}
    requesters: {users: [U0A]}
    approvers: {users: [U0B]}
`
	_, err := policy.Parse("iam.yaml", []byte(src))
	if want := `iam.yaml:9:9: providers.iam.aws-iam.policies: broken: policy document is not a JSON object`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Parse = %v, want a problem %q", err, want)
	}
	p, err := policy.Parse("iam.yaml", []byte(strings.Replace(src, "broken: '{'", `broken: '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "logs:GetLogEvents", "Resource": "*"}]}'`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pr := range CheckPolicy(p) {
		got = append(got, pr.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		`iam.yaml:19:13: roles.typo.target: not a valid aws-iam target: inline_policy "logs-reed" names no policy of the provider's policies (known: broken, logs-read)`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(got) != 1 {
		t.Errorf("%d problems, want 1:\n%s", len(got), all)
	}
}
