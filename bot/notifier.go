package bot

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/slack-go/slack"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// Notifier turns committed audit events into Slack: the approval message (posted, then updated in place,
// with a thread reply per event), DMs to the requester (the reminder before expiry on the grant manager's
// grant-reminder event, which the durable due index schedules), and one line per event in
// the audit channel. It never blocks a state change: events are queued per channel and retried; the store
// stays the truth and every message is re-rendered from it when its job runs.
type Notifier struct {
	api  SlackAPI
	st   Store
	refs MessageRefs
	pol  *policy.Policy
	now  func() time.Time
	log  zerolog.Logger
	// current, when set, returns the policy in force (it changes on reload); pol is the fallback.
	current func() *policy.Policy

	mu     sync.Mutex
	queues map[string]*channelQueue
	dms    map[string]string
	ctx    context.Context
	wg     sync.WaitGroup
}

// MessageRefs records on a request where its Slack messages are (approvals.Service): the engine writes
// every record, the notifier only tells it what it posted.
type MessageRefs interface {
	SetMessageRef(ctx context.Context, requestID string, ref approvals.MessageRef, seen int64) (moved bool, err error)
	AddDMRef(ctx context.Context, requestID string, ref approvals.MessageRef) error
}

// NotifierOptions configures a Notifier. API, Store, Refs and Policy are required.
type NotifierOptions struct {
	API   SlackAPI
	Store Store
	// Refs records where the approval message and the grant DMs are, so that they are updated in place.
	Refs   MessageRefs
	Policy *policy.Policy
	Now    func() time.Time
	Logger zerolog.Logger
	// CurrentPolicy, when set, returns the policy in force, read for every event (policy reloads); Policy is
	// used when it is nil.
	CurrentPolicy func() *policy.Policy
}

// NewNotifier returns a Notifier whose workers live until ctx ends.
func NewNotifier(ctx context.Context, o NotifierOptions) *Notifier {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Notifier{api: o.API, st: o.Store, refs: o.Refs, pol: o.Policy, now: o.Now, log: o.Logger, current: o.CurrentPolicy,
		queues: map[string]*channelQueue{}, dms: map[string]string{}, ctx: ctx}
}

// Wait blocks until every queued job has run (after ctx ended, or when the queues are idle in tests).
func (n *Notifier) Wait() { n.wg.Wait() }

type job struct {
	key string // coalescing key ("" never coalesces)
	run func(ctx context.Context) error
}

type channelQueue struct {
	mu      sync.Mutex
	jobs    []job
	queued  map[string]bool
	running bool
}

// enqueue adds a job to the channel's serial queue; a job with the key of one still waiting is dropped
// (re-rendering from the store once is enough).
func (n *Notifier) enqueue(channel string, j job) {
	n.mu.Lock()
	q := n.queues[channel]
	if q == nil {
		q = &channelQueue{queued: map[string]bool{}}
		n.queues[channel] = q
	}
	n.mu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	if j.key != "" && q.queued[j.key] {
		return
	}
	if len(q.jobs) >= 10000 {
		n.log.Error().Str("channel", channel).Msg("slack queue full; dropping a notification (the store keeps the truth)")
		return
	}
	if j.key != "" {
		q.queued[j.key] = true
	}
	q.jobs = append(q.jobs, j)
	if !q.running {
		q.running = true
		n.wg.Add(1)
		go n.drain(channel, q)
	}
}

func (n *Notifier) drain(channel string, q *channelQueue) {
	defer n.wg.Done()
	for {
		q.mu.Lock()
		if len(q.jobs) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		j := q.jobs[0]
		q.jobs = q.jobs[1:]
		if j.key != "" {
			delete(q.queued, j.key)
		}
		q.mu.Unlock()
		n.runJob(channel, j)
	}
}

// runJob retries a job: after Slack's Retry-After when rate limited, with backoff otherwise.
func (n *Notifier) runJob(channel string, j job) {
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(n.ctx), 30*time.Second)
		err := j.run(ctx)
		cancel()
		if err == nil {
			return
		}
		wait := backoff
		var rl *slack.RateLimitedError
		if errors.As(err, &rl) {
			wait = rl.RetryAfter
		} else if attempt >= 5 || permanentSlackError(err) {
			n.log.Error().Err(err).Str("channel", channel).Msg("giving up on a Slack update; it is re-rendered from the store on the next change")
			return
		} else {
			backoff *= 2
		}
		select {
		case <-n.ctx.Done():
			if !errors.As(err, &rl) || attempt >= 3 {
				return
			}
		case <-time.After(wait):
		}
	}
}

