package storetest

import (
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
)

// ---- ClaimDueGrants ----

var claimTests = []subtest{
	{"DueEarliestFirstWithHold", testClaimDue},
	{"CommitReindexes", testClaimCommitReindexes},
}

func dueGrant(id string, due time.Time) *store.Grant {
	g := newGrant(id, "U1", "B-"+id, at(-time.Hour), store.GrantActive)
	g.DueAt = due
	return g
}

func testClaimDue(t *testing.T, s store.Store) {
	mustCommit(t, s, createGrants(dueGrant("g-c", at(-time.Second)), dueGrant("g-e", at(time.Second)), dueGrant("g-z", time.Time{})))
	mustCommit(t, s, createGrants(dueGrant("g-b", at(-2*time.Second)), dueGrant("g-d", t0)))
	mustCommit(t, s, createGrants(dueGrant("g-a", at(-3*time.Second))))
	hold := 10 * time.Second

	wantIDs(t, "claim(t0, 2)", claim(t, s, t0, 2, hold), "g-a", "g-b")
	// Claiming does not change the records.
	for id, due := range map[string]time.Time{"g-a": at(-3 * time.Second), "g-b": at(-2 * time.Second)} {
		if g := mustGetGrant(t, s, id); g.Version != 1 || !ms(g.DueAt).Equal(due) {
			t.Fatalf("claimed grant %s changed: version %d, DueAt %v", id, g.Version, g.DueAt)
		}
	}
	wantIDs(t, "claim(t0, 10)", claim(t, s, t0, 10, hold), "g-c", "g-d")
	wantIDs(t, "claim(t0, 10) again", claim(t, s, t0, 10, hold))
	wantIDs(t, "claim(t0+1s)", claim(t, s, at(time.Second), 10, hold), "g-e")
	wantIDs(t, "claim(t0+9.999s): all held", claim(t, s, at(hold-time.Millisecond), 10, hold))
	// After the hold the first four are due again (all at t0+hold: any order), limit still respected.
	first := claim(t, s, at(hold), 3, hold)
	if len(first) != 3 {
		t.Fatalf("claim(t0+hold, 3) = %v, want 3 grants", first)
	}
	rest := claim(t, s, at(hold), 10, hold)
	wantIDSet(t, "claims after hold", append(first, rest...), "g-a", "g-b", "g-c", "g-d")
	// g-e (held until t0+11s) comes back after its own hold; g-z (no DueAt) never.
	wantIDs(t, "claim(t0+11s)", claim(t, s, at(time.Second+hold), 10, hold), "g-e")
	all := claim(t, s, at(1000*time.Hour), 10, hold)
	wantIDSet(t, "claim(t0+1000h)", all, "g-a", "g-b", "g-c", "g-d", "g-e")
	if all[4] != "g-e" { // held until t0+21s, the others until t0+20s
		t.Fatalf("claim(t0+1000h) = %v, want g-e last (latest hidden-until)", all)
	}
	if g := mustGetGrant(t, s, "g-a"); g.Version != 1 || !ms(g.DueAt).Equal(at(-3*time.Second)) {
		t.Fatalf("claims changed g-a: version %d, DueAt %v", g.Version, g.DueAt)
	}
}

