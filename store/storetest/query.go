package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
)

// ---- ListRequests ----

var listRequestTests = []subtest{
	{"ByRequesterNewestFirst", testListRequestsByRequester},
	{"PendingIndex", testListRequestsPending},
	{"InvalidQuery", testListRequestsInvalid},
}

// seedRequests creates r1..r5 for U1 (CreatedAt t0+1m..5m) and r6, r7 for U2, in shuffled order and batches.
func seedRequests(t *testing.T, s store.Store) {
	mk := func(id, user string, min int, st store.RequestState) *store.Request {
		return newRequest(id, user, at(time.Duration(min)*time.Minute), st)
	}
	mustCommit(t, s, createReqs(mk("r3", "U1", 3, store.RequestPending), mk("r6", "U2", 6, store.RequestPending)))
	mustCommit(t, s, createReqs(mk("r1", "U1", 1, store.RequestPending)))
	mustCommit(t, s, createReqs(mk("r5", "U1", 5, store.RequestPending), mk("r2", "U1", 2, store.RequestApproved),
		mk("r7", "U2", 7, store.RequestExpired)))
	mustCommit(t, s, createReqs(mk("r4", "U1", 4, store.RequestDenied)))
}

func testListRequestsByRequester(t *testing.T, s store.Store) {
	seedRequests(t, s)
	wantIDs(t, "ListRequests(U1)", listReqs(t, s, store.RequestQuery{Requester: "U1"}), "r5", "r4", "r3", "r2", "r1")
	wantIDs(t, "ListRequests(U1, limit 2)", listReqs(t, s, store.RequestQuery{Requester: "U1", Limit: 2}), "r5", "r4")
	wantIDs(t, "ListRequests(U2)", listReqs(t, s, store.RequestQuery{Requester: "U2"}), "r7", "r6")
	wantIDs(t, "ListRequests(U9)", listReqs(t, s, store.RequestQuery{Requester: "U9"}))
	// A requester id that is a prefix of another must not match it.
	mustCommit(t, s, createReqs(newRequest("r8", "U10", at(8*time.Minute), store.RequestPending)))
	wantIDs(t, "ListRequests(U1) after U10's request", listReqs(t, s, store.RequestQuery{Requester: "U1"}),
		"r5", "r4", "r3", "r2", "r1")
	// State changes keep the request in its requester's list.
	updateRequest(t, s, "r3", func(r *store.Request) { r.State = store.RequestCancelled })
	rs, err := s.ListRequests(t.Context(), store.RequestQuery{Requester: "U1", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "ListRequests(U1, limit 3)", requestIDs(rs), "r5", "r4", "r3")
	if rs[2].State != store.RequestCancelled || rs[2].Version != 2 {
		t.Fatalf("listed r3 = state %s version %d, want cancelled 2", rs[2].State, rs[2].Version)
	}
}

func testListRequestsPending(t *testing.T, s store.Store) {
	seedRequests(t, s)
	pending := store.RequestQuery{State: store.RequestPending}
	wantIDs(t, "ListRequests(pending)", listReqs(t, s, pending), "r6", "r5", "r3", "r1")
	wantIDs(t, "ListRequests(pending, limit 2)", listReqs(t, s, store.RequestQuery{State: store.RequestPending, Limit: 2}), "r6", "r5")

	updateRequest(t, s, "r3", func(r *store.Request) { r.State = store.RequestApproved })
	wantIDs(t, "ListRequests(pending) after r3 approved", listReqs(t, s, pending), "r6", "r5", "r1")
	updateRequest(t, s, "r6", func(r *store.Request) { r.State = store.RequestExpired })
	updateRequest(t, s, "r1", func(r *store.Request) { r.Approvals = append(r.Approvals, store.Decision{By: "U5", At: t0}) })
	wantIDs(t, "ListRequests(pending) after r6 expired, r1 updated", listReqs(t, s, pending), "r5", "r1")
	for _, r := range mustList(t, s, pending) {
		if r.State != store.RequestPending {
			t.Fatalf("pending list returned %s in state %s", r.ID, r.State)
		}
	}
}

func mustList(t *testing.T, s store.Store, q store.RequestQuery) []store.Request {
	t.Helper()
	rs, err := s.ListRequests(t.Context(), q)
	if err != nil {
		t.Fatalf("ListRequests(%+v): %v", q, err)
	}
	return rs
}

func testListRequestsInvalid(t *testing.T, s store.Store) {
	_, err := s.ListRequests(t.Context(), store.RequestQuery{})
	wantErrIs(t, "ListRequests with no selector", err, store.ErrInvalid)
	_, err = s.ListRequests(t.Context(), store.RequestQuery{Requester: "U1", State: store.RequestPending})
	wantErrIs(t, "ListRequests with both selectors", err, store.ErrInvalid)
}

// ---- DueRequests ----

var dueRequestTests = []subtest{
	{"PendingDueOldestFirst", testDueRequests},
	{"BreakGlassReviewReminders", testDueReviews},
}

func testDueRequests(t *testing.T, s store.Store) {
	mk := func(id string, created, until time.Duration, st store.RequestState) *store.Request {
		r := newRequest(id, "U1", at(created), st)
		r.PendingUntil = at(until)
		return r
	}
	mustCommit(t, s, createReqs(
		mk("d4", -10*time.Minute, time.Minute, store.RequestPending),
		mk("d2", -9*time.Minute, -time.Minute, store.RequestPending),
		mk("d5", -8*time.Minute, -3*time.Minute, store.RequestApproved),
	))
	mustCommit(t, s, createReqs(
		mk("d3", -7*time.Minute, 0, store.RequestPending),
		mk("d1", -6*time.Minute, -2*time.Minute, store.RequestPending),
	))
	due := func(now time.Time, limit int) []string {
		t.Helper()
		rs, err := s.DueRequests(t.Context(), now, limit)
		if err != nil {
			t.Fatalf("DueRequests: %v", err)
		}
		for _, r := range rs {
			if r.State != store.RequestPending || r.PendingUntil.After(now) {
				t.Fatalf("DueRequests(%v) returned %s (state %s, until %v)", now, r.ID, r.State, r.PendingUntil)
			}
		}
		return requestIDs(rs)
	}
	wantIDs(t, "DueRequests(t0, 10)", due(t0, 10), "d1", "d2", "d3")
	wantIDs(t, "DueRequests(t0, 2)", due(t0, 2), "d1", "d2")
	wantIDs(t, "DueRequests(t0-90s, 10)", due(at(-90*time.Second), 10), "d1")
	wantIDs(t, "DueRequests(t0-1ms, 10)", due(at(-time.Millisecond), 10), "d1", "d2")
	wantIDs(t, "DueRequests(t0-1h, 10)", due(at(-time.Hour), 10))
	// DueRequests does not change anything: asking again gives the same answer.
	wantIDs(t, "DueRequests(t0, 10) again", due(t0, 10), "d1", "d2", "d3")

	updateRequest(t, s, "d1", func(r *store.Request) { r.State = store.RequestExpired })
	wantIDs(t, "DueRequests after d1 expired", due(t0, 10), "d2", "d3")
	// Moving PendingUntil re-indexes the request.
	updateRequest(t, s, "d4", func(r *store.Request) { r.PendingUntil = at(-5 * time.Minute) })
	wantIDs(t, "DueRequests after d4 moved earlier", due(t0, 10), "d4", "d2", "d3")
	updateRequest(t, s, "d2", func(r *store.Request) { r.PendingUntil = at(time.Hour) })
	wantIDs(t, "DueRequests after d2 moved later", due(t0, 10), "d4", "d3")
}

// ---- ListGrants ----

var listGrantTests = []subtest{
	{"Filters", testListGrantsFilters},
	{"Reindexing", testListGrantsReindex},
	{"InvalidQuery", testListGrantsInvalid},
	{"CountGrants", testCountGrants},
}

func testCountGrants(t *testing.T, s store.Store) {
	ctx := context.Background()
	seedGrants(t, s)
	want := map[store.GrantState]int{store.GrantActive: 2, store.GrantActivating: 1, store.GrantRevoking: 1, store.GrantRevokeFailed: 1}
	for st, n := range want {
		if got, err := s.CountGrants(ctx, st); err != nil || got != n {
			t.Errorf("CountGrants(%s) = %d, %v; want %d", st, got, err, n)
		}
	}
	// Moving g1 out of active changes the counts.
	g1, err := s.GetGrant(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	prev := g1.Version
	g1.State = store.GrantRevoked
	mustCommit(t, s, store.Batch{Grants: []store.GrantPut{{Grant: &g1, PrevVersion: prev}}})
	if got, _ := s.CountGrants(ctx, store.GrantActive); got != 1 {
		t.Errorf("active after revoking g1 = %d, want 1", got)
	}
	if _, err := s.CountGrants(ctx, store.GrantRevoked); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CountGrants(revoked) error = %v, want ErrInvalid", err)
	}
}

// seedGrants creates:
//
//	g1 U1 B1 active         g5 U2 B2 failed
//	g2 U1 B1 revoked        g6 U1 B1 revoke_failed
//	g3 U2 B1 activating     g7 U2 B1 active
//	g4 U1 B2 revoking
//
// with CreatedAt t0+1m .. t0+7m, in shuffled order.
func seedGrants(t *testing.T, s store.Store) {
	mk := func(id, user, binding string, min int, st store.GrantState) *store.Grant {
		return newGrant(id, user, binding, at(time.Duration(min)*time.Minute), st)
	}
	mustCommit(t, s, createGrants(mk("g4", "U1", "B2", 4, store.GrantRevoking), mk("g1", "U1", "B1", 1, store.GrantActive)))
	mustCommit(t, s, createGrants(mk("g7", "U2", "B1", 7, store.GrantActive)))
	mustCommit(t, s, createGrants(mk("g2", "U1", "B1", 2, store.GrantRevoked), mk("g6", "U1", "B1", 6, store.GrantRevokeFailed),
		mk("g3", "U2", "B1", 3, store.GrantActivating)))
	mustCommit(t, s, createGrants(mk("g5", "U2", "B2", 5, store.GrantFailed)))
}

func states(ss ...store.GrantState) []store.GrantState { return ss }

func testListGrantsFilters(t *testing.T, s store.Store) {
	seedGrants(t, s)
	cases := []struct {
		q    store.GrantQuery
		want []string
	}{
		{store.GrantQuery{UserID: "U1"}, []string{"g6", "g4", "g2", "g1"}},
		{store.GrantQuery{UserID: "U2"}, []string{"g7", "g5", "g3"}},
		{store.GrantQuery{UserID: "U9"}, nil},
		{store.GrantQuery{UserID: "U1", Limit: 2}, []string{"g6", "g4"}},
		{store.GrantQuery{BindingKey: "B1"}, []string{"g7", "g6", "g3", "g1"}},
		{store.GrantQuery{BindingKey: "B2"}, []string{"g4"}},
		{store.GrantQuery{BindingKey: "B9"}, nil},
		{store.GrantQuery{BindingKey: "B1", Limit: 3}, []string{"g7", "g6", "g3"}},
		{store.GrantQuery{States: states(store.GrantActive)}, []string{"g7", "g1"}},
		{store.GrantQuery{States: states(store.GrantActivating, store.GrantRevokeFailed)}, []string{"g6", "g3"}},
		{store.GrantQuery{States: store.LiveGrantStates}, []string{"g7", "g6", "g4", "g3", "g1"}},
		{store.GrantQuery{States: store.LiveGrantStates, Limit: 1}, []string{"g7"}},
		{store.GrantQuery{States: states(store.GrantRevoking, store.GrantActive), Limit: 2}, []string{"g7", "g4"}},
		{store.GrantQuery{UserID: "U1", BindingKey: "B1"}, []string{"g6", "g1"}},
		{store.GrantQuery{UserID: "U1", States: states(store.GrantActive)}, []string{"g1"}},
		{store.GrantQuery{UserID: "U1", States: states(store.GrantRevoked)}, []string{"g2"}},
		{store.GrantQuery{UserID: "U2", States: states(store.GrantFailed, store.GrantActive)}, []string{"g7", "g5"}},
		{store.GrantQuery{BindingKey: "B1", States: states(store.GrantActive)}, []string{"g7", "g1"}},
		{store.GrantQuery{UserID: "U2", BindingKey: "B1", States: states(store.GrantActivating)}, []string{"g3"}},
		{store.GrantQuery{UserID: "U2", BindingKey: "B2"}, nil},
		{store.GrantQuery{UserID: "U1", BindingKey: "B1", Limit: 1}, []string{"g6"}},
	}
	for _, c := range cases {
		wantIDs(t, "ListGrants("+dump(c.q)+")", listGrants(t, s, c.q), c.want...)
	}
}

func testListGrantsReindex(t *testing.T, s store.Store) {
	seedGrants(t, s)
	active := store.GrantQuery{States: states(store.GrantActive)}

	updateGrant(t, s, "g1", func(g *store.Grant) { g.State = store.GrantRevoked })
	wantIDs(t, "ListGrants(B1) after g1 revoked", listGrants(t, s, store.GrantQuery{BindingKey: "B1"}), "g7", "g6", "g3")
	wantIDs(t, "ListGrants(active) after g1 revoked", listGrants(t, s, active), "g7")
	wantIDs(t, "ListGrants(U1) after g1 revoked", listGrants(t, s, store.GrantQuery{UserID: "U1"}), "g6", "g4", "g2", "g1")

	updateGrant(t, s, "g3", func(g *store.Grant) { g.State = store.GrantActive })
	wantIDs(t, "ListGrants(active) after g3 active", listGrants(t, s, active), "g7", "g3")
	wantIDs(t, "ListGrants(activating) after g3 active",
		listGrants(t, s, store.GrantQuery{States: states(store.GrantActivating)}))

	updateGrant(t, s, "g4", func(g *store.Grant) { g.State = store.GrantFailed })
	wantIDs(t, "ListGrants(B2) after g4 failed", listGrants(t, s, store.GrantQuery{BindingKey: "B2"}))
	wantIDs(t, "ListGrants(revoking) after g4 failed", listGrants(t, s, store.GrantQuery{States: states(store.GrantRevoking)}))

	// Changing the user or binding of a record moves it between index entries.
	updateGrant(t, s, "g7", func(g *store.Grant) { g.UserID = "U3"; g.BindingKey = "B3" })
	wantIDs(t, "ListGrants(U2) after g7 moved", listGrants(t, s, store.GrantQuery{UserID: "U2"}), "g5", "g3")
	wantIDs(t, "ListGrants(U3) after g7 moved", listGrants(t, s, store.GrantQuery{UserID: "U3"}), "g7")
	wantIDs(t, "ListGrants(B1) after g7 moved", listGrants(t, s, store.GrantQuery{BindingKey: "B1"}), "g6", "g3")
	wantIDs(t, "ListGrants(B3) after g7 moved", listGrants(t, s, store.GrantQuery{BindingKey: "B3"}), "g7")
	wantIDs(t, "ListGrants(active) after g7 moved", listGrants(t, s, active), "g7", "g3")

	// Listed records are current.
	gs, err := s.ListGrants(t.Context(), store.GrantQuery{UserID: "U1", Limit: 1})
	if err != nil || len(gs) != 1 || gs[0].ID != "g6" || gs[0].State != store.GrantRevokeFailed || gs[0].Version != 1 {
		t.Fatalf("ListGrants(U1, 1) = %+v, %v", gs, err)
	}
}

func testListGrantsInvalid(t *testing.T, s store.Store) {
	_, err := s.ListGrants(t.Context(), store.GrantQuery{})
	wantErrIs(t, "ListGrants with no selector", err, store.ErrInvalid)
	_, err = s.ListGrants(t.Context(), store.GrantQuery{Limit: 5})
	wantErrIs(t, "ListGrants with only a limit", err, store.ErrInvalid)
}

// A decided request is due again when its break-glass review reminder is: DueRequests returns it, the
// pending listing does not, and a review (zero ReviewDueAt) takes it out of the due index.
func testDueReviews(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := newRequest("bg1", "U1", at(-10*time.Minute), store.RequestApproved)
	r.BreakGlass, r.ReviewDueAt = true, at(-time.Minute)
	later := newRequest("bg2", "U1", at(-9*time.Minute), store.RequestApproved)
	later.BreakGlass, later.ReviewDueAt = true, at(time.Hour)
	mustCommit(t, s, createReqs(r, later))
	due, err := s.DueRequests(ctx, t0, 10)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs(t, "DueRequests with a review reminder due", requestIDs(due), "bg1")
	pending, err := s.ListRequests(ctx, store.RequestQuery{State: store.RequestPending})
	if err != nil || len(pending) != 0 {
		t.Fatalf("pending listing = %v, %v; want none", requestIDs(pending), err)
	}
	if at, ok, err := s.NextDue(ctx); err != nil || !ok || !at.Equal(r.ReviewDueAt) {
		t.Fatalf("NextDue = %v %v %v, want the review reminder %v", at, ok, err, r.ReviewDueAt)
	}
	got, err := s.GetRequest(ctx, "bg1")
	if err != nil {
		t.Fatal(err)
	}
	prev := got.Version
	got.ReviewDueAt = time.Time{}
	got.Review = &store.Decision{By: "U2", At: t0}
	mustCommit(t, s, store.Batch{Requests: []store.RequestPut{{Request: &got, PrevVersion: prev}}})
	if due, _ := s.DueRequests(ctx, at(2*time.Hour), 10); len(due) != 1 || due[0].ID != "bg2" {
		t.Fatalf("after review, due = %v; want only bg2", requestIDs(due))
	}
}
