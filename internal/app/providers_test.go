package app

import (
	"strings"
	"testing"

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
	p, err := policy.Parse("clouds.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pr := range CheckPolicy(p) {
		got = append(got, pr.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		`clouds.yaml:10: providers.az.azure-rbac: `,
		`subscription_id "not-a-guid" is not a GUID`,
		`clouds.yaml:19:13: roles.gcp-owner.target: not a valid gcp-iam target: `,
		`basic role`,
		`clouds.yaml:24:13: roles.k8s-admin.target: not a valid kubernetes target: `,
		`clouds.yaml:29:13: roles.sso-admin.target: not a valid aws-identity-center target: `,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q:\n%s", want, all)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d problems, want 4:\n%s", len(got), all)
	}
}
