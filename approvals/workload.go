package approvals

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/policy/conditions"
	"github.com/jitbot/jitbot/store"
)

// ErrConditionFailed refuses a request that does not meet one of its role's conditions.
var ErrConditionFailed = errors.New("role condition not met")

// WorkloadRequest is what a pipeline asks for. Everything but Role, Duration and Reason comes from the
// verified token: the front end matched the token to Workload and derived Pipeline from its claims.
type WorkloadRequest struct {
	Workload string
	Role     string
	Duration time.Duration // 0: the role's default
	Reason   string
	// Claims are the token's verified claims (nil for API tokens), for the role's CEL conditions.
	Claims   map[string]any
	Pipeline store.PipelineContext
	// TokenID names the OIDC ID token that made the call (workload.Identity.TokenID), TokenExpiry its exp;
	// a token creates one request. "" (API tokens) is not limited.
	TokenID     string
	TokenExpiry time.Time
}

// CreateForWorkload validates and stores a pending request made by a pipeline. The request is approved at
// once when one of the role's auto_approve rules matches; it is still recorded and announced.
func (s *Service) CreateForWorkload(ctx context.Context, in WorkloadRequest) (store.Request, error) {
	role, err := s.roleFor(in.Role)
	if err != nil {
		return store.Request{}, err
	}
	if _, ok := s.Policy().Workload(in.Workload); !ok {
		return store.Request{}, refusal(ErrNotEligible, "Workload %s is not in the policy.", in.Workload)
	}
	if !slices.Contains(role.Requesters.Workloads, in.Workload) {
		return store.Request{}, refusal(ErrNotEligible, "Workload %s may not request %s; an admin must add it to the role's requesters.workloads.", in.Workload, role.Name)
	}
	d := in.Duration
	if d == 0 {
		d = role.DefaultDuration
	}
	if err := role.ValidateDuration(d); err != nil {
		return store.Request{}, refusal(ErrBadDuration, "%s", err.Error())
	}
	reason, err := cleanReason(in.Reason)
	if err != nil {
		return store.Request{}, err
	}
	if _, err := s.Policy().WorkloadPrincipal(role, in.Workload); err != nil {
		return store.Request{}, refusal(ErrNoIdentity, "%s", err.Error())
	}
	now := s.now()
	vars := conditions.Vars{
		Request:   conditions.RequestVars{Role: role.Name, Duration: d, Reason: reason},
		Requester: conditions.RequesterVars{Kind: store.RequesterWorkload, ID: in.Workload},
		Claims:    in.Claims, Now: now,
	}
	if err := checkConditions(role, vars); err != nil {
		return store.Request{}, err
	}
	pc := in.Pipeline
	pc.ActorUser = ""
	if pc.Issuer != "" && pc.Actor != "" {
		pc.ActorUser = s.Policy().ActorUser(pc.Issuer, pc.Actor)
	}
	req := store.Request{
		ID:                store.NewID("r"),
		Requester:         store.WorkloadRequester(in.Workload),
		RequesterKind:     store.RequesterWorkload,
		Workload:          in.Workload,
		Pipeline:          &pc,
		Role:              role.Name,
		Duration:          d,
		Reason:            reason,
		State:             store.RequestPending,
		RequiredApprovals: role.Approvals,
		CreatedAt:         now,
		PendingUntil:      now.Add(role.PendingTTL),
		Meta:              map[string]string{"source": "api"},
	}
	ev := s.event(store.EventRequested, req.Requester, &req, map[string]string{
		"duration": d.String(), "reason": reason, "approvals_required": strconv.Itoa(role.Approvals),
		"workload": in.Workload, "auth": pc.Method, "subject": pc.Subject, "repository": pc.Repository,
		"workflow": pc.Workflow, "run_url": pc.RunURL, "commit": pc.Commit, "ref": pc.Ref,
		"environment": pc.Environment, "actor": pc.Actor, "actor_user": pc.ActorUser,
	})
	if err := s.useToken(ctx, in, now); err != nil {
		return store.Request{}, err
	}
	if err := s.commitAndPublish(ctx, store.Batch{Requests: []store.RequestPut{{Request: &req}}, Audit: []store.AuditEvent{ev}}); err != nil {
		return store.Request{}, fmt.Errorf("approvals: store request: %w", err)
	}
	zerolog.Ctx(ctx).Info().Str("request_id", req.ID).Str("role", req.Role).Str("workload", in.Workload).Msg("pipeline request created")
	if out, ok := s.autoApproveWorkload(ctx, req, role, vars); ok {
		return out.Request, nil
	}
	return req, nil
}

