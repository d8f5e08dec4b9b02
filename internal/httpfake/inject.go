package httpfake

import (
	"context"
	"sync"
	"time"
)

// Injector is the fault and latency injection every provider fake offers: a queue of faults, each answered by
// the next N requests it applies to, an optional fault for every request, and a latency added to each request.
// F is the fake's own fault type, so that each fake keeps answering in its provider's documented error format;
// which request a fault applies to is the fake's decision (see Take). The zero value is ready to use and safe for
// concurrent use; it takes no lock of the fake's, so a fake may call it with its own lock held.
type Injector[F any] struct {
	mu      sync.Mutex
	queue   []queued[F]
	always  *F
	latency time.Duration
}

type queued[F any] struct {
	fault F
	left  int
}

// FailNext queues f for the next n requests it applies to (nothing for n <= 0), after the faults queued before.
func (in *Injector[F]) FailNext(n int, f F) {
	if n <= 0 {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.queue = append(in.queue, queued[F]{fault: f, left: n})
}

// FailAlways answers f to every request no queued fault applies to, until Clear.
func (in *Injector[F]) FailAlways(f F) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.always = &f
}

// SetLatency delays every following request by d (0 stops).
func (in *Injector[F]) SetLatency(d time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.latency = d
}

// Latency is the delay set by SetLatency.
func (in *Injector[F]) Latency() time.Duration {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.latency
}

// Clear removes the queued faults, the FailAlways fault and the latency.
func (in *Injector[F]) Clear() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.queue, in.always, in.latency = nil, nil, 0
}

// Take uses up the fault a request gets: the first queued fault that applies (applies nil: every fault
// applies), else the FailAlways fault. ok is false when the request is to be served normally.
func (in *Injector[F]) Take(applies func(F) bool) (f F, ok bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for i := range in.queue {
		q := &in.queue[i]
		if applies != nil && !applies(q.fault) {
			continue
		}
		f = q.fault
		if q.left--; q.left <= 0 {
			in.queue = append(in.queue[:i:i], in.queue[i+1:]...)
		}
		return f, true
	}
	if in.always != nil {
		return *in.always, true
	}
	return f, false
}

// Wait waits out the latency d of a request. It returns false, early, when ctx (the request's context: the
// client went away) or stop (nil: never; e.g. the fake shutting down) ends first; the fake then answers nothing.
func Wait(ctx context.Context, d time.Duration, stop <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}
