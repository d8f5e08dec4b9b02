package grants

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/store"
)

// SweeperOptions configures a Sweeper. Manager and Store are required.
type SweeperOptions struct {
	Manager *Manager
	Store   Store
	// Interval is the cron safety-net sweep (JITBOT_SWEEP_INTERVAL). Punctuality comes from waking at the
	// next due time; the cron tick catches anything scheduled by other replicas. Default 1s.
	Interval time.Duration
	// SlowInterval is how often revoke_failed grants are retried. Default 5m.
	SlowInterval time.Duration
	// Batch bounds how many due grants one claim takes. Default 1000.
	Batch int
	// Concurrency bounds the sweeper's provider calls in flight (JITBOT_SWEEP_CONCURRENCY). Default 64. Up to
	// bindingsPerSlot×Concurrency bindings are worked on at once (taking their locks, reading their leases,
	// waiting for their commits), so that a call slot is not idle while a binding's store work is done.
	Concurrency int
	// ClaimHold hides claimed grants from other sweepers while one works on them. Default 4×AttemptTimeout.
	ClaimHold time.Duration
	// LeaderTTL is the leader lock's lifetime; it is renewed at a third of it. Default 15s.
	LeaderTTL time.Duration
	// Jobs run on every sweep tick while leading, after grants (e.g. expiring pending requests).
	Jobs []func(context.Context) error
	// Holder names this replica in the leader lock. Default: the manager's holder.
	Holder string
	// Periodic jobs run on their own cron schedule while leading (drift reconciliation, ...).
	Periodic []PeriodicJob
	// Gate, when set, is asked before each sweep; an error skips the sweep, its retries and Jobs (for example
	// while the store is known to have lost writes, so its grants cannot be trusted).
	Gate func(ctx context.Context) error
}

// PeriodicJob is a leader-only job with its own interval.
type PeriodicJob struct {
	Name  string
	Every time.Duration
	Run   func(context.Context) error
}

// Sweeper revokes due grants. With several replicas, exactly one leads (a lease lock with a fencing token);
// correctness does not depend on that, since claims, compare-and-swap and idempotent providers make a double
// sweep harmless, but it saves duplicate work.
type Sweeper struct {
	opts     SweeperOptions
	wake     chan struct{}
	slow     chan struct{}
	leading  atomic.Bool
	fence    atomic.Uint64
	nextWake atomic.Int64 // unix ns of the timer currently armed; 0 when none
	// loop is the leader loop's last definite answer from the store (for readiness).
	loop atomic.Pointer[leaderLoopStatus]
	// timers makes the leader loop's ticker and Run's wake-up timer (a test drives its own).
	timers timers
}

// timers makes the sweeper's ticker and timer: the time package's in production (wallTimers), the test's
// own in tests that drive the loops step by step (export_test.go).
type timers interface {
	// NewTicker returns a channel that ticks every d and a function that stops it.
	NewTicker(d time.Duration) (c <-chan time.Time, stop func())
	// NewTimer returns a channel that fires once after d, a function that sets it to fire after another d
	// (once its last firing was received) and a function that stops it.
	NewTimer(d time.Duration) (c <-chan time.Time, reset func(d time.Duration), stop func())
}

type wallTimers struct{}

func (wallTimers) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

func (wallTimers) NewTimer(d time.Duration) (<-chan time.Time, func(time.Duration), func()) {
	t := time.NewTimer(d)
	return t.C, func(d time.Duration) { t.Reset(d) }, func() { t.Stop() }
}

