package grants

import (
	"context"
	"slices"
	"sync"
)

// callSlots bounds a sweep's provider calls in flight (SweeperOptions.Concurrency), with the sweep's order of
// urgency: a binding with a revocation or activation due (urgent) is served before one due only for the check
// of an earlier revoke, and no check takes a slot while an urgent binding the sweep handed out has not had its
// first one yet (it may still be taking its lock), unless that binding stood aside (its lock is busy). In a burst of expiries the checks of the first revokes must
// not take slots from the revokes still waiting (see Sweeper.Sweep).
type callSlots struct {
	mu      sync.Mutex
	free    int
	pending int // urgent bindings handed out that have not had a slot, finished or stood aside
	urgent  []chan struct{}
	checks  []chan struct{}
}

func newCallSlots(n int) *callSlots { return &callSlots{free: n} }

// callSlot is one binding's place among a sweep's slots. Only the goroutine converging the binding uses it.
type callSlot struct {
	slots   *callSlots
	urgent  bool
	pending bool // counted in slots.pending
}

// handOut returns the slot of a binding about to be handed to a worker.
func (s *callSlots) handOut(urgent bool) *callSlot {
	if urgent {
		s.mu.Lock()
		s.pending++
		s.mu.Unlock()
	}
	return &callSlot{slots: s, urgent: urgent, pending: urgent}
}

// acquire waits for a slot for one call.
func (c *callSlot) acquire(ctx context.Context) error {
	s := c.slots
	s.mu.Lock()
	if s.free > 0 && (c.urgent || (s.pending == 0 && len(s.urgent) == 0)) {
		s.free--
		c.passed()
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	if c.urgent {
		s.urgent = append(s.urgent, ch)
	} else {
		s.checks = append(s.checks, ch)
	}
	s.mu.Unlock()
	select {
	case <-ch:
		s.mu.Lock()
		c.passed()
		s.dispatch()
		s.mu.Unlock()
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		if i := slices.Index(s.urgent, ch); i >= 0 {
			s.urgent = slices.Delete(s.urgent, i, i+1)
		} else if i := slices.Index(s.checks, ch); i >= 0 {
			s.checks = slices.Delete(s.checks, i, i+1)
		} else { // granted meanwhile: give it back
			s.free++
		}
		s.dispatch()
		return ctx.Err()
	}
}

// passed ends the binding's count among the urgent ones still to be served. s.mu is held.
func (c *callSlot) passed() {
	if c.pending {
		c.pending = false
		c.slots.pending--
	}
}

// release frees the slot of a call that returned.
func (c *callSlot) release() {
	s := c.slots
	s.mu.Lock()
	s.free++
	s.dispatch()
	s.mu.Unlock()
}

// standAside tells the slots not to hold checks back for this binding any more: its work is over (it may
// have made no call at all), or it waits for its binding's lock, which may be held by a check waiting for a
// slot. It still gets a slot before the checks when it asks for one.
func (c *callSlot) standAside() {
	s := c.slots
	s.mu.Lock()
	c.passed()
	s.dispatch()
	s.mu.Unlock()
}

// dispatch hands free slots to waiters, urgent ones first. s.mu is held.
func (s *callSlots) dispatch() {
	for s.free > 0 {
		switch {
		case len(s.urgent) > 0:
			close(s.urgent[0])
			s.urgent = s.urgent[1:]
		case len(s.checks) > 0 && s.pending == 0:
			close(s.checks[0])
			s.checks = s.checks[1:]
		default:
			return
		}
		s.free--
	}
}

type callSlotKey struct{}

// withCallSlot makes the provider calls made under ctx use slot (see Manager.call).
func withCallSlot(ctx context.Context, slot *callSlot) context.Context {
	return context.WithValue(ctx, callSlotKey{}, slot)
}
