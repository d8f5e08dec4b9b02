package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
)

// counterTests: Counter records are how a limit (break-glass per person and role) holds across concurrent
// requests and replicas, so their compare-and-swap must be exactly as strict as a request's.
var counterTests = []subtest{
	{"CreateGetUpdate", testCounterCreateGetUpdate},
	{"ConflictWritesNothingElse", testCounterConflictAtomic},
	{"OneWinnerPerVersion", testCounterConcurrent},
	{"Invalid", testCounterInvalid},
}

func testCounterCreateGetUpdate(t *testing.T, s store.Store) {
	key := store.BreakGlassCounterKey("U1", "db")
	if _, err := s.GetCounter(t.Context(), key); err == nil {
		t.Fatal("GetCounter of a counter never written: want ErrNotFound")
	} else {
		wantErrIs(t, "GetCounter unknown", err, store.ErrNotFound)
	}
	c := &store.Counter{Key: key, Events: []time.Time{at(0)}}
	mustCommit(t, s, store.Batch{Counters: []store.CounterPut{{Counter: c}}})
	if c.Version != 1 {
		t.Fatalf("counter version after create = %d, want 1", c.Version)
	}
	got, err := s.GetCounter(t.Context(), key)
	if err != nil || got.Version != 1 || len(got.Events) != 1 || !got.Events[0].Equal(at(0)) {
		t.Fatalf("GetCounter = %+v, %v", got, err)
	}
	got.Events = append(got.Events, at(time.Second))
	mustCommit(t, s, store.Batch{Counters: []store.CounterPut{{Counter: &got, PrevVersion: 1}}})
	again, _ := s.GetCounter(t.Context(), key)
	if again.Version != 2 || len(again.Events) != 2 {
		t.Fatalf("after update: %+v", again)
	}
	// A create over an existing counter and a stale update both conflict.
	err = s.Commit(t.Context(), store.Batch{Counters: []store.CounterPut{{Counter: &store.Counter{Key: key}}}})
	wantErrIs(t, "create over existing counter", err, store.ErrConflict)
	err = s.Commit(t.Context(), store.Batch{Counters: []store.CounterPut{{Counter: &store.Counter{Key: key}, PrevVersion: 1}}})
	wantErrIs(t, "stale counter update", err, store.ErrConflict)
	if final, _ := s.GetCounter(t.Context(), key); final.Version != 2 || len(final.Events) != 2 {
		t.Fatalf("a conflicting write changed the counter: %+v", final)
	}
}

func testCounterConflictAtomic(t *testing.T, s store.Store) {
	key := store.BreakGlassCounterKey("U1", "db")
	mustCommit(t, s, store.Batch{Counters: []store.CounterPut{{Counter: &store.Counter{Key: key, Events: []time.Time{at(0)}}}}})
	before, err := s.ReadAudit(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The request, grant and audit event of an action whose counter update lost must not land.
	err = s.Commit(t.Context(), store.Batch{
		Requests: []store.RequestPut{{Request: newRequest("req-1", "U1", at(0), store.RequestApproved)}},
		Grants:   []store.GrantPut{{Grant: newGrant("grant-1", "U1", "B1", at(0), store.GrantActivating)}},
		Audit:    []store.AuditEvent{event(store.EventBreakGlass, "req-1")},
		Counters: []store.CounterPut{{Counter: &store.Counter{Key: key, Events: []time.Time{at(0), at(1)}}}},
	})
	wantErrIs(t, "create over an existing counter", err, store.ErrConflict)
	wantNotFoundRequest(t, s, "req-1")
	wantNotFoundGrant(t, s, "grant-1")
	if after, _ := s.ReadAudit(t.Context(), 0, 0); len(after) != len(before) {
		t.Fatalf("audit grew from %d to %d entries on a conflicting commit", len(before), len(after))
	}
}

func testCounterConcurrent(t *testing.T, s store.Store) {
	key := store.BreakGlassCounterKey("U1", "db")
	mustCommit(t, s, store.Batch{Counters: []store.CounterPut{{Counter: &store.Counter{Key: key}}}})
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c := &store.Counter{Key: key, Events: []time.Time{at(time.Duration(i) * time.Millisecond)}}
			errs[i] = s.Commit(t.Context(), store.Batch{Counters: []store.CounterPut{{Counter: c, PrevVersion: 1}}})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			wantErrIs(t, "concurrent counter update", err, store.ErrConflict)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d updates from the same version committed, want exactly 1", won, n)
	}
	if c, _ := s.GetCounter(t.Context(), key); c.Version != 2 || len(c.Events) != 1 {
		t.Fatalf("counter after the race: %+v", c)
	}
}

func testCounterInvalid(t *testing.T, s store.Store) {
	for name, b := range map[string]store.Batch{
		"nil counter": {Counters: []store.CounterPut{{}}},
		"empty key":   {Counters: []store.CounterPut{{Counter: &store.Counter{}}}},
		"negative":    {Counters: []store.CounterPut{{Counter: &store.Counter{Key: "k"}, PrevVersion: -1}}},
		"twice":       {Counters: []store.CounterPut{{Counter: &store.Counter{Key: "k"}}, {Counter: &store.Counter{Key: "k"}}}},
	} {
		wantErrIs(t, name, s.Commit(t.Context(), b), store.ErrInvalid)
	}
	_, err := s.GetCounter(t.Context(), "")
	wantErrIs(t, "GetCounter empty key", err, store.ErrInvalid)
}
