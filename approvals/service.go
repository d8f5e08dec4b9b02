// Package approvals turns requests into decisions: who may request what, who may approve it, how many
// approvals it needs, for how long, and the request state machine. Every rule is enforced here, on the server,
// whatever a Slack button carried.
package approvals

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/internal/refuse"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// Store is the part of store.Store that approvals uses.
type Store interface {
	Commit(ctx context.Context, b store.Batch) error
	GetRequest(ctx context.Context, id string) (store.Request, error)
	ListRequests(ctx context.Context, q store.RequestQuery) ([]store.Request, error)
	DueRequests(ctx context.Context, now time.Time, limit int) ([]store.Request, error)
	GetCounter(ctx context.Context, key string) (store.Counter, error)
	MarkSeen(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
}

// Activator applies a freshly approved grant at its provider. An error does not undo the approval: the grant
// record is already stored and the sweeper resumes it.
type Activator interface {
	Activate(ctx context.Context, grantID string) error
}

// Publisher receives audit events after they were committed (the Slack audit channel, metrics, logs).
type Publisher interface {
	Publish(ctx context.Context, events ...store.AuditEvent)
}

// EmailResolver returns the email on a Slack user's profile.
type EmailResolver interface {
	Email(ctx context.Context, userID string) (string, error)
}

// MaxReasonLength bounds a reason so it fits Slack messages and audit lines.
const MaxReasonLength = 1000

// casRetries bounds how often a decision is retried when another decision on the same request landed first.
const casRetries = 20

// Options configures a Service. Store and Policy are required; the rest has safe defaults.
type Options struct {
	Store     Store
	Policy    *policy.Policy
	Directory Directory // resolves user groups; nil means only the policy's static groups
	Activator Activator // nil: grants stay activating until the sweeper resumes them
	Publisher Publisher // nil: events are only stored
	// Emails looks up Slack profile emails for providers with principal_from: slack_email. Nil: such
	// providers refuse every request (fail closed).
	Emails EmailResolver
	// OnCall answers break-glass and auto-approval on-call checks; nil: break-glass is denied unless a
	// role's rule says on_source_error: allow.
	OnCall OnCall
	Now    func() time.Time
	// ActivationResumeAfter is how long after approval the sweeper resumes a grant whose activation has not
	// finished (the process died, or the provider call is still failing). Default 30s.
	ActivationResumeAfter time.Duration
}

// Service implements the request state machine.
type Service struct {
	opts Options
	// cur is the policy in force and the directory built on its static groups, swapped whole by SetPolicy
	// (a reload) while requests are being decided: every decision reads it once per attempt.
	cur atomic.Pointer[policyState]
}

type policyState struct {
	pol *policy.Policy
	dir Directory
}

// New validates opts and returns a Service.
func New(opts Options) (*Service, error) {
	if opts.Store == nil || opts.Policy == nil {
		return nil, errors.New("approvals: Store and Policy are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ActivationResumeAfter <= 0 {
		opts.ActivationResumeAfter = 30 * time.Second
	}
	s := &Service{opts: opts}
	s.SetPolicy(opts.Policy)
	return s, nil
}

// Policy returns the policy in force.
func (s *Service) Policy() *policy.Policy { return s.cur.Load().pol }

// SetPolicy puts a new, already validated policy in force (a reload). Requests created under the old one
// are decided under the new one: eligibility of requester and approver is checked again at approval time.
func (s *Service) SetPolicy(p *policy.Policy) {
	dir := Directory(StaticDirectory(p.Groups))
	if s.opts.Directory != nil {
		dir = ChainDirectory{StaticDirectory(p.Groups), s.opts.Directory}
	}
	s.cur.Store(&policyState{pol: p, dir: dir})
}

func (s *Service) directory() Directory { return s.cur.Load().dir }

// errPolicySwapped: a reload put a new policy in force between reading a role and checking membership.
var errPolicySwapped = errors.New("the policy was reloaded during the check")

// directoryFor returns the directory of the policy role belongs to. A role from a policy no longer in force
// (a reload landed mid-check) is refused rather than checked against the other policy's static groups: a
// mix of two policies could admit someone neither of them admits.
func (s *Service) directoryFor(role *policy.Role) (Directory, error) {
	st := s.cur.Load()
	if r, ok := st.pol.Role(role.Name); !ok || r != role {
		return nil, errPolicySwapped
	}
	return st.dir, nil
}

// NewRequest is what a person (or pipeline) asks for.
type NewRequest struct {
	Requester string
	Role      string
	Duration  time.Duration // 0: the role's default
	Reason    string
	Source    string // "slack", "modal", "api", ...
	Meta      map[string]string
}

// Check makes every check Create makes, without storing anything or asking an on-call source: a form can
// show a refusal under its field before it closes, and do the rest after Slack's acknowledgement. Create
// checks everything again.
func (s *Service) Check(ctx context.Context, in NewRequest) error {
	_, _, _, err := s.check(ctx, in)
	return err
}

func (s *Service) check(ctx context.Context, in NewRequest) (*policy.Role, time.Duration, string, error) {
	role, err := s.roleFor(in.Role)
	if err != nil {
		return nil, 0, "", err
	}
	if ok, err := s.CanRequest(ctx, role, in.Requester); err != nil {
		return nil, 0, "", err
	} else if !ok {
		return nil, 0, "", refusal(ErrNotEligible, "You may not request %s. Ask an admin to add you to its requesters.", role.Name)
	}
	d := in.Duration
	if d == 0 {
		d = role.DefaultDuration
	}
	if err := role.ValidateDuration(d); err != nil {
		return nil, 0, "", refusal(ErrBadDuration, "%s", err.Error())
	}
	reason, err := cleanReason(in.Reason)
	if err != nil {
		return nil, 0, "", err
	}
	if _, err := s.principal(ctx, in.Requester, role.Provider); err != nil {
		return nil, 0, "", refusal(ErrNoIdentity, "%s", err.Error())
	}
	return role, d, reason, nil
}

// Create validates and stores a pending request.
func (s *Service) Create(ctx context.Context, in NewRequest) (store.Request, error) {
	role, d, reason, err := s.check(ctx, in)
	if err != nil {
		return store.Request{}, err
	}
	if err := s.userConditions(ctx, role, in.Requester, d, reason, false); err != nil {
		return store.Request{}, err
	}
	now := s.now()
	req := store.Request{
		ID:                store.NewID("r"),
		Requester:         in.Requester,
		Role:              role.Name,
		Duration:          d,
		Reason:            reason,
		State:             store.RequestPending,
		RequiredApprovals: role.Approvals,
		CreatedAt:         now,
		PendingUntil:      now.Add(role.PendingTTL),
		Meta:              in.Meta,
	}
	if in.Source != "" {
		if req.Meta == nil {
			req.Meta = map[string]string{}
		}
		req.Meta["source"] = in.Source
	}
	ev := s.event(store.EventRequested, in.Requester, &req, map[string]string{
		"duration": d.String(), "reason": reason, "approvals_required": strconv.Itoa(role.Approvals),
	})
	if err := s.commitAndPublish(ctx, store.Batch{Requests: []store.RequestPut{{Request: &req}}, Audit: []store.AuditEvent{ev}}); err != nil {
		return store.Request{}, fmt.Errorf("approvals: store request: %w", err)
	}
	zerolog.Ctx(ctx).Info().Str("request_id", req.ID).Str("role", req.Role).Str("requester", req.Requester).Msg("request created")
	if out, ok := s.autoApprove(ctx, req, role); ok {
		return out.Request, nil
	}
	return req, nil
}

// Outcome says what a decision did.
type Outcome struct {
	Request store.Request
	// GrantID is set when this approval completed the quorum and a grant was created.
	GrantID string
}

// Approve records approver's approval. When it completes the quorum, the request becomes approved and its
// grant is stored (write-ahead) and activated, all in one compare-and-swap: of any number of concurrent
// approvals, exactly one completes the quorum and exactly one grant exists.
func (s *Service) Approve(ctx context.Context, requestID, approver, note string) (Outcome, error) {
	for range casRetries {
		req, role, err := s.loadPending(ctx, requestID)
		if err != nil {
			return Outcome{Request: req}, err
		}
		if approver == req.Requester {
			return Outcome{Request: req}, refusal(ErrSelfApproval, "You cannot approve your own request.")
		}
		if isTriggeringActor(&req, approver) {
			return Outcome{Request: req}, refusal(ErrSelfApproval, "You triggered this pipeline run, so you cannot approve its request; another approver must.")
		}
		if ok, err := s.CanApprove(ctx, role, approver); err != nil {
			return Outcome{Request: req}, err
		} else if !ok {
			return Outcome{Request: req}, refusal(ErrNotEligible, "You are not an approver for %s.", role.Name)
		}
		if req.HasApproval(approver) {
			return Outcome{Request: req}, refusal(ErrAlreadyApproved, "You already approved this request (%d of %d approvals).", len(req.Approvals), req.RequiredApprovals)
		}
		// The request was created under the policy of its time; it is granted only if the policy in force
		// still allows it: the requester must still be eligible, the duration still allowed, and a raised
		// approval count applies (a lowered one does not: the stricter rule wins).
		if ok, err := s.stillMayRequest(ctx, role, &req); err != nil {
			return Outcome{Request: req}, err
		} else if !ok {
			return Outcome{Request: req}, refusal(ErrNotEligible, "%s may no longer request %s under the current policy, so this request cannot be approved. Deny it; the requester can ask again if eligible.", refuse.User(req.Requester), role.Name)
		}
		if err := role.ValidateDuration(req.Duration); err != nil {
			return Outcome{Request: req}, refusal(ErrBadDuration, "This request's duration is no longer allowed by the current policy (%s), so it cannot be approved. Deny it; the requester can ask again.", err.Error())
		}
		if role.Approvals > req.RequiredApprovals {
			req.RequiredApprovals = role.Approvals
		}
		now := s.now()
		prev := req.Version
		req.Approvals = append(req.Approvals, store.Decision{By: approver, At: now, Note: note})
		b := store.Batch{Requests: []store.RequestPut{{Request: &req, PrevVersion: prev}}}
		var grant store.Grant
		if len(req.Approvals) >= req.RequiredApprovals {
			if grant, err = s.approveWithGrant(ctx, &req, role, now); err != nil {
				return Outcome{Request: req}, err
			}
			b.Grants = []store.GrantPut{{Grant: &grant}}
		}
		b.Audit = []store.AuditEvent{s.event(store.EventApproved, approver, &req, map[string]string{
			progressKey: progressOf(&req), "note": note,
		})}
		err = s.commitAndPublish(ctx, b)
		if errors.Is(err, store.ErrConflict) {
			continue // someone else decided first: re-read and re-check everything
		}
		if err != nil {
			return Outcome{}, fmt.Errorf("approvals: store approval: %w", err)
		}
		log := zerolog.Ctx(ctx).With().Str("request_id", req.ID).Str("approver", approver).Logger()
		log.Info().Int("approvals", len(req.Approvals)).Int("required", req.RequiredApprovals).Msg("request approved")
		if grant.ID != "" && s.opts.Activator != nil {
			if err := s.opts.Activator.Activate(ctx, grant.ID); err != nil {
				log.Warn().Err(err).Str("grant_id", grant.ID).Msg("activation did not finish; the sweeper will resume it")
			}
		}
		return Outcome{Request: req, GrantID: grant.ID}, nil
	}
	return Outcome{}, fmt.Errorf("approvals: approve %s: %w", requestID, store.ErrConflict)
}

// Deny ends a pending request. Only an eligible approver may deny, and a reason is required.
func (s *Service) Deny(ctx context.Context, requestID, approver, reason string) (store.Request, error) {
	reason, err := cleanReason(reason)
	if err != nil {
		return store.Request{}, err
	}
	return s.decide(ctx, requestID, func(req *store.Request, role *policy.Role) (store.AuditEvent, error) {
		if ok, err := s.CanApprove(ctx, role, approver); err != nil {
			return store.AuditEvent{}, err
		} else if !ok {
			return store.AuditEvent{}, refusal(ErrNotEligible, "You are not an approver for %s, so you cannot deny this request.", role.Name)
		}
		if approver == req.Requester {
			return store.AuditEvent{}, refusal(ErrSelfApproval, "To withdraw your own request, cancel it instead.")
		}
		req.State = store.RequestDenied
		req.Denial = &store.Decision{By: approver, At: s.now(), Note: reason}
		req.DecidedAt = req.Denial.At
		return s.event(store.EventDenied, approver, req, map[string]string{"reason": reason}), nil
	})
}

// Cancel withdraws a pending request; only its requester may.
func (s *Service) Cancel(ctx context.Context, requestID, by string) (store.Request, error) {
	return s.decide(ctx, requestID, func(req *store.Request, role *policy.Role) (store.AuditEvent, error) {
		if by != req.Requester {
			return store.AuditEvent{}, refusal(ErrNotEligible, "Only the requester can cancel request %s.", req.ID)
		}
		req.State = store.RequestCancelled
		req.CancelledBy = by
		req.DecidedAt = s.now()
		return s.event(store.EventCancelled, by, req, nil), nil
	})
}

// ExpirePending expires pending requests nobody decided in time and returns how many it expired.
func (s *Service) ExpirePending(ctx context.Context) (int, error) {
	now := s.now()
	due, err := s.opts.Store.DueRequests(ctx, now, 500)
	if err != nil {
		return 0, fmt.Errorf("approvals: list due requests: %w", err)
	}
	n := 0
	for _, r := range due {
		if r.State != store.RequestPending || r.PendingUntil.After(now) {
			continue // a break-glass review reminder, handled by RemindReviews
		}
		expired, err := s.expire(ctx, r)
		if err != nil {
			return n, err
		}
		if expired {
			n++
		}
	}
	return n, nil
}

func (s *Service) expire(ctx context.Context, req store.Request) (bool, error) {
	prev := req.Version
	req.State = store.RequestExpired
	req.DecidedAt = s.now()
	ev := s.event(store.EventExpired, "system:sweeper", &req, map[string]string{
		progressKey: progressOf(&req),
	})
	err := s.commitAndPublish(ctx, store.Batch{Requests: []store.RequestPut{{Request: &req, PrevVersion: prev}}, Audit: []store.AuditEvent{ev}})
	if errors.Is(err, store.ErrConflict) {
		return false, nil // decided meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("approvals: expire %s: %w", req.ID, err)
	}
	return true, nil
}

// decide runs a single-step transition out of pending with compare-and-swap retries.
func (s *Service) decide(ctx context.Context, requestID string, apply func(*store.Request, *policy.Role) (store.AuditEvent, error)) (store.Request, error) {
	for range casRetries {
		req, role, err := s.loadPending(ctx, requestID)
		if err != nil {
			return req, err
		}
		prev := req.Version
		ev, err := apply(&req, role)
		if err != nil {
			return req, err
		}
		err = s.commitAndPublish(ctx, store.Batch{Requests: []store.RequestPut{{Request: &req, PrevVersion: prev}}, Audit: []store.AuditEvent{ev}})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return store.Request{}, fmt.Errorf("approvals: store decision: %w", err)
		}
		zerolog.Ctx(ctx).Info().Str("request_id", req.ID).Str("state", string(req.State)).Str("actor", ev.Actor).Msg("request decided")
		return req, nil
	}
	return store.Request{}, fmt.Errorf("approvals: decide %s: %w", requestID, store.ErrConflict)
}

// loadPending reads a request and refuses unless it is still pending. A pending request past its deadline
// is expired on the spot.
func (s *Service) loadPending(ctx context.Context, id string) (store.Request, *policy.Role, error) {
	req, err := s.opts.Store.GetRequest(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Request{}, nil, refusal(ErrNotFound, "There is no request %s.", id)
	}
	if err != nil {
		return store.Request{}, nil, fmt.Errorf("approvals: read request %s: %w", id, err)
	}
	if req.State == store.RequestPending && !s.now().Before(req.PendingUntil) {
		if _, err := s.expire(ctx, req); err != nil {
			return req, nil, err
		}
		req.State = store.RequestExpired
	}
	if req.State != store.RequestPending {
		return req, nil, alreadyDecided(req)
	}
	role, ok := s.Policy().Role(req.Role)
	if !ok {
		return req, nil, refusal(ErrUnknownRole, "Role %s is no longer in the policy, so request %s cannot be decided.", req.Role, req.ID)
	}
	return req, role, nil
}

// alreadyDecided refuses a decision on a request that is no longer pending, saying who decided it.
func alreadyDecided(r store.Request) error {
	switch {
	case r.State == store.RequestDenied && r.Denial != nil:
		return refusal(ErrAlreadyDecided, "Request %s is already %s (denied by %s).", r.ID, r.State, refuse.User(r.Denial.By))
	case r.State == store.RequestApproved && len(r.Approvals) > 0:
		by := make(refuse.Users, len(r.Approvals))
		for i, d := range r.Approvals {
			by[i] = d.By
		}
		return refusal(ErrAlreadyDecided, "Request %s is already %s (approved by %s).", r.ID, r.State, by)
	case r.State == store.RequestCancelled:
		return refusal(ErrAlreadyDecided, "Request %s is already %s (cancelled by the requester).", r.ID, r.State)
	}
	return refusal(ErrAlreadyDecided, "Request %s is already %s.", r.ID, r.State)
}

func (s *Service) roleFor(name string) (*policy.Role, error) {
	role, ok := s.Policy().Role(name)
	if !ok {
		return nil, refusal(ErrUnknownRole, "There is no role %q.", name)
	}
	return role, nil
}

// CanRequest reports whether user may request role. A directory failure is an error: jitbot fails closed.
func (s *Service) CanRequest(ctx context.Context, role *policy.Role, user string) (bool, error) {
	dir, err := s.directoryFor(role)
	if err != nil {
		return false, refusal(ErrUnavailable, "The policy was reloaded while jitbot was checking who may request %s; try again.", role.Name)
	}
	ok, err := isMember(ctx, dir, role.Requesters.Users, role.Requesters.Groups, user)
	if err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Str("role", role.Name).Msg("requester eligibility could not be checked")
		return false, refusal(ErrUnavailable, "jitbot could not check who may request %s right now, so it refuses to be safe. Try again shortly.", role.Name)
	}
	return ok, nil
}