// NewSweeper validates opts and wires the manager's schedule hook so that new expiries wake the sweeper.
func NewSweeper(opts SweeperOptions) (*Sweeper, error) {
	if opts.Manager == nil || opts.Store == nil {
		return nil, errors.New("grants: sweeper needs Manager and Store")
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.SlowInterval <= 0 {
		opts.SlowInterval = 5 * time.Minute
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.ClaimHold <= 0 {
		opts.ClaimHold = 4 * opts.Manager.opts.AttemptTimeout
	}
	if opts.LeaderTTL <= 0 {
		opts.LeaderTTL = 15 * time.Second
	}
	if opts.Holder == "" {
		opts.Holder = opts.Manager.opts.Holder
	}
	s := &Sweeper{opts: opts, wake: make(chan struct{}, 1), slow: make(chan struct{}, 1), timers: wallTimers{}}
	opts.Manager.OnSchedule(s.Schedule)
	return s, nil
}

type leaderLoopStatus struct {
	at  time.Time
	err error
}

// recordLoop notes one answer of the store to the leader loop; ok is the error that is a normal answer
// (another replica leads, or the lock moved on).
func (s *Sweeper) recordLoop(err, ok error) {
	if errors.Is(err, ok) {
		err = nil
	}
	s.loop.Store(&leaderLoopStatus{at: time.Now(), err: err})
}

// LeaderLoopHealth reports, as an error, why the leader loop is not working: it has not asked the store yet
// (Run not started), its last lock operation failed, or it has not had an answer for a whole LeaderTTL
// (stalled). nil: it is working, whether this replica leads or follows.
func (s *Sweeper) LeaderLoopHealth(now time.Time) error {
	st := s.loop.Load()
	switch {
	case st == nil:
		return errors.New("leader loop has not run yet")
	case st.err != nil:
		return fmt.Errorf("leader loop: the store refused the sweeper lock: %w", st.err)
	case now.Sub(st.at) > s.opts.LeaderTTL:
		return fmt.Errorf("leader loop stalled: no answer from the store for %s", now.Sub(st.at).Round(time.Second))
	}
	return nil
}

// Leading reports whether this replica currently holds the sweeper lock.
func (s *Sweeper) Leading() bool { return s.leading.Load() }

// Schedule tells the sweeper that something is due at t; it wakes early if t is before its armed timer.
func (s *Sweeper) Schedule(t time.Time) {
	armed := s.nextWake.Load()
	if armed == 0 || t.UnixNano() < armed {
		s.Kick()
	}
}

// Kick wakes the sweeper now.
func (s *Sweeper) Kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run leads (when it can) and sweeps until ctx ends, then gives up leadership.
func (s *Sweeper) Run(ctx context.Context) error {
	log := zerolog.Ctx(ctx).With().Str("component", "sweeper").Logger()
	ctx = log.WithContext(ctx)

	c := cron.New()
	if _, err := c.AddFunc("@every "+s.opts.Interval.String(), s.Kick); err != nil {
		return fmt.Errorf("grants: sweeper schedule: %w", err)
	}
	if _, err := c.AddFunc("@every "+s.opts.SlowInterval.String(), func() {
		select {
		case s.slow <- struct{}{}:
		default:
		}
	}); err != nil {
		return fmt.Errorf("grants: slow retry schedule: %w", err)
	}
	for _, job := range s.opts.Periodic {
		if job.Every <= 0 {
			continue
		}
		if _, err := c.AddFunc("@every "+job.Every.String(), func() {
			if !s.leading.Load() || ctx.Err() != nil {
				return
			}
			if err := job.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error().Err(err).Str("job", job.Name).Msg("periodic job failed")
			}
		}); err != nil {
			return fmt.Errorf("grants: schedule %s: %w", job.Name, err)
		}
	}
	c.Start()
	defer func() { <-c.Stop().Done() }()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.lead(ctx) }()
	defer wg.Wait()

	timer, resetTimer, stopTimer := s.timers.NewTimer(0)
	defer stopTimer()
	for {
		slow := false
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-timer:
		case <-s.slow:
			slow = true
		}
		if s.leading.Load() && s.gateOpen(ctx) {
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				log.Error().Err(err).Msg("sweep failed")
			}
			if slow {
				if err := s.RetryRevokeFailed(ctx); err != nil && ctx.Err() == nil {
					log.Error().Err(err).Msg("retry of revoke-failed grants failed")
				}
			}
			for _, job := range s.opts.Jobs {
				if err := job(ctx); err != nil && ctx.Err() == nil {
					log.Error().Err(err).Msg("sweep job failed")
				}
			}
		}
		s.arm(ctx, resetTimer)
	}
}

// gateOpen asks the Gate whether this sweep may run; the gate logs its own reasons.
func (s *Sweeper) gateOpen(ctx context.Context) bool {
	if s.opts.Gate == nil {
		return true
	}
	if err := s.opts.Gate(ctx); err != nil {
		if ctx.Err() == nil {
			zerolog.Ctx(ctx).Debug().Err(err).Msg("sweep skipped by its gate")
		}
		return false
	}
	return true
}

// arm sets the timer to the next due time (never later than the cron interval). The wait is measured on the
// manager's clock, the one the due times are written with and claimed by, as is the armed time Schedule
// compares new due times with.
func (s *Sweeper) arm(ctx context.Context, reset func(time.Duration)) {
	now := s.opts.Manager.opts.Now()
	d := s.opts.Interval
	if s.leading.Load() {
		if at, ok, err := s.opts.Store.NextDue(ctx); err == nil && ok {
			d = min(d, max(at.Sub(now), 0))
		}
	}
	s.nextWake.Store(now.Add(d).UnixNano())
	reset(d)
}

