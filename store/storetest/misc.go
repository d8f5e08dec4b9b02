package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
)

// ---- concurrency (run with -race) ----

var concurrencyTests = []subtest{
	{"OneWinnerPerVersion", testConcurrentCAS},
	{"ClaimersNeverShare", testConcurrentClaims},
	{"AuditChainUnderConcurrentCommits", testConcurrentAudit},
}

func testConcurrentCAS(t *testing.T, s store.Store) {
	mustCommit(t, s, createReqs(newRequest("req-1", "U1", t0, store.RequestPending)))
	base := mustGetRequest(t, s, "req-1")
	const n = 50
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := base
			r.Reason = fmt.Sprintf("writer %d", i)
			r.Approvals = []store.Decision{{By: fmt.Sprintf("U%d", i), At: t0}}
			errs[i] = s.Commit(t.Context(), store.Batch{
				Requests: []store.RequestPut{{Request: &r, PrevVersion: base.Version}},
				Audit:    []store.AuditEvent{event(store.EventApproved, "req-1")},
			})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("writers %d and %d both committed from the same PrevVersion", winner, i)
			}
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("writer %d: err = %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	got := mustGetRequest(t, s, "req-1")
	if got.Version != base.Version+1 || got.Reason != fmt.Sprintf("writer %d", winner) {
		t.Fatalf("stored request = version %d reason %q, want version %d from writer %d", got.Version, got.Reason, base.Version+1, winner)
	}
	if recs := readAudit(t, s, 0, 0); len(recs) != 1 {
		t.Fatalf("audit has %d records, want exactly the winner's 1", len(recs))
	}
}