// stillMayRequest reports whether the requester of req may request role under the policy in force: a person
// through the role's users and groups, a pipeline through the role's workloads (and the workload must still
// be defined).
func (s *Service) stillMayRequest(ctx context.Context, role *policy.Role, req *store.Request) (bool, error) {
	if req.IsWorkload() {
		if _, ok := s.Policy().Workload(req.Workload); !ok {
			return false, nil
		}
		return slices.Contains(role.Requesters.Workloads, req.Workload), nil
	}
	return s.CanRequest(ctx, role, req.Requester)
}

// CanApprove reports whether user is an eligible approver of role (self-approval is checked separately).
func (s *Service) CanApprove(ctx context.Context, role *policy.Role, user string) (bool, error) {
	dir, err := s.directoryFor(role)
	if err != nil {
		return false, refusal(ErrUnavailable, "The policy was reloaded while jitbot was checking who may approve %s; try again.", role.Name)
	}
	ok, err := isMember(ctx, dir, role.Approvers.Users, role.Approvers.Groups, user)
	if err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Str("role", role.Name).Msg("approver eligibility could not be checked")
		return false, refusal(ErrUnavailable, "jitbot could not check who may approve %s right now, so it refuses to be safe. Try again shortly.", role.Name)
	}
	return ok, nil
}

