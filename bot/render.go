package bot

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// Action ids carried by buttons and views. A button's value is only a hint: every handler looks the request
// or grant up in the store and checks who clicked.
const (
	ActionApprove   = "jit_approve"
	ActionDeny      = "jit_deny"
	ActionDone      = "jit_done"
	ActionExtend    = "jit_extend"
	ActionReview    = "jit_review"
	CallbackReview  = "jit_review_modal"
	CallbackRequest = "jit_request_modal"
	CallbackDeny    = "jit_deny_modal"
	CallbackExtend  = "jit_extend_modal"

	blockRole     = "role"
	blockDuration = "duration"
	blockReason   = "reason"
	blockKind     = "kind"

	kindRequest    = "request"
	kindBreakGlass = "breakglass"
	inputID        = "value"
)

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}
func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, true, false)
}

// clip keeps text within a Block Kit limit, counting characters as Slack does.
func clip(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	r := []rune(s)
	return string(r[:limit-1]) + "…"
}

// escape neutralises Slack's control characters in user-provided text (reasons, notes), so nobody can
// smuggle a mention or a link into an approval message.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// when writes a moment the one way jitbot writes moments: in the reader's own time zone, with the day
// ("Dec 2 at 14:05"; Slack's fallback text is UTC).
func when(t time.Time) string { return slackDate(t, "{date_short_pretty} at {time}") }

// human writes a duration detail of an audit event ("1h0m0s", as stored) for people ("1h").
func human(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	return policy.FormatDuration(d)
}

// durationDetails are the audit details that hold a duration.
var durationDetails = map[string]bool{"duration": true, "by": true, "since": true}

func slackDate(t time.Time, format string) string {
	return fmt.Sprintf("<!date^%d^%s|%s>", t.Unix(), format, t.UTC().Format("2006-01-02 15:04 UTC"))
}

func targetText(target map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(target)) {
		parts = append(parts, fmt.Sprintf("%s=%s", k, target[k]))
	}
	return strings.Join(parts, " ")
}

func approvers(ds []store.Decision) string {
	var out []string
	for _, d := range ds {
		out = append(out, deciderText(d.By))
	}
	return strings.Join(out, ", ")
}

// status is the one-line state of a request and its grant, as shown on the approval message.
func status(req store.Request, g *store.Grant, now time.Time) string {
	switch req.State {
	case store.RequestPending:
		return fmt.Sprintf(":hourglass_flowing_sand: Waiting for approval (%d of %d). Expires %s if nobody decides.", len(req.Approvals), req.RequiredApprovals, when(req.PendingUntil))
	case store.RequestDenied:
		if req.Denial != nil {
			return fmt.Sprintf(":no_entry: Denied by <@%s>: %s", req.Denial.By, escape(req.Denial.Note))
		}
		return ":no_entry: Denied"
	case store.RequestCancelled:
		return ":wastebasket: Cancelled by the requester"
	case store.RequestExpired:
		return ":zzz: Expired: nobody decided in time"
	}
	by := "Approved by " + approvers(req.Approvals)
	if req.BreakGlass {
		by = "Break-glass: granted at once, without approval"
	}
	if g == nil {
		return ":white_check_mark: " + by
	}
	switch g.State {
	case store.GrantActivating:
		if g.LastError != "" {
			return fmt.Sprintf(":warning: %s. Applying access is being retried (attempt %d).", by, g.Attempts)
		}
		return ":gear: " + by + ". Applying access…"
	case store.GrantActive:
		return fmt.Sprintf(":unlock: %s. Active until %s.", by, when(g.ExpiresAt))
	case store.GrantRevoking:
		if g.Attempts > 0 {
			return fmt.Sprintf(":warning: %s. Ended (%s); removing access is being retried (attempt %d).", by, endReason(g), g.Attempts)
		}
		return fmt.Sprintf(":lock: %s. Ended (%s); removing access…", by, endReason(g))
	case store.GrantRevokeFailed:
		return fmt.Sprintf(":rotating_light: %s. *Removing access failed %d times; access may still be present.* jitbot keeps retrying and has alerted the audit channel.", by, g.Attempts)
	case store.GrantRevoked:
		return fmt.Sprintf(":lock: %s. Access ended (%s) %s.", by, endReason(g), when(g.RevokedAt))
	case store.GrantFailed:
		return fmt.Sprintf(":x: %s, but the provider refused the grant; nothing remains in place.", by)
	}
	return by
}

func endReason(g *store.Grant) string {
	switch g.EndReason {
	case "released":
		return "released by <@" + g.EndedBy + ">"
	case "expired":
		return "expired"
	case "activation_failed":
		return "grant failed"
	case "":
		return "ended"
	}
	return g.EndReason
}

