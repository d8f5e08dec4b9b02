package bot

import (
	"context"
	"sync"

	"github.com/rs/zerolog"
)

// Defaults of the worker pool that does the work behind an acknowledgement.
const (
	DefaultWorkers   = 32
	DefaultQueueSize = 512
	// noticeSlots bounds the goroutines that tell people jitbot is busy when the pool is full.
	noticeSlots = 8
)

// busyText is what the person who acted sees when the pool is full: the action was acknowledged (Slack
// shows no error) but nothing was done.
const busyText = ":hourglass: jitbot is too busy to take this right now, so nothing was done. Try again in a minute."

// pool runs the slow part of each action (on-call lookups, provider calls, Slack API calls) after the
// acknowledgement, on at most workers goroutines, with at most queue actions waiting. Its goroutines exist
// only while there is work.
type pool struct {
	mu      sync.Mutex
	queue   []func()
	running int
	workers int
	limit   int
	wg      *sync.WaitGroup
}

// submit queues fn, or reports false when the queue is full.
func (p *pool) submit(fn func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) >= p.limit {
		return false
	}
	p.queue = append(p.queue, fn)
	p.wg.Add(1)
	if p.running < p.workers {
		p.running++
		go p.work()
	}
	return true
}

func (p *pool) work() {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.running--
			p.mu.Unlock()
			return
		}
		fn := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.mu.Unlock()
		fn()
		p.wg.Done()
	}
}

// later runs slow work after the ack on the worker pool, detached from the request's context but carrying
// its logger; each piece of work gets FollowUpTimeout from when it starts. It reports false (and does
// nothing) when the pool is full: the caller still acknowledges, and tells the person.
func (b *Bot) later(ctx context.Context, fn func(ctx context.Context)) bool {
	detached := context.WithoutCancel(ctx)
	ok := b.pool.submit(func() {
		ctx, cancel := context.WithTimeout(detached, b.opts.FollowUpTimeout)
		defer cancel()
		fn(ctx)
	})
	if !ok {
		zerolog.Ctx(ctx).Warn().Msg("worker pool full; refused an action (the person was told to try again)")
	}
	return ok
}

// notice runs a small answer (telling someone jitbot is busy) outside the full pool, on at most
// noticeSlots goroutines; beyond that the answer is only logged.
func (b *Bot) notice(ctx context.Context, fn func(ctx context.Context)) {
	select {
	case b.notices <- struct{}{}:
	default:
		zerolog.Ctx(ctx).Warn().Msg("could not tell someone that jitbot is busy")
		return
	}
	b.wg.Add(1)
	detached := context.WithoutCancel(ctx)
	go func() {
		defer b.wg.Done()
		defer func() { <-b.notices }()
		ctx, cancel := context.WithTimeout(detached, b.opts.FollowUpTimeout)
		defer cancel()
		fn(ctx)
	}()
}