// RequestableRoles lists the roles user may request, in name order.
func (s *Service) RequestableRoles(ctx context.Context, user string) ([]*policy.Role, error) {
	var out []*policy.Role
	pol := s.Policy()
	for _, name := range pol.RoleNames() {
		role, _ := pol.Role(name)
		ok, err := s.CanRequest(ctx, role, user)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, role)
		}
	}
	return out, nil
}

func cleanReason(reason string) (string, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return "", refusal(ErrBadReason, "A reason is required (for example a ticket or incident id).")
	}
	if utf8.RuneCountInString(reason) > MaxReasonLength {
		return "", refusal(ErrBadReason, "The reason is too long (%d characters; at most %d).", utf8.RuneCountInString(reason), MaxReasonLength)
	}
	return reason, nil
}

func (s *Service) event(typ, actor string, req *store.Request, details map[string]string) store.AuditEvent {
	for k, v := range details {
		if v == "" {
			delete(details, k)
		}
	}
	now := s.now()
	if p, ok := parseProgress(details[progressKey]); (typ == store.EventApproved && ok && p.Complete()) || typ == store.EventDenied {
		// The decision: how long the request waited for it (jitbot_request_decision_seconds).
		if !req.CreatedAt.IsZero() {
			if details == nil {
				details = map[string]string{}
			}
			details["decision_wait_ms"] = strconv.FormatInt(now.Sub(req.CreatedAt).Milliseconds(), 10)
		}
	}
	return store.AuditEvent{Type: typ, At: now, Actor: actor, RequestID: req.ID, GrantID: req.GrantID, Role: req.Role, Details: details}
}