func testConcurrentClaims(t *testing.T, s store.Store) {
	const total, batch = 500, 50
	for i := 0; i < total; i += batch {
		var gs []*store.Grant
		for j := i; j < i+batch; j++ {
			gs = append(gs, dueGrant(fmt.Sprintf("g-%03d", j), at(-time.Duration(j)*time.Millisecond)))
		}
		mustCommit(t, s, createGrants(gs...))
	}
	const claimers = 4
	got := make([][]string, claimers)
	errs := make([]error, claimers)
	var claimed atomic.Int64 // bounds the loops if a store hands grants out more than once
	var wg sync.WaitGroup
	for c := range claimers {
		wg.Go(func() {
			for claimed.Load() <= 2*total {
				gs, err := s.ClaimDueGrants(t.Context(), t0, 7, time.Hour)
				if err != nil {
					errs[c] = err
					return
				}
				if len(gs) == 0 {
					return
				}
				claimed.Add(int64(len(gs)))
				for _, g := range gs {
					got[c] = append(got[c], g.ID)
				}
			}
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for c := range claimers {
		if errs[c] != nil {
			t.Fatalf("claimer %d: %v", c, errs[c])
		}
		for _, id := range got[c] {
			if prev, dup := seen[id]; dup {
				t.Fatalf("grant %s claimed by claimers %d and %d", id, prev, c)
			}
			seen[id] = c
		}
	}
	if len(seen) != total {
		t.Fatalf("claimed %d distinct grants, want %d", len(seen), total)
	}
}

func testConcurrentAudit(t *testing.T, s store.Store) {
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("req-%02d", i)
			e1, e2 := event(store.EventRequested, id), event(store.EventApproved, id)
			e1.Details, e2.Details = map[string]string{"step": "1"}, map[string]string{"step": "2"}
			errs[i] = s.Commit(t.Context(), store.Batch{
				Requests: []store.RequestPut{{Request: newRequest(id, "U1", t0, store.RequestPending)}},
				Audit:    []store.AuditEvent{e1, e2},
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	recs := readAudit(t, s, 0, 0)
	if len(recs) != 2*n {
		t.Fatalf("audit has %d records, want %d", len(recs), 2*n)
	}
	if last, _, err := store.VerifyChain(recs, 0, store.GenesisHash); err != nil || last != 2*n {
		t.Fatalf("VerifyChain = last %d, err %v; want %d, nil", last, err, 2*n)
	}
	ids := map[string]bool{}
	for i := 0; i < len(recs); i += 2 {
		a, b := recs[i].Event, recs[i+1].Event
		// A batch's events are appended contiguously and in order.
		if a.RequestID != b.RequestID || a.Details["step"] != "1" || b.Details["step"] != "2" {
			t.Fatalf("seq %d,%d: events of one batch not contiguous/in order: %+v, %+v", recs[i].Seq, recs[i+1].Seq, a, b)
		}
		ids[a.RequestID] = true
	}
	if len(ids) != n {
		t.Fatalf("audit covers %d batches, want %d", len(ids), n)
	}
}

// ---- locks ----

var lockTests = []subtest{
	{"HeldRenewRelease", testLockBasics},
	{"ExpiryTakeoverFence", testLockExpiry},
	{"FencedCommit", testFencedCommit},
	{"AcquireLockAndList", testLockAndList},
}

// A store.LockLister's AcquireLockAndList answers what AcquireLock followed by ListGrants of the binding
// answers, whatever the hint says (grants of the binding, of another, ended or unknown) and however many live
// grants the binding has; a lock held by another holder reads nothing.
func testLockAndList(t *testing.T, s store.Store) {
	ll, ok := s.(store.LockLister)
	if !ok {
		t.Skip("this store does not implement store.LockLister")
	}
	ctx := t.Context()
	live := []*store.Grant{
		newGrant("ll-a", "U1", "b-ll", at(time.Minute), store.GrantActive),
		newGrant("ll-b", "U2", "b-ll", at(2*time.Minute), store.GrantRevoking),
		newGrant("ll-c", "U3", "b-ll", at(2*time.Minute), store.GrantActivating), // same CreatedAt as ll-b
	}
	ended := newGrant("ll-ended", "U1", "b-ll", at(3*time.Minute), store.GrantRevoked)
	other := newGrant("ll-other", "U1", "b-other", at(time.Minute), store.GrantActive)
	mustCommit(t, s, createGrants(append(live, ended, other)...))
	want, err := s.ListGrants(ctx, store.GrantQuery{BindingKey: "b-ll"})
	if err != nil {
		t.Fatal(err)
	}
	byID := func(id string) store.Grant {
		for _, g := range want {
			if g.ID == id {
				return g
			}
		}
		return mustGetGrant(t, s, id)
	}
	stale := func(id string) store.Grant { // an older copy: what a claim read before the last write
		g := byID(id)
		g.Version--
		g.Role = "a stale copy"
		return g
	}
	hints := []func() []store.Grant{
		func() []store.Grant { return nil },
		func() []store.Grant { return []store.Grant{byID("ll-a")} },
		func() []store.Grant { return []store.Grant{byID("ll-a"), byID("ll-b"), byID("ll-c")} },
		func() []store.Grant { return []store.Grant{stale("ll-a"), byID("ll-b")} },
		func() []store.Grant {
			return []store.Grant{byID("ll-ended"), byID("ll-other"), {ID: "ll-nope", Version: 1}}
		},
		func() []store.Grant { return []store.Grant{byID("ll-c"), byID("ll-c")} },
	}
	for round, mk := range hints {
		hint := mk()
		l, got, err := ll.AcquireLockAndList(ctx, "binding:b-ll", "A", time.Minute, "b-ll", hint)
		if err != nil {
			t.Fatalf("hint %d: %v", round, err)
		}
		wantIDs(t, fmt.Sprintf("grants listed with hint %d", round), grantIDs(got), grantIDs(want)...)
		for i := range got {
			if got[i].Version != want[i].Version || got[i].State != want[i].State || got[i].Role != want[i].Role {
				t.Fatalf("hint %d: %s at version %d %s %q, want %d %s %q", round, got[i].ID, got[i].Version, got[i].State, got[i].Role, want[i].Version, want[i].State, want[i].Role)
			}
		}
		_, _, err = ll.AcquireLockAndList(ctx, "binding:b-ll", "B", time.Minute, "b-ll", hint)
		wantErrIs(t, "another holder", err, store.ErrLockHeld)
		// What is returned is the caller's own: changing it changes nothing the caller hinted.
		for i := range got {
			got[i].Target["probe"] = fmt.Sprint("round ", round)
		}
		for _, h := range hint {
			if h.Target["probe"] == fmt.Sprint("round ", round) {
				t.Fatalf("hint %d: changing a listed grant changed the hinted %s", round, h.ID)
			}
		}
		// The lock is a lock like any other: it fences a commit of what was listed, and is released.
		up := got[0]
		up.State = store.GrantActive
		if err := s.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &up, PrevVersion: got[0].Version}}, Fence: &l}); err != nil {
			t.Fatalf("hint %d: commit fenced by the lock: %v", round, err)
		}
		if err := s.ReleaseLock(ctx, l); err != nil {
			t.Fatal(err)
		}
		if want, err = s.ListGrants(ctx, store.GrantQuery{BindingKey: "b-ll"}); err != nil {
			t.Fatal(err)
		}
	}
	// Bad input is refused and takes no lock.
	for _, bad := range []struct{ name, holder, binding string }{{"", "A", "b-ll"}, {"binding:b-ll", "", "b-ll"}, {"binding:b-ll", "A", ""}} {
		_, _, err := ll.AcquireLockAndList(ctx, bad.name, bad.holder, time.Minute, bad.binding, nil)
		wantErrIs(t, fmt.Sprintf("AcquireLockAndList(%q, %q, %q)", bad.name, bad.holder, bad.binding), err, store.ErrInvalid)
	}
	_, _, err = ll.AcquireLockAndList(ctx, "binding:b-ll", "A", 0, "b-ll", nil)
	wantErrIs(t, "AcquireLockAndList with a zero ttl", err, store.ErrInvalid)
	free, err := s.AcquireLock(ctx, "binding:b-ll", "B", time.Minute)
	if err != nil {
		t.Fatalf("the lock after refused calls: %v", err)
	}
	if err := s.ReleaseLock(ctx, free); err != nil {
		t.Fatal(err)
	}
	// A binding with more live grants than fit a page of any store.
	var many []*store.Grant
	for i := range 300 {
		many = append(many, newGrant(fmt.Sprintf("ll-many-%03d", i), "U1", "b-many", at(time.Duration(i%7)*time.Second), store.GrantActive))
	}
	mustCommit(t, s, createGrants(many...))
	want, err = s.ListGrants(ctx, store.GrantQuery{BindingKey: "b-many"})
	if err != nil || len(want) != 300 {
		t.Fatalf("listed %d of 300 (%v)", len(want), err)
	}
	_, got, err := ll.AcquireLockAndList(ctx, "binding:b-many", "A", time.Minute, "b-many", []store.Grant{want[7]})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "a binding of 300 grants", grantIDs(got), grantIDs(want)...)
}