func permanentSlackError(err error) bool {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks", "msg_too_long", "no_text",
			"message_not_found", "cant_update_message", "user_not_found", "invalid_auth", "not_authed", "account_inactive",
			"missing_scope", "restricted_action":
			return true
		}
	}
	return false
}

// Publish implements audit.Subscriber.
func (n *Notifier) Publish(_ context.Context, events ...store.AuditEvent) {
	for _, e := range events {
		n.handle(e)
	}
}

func (n *Notifier) roleOf(name string) *policy.Role {
	r, _ := n.policy().Role(name)
	return r
}

func (n *Notifier) policy() *policy.Policy {
	if n.current != nil {
		return n.current()
	}
	return n.pol
}

func (n *Notifier) handle(e store.AuditEvent) {
	role := n.roleOf(e.Role)
	if ch := n.auditChannel(role); ch != "" {
		line := AuditLine(e)
		n.enqueue(ch, job{run: func(ctx context.Context) error {
			_, _, err := n.api.PostMessageContext(ctx, ch, slack.MsgOptionText(line, false))
			return err
		}})
	}
	if e.RequestID == "" || role == nil || role.ApprovalChannel == "" {
		return
	}
	ch := role.ApprovalChannel
	reqID := e.RequestID
	if e.Type == store.EventRequested {
		n.enqueue(ch, job{run: func(ctx context.Context) error { return n.postApproval(ctx, ch, reqID) }})
		return
	}
	n.enqueue(ch, job{key: "render:" + reqID, run: func(ctx context.Context) error { return n.render(ctx, reqID) }})
	if e.Type == store.EventReviewPending {
		// Announced again in the channel itself, not only in the thread, so that nobody can miss it.
		text := fmt.Sprintf(":rotating_light: Break-glass %s (`%s`) is still unreviewed after %s. %s: review it in its thread's message.", reqID, e.Role, human(e.Details["since"]), mentions(role))
		n.enqueue(ch, job{run: func(ctx context.Context) error {
			_, _, err := n.api.PostMessageContext(ctx, ch, slack.MsgOptionText(text, false))
			return err
		}})
	}
	if reply := threadReply(e); reply != "" {
		n.enqueue(ch, job{run: func(ctx context.Context) error { return n.reply(ctx, reqID, reply) }})
	}
	n.dmFor(e)
}

func (n *Notifier) auditChannel(role *policy.Role) string {
	if role != nil && role.AuditChannel != "" {
		return role.AuditChannel
	}
	return n.policy().Defaults.AuditChannel
}

// postApproval posts the approval message once and records where it is on the request.
func (n *Notifier) postApproval(ctx context.Context, ch, reqID string) error {
	req, err := n.st.GetRequest(ctx, reqID)
	if err != nil {
		return err
	}
	if _, ok := approvals.MessageRefOf(req); ok {
		return n.render(ctx, reqID)
	}
	g := n.grantOf(ctx, req)
	text, blocks := ApprovalMessage(req, n.roleOf(req.Role), g, n.now())
	_, ts, err := n.api.PostMessageContext(ctx, ch, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		return err
	}
	moved, err := n.refs.SetMessageRef(ctx, reqID, approvals.MessageRef{Channel: ch, TS: ts}, req.Version)
	if err != nil {
		n.log.Error().Err(err).Str("request_id", reqID).Msg("could not record the approval message; later updates will post anew")
	}
	if !moved && err == nil {
		return nil // what was posted is what the store holds
	}
	// The request moved while the message was being posted: render once more from the store.
	return n.render(ctx, reqID)
}

func (n *Notifier) grantOf(ctx context.Context, req store.Request) *store.Grant {
	if req.GrantID == "" {
		return nil
	}
	g, err := n.st.GetGrant(ctx, req.GrantID)
	if err != nil {
		return nil
	}
	return &g
}

