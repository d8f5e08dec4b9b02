// Package grants owns the life of a grant after approval: applying it at a provider (write-ahead), extending,
// releasing, expiring and revoking it, overlap-safe leases, and the sweeper that makes expiry punctual and
// revocation relentless.
package grants

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/internal/refuse"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// Store is the part of store.Store that grants uses.
type Store interface {
	Commit(ctx context.Context, b store.Batch) error
	GetGrant(ctx context.Context, id string) (store.Grant, error)
	ListGrants(ctx context.Context, q store.GrantQuery) ([]store.Grant, error)
	ClaimDueGrants(ctx context.Context, now time.Time, limit int, hold time.Duration) ([]store.Grant, error)
	NextDue(ctx context.Context) (time.Time, bool, error)
	AcquireLock(ctx context.Context, name, holder string, ttl time.Duration) (store.Lock, error)
	RenewLock(ctx context.Context, l store.Lock, ttl time.Duration) error
	ReleaseLock(ctx context.Context, l store.Lock) error
}

// Publisher receives audit events after they were committed.
type Publisher interface {
	Publish(ctx context.Context, events ...store.AuditEvent)
}

// Observer receives measurements (Prometheus in production). All methods must be cheap and non-blocking.
type Observer interface {
	ProviderCall(op string, err error)
	Revoked(lag time.Duration)
	Swept(took time.Duration, claimed int)
}

// Refusal kinds for Release and Extend.
var (
	ErrNotFound     = errors.New("no such grant")
	ErrNotHolder    = errors.New("not the grant holder")
	ErrNotActive    = errors.New("grant not active")
	ErrBadExtension = errors.New("bad extension")
	ErrBusy         = errors.New("binding busy")
)

// Options configures a Manager. Store and Providers are required; the rest has safe defaults.
type Options struct {
	Store     Store
	Providers map[string]Provider // by provider instance name from the policy
	Publisher Publisher
	Observer  Observer
	Now       func() time.Time
	// Holder names this process in locks. Default: hostname-pid-random.
	Holder string
	// AttemptTimeout bounds each provider call. Default 10s.
	AttemptTimeout time.Duration
	// MaxAttempts is how many consecutive failures a grant or revoke gets before it is escalated
	// (activation: failed and undone; revocation: revoke_failed and an alert). Default 5.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the jittered exponential retry delay. Defaults 1s and 5m.
	BackoffBase, BackoffMax time.Duration
	// ActivationResumeAfter is how long a grant may stay activating before the sweeper resumes it. Default
	// 3×AttemptTimeout.
	ActivationResumeAfter time.Duration
	// LockWait is how long an operation waits for another operation on the same binding. Default
	// AttemptTimeout.
	LockWait time.Duration
	// RemindBefore says how long before its expiry the holder of an active grant is reminded (a
	// grant-reminder event, scheduled in the durable due index); 0 or less: no reminder for that grant.
	// Default min(10m, a fifth of the grant's duration), none for grants shorter than 5 minutes.
	RemindBefore func(g store.Grant) time.Duration
	// LateCallWindow is how long after a revoke a provider call that jitbot gave up on (an attempt timeout)
	// may still land at a provider that cannot order operations (see Sequenced): the revoked binding is
	// checked again, from the durable due index, once it has passed. Default 2×AttemptTimeout.
	LateCallWindow time.Duration
	// LockTTL is the binding lock's lifetime; it is renewed before every provider call, and every commit made
	// under it is fenced by it (store.Batch.Fence). Default 2×AttemptTimeout + 5s.
	LockTTL time.Duration
}

// Manager runs grant transitions. Every provider call and every change to a live lease happens while holding
// the lease's binding lock, so operations on one binding are serialised across all replicas.
type Manager struct {
	opts       Options
	onSchedule func(time.Time)
	// maxBudget is the longest attempt any provider declared (grants.AttemptBudgeter), at least AttemptTimeout:
	// binding locks must outlive the longest provider call.
	maxBudget time.Duration
}

