package api

import (
	"testing"

	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/workload"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

func TestPipelineContextFromClaims(t *testing.T) {
	pol, err := policy.Parse("p.yaml", []byte(`version: 1
defaults: {approval_channel: C0A}
providers:
  hook: {type: webhook, principal_from: slack_user_id, webhook: {url: "https://h.example.com", secret_env: S}}
issuers:
  gitlab: {url: https://gitlab.example.com, audience: jitbot}
  ghes: {url: https://github.acme.com/_services/token, audience: jitbot}
workloads:
  api: {issuer: gitlab, claims: {project_path: acme/api}, principals: {hook: ci}}
roles:
  r: {provider: hook, target: {a: b}, requesters: {workloads: [api]}, approvers: {users: [U0B]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	gl := oidcfake.GitLabCI("acme/api", "main", "production")
	pc := pipelineContext(pol, workload.Identity{Method: workload.MethodOIDC, Issuer: "https://gitlab.example.com", IssuerName: "gitlab", Subject: "s", Claims: gl})
	if pc.Repository != "acme/api" || pc.Ref != "refs/heads/main" || pc.RunID != "job:302" || pc.Actor != "sample-user" ||
		pc.RunURL != "https://gitlab.example.com/acme/api/-/jobs/302" || pc.Commit == "" || pc.Workflow == "" {
		t.Fatalf("GitLab context: %+v", pc)
	}
	gh := oidcfake.GitHubActions("acme/web", "refs/heads/main", "production")
	pc = pipelineContext(pol, workload.Identity{Method: workload.MethodOIDC, Issuer: "https://github.acme.com/_services/token", IssuerName: "ghes", Subject: "s", Claims: gh})
	if pc.RunURL != "https://github.acme.com/acme/web/actions/runs/4242424242/attempts/1" || pc.Actor != "octocat" || pc.RunID != "run:4242424242/1" {
		t.Fatalf("GitHub Enterprise context: %+v", pc)
	}
	pc = pipelineContext(pol, workload.Identity{Method: workload.MethodAPIToken, Subject: "tok-1", Owner: "reporting"})
	if pc.Method != "api_token" || pc.Subject != "tok-1" || pc.RunID != "" || pc.Actor != "" {
		t.Fatalf("API token context: %+v", pc)
	}
}
