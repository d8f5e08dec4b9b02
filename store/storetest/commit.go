package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
)

var commitTests = []subtest{
	{"CreateSetsVersion1", testCreateSetsVersion},
	{"CreateExistingConflictsWritesNothing", testCreateExistingConflict},
	{"UpdateBumpsVersion", testUpdateBumpsVersion},
	{"StalePrevVersionConflicts", testStalePrevVersion},
	{"UpdateUnknownIDFails", testUpdateUnknown},
	{"BatchAtomicity", testBatchAtomicity},
	{"AuditOnlyBatch", testAuditOnlyBatch},
	{"EmptyIDInvalid", testEmptyIDInvalid},
	{"MalformedBatchesInvalid", testMalformedBatches},
}

func testCreateSetsVersion(t *testing.T, s store.Store) {
	r := newRequest("req-1", "U1", at(0), store.RequestPending)
	g := newGrant("grant-1", "U1", "B1", at(0), store.GrantActivating)
	mustCommit(t, s, store.Batch{
		Requests: []store.RequestPut{{Request: r}},
		Grants:   []store.GrantPut{{Grant: g}},
	})
	if r.Version != 1 || g.Version != 1 {
		t.Fatalf("after create: request.Version = %d, grant.Version = %d, want 1 and 1", r.Version, g.Version)
	}
	if v := mustGetRequest(t, s, "req-1").Version; v != 1 {
		t.Fatalf("stored request version = %d, want 1", v)
	}
	if v := mustGetGrant(t, s, "grant-1").Version; v != 1 {
		t.Fatalf("stored grant version = %d, want 1", v)
	}
}

func testCreateExistingConflict(t *testing.T, s store.Store) {
	orig := newRequest("req-1", "U1", at(0), store.RequestPending)
	origGrant := newGrant("grant-1", "U1", "B1", at(0), store.GrantActive)
	mustCommit(t, s, store.Batch{
		Requests: []store.RequestPut{{Request: orig}},
		Grants:   []store.GrantPut{{Grant: origGrant}},
		Audit:    []store.AuditEvent{event(store.EventRequested, "req-1")},
	})

	// Request id collision: the new request, the new grant and the audit events must not be written.
	dup := newRequest("req-1", "U2", at(time.Minute), store.RequestPending)
	dup.Reason = "overwritten?"
	err := s.Commit(t.Context(), store.Batch{
		Requests: []store.RequestPut{
			{Request: newRequest("req-2", "U2", at(time.Minute), store.RequestPending)},
			{Request: dup},
		},
		Grants: []store.GrantPut{{Grant: newGrant("grant-2", "U2", "B2", at(time.Minute), store.GrantActivating)}},
		Audit:  []store.AuditEvent{event(store.EventRequested, "req-2"), event(store.EventBreakGlass, "req-2")},
	})
	wantErrIs(t, "create over existing request id", err, store.ErrConflict)
	wantNotFoundRequest(t, s, "req-2")
	wantNotFoundGrant(t, s, "grant-2")

	// Grant id collision, with the request put listed first.
	err = s.Commit(t.Context(), store.Batch{
		Requests: []store.RequestPut{{Request: newRequest("req-3", "U3", at(time.Minute), store.RequestPending)}},
		Grants:   []store.GrantPut{{Grant: newGrant("grant-1", "U3", "B3", at(time.Minute), store.GrantActivating)}},
		Audit:    []store.AuditEvent{event(store.EventRequested, "req-3")},
	})
	wantErrIs(t, "create over existing grant id", err, store.ErrConflict)
	wantNotFoundRequest(t, s, "req-3")

	got := mustGetRequest(t, s, "req-1")
	if got.Reason != orig.Reason || got.Requester != "U1" || got.Version != 1 {
		t.Fatalf("existing request was modified by a conflicting create: %+v", got)
	}
	if g := mustGetGrant(t, s, "grant-1"); g.UserID != "U1" || g.BindingKey != "B1" || g.Version != 1 {
		t.Fatalf("existing grant was modified by a conflicting create: %+v", g)
	}
	if recs := readAudit(t, s, 0, 0); len(recs) != 1 || recs[0].Event.RequestID != "req-1" {
		t.Fatalf("audit log after conflicting batches has %d records (%+v), want only the first batch's 1", len(recs), recs)
	}
	// The failed batches must not have touched the indexes either.
	wantIDs(t, "ListRequests(U2)", listReqs(t, s, store.RequestQuery{Requester: "U2"}))
	wantIDs(t, "ListRequests(pending)", listReqs(t, s, store.RequestQuery{State: store.RequestPending}), "req-1")
	wantIDs(t, "ListGrants(U2)", listGrants(t, s, store.GrantQuery{UserID: "U2"}))
	wantIDs(t, "ListGrants(U3)", listGrants(t, s, store.GrantQuery{UserID: "U3"}))
}