// A batch fenced by a lock lands only while that exact lock is held: after its expiry and takeover, a stalled
// holder's commit is refused with ErrLockLost although its record versions still match, and nothing of it
// (records, indexes, audit) is written.
func testFencedCommit(t *testing.T, s store.Store) {
	ctx := t.Context()
	const ttl = 100 * time.Millisecond
	a, err := s.AcquireLock(ctx, "binding:b1", "A", ttl)
	if err != nil {
		t.Fatalf("A acquire: %v", err)
	}
	g := newGrant("g1", "U1", "b1", at(0), store.GrantActivating)
	g.DueAt = at(time.Minute)
	if err := s.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: g}}, Audit: []store.AuditEvent{event("granted", "r1")}, Fence: &a}); err != nil {
		t.Fatalf("commit fenced by a held lock: %v", err)
	}
	if g.Version != 1 {
		t.Fatalf("version after fenced create = %d", g.Version)
	}
	for _, bad := range []store.Lock{
		{Name: a.Name, Holder: a.Holder, Fence: a.Fence + 1},
		{Name: a.Name, Holder: "B", Fence: a.Fence},
		{Name: "binding:other", Holder: a.Holder, Fence: a.Fence},
	} {
		up := *g
		up.State = store.GrantActive
		err := s.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &up, PrevVersion: 1}}, Fence: &bad})
		wantErrIs(t, fmt.Sprintf("commit fenced by %+v", bad), err, store.ErrLockLost)
	}
	poll(t, "B takes the lock after A's ttl", 10*time.Millisecond, func() bool {
		_, err := s.AcquireLock(ctx, "binding:b1", "B", time.Minute)
		if err != nil && !errors.Is(err, store.ErrLockHeld) {
			t.Fatalf("B acquire: %v", err)
		}
		return err == nil
	})
	stale := *g
	stale.State, stale.DueAt = store.GrantActive, at(2*time.Hour)
	err = s.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &stale, PrevVersion: 1}}, Audit: []store.AuditEvent{event("granted", "r1-stale")}, Fence: &a})
	wantErrIs(t, "the stalled holder's commit after takeover", err, store.ErrLockLost)
	if stale.Version != 1 {
		t.Fatalf("a refused commit changed the caller's version to %d", stale.Version)
	}
	got := mustGetGrant(t, s, "g1")
	if got.State != store.GrantActivating || got.Version != 1 {
		t.Fatalf("after the refused commit: state %s version %d, want activating 1", got.State, got.Version)
	}
	wantIDs(t, "due grants after the refused commit", claim(t, s, at(time.Hour), 0, 0), "g1")
	if recs := readAudit(t, s, 0, 0); len(recs) != 1 {
		t.Fatalf("audit has %d entries after a refused fenced commit, want 1", len(recs))
	}
	// Audit-only and empty batches are fenced too.
	wantErrIs(t, "audit-only commit with a lost fence", s.Commit(ctx, store.Batch{Audit: []store.AuditEvent{event("x", "r2")}, Fence: &a}), store.ErrLockLost)
	wantErrIs(t, "empty commit with a lost fence", s.Commit(ctx, store.Batch{Fence: &a}), store.ErrLockLost)
	wantErrIs(t, "fence without a holder", s.Commit(ctx, store.Batch{Fence: &store.Lock{Name: "binding:b1"}}), store.ErrInvalid)
}

