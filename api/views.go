package api

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/workload"
)

// requestView is a request as the API shows it (see RequestView in api/openapi.yaml).
type requestView struct {
	ID                string                 `json:"id"`
	Role              string                 `json:"role"`
	State             string                 `json:"state"`
	Workload          string                 `json:"workload"`
	Duration          string                 `json:"duration"`
	DurationSeconds   int64                  `json:"duration_seconds"`
	Reason            string                 `json:"reason"`
	CreatedAt         time.Time              `json:"created_at"`
	PendingUntil      time.Time              `json:"pending_until"`
	DecidedAt         *time.Time             `json:"decided_at,omitempty"`
	RequiredApprovals int                    `json:"required_approvals"`
	Approvals         []decisionView         `json:"approvals"`
	Denial            *decisionView          `json:"denial,omitempty"`
	ApprovalChannel   string                 `json:"approval_channel,omitempty"`
	Approvers         approversView          `json:"approvers"`
	Pipeline          *store.PipelineContext `json:"pipeline,omitempty"`
	GrantID           string                 `json:"grant_id,omitempty"`
	Grant             *grantView             `json:"grant,omitempty"`
}

type decisionView struct {
	By   string    `json:"by"`
	At   time.Time `json:"at"`
	Note string    `json:"note,omitempty"`
}

type approversView struct {
	Users  []string `json:"users"`
	Groups []string `json:"groups"`
}

// grantView is a grant as the API shows it (see GrantView in api/openapi.yaml).
type grantView struct {
	ID                      string     `json:"id"`
	RequestID               string     `json:"request_id"`
	Role                    string     `json:"role"`
	State                   string     `json:"state"`
	Provider                string     `json:"provider"`
	Principal               string     `json:"principal"`
	CreatedAt               time.Time  `json:"created_at"`
	ActivatedAt             *time.Time `json:"activated_at,omitempty"`
	ExpiresAt               *time.Time `json:"expires_at,omitempty"`
	EndedAt                 *time.Time `json:"ended_at,omitempty"`
	RevokedAt               *time.Time `json:"revoked_at,omitempty"`
	EndReason               string     `json:"end_reason,omitempty"`
	HeartbeatTimeoutSeconds int64      `json:"heartbeat_timeout_seconds"`
	HeartbeatDeadline       *time.Time `json:"heartbeat_deadline,omitempty"`
	LastHeartbeat           *time.Time `json:"last_heartbeat,omitempty"`
}