func testUpdateBumpsVersion(t *testing.T, s store.Store) {
	r := newRequest("req-1", "U1", at(0), store.RequestPending)
	g := newGrant("grant-1", "U1", "B1", at(0), store.GrantActivating)
	mustCommit(t, s, store.Batch{Requests: []store.RequestPut{{Request: r}}, Grants: []store.GrantPut{{Grant: g}}})

	r.State = store.RequestApproved
	r.GrantID = "grant-1"
	if err := s.Commit(t.Context(), store.Batch{Requests: []store.RequestPut{{Request: r, PrevVersion: 1}}}); err != nil {
		t.Fatalf("update with PrevVersion 1: %v", err)
	}
	if r.Version != 2 {
		t.Fatalf("request.Version after update = %d, want 2", r.Version)
	}
	got := mustGetRequest(t, s, "req-1")
	if got.Version != 2 || got.State != store.RequestApproved || got.GrantID != "grant-1" {
		t.Fatalf("stored request after update = %+v, want version 2, approved, grant-1", got)
	}

	for want := int64(2); want <= 4; want++ {
		g.Attempts++
		if err := s.Commit(t.Context(), store.Batch{Grants: []store.GrantPut{{Grant: g, PrevVersion: want - 1}}}); err != nil {
			t.Fatalf("grant update from version %d: %v", want-1, err)
		}
		if g.Version != want {
			t.Fatalf("grant.Version = %d, want %d", g.Version, want)
		}
	}
	if got := mustGetGrant(t, s, "grant-1"); got.Version != 4 || got.Attempts != 3 {
		t.Fatalf("stored grant = version %d attempts %d, want 4 and 3", got.Version, got.Attempts)
	}
}

func testStalePrevVersion(t *testing.T, s store.Store) {
	mustCommit(t, s, createReqs(newRequest("req-1", "U1", at(0), store.RequestPending)))
	mustCommit(t, s, createGrants(newGrant("grant-1", "U1", "B1", at(0), store.GrantActive)))
	updateRequest(t, s, "req-1", func(r *store.Request) { r.Reason = "second" })
	updateGrant(t, s, "grant-1", func(g *store.Grant) { g.LastError = "second" })

	stale := newRequest("req-1", "U1", at(0), store.RequestDenied)
	stale.Reason = "stale writer"
	err := s.Commit(t.Context(), store.Batch{Requests: []store.RequestPut{{Request: stale, PrevVersion: 1}}})
	wantErrIs(t, "request update with stale PrevVersion", err, store.ErrConflict)
	// A PrevVersion ahead of the stored one is just as wrong.
	err = s.Commit(t.Context(), store.Batch{Requests: []store.RequestPut{{Request: stale, PrevVersion: 3}}})
	wantErrIs(t, "request update with future PrevVersion", err, store.ErrConflict)
	if got := mustGetRequest(t, s, "req-1"); got.Version != 2 || got.Reason != "second" || got.State != store.RequestPending {
		t.Fatalf("request changed by stale writes: %+v", got)
	}
	wantIDs(t, "ListRequests(pending)", listReqs(t, s, store.RequestQuery{State: store.RequestPending}), "req-1")

	staleG := newGrant("grant-1", "U1", "B1", at(0), store.GrantRevoked)
	err = s.Commit(t.Context(), store.Batch{Grants: []store.GrantPut{{Grant: staleG, PrevVersion: 1}}})
	wantErrIs(t, "grant update with stale PrevVersion", err, store.ErrConflict)
	if got := mustGetGrant(t, s, "grant-1"); got.Version != 2 || got.LastError != "second" || got.State != store.GrantActive {
		t.Fatalf("grant changed by a stale write: %+v", got)
	}
	wantIDs(t, "ListGrants(B1)", listGrants(t, s, store.GrantQuery{BindingKey: "B1"}), "grant-1")
}

