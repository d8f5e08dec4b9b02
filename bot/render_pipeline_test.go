package bot

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
)

func TestPipelineApprovalMessageShowsVerifiedContext(t *testing.T) {
	now := time.Now()
	req := store.Request{ID: "r-1", Requester: store.WorkloadRequester("web-main"), RequesterKind: store.RequesterWorkload,
		Workload: "web-main", Role: "deploy", Duration: 15 * time.Minute, Reason: "release", State: store.RequestPending,
		RequiredApprovals: 1, CreatedAt: now, PendingUntil: now.Add(time.Hour),
		Pipeline: &store.PipelineContext{Method: "oidc", Issuer: "github", Subject: "repo:acme/web:environment:production", RunID: "run:42/1",
			Repository: "acme/web", Workflow: "deploy", RunURL: "https://github.com/acme/web/actions/runs/42/attempts/1",
			Commit: "0123456789abcdef0123", Ref: "refs/heads/<!channel>", Environment: "production", Actor: "octocat", ActorUser: "U0OCTO"}}
	text, blocks := ApprovalMessage(req, nil, nil, now)
	data := marshal(blocks)
	all := text + string(data)
	for _, want := range []string{"Pipeline request", "web-main", "acme/web", "deploy", "<https://github.com/acme/web/actions/runs/42/attempts/1|42/1>",
		"0123456789ab", "production", "octocat", "<@U0OCTO>, who may not approve it", "refs/heads/&lt;!channel&gt;", "jit_approve"} {
		if !strings.Contains(all, want) {
			t.Errorf("approval message lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "<@workload:") || strings.Contains(all, "<!channel>") {
		t.Fatalf("approval message mentions the workload as a user or lets a claim ping the channel:\n%s", all)
	}
	// A run link that is not an http(s) URL is shown as text, never as a link.
	req.Pipeline.RunURL = "javascript:alert(1)"
	_, blocks = ApprovalMessage(req, nil, nil, now)
	data = marshal(blocks)
	if strings.Contains(string(data), "javascript:") {
		t.Fatalf("unsafe run link rendered: %s", data)
	}
	// Auto-approval is credited to the policy, not to a fake user.
	req.State, req.Approvals = store.RequestApproved, []store.Decision{{By: "system:auto-approve", At: now}}
	_, blocks = ApprovalMessage(req, nil, nil, now)
	data = marshal(blocks)
	if !strings.Contains(string(data), "auto_approve rule") || strings.Contains(string(data), "<@system:") {
		t.Fatalf("auto-approval credit: %s", data)
	}
}

func marshal(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return b.String()
}
