package grants

import (
	"context"
	"errors"
	"testing"
)

// A check takes no slot while an urgent binding that was handed out has not had one (it may still be taking
// its lock), even with a slot free; urgent work takes a free slot at once; a slot freed goes to an urgent
// waiter first. (A wait that ends with a cancelled context shows that the call would have waited.)
func TestCallSlotsServeUrgentWorkFirst(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	ctx := context.Background()
	s := newCallSlots(1)
	urgent, check := s.handOut(true), s.handOut(false)
	if err := check.acquire(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("a check took the free slot while an urgent binding was still to come: %v", err)
	}
	if err := urgent.acquire(cancelled); err != nil { // free: no wait at all
		t.Fatalf("urgent work waited for a free slot: %v", err)
	}
	got := make(chan string, 2)
	later := s.handOut(true)
	go func() {
		if check.acquire(ctx) == nil {
			got <- "check"
			check.release()
		}
	}()
	go func() {
		if later.acquire(ctx) == nil {
			got <- "urgent"
			later.release()
			later.done()
		}
	}()
	urgent.release()
	urgent.done()
	if first, second := <-got, <-got; first != "urgent" || second != "check" {
		t.Fatalf("slots went to %s, then %s; want the urgent binding first", first, second)
	}
	// Work that made no call frees its place too.
	s2 := newCallSlots(1)
	idle, c2 := s2.handOut(true), s2.handOut(false)
	idle.done()
	if err := c2.acquire(cancelled); err != nil {
		t.Fatalf("a check waited after the urgent binding finished without a call: %v", err)
	}
}