func testUpdateUnknown(t *testing.T, s store.Store) {
	err := s.Commit(t.Context(), store.Batch{
		Requests: []store.RequestPut{{Request: newRequest("req-x", "U1", at(0), store.RequestPending), PrevVersion: 1}},
		Audit:    []store.AuditEvent{event(store.EventApproved, "req-x")},
	})
	if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of unknown request: err = %v, want ErrConflict or ErrNotFound", err)
	}
	wantNotFoundRequest(t, s, "req-x")
	err = s.Commit(t.Context(), store.Batch{
		Grants: []store.GrantPut{{Grant: newGrant("grant-x", "U1", "B1", at(0), store.GrantActive), PrevVersion: 3}},
	})
	if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of unknown grant: err = %v, want ErrConflict or ErrNotFound", err)
	}
	wantNotFoundGrant(t, s, "grant-x")
	if recs := readAudit(t, s, 0, 0); len(recs) != 0 {
		t.Fatalf("failed batch appended %d audit records", len(recs))
	}
}

func testBatchAtomicity(t *testing.T, s store.Store) {
	r := newRequest("req-1", "U1", at(0), store.RequestPending)
	g := newGrant("grant-1", "U1", "B1", at(0), store.GrantActivating)
	mustCommit(t, s, store.Batch{Requests: []store.RequestPut{{Request: r}}, Grants: []store.GrantPut{{Grant: g}}})

	// A whole approval step in one batch: request update + grant update + a new grant + audit events.
	r.State = store.RequestApproved
	r.GrantID = "grant-1"
	g.State = store.GrantActive
	g2 := newGrant("grant-2", "U1", "B1", at(time.Second), store.GrantActivating)
	mustCommit(t, s, store.Batch{
		Requests: []store.RequestPut{{Request: r, PrevVersion: 1}},
		Grants:   []store.GrantPut{{Grant: g, PrevVersion: 1}, {Grant: g2}},
		Audit:    []store.AuditEvent{event(store.EventApproved, "req-1"), event(store.EventGranted, "req-1")},
	})
	if got := mustGetRequest(t, s, "req-1"); got.Version != 2 || got.State != store.RequestApproved {
		t.Fatalf("request after batch = %+v", got)
	}
	if got := mustGetGrant(t, s, "grant-1"); got.Version != 2 || got.State != store.GrantActive {
		t.Fatalf("grant after batch = %+v", got)
	}
	if got := mustGetGrant(t, s, "grant-2"); got.Version != 1 {
		t.Fatalf("new grant after batch = %+v", got)
	}
	if recs := readAudit(t, s, 0, 0); len(recs) != 2 {
		t.Fatalf("audit after batch: %d records, want 2", len(recs))
	}

	// The same kind of batch where only the last put is stale: nothing may land.
	r2 := mustGetRequest(t, s, "req-1")
	r2.State = store.RequestCancelled
	g3 := newGrant("grant-3", "U1", "B1", at(2*time.Second), store.GrantActivating)
	staleG := mustGetGrant(t, s, "grant-1")
	staleG.State = store.GrantRevoking
	err := s.Commit(t.Context(), store.Batch{
		Requests: []store.RequestPut{{Request: &r2, PrevVersion: 2}},
		Grants:   []store.GrantPut{{Grant: g3}, {Grant: &staleG, PrevVersion: 1}},
		Audit:    []store.AuditEvent{event(store.EventCancelled, "req-1"), event(store.EventReleased, "req-1")},
	})
	wantErrIs(t, "batch with one stale put", err, store.ErrConflict)
	if got := mustGetRequest(t, s, "req-1"); got.Version != 2 || got.State != store.RequestApproved {
		t.Fatalf("request written by a failed batch: %+v", got)
	}
	if got := mustGetGrant(t, s, "grant-1"); got.Version != 2 || got.State != store.GrantActive {
		t.Fatalf("grant written by a failed batch: %+v", got)
	}
	wantNotFoundGrant(t, s, "grant-3")
	if recs := readAudit(t, s, 0, 0); len(recs) != 2 {
		t.Fatalf("failed batch appended audit records: now %d, want 2", len(recs))
	}
	wantIDs(t, "ListGrants(B1)", listGrants(t, s, store.GrantQuery{BindingKey: "B1"}), "grant-2", "grant-1")
	wantIDs(t, "ListGrants(revoking)", listGrants(t, s, store.GrantQuery{States: []store.GrantState{store.GrantRevoking}}))
}

func testAuditOnlyBatch(t *testing.T, s store.Store) {
	mustCommit(t, s, store.Batch{Audit: []store.AuditEvent{event("test-event", "")}})
	recs := readAudit(t, s, 0, 0)
	if len(recs) != 1 || recs[0].Seq != 1 || recs[0].Event.Type != "test-event" {
		t.Fatalf("audit-only batch: records = %+v", recs)
	}
	// An empty batch is a no-op, not an error.
	mustCommit(t, s, store.Batch{})
}

