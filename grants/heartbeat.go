package grants

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jitbot/jitbot/internal/refuse"
	"github.com/jitbot/jitbot/store"
)

// ErrHeartbeatMissed refuses a heartbeat that came after the grant's deadline: the grant has ended (or is
// about to be ended by the sweeper) and a late heartbeat does not bring it back.
var ErrHeartbeatMissed = errors.New("heartbeat deadline passed")

// heartbeatRetries bounds compare-and-swap retries of one heartbeat.
const heartbeatRetries = 20

// Heartbeat records that the holder of a task-bound grant is still alive: the grant's heartbeat deadline
// moves to now + its HeartbeatTimeout, and its due time with it. It only writes the grant record, with
// compare-and-swap, and never calls a provider or takes the binding lock, so it is cheap, safe to repeat and
// safe on any replica; ending a grant whose holder went quiet is the sweeper's job.
func (m *Manager) Heartbeat(ctx context.Context, grantID, by string) (store.Grant, error) {
	for range heartbeatRetries {
		g, err := m.opts.Store.GetGrant(ctx, grantID)
		if errors.Is(err, store.ErrNotFound) {
			return store.Grant{}, refuse.New(ErrNotFound, "There is no grant %s.", grantID)
		}
		if err != nil {
			return store.Grant{}, fmt.Errorf("grants: read %s: %w", grantID, err)
		}
		if by != g.UserID {
			return g, refuse.New(ErrNotHolder, "Only the holder of grant %s can send its heartbeats.", g.ID)
		}
		now := m.now()
		switch {
		case g.State == store.GrantActivating:
			return g, nil // the deadline starts at activation; nothing to move yet
		case g.State != store.GrantActive || !now.Before(g.ExpiresAt):
			return g, refuse.New(ErrNotActive, "Grant %s is %s, not active.", g.ID, describeState(&g, now))
		case g.HeartbeatTimeout <= 0:
			return g, nil // not task-bound: heartbeats are accepted and change nothing
		case !now.Before(g.HeartbeatDeadline):
			return g, refuse.New(ErrHeartbeatMissed, "Grant %s missed its heartbeat deadline (%s) and is being revoked.", g.ID, g.HeartbeatDeadline.UTC().Format(time.RFC3339))
		}
		prev := g.Version
		g.LastHeartbeat, g.HeartbeatDeadline = now, now.Add(g.HeartbeatTimeout)
		g.DueAt = activeDue(&g)
		err = m.opts.Store.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g, PrevVersion: prev}}})
		if errors.Is(err, store.ErrConflict) {
			continue // the sweeper or another heartbeat wrote first: re-read and re-check
		}
		if err != nil {
			return g, fmt.Errorf("grants: heartbeat %s: %w", g.ID, err)
		}
		return g, nil
	}
	return store.Grant{}, fmt.Errorf("grants: heartbeat %s: %w", grantID, store.ErrConflict)
}

// lastBeat is when the holder was last heard from: its last heartbeat, else the activation.
func lastBeat(g *store.Grant) time.Time {
	if g.LastHeartbeat.IsZero() {
		return g.ActivatedAt
	}
	return g.LastHeartbeat
}
