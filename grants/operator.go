package grants

import (
	"context"
	"errors"

	"github.com/jitbot/jitbot/internal/refuse"
	"github.com/jitbot/jitbot/store"
)

// EventOperatorRevoked records that an operator ended a grant outside Slack (jitbot grants revoke). Its Actor
// is "cli:<operator>"; Details carry the operator, the reason and where it came from.
const EventOperatorRevoked = "operator-revoked"

// ErrNoReason: an operator revocation needs a reason.
var ErrNoReason = errors.New("operator revocation without a reason")

// OperatorRevoke ends a grant on an operator's authority (the person on call, when Slack is down), whoever
// holds it: the same write-ahead, binding lock, lease coverage and provider revocation as a release, and
// an EventOperatorRevoked audit event naming the operator. A grant already being revoked (revoking,
// revoke_failed) is retried now, and the attempt is recorded; an ended grant is refused (ErrNotActive).
// details are added to the event (e.g. os_user, host). It returns the grant as it stands after the attempt.
func (m *Manager) OperatorRevoke(ctx context.Context, grantID, operator, reason string, details map[string]string) (store.Grant, error) {
	if operator == "" || reason == "" {
		return store.Grant{}, refuse.New(ErrNoReason, "An operator revocation needs an operator name and a reason.")
	}
	var out store.Grant
	err := m.withGrant(ctx, grantID, func(ctx context.Context, b *binding, g *store.Grant) error {
		if g.State.Terminal() {
			return refuse.New(ErrNotActive, "Grant %s is already %s.", g.ID, g.State)
		}
		d := map[string]string{"operator": operator, "reason": reason, "previous_state": string(g.State)}
		for k, v := range details {
			if _, taken := d[k]; !taken {
				d[k] = v
			}
		}
		actor := "cli:" + operator
		var puts []store.GrantPut
		if g.State == store.GrantActive || g.State == store.GrantActivating {
			now := m.now()
			prev := g.Version
			g.State, g.EndReason, g.EndedBy, g.EndedAt, g.DueAt, g.Attempts = store.GrantRevoking, "revoked_by_operator", actor, now, now, 0
			puts = []store.GrantPut{{Grant: g, PrevVersion: prev}}
		}
		if err := m.commit(ctx, b, puts, m.event(EventOperatorRevoked, actor, g, d)); err != nil {
			return err
		}
		convergeErr := m.converge(ctx, b)
		if updated, err := m.opts.Store.GetGrant(ctx, g.ID); err == nil {
			*g = updated
		}
		out = *g
		if convergeErr != nil && !g.State.Terminal() {
			return convergeErr
		}
		return nil
	})
	return out, err
}