func testLockBasics(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, err := s.AcquireLock(ctx, "sweeper", "A", time.Minute)
	if err != nil {
		t.Fatalf("A acquire: %v", err)
	}
	if a.Name != "sweeper" || a.Holder != "A" {
		t.Fatalf("lock = %+v", a)
	}
	_, err = s.AcquireLock(ctx, "sweeper", "B", time.Minute)
	wantErrIs(t, "B acquire while A holds", err, store.ErrLockHeld)

	again, err := s.AcquireLock(ctx, "sweeper", "A", time.Minute)
	if err != nil {
		t.Fatalf("A re-acquire: %v", err)
	}
	if again.Fence != a.Fence {
		t.Fatalf("re-acquire by the same holder changed the fence: %d -> %d", a.Fence, again.Fence)
	}
	if err := s.RenewLock(ctx, a, time.Minute); err != nil {
		t.Fatalf("A renew: %v", err)
	}
	wantErrIs(t, "renew by a non-holder", s.RenewLock(ctx, store.Lock{Name: "sweeper", Holder: "B", Fence: a.Fence}, time.Minute), store.ErrLockLost)
	wantErrIs(t, "renew with a wrong fence", s.RenewLock(ctx, store.Lock{Name: "sweeper", Holder: "A", Fence: a.Fence + 1}, time.Minute), store.ErrLockLost)

	// Another lock name is independent.
	other, err := s.AcquireLock(ctx, "anchor", "B", time.Minute)
	if err != nil {
		t.Fatalf("B acquire other lock: %v", err)
	}

	// A stranger's release does nothing.
	if err := s.ReleaseLock(ctx, store.Lock{Name: "sweeper", Holder: "B", Fence: a.Fence}); err != nil {
		t.Fatalf("release by a non-holder: %v", err)
	}
	_, err = s.AcquireLock(ctx, "sweeper", "B", time.Minute)
	wantErrIs(t, "B acquire after a stranger's release", err, store.ErrLockHeld)

	if err := s.ReleaseLock(ctx, a); err != nil {
		t.Fatalf("A release: %v", err)
	}
	b, err := s.AcquireLock(ctx, "sweeper", "B", time.Minute)
	if err != nil {
		t.Fatalf("B acquire after A released: %v", err)
	}
	if b.Fence <= a.Fence {
		t.Fatalf("fence after hand-over = %d, want > %d", b.Fence, a.Fence)
	}
	wantErrIs(t, "A renew after release", s.RenewLock(ctx, a, time.Minute), store.ErrLockLost)
	if err := s.ReleaseLock(ctx, a); err != nil {
		t.Fatalf("second release by A: %v", err)
	}
	if err := s.RenewLock(ctx, b, time.Minute); err != nil {
		t.Fatalf("B renew after A's stale release: %v", err)
	}
	if err := s.RenewLock(ctx, other, time.Minute); err != nil {
		t.Fatalf("B renew other lock: %v", err)
	}
	if err := s.ReleaseLock(ctx, store.Lock{Name: "never-held", Holder: "Z", Fence: 9}); err != nil {
		t.Fatalf("release of a never-held lock: %v", err)
	}
}

func testLockExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	const ttl = 100 * time.Millisecond
	a, err := s.AcquireLock(ctx, "sweeper", "A", ttl)
	if err != nil {
		t.Fatalf("A acquire: %v", err)
	}
	var b store.Lock
	poll(t, "B acquires after A's ttl", 10*time.Millisecond, func() bool {
		l, err := s.AcquireLock(ctx, "sweeper", "B", time.Minute)
		if err != nil {
			if !errors.Is(err, store.ErrLockHeld) {
				t.Fatalf("B acquire: %v", err)
			}
			return false
		}
		b = l
		return true
	})
	if b.Fence <= a.Fence {
		t.Fatalf("fence after expiry takeover = %d, want > %d", b.Fence, a.Fence)
	}
	wantErrIs(t, "A renew after takeover", s.RenewLock(ctx, a, time.Minute), store.ErrLockLost)
	// The old holder's release is not an error and must not free B's lock.
	if err := s.ReleaseLock(ctx, a); err != nil {
		t.Fatalf("A release of a lost lock: %v", err)
	}
	_, err = s.AcquireLock(ctx, "sweeper", "C", time.Minute)
	wantErrIs(t, "C acquire while B holds", err, store.ErrLockHeld)
	_, err = s.AcquireLock(ctx, "sweeper", "A", time.Minute)
	wantErrIs(t, "A re-acquire while B holds", err, store.ErrLockHeld)
	if err := s.RenewLock(ctx, b, time.Minute); err != nil {
		t.Fatalf("B renew: %v", err)
	}

	// An expired lock cannot be renewed even when nobody took it over. The "clock" lock, taken after "idle"
	// with the same ttl, tells (by the store's own clock) when "idle" has expired without touching it.
	idle, err := s.AcquireLock(ctx, "idle", "A", ttl)
	if err != nil {
		t.Fatalf("A acquire idle: %v", err)
	}
	if _, err := s.AcquireLock(ctx, "clock", "A", ttl); err != nil {
		t.Fatalf("A acquire clock: %v", err)
	}
	poll(t, "clock lock expires", 10*time.Millisecond, func() bool {
		_, err := s.AcquireLock(ctx, "clock", "B", time.Minute)
		return err == nil
	})
	wantErrIs(t, "renew of an expired, untaken lock", s.RenewLock(ctx, idle, time.Minute), store.ErrLockLost)

	// A lock that expired (and was briefly taken by another holder) cannot be renewed by its old holder, and
	// re-acquiring it yields a greater fence.
	c, err := s.AcquireLock(ctx, "other", "C", ttl)
	if err != nil {
		t.Fatalf("C acquire other: %v", err)
	}
	poll(t, "C's lock expires", 20*time.Millisecond, func() bool {
		// Probe with a different holder so C's lock is not renewed by the probe; release the probe at once.
		l, err := s.AcquireLock(ctx, "other", "probe", time.Minute)
		if err != nil {
			return false
		}
		if err := s.ReleaseLock(ctx, l); err != nil {
			t.Fatalf("probe release: %v", err)
		}
		return true
	})
	wantErrIs(t, "C renew after expiry", s.RenewLock(ctx, c, time.Minute), store.ErrLockLost)
	d, err := s.AcquireLock(ctx, "other", "C", time.Minute)
	if err != nil {
		t.Fatalf("C acquire again: %v", err)
	}
	if d.Fence <= c.Fence {
		t.Fatalf("fence after re-acquire of a released lock = %d, want > %d", d.Fence, c.Fence)
	}
}

// ---- audit ----

var auditTests = []subtest{
	{"SeqPagingChain", testAudit},
}

