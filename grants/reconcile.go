package grants

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/store"
)

// DriftReport says what one reconciliation found.
type DriftReport struct {
	Checked int // provider-side objects listed
	Revoked int // removed because no live grant covers them
	Failed  int // could not be checked or removed (retried next run)
	// Unattributed counts entries no live lease covers that the provider cannot attribute to jitbot (see
	// Owned.Unattributed): left in place, because they may be standing access jitbot never granted.
	Unattributed int
}

// Reconcile lists what each provider holds on jitbot's behalf and removes whatever no live grant covers:
// access granted behind jitbot's back with its labels, and access whose revocation was lost. Each removal is
// an audit event (drift-revoked) and so reaches the audit channel. It is the safety net under revocation.
//
// It is safe against concurrent activity: a grant is stored (activating) before its provider call, so a
// grant being applied right now is already live; and each decision is taken under the binding lock, after
// asking the provider again whether the access is still there.
func (m *Manager) Reconcile(ctx context.Context) (DriftReport, error) {
	var rep DriftReport
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(m.opts.Providers)) {
		inv, ok := m.opts.Providers[name].(Inventory)
		if !ok {
			continue
		}
		owned, err := inv.ListOwned(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("grants: list what provider %s holds: %w", name, err))
			continue
		}
		for _, o := range owned {
			rep.Checked++
			removed, err := m.reconcileOne(ctx, name, o, &rep)
			switch {
			case err != nil:
				rep.Failed++
				errs = append(errs, err)
			case removed:
				rep.Revoked++
			}
		}
	}
	return rep, errors.Join(errs...)
}

func (m *Manager) reconcileOne(ctx context.Context, provider string, o Owned, rep *DriftReport) (bool, error) {
	// The binding is taken from the grant record the object names when there is one: a target rebuilt from
	// provider-side data (a full role definition id where the policy has a GUID, a project number where it
	// has an id) would hash to another binding and make a live grant look like drift.
	key := o.BindingKey
	if o.GrantID != "" {
		g, err := m.opts.Store.GetGrant(ctx, o.GrantID)
		switch {
		case err == nil:
			key = g.BindingKey
		case !errors.Is(err, store.ErrNotFound):
			return false, fmt.Errorf("grants: reconcile: read grant %s: %w", o.GrantID, err)
		}
	}
	if key == "" {
		key = BindingKey(provider, o.Principal, o.Target)
	}
	b, err := m.lockBinding(ctx, key, nil)
	if err != nil {
		return false, err
	}
	defer m.unlock(ctx, b.lock)
	leases, err := m.opts.Store.ListGrants(ctx, store.GrantQuery{BindingKey: key})
	if err != nil {
		return false, fmt.Errorf("grants: reconcile: list leases: %w", err)
	}
	if len(leases) > 0 {
		return false, nil // a live lease covers it (or is about to, or is being revoked)
	}
	if o.Unattributed {
		// The provider cannot label its objects, so this may be an administrator's standing access (or access
		// that existed before a grant and was left in place at its revoke): never jitbot's to remove.
		rep.Unattributed++
		zerolog.Ctx(ctx).Debug().Str("provider", provider).Str("ref", o.Ref).Msg("drift: access no live grant covers, not attributable to jitbot; left in place")
		return false, nil
	}
	why := "no grant was ever recorded for it"
	var known *store.Grant
	if o.GrantID != "" {
		if g, err := m.opts.Store.GetGrant(ctx, o.GrantID); err == nil {
			known = &g
			why = fmt.Sprintf("grant %s is %s", g.ID, g.State)
		} else if !errors.Is(err, store.ErrNotFound) {
			return false, fmt.Errorf("grants: reconcile: read grant %s: %w", o.GrantID, err)
		}
	}
	p := m.opts.Providers[provider]
	a := Assignment{BindingKey: o.BindingKey, GrantID: o.GrantID, Principal: o.Principal, Target: o.Target}
	if known != nil {
		a = assignment(known, known.ExpiresAt)
		if IsPreExisting(a.Ref) {
			return false, nil // the grant found this access already there: never jitbot's to remove
		}
		if a.Ref == RefUntouched {
			a.Ref = "" // the grant's attempts changed nothing, but the provider lists a labelled object: remove it
		}
	}
	// Only jitbot's own access is drift: access someone else granted (an OtherAccessInspector tells it apart)
	// is not jitbot's to remove, and a revoke would not remove it.
	pr, err := m.inspect(ctx, b, p, &store.Grant{ID: o.GrantID, Provider: provider}, a)
	if err != nil {
		return false, fmt.Errorf("grants: reconcile: check %s at %s: %w", o.Ref, provider, err)
	}
	if !pr.Ours {
		return false, nil // gone meanwhile
	}
	a.Generation = b.next()
	if _, err := m.call(ctx, b, "revoke", &store.Grant{ID: o.GrantID, Provider: provider}, func(ctx context.Context) (string, error) { return "", p.Revoke(ctx, a) }); err != nil {
		return false, fmt.Errorf("grants: reconcile: revoke %s at %s: %w", o.Ref, provider, err)
	}
	ev := store.AuditEvent{Type: store.EventDriftRevoked, At: m.now(), Actor: "system:reconciler", GrantID: o.GrantID,
		Details: map[string]string{"provider": provider, "principal": o.Principal, "ref": o.Ref, "reason": why}}
	if known != nil {
		ev.RequestID, ev.Role = known.RequestID, known.Role
	}
	events := []store.AuditEvent{ev}
	// Verify the removal right away where the provider shows a revoke at once; otherwise the next run lists
	// the object again if it is still there.
	var stillThere error
	if propagationDelay(p) == 0 {
		switch pr, err := m.inspect(ctx, b, p, &store.Grant{ID: o.GrantID, Provider: provider}, a); {
		case err != nil:
			zerolog.Ctx(ctx).Warn().Err(err).Str("ref", o.Ref).Msg("drift: could not verify the removal; the next reconciliation checks again")
		case pr.Ours:
			stillThere = fmt.Errorf("grants: reconcile: %s at %s is still present after its revoke", o.Ref, provider)
		default:
			// jitbot's object is gone. Access that remains through objects jitbot did not grant is reported
			// (access-remains), not retried: it is not jitbot's to remove.
			now := m.now()
			events = append(events, withOther(store.AuditEvent{Type: store.EventRevokeVerified, At: now, Actor: "system:reconciler",
				GrantID: o.GrantID, RequestID: ev.RequestID, Role: ev.Role,
				Details: map[string]string{"provider": provider, "ref": o.Ref, "verified_at": now.UTC().Format(time.RFC3339Nano)}}, pr.Other))
		}
	}
	if err := m.commit(ctx, b, nil, events...); err != nil {
		return true, err
	}
	if stillThere != nil {
		return true, stillThere
	}
	zerolog.Ctx(ctx).Warn().Str("provider", provider).Str("ref", o.Ref).Str("reason", why).Msg("drift: removed access no live grant covers")
	return true, nil
}
