package bot

import (
	"context"

	"github.com/slack-go/slack"
)

// PostToAuditChannel queues text for the policy's default audit channel, with the same queueing and retries
// as the per-event lines (used for signed audit checkpoints and the store-diverged alert). It reports false
// when the policy has no default audit channel.
func (n *Notifier) PostToAuditChannel(text string) bool {
	ch := n.pol.Defaults.AuditChannel
	if ch == "" {
		return false
	}
	n.enqueue(ch, job{run: func(ctx context.Context) error {
		_, _, err := n.api.PostMessageContext(ctx, ch, slack.MsgOptionText(text, false))
		return err
	}})
	return true
}