func testAudit(t *testing.T, s store.Store) {
	ev := func(typ string, i int) store.AuditEvent {
		return store.AuditEvent{
			Type: typ, At: odd(time.Duration(i) * time.Second), Actor: "U1", RequestID: "req-1", GrantID: fmt.Sprintf("grant-%d", i),
			Role: "db-admin", Details: map[string]string{"i": fmt.Sprint(i), "note": "ünïcode \"q\" <x>"},
		}
	}
	events := []store.AuditEvent{
		ev(store.EventRequested, 1),
		ev(store.EventApproved, 2), ev(store.EventGranted, 3), ev(store.EventExtended, 4),
		ev(store.EventReleased, 5), ev(store.EventRevoked, 6),
	}
	mustCommit(t, s, store.Batch{Requests: []store.RequestPut{{Request: newRequest("req-1", "U1", t0, store.RequestPending)}}, Audit: events[:1]})
	mustCommit(t, s, store.Batch{Audit: events[1:4]})
	mustCommit(t, s, store.Batch{Grants: []store.GrantPut{{Grant: newGrant("grant-1", "U1", "B1", t0, store.GrantActive)}}, Audit: events[4:]})

	recs := readAudit(t, s, 0, 0)
	if len(recs) != len(events) {
		t.Fatalf("ReadAudit(0, 0): %d records, want %d", len(recs), len(events))
	}
	if recs[0].PrevHash != store.GenesisHash {
		t.Fatalf("first record PrevHash = %q, want GenesisHash", recs[0].PrevHash)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has Seq %d, want %d", i, r.Seq, i+1)
		}
		wantEqual(t, fmt.Sprintf("record %d event", i), normEvent(r.Event), normEvent(events[i]))
		var fromRaw store.AuditEvent
		if err := json.Unmarshal(r.Raw, &fromRaw); err != nil {
			t.Fatalf("record %d Raw is not JSON: %v (%q)", i, err, r.Raw)
		}
		wantEqual(t, fmt.Sprintf("record %d Raw", i), normEvent(fromRaw), normEvent(events[i]))
	}
	last, lastHash, err := store.VerifyChain(recs, 0, store.GenesisHash)
	if err != nil || last != 6 || lastHash != recs[5].Hash {
		t.Fatalf("VerifyChain = %d, %q, %v; want 6, %q, nil", last, lastHash, err, recs[5].Hash)
	}

	seqs := func(rs []store.AuditRecord) []string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = fmt.Sprint(r.Seq)
		}
		return out
	}
	wantIDs(t, "ReadAudit(2, 3) seqs", seqs(readAudit(t, s, 2, 3)), "3", "4", "5")
	wantIDs(t, "ReadAudit(5, 10) seqs", seqs(readAudit(t, s, 5, 10)), "6")
	wantIDs(t, "ReadAudit(6, 0) seqs", seqs(readAudit(t, s, 6, 0)))
	wantIDs(t, "ReadAudit(100, 0) seqs", seqs(readAudit(t, s, 100, 0)))

	// Page-by-page verification continues the chain across pages.
	after, hash := uint64(0), store.GenesisHash
	for pages := 0; ; pages++ {
		page := readAudit(t, s, after, 4)
		if len(page) == 0 {
			if pages != 2 {
				t.Fatalf("read %d pages of 4, want 2", pages)
			}
			break
		}
		if after, hash, err = store.VerifyChain(page, after, hash); err != nil {
			t.Fatalf("VerifyChain page after %d: %v", after, err)
		}
	}
	if after != 6 || hash != recs[5].Hash {
		t.Fatalf("paged verification ended at %d %q", after, hash)
	}

	// Appends continue the chain.
	mustCommit(t, s, store.Batch{Audit: []store.AuditEvent{ev("test-event", 7)}})
	more := readAudit(t, s, 6, 0)
	if len(more) != 1 || more[0].Seq != 7 || more[0].PrevHash != recs[5].Hash {
		t.Fatalf("record after more commits = %+v", more)
	}
	if _, _, err := store.VerifyChain(more, 6, recs[5].Hash); err != nil {
		t.Fatalf("VerifyChain of appended record: %v", err)
	}
}

// ---- MarkSeen ----

var markSeenTests = []subtest{
	{"FirstWithinTTL", testMarkSeen},
}