// NewManager validates opts and returns a Manager.
func NewManager(opts Options) (*Manager, error) {
	if opts.Store == nil {
		return nil, errors.New("grants: Store is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Holder == "" {
		host, _ := os.Hostname()
		opts.Holder = host + "-" + strconv.Itoa(os.Getpid()) + "-" + store.NewID("m")
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 10 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 5 * time.Minute
	}
	if opts.ActivationResumeAfter <= 0 {
		opts.ActivationResumeAfter = 3 * opts.AttemptTimeout
	}
	if opts.LockWait <= 0 {
		opts.LockWait = opts.AttemptTimeout
	}
	if opts.RemindBefore == nil {
		opts.RemindBefore = func(g store.Grant) time.Duration {
			if g.Duration < 5*time.Minute {
				return 0 // a reminder less than a minute before the end is noise
			}
			return min(10*time.Minute, g.Duration/5)
		}
	}
	m := &Manager{opts: opts, maxBudget: opts.AttemptTimeout}
	for _, p := range opts.Providers {
		if b, ok := p.(AttemptBudgeter); ok {
			for _, op := range []string{"grant", "revoke", "check"} {
				m.maxBudget = max(m.maxBudget, min(b.AttemptBudget(op), maxAttemptBudget))
			}
		}
	}
	// A call may last as long as the longest attempt budget: the lock must outlive it, and a call jitbot gave
	// up on can land until then.
	if m.opts.LateCallWindow <= 0 {
		m.opts.LateCallWindow = 2 * m.maxBudget
	}
	if m.opts.LockTTL <= 0 {
		m.opts.LockTTL = 2*m.maxBudget + 5*time.Second
	}
	return m, nil
}

// maxAttemptBudget caps what an adapter may declare: a call that needs longer must be resumable.
const maxAttemptBudget = 15 * time.Minute

// ActivationResumeAfter is the write-ahead resume delay for new grant records.
func (m *Manager) ActivationResumeAfter() time.Duration { return m.opts.ActivationResumeAfter }

// OnSchedule registers fn to hear about every due time this manager writes (the sweeper uses it to wake up
// exactly when the next grant expires). Call before use.
func (m *Manager) OnSchedule(fn func(time.Time)) { m.onSchedule = fn }

// Activate applies a stored activating grant at its provider. Safe to call repeatedly and concurrently.
func (m *Manager) Activate(ctx context.Context, grantID string) error {
	g, err := m.opts.Store.GetGrant(ctx, grantID)
	if err != nil {
		return fmt.Errorf("grants: activate %s: %w", grantID, err)
	}
	return m.Converge(ctx, g.BindingKey)
}

// Release ends a grant early at its holder's request ("I'm done").
func (m *Manager) Release(ctx context.Context, grantID, by string) (store.Grant, error) {
	var out store.Grant
	err := m.withGrant(ctx, grantID, func(ctx context.Context, b *binding, g *store.Grant) error {
		if by != g.UserID {
			return refuse.New(ErrNotHolder, "Only %s can release grant %s.", refuse.User(g.UserID), g.ID)
		}
		if g.State != store.GrantActive && g.State != store.GrantActivating {
			return refuse.New(ErrNotActive, "Grant %s is already %s.", g.ID, g.State)
		}
		now := m.now()
		prev := g.Version
		g.State, g.EndReason, g.EndedBy, g.EndedAt, g.DueAt, g.Attempts, g.RemindAt = store.GrantRevoking, "released", by, now, now, 0, time.Time{}
		ev := m.event(store.EventReleased, by, g, nil)
		if err := m.commit(ctx, b, []store.GrantPut{{Grant: g, PrevVersion: prev}}, ev); err != nil {
			return err
		}
		_ = m.converge(ctx, b) // a failed revoke is recorded on the grant and retried by the sweeper
		if updated, err := m.opts.Store.GetGrant(ctx, g.ID); err == nil {
			*g = updated
		}
		out = *g
		return nil
	})
	return out, err
}

// Extend lengthens an active grant by d, within the role's maximum counted from activation. Providers that
// enforce expiry themselves are told the new expiry before it is recorded.
func (m *Manager) Extend(ctx context.Context, grantID, by string, d time.Duration) (store.Grant, error) {
	var out store.Grant
	err := m.withGrant(ctx, grantID, func(ctx context.Context, b *binding, g *store.Grant) error {
		now := m.now()
		if err := extendRefusal(g, by, d, now); err != nil {
			return err
		}
		newExpiry := g.ExpiresAt.Add(d).Truncate(time.Millisecond)
		p, err := m.provider(g)
		if err != nil {
			return err
		}
		leases, err := m.opts.Store.ListGrants(ctx, store.GrantQuery{BindingKey: g.BindingKey})
		if err != nil {
			return fmt.Errorf("grants: list leases of binding: %w", err)
		}
		b.observe(leases)
		until := newExpiry
		if others := latestExpiry(leases, now, g.ID); others.After(until) {
			until = others
		}
		if err := m.renew(ctx, b); err != nil {
			return err
		}
		a := b.assignment(g, until)
		ref, err := m.call(ctx, b, "grant", g, func(ctx context.Context) (string, error) { return p.Grant(ctx, a) })
		if err != nil {
			// The call may have landed: the provider-side expiry may now be later than the store says.
			b.diverge(a)
			return fmt.Errorf("grants: extend %s at provider %s: %w", g.ID, g.Provider, err)
		}
		if ref != "" {
			g.ProviderRef = ref // e.g. standing access removed meanwhile and now created by jitbot
		}
		prev := g.Version
		oldExpiry := g.ExpiresAt
		g.ExpiresAt, g.Duration = newExpiry, g.Duration+d
		m.scheduleReminder(g, now) // sets DueAt: the reminder, the heartbeat deadline or the expiry
		ev := m.event(store.EventExtended, by, g, map[string]string{"by": d.String(), "old_expires_at": oldExpiry.UTC().Format(time.RFC3339), "expires_at": newExpiry.UTC().Format(time.RFC3339)})
		if err := m.commit(ctx, b, []store.GrantPut{{Grant: g, PrevVersion: prev}}, ev); err != nil {
			b.diverge(a)
			return err
		}
		out = *g
		return nil
	})
	return out, err
}

// CheckExtend says whether Extend would refuse to extend the grant by d now (who asks, the grant's state,
// the role's maximum), without calling the provider or changing anything: the Extend form shows the
// refusal under its field. Extend checks everything again under the binding lock.
func (m *Manager) CheckExtend(ctx context.Context, grantID, by string, d time.Duration) error {
	g, err := m.opts.Store.GetGrant(ctx, grantID)
	if errors.Is(err, store.ErrNotFound) {
		return refuse.New(ErrNotFound, "There is no grant %s.", grantID)
	}
	if err != nil {
		return fmt.Errorf("grants: read %s: %w", grantID, err)
	}
	return extendRefusal(&g, by, d, m.now())
}

func extendRefusal(g *store.Grant, by string, d time.Duration, now time.Time) error {
	if by != g.UserID {
		return refuse.New(ErrNotHolder, "Only %s can extend grant %s.", refuse.User(g.UserID), g.ID)
	}
	if g.State != store.GrantActive || !now.Before(g.ExpiresAt) {
		return refuse.New(ErrNotActive, "Grant %s is %s, not active, so it cannot be extended. Request the role again.", g.ID, describeState(g, now))
	}
	if d <= 0 {
		return refuse.New(ErrBadExtension, "An extension must be a positive duration such as 30m.")
	}
	newExpiry := g.ExpiresAt.Add(d).Truncate(time.Millisecond)
	if total := newExpiry.Sub(g.ActivatedAt); g.MaxDuration > 0 && total > g.MaxDuration {
		left := g.MaxDuration - g.ExpiresAt.Sub(g.ActivatedAt)
		if left <= 0 {
			return refuse.New(ErrBadExtension, "Grant %s already runs for the maximum of %s for %s; request the role again.", g.ID, policy.FormatDuration(g.MaxDuration), g.Role)
		}
		return refuse.New(ErrBadExtension, "Extending %s by %s would exceed the maximum of %s for %s; you can extend by at most %s.", g.ID, policy.FormatDuration(d), policy.FormatDuration(g.MaxDuration), g.Role, policy.FormatDuration(left.Round(time.Second)))
	}
	return nil
}

// withGrant runs fn on a fresh copy of the grant while holding its binding lock.
func (m *Manager) withGrant(ctx context.Context, grantID string, fn func(context.Context, *binding, *store.Grant) error) error {
	g, err := m.opts.Store.GetGrant(ctx, grantID)
	if errors.Is(err, store.ErrNotFound) {
		return refuse.New(ErrNotFound, "There is no grant %s.", grantID)
	}
	if err != nil {
		return fmt.Errorf("grants: read %s: %w", grantID, err)
	}
	ctx = zerolog.Ctx(ctx).With().Str("grant_id", g.ID).Str("request_id", g.RequestID).Logger().WithContext(ctx)
	return m.withBinding(ctx, g.BindingKey, func(b *binding) error {
		g, err := m.opts.Store.GetGrant(ctx, grantID) // re-read under the lock
		if err != nil {
			return fmt.Errorf("grants: read %s: %w", grantID, err)
		}
		return fn(ctx, b, &g)
	})
}

// withBinding runs fn while holding the binding's lock. When fn made a provider call whose outcome it could
// not record (its commit failed, or was fenced out because the lock was lost mid-call: another holder may
// have decided otherwise meanwhile), the provider may hold what the store does not describe, so the lock is
// taken again and the binding converged to what the store says (see realign).
func (m *Manager) withBinding(ctx context.Context, key string, fn func(*binding) error) error {
	return m.withBindingListed(ctx, key, nil, fn)
}

// withBindingListed is withBinding that, given a hint (the leases expected among them), also reads the
// binding's leases as the lock is taken, where the store can do both in one round trip (store.LockLister),
// for fn's first converge.
func (m *Manager) withBindingListed(ctx context.Context, key string, hint []store.Grant, fn func(*binding) error) error {
	b, err := m.lockBinding(ctx, key, hint)
	if err != nil {
		return err
	}
	err = fn(b)
	m.unlock(ctx, b.lock)
	if len(b.diverged) > 0 {
		if rerr := m.realign(ctx, key, b.diverged); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// Converge brings the provider in line with the leases of one binding: activating leases are applied, ended
// leases are revoked unless another live lease still covers the same access. It is the one place where
// providers are called for grant and revoke.
func (m *Manager) Converge(ctx context.Context, bindingKey string) error {
	return m.withBinding(ctx, bindingKey, func(b *binding) error { return m.converge(ctx, b) })
}

func (m *Manager) converge(ctx context.Context, b *binding) error {
	leases, err := m.leases(ctx, b)
	if err != nil {
		return fmt.Errorf("grants: list leases of binding: %w", err)
	}
	b.observe(leases)
	// 1. Apply leases waiting for activation. The provider is told the latest expiry of all the binding's
	// leases, so that a provider that expires access itself never cuts a longer overlapping lease short.
	for i := range leases {
		if leases[i].State == store.GrantActivating {
			if err := m.renew(ctx, b); err != nil {
				return err
			}
			m.activate(ctx, b, &leases[i], latestExpiry(leases, m.now(), ""), bindingRef(leases, leases[i].ID))
		}
	}
	// 2. Decide whether access is still wanted, and end the leases that are over.
	now := m.now()
	var cover *store.Grant
	var ending []*store.Grant
	for i := range leases {
		g := &leases[i]
		switch {
		case g.State == store.GrantActivating, g.State == store.GrantActive && now.Before(g.ExpiresAt) && !g.HeartbeatMissed(now):
			if cover == nil || g.ExpiresAt.After(cover.ExpiresAt) {
				cover = g
			}
		case g.State == store.GrantActive, g.State == store.GrantRevoking, g.State == store.GrantRevokeFailed:
			ending = append(ending, g)
		}
	}
	if len(ending) == 0 {
		return nil
	}
	if cover != nil {
		return m.endCovered(ctx, b, ending, cover)
	}
	if err := m.renew(ctx, b); err != nil {
		return err
	}
	return m.revoke(ctx, b, ending)
}

// leases returns the binding's live leases: as read when the lock was taken, if they were and nothing was
// committed since, else from the store.
func (m *Manager) leases(ctx context.Context, b *binding) ([]store.Grant, error) {
	if b.listed != nil {
		gs := *b.listed
		b.listed = nil
		return gs, nil
	}
	return m.opts.Store.ListGrants(ctx, store.GrantQuery{BindingKey: b.key})
}

// realign runs after a provider call whose outcome could not be recorded: under a freshly taken lock it
// converges the binding, then makes the provider match the store whatever the stray call did. With no live
// lease left, the stray assignments are revoked (the old holder's late Grant must not outlive the revoke that
// another holder recorded meanwhile); with an active lease, its access is applied again (a stray Revoke must
// not remove access that a live lease holds). Each removal is an audit event (drift-revoked).
func (m *Manager) realign(ctx context.Context, key string, stray []Assignment) error {
	log := zerolog.Ctx(ctx).With().Str("binding", key).Logger()
	log.Warn().Int("calls", len(stray)).Msg("a provider call's outcome could not be recorded; converging the binding to the store")
	var err error
	for range 3 {
		var again []Assignment
		err = m.withBindingOnce(ctx, key, func(b *binding) error {
			defer func() { again = b.diverged }()
			return m.realignLocked(ctx, b, stray)
		})
		if len(again) == 0 {
			break
		}
		stray = append(stray, again...)
	}
	if err != nil {
		log.Error().Err(err).Msg("could not converge the binding after an unrecorded provider call; a later sweep or drift reconciliation must")
	}
	return err
}

// withBindingOnce is withBinding without the realign step (realign's own loop handles it).
func (m *Manager) withBindingOnce(ctx context.Context, key string, fn func(*binding) error) error {
	b, err := m.lockBinding(ctx, key, nil)
	if err != nil {
		return err
	}
	defer m.unlock(ctx, b.lock)
	return fn(b)
}

func (m *Manager) realignLocked(ctx context.Context, b *binding, stray []Assignment) error {
	if err := m.converge(ctx, b); err != nil {
		return err
	}
	leases, err := m.opts.Store.ListGrants(ctx, store.GrantQuery{BindingKey: b.key})
	if err != nil {
		return fmt.Errorf("grants: list leases of binding: %w", err)
	}
	now := m.now()
	var cover *store.Grant
	for i := range leases {
		g := &leases[i]
		switch {
		case g.State == store.GrantActivating:
			return nil // converge could not activate it yet: its own retry applies it
		case g.State == store.GrantActive && now.Before(g.ExpiresAt):
			if cover == nil || g.ExpiresAt.After(cover.ExpiresAt) {
				cover = g
			}
		}
	}
	if cover != nil {
		p, err := m.provider(cover)
		if err != nil {
			return err
		}
		if err := m.renew(ctx, b); err != nil {
			return err
		}
		a := b.assignment(cover, latestExpiry(leases, now, ""))
		if _, err := m.call(ctx, b, "grant", cover, func(ctx context.Context) (string, error) { return p.Grant(ctx, a) }); err != nil {
			return fmt.Errorf("grants: re-apply %s after an unrecorded provider call: %w", cover.ID, err)
		}
		return nil
	}
	// No live lease: nothing of the binding may remain at the provider. One revoke removes the binding.
	a := stray[len(stray)-1]
	g := &store.Grant{ID: a.GrantID, RequestID: a.RequestID, Role: a.Role, BindingKey: b.key}
	var puts []store.GrantPut
	if known, err := m.opts.Store.GetGrant(ctx, a.GrantID); err == nil {
		g = &known
	}
	p, err := m.provider(g)
	if err != nil {
		return err
	}
	if err := m.renew(ctx, b); err != nil {
		return err
	}
	a.Generation = b.next()
	if _, err := m.call(ctx, b, "revoke", g, func(ctx context.Context) (string, error) { return "", p.Revoke(ctx, a) }); err != nil {
		return fmt.Errorf("grants: revoke what an unrecorded provider call may have applied: %w", err)
	}
	ev := m.event(store.EventDriftRevoked, "system:grants", g, map[string]string{"provider": g.Provider,
		"reason": "a provider call whose outcome could not be recorded (lock lost or record changed meanwhile) may have applied access that no live grant covers"})
	if g.Version > 0 && g.State.Terminal() {
		// This revoke is verified like any other, from the due index (see recheck).
		prev := g.Version
		g.RecheckAt, g.VerifiedAt, g.Attempts = m.now().Add(propagationDelay(p)), time.Time{}, 0
		g.DueAt = g.RecheckAt
		puts = append(puts, store.GrantPut{Grant: g, PrevVersion: prev})
	}
	if err := m.commit(ctx, b, puts, ev); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("could not record the realigning revoke")
	}
	return nil
}

// activate calls the provider for one activating lease and records the outcome.
// inherited is the provider reference of another live lease of the binding, used when g has none of its own.
func (m *Manager) activate(ctx context.Context, b *binding, g *store.Grant, othersUntil time.Time, inherited string) {
	log := zerolog.Ctx(ctx).With().Str("grant_id", g.ID).Str("request_id", g.RequestID).Logger()
	p, err := m.provider(g)
	var ref string
	var a Assignment
	called := false
	if err == nil {
		until := m.now().Add(g.Duration)
		if othersUntil.After(until) {
			until = othersUntil
		}
		a = b.assignment(g, until)
		if a.Ref == "" {
			a.Ref = inherited
		}
		passed, marked := a.Ref, false
		if a.Ref == "" || a.Ref == RefUntouched {
			// Write ahead that a first call is under way: if this process dies before it records the
			// provider's answer, the resumed attempt gets RefCallPending instead of "" and cannot mistake
			// access this call created for access that was there before.
			marked = true
			prev := g.Version
			g.ProviderRef = RefCallPending
			if err := m.commit(ctx, b, []store.GrantPut{{Grant: g, PrevVersion: prev}}); err != nil {
				log.Error().Err(err).Msg("could not record the provider call about to be made")
				g.State = "" // unknown now: keep it out of this converge pass
				return
			}
		}
		called = true
		ref, err = m.call(ctx, b, "grant", g, func(ctx context.Context) (string, error) { return p.Grant(ctx, a) })
		if ref == "" && marked {
			g.ProviderRef = passed // the call is over; the adapter had nothing to say
		}
	}
	if ref != "" {
		// Kept after a failed attempt too: it can name an operation still in flight, or say whose the
		// access is, and the next attempt (or the undo) resumes from it.
		g.ProviderRef = ref
	}
	now := m.now()
	prev := g.Version
	var ev store.AuditEvent
	switch {
	case err == nil:
		g.State, g.ActivatedAt, g.ExpiresAt = store.GrantActive, now, now.Add(g.Duration).Truncate(time.Millisecond)
		if g.HeartbeatTimeout > 0 {
			g.HeartbeatDeadline = now.Add(g.HeartbeatTimeout)
		}
		g.Attempts, g.LastError = 0, ""
		m.scheduleReminder(g, now) // sets DueAt: the reminder, the heartbeat deadline or the expiry
		details := map[string]string{"expires_at": g.ExpiresAt.UTC().Format(time.RFC3339Nano), "provider": g.Provider}
		if IsPreExisting(g.ProviderRef) {
			details["pre_existing"] = "true"
			details["note"] = "the access was already present at the provider before this grant; jitbot will not remove it"
		}
		ev = m.event(store.EventGranted, "system:grants", g, details)
		log.Info().Time("expires_at", g.ExpiresAt).Bool("pre_existing", IsPreExisting(g.ProviderRef)).Msg("grant active")
	case IsPermanent(err) || g.Attempts+1 >= m.opts.MaxAttempts:
		// Undo whatever the provider may have applied: the lease goes through revocation and ends as failed.
		g.State, g.EndReason, g.EndedAt, g.DueAt = store.GrantRevoking, "activation_failed", now, now
		g.Attempts, g.LastError = 0, err.Error()
		ev = m.event(store.EventGrantFailed, "system:grants", g, map[string]string{"error": err.Error(), "provider": g.Provider})
		log.Error().Err(err).Msg("grant failed; undoing")
	default:
		g.Attempts++
		g.LastError, g.DueAt = err.Error(), now.Add(m.backoff(g.Attempts))
		ev = m.event(store.EventGrantRetry, "system:grants", g, map[string]string{"error": err.Error(), "attempt": strconv.Itoa(g.Attempts), "next_attempt_at": g.DueAt.UTC().Format(time.RFC3339)})
		log.Warn().Err(err).Int("attempt", g.Attempts).Time("next_attempt_at", g.DueAt).Msg("grant attempt failed; will retry")
	}
	if err := m.commit(ctx, b, []store.GrantPut{{Grant: g, PrevVersion: prev}}, ev); err != nil {
		log.Error().Err(err).Msg("could not record activation outcome")
		g.State = "" // unknown now: keep it out of this converge pass
		if called {
			b.diverge(a)
		}
	}
}

// endCovered ends leases whose access another live lease still needs: nothing is revoked at the provider.
func (m *Manager) endCovered(ctx context.Context, b *binding, ending []*store.Grant, cover *store.Grant) error {
	now := m.now()
	var puts []store.GrantPut
	var events []store.AuditEvent
	for _, g := range ending {
		prev := g.Version
		events = append(events, m.markEnded(g, now)...)
		g.State, g.RevokedAt, g.CoveredBy, g.DueAt, g.Attempts, g.LastError = finalState(g), now, cover.ID, time.Time{}, 0, ""
		events = append(events, m.event(store.EventRevoked, "system:grants", g, map[string]string{"covered_by": cover.ID, "note": "access stays while the overlapping grant lasts"}))
		puts = append(puts, store.GrantPut{Grant: g, PrevVersion: prev})
	}
	if err := m.commit(ctx, b, puts, events...); err != nil {
		return err
	}
	m.shrinkExpiry(ctx, b, ending, cover)
	return nil
}

// shrinkExpiry tells a provider that expires access itself the binding's new, earlier end when the leases
// that just ended ran longer than the one that remains. Best effort: jitbot revokes on time regardless.
func (m *Manager) shrinkExpiry(ctx context.Context, b *binding, ending []*store.Grant, cover *store.Grant) {
	if cover.State != store.GrantActive {
		return
	}
	longest := time.Time{}
	for _, g := range ending {
		if g.ExpiresAt.After(longest) {
			longest = g.ExpiresAt
		}
	}
	if !longest.After(cover.ExpiresAt) {
		return
	}
	p, err := m.provider(cover)
	if err == nil {
		err = m.renew(ctx, b)
	}
	if err == nil {
		a := b.assignment(cover, cover.ExpiresAt)
		_, err = m.call(ctx, b, "grant", cover, func(ctx context.Context) (string, error) { return p.Grant(ctx, a) })
	}
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("grant_id", cover.ID).Msg("could not shorten the provider-side expiry; jitbot still revokes on time")
	}
}

// bindingRef is the provider reference the binding's other live leases hold: one naming access jitbot made
// (or an operation of jitbot's) wins over a pre-existing one, so that jitbot never forgets what it created.
func bindingRef(leases []store.Grant, except string) string {
	ref := ""
	for _, g := range leases {
		if g.ID == except || g.ProviderRef == "" || g.ProviderRef == RefUntouched || !slices.Contains(store.LiveGrantStates, g.State) {
			continue
		}
		if !IsPreExisting(g.ProviderRef) {
			return g.ProviderRef
		}
		ref = g.ProviderRef
	}
	return ref
}

// latestExpiry is the latest expiry among the binding's active, unexpired leases other than except.
func latestExpiry(leases []store.Grant, now time.Time, except string) time.Time {
	var t time.Time
	for _, g := range leases {
		if g.ID != except && g.State == store.GrantActive && g.ExpiresAt.After(now) && g.ExpiresAt.After(t) {
			t = g.ExpiresAt
		}
	}
	return t
}

// revoke removes the binding's access at the provider once, then ends every lease in ending.
func (m *Manager) revoke(ctx context.Context, b *binding, ending []*store.Grant) error {
	last := ending[0]
	for _, g := range ending[1:] {
		if g.ExpiresAt.After(last.ExpiresAt) {
			last = g
		}
	}
	ref, remove := revokeRef(ending)
	preExisting := IsPreExisting(ref)
	p, err := m.provider(last)
	var a Assignment
	called := false
	if err == nil && remove {
		a = b.assignment(last, last.ExpiresAt)
		a.Ref = ref
		called = true
		_, err = m.call(ctx, b, "revoke", last, func(ctx context.Context) (string, error) { return "", p.Revoke(ctx, a) })
	}
	now := m.now()
	var puts []store.GrantPut
	var events []store.AuditEvent
	for _, g := range ending {
		prev := g.Version
		events = append(events, m.markEnded(g, now)...)
		if err == nil {
			g.State, g.RevokedAt, g.DueAt, g.Attempts, g.LastError = finalState(g), now, time.Time{}, 0, keptError(g)
			lag := now.Sub(g.EndedAt)
			details := map[string]string{"lag_ms": strconv.FormatInt(lag.Milliseconds(), 10)}
			switch {
			case preExisting:
				// Nothing was removed: the access was there before jitbot granted it (standing access).
				details["pre_existing"] = "true"
				details["note"] = "the access existed before the grant and was left in place"
			case !remove:
				details["note"] = "nothing had been applied at the provider"
			}
			events = append(events, m.event(store.EventRevoked, "system:grants", g, details))
			// One check verifies the binding's revoke, from the due index: due at the revoke (or after the
			// provider's propagation delay), so a burst of expiries is revoked first, earliest due first, and
			// verified after, and a restart loses nothing. Pre-existing and untouched access was not touched:
			// there is nothing to verify gone, and no late call of jitbot's can bring anything back.
			if g == last && remove {
				g.RecheckAt = now.Add(propagationDelay(p))
				g.DueAt = g.RecheckAt
			}
			if m.opts.Observer != nil && g.EndReason == "expired" {
				m.opts.Observer.Revoked(lag)
			}
		} else {
			g.Attempts++
			g.LastError = err.Error()
			if g.Attempts >= m.opts.MaxAttempts {
				// Escalate: the slow retry job owns it now; the alert event reaches the audit channel.
				g.State, g.DueAt = store.GrantRevokeFailed, time.Time{}
				events = append(events, m.event(store.EventRevokeFailed, "system:grants", g, map[string]string{"error": err.Error(), "attempts": strconv.Itoa(g.Attempts), "alert": "access may still be present; jitbot keeps retrying"}))
			} else {
				g.State, g.DueAt = store.GrantRevoking, now.Add(m.backoff(g.Attempts))
				events = append(events, m.event(store.EventRevokeRetry, "system:grants", g, map[string]string{"error": err.Error(), "attempt": strconv.Itoa(g.Attempts), "next_attempt_at": g.DueAt.UTC().Format(time.RFC3339)}))
			}
		}
		puts = append(puts, store.GrantPut{Grant: g, PrevVersion: prev})
	}
	if cerr := m.commit(ctx, b, puts, events...); cerr != nil {
		if called {
			b.diverge(a)
		}
		return cerr
	}
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("grant_id", last.ID).Int("attempts", last.Attempts).Str("state", string(last.State)).Msg("revoke failed")
		return fmt.Errorf("grants: revoke %s: %w", last.ID, err)
	}
	zerolog.Ctx(ctx).Info().Str("grant_id", last.ID).Int("leases", len(ending)).Msg("revoked")
	return nil
}