// ApprovalMessage renders the message in the approval channel. Buttons exist only while the request is
// pending; the message is re-rendered from the store whenever the request or its grant changes.
func ApprovalMessage(req store.Request, role *policy.Role, g *store.Grant, now time.Time) (text string, blocks []slack.Block) {
	text = fmt.Sprintf("%s requests %s for %s", requesterText(req), req.Role, policy.FormatDuration(req.Duration))
	title := ":key: Access request " + req.ID
	if req.BreakGlass {
		title = ":rotating_light: BREAK-GLASS access " + req.ID
		text = fmt.Sprintf(":rotating_light: BREAK-GLASS: <@%s> took %s for %s without approval. %s: review it.", req.Requester, req.Role, policy.FormatDuration(req.Duration), mentions(role))
	}
	desc := ""
	target := ""
	if role != nil {
		desc = role.Description
		target = targetText(role.Target)
	}
	fields := []*slack.TextBlockObject{
		mrkdwn("*Requester*\n" + requesterText(req)),
		mrkdwn("*Role*\n`" + req.Role + "`" + map[bool]string{true: " " + clip(escape(desc), 200), false: ""}[desc != ""]),
		mrkdwn("*Duration*\n" + policy.FormatDuration(req.Duration)),
		mrkdwn(fmt.Sprintf("*Approvals*\n%d of %d", len(req.Approvals), req.RequiredApprovals)),
	}
	if target != "" {
		fields = append(fields, mrkdwn("*Target*\n"+clip(escape(target), 1900)))
	}
	blocks = []slack.Block{
		slack.NewHeaderBlock(plain(clip(title, 150))),
		slack.NewSectionBlock(nil, fields, nil),
		slack.NewSectionBlock(mrkdwn("*Reason*\n"+clip(escape(req.Reason), 2900)), nil, nil),
		slack.NewContextBlock("status:"+req.ID, mrkdwn(clip(status(req, g, now), 2900))),
	}
	if req.BreakGlass {
		blocks = append(blocks, slack.NewSectionBlock(mrkdwn(clip(reviewText(req, role), 2900)), nil, nil))
		if req.Review == nil {
			review := slack.NewButtonBlockElement(ActionReview, req.ID, plain("Mark reviewed…"))
			review.Style = slack.StylePrimary
			blocks = append(blocks, slack.NewActionBlock("review:"+req.ID, review))
		}
	}
	if req.State == store.RequestPending {
		approve := slack.NewButtonBlockElement(ActionApprove, req.ID, plain("Approve"))
		approve.Style = slack.StylePrimary
		approve.Confirm = slack.NewConfirmationBlockObject(plain("Approve this request?"),
			mrkdwn(clip(fmt.Sprintf("%s gets %s for %s.", requesterText(req), req.Role, policy.FormatDuration(req.Duration)), 300)),
			plain("Approve"), plain("Cancel"))
		deny := slack.NewButtonBlockElement(ActionDeny, req.ID, plain("Deny…"))
		deny.Style = slack.StyleDanger
		blocks = append(blocks, slack.NewActionBlock("decide:"+req.ID, approve, deny))
	}
	return text, withPipeline(req, blocks)
}

// GrantButtons are the holder's controls on an active grant (DM reminders, App Home).
func GrantButtons(g store.Grant) *slack.ActionBlock {
	done := slack.NewButtonBlockElement(ActionDone, g.ID, plain("I'm done"))
	done.Style = slack.StyleDanger
	extend := slack.NewButtonBlockElement(ActionExtend, g.ID, plain("Extend…"))
	return slack.NewActionBlock("grant:"+g.ID, extend, done)
}

// RequestModal is the form behind the bare slash command: only the roles this person may request.
func RequestModal(roles []*policy.Role, channel string) slack.ModalViewRequest {
	var opts []*slack.OptionBlockObject
	for _, r := range roles {
		desc := fmt.Sprintf("up to %s", policy.FormatDuration(r.MaxDuration))
		opts = append(opts, slack.NewOptionBlockObject(r.Name, plain(clip(r.Name, 75)), plain(clip(desc, 75))))
		if len(opts) == 100 { // Slack's limit for a static select
			break
		}
	}
	roleSel := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, plain("Choose a role"), inputID, opts...)
	dur := slack.NewPlainTextInputBlockElement(plain("e.g. 1h, 30m, 1h30m"), inputID)
	reason := slack.NewPlainTextInputBlockElement(plain("Ticket or incident, and why"), inputID)
	reason.Multiline = true
	reason.MaxLength = 1000
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      CallbackRequest,
		Title:           plain("Request access"),
		Submit:          plain("Request"),
		Close:           plain("Cancel"),
		PrivateMetadata: channel,
		Blocks: slack.Blocks{BlockSet: append([]slack.Block{
			slack.NewInputBlock(blockRole, plain("Role"), nil, roleSel),
			slack.NewInputBlock(blockDuration, plain("Duration"), plain("Leave empty for the role's default. Within the role's maximum."), dur).WithOptional(true),
			slack.NewInputBlock(blockReason, plain("Reason"), nil, reason),
		}, kindBlock(roles)...)},
	}
}

