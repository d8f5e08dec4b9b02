package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/slack-go/slack"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// Interaction handles a button click or a modal submission. It returns the ack body: nil for an empty 200,
// or a view submission response (field errors) for a modal.
func (b *Bot) Interaction(ctx context.Context, cb slack.InteractionCallback) any {
	user := cb.User.ID
	ctx = zerolog.Ctx(ctx).With().Str("user", user).Str("interaction", string(cb.Type)).Logger().WithContext(ctx)
	switch cb.Type {
	case slack.InteractionTypeBlockActions:
		for _, a := range cb.ActionCallback.BlockActions {
			b.blockAction(ctx, cb, a)
		}
		return nil
	case slack.InteractionTypeViewSubmission:
		return b.viewSubmission(ctx, cb)
	}
	return nil
}

// tell answers the person who clicked, privately.
func (b *Bot) tell(ctx context.Context, cb slack.InteractionCallback, text string) {
	if cb.ResponseURL != "" {
		b.respond(ctx, cb.ResponseURL, text)
		return
	}
	ch := cb.Channel.ID
	if ch == "" {
		ch = cb.Container.ChannelID
	}
	if ch != "" {
		_, err := b.opts.API.PostEphemeralContext(ctx, ch, cb.User.ID, slack.MsgOptionText(text, false))
		if err == nil {
			return
		}
		zerolog.Ctx(ctx).Warn().Err(err).Msg("could not answer the click; sending a DM instead")
	}
	// A click in a view (the Home tab) has neither a response_url nor a channel: answer in a DM, or the
	// person who clicked would never learn what happened (a refusal, an approval recorded).
	if b.notes != nil {
		b.notes.dm(cb.User.ID, text, nil)
	}
}

// fromHome reports whether the click came from the clicker's Home tab, which then needs re-rendering: its
// buttons were rendered from a state that the click may have changed.
func fromHome(cb slack.InteractionCallback) bool {
	return cb.Container.Type == "view" && cb.View.Type == slack.VTHomeTab
}

// blockAction acknowledges a click at once: everything, opening a form included, runs on the worker pool.
// The trigger id of a click stays valid for 3 seconds, which the pool's queue normally meets; when it does
// not, Slack refuses the form and the person is told to click again.
func (b *Bot) blockAction(ctx context.Context, cb slack.InteractionCallback, a *slack.BlockAction) {
	switch a.ActionID {
	case ActionApprove, ActionDeny, ActionDone, ActionReview, ActionExtend:
	default:
		zerolog.Ctx(ctx).Debug().Str("action_id", a.ActionID).Msg("ignored unknown action")
		return
	}
	if !b.later(ctx, func(ctx context.Context) { b.runBlockAction(ctx, cb, a) }) {
		b.notice(ctx, func(ctx context.Context) { b.tell(ctx, cb, busyText) })
	}
}

func (b *Bot) runBlockAction(ctx context.Context, cb slack.InteractionCallback, a *slack.BlockAction) {
	user := cb.User.ID
	// The value is only a lookup key: who clicked and what they may do is decided from the store and policy.
	id := a.Value
	openForm := func(what string, modal slack.ModalViewRequest) {
		if _, err := b.opts.API.OpenViewContext(ctx, cb.TriggerID, modal); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("could not open the " + what + " form")
			b.tell(ctx, cb, "I could not open the form ("+slackErr(err)+"); try again.")
		}
	}
	switch a.ActionID {
	case ActionApprove:
		if fromHome(cb) {
			defer b.refreshHome(ctx, user)
		}
		out, err := b.opts.Approvals.Approve(ctx, id, user, "")
		if err != nil {
			b.tell(ctx, cb, friendly(ctx, err))
			return
		}
		if out.GrantID == "" {
			b.tell(ctx, cb, fmt.Sprintf("Your approval of %s is recorded (%d of %d).", id, len(out.Request.Approvals), out.Request.RequiredApprovals))
		}
	case ActionDeny:
		if _, err := b.opts.Approvals.MayDecide(ctx, id, user); err != nil {
			b.tell(ctx, cb, friendly(ctx, err))
			return
		}
		openForm("deny", ReasonModal(CallbackDeny, "Deny request", "Why are you denying "+id+"?", "The requester sees this", id))
	case ActionDone:
		g, err := b.opts.Grants.Release(ctx, id, user)
		if err != nil {
			b.tell(ctx, cb, friendly(ctx, err))
			return
		}
		b.tell(ctx, cb, releasedText(g))
		b.refreshHome(ctx, user)
	case ActionReview:
		if _, err := b.opts.Approvals.MayReview(ctx, id, user); err != nil {
			b.tell(ctx, cb, friendly(ctx, err))
			return
		}
		openForm("review", ReviewModal(id))
	case ActionExtend:
		g, err := b.opts.Store.GetGrant(ctx, id)
		if err != nil || g.UserID != user {
			b.tell(ctx, cb, "Only the holder of a grant can extend it.")
			return
		}
		openForm("extend", ReasonModal(CallbackExtend, "Extend access", "Extend "+g.Role+" by", "e.g. 30m or 1h", id))
	}
}