// revokeRef is the reference the binding's revoke acts on, and whether there is anything of jitbot's to remove:
// a reference of jitbot's own (an operation, an assignment it made, RefCallPending) wins; then an unknown one
// (""), which is removed to be safe; only when every ending lease holds a pre-existing reference or
// RefUntouched is nothing removed.
func revokeRef(ending []*store.Grant) (string, bool) {
	var unknown, pre, untouched bool
	preRef := ""
	for _, g := range ending {
		switch r := g.ProviderRef; {
		case r == "":
			unknown = true
		case r == RefUntouched:
			untouched = true
		case IsPreExisting(r):
			pre, preRef = true, r
		default:
			return r, true
		}
	}
	switch {
	case unknown:
		return "", true
	case pre:
		return preRef, false
	case untouched:
		return RefUntouched, false
	}
	return "", true
}

// scheduleReminder sets an active grant's reminder for its current expiry (none when that moment has passed)
// and its DueAt to the earlier of reminder and expiry.
func (m *Manager) scheduleReminder(g *store.Grant, now time.Time) {
	g.RemindAt = time.Time{}
	// A task-bound (pipeline) grant has nobody to remind: it ends with its job.
	if before := m.opts.RemindBefore(*g); before > 0 && g.HeartbeatTimeout <= 0 {
		if at := g.ExpiresAt.Add(-before).Truncate(time.Millisecond); at.After(now) {
			g.RemindAt = at
		}
	}
	g.DueAt = activeDue(g)
}