func (s *Service) publish(ctx context.Context, events ...store.AuditEvent) {
	if s.opts.Publisher != nil {
		s.opts.Publisher.Publish(ctx, events...)
	}
}

// now is the service's clock at millisecond precision, the precision of the stores' indexes.
func (s *Service) now() time.Time { return s.opts.Now().Truncate(time.Millisecond) }

// MayDecide reports (as a refusal) whether approver could approve or deny the request now, without
// changing anything: the bot uses it to refuse a Deny click before asking for a reason. The decision itself
// checks everything again.
func (s *Service) MayDecide(ctx context.Context, requestID, approver string) (store.Request, error) {
	req, role, err := s.loadPending(ctx, requestID)
	if err != nil {
		return req, err
	}
	if approver == req.Requester {
		return req, refusal(ErrSelfApproval, "You cannot decide your own request; cancel it instead.")
	}
	if ok, err := s.CanApprove(ctx, role, approver); err != nil {
		return req, err
	} else if !ok {
		return req, refusal(ErrNotEligible, "You are not an approver for %s.", role.Name)
	}
	return req, nil
}

// principal is the requester's identity at a provider, following the provider's principal_from. A failed
// email lookup refuses the request: without a trustworthy principal nothing may be granted.
func (s *Service) principal(ctx context.Context, user, provider string) (string, error) {
	p, err := s.Policy().Principal(user, provider)
	if !errors.Is(err, policy.ErrNeedsEmail) {
		return p, err
	}
	if s.opts.Emails == nil {
		return "", fmt.Errorf("%w: provider %s maps users by Slack email, and this jitbot has no Slack connection to look it up", policy.ErrNoIdentity, provider)
	}
	email, err := s.opts.Emails.Email(ctx, user)
	if err != nil || email == "" {
		zerolog.Ctx(ctx).Warn().Err(err).Str("user", user).Msg("email lookup failed")
		return "", fmt.Errorf("%w: jitbot could not read your email from your Slack profile, which provider %s needs; try again, or ask an admin to map you under identities", policy.ErrNoIdentity, provider)
	}
	return email, nil
}