// lead keeps trying to hold the sweeper lock and renews it while held.
func (s *Sweeper) lead(ctx context.Context) {
	log := zerolog.Ctx(ctx)
	var held store.Lock
	tick, stopTick := s.timers.NewTicker(s.opts.LeaderTTL / 3)
	defer stopTick()
	for {
		if s.leading.Load() {
			err := s.opts.Store.RenewLock(ctx, held, s.opts.LeaderTTL)
			if err != nil && ctx.Err() == nil {
				s.leading.Store(false)
				log.Warn().Err(err).Msg("lost sweeper leadership")
			}
			s.recordLoop(err, store.ErrLockLost)
		} else if ctx.Err() == nil {
			l, err := s.opts.Store.AcquireLock(ctx, "sweeper", s.opts.Holder, s.opts.LeaderTTL)
			s.recordLoop(err, store.ErrLockHeld)
			switch {
			case err == nil:
				held = l
				s.fence.Store(l.Fence)
				s.leading.Store(true)
				log.Info().Uint64("fence", l.Fence).Msg("leading the sweeper")
				s.Kick()
			case !errors.Is(err, store.ErrLockHeld):
				log.Warn().Err(err).Msg("could not take sweeper lock")
			}
		}
		select {
		case <-ctx.Done():
			if s.leading.Swap(false) {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				_ = s.opts.Store.ReleaseLock(rctx, held)
				cancel()
			}
			return
		case <-tick:
		}
	}
}

// Sweep claims every due grant and converges their bindings with bounded concurrency. It returns how many
// grants it claimed.
//
// Bindings whose only due work is re-checking a revoke (a provider Check) are converged after the bindings
// with a revocation or activation due, once the sweep has claimed everything due: a check confirms access
// already revoked, while a revocation removes access still held, and each costs a provider call and a
// worker. In a burst of expiries the checks of the first revokes would otherwise take workers from the
// revokes still waiting (the due index orders them by time, and a revoke's check is due right after it).
// Checks held back for half a claim hold are run before the next claim (at most a batch at a time), so that
// no other sweeper's claim finds them visible again while they wait.
//
// The workers are shared by the whole sweep: a claim's bindings are handed to them in order, and the next
// claim is made as soon as the last of them has a worker, while the others still work. In a burst that
// needs every worker (10,000 expiries against a 20 ms provider keep 64 busy for seconds), waiting for a
// claim's slowest binding before claiming again left workers idle at the end of every batch. Sweep returns
// once every binding it claimed has been converged.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	start := time.Now()
	total := 0
	var checks []store.Grant // claimed re-checks of bindings with nothing else due, not run yet
	var checksSince time.Time
	pool := s.startPool(ctx)
	defer pool.wait()
	for {
		due, err := s.opts.Store.ClaimDueGrants(ctx, s.opts.Manager.now(), s.opts.Batch, s.opts.ClaimHold)
		if err != nil {
			pool.run(checks) // claimed already: hidden from every sweep until their hold ends
			return total, fmt.Errorf("grants: claim due: %w", err)
		}
		total += len(due)
		more := len(due) == s.opts.Batch
		due, checks = splitChecks(due, checks)
		// The claim hold runs on the manager's clock (the one ClaimDueGrants is given), so measure the wait on it.
		now := s.opts.Manager.now()
		if len(checks) > 0 && checksSince.IsZero() {
			checksSince = now
		}
		if !more || now.Sub(checksSince) >= s.opts.ClaimHold/2 || len(checks) >= maxHeldChecks*s.opts.Batch {
			// Nothing else is due, or the checks have waited long enough, or enough of them are held: run the
			// held checks, oldest first, at most a batch of them before claiming again.
			n := min(len(checks), s.opts.Batch)
			due, checks = append(due, checks[:n]...), checks[n:]
			if len(checks) == 0 {
				checksSince = time.Time{}
			}
		}
		pool.run(due)
		if (!more && len(checks) == 0) || ctx.Err() != nil {
			break
		}
	}
	pool.wait()
	if obs := s.opts.Manager.opts.Observer; obs != nil {
		obs.Swept(time.Since(start), total)
	}
	return total, ctx.Err()
}