func opt(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func (s *Server) requestView(ctx context.Context, r store.Request) requestView {
	v := requestView{
		ID: r.ID, Role: r.Role, State: string(r.State), Workload: r.Workload, Duration: policy.FormatDuration(r.Duration),
		DurationSeconds: int64(r.Duration / time.Second), Reason: r.Reason, CreatedAt: r.CreatedAt.UTC(),
		PendingUntil: r.PendingUntil.UTC(), DecidedAt: opt(r.DecidedAt), RequiredApprovals: r.RequiredApprovals,
		Approvals: []decisionView{}, Pipeline: r.Pipeline, GrantID: r.GrantID,
		Approvers: approversView{Users: []string{}, Groups: []string{}},
	}
	for _, d := range r.Approvals {
		v.Approvals = append(v.Approvals, decisionView{By: d.By, At: d.At.UTC(), Note: d.Note})
	}
	if r.Denial != nil {
		v.Denial = &decisionView{By: r.Denial.By, At: r.Denial.At.UTC(), Note: r.Denial.Note}
	}
	if role, ok := s.opts.Approvals.Policy().Role(r.Role); ok {
		v.ApprovalChannel = role.ApprovalChannel
		v.Approvers.Users = append(v.Approvers.Users, role.Approvers.Users...)
		v.Approvers.Groups = append(v.Approvers.Groups, role.Approvers.Groups...)
	}
	if r.GrantID != "" {
		if g, err := s.opts.Store.GetGrant(ctx, r.GrantID); err == nil {
			gv := grantViewOf(g)
			v.Grant = &gv
		}
	}
	return v
}

func grantViewOf(g store.Grant) grantView {
	return grantView{
		ID: g.ID, RequestID: g.RequestID, Role: g.Role, State: string(g.State), Provider: g.Provider, Principal: g.Principal,
		CreatedAt: g.CreatedAt.UTC(), ActivatedAt: opt(g.ActivatedAt), ExpiresAt: opt(g.ExpiresAt), EndedAt: opt(g.EndedAt),
		RevokedAt: opt(g.RevokedAt), EndReason: g.EndReason, HeartbeatTimeoutSeconds: int64(g.HeartbeatTimeout / time.Second),
		HeartbeatDeadline: opt(g.HeartbeatDeadline), LastHeartbeat: opt(g.LastHeartbeat),
	}
}

// matchWorkloads returns, sorted, the policy workloads whose rules the identity satisfies: OIDC workloads of
// the issuer that verified the token whose claim rules match, or API-token workloads of the token's owner.
func matchWorkloads(pol *policy.Policy, id workload.Identity) []string {
	var out []string
	for _, name := range pol.WorkloadNames() {
		w, _ := pol.Workload(name)
		switch id.Method {
		case workload.MethodOIDC:
			if w.Issuer == "" || w.Issuer != id.IssuerName {
				continue
			}
			if ok, _ := (workload.Rule{Issuer: w.Issuer, Claims: w.Claims}).Match(id); ok {
				out = append(out, name)
			}
		case workload.MethodAPIToken:
			if w.APITokenOwner != "" && w.APITokenOwner == id.Owner {
				out = append(out, name)
			}
		}
	}
	return out
}

// noMatchWhy explains, for the caller, why no workload matched (the first rule's reason).
func noMatchWhy(pol *policy.Policy, id workload.Identity) string {
	for _, name := range pol.WorkloadNames() {
		w, _ := pol.Workload(name)
		if id.Method == workload.MethodOIDC && w.Issuer == id.IssuerName {
			_, why := (workload.Rule{Issuer: w.Issuer, Claims: w.Claims}).Match(id)
			return fmt.Sprintf("workload %s: %s", name, why)
		}
	}
	if id.Method == workload.MethodAPIToken {
		return fmt.Sprintf("no workload has api_token_owner %q", id.Owner)
	}
	return fmt.Sprintf("no workload uses issuer %q", id.IssuerName)
}

// claim returns a top-level string (or number) claim as text.
func claim(c map[string]any, name string) string {
	switch v := c[name].(type) {
	case string:
		return v
	case float64:
		return fmt.Sprintf("%.0f", v)
	case fmt.Stringer:
		return v.String()
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// pipelineContext derives what approvers are shown from the verified identity alone.
func pipelineContext(pol *policy.Policy, id workload.Identity) store.PipelineContext {
	pc := store.PipelineContext{Method: id.Method, Subject: id.Subject}
	if id.Method == workload.MethodAPIToken {
		pc.Repository = "API token owner " + id.Owner
		return pc
	}
	pc.Issuer = id.IssuerName
	c := id.Claims
	kind, actorClaim := policy.IssuerGeneric, ""
	if iss, ok := pol.Issuers[id.IssuerName]; ok {
		kind, actorClaim = iss.Kind, iss.ActorClaim
	}
	if actorClaim != "" {
		pc.Actor = claim(c, actorClaim)
	}
	switch kind {
	case policy.IssuerGitLab:
		pc.Repository = claim(c, "project_path")
		pc.Workflow = claim(c, "ci_config_ref_uri") // the pipeline definition: host/group/project//.gitlab-ci.yml@ref
		if pc.Workflow == "" {
			pc.Workflow = claim(c, "pipeline_source")
		}
		if job := claim(c, "job_id"); job != "" {
			pc.RunID = "job:" + job
			if u, err := url.Parse(id.Issuer); err == nil && pc.Repository != "" {
				pc.RunURL = strings.TrimSuffix(u.String(), "/") + "/" + pc.Repository + "/-/jobs/" + url.PathEscape(job)
			}
		}
		pc.Commit = claim(c, "sha")
		pc.Ref = claim(c, "ref_path") // refs/heads/main; older GitLab versions only have ref and ref_type
		if pc.Ref == "" {
			pc.Ref = claim(c, "ref")
			if t := claim(c, "ref_type"); t == "branch" {
				pc.Ref = "refs/heads/" + pc.Ref
			} else if t == "tag" {
				pc.Ref = "refs/tags/" + pc.Ref
			}
		}
		pc.Environment = claim(c, "environment")
	default:
		pc.Repository = claim(c, "repository")
		pc.Workflow = claim(c, "workflow")
		pc.Commit = claim(c, "sha")
		pc.Ref = claim(c, "ref")
		pc.Environment = claim(c, "environment")
		if run := claim(c, "run_id"); run != "" {
			pc.RunID = "run:" + run
			if a := claim(c, "run_attempt"); a != "" {
				pc.RunID += "/" + a
			}
			if kind == policy.IssuerGitHub && pc.Repository != "" {
				server := "https://github.com"
				if u, err := url.Parse(id.Issuer); err == nil && strings.HasSuffix(u.Path, "/_services/token") {
					server = u.Scheme + "://" + u.Host // GitHub Enterprise Server: the issuer is https://HOST/_services/token
				}
				pc.RunURL = server + "/" + pc.Repository + "/actions/runs/" + url.PathEscape(run)
				if a := claim(c, "run_attempt"); a != "" {
					pc.RunURL += "/attempts/" + url.PathEscape(a)
				}
			}
		}
	}
	return pc
}
