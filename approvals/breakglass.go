package approvals

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/internal/refuse"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// Break-glass refusal kinds.
var (
	ErrBreakGlassNotAllowed = errors.New("break-glass not allowed for this role")
	ErrNotOnCall            = errors.New("not on call")
	ErrOnCallUnavailable    = errors.New("on-call source unavailable")
	ErrDailyLimit           = errors.New("daily break-glass limit reached")
	ErrNotReviewable        = errors.New("nothing to review")
)

// OnCall answers whether a person is on call as a role's break-glass rule requires.
type OnCall interface {
	// Check returns the answer, or an error when the on-call source cannot answer now (the rule's
	// on_source_error then decides).
	Check(ctx context.Context, user string, rule policy.BreakGlass) (OnCallAnswer, error)
}

// OnCallAnswer is an on-call source's answer about one person.
type OnCallAnswer struct {
	OnCall bool
	Level  int
	// Reason explains the answer to the person ("you are primary on call for Payments until 14:00").
	Reason string
}

// BreakGlass grants the role at once to an on-call requester, without approval. The request is stored
// approved together with its write-ahead grant, announced loudly (a break-glass audit event), and owes a
// review: approvers must acknowledge it, and it is announced again every ReviewEvery until they do.
func (s *Service) BreakGlass(ctx context.Context, in NewRequest) (Outcome, error) {
	role, err := s.roleFor(in.Role)
	if err != nil {
		return Outcome{}, err
	}
	bg := role.BreakGlass
	if bg == nil || !bg.Allowed {
		return Outcome{}, refusal(ErrBreakGlassNotAllowed, "Role %s does not allow break-glass access. Request it normally with `request`.", role.Name)
	}
	if ok, err := s.CanRequest(ctx, role, in.Requester); err != nil {
		return Outcome{}, err
	} else if !ok {
		return Outcome{}, refusal(ErrNotEligible, "You may not request %s, so you cannot break glass for it either.", role.Name)
	}
	d := in.Duration
	if d == 0 {
		d = min(role.DefaultDuration, bg.MaxDuration)
	}
	if d <= 0 || d > bg.MaxDuration {
		return Outcome{}, refusal(ErrBadDuration, "Break-glass access to %s lasts at most %s.", role.Name, policy.FormatDuration(bg.MaxDuration))
	}
	reason, err := cleanReason(in.Reason)
	if err != nil {
		return Outcome{}, err
	}
	principal, err := s.principal(ctx, in.Requester, role.Provider)
	if err != nil {
		return Outcome{}, refusal(ErrNoIdentity, "%s", err.Error())
	}
	if err := s.userConditions(ctx, role, in.Requester, d, reason, true); err != nil {
		return Outcome{}, err // a condition may exempt emergencies with request.break_glass
	}
	// A first look at the limit refuses before the on-call source is asked; the commit below checks it
	// again atomically.
	if _, _, err := s.breakGlassUsage(ctx, in.Requester, role); err != nil {
		return Outcome{}, err
	}
	onCall, err := s.checkOnCall(ctx, in.Requester, role)
	if err != nil {
		return Outcome{}, err
	}

	now := s.now()
	req := store.Request{
		ID: store.NewID("r"), Requester: in.Requester, Role: role.Name, Duration: d, Reason: reason,
		State: store.RequestApproved, RequiredApprovals: 0, BreakGlass: true, CreatedAt: now, PendingUntil: now,
		DecidedAt: now, ReviewDueAt: now.Add(bg.ReviewEvery), Meta: in.Meta,
	}
	grant := grants.NewLease(grants.LeaseSpec{
		RequestID: req.ID, UserID: in.Requester, Role: role.Name, Provider: role.Provider, Principal: principal,
		Target: role.Target, Duration: d, MaxDuration: bg.MaxDuration, BreakGlass: true,
	}, now, now.Add(s.opts.ActivationResumeAfter))
	req.GrantID = grant.ID
	details := map[string]string{"duration": d.String(), "reason": reason, "on_call": onCall.Reason}
	if onCall.Level > 0 {
		details["level"] = strconv.Itoa(onCall.Level)
	}
	events := []store.AuditEvent{
		s.event(store.EventRequested, in.Requester, &req, map[string]string{"duration": d.String(), "reason": reason, "break_glass": "true"}),
		s.event(store.EventBreakGlass, in.Requester, &req, details),
	}
	// The activation is appended to the person's break-glass counter in the same atomic commit as the
	// grant: of concurrent requests racing for the last slot one commits, the others conflict, re-read the
	// counter and are refused. Counting and committing separately let all of them through.
	committed := false
	for range casRetries {
		counter, prev, err := s.breakGlassUsage(ctx, in.Requester, role)
		if err != nil {
			return Outcome{}, err
		}
		counter.Events = append(counter.Events, now)
		err = s.commitAndPublish(ctx, store.Batch{Requests: []store.RequestPut{{Request: &req}}, Grants: []store.GrantPut{{Grant: &grant}},
			Audit: events, Counters: []store.CounterPut{{Counter: &counter, PrevVersion: prev}}})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return Outcome{}, fmt.Errorf("approvals: store break-glass request: %w", err)
		}
		committed = true
		break
	}
	if !committed {
		return Outcome{}, fmt.Errorf("approvals: store break-glass request: too many concurrent break-glass requests: %w", store.ErrConflict)
	}
	log := zerolog.Ctx(ctx).With().Str("request_id", req.ID).Str("grant_id", grant.ID).Logger()
	log.Warn().Str("role", role.Name).Str("requester", in.Requester).Msg("BREAK-GLASS access granted without approval")
	if s.opts.Activator != nil {
		if err := s.opts.Activator.Activate(ctx, grant.ID); err != nil {
			log.Warn().Err(err).Msg("break-glass activation did not finish; the sweeper will resume it")
		}
	}
	return Outcome{Request: req, GrantID: grant.ID}, nil
}

