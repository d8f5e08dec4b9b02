package policy

import (
	"strings"
	"testing"
	"time"
)

// pipelineBase is base plus an issuer, two workloads and a pipeline role.
const pipelineBase = base + `  deploy:
    provider: hook
    target: {app: web}
    requesters: {workloads: [web-main, legacy]}
    approvers: {users: [U02B]}
    max_duration: 1h
    conditions:
      - 'request.duration <= duration("30m")'
    auto_approve:
      - workloads: [web-main]
        when: 'claims.ref == "refs/heads/main" && claims.environment == "production"'
        max_duration: 15m
issuers:
  github:
    url: https://token.actions.githubusercontent.com
    audience: https://jitbot.example.com
workloads:
  web-main:
    issuer: github
    claims:
      repository: acme/web
      ref: [refs/heads/main, refs/tags/v*]
    heartbeat_timeout: 20s
    principals: {hook: ci-web}
  legacy:
    api_token_owner: legacy-ci
    principals: {hook: ci-legacy}
identities:
  U01A: {github: octocat}
`

func TestPipelinePolicy(t *testing.T) {
	p, err := Parse("policy.yaml", []byte(pipelineBase))
	if err != nil {
		t.Fatal(err)
	}
	iss := p.Issuers["github"]
	if iss == nil || iss.Kind != IssuerGitHub || iss.ActorClaim != "actor" || iss.Leeway != DefaultLeeway ||
		len(iss.Audiences) != 1 || iss.Audiences[0] != "https://jitbot.example.com" {
		t.Fatalf("issuer = %+v", iss)
	}
	w := p.Workloads["web-main"]
	if w == nil || w.Issuer != "github" || w.HeartbeatTimeout != 20*time.Second || len(w.Claims["ref"]) != 2 || w.Claims["repository"][0] != "acme/web" {
		t.Fatalf("workload = %+v", w)
	}
	if l := p.Workloads["legacy"]; l.APITokenOwner != "legacy-ci" || l.HeartbeatTimeout != DefaultHeartbeatTimeout {
		t.Fatalf("legacy = %+v", l)
	}
	r := p.Roles["deploy"]
	if len(r.Requesters.Workloads) != 2 || len(r.Conditions) != 1 || len(r.AutoApprove) != 1 || r.AutoApprove[0].MaxDuration != 15*time.Minute || r.AutoApprove[0].When == nil {
		t.Fatalf("role = %+v", r)
	}
	if pr, err := p.WorkloadPrincipal(r, "web-main"); err != nil || pr != "ci-web" {
		t.Fatalf("principal = %q, %v", pr, err)
	}
	if u := p.ActorUser("github", "octocat"); u != "U01A" {
		t.Fatalf("actor user = %q", u)
	}
	if u := p.ActorUser("github", "mallory"); u != "" {
		t.Fatalf("unmapped actor user = %q", u)
	}
}

func TestPipelinePolicyProblems(t *testing.T) {
	cases := []struct {
		name     string
		old, new string
		want     []want
	}{
		{"unknown workload", "[web-main, legacy]", "[web-main, nobody]",
			[]want{{20, "roles.deploy.requesters.workloads[1]", `unknown workload "nobody"`}}},
		{"no audience", "    audience: https://jitbot.example.com\n", "",
			[]want{{30, "issuers.github.audiences", "is required"}}},
		{"no claim rules", "    claims:\n      repository: acme/web\n      ref: [refs/heads/main, refs/tags/v*]\n", "",
			[]want{{34, "workloads.web-main.claims", "is required for an OIDC workload"}}},
		{"bad glob", "repository: acme/web\n", "repository: 'acme/web\\'\n",
			[]want{{37, "workloads.web-main.claims.repository", "ends with an escape character"}}},
		{"unknown issuer", "    issuer: github\n", "    issuer: gitlab\n",
			[]want{{35, "workloads.web-main.issuer", `unknown issuer "gitlab"`}}},
		{"neither issuer nor token", "    api_token_owner: legacy-ci\n", "",
			[]want{{41, "workloads.legacy", "needs issuer"}}},
		{"http issuer", "url: https://token.actions", "url: http://token.actions",
			[]want{{31, "issuers.github.url", "is not an issuer URL"}}},
		{"heartbeat too short", "heartbeat_timeout: 20s", "heartbeat_timeout: 10ms",
			[]want{{39, "workloads.web-main.heartbeat_timeout", "between 1s and 1h"}}},
		{"auto approval longer than role", "        max_duration: 15m", "        max_duration: 2h",
			[]want{{28, "roles.deploy.auto_approve[0].max_duration", "longer than the role's max_duration"}}},
		{"no principal", "    principals: {hook: ci-legacy}\n", "",
			[]want{{20, "roles.deploy.requesters.workloads", "workload legacy has no principal at provider hook"}}},
		{"login mapped twice", "  U01A: {github: octocat}\n", "  U01A: {github: octocat}\n  U02B: {github: octocat}\n",
			[]want{{46, "identities.U02B.github", `login "octocat" is already mapped to U01A`}}},
		{"workloads are not approvers", "    approvers: {users: [U02B]}\n    max_duration: 1h", "    approvers: {workloads: [web-main]}\n    max_duration: 1h",
			[]want{{21, "roles.deploy.approvers", "lists nobody"}, {21, "roles.deploy.approvers", `unknown field "workloads"`}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(pipelineBase, tc.old) {
				t.Fatalf("no %q in the policy", tc.old)
			}
			src := strings.Replace(pipelineBase, tc.old, tc.new, 1)
			expect(t, problemsOf(t, src), tc.want...)
		})
	}
}

// TestCELErrorPosition checks that a CEL compile error points into the expression, in each YAML style.
func TestCELErrorPosition(t *testing.T) {
	cases := []struct {
		name      string
		cond      string // replaces the conditions list item
		line, col int
	}{
		// '@' is not a CEL token: the error is at the '@'.
		{"single quoted", `      - 'request.duration @ 1'`, 24, 27},
		{"plain", `      - request.duration @ 1`, 24, 26},
		{"double quoted", `      - "request.duration @ 1"`, 24, 27},
		{"literal block", "      - |\n        request.duration > duration(\"1m\") &&\n          request.duration @ 1", 26, 28},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(pipelineBase, `      - 'request.duration <= duration("30m")'`, tc.cond, 1)
			ps := problemsOf(t, src)
			if len(ps) != 1 || ps[0].Field != "roles.deploy.conditions[0]" || !strings.HasPrefix(ps[0].Message, "CEL: ") {
				t.Fatalf("problems:\n%s", ps.Error())
			}
			if ps[0].Line != tc.line || ps[0].Column != tc.col {
				t.Fatalf("CEL error at %d:%d, want %d:%d (%s)", ps[0].Line, ps[0].Column, tc.line, tc.col, ps[0])
			}
		})
	}
}

func TestExamplePipelinePolicy(t *testing.T) {
	t.Setenv("JITBOT_WEBHOOK_SECRET", "set")
	p, err := Load("../examples/pipelines/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if w := p.Warnings(); len(w) != 0 {
		t.Fatalf("warnings: %v", w)
	}
	if len(p.Workloads) != 2 || len(p.Issuers) != 2 || p.Issuers["gitlab"].Kind != IssuerGitLab {
		t.Fatalf("workloads %v issuers %v", p.WorkloadNames(), p.IssuerNames())
	}
}