func value(cb slack.InteractionCallback, block string) string {
	v, ok := cb.View.State.Values[block][inputID]
	if !ok {
		return ""
	}
	if v.SelectedOption.Value != "" {
		return v.SelectedOption.Value
	}
	return strings.TrimSpace(v.Value)
}

func fieldErrors(errs map[string]string) *slack.ViewSubmissionResponse {
	return slack.NewErrorsViewSubmissionResponse(errs)
}

func (b *Bot) viewSubmission(ctx context.Context, cb slack.InteractionCallback) any {
	user := cb.User.ID
	switch cb.View.CallbackID {
	case CallbackRequest:
		role := value(cb, blockRole)
		var d time.Duration
		if s := value(cb, blockDuration); s != "" {
			var err error
			if d, err = policy.ParseDuration(s); err != nil {
				return fieldErrors(map[string]string{blockDuration: clip(err.Error(), 150)})
			}
		}
		if value(cb, blockKind) == kindBreakGlass {
			// The on-call lookup can outlast Slack's 3 seconds: close the form, report by DM.
			in := approvals.NewRequest{Requester: user, Role: role, Duration: d, Reason: value(cb, blockReason), Source: "modal"}
			queued := b.later(ctx, func(ctx context.Context) {
				out, err := b.opts.Approvals.BreakGlass(ctx, in)
				text := ""
				if err != nil {
					text = ":no_entry: Break-glass refused: " + friendly(ctx, err)
				} else {
					text = fmt.Sprintf(":rotating_light: Break-glass %s: you get `%s` for %s now (grant %s). It is announced to the approvers and must be reviewed.",
						out.Request.ID, out.Request.Role, policy.FormatDuration(out.Request.Duration), out.GrantID)
				}
				if b.notes != nil {
					b.notes.dm(user, text, nil)
				}
			})
			if !queued {
				return fieldErrors(map[string]string{blockKind: busyText})
			}
			return nil
		}
		// Checked now, so that a refusal shows under its field; stored after the ack, because an on-call
		// auto-approval asks the on-call source and activates the grant.
		in := approvals.NewRequest{Requester: user, Role: role, Duration: d, Reason: value(cb, blockReason), Source: "modal"}
		if err := b.opts.Approvals.Check(ctx, in); err != nil {
			return fieldErrors(map[string]string{requestField(err): clip(friendly(ctx, err), 150)})
		}
		channel := cb.View.PrivateMetadata
		queued := b.later(ctx, func(ctx context.Context) {
			req, err := b.opts.Approvals.Create(ctx, in)
			text := ""
			if err != nil {
				text = ":no_entry: Your request for `" + in.Role + "` was not stored: " + friendly(ctx, err)
			} else {
				text = b.requestedText(req)
			}
			if channel != "" {
				if _, err := b.opts.API.PostEphemeralContext(ctx, channel, user, slack.MsgOptionText(text, false)); err == nil {
					return
				}
			}
			if b.notes != nil {
				b.notes.dm(user, text, nil)
			}
		})
		if !queued {
			return fieldErrors(map[string]string{blockReason: busyText})
		}
		return nil
	case CallbackDeny:
		id := cb.View.PrivateMetadata
		if _, err := b.opts.Approvals.Deny(ctx, id, user, value(cb, blockReason)); err != nil {
			return fieldErrors(map[string]string{blockReason: clip(friendly(ctx, err), 150)})
		}
		return nil
	case CallbackReview:
		if _, err := b.opts.Approvals.Review(ctx, cb.View.PrivateMetadata, user, value(cb, blockReason)); err != nil {
			return fieldErrors(map[string]string{blockReason: clip(friendly(ctx, err), 150)})
		}
		return nil
	case CallbackExtend:
		id := cb.View.PrivateMetadata
		d, err := policy.ParseDuration(value(cb, blockReason))
		if err != nil {
			return fieldErrors(map[string]string{blockReason: clip(err.Error(), 150)})
		}
		// A refusal (too long, not active any more, not the holder) shows under the field; the provider
		// is told after the ack.
		if err := b.opts.Grants.CheckExtend(ctx, id, user, d); err != nil {
			return fieldErrors(map[string]string{blockReason: clip(friendly(ctx, err), 150)})
		}
		queued := b.later(ctx, func(ctx context.Context) {
			g, err := b.opts.Grants.Extend(ctx, id, user, d)
			text := ""
			if err != nil {
				text = friendly(ctx, err)
			} else {
				text = extendedText(g)
			}
			if b.notes != nil {
				b.notes.dm(user, text, nil)
			}
			b.refreshHome(ctx, user)
		})
		if !queued {
			return fieldErrors(map[string]string{blockReason: busyText})
		}
		return nil
	}
	return nil
}