// activeDue is when the sweeper must next look at an active grant: the earliest of its expiry and its other
// pending due times (the reminder). Any further due time of an active grant belongs here.
func activeDue(g *store.Grant) time.Time {
	due := g.ActiveDueAt() // the expiry, or a task-bound grant's heartbeat deadline when that is earlier
	if !g.RemindAt.IsZero() && g.RemindAt.Before(due) {
		due = g.RemindAt
	}
	return due
}

// remind sends the due reminder of an active grant: a grant-reminder event (the Slack notifier DMs the holder
// on it), committed together with clearing RemindAt, so every reminder is sent once whatever the number of
// sweepers and restarts.
func (m *Manager) remind(ctx context.Context, b *binding, id string) error {
	g, err := m.opts.Store.GetGrant(ctx, id)
	if err != nil {
		return fmt.Errorf("grants: remind %s: %w", id, err)
	}
	now := m.now()
	if g.State != store.GrantActive || g.RemindAt.IsZero() || now.Before(g.RemindAt) || !now.Before(g.ExpiresAt) {
		return nil // not due, already sent, or the grant is over
	}
	prev := g.Version
	g.RemindAt = time.Time{}
	g.DueAt = activeDue(&g)
	ev := m.event(store.EventGrantReminder, "system:grants", &g, map[string]string{"expires_at": g.ExpiresAt.UTC().Format(time.RFC3339)})
	return m.commit(ctx, b, []store.GrantPut{{Grant: &g, PrevVersion: prev}}, ev)
}