// useToken lets an ID token create one request: a stolen token replayed while valid (as sent, with its
// ECDSA signature re-encoded, or many times at once) is refused. The token is remembered by its id (a
// digest of its signed claims, not of the token text) until it can no longer be accepted. It is marked
// after every other check, so a request refused for its content leaves the token usable for a corrected
// one; a store failure between the mark and the commit uses the token up (the job reruns with a new one).
func (s *Service) useToken(ctx context.Context, in WorkloadRequest, now time.Time) error {
	if in.TokenID == "" {
		return nil
	}
	ttl := 24 * time.Hour
	if !in.TokenExpiry.IsZero() {
		ttl = in.TokenExpiry.Sub(now) + policy.MaxLeeway + time.Minute
	}
	first, err := s.opts.Store.MarkSeen(ctx, "workload-token-create:"+in.TokenID, max(ttl, time.Minute))
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("approvals: could not record the use of a pipeline token")
		return refusal(ErrUnavailable, "jitbot could not record the use of this token right now; nothing was stored, retry shortly.")
	}
	if !first {
		return refusal(ErrTokenReused, "This ID token was already used to create a request, and a token creates only one. Ask your CI for a fresh ID token (jitbot exec asks for one per run).")
	}
	return nil
}

// checkConditions refuses unless every condition of the role holds. An evaluation error counts as not
// holding: jitbot fails closed.
func checkConditions(role *policy.Role, vars conditions.Vars) error {
	for i, c := range role.Conditions {
		ok, err := c.Eval(vars)
		if err != nil {
			return refusal(ErrConditionFailed, "The request does not meet condition %d of %s (%s): it could not be evaluated (%v).", i+1, role.Name, c, err)
		}
		if !ok {
			return refusal(ErrConditionFailed, "The request does not meet condition %d of %s: %s", i+1, role.Name, c)
		}
	}
	return nil
}

// userConditions checks a person's request against the role's conditions. Groups are the static policy
// groups and the role's requester groups the user belongs to.
func (s *Service) userConditions(ctx context.Context, role *policy.Role, user string, d time.Duration, reason string, breakGlass bool) error {
	if len(role.Conditions) == 0 {
		return nil
	}
	var groups []string
	for _, g := range append(slices.Sorted(maps.Keys(s.Policy().Groups)), role.Requesters.Groups...) {
		if slices.Contains(groups, g) {
			continue
		}
		if ok, err := isMember(ctx, s.directory(), nil, []string{g}, user); err == nil && ok {
			groups = append(groups, g)
		}
	}
	return checkConditions(role, conditions.Vars{
		Request:   conditions.RequestVars{Role: role.Name, Duration: d, Reason: reason, BreakGlass: breakGlass},
		Requester: conditions.RequesterVars{Kind: store.RequesterUser, ID: user, Groups: groups},
		Now:       s.now(),
	})
}

// autoApproveWorkload approves a just-created pipeline request when one of the role's auto_approve rules
// matches. A rule whose condition cannot be evaluated does not match; any doubt leaves the request pending.
func (s *Service) autoApproveWorkload(ctx context.Context, req store.Request, role *policy.Role, vars conditions.Vars) (Outcome, bool) {
	rule := -1
	for i, r := range role.AutoApprove {
		if len(r.Workloads) > 0 && !slices.Contains(r.Workloads, req.Workload) {
			continue
		}
		if req.Duration > r.MaxDuration {
			continue
		}
		if r.When != nil {
			ok, err := r.When.Eval(vars)
			if err != nil {
				zerolog.Ctx(ctx).Info().Err(err).Str("request_id", req.ID).Int("rule", i).Msg("auto-approval rule could not be evaluated; it does not apply")
				continue
			}
			if !ok {
				continue
			}
		}
		rule = i
		break
	}
	if rule < 0 {
		return Outcome{}, false
	}
	r := role.AutoApprove[rule]
	note := fmt.Sprintf("auto_approve rule %d (policy line %d)", rule+1, r.Line)
	if r.When != nil {
		note += ": " + r.When.String()
	}
	return s.approveBySystem(ctx, req, role, "system:auto-approve", note, map[string]string{"auto": "policy", "rule": note})
}

// workloadLease is the write-ahead grant of an approved pipeline request: the workload's principal, and a
// heartbeat timeout that makes the grant end with the job.
func (s *Service) workloadLease(req *store.Request, role *policy.Role, now time.Time) (store.Grant, error) {
	principal, err := s.Policy().WorkloadPrincipal(role, req.Workload)
	if err != nil {
		return store.Grant{}, refusal(ErrNoIdentity, "%s", err.Error())
	}
	hb := policy.DefaultHeartbeatTimeout
	if w, ok := s.Policy().Workload(req.Workload); ok {
		hb = w.HeartbeatTimeout
	}
	return grants.NewLease(grants.LeaseSpec{
		RequestID: req.ID, UserID: req.Requester, Role: role.Name, Provider: role.Provider,
		Principal: principal, Target: role.Target, Duration: req.Duration, MaxDuration: role.MaxDuration,
		HeartbeatTimeout: hb,
	}, now, now.Add(s.opts.ActivationResumeAfter)), nil
}

// isTriggeringActor reports whether user triggered the pipeline run behind req.
func isTriggeringActor(req *store.Request, user string) bool {
	return req.Pipeline != nil && req.Pipeline.ActorUser != "" && req.Pipeline.ActorUser == user
}