// requestField is the request form's field a refusal is about.
func requestField(err error) string {
	switch {
	case errors.Is(err, approvals.ErrBadDuration):
		return blockDuration
	case errors.Is(err, approvals.ErrBadReason):
		return blockReason
	}
	return blockRole
}

// EventsAPI handles Events API callbacks (already deduplicated on event_id by the transport).
func (b *Bot) AppHomeOpened(ctx context.Context, user string) {
	b.later(ctx, func(ctx context.Context) { b.refreshHome(ctx, user) }) // when full, the next opening shows it
}

// refreshHome publishes the App Home tab for user.
func (b *Bot) refreshHome(ctx context.Context, user string) {
	view, err := b.homeView(ctx, user)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("could not build the home tab")
		return
	}
	if _, err := b.opts.API.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: user, View: view}); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("could not publish the home tab")
	}
}

func (b *Bot) homeView(ctx context.Context, user string) (slack.HomeTabViewRequest, error) {
	var blocks []slack.Block
	add := func(bl ...slack.Block) {
		if len(blocks)+len(bl) <= 100 {
			blocks = append(blocks, bl...)
		}
	}
	add(slack.NewHeaderBlock(plain("Your access")))
	gs, err := b.opts.Store.ListGrants(ctx, store.GrantQuery{UserID: user, States: store.LiveGrantStates, Limit: 20})
	if err != nil {
		return slack.HomeTabViewRequest{}, err
	}
	if len(gs) == 0 {
		add(slack.NewSectionBlock(mrkdwn("No active grants."), nil, nil))
	}
	for _, g := range gs {
		line := fmt.Sprintf("*%s* `%s` — %s", g.ID, g.Role, g.State)
		if g.State == store.GrantActive {
			line += ", until " + when(g.ExpiresAt)
		}
		add(slack.NewSectionBlock(mrkdwn(line), nil, nil))
		if g.State == store.GrantActive {
			add(GrantButtons(g))
		}
	}
	add(slack.NewHeaderBlock(plain("Your pending requests")))
	reqs, err := b.opts.Store.ListRequests(ctx, store.RequestQuery{Requester: user, Limit: 20})
	if err != nil {
		return slack.HomeTabViewRequest{}, err
	}
	pending := 0
	for _, r := range reqs {
		if r.State == store.RequestPending {
			pending++
			add(slack.NewSectionBlock(mrkdwn(fmt.Sprintf("*%s* `%s` for %s: %d of %d approvals", r.ID, r.Role, policy.FormatDuration(r.Duration), len(r.Approvals), r.RequiredApprovals)), nil, nil))
		}
	}
	if pending == 0 {
		add(slack.NewSectionBlock(mrkdwn("None."), nil, nil))
	}
	add(slack.NewHeaderBlock(plain("Roles you may request")))
	roles, err := b.opts.Approvals.RequestableRoles(ctx, user)
	if err != nil {
		return slack.HomeTabViewRequest{}, err
	}
	var names []string
	for _, r := range roles {
		names = append(names, fmt.Sprintf("`%s` (up to %s)", r.Name, policy.FormatDuration(r.MaxDuration)))
	}
	if len(names) == 0 {
		names = []string{"none"}
	}
	add(slack.NewSectionBlock(mrkdwn(clip(strings.Join(names, ", ")+"\nType `"+b.opts.Command+"` to request one.", 2900)), nil, nil))

	mine, err := b.opts.Approvals.WaitingFor(ctx, user)
	if err != nil {
		return slack.HomeTabViewRequest{}, err
	}
	if len(mine) > 0 {
		add(slack.NewHeaderBlock(plain("Waiting for your approval")))
		for _, r := range mine {
			_, bl := ApprovalMessage(r, b.roleOf(r.Role), nil, b.opts.Now())
			add(bl[1:]...) // without the header, to fit more
		}
	}
	return slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: blocks}}, nil
}

func (b *Bot) roleOf(name string) *policy.Role {
	r, _ := b.opts.Approvals.Policy().Role(name)
	return r
}