// markEnded moves an active lease whose time is up to revoking and returns the expiry event.
func (m *Manager) markEnded(g *store.Grant, now time.Time) []store.AuditEvent {
	if g.State != store.GrantActive {
		return nil
	}
	g.RemindAt = time.Time{}
	if g.HeartbeatMissed(now) {
		g.State, g.EndReason, g.EndedAt = store.GrantRevoking, "heartbeat_missed", g.HeartbeatDeadline
		return []store.AuditEvent{m.event(store.EventHeartbeatMissed, "system:sweeper", g, map[string]string{
			"last_heartbeat": lastBeat(g).UTC().Format(time.RFC3339Nano), "deadline": g.HeartbeatDeadline.UTC().Format(time.RFC3339Nano)})}
	}
	g.State, g.EndReason, g.EndedAt = store.GrantRevoking, "expired", g.ExpiresAt
	return []store.AuditEvent{m.event(store.EventGrantExpired, "system:sweeper", g, map[string]string{"expired_at": g.ExpiresAt.UTC().Format(time.RFC3339Nano)})}
}

// sequenced reports whether p's far end ignores operations older than the last it applied.
func sequenced(p Provider) bool {
	s, ok := p.(Sequenced)
	return ok && s.OrdersByGeneration()
}

// keptError is what LastError keeps once a lease's access is gone: why its activation failed, if it did (the
// record must still say why the grant never became active), else nothing.
func keptError(g *store.Grant) string {
	if g.EndReason == "activation_failed" {
		return g.LastError
	}
	return ""
}