// checkOnCall asks the on-call source and applies the rule's on_source_error.
func (s *Service) checkOnCall(ctx context.Context, user string, role *policy.Role) (OnCallAnswer, error) {
	bg := role.BreakGlass
	if s.opts.OnCall == nil {
		if bg.OnSourceError == "allow" {
			return OnCallAnswer{OnCall: true, Reason: "no on-call source is configured; allowed by policy"}, nil
		}
		return OnCallAnswer{}, refusal(ErrOnCallUnavailable, "jitbot has no on-call source configured, so break-glass for %s is denied.", role.Name)
	}
	ans, err := s.opts.OnCall.Check(ctx, user, *bg)
	if err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Str("role", role.Name).Msg("on-call source did not answer")
		if bg.OnSourceError == "allow" {
			return OnCallAnswer{OnCall: true, Reason: "the on-call source could not be reached; allowed by policy (on_source_error: allow)"}, nil
		}
		return OnCallAnswer{}, refusal(ErrOnCallUnavailable, "The on-call source could not be reached, and the policy for %s denies break-glass in that case. Ask an approver, or try again shortly.", role.Name)
	}
	if !ans.OnCall {
		return ans, refusal(ErrNotOnCall, "You are not on call for %s (%s), so you cannot break glass. Request it normally.", role.Name, ans.Reason)
	}
	return ans, nil
}

// breakGlassUsage reads user's break-glass counter for role with the activations older than 24 hours
// dropped, and refuses (ErrDailyLimit) when the role's daily limit is used up. prev is the counter's stored
// version, 0 when it does not exist yet.
func (s *Service) breakGlassUsage(ctx context.Context, user string, role *policy.Role) (c store.Counter, prev int64, err error) {
	key := store.BreakGlassCounterKey(user, role.Name)
	c, err = s.opts.Store.GetCounter(ctx, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// No counter yet (the first break-glass, or requests made by a version of jitbot without counters):
		// seed it from the stored requests. Concurrent seeders all create version 1; only one commits.
		c = store.Counter{Key: key}
		if c.Events, err = s.breakGlassToday(ctx, user, role.Name); err != nil {
			return c, 0, err
		}
	case err != nil:
		return c, 0, fmt.Errorf("approvals: read break-glass counter: %w", err)
	}
	prev = c.Version
	since := s.now().Add(-24 * time.Hour)
	kept := c.Events[:0:0]
	for _, at := range c.Events {
		if !at.Before(since) {
			kept = append(kept, at)
		}
	}
	c.Events = kept
	if n := len(c.Events); n >= role.BreakGlass.DailyLimit {
		return c, prev, refusal(ErrDailyLimit, "You already broke glass for %[2]s %[1]d times in the last 24 hours (the limit is %[3]d). Ask an approver instead.", n, role.Name, role.BreakGlass.DailyLimit)
	}
	return c, prev, nil
}