// approveWithGrant marks req approved and returns its write-ahead grant, to be committed in the same batch.
func (s *Service) approveWithGrant(ctx context.Context, req *store.Request, role *policy.Role, now time.Time) (store.Grant, error) {
	if req.IsWorkload() {
		grant, err := s.workloadLease(req, role, now)
		if err != nil {
			return store.Grant{}, err
		}
		req.State, req.DecidedAt, req.GrantID = store.RequestApproved, now, grant.ID
		return grant, nil
	}
	principal, err := s.principal(ctx, req.Requester, role.Provider)
	if err != nil {
		return store.Grant{}, refusal(ErrNoIdentity, "%s", err.Error())
	}
	grant := grants.NewLease(grants.LeaseSpec{
		RequestID: req.ID, UserID: req.Requester, Role: role.Name, Provider: role.Provider,
		Principal: principal, Target: role.Target, Duration: req.Duration, MaxDuration: role.MaxDuration,
	}, now, now.Add(s.opts.ActivationResumeAfter))
	req.State, req.DecidedAt, req.GrantID = store.RequestApproved, now, grant.ID
	return grant, nil
}

// autoApprove approves a just-created request at once when its role allows on-call auto-approval and the
// requester is on call. The request is still recorded and announced; the approval names the on-call source.
// Any doubt (source down, not on call, a conflict) leaves the request pending for human approvers.
func (s *Service) autoApprove(ctx context.Context, req store.Request, role *policy.Role) (Outcome, bool) {
	bg := role.BreakGlass
	if bg == nil || !bg.AutoApprove || s.opts.OnCall == nil {
		return Outcome{}, false
	}
	ans, err := s.opts.OnCall.Check(ctx, req.Requester, *bg)
	if err != nil || !ans.OnCall {
		return Outcome{}, false
	}
	return s.approveBySystem(ctx, req, role, "system:on-call", ans.Reason, map[string]string{"auto": "on-call", "on_call": ans.Reason})
}