// ConvergeDue converges a binding for the sweeper, given the binding's grants the sweeper claimed as due:
// besides leases to activate, retry or end, these can be revoked leases whose re-check is due (see
// store.Grant.RecheckAt) and active leases whose reminder is due (store.Grant.RemindAt).
func (m *Manager) ConvergeDue(ctx context.Context, bindingKey string, due []store.Grant) error {
	var rechecks, reminders []string
	for _, g := range due {
		switch {
		case g.State.Terminal() && !g.RecheckAt.IsZero():
			rechecks = append(rechecks, g.ID)
		case g.State == store.GrantActive && !g.RemindAt.IsZero():
			reminders = append(reminders, g.ID)
		}
	}
	return m.withBindingListed(ctx, bindingKey, due, func(b *binding) error {
		err := m.converge(ctx, b)
		for _, id := range rechecks {
			err = errors.Join(err, m.recheck(ctx, b, id))
		}
		for _, id := range reminders {
			err = errors.Join(err, m.remind(ctx, b, id))
		}
		return err
	})
}

// recheck runs a revoked lease's due check (see store.Grant.RecheckAt). When no live lease covers the binding,
// the provider is asked whether the access is gone (Inspect for an OtherAccessInspector, else Check):
//   - gone: the first time, the revoke is verified (a revoke-verified event); for a provider that cannot order
//     operations, one more check is scheduled for when a call jitbot gave up on can no longer land;
//   - jitbot's access gone but the principal still holds it through objects jitbot did not grant: the same,
//     recorded as access-remains (naming those objects) instead of revoke-verified: jitbot's revoke worked,
//     and what remains is not jitbot's to remove, so it is neither retried nor escalated;
//   - still there (the revoke has not taken effect, or a late call brought the access back): it is revoked
//     again (drift-revoked) and checked again after the propagation delay (at least the retry backoff);
//     after MaxAttempts such rounds a revoke-failed alert is raised, and jitbot keeps going;
//   - no answer: retried with backoff, with the same alert after MaxAttempts.
//
// A live lease on the binding means the access is wanted again, and that lease's own revoke will be checked.
func (m *Manager) recheck(ctx context.Context, b *binding, id string) error {
	g, err := m.opts.Store.GetGrant(ctx, id)
	if err != nil {
		return fmt.Errorf("grants: re-check %s: %w", id, err)
	}
	now := m.now()
	if !g.State.Terminal() || g.RecheckAt.IsZero() || now.Before(g.RecheckAt) {
		return nil // done or moved meanwhile
	}
	leases, err := m.opts.Store.ListGrants(ctx, store.GrantQuery{BindingKey: b.key})
	if err != nil {
		return fmt.Errorf("grants: list leases of binding: %w", err)
	}
	prev := g.Version
	var events []store.AuditEvent
	var failure error
	done := func() { g.RecheckAt, g.DueAt, g.Attempts = time.Time{}, time.Time{}, 0 }
	p, perr := m.provider(&g)
	switch {
	case len(leases) > 0:
		done()
	case perr != nil:
		failure = perr
	default:
		pr, err := m.inspect(ctx, b, p, &g, assignment(&g, g.ExpiresAt))
		switch {
		case err != nil:
			failure = err
		case pr.Ours:
			a := b.assignment(&g, g.ExpiresAt)
			if _, err := m.call(ctx, b, "revoke", &g, func(ctx context.Context) (string, error) { return "", p.Revoke(ctx, a) }); err != nil {
				failure = err
				break
			}
			why := "the access was still present after its revoke; revoked again"
			if !g.VerifiedAt.IsZero() {
				why = "the access came back after its revoke was verified (a provider call jitbot had given up on landed late); revoked again"
			}
			zerolog.Ctx(ctx).Warn().Str("grant_id", g.ID).Msg(why)
			events = append(events, m.event(store.EventDriftRevoked, "system:grants", &g, map[string]string{"provider": g.Provider, "reason": why}))
			g.Attempts++
			g.RecheckAt = now.Add(max(propagationDelay(p), m.backoff(g.Attempts)))
			g.DueAt = g.RecheckAt
			if g.Attempts == m.opts.MaxAttempts {
				events = append(events, m.event(store.EventRevokeFailed, "system:grants", &g, map[string]string{"error": "access still present after revoke", "attempts": strconv.Itoa(g.Attempts),
					"alert": "access is still present at the provider after repeated revokes; jitbot keeps revoking"}))
			}
		default:
			switch {
			case !g.VerifiedAt.IsZero():
				// Verified before (this is the late-call check): nothing new to record.
			default:
				events = append(events, withOther(m.verifiedEvent(&g, now), pr.Other))
			}
			done()
			if late := g.RevokedAt.Add(m.opts.LateCallWindow); !sequenced(p) && now.Before(late) {
				g.RecheckAt, g.DueAt = late, late
			}
		}
	}
	if failure != nil {
		g.Attempts++
		g.DueAt = now.Add(m.backoff(g.Attempts))
		if g.Attempts == m.opts.MaxAttempts {
			events = append(events, m.event(store.EventRevokeFailed, "system:grants", &g, map[string]string{"error": failure.Error(), "attempts": strconv.Itoa(g.Attempts),
				"alert": "could not confirm that access is gone after its revoke; jitbot keeps retrying"}))
		}
	}
	if err := m.commit(ctx, b, []store.GrantPut{{Grant: &g, PrevVersion: prev}}, events...); err != nil {
		return err
	}
	if failure != nil {
		return fmt.Errorf("grants: re-check %s: %w", g.ID, failure)
	}
	return nil
}

