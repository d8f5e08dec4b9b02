package bot

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/slack-go/slack"

	"github.com/jitbot/jitbot/store"
)

// requesterText names who asked: a Slack user as a mention, a pipeline as its workload.
func requesterText(req store.Request) string {
	if req.IsWorkload() {
		return "pipeline `" + escape(req.Workload) + "`"
	}
	return "<@" + req.Requester + ">"
}

// deciderText names who decided: a Slack user as a mention, jitbot itself by what it did.
func deciderText(id string) string {
	switch {
	case id == "system:auto-approve":
		return "jitbot (an auto_approve rule of the policy)"
	case strings.HasPrefix(id, "system:"):
		return "jitbot (" + strings.TrimPrefix(id, "system:") + ")"
	}
	return "<@" + id + ">"
}

// pipelineBlocks show approvers what will run: the verified context from the job's token. Every value is
// escaped; the run link is shown only when it is an http(s) URL.
func pipelineBlocks(req store.Request) []slack.Block {
	pc := req.Pipeline
	if pc == nil {
		pc = &store.PipelineContext{}
	}
	how := "a verified OIDC token"
	if pc.Issuer != "" {
		how += " from issuer `" + escape(pc.Issuer) + "`"
	}
	if pc.Method == "api_token" {
		how = "a jitbot API token"
	}
	head := fmt.Sprintf(":gear: *Pipeline request* by workload `%s`, authenticated with %s. What approvers see below comes from the token, not from the caller.", escape(req.Workload), how)
	var fields []*slack.TextBlockObject
	add := func(name, v string) {
		if v != "" && len(fields) < 10 { // Slack allows 10 fields in a section
			fields = append(fields, mrkdwn("*"+name+"*\n"+clip(v, 1900)))
		}
	}
	add("Repository", escape(pc.Repository))
	add("Workflow", escape(pc.Workflow))
	if u, err := url.Parse(pc.RunURL); err == nil && (u.Scheme == "https" || u.Scheme == "http") && pc.RunURL != "" && !strings.ContainsAny(pc.RunURL, "|<> ") {
		add("Run", "<"+pc.RunURL+"|"+escape(strings.TrimPrefix(strings.TrimPrefix(pc.RunID, "run:"), "job:"))+">")
	} else {
		add("Run", escape(pc.RunID))
	}
	commit := pc.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if commit != "" {
		add("Commit", "`"+escape(commit)+"`")
	}
	add("Ref", escape(pc.Ref))
	add("Environment", escape(pc.Environment))
	actor := escape(pc.Actor)
	if pc.ActorUser != "" {
		actor += fmt.Sprintf(" (<@%s>, who may not approve it)", pc.ActorUser)
	}
	add("Triggered by", actor)
	if len(fields) < 10 && pc.Subject != "" {
		add("Token subject", "`"+escape(clip(pc.Subject, 300))+"`")
	}
	blocks := []slack.Block{slack.NewSectionBlock(mrkdwn(clip(head, 2900)), nil, nil)}
	if len(fields) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(nil, fields, nil))
	}
	return blocks
}

// withPipeline inserts the pipeline blocks after the header and the request fields.
func withPipeline(req store.Request, blocks []slack.Block) []slack.Block {
	if !req.IsWorkload() || len(blocks) < 2 {
		return blocks
	}
	out := append([]slack.Block{}, blocks[:2]...)
	out = append(out, pipelineBlocks(req)...)
	return append(out, blocks[2:]...)
}

// isWorkloadID reports whether a requester or holder id names a pipeline rather than a Slack user.
func isWorkloadID(id string) bool { return strings.HasPrefix(id, "workload:") }