func testEmptyIDInvalid(t *testing.T, s store.Store) {
	err := s.Commit(t.Context(), store.Batch{
		Requests: []store.RequestPut{{Request: newRequest("req-ok", "U1", at(0), store.RequestPending)}},
		Grants:   []store.GrantPut{{Grant: newGrant("", "U1", "B1", at(0), store.GrantActive)}},
	})
	wantErrIs(t, "grant with empty id", err, store.ErrInvalid)
	wantNotFoundRequest(t, s, "req-ok")
	err = s.Commit(t.Context(), createReqs(newRequest("", "U1", at(0), store.RequestPending)))
	wantErrIs(t, "request with empty id", err, store.ErrInvalid)
}

// Both stores refuse the same malformed batches, and write nothing of them.
func testMalformedBatches(t *testing.T, s store.Store) {
	ok := store.AuditEvent{Type: "requested", At: t0, Actor: "U1"}
	cases := map[string]store.Batch{
		"same request twice": {Requests: []store.RequestPut{{Request: newRequest("dup", "U1", at(0), store.RequestPending)},
			{Request: newRequest("dup", "U1", at(0), store.RequestPending)}}, Audit: []store.AuditEvent{ok}},
		"same grant twice": {Grants: []store.GrantPut{{Grant: newGrant("dupg", "U1", "B1", at(0), store.GrantActive)},
			{Grant: newGrant("dupg", "U1", "B1", at(0), store.GrantActive)}}, Audit: []store.AuditEvent{ok}},
		"negative version": {Requests: []store.RequestPut{{Request: newRequest("neg", "U1", at(0), store.RequestPending), PrevVersion: -1}}},
		"nil grant":        {Grants: []store.GrantPut{{}}},
		"untyped audit event": {Requests: []store.RequestPut{{Request: newRequest("untyped", "U1", at(0), store.RequestPending)}},
			Audit: []store.AuditEvent{{At: t0, Actor: "U1"}}},
	}
	for name, b := range cases {
		wantErrIs(t, name, s.Commit(t.Context(), b), store.ErrInvalid)
	}
	for _, id := range []string{"dup", "neg", "untyped"} {
		wantNotFoundRequest(t, s, id)
	}
	wantNotFoundGrant(t, s, "dupg")
	if recs, err := s.ReadAudit(t.Context(), 0, 0); err != nil || len(recs) != 0 {
		t.Fatalf("malformed batches wrote %d audit entries (%v)", len(recs), err)
	}
}

// ---- Get ----

var getTests = []subtest{
	{"UnknownIsNotFound", testGetUnknown},
	{"RequestRoundTrip", testRequestRoundTrip},
	{"GrantRoundTrip", testGrantRoundTrip},
}

func testGetUnknown(t *testing.T, s store.Store) {
	wantNotFoundRequest(t, s, "req-nope")
	wantNotFoundGrant(t, s, "grant-nope")
	// A request id is not a grant id.
	mustCommit(t, s, createReqs(newRequest("shared-1", "U1", at(0), store.RequestPending)))
	wantNotFoundGrant(t, s, "shared-1")
}

// odd is an instant with sub-millisecond digits (below half a millisecond, so truncating and rounding stores
// agree).
func odd(d time.Duration) time.Time {
	return time.Date(2031, 7, 8, 9, 10, 11, 789_123_456, time.FixedZone("X", 5*3600)).Add(d)
}