// verifiedEvent records on g that a check found its access gone at now, and returns the revoke-verified event.
func (m *Manager) verifiedEvent(g *store.Grant, now time.Time) store.AuditEvent {
	g.VerifiedAt = now
	end := g.EndedAt
	if end.IsZero() {
		end = g.RevokedAt
	}
	return m.event(store.EventRevokeVerified, "system:grants", g, map[string]string{"provider": g.Provider,
		"verified_at": now.UTC().Format(time.RFC3339Nano), "lag_ms": strconv.FormatInt(now.Sub(end).Milliseconds(), 10)})
}

// maxOther bounds how many objects granting other access an access-remains event names.
const maxOther = 10

// withOther turns a revoke-verified event into access-remains when access jitbot did not grant remains
// (other), naming the objects: the one place both the recheck and the reconciler shape it.
func withOther(ev store.AuditEvent, other []string) store.AuditEvent {
	if len(other) > 0 {
		ev.Type, ev.Details["other"] = store.EventAccessRemains, otherText(other)
	}
	return ev
}

// otherText is the audit detail naming the objects of other access: sorted, each once, at most maxOther of
// them (the order providers list objects in is no order a reader can use).
func otherText(other []string) string {
	other = slices.Compact(slices.Sorted(slices.Values(other)))
	if len(other) <= maxOther {
		return strings.Join(other, "; ")
	}
	return strings.Join(other[:maxOther], "; ") + fmt.Sprintf("; and %d more", len(other)-maxOther)
}

// inspect asks the provider, under the binding lock, whether a is present (g names it in logs and metrics): an
// OtherAccessInspector tells jitbot's access from access jitbot did not grant; for any other provider, what
// Check reports present counts as jitbot's. The call counts as a check (attempt budget, metrics).
func (m *Manager) inspect(ctx context.Context, b *binding, p Provider, g *store.Grant, a Assignment) (Presence, error) {
	if err := m.renew(ctx, b); err != nil {
		return Presence{}, err
	}
	a.Generation = b.next()
	var pr Presence
	_, err := m.call(ctx, b, "check", g, func(ctx context.Context) (string, error) {
		var err error
		if in, ok := p.(OtherAccessInspector); ok {
			pr, err = in.Inspect(ctx, a)
		} else {
			pr.Ours, err = p.Check(ctx, a)
		}
		return "", err
	})
	if err != nil {
		return Presence{}, err
	}
	return pr, nil
}

// propagationDelay is how long after a revoke p's access may still show (see PropagationDelayer).
func propagationDelay(p Provider) time.Duration {
	if d, ok := p.(PropagationDelayer); ok {
		return max(d.PropagationDelay(), 0)
	}
	return 0
}

// finalState is the terminal state of an ended lease whose access is gone.
func finalState(g *store.Grant) store.GrantState {
	if g.EndReason == "activation_failed" {
		return store.GrantFailed
	}
	return store.GrantRevoked
}

// commit writes puts and events, fenced by the binding lock when b is not nil: a holder that lost its lock
// mid-call cannot record over what the next holder decided (its caller then realigns the binding).
func (m *Manager) commit(ctx context.Context, b *binding, puts []store.GrantPut, events ...store.AuditEvent) error {
	batch := store.Batch{Grants: puts, Audit: events}
	if b != nil {
		batch.Fence = &b.lock
		b.listed = nil // what was read with the lock is not what the store holds from now on
	}
	if err := m.opts.Store.Commit(ctx, batch); err != nil {
		return fmt.Errorf("grants: commit: %w", err)
	}
	for _, p := range puts {
		if !p.Grant.DueAt.IsZero() && m.onSchedule != nil {
			m.onSchedule(p.Grant.DueAt)
		}
	}
	if m.opts.Publisher != nil && len(events) > 0 {
		m.opts.Publisher.Publish(ctx, events...)
	}
	return nil
}

