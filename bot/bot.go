package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/slack-go/slack"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/internal/refuse"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// SlackAPI is the part of *slack.Client the bot uses.
type SlackAPI interface {
	PostMessageContext(ctx context.Context, channelID string, options ...slack.MsgOption) (string, string, error)
	UpdateMessageContext(ctx context.Context, channelID, timestamp string, options ...slack.MsgOption) (string, string, string, error)
	PostEphemeralContext(ctx context.Context, channelID, userID string, options ...slack.MsgOption) (string, error)
	OpenConversationContext(ctx context.Context, params *slack.OpenConversationParameters) (*slack.Channel, bool, bool, error)
	OpenViewContext(ctx context.Context, triggerID string, view slack.ModalViewRequest) (*slack.ViewResponse, error)
	PublishViewContext(ctx context.Context, req slack.PublishViewContextRequest) (*slack.ViewResponse, error)
	GetUserGroupMembersContext(ctx context.Context, userGroup string, options ...slack.GetUserGroupMembersOption) ([]string, error)
}

// Store is the part of store.Store the bot reads. It writes no record: requests and grants change only
// through the engine (approvals.Service, grants.Manager), message references included.
type Store interface {
	GetRequest(ctx context.Context, id string) (store.Request, error)
	GetGrant(ctx context.Context, id string) (store.Grant, error)
	ListRequests(ctx context.Context, q store.RequestQuery) ([]store.Request, error)
	ListGrants(ctx context.Context, q store.GrantQuery) ([]store.Grant, error)
	MarkSeen(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// Approvals is what the bot asks of the request engine (approvals.Service): exactly the calls it makes.
type Approvals interface {
	Create(ctx context.Context, in approvals.NewRequest) (store.Request, error)
	Check(ctx context.Context, in approvals.NewRequest) error
	BreakGlass(ctx context.Context, in approvals.NewRequest) (approvals.Outcome, error)
	Cancel(ctx context.Context, requestID, by string) (store.Request, error)
	Approve(ctx context.Context, requestID, approver, note string) (approvals.Outcome, error)
	Deny(ctx context.Context, requestID, approver, reason string) (store.Request, error)
	Review(ctx context.Context, requestID, reviewer, note string) (store.Request, error)
	MayDecide(ctx context.Context, requestID, approver string) (store.Request, error)
	MayReview(ctx context.Context, requestID, reviewer string) (store.Request, error)
	RequestableRoles(ctx context.Context, user string) ([]*policy.Role, error)
	WaitingFor(ctx context.Context, approver string) ([]store.Request, error)
	Policy() *policy.Policy
}

// Grants is what the bot asks of the grant engine (grants.Manager): exactly the calls it makes.
type Grants interface {
	Release(ctx context.Context, grantID, by string) (store.Grant, error)
	Extend(ctx context.Context, grantID, by string, d time.Duration) (store.Grant, error)
	CheckExtend(ctx context.Context, grantID, by string, d time.Duration) error
}

// Options configures a Bot. Everything but Notifier, Command, Logger and Now is required.
type Options struct {
	Approvals Approvals
	Grants    Grants
	Store     Store
	API       SlackAPI
	Policy    *policy.Policy
	// Notifier, when set, lets handlers answer by DM and refresh views right away (e.g. App Home after a
	// click).
	Notifier *Notifier
	// Command is the slash command's name, default "/jit".
	Command string
	Now     func() time.Time
	// FollowUpTimeout bounds the slow work done after an ack (provider calls, Slack posts). Default 2m.
	FollowUpTimeout time.Duration
	// PostResponse posts to a response_url; default slack.PostWebhookContext.
	PostResponse func(ctx context.Context, url string, msg *slack.WebhookMessage) error
	// Workers bounds the goroutines doing the work behind acknowledgements (default DefaultWorkers);
	// QueueSize bounds the actions waiting for one (default DefaultQueueSize). Beyond that an action is
	// still acknowledged, and the person is told that jitbot is busy.
	Workers   int
	QueueSize int
}

// Bot handles slash commands, interactions and events, whatever the transport. Handlers return what must be
// acknowledged within Slack's 3 seconds and do no slow work themselves: on-call lookups, provider calls and
// Slack API calls run afterwards on a bounded worker pool (see later), which answers by response_url, DM or
// message update.
type Bot struct {
	opts    Options
	notes   *Notifier
	wg      sync.WaitGroup
	pool    *pool
	notices chan struct{}
}

// New validates opts.
func New(opts Options) (*Bot, error) {
	if opts.Approvals == nil || opts.Grants == nil || opts.Store == nil || opts.API == nil || opts.Policy == nil {
		return nil, errors.New("bot: Approvals, Grants, Store, API and Policy are required")
	}
	if opts.Command == "" {
		opts.Command = "/jit"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.FollowUpTimeout <= 0 {
		opts.FollowUpTimeout = 2 * time.Minute
	}
	if opts.PostResponse == nil {
		opts.PostResponse = func(ctx context.Context, url string, msg *slack.WebhookMessage) error {
			return slack.PostWebhookContext(ctx, url, msg)
		}
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	b := &Bot{opts: opts, notes: opts.Notifier, notices: make(chan struct{}, noticeSlots)}
	b.pool = &pool{workers: opts.Workers, limit: opts.QueueSize, wg: &b.wg}
	return b, nil
}

// Wait blocks until follow-up work started by handlers has finished (graceful shutdown, tests).
func (b *Bot) Wait() { b.wg.Wait() }

// ephemeral is an ack body that shows text only to the person who acted.
func ephemeral(text string) *slack.Msg {
	return &slack.Msg{ResponseType: slack.ResponseTypeEphemeral, Text: text}
}

// friendly turns an error into what the person who acted sees: a refusal's own words, or a generic
// message (details go to the log, never to Slack).
func friendly(ctx context.Context, err error) string {
	if msg, ok := refuse.Render(err, mention); ok {
		return msg
	}
	zerolog.Ctx(ctx).Error().Err(err).Msg("action failed")
	if errors.Is(err, grants.ErrBusy) {
		return "Another change to the same access is in progress; try again in a moment."
	}
	return "Something went wrong on jitbot's side; nothing was changed by this action. The error is in jitbot's log."
}

// respond posts a follow-up to the response_url of a command or click (ephemeral).
func (b *Bot) respond(ctx context.Context, url, text string) {
	if url == "" {
		return
	}
	if err := b.opts.PostResponse(ctx, url, &slack.WebhookMessage{Text: text, ResponseType: slack.ResponseTypeEphemeral}); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("could not answer through response_url")
	}
}

// Command handles a slash command and returns the ack body (nil: empty ack). It only parses: everything else
// runs on the worker pool after the ack and answers through the command's response_url.
func (b *Bot) Command(ctx context.Context, sc slack.SlashCommand) *slack.Msg {
	ctx = zerolog.Ctx(ctx).With().Str("user", sc.UserID).Str("command", sc.Command).Logger().WithContext(ctx)
	name := sc.Command
	if name == "" {
		name = b.opts.Command
	}
	cmd, err := Parse(name, sc.Text)
	if err != nil {
		return ephemeral(err.Error())
	}
	if cmd.Verb == VerbHelp {
		return ephemeral(Usage(name))
	}
	if !b.later(ctx, func(ctx context.Context) { b.runCommand(ctx, sc, name, cmd) }) {
		return ephemeral(busyText)
	}
	switch cmd.Verb {
	case VerbRequest:
		return ephemeral(fmt.Sprintf("Sending your request for `%s` (%s)…", cmd.Role, policy.FormatDuration(cmd.Duration)))
	case VerbBreak:
		return ephemeral(fmt.Sprintf("Checking that you are on call for `%s`…", cmd.Role))
	case VerbCancel:
		return ephemeral(fmt.Sprintf("Cancelling request %s…", cmd.ID))
	case VerbDone:
		return ephemeral(fmt.Sprintf("Ending grant %s…", cmd.ID))
	case VerbExtend:
		return ephemeral(fmt.Sprintf("Extending grant %s by %s…", cmd.ID, policy.FormatDuration(cmd.Duration)))
	}
	return nil // the form opens, or the answer follows
}

// runCommand does a parsed command's work after the ack.
func (b *Bot) runCommand(ctx context.Context, sc slack.SlashCommand, name string, cmd Command) {
	user := sc.UserID
	answer := func(text string) { b.respond(ctx, sc.ResponseURL, text) }
	switch cmd.Verb {
	case VerbModal:
		roles, err := b.opts.Approvals.RequestableRoles(ctx, user)
		if err != nil {
			answer(friendly(ctx, err))
			return
		}
		if len(roles) == 0 {
			answer("There is no role you may request. Ask an admin to add you to a role's requesters.")
			return
		}
		if _, err := b.opts.API.OpenViewContext(ctx, sc.TriggerID, RequestModal(roles, sc.ChannelID)); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("could not open the request form")
			answer(fmt.Sprintf("I could not open the request form (%s). You can also type `%s request <role> <duration> <reason…>`.", slackErr(err), name))
		}
	case VerbRequest:
		req, err := b.opts.Approvals.Create(ctx, approvals.NewRequest{Requester: user, Role: cmd.Role, Duration: cmd.Duration, Reason: cmd.Reason, Source: "slash-command"})
		if err != nil {
			msg := friendly(ctx, err)
			if errors.Is(err, approvals.ErrUnknownRole) {
				msg += " Use `" + name + " roles` to see the roles you may request."
			}
			if errors.Is(err, approvals.ErrUnknownRole) || errors.Is(err, approvals.ErrBadDuration) {
				msg += "\nUsage: `" + name + " request <role> <duration> <reason…>`"
			}
			answer(msg)
			return
		}
		answer(b.requestedText(req))
	case VerbBreak:
		out, err := b.opts.Approvals.BreakGlass(ctx, approvals.NewRequest{Requester: user, Role: cmd.Role, Duration: cmd.Duration, Reason: cmd.Reason, Source: "slash-command"})
		if err != nil {
			answer(":no_entry: " + friendly(ctx, err))
			return
		}
		answer(fmt.Sprintf(":rotating_light: Break-glass %s: you get `%s` for %s now (grant %s). This is announced to the approvers and must be reviewed; use `%s done %s` as soon as you are finished.",
			out.Request.ID, out.Request.Role, policy.FormatDuration(out.Request.Duration), out.GrantID, name, out.GrantID))
	case VerbRoles:
		answer(b.rolesText(ctx, user))
	case VerbList:
		answer(b.listText(ctx, user))
	case VerbCancel:
		if _, err := b.opts.Approvals.Cancel(ctx, cmd.ID, user); err != nil {
			answer(friendly(ctx, err))
			return
		}
		answer(fmt.Sprintf("Request %s is cancelled.", cmd.ID))
	case VerbDone:
		g, err := b.opts.Grants.Release(ctx, cmd.ID, user)
		if err != nil {
			answer(friendly(ctx, err))
			return
		}
		answer(releasedText(g))
	case VerbExtend:
		g, err := b.opts.Grants.Extend(ctx, cmd.ID, user, cmd.Duration)
		if err != nil {
			answer(friendly(ctx, err))
			return
		}
		answer(extendedText(g))
	}
}

func (b *Bot) rolesText(ctx context.Context, user string) string {
	roles, err := b.opts.Approvals.RequestableRoles(ctx, user)
	if err != nil {
		return friendly(ctx, err)
	}
	if len(roles) == 0 {
		return "There is no role you may request."
	}
	var lines []string
	for _, r := range roles {
		desc := ""
		if r.Description != "" {
			desc = " " + escape(r.Description)
		}
		lines = append(lines, fmt.Sprintf("• `%s`%s (default %s, up to %s, %d approval(s))", r.Name, desc, policy.FormatDuration(r.DefaultDuration), policy.FormatDuration(r.MaxDuration), r.Approvals))
	}
	return "*Roles you may request*\n" + strings.Join(lines, "\n")
}

func extendedText(g store.Grant) string {
	return fmt.Sprintf("Grant %s now lasts until %s.", g.ID, when(g.ExpiresAt))
}

func (b *Bot) requestedText(req store.Request) string {
	if req.State == store.RequestApproved {
		return fmt.Sprintf("Request %s for `%s` (%s) was approved at once because you are on call. I'll message you when your access is active.",
			req.ID, req.Role, policy.FormatDuration(req.Duration))
	}
	where := "the approvers"
	if role, ok := b.opts.Approvals.Policy().Role(req.Role); ok && role.ApprovalChannel != "" {
		where = "<#" + role.ApprovalChannel + ">"
	}
	return fmt.Sprintf("Request %s for `%s` (%s) is waiting for %d approval(s) in %s. I'll message you when it is decided.",
		req.ID, req.Role, policy.FormatDuration(req.Duration), req.RequiredApprovals, where)
}

func releasedText(g store.Grant) string {
	if g.State == store.GrantRevoked || g.State == store.GrantFailed {
		if g.CoveredBy != "" {
			return fmt.Sprintf("Grant %s has ended. Your access stays while your overlapping grant %s lasts.", g.ID, g.CoveredBy)
		}
		return fmt.Sprintf("Grant %s has ended and your access is removed.", g.ID)
	}
	return fmt.Sprintf("Grant %s has ended; removing your access is in progress (%s).", g.ID, g.State)
}

func (b *Bot) listText(ctx context.Context, user string) string {
	reqs, err := b.opts.Store.ListRequests(ctx, store.RequestQuery{Requester: user, Limit: 10})
	if err != nil {
		return friendly(ctx, err)
	}
	gs, err := b.opts.Store.ListGrants(ctx, store.GrantQuery{UserID: user, States: store.LiveGrantStates, Limit: 10})
	if err != nil {
		return friendly(ctx, err)
	}
	var sb strings.Builder
	sb.WriteString("*Your grants*\n")
	if len(gs) == 0 {
		sb.WriteString("none active\n")
	}
	for _, g := range gs {
		until := ""
		if !g.ExpiresAt.IsZero() {
			until = ", until " + when(g.ExpiresAt)
		}
		fmt.Fprintf(&sb, "• %s `%s` %s%s\n", g.ID, g.Role, g.State, until)
	}
	sb.WriteString("*Your recent requests*\n")
	if len(reqs) == 0 {
		sb.WriteString("none\n")
	}
	for _, r := range reqs {
		fmt.Fprintf(&sb, "• %s `%s` %s, %s: %s\n", r.ID, r.Role, policy.FormatDuration(r.Duration), r.State, clip(escape(r.Reason), 80))
	}
	return sb.String()
}

// slackErr names a Slack API error without anything secret in it.
func slackErr(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return "Slack is rate limiting jitbot"
	}
	return "Slack did not answer"
}