// approveBySystem approves req at once in the name of actor (on-call auto-approval, a policy rule), creating
// the write-ahead grant, announcing it like any approval and starting the activation. The request may have
// changed since it was read (the Slack notifier records where its approval message is): a lost
// compare-and-swap re-reads it and retries while it is still pending and unapproved, as Approve does, so a
// matching request never silently falls back to waiting for a person. ok is false when nothing was approved.
func (s *Service) approveBySystem(ctx context.Context, req store.Request, role *policy.Role, actor, note string, details map[string]string) (Outcome, bool) {
	var grant store.Grant
	var ev store.AuditEvent
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			cur, err := s.opts.Store.GetRequest(ctx, req.ID)
			if err != nil || cur.State != store.RequestPending || len(cur.Approvals) != len(req.Approvals) || attempt >= casRetries {
				return Outcome{}, false
			}
			req = cur
		}
		now := s.now()
		next := req
		next.Approvals = append(append([]store.Decision(nil), req.Approvals...), store.Decision{By: actor, At: now, Note: note})
		var err error
		if grant, err = s.approveWithGrant(ctx, &next, role, now); err != nil {
			return Outcome{}, false
		}
		d := maps.Clone(details)
		d[progressKey] = Progress{Approvals: next.RequiredApprovals, Required: next.RequiredApprovals}.String()
		ev = s.event(store.EventApproved, actor, &next, d)
		err = s.commitAndPublish(ctx, store.Batch{Requests: []store.RequestPut{{Request: &next, PrevVersion: req.Version}}, Grants: []store.GrantPut{{Grant: &grant}}, Audit: []store.AuditEvent{ev}})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return Outcome{}, false
		}
		req = next
		break
	}
	if s.opts.Activator != nil {
		if err := s.opts.Activator.Activate(ctx, grant.ID); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("grant_id", grant.ID).Msg("activation did not finish; the sweeper will resume it")
		}
	}
	return Outcome{Request: req, GrantID: grant.ID}, true
}