// call runs one provider call under the attempt budget (AttemptTimeout, or what the provider declares as a
// grants.AttemptBudgeter) and reports it. A reference returned with an error is passed on: it can name an
// operation still in flight that the next attempt resumes.
//
// Work that carries a call slot in its context (the sweeper's: see withCallSlot) waits for a slot for each
// call and frees it when the call returns; then the binding lock is renewed unless it was renewed a moment
// ago (see renew), so that a long wait cannot leave the call outliving the lock.
func (m *Manager) call(ctx context.Context, b *binding, op string, g *store.Grant, fn func(context.Context) (string, error)) (string, error) {
	if slot, ok := ctx.Value(callSlotKey{}).(*callSlot); ok {
		if err := slot.acquire(ctx); err != nil {
			return "", fmt.Errorf("%s %s at %s: waiting for a provider call slot: %w", op, g.ID, g.Provider, err)
		}
		defer slot.release()
		if b != nil {
			if err := m.renew(ctx, b); err != nil {
				return "", fmt.Errorf("%s %s at %s: %w", op, g.ID, g.Provider, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, m.attemptBudget(g.Provider, op))
	defer cancel()
	ref, err := fn(ctx)
	if m.opts.Observer != nil {
		m.opts.Observer.ProviderCall(op, err)
	}
	if err != nil {
		return ref, fmt.Errorf("%s %s at %s: %w", op, g.ID, g.Provider, err)
	}
	return ref, nil
}

// attemptBudget is how long one call of op at the named provider may take.
func (m *Manager) attemptBudget(provider, op string) time.Duration {
	if b, ok := m.opts.Providers[provider].(AttemptBudgeter); ok {
		if d := min(b.AttemptBudget(op), maxAttemptBudget); d > 0 {
			return d
		}
	}
	return m.opts.AttemptTimeout
}

func (m *Manager) provider(g *store.Grant) (Provider, error) {
	p, ok := m.opts.Providers[g.Provider]
	if !ok {
		return nil, Permanent(fmt.Errorf("provider %q is not configured", g.Provider))
	}
	return p, nil
}

// backoff is the jittered exponential delay before attempt n+1: base·2^(n-1), capped, then a random 50–100%.
func (m *Manager) backoff(n int) time.Duration {
	d := m.opts.BackoffBase
	for i := 1; i < n && d < m.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, m.opts.BackoffMax)
	return (d/2 + rand.N(d/2+1)).Truncate(time.Millisecond)
}

// binding is a held binding lock and what was done under it.
type binding struct {
	key  string
	lock store.Lock
	// ops counts the provider operations issued under this lock; see next.
	ops uint64
	// diverged lists provider calls made under this lock whose outcome could not be recorded: the provider
	// may now hold what the store does not describe, until realign has run.
	diverged []Assignment
	// extendedAt is the manager's clock read just before the lock was last taken or renewed: the lock lasts
	// at least lockTTL from then (see renew).
	extendedAt time.Time
	// floor is the greatest generation known for the binding: issued under this hold, or stored on a lease.
	floor uint64
	// listed holds the binding's leases when they were read as the lock was taken, until they are used or
	// something is committed (see Manager.leases).
	listed *[]store.Grant
}

// observe raises the generation floor to what the leases recorded.
func (b *binding) observe(leases []store.Grant) {
	for _, g := range leases {
		b.floor = max(b.floor, g.Generation)
	}
}

// opBits is how many low bits of a generation count operations within one lock hold.
const opBits = 12

// next returns the generation of the next provider operation on the binding: the lock's fence (which the
// store increases durably every time a binding lock changes hands) in the high bits and the operation's
// number under this hold in the low bits. Operations on one binding are serialised by its lock, so
// generations increase with every operation, across processes and restarts, and a call from a holder that
// lost its lock always carries a lower generation than any call of the holders after it.
//
// It is also greater than every generation stored on the binding's leases that this hold has seen (see
// store.Grant.Generation), so the order survives even a lost fence counter for the leases that remain.
func (b *binding) next() uint64 {
	if b.ops < 1<<opBits-1 {
		b.ops++
	}
	gen := b.lock.Fence<<opBits | b.ops
	if gen <= b.floor {
		gen = b.floor + 1
	}
	b.floor = gen
	return gen
}

// assignment is the Assignment for g's next provider operation under this hold; g records its generation,
// and so stores it with its next commit.
func (b *binding) assignment(g *store.Grant, expires time.Time) Assignment {
	b.floor = max(b.floor, g.Generation)
	a := assignment(g, expires)
	a.Generation = b.next()
	g.Generation = a.Generation
	return a
}

func (b *binding) diverge(a Assignment) { b.diverged = append(b.diverged, a) }

// lockBinding takes the binding's lock, waiting at most LockWait for another operation to finish with it.
// Given a hint, a store.LockLister also reads the binding's leases in the same round trip (binding.listed).
func (m *Manager) lockBinding(ctx context.Context, key string, hint []store.Grant) (*binding, error) {
	// Each operation holds the lock in its own name: re-acquiring with the same holder renews a lock, so a
	// per-process holder would let a sweep in this process walk into a release in progress.
	holder := m.opts.Holder + "/" + store.NewID("op")
	deadline := time.Now().Add(m.opts.LockWait)
	wait := 2 * time.Millisecond
	ll, listing := m.opts.Store.(store.LockLister)
	listing = listing && hint != nil
	for {
		asked := m.opts.Now()
		var l store.Lock
		var leases []store.Grant
		var err error
		if listing {
			l, leases, err = ll.AcquireLockAndList(ctx, "binding:"+key, holder, m.lockTTL(), key, hint)
			if err != nil && l.Fence != 0 { // held, but the leases could not be read
				m.unlock(ctx, l)
				return nil, fmt.Errorf("grants: list leases of binding: %w", err)
			}
		} else {
			l, err = m.opts.Store.AcquireLock(ctx, "binding:"+key, holder, m.lockTTL())
		}
		if err == nil {
			b := &binding{key: key, lock: l, extendedAt: asked}
			if listing {
				b.listed = &leases
			}
			return b, nil
		}
		if !errors.Is(err, store.ErrLockHeld) {
			return nil, fmt.Errorf("grants: lock binding: %w", err)
		}
		if slot, ok := ctx.Value(callSlotKey{}).(*callSlot); ok {
			slot.standAside() // it cannot call before the lock is free; the holder may be a check waiting for a slot
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("grants: binding %s is busy with another operation: %w", key, ErrBusy)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("grants: lock binding: %w", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
}

// lockTTL outlives one provider call with margin; the lock is renewed before every provider call.
func (m *Manager) lockTTL() time.Duration { return m.opts.LockTTL }

// renew extends the binding lock before a provider call so that the call cannot outlive it. A lock taken or
// renewed less than a tenth of its TTL ago is left alone: it still has at least 90% of a TTL that outlives the
// longest attempt with margin, and renewing it again would add a store round trip to every revocation (the
// sweeper takes the lock, lists the binding and calls the provider within milliseconds). The check uses the
// manager's clock, so a process that stalled after taking the lock renews (and finds a lost lock) as before.
func (m *Manager) renew(ctx context.Context, b *binding) error {
	asked := m.opts.Now()
	if since := asked.Sub(b.extendedAt); !b.extendedAt.IsZero() && since >= 0 && since < m.lockTTL()/10 {
		return nil
	}
	if err := m.opts.Store.RenewLock(ctx, b.lock, m.lockTTL()); err != nil {
		return fmt.Errorf("grants: binding lock: %w", err)
	}
	b.extendedAt = asked
	return nil
}

func (m *Manager) unlock(ctx context.Context, l store.Lock) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := m.opts.Store.ReleaseLock(ctx, l); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("could not release binding lock; it expires by itself")
	}
}

func (m *Manager) event(typ, actor string, g *store.Grant, details map[string]string) store.AuditEvent {
	return store.AuditEvent{Type: typ, At: m.now(), Actor: actor, RequestID: g.RequestID, GrantID: g.ID, Role: g.Role, Details: details}
}

func assignment(g *store.Grant, expires time.Time) Assignment {
	return Assignment{BindingKey: g.BindingKey, GrantID: g.ID, RequestID: g.RequestID, UserID: g.UserID, Role: g.Role, Principal: g.Principal, Target: g.Target, ExpiresAt: expires, Ref: g.ProviderRef}
}

func describeState(g *store.Grant, now time.Time) string {
	if g.State == store.GrantActive && !now.Before(g.ExpiresAt) {
		return "expired"
	}
	return string(g.State)
}

// now is the manager's clock at millisecond precision: every time it stores is exactly what a store's
// millisecond index holds, so "due" means the same to the index and to the record.
func (m *Manager) now() time.Time { return m.opts.Now().Truncate(time.Millisecond) }