func testMarkSeen(t *testing.T, s store.Store) {
	ctx := t.Context()
	const ttl = 150 * time.Millisecond
	mark := func(key string) bool {
		t.Helper()
		first, err := s.MarkSeen(ctx, key, ttl)
		if err != nil {
			t.Fatalf("MarkSeen(%q): %v", key, err)
		}
		return first
	}
	if !mark("evt-1") {
		t.Fatal("first MarkSeen(evt-1) = false, want true")
	}
	if mark("evt-1") {
		t.Fatal("second MarkSeen(evt-1) within ttl = true, want false")
	}
	if !mark("evt-2") {
		t.Fatal("first MarkSeen(evt-2) = false, want true")
	}
	if first, err := s.MarkSeen(ctx, "evt-long", time.Hour); err != nil || !first {
		t.Fatalf("MarkSeen(evt-long) = %v, %v", first, err)
	}
	// Poll more slowly than ttl, so the test passes whether or not a repeated mark extends the ttl.
	poll(t, "MarkSeen(evt-1) true again after ttl", ttl+50*time.Millisecond, func() bool { return mark("evt-1") })
	if mark("evt-1") {
		t.Fatal("MarkSeen(evt-1) right after it was re-marked = true, want false")
	}
	if first, err := s.MarkSeen(ctx, "evt-long", time.Hour); err != nil || first {
		t.Fatalf("MarkSeen(evt-long) within its ttl = %v, %v; want false", first, err)
	}
}

// ---- context and ping ----

var contextTests = []subtest{
	{"Ping", func(t *testing.T, s store.Store) {
		if err := s.Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	}},
	{"CancelledContext", testCancelled},
}

func testCancelled(t *testing.T, s store.Store) {
	mustCommit(t, s, store.Batch{
		Requests: []store.RequestPut{{Request: newRequest("req-1", "U1", t0, store.RequestPending)}},
		Grants:   []store.GrantPut{{Grant: dueGrant("grant-1", at(-time.Second))}},
	})
	lock, err := s.AcquireLock(t.Context(), "l", "A", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"Commit", func() error {
			return s.Commit(ctx, store.Batch{
				Requests: []store.RequestPut{{Request: newRequest("req-2", "U1", t0, store.RequestPending)}},
				Audit:    []store.AuditEvent{event(store.EventRequested, "req-2")},
			})
		}},
		{"GetRequest", func() error { _, err := s.GetRequest(ctx, "req-1"); return err }},
		{"ListRequests", func() error { _, err := s.ListRequests(ctx, store.RequestQuery{Requester: "U1"}); return err }},
		{"DueRequests", func() error { _, err := s.DueRequests(ctx, at(time.Hour), 10); return err }},
		{"GetGrant", func() error { _, err := s.GetGrant(ctx, "grant-1"); return err }},
		{"ListGrants", func() error { _, err := s.ListGrants(ctx, store.GrantQuery{UserID: "U1"}); return err }},
		{"ClaimDueGrants", func() error { _, err := s.ClaimDueGrants(ctx, t0, 10, time.Hour); return err }},
		{"NextDue", func() error { _, _, err := s.NextDue(ctx); return err }},
		{"AcquireLock", func() error { _, err := s.AcquireLock(ctx, "l2", "A", time.Minute); return err }},
		{"RenewLock", func() error { return s.RenewLock(ctx, lock, time.Minute) }},
		{"ReleaseLock", func() error { return s.ReleaseLock(ctx, lock) }},
		{"ReadAudit", func() error { _, err := s.ReadAudit(ctx, 0, 0); return err }},
		{"MarkSeen", func() error { _, err := s.MarkSeen(ctx, "k", time.Minute); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want one wrapping context.Canceled", c.name, err)
		}
	}
	// Nothing happened.
	wantNotFoundRequest(t, s, "req-2")
	if recs := readAudit(t, s, 0, 0); len(recs) != 0 {
		t.Fatalf("cancelled Commit appended %d audit records", len(recs))
	}
	wantIDs(t, "claim after cancelled claim", claim(t, s, t0, 10, time.Hour), "grant-1")
	if err := s.RenewLock(t.Context(), lock, time.Minute); err != nil {
		t.Fatalf("lock after cancelled release: %v", err)
	}
	if first, err := s.MarkSeen(t.Context(), "k", time.Minute); err != nil || !first {
		t.Fatalf("MarkSeen after cancelled MarkSeen = %v, %v; want true", first, err)
	}
}