// kindBlock offers break-glass in the request form when one of the roles allows it.
func kindBlock(roles []*policy.Role) []slack.Block {
	for _, r := range roles {
		if r.BreakGlass != nil && r.BreakGlass.Allowed {
			kind := slack.NewRadioButtonsBlockElement(inputID,
				slack.NewOptionBlockObject(kindRequest, plain("Ask the approvers"), nil),
				slack.NewOptionBlockObject(kindBreakGlass, plain("Break glass: I am on call, grant it now"), plain("Checked against the on-call schedule, announced loudly, reviewed afterwards")))
			return []slack.Block{slack.NewInputBlock(blockKind, plain("How"), nil, kind).WithOptional(true)}
		}
	}
	return nil
}

// ReasonModal asks an approver why they deny, or a holder how much longer they need.
func ReasonModal(callback, title, label, hint, subject string) slack.ModalViewRequest {
	in := slack.NewPlainTextInputBlockElement(plain(hint), inputID)
	return slack.ModalViewRequest{
		Type: slack.VTModal, CallbackID: callback, Title: plain(clip(title, 24)), Submit: plain("Submit"), Close: plain("Cancel"),
		PrivateMetadata: subject,
		Blocks:          slack.Blocks{BlockSet: []slack.Block{slack.NewInputBlock(blockReason, plain(label), nil, in)}},
	}
}

// AuditLine is the audit channel's one line for an event.
func AuditLine(e store.AuditEvent) string {
	actor := e.Actor
	if strings.HasPrefix(actor, "U") || strings.HasPrefix(actor, "W") {
		actor = "<@" + actor + ">"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "`%s` %s", e.Type, actor)
	if e.Role != "" {
		fmt.Fprintf(&b, " · %s", e.Role)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " · %s", e.RequestID)
	}
	if e.GrantID != "" {
		fmt.Fprintf(&b, " · %s", e.GrantID)
	}
	for _, k := range slices.Sorted(maps.Keys(e.Details)) {
		v := e.Details[k]
		if durationDetails[k] {
			v = human(v)
		}
		fmt.Fprintf(&b, " · %s: %s", k, clip(escape(v), 300))
	}
	if e.Type == store.EventRevokeFailed || e.Type == store.EventDriftRevoked || e.Type == store.EventBreakGlass {
		return ":rotating_light: " + clip(b.String(), 2900)
	}
	if e.Type == store.EventAccessRemains {
		// Not an alert (jitbot's revoke worked), but someone should look at the access jitbot did not grant.
		return ":warning: " + clip(b.String(), 2900)
	}
	return clip(b.String(), 2900)
}

// mention names a Slack user so that Slack shows (and notifies) them.
func mention(userID string) string { return "<@" + userID + ">" }

// mentions names a role's approvers so that Slack notifies them (users and user groups).
func mentions(role *policy.Role) string {
	if role == nil {
		return "Approvers"
	}
	var out []string
	for _, u := range role.Approvers.Users {
		out = append(out, "<@"+u+">")
	}
	for _, g := range role.Approvers.Groups {
		out = append(out, "<!subteam^"+g+">")
	}
	if len(out) == 0 {
		return "Approvers"
	}
	return strings.Join(out, " ")
}

// reviewText is the break-glass review line: who must review, or who did.
func reviewText(req store.Request, role *policy.Role) string {
	if req.Review != nil {
		note := ""
		if req.Review.Note != "" {
			note = ": " + escape(req.Review.Note)
		}
		return fmt.Sprintf(":white_check_mark: *Reviewed* by <@%s>%s", req.Review.By, note)
	}
	return fmt.Sprintf(":mag: *Post-incident review required.* %s: acknowledge this break-glass use (the requester cannot).", mentions(role))
}

// ReviewModal asks the reviewer for an optional note.
func ReviewModal(requestID string) slack.ModalViewRequest {
	in := slack.NewPlainTextInputBlockElement(plain("What you checked (optional)"), inputID)
	in.Multiline = true
	in.MaxLength = 1000
	return slack.ModalViewRequest{
		Type: slack.VTModal, CallbackID: CallbackReview, Title: plain("Review break-glass"), Submit: plain("Mark reviewed"),
		Close: plain("Cancel"), PrivateMetadata: requestID,
		Blocks: slack.Blocks{BlockSet: []slack.Block{slack.NewInputBlock(blockReason, plain("Note"), nil, in).WithOptional(true)}},
	}
}