func testRequestRoundTrip(t *testing.T, s store.Store) {
	full := &store.Request{
		ID:                "req-full",
		Requester:         "U123",
		Role:              "prod-admin",
		Duration:          90*time.Minute + 7*time.Millisecond,
		Reason:            "INC-42: disk full — \"quoted\" \u00e9\u4e16 <tag>&",
		State:             store.RequestApproved,
		RequiredApprovals: 2,
		Approvals: []store.Decision{
			{By: "U7", At: odd(time.Minute), Note: "lgtm"},
			{By: "U8", At: odd(2 * time.Minute)},
		},
		Denial:       &store.Decision{By: "U9", At: odd(3 * time.Minute), Note: "no"},
		CancelledBy:  "U10",
		BreakGlass:   true,
		CreatedAt:    odd(0),
		PendingUntil: odd(time.Hour),
		DecidedAt:    odd(4 * time.Minute),
		GrantID:      "grant-77",
		Meta:         map[string]string{"channel": "C1", "ts": "1712.0001", "empty": ""},
	}
	want := *full
	want.Approvals = []store.Decision{full.Approvals[0], full.Approvals[1]}
	mustCommit(t, s, createReqs(full))
	want.Version = 1
	wantEqual(t, "request round trip", normRequest(mustGetRequest(t, s, "req-full")), normRequest(want))

	// Minimal record: zero times stay zero, absent pointer/slice/map stay empty.
	minimal := &store.Request{ID: "req-min", Requester: "U1", State: store.RequestPending, CreatedAt: t0, PendingUntil: t0}
	mustCommit(t, s, createReqs(minimal))
	got := mustGetRequest(t, s, "req-min")
	if !got.DecidedAt.IsZero() || got.Denial != nil || len(got.Approvals) != 0 || len(got.Meta) != 0 || got.BreakGlass {
		t.Fatalf("minimal request did not round-trip empty fields: %+v", got)
	}
	wantEqual(t, "minimal request round trip", normRequest(got), normRequest(store.Request{
		ID: "req-min", Requester: "U1", State: store.RequestPending, CreatedAt: t0, PendingUntil: t0, Version: 1,
	}))

	// Listing returns the same full records.
	rs, err := s.ListRequests(t.Context(), store.RequestQuery{Requester: "U123"})
	if err != nil || len(rs) != 1 {
		t.Fatalf("ListRequests(U123) = %v, %v", rs, err)
	}
	wantEqual(t, "listed request", normRequest(rs[0]), normRequest(want))
}

func testGrantRoundTrip(t *testing.T, s store.Store) {
	full := &store.Grant{
		ID:          "grant-full",
		RequestID:   "req-full",
		UserID:      "U123",
		Role:        "prod-admin",
		Provider:    "aws-prod",
		Principal:   "alice@example.com",
		Target:      map[string]string{"account": "123456789012", "permission_set": "arn:aws:sso:::permissionSet/x"},
		BindingKey:  "aws-prod/123456789012/x/alice",
		State:       store.GrantRevokeFailed,
		Duration:    time.Hour + time.Millisecond,
		MaxDuration: 8 * time.Hour,
		BreakGlass:  true,
		CreatedAt:   odd(0),
		ActivatedAt: odd(time.Second),
		ExpiresAt:   odd(time.Hour),
		EndedAt:     odd(2 * time.Hour),
		RevokedAt:   odd(3 * time.Hour),
		EndReason:   "expired",
		EndedBy:     "system:sweeper",
		CoveredBy:   "grant-other",
		DueAt:       odd(4 * time.Hour),
		Attempts:    5,
		LastError:   "ThrottlingException: rate exceeded",
		ProviderRef: "op-123",
		Meta:        map[string]string{"k": "v"},
	}
	want := *full
	mustCommit(t, s, createGrants(full))
	want.Version = 1
	wantEqual(t, "grant round trip", normGrant(mustGetGrant(t, s, "grant-full")), normGrant(want))

	minimal := &store.Grant{ID: "grant-min", UserID: "U1", State: store.GrantActivating, CreatedAt: t0}
	mustCommit(t, s, createGrants(minimal))
	got := mustGetGrant(t, s, "grant-min")
	if !got.DueAt.IsZero() || !got.ExpiresAt.IsZero() || !got.ActivatedAt.IsZero() || len(got.Target) != 0 || len(got.Meta) != 0 {
		t.Fatalf("minimal grant did not round-trip empty fields: %+v", got)
	}
	wantEqual(t, "minimal grant round trip", normGrant(got), normGrant(store.Grant{
		ID: "grant-min", UserID: "U1", State: store.GrantActivating, CreatedAt: t0, Version: 1,
	}))

	gs, err := s.ListGrants(t.Context(), store.GrantQuery{UserID: "U123"})
	if err != nil || len(gs) != 1 {
		t.Fatalf("ListGrants(U123) = %v, %v", gs, err)
	}
	wantEqual(t, "listed grant", normGrant(gs[0]), normGrant(want))
	cl, err := s.ClaimDueGrants(t.Context(), odd(5*time.Hour), 10, time.Minute)
	if err != nil || len(cl) != 1 {
		t.Fatalf("ClaimDueGrants = %v, %v", cl, err)
	}
	wantEqual(t, "claimed grant", normGrant(cl[0]), normGrant(want))
}
