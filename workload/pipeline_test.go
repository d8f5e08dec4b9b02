package workload_test

import (
	"testing"

	"github.com/jitbot/jitbot/workload"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

func TestPipelineContext(t *testing.T) {
	gh := oidcfake.GitHubActions("acme/web", "refs/heads/main", "production")
	gh["run_attempt"] = "2"
	gl := oidcfake.GitLabCI("acme/web", "main", "production")
	evil := oidcfake.GitHubActions("acme/web", "refs/heads/main", "")
	evil["run_id"] = "1/../../evil"
	cases := []struct {
		name string
		id   workload.Identity
		want workload.PipelineContext
	}{
		{"github.com", workload.Identity{Method: workload.MethodOIDC, Issuer: workload.GitHubActionsIssuer, Claims: gh}, workload.PipelineContext{
			Provider: "github", Repository: "acme/web", Workflow: "deploy", Ref: "refs/heads/main", Commit: gh["sha"].(string),
			Environment: "production", Event: "push", RunID: "4242424242", Actor: "octocat",
			RunURL: "https://github.com/acme/web/actions/runs/4242424242/attempts/2"}},
		{"GitHub Enterprise Server", workload.Identity{Method: workload.MethodOIDC, Issuer: "https://ghe.example.com/_services/token", Claims: oidcfake.GitHubActions("acme/web", "refs/heads/main", "")}, workload.PipelineContext{
			Provider: "github", Repository: "acme/web", Workflow: "deploy", Ref: "refs/heads/main", Commit: gh["sha"].(string),
			Event: "push", RunID: "4242424242", Actor: "octocat", RunURL: "https://ghe.example.com/acme/web/actions/runs/4242424242"}},
		{"gitlab", workload.Identity{Method: workload.MethodOIDC, Issuer: "https://gitlab.example.com", Claims: gl}, workload.PipelineContext{
			Provider: "gitlab", Repository: "acme/web", Workflow: gl["ci_config_ref_uri"].(string), Ref: "main", Commit: gl["sha"].(string), Environment: "production",
			Event: "push", RunID: "574", Actor: "sample-user", ActorEmail: "sample-user@example.com",
			RunURL: "https://gitlab.example.com/acme/web/-/pipelines/574"}},
		{"odd run id: no link", workload.Identity{Method: workload.MethodOIDC, Issuer: workload.GitHubActionsIssuer, Claims: evil}, workload.PipelineContext{
			Provider: "github", Repository: "acme/web", Workflow: "deploy", Ref: "refs/heads/main", Commit: gh["sha"].(string),
			Event: "push", RunID: "1/../../evil", Actor: "octocat"}},
		{"other issuer", workload.Identity{Method: workload.MethodOIDC, Issuer: "https://idp.example.com", Claims: map[string]any{"ref": "main", "sub": "x"}},
			workload.PipelineContext{Ref: "main"}},
		{"API token", workload.Identity{Method: workload.MethodAPIToken, Owner: "deploy-bot"}, workload.PipelineContext{}},
	}
	for _, tc := range cases {
		if got := tc.id.Pipeline(); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}