// RetryRevokeFailed retries every grant whose revocation was escalated.
func (s *Sweeper) RetryRevokeFailed(ctx context.Context) error {
	failed, err := s.opts.Store.ListGrants(ctx, store.GrantQuery{States: []store.GrantState{store.GrantRevokeFailed}})
	if err != nil {
		return fmt.Errorf("grants: list revoke-failed: %w", err)
	}
	s.convergeAll(ctx, failed)
	return nil
}

// maxHeldChecks bounds the re-checks a sweep holds back, in batches.
const maxHeldChecks = 10

// splitChecks returns the claimed grants of bindings with a revocation, activation or reminder due (now),
// with the held re-checks of those bindings merged in (one lock hold does both), and the re-checks of every
// other binding, the held ones included (later).
func splitChecks(claimed, held []store.Grant) (now, later []store.Grant) {
	urgent := map[string]bool{}
	for _, g := range claimed {
		if !isRecheck(g) {
			urgent[g.BindingKey] = true
		}
	}
	for _, g := range slices.Concat(held, claimed) { // held first: they have waited longest
		if urgent[g.BindingKey] {
			now = append(now, g)
		} else {
			later = append(later, g)
		}
	}
	return now, later
}

// isRecheck reports whether a claimed grant is due only for the check of its revoke (see Manager.recheck).
func isRecheck(g store.Grant) bool { return g.State.Terminal() && !g.RecheckAt.IsZero() }

// convergeAll converges the bindings of gs with bounded concurrency and returns when all are done.
func (s *Sweeper) convergeAll(ctx context.Context, gs []store.Grant) {
	p := s.startPool(ctx)
	p.run(gs)
	p.wait()
}

// A sweep's provider calls share Concurrency slots (callSlots): a call takes one for its duration only. A
// binding's store work before and after its call (lock and lease list; commit, which on bbolt waits for a
// shared transaction's fsync; unlock) is done while the slot serves another binding's call, by one of up to
// bindingsPerSlot×Concurrency workers. Before, a slot was a worker, idle for its binding's store work: 10,000
// expiries against a 20 ms provider took 1.7x the 3.1 s that 64 slots need (see docs/benchmarks.md).
const bindingsPerSlot = 4

// bindingWork is one binding's claimed grants, for a worker.
type bindingWork struct {
	key  string
	due  []store.Grant
	slot *callSlot
}

// pool is a sweep's workers, started as work arrives, and their call slots.
type pool struct {
	s       *Sweeper
	ctx     context.Context
	slots   *callSlots
	work    chan bindingWork
	wg      sync.WaitGroup
	workers int
	closed  bool
}

func (s *Sweeper) startPool(ctx context.Context) *pool {
	return &pool{s: s, ctx: ctx, slots: newCallSlots(s.opts.Concurrency), work: make(chan bindingWork)}
}

// run hands the bindings of gs to the workers, in order of first appearance, and returns once the last of
// them has a worker (not once they are done: see wait).
func (p *pool) run(gs []store.Grant) {
	byKey := make(map[string][]store.Grant, len(gs))
	var keys []string
	for _, g := range gs {
		if _, ok := byKey[g.BindingKey]; !ok {
			keys = append(keys, g.BindingKey)
		}
		byKey[g.BindingKey] = append(byKey[g.BindingKey], g)
	}
	for _, key := range keys {
		due := byKey[key]
		urgent := slices.ContainsFunc(due, func(g store.Grant) bool { return !isRecheck(g) })
		w := bindingWork{key: key, due: due, slot: p.slots.handOut(urgent)}
		select {
		case p.work <- w: // an idle worker took it
			continue
		default:
		}
		if p.workers < bindingsPerSlot*p.s.opts.Concurrency {
			p.workers++
			p.wg.Add(1)
			go p.worker()
		}
		p.work <- w
	}
}

func (p *pool) worker() {
	defer p.wg.Done()
	for w := range p.work {
		if err := p.s.opts.Manager.ConvergeDue(withCallSlot(p.ctx, w.slot), w.key, w.due); err != nil && p.ctx.Err() == nil {
			zerolog.Ctx(p.ctx).Debug().Err(err).Msg("converge did not finish; it is retried when due")
		}
		w.slot.standAside()
	}
}

// wait returns once every binding handed to the pool has been converged; the pool takes no more work.
func (p *pool) wait() {
	if !p.closed {
		p.closed = true
		close(p.work)
	}
	p.wg.Wait()
}