// render updates the approval message in place from the store.
func (n *Notifier) render(ctx context.Context, reqID string) error {
	req, err := n.st.GetRequest(ctx, reqID)
	if err != nil {
		return err
	}
	ref, ok := approvals.MessageRefOf(req)
	if !ok {
		return nil // not posted (yet); postApproval renders after posting
	}
	text, blocks := ApprovalMessage(req, n.roleOf(req.Role), n.grantOf(ctx, req), n.now())
	_, _, _, err = n.api.UpdateMessageContext(ctx, ref.Channel, ref.TS, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
	return err
}

func (n *Notifier) reply(ctx context.Context, reqID, text string) error {
	req, err := n.st.GetRequest(ctx, reqID)
	if err != nil {
		return err
	}
	ref, ok := approvals.MessageRefOf(req)
	if !ok {
		return nil
	}
	_, _, err = n.api.PostMessageContext(ctx, ref.Channel, slack.MsgOptionText(text, false), slack.MsgOptionTS(ref.TS))
	return err
}

func threadReply(e store.AuditEvent) string {
	actor := deciderText(e.Actor)
	switch e.Type {
	case store.EventApproved:
		if p, ok := approvals.ProgressOf(e); ok {
			return fmt.Sprintf(":white_check_mark: Approved by %s (%s).", actor, p)
		}
		return fmt.Sprintf(":white_check_mark: Approved by %s.", actor)
	case store.EventDenied:
		return fmt.Sprintf(":no_entry: Denied by %s: %s", actor, escape(e.Details["reason"]))
	case store.EventCancelled:
		return ":wastebasket: Cancelled by the requester."
	case store.EventExpired:
		return ":zzz: Expired without a decision."
	case store.EventGranted:
		return fmt.Sprintf(":unlock: Access is active (grant %s).", e.GrantID) + preExistingNote(e, "granted")
	case store.EventGrantFailed:
		return fmt.Sprintf(":x: The provider refused the grant: %s", clip(escape(e.Details["error"]), 500))
	case store.EventExtended:
		return fmt.Sprintf(":hourglass: Extended by %s by %s.", human(e.Details["by"]), actor)
	case store.EventReleased:
		return fmt.Sprintf(":raised_hand: Released early by %s.", actor)
	case store.EventGrantExpired:
		return ":alarm_clock: The grant expired."
	case store.EventRevoked:
		if e.Details["covered_by"] != "" {
			return fmt.Sprintf(":lock: Grant %s ended; access stays under the overlapping grant %s.", e.GrantID, e.Details["covered_by"])
		}
		if e.Details["pre_existing"] == "true" {
			return fmt.Sprintf(":lock: Grant %s ended.", e.GrantID) + preExistingNote(e, "ended")
		}
		return fmt.Sprintf(":lock: Access removed (grant %s).", e.GrantID)
	case store.EventRevokeVerified:
		if at, err := time.Parse(time.RFC3339Nano, e.Details["verified_at"]); err == nil {
			return fmt.Sprintf(":white_check_mark: Access confirmed gone at %s (checked at the provider).", slackDate(at, "{time_secs}"))
		}
		return ":white_check_mark: Access confirmed gone (checked at the provider)."
	case store.EventAccessRemains:
		return fmt.Sprintf(":warning: jitbot removed the access it granted (grant %s, checked at the provider), but access remains through %s that jitbot did not grant.",
			e.GrantID, clip(escape(e.Details["other"]), 500))
	case store.EventRevokeFailed:
		return fmt.Sprintf(":rotating_light: Removing access failed %s times: %s. jitbot keeps retrying.", e.Details["attempts"], clip(escape(e.Details["error"]), 500))
	case store.EventBreakGlass:
		return fmt.Sprintf(":rotating_light: Break-glass by %s: %s. On call: %s.", actor, escape(e.Details["reason"]), escape(e.Details["on_call"]))
	case store.EventReviewed:
		return fmt.Sprintf(":white_check_mark: Break-glass reviewed by %s.", actor)
	}
	return ""
}

// dmFor messages the requester about what happened to their request or grant.
func (n *Notifier) dmFor(e store.AuditEvent) {
	var text string
	var blocks []slack.Block
	switch e.Type {
	case store.EventApproved:
		if p, ok := approvals.ProgressOf(e); !ok || !p.Complete() {
			return
		}
		text = fmt.Sprintf(":white_check_mark: Your request %s for `%s` was approved. Applying access…", e.RequestID, e.Role)
	case store.EventDenied:
		text = fmt.Sprintf(":no_entry: Your request %s for `%s` was denied by <@%s>: %s", e.RequestID, e.Role, e.Actor, escape(e.Details["reason"]))
	case store.EventExpired:
		text = fmt.Sprintf(":zzz: Your request %s for `%s` expired without a decision.", e.RequestID, e.Role)
	case store.EventGrantFailed:
		text = fmt.Sprintf(":x: Access for `%s` could not be applied (grant %s). Admins can see the error in the audit channel.", e.Role, e.GrantID)
	case store.EventGranted, store.EventExtended:
		g, err := n.st.GetGrant(context.WithoutCancel(n.ctx), e.GrantID)
		if err != nil || g.State != store.GrantActive {
			return
		}
		if e.Type == store.EventExtended {
			n.refreshGrantDMs(g.UserID, e.RequestID, e.GrantID)
			return
		}
		text, blocks = GrantDM(g)
		n.dmThen(g.UserID, text, blocks, func(ctx context.Context, ch, ts string) error {
			return n.rememberDM(ctx, e.RequestID, ch, ts)
		})
		return
	case store.EventGrantReminder:
		g, err := n.st.GetGrant(context.WithoutCancel(n.ctx), e.GrantID)
		if err != nil || g.State != store.GrantActive || !n.now().Before(g.ExpiresAt) {
			return
		}
		text = fmt.Sprintf(":hourglass_flowing_sand: Your access to `%s` ends %s (grant %s). Extend it, or end it now if you are done.", g.Role, when(g.ExpiresAt), g.ID)
		n.dmThen(g.UserID, text, []slack.Block{slack.NewSectionBlock(mrkdwn(text), nil, nil), GrantButtons(g)}, func(ctx context.Context, ch, ts string) error {
			return n.rememberDM(ctx, g.RequestID, ch, ts)
		})
		return
	case store.EventReleased, store.EventGrantExpired, store.EventRevokeFailed:
		if g, err := n.st.GetGrant(context.WithoutCancel(n.ctx), e.GrantID); err == nil {
			n.refreshGrantDMs(g.UserID, e.RequestID, e.GrantID)
		}
		return
	case store.EventRevoked:
		if g, err := n.st.GetGrant(context.WithoutCancel(n.ctx), e.GrantID); err == nil {
			n.refreshGrantDMs(g.UserID, e.RequestID, e.GrantID)
		}
		if e.Details["covered_by"] != "" {
			return
		}
		text = fmt.Sprintf(":lock: Your access to `%s` has ended (grant %s).", e.Role, e.GrantID) + preExistingNote(e, "ended")
	default:
		return
	}
	req, err := n.st.GetRequest(context.WithoutCancel(n.ctx), e.RequestID)
	if err != nil {
		return
	}
	n.dm(req.Requester, text, blocks)
}

// preExistingNote tells people that the provider already had the access before the grant (standing access,
// see grants.PreExistingRef): jitbot leaves it in place, so it does not end with the grant.
func preExistingNote(e store.AuditEvent, when string) string {
	if e.Details["pre_existing"] != "true" {
		return ""
	}
	if when == "ended" {
		return " You had this access before the grant, so it was left in place and you still have it."
	}
	return " You already had this access before this grant; jitbot will leave it in place when the grant ends."
}

// GrantDM is the holder's DM about a grant, rendered from its current state: the expiry and the Extend and
// I'm done buttons while it is active, what became of it afterwards (no buttons).
func GrantDM(g store.Grant) (string, []slack.Block) {
	var text string
	switch g.State {
	case store.GrantActive:
		text = fmt.Sprintf(":unlock: Your access to `%s` is active until %s (grant %s).", g.Role, when(g.ExpiresAt), g.ID)
		if grants.IsPreExisting(g.ProviderRef) {
			text += " You already had this access before this grant; jitbot will leave it in place when the grant ends."
		}
		return text, []slack.Block{slack.NewSectionBlock(mrkdwn(text), nil, nil), GrantButtons(g)}
	case store.GrantActivating:
		text = fmt.Sprintf(":gear: Your access to `%s` is being applied (grant %s).", g.Role, g.ID)
	case store.GrantRevoking:
		text = fmt.Sprintf(":lock: Your access to `%s` has ended (%s); removing it is in progress (grant %s).", g.Role, endReason(&g), g.ID)
	case store.GrantRevokeFailed:
		text = fmt.Sprintf(":rotating_light: Your access to `%s` has ended (%s), but removing it failed so far; jitbot keeps retrying (grant %s).", g.Role, endReason(&g), g.ID)
	case store.GrantRevoked:
		text = fmt.Sprintf(":lock: Your access to `%s` ended (%s) %s (grant %s).", g.Role, endReason(&g), when(g.RevokedAt), g.ID)
		if grants.IsPreExisting(g.ProviderRef) {
			text = fmt.Sprintf(":lock: Grant %s for `%s` ended (%s) %s. You had this access before the grant, so it was left in place and you still have it.", g.ID, g.Role, endReason(&g), when(g.RevokedAt))
		}
		if g.CoveredBy != "" {
			text = fmt.Sprintf(":lock: Grant %s for `%s` ended (%s); your access stays under grant %s.", g.ID, g.Role, endReason(&g), g.CoveredBy)
		}
	case store.GrantFailed:
		text = fmt.Sprintf(":x: Access for `%s` could not be applied (grant %s).", g.Role, g.ID)
	default:
		text = fmt.Sprintf("Grant %s for `%s` is %s.", g.ID, g.Role, g.State)
	}
	return text, []slack.Block{slack.NewSectionBlock(mrkdwn(text), nil, nil)}
}

// rememberDM records a grant DM on the grant's request.
func (n *Notifier) rememberDM(ctx context.Context, reqID, ch, ts string) error {
	return n.refs.AddDMRef(ctx, reqID, approvals.MessageRef{Channel: ch, TS: ts})
}

// refreshGrantDMs re-renders every remembered DM about the grant from the store, in the holder's DM queue
// (so after any DM still being posted).
func (n *Notifier) refreshGrantDMs(user, reqID, grantID string) {
	if reqID == "" || user == "" {
		return
	}
	n.enqueue("dm:"+user, job{key: "dmrender:" + grantID, run: func(ctx context.Context) error {
		req, err := n.st.GetRequest(ctx, reqID)
		if err != nil {
			return err
		}
		g, err := n.st.GetGrant(ctx, grantID)
		if err != nil {
			return err
		}
		text, blocks := GrantDM(g)
		for _, ref := range approvals.DMRefsOf(req) {
			_, _, _, err := n.api.UpdateMessageContext(ctx, ref.Channel, ref.TS, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...))
			if err != nil && !permanentSlackError(err) {
				return err
			}
		}
		return nil
	}})
}