// breakGlassToday lists when user broke glass for role in the last 24 hours, oldest first, from the stored
// requests.
func (s *Service) breakGlassToday(ctx context.Context, user, role string) ([]time.Time, error) {
	reqs, err := s.opts.Store.ListRequests(ctx, store.RequestQuery{Requester: user, Limit: 200})
	if err != nil {
		return nil, fmt.Errorf("approvals: count break-glass activations: %w", err)
	}
	since := s.now().Add(-24 * time.Hour)
	var out []time.Time
	for _, r := range reqs {
		if r.CreatedAt.Before(since) {
			break // newest first
		}
		if r.BreakGlass && r.Role == role {
			out = append([]time.Time{r.CreatedAt}, out...)
		}
	}
	return out, nil
}

// MayReview reports (as a refusal) whether reviewer could review the break-glass request now, without
// changing anything; Review checks everything again.
func (s *Service) MayReview(ctx context.Context, requestID, reviewer string) (store.Request, error) {
	req, err := s.opts.Store.GetRequest(ctx, requestID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Request{}, refusal(ErrNotFound, "There is no request %s.", requestID)
	}
	if err != nil {
		return store.Request{}, fmt.Errorf("approvals: read request %s: %w", requestID, err)
	}
	if !req.BreakGlass {
		return req, refusal(ErrNotReviewable, "Request %s was not a break-glass request; there is nothing to review.", req.ID)
	}
	if req.Review != nil {
		return req, refusal(ErrAlreadyDecided, "Break-glass request %s was already reviewed by %s.", req.ID, refuse.User(req.Review.By))
	}
	if reviewer == req.Requester {
		return req, refusal(ErrSelfApproval, "You cannot review your own break-glass access.")
	}
	role, ok := s.Policy().Role(req.Role)
	if !ok {
		return req, refusal(ErrUnknownRole, "Role %s is no longer in the policy.", req.Role)
	}
	if ok, err := s.CanApprove(ctx, role, reviewer); err != nil {
		return req, err
	} else if !ok {
		return req, refusal(ErrNotEligible, "Only approvers of %s can review its break-glass use.", role.Name)
	}
	return req, nil
}

// Review records an approver's acknowledgement of a break-glass grant; it ends the reminders.
func (s *Service) Review(ctx context.Context, requestID, reviewer, note string) (store.Request, error) {
	for range casRetries {
		req, err := s.MayReview(ctx, requestID, reviewer)
		if err != nil {
			return req, err
		}
		prev := req.Version
		req.Review = &store.Decision{By: reviewer, At: s.now(), Note: note}
		req.ReviewDueAt = time.Time{}
		ev := s.event(store.EventReviewed, reviewer, &req, map[string]string{"note": note})
		err = s.commitAndPublish(ctx, store.Batch{Requests: []store.RequestPut{{Request: &req, PrevVersion: prev}}, Audit: []store.AuditEvent{ev}})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return store.Request{}, fmt.Errorf("approvals: store review: %w", err)
		}
		return req, nil
	}
	return store.Request{}, fmt.Errorf("approvals: review %s: %w", requestID, store.ErrConflict)
}

// RemindReviews announces again every break-glass request whose review is overdue and schedules the next
// reminder. It returns how many it announced.
func (s *Service) RemindReviews(ctx context.Context) (int, error) {
	due, err := s.opts.Store.DueRequests(ctx, s.now(), 200)
	if err != nil {
		return 0, fmt.Errorf("approvals: list due reviews: %w", err)
	}
	n := 0
	for _, req := range due {
		if !req.BreakGlass || req.Review != nil || req.ReviewDueAt.IsZero() || req.State == store.RequestPending {
			continue
		}
		every := 4 * time.Hour
		if role, ok := s.Policy().Role(req.Role); ok && role.BreakGlass != nil {
			every = role.BreakGlass.ReviewEvery
		}
		prev := req.Version
		overdue := s.now().Sub(req.CreatedAt).Round(time.Minute)
		req.ReviewDueAt = s.now().Add(every)
		ev := s.event(store.EventReviewPending, "system:reviews", &req, map[string]string{"since": policy.FormatDuration(overdue)})
		err := s.commitAndPublish(ctx, store.Batch{Requests: []store.RequestPut{{Request: &req, PrevVersion: prev}}, Audit: []store.AuditEvent{ev}})
		if errors.Is(err, store.ErrConflict) {
			continue // reviewed meanwhile, or another replica reminded
		}
		if err != nil {
			return n, fmt.Errorf("approvals: schedule review reminder: %w", err)
		}
		n++
	}
	return n, nil
}
