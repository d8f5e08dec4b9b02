package workload

import (
	"net/url"
	"regexp"
	"strings"
)

// PipelineContext is what an approver should see about a pipeline's request, taken from the verified
// token's claims only (never from fields the caller sends). Fields the token does not carry are empty.
type PipelineContext struct {
	Provider    string // "github", "gitlab", or "" for another issuer
	Repository  string // GitHub repository (owner/name) or GitLab project path (group/project)
	Workflow    string // GitHub workflow name; GitLab: the pipeline definition (ci_config_ref_uri)
	Ref         string // the git ref (GitHub: refs/heads/main; GitLab: main)
	Commit      string // the commit SHA
	Environment string // the CI environment, if the job has one
	Event       string // what started the run (GitHub event_name, GitLab pipeline_source)
	RunID       string // GitHub run id, GitLab pipeline id
	RunURL      string // a link to the run, when it can be derived from the issuer and the claims
	Actor       string // the person who triggered the run (GitHub actor, GitLab user_login)
	ActorEmail  string // GitLab user_email (GitHub tokens carry none)
}

var (
	safePath = regexp.MustCompile(`\A[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)+\z`)
	safeID   = regexp.MustCompile(`\A[0-9]{1,20}\z`)
)

// Pipeline extracts the pipeline context of an OIDC identity from GitHub Actions or GitLab CI claims.
// For other issuers (and API tokens) only what generic claims say is filled in (nothing, for API tokens).
func (id Identity) Pipeline() PipelineContext {
	if id.Method != MethodOIDC {
		return PipelineContext{}
	}
	c := func(name string) string {
		s, _ := id.Claims[name].(string)
		return s
	}
	switch {
	case c("repository") != "" && c("run_id") != "" && (c("workflow_ref") != "" || c("job_workflow_ref") != ""):
		p := PipelineContext{
			Provider: "github", Repository: c("repository"), Workflow: c("workflow"), Ref: c("ref"), Commit: c("sha"),
			Environment: c("environment"), Event: c("event_name"), RunID: c("run_id"), Actor: c("actor"),
		}
		if safePath.MatchString(p.Repository) && safeID.MatchString(p.RunID) {
			p.RunURL = githubWebURL(id.Issuer) + "/" + p.Repository + "/actions/runs/" + p.RunID
			if a := c("run_attempt"); safeID.MatchString(a) && a != "1" {
				p.RunURL += "/attempts/" + a
			}
		}
		return p
	case c("project_path") != "" && c("pipeline_id") != "":
		p := PipelineContext{
			Provider: "gitlab", Repository: c("project_path"), Workflow: c("ci_config_ref_uri"), Ref: c("ref"), Commit: c("sha"),
			Environment: c("environment"), Event: c("pipeline_source"), RunID: c("pipeline_id"), Actor: c("user_login"),
			ActorEmail: c("user_email"),
		}
		// GitLab's issuer is the instance's URL, so the pipeline lives under it.
		if u, err := url.Parse(id.Issuer); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" &&
			safePath.MatchString(p.Repository) && safeID.MatchString(p.RunID) {
			p.RunURL = strings.TrimSuffix(id.Issuer, "/") + "/" + p.Repository + "/-/pipelines/" + p.RunID
		}
		return p
	}
	return PipelineContext{Ref: c("ref"), Commit: c("sha"), Environment: c("environment")}
}

// githubWebURL is the web host of a GitHub issuer: github.com for token.actions.githubusercontent.com
// (also with an enterprise slug), the server itself for GitHub Enterprise Server
// (https://HOST/_services/token).
func githubWebURL(issuer string) string {
	if u, err := url.Parse(issuer); err == nil && u.Scheme == "https" && strings.HasPrefix(u.Path, "/_services/token") {
		return "https://" + u.Host
	}
	return "https://github.com"
}