// dm queues a direct message to user.
func (n *Notifier) dm(user, text string, blocks []slack.Block) { n.dmThen(user, text, blocks, nil) }

// dmThen queues a direct message to user and runs posted (if set) with where it landed.
func (n *Notifier) dmThen(user, text string, blocks []slack.Block, posted func(ctx context.Context, ch, ts string) error) {
	if isWorkloadID(user) {
		return // a pipeline (workload:<name>) has no Slack DM
	}
	n.enqueue("dm:"+user, job{run: func(ctx context.Context) error {
		ch, err := n.dmChannel(ctx, user)
		if err != nil {
			return err
		}
		opts := []slack.MsgOption{slack.MsgOptionText(text, false)}
		if len(blocks) > 0 {
			opts = append(opts, slack.MsgOptionBlocks(blocks...))
		}
		_, ts, err := n.api.PostMessageContext(ctx, ch, opts...)
		if err != nil || posted == nil {
			return err
		}
		if err := posted(ctx, ch, ts); err != nil {
			n.log.Warn().Err(err).Str("user", user).Msg("could not record a DM; it will not be updated in place")
		}
		return nil
	}})
}

func (n *Notifier) dmChannel(ctx context.Context, user string) (string, error) {
	n.mu.Lock()
	ch, ok := n.dms[user]
	n.mu.Unlock()
	if ok {
		return ch, nil
	}
	c, _, _, err := n.api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{user}, ReturnIM: true})
	if err != nil {
		return "", err
	}
	n.mu.Lock()
	n.dms[user] = c.ID
	n.mu.Unlock()
	return c.ID, nil
}