func testClaimCommitReindexes(t *testing.T, s store.Store) {
	mustCommit(t, s, createGrants(dueGrant("g-1", at(-time.Second)), dueGrant("g-2", at(-time.Second)), dueGrant("g-3", at(time.Minute))))
	wantIDSet(t, "claim(t0)", claim(t, s, t0, 10, time.Hour), "g-1", "g-2")

	// A Commit re-indexes a claimed grant from its new DueAt, releasing the hold.
	updateGrant(t, s, "g-1", func(g *store.Grant) { g.DueAt = at(2 * time.Second); g.Attempts = 1 })
	wantIDs(t, "claim(t0+1s)", claim(t, s, at(time.Second), 10, time.Hour))
	wantIDs(t, "claim(t0+2s)", claim(t, s, at(2*time.Second), 10, time.Hour), "g-1")

	// Zero DueAt takes a grant out of the index, held or not.
	updateGrant(t, s, "g-1", func(g *store.Grant) { g.DueAt = time.Time{} })
	updateGrant(t, s, "g-3", func(g *store.Grant) { g.DueAt = time.Time{}; g.State = store.GrantRevoked })
	wantIDs(t, "claim(t0+1000h)", claim(t, s, at(1000*time.Hour), 10, time.Hour), "g-2")

	// An unclaimed grant whose DueAt moves earlier is found at its new time.
	mustCommit(t, s, createGrants(dueGrant("g-4", at(time.Hour))))
	updateGrant(t, s, "g-4", func(g *store.Grant) { g.DueAt = at(-time.Hour) })
	wantIDs(t, "claim(t0) after g-4 moved", claim(t, s, t0, 10, time.Hour), "g-4")
	// Moving it later un-dues it.
	updateGrant(t, s, "g-4", func(g *store.Grant) { g.DueAt = at(2 * time.Hour) })
	wantIDs(t, "claim(t0+90m) after g-4 moved later", claim(t, s, at(90*time.Minute), 10, time.Minute))
	wantIDs(t, "claim(t0+2h)", claim(t, s, at(2*time.Hour), 10, time.Minute), "g-4")
}

// ---- NextDue ----

var nextDueTests = []subtest{
	{"GrantsRequestsAndHolds", testNextDue},
}

func wantNextDue(t *testing.T, s store.Store, want time.Time, wantOK bool) {
	t.Helper()
	got, ok, err := s.NextDue(t.Context())
	if err != nil {
		t.Fatalf("NextDue: %v", err)
	}
	if ok != wantOK || ok && !ms(got).Equal(ms(want)) {
		t.Fatalf("NextDue = %v, %v; want %v, %v", got, ok, want, wantOK)
	}
}

func testNextDue(t *testing.T, s store.Store) {
	wantNextDue(t, s, time.Time{}, false)
	mustCommit(t, s, createGrants(newGrant("g-nodue", "U1", "B1", t0, store.GrantActive)))
	wantNextDue(t, s, time.Time{}, false)

	mustCommit(t, s, createGrants(dueGrant("g-1", at(5*time.Second))))
	wantNextDue(t, s, at(5*time.Second), true)

	// Non-pending requests do not count; pending ones do.
	approved := newRequest("r-approved", "U1", t0, store.RequestApproved)
	approved.PendingUntil = at(time.Second)
	mustCommit(t, s, createReqs(approved))
	wantNextDue(t, s, at(5*time.Second), true)
	pending := newRequest("r-pending", "U1", t0, store.RequestPending)
	pending.PendingUntil = at(3 * time.Second)
	mustCommit(t, s, createReqs(pending))
	wantNextDue(t, s, at(3*time.Second), true)
	updateRequest(t, s, "r-pending", func(r *store.Request) { r.State = store.RequestApproved })
	wantNextDue(t, s, at(5*time.Second), true)

	// A claimed grant counts at its hidden-until time.
	wantIDs(t, "claim", claim(t, s, at(5*time.Second), 10, time.Minute), "g-1")
	wantNextDue(t, s, at(5*time.Second+time.Minute), true)
	mustCommit(t, s, createGrants(dueGrant("g-2", at(30*time.Second))))
	wantNextDue(t, s, at(30*time.Second), true)
	updateGrant(t, s, "g-2", func(g *store.Grant) { g.DueAt = time.Time{} })
	wantNextDue(t, s, at(5*time.Second+time.Minute), true)
	updateGrant(t, s, "g-1", func(g *store.Grant) { g.DueAt = time.Time{} })
	wantNextDue(t, s, time.Time{}, false)

	// Sub-second precision is kept (at least milliseconds).
	mustCommit(t, s, createGrants(dueGrant("g-3", at(1234*time.Millisecond))))
	wantNextDue(t, s, at(1234*time.Millisecond), true)
}
