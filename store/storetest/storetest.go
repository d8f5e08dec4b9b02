// Package storetest is the conformance suite every store.Store implementation runs:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := mystore.Open(...)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite uses only the store.Store interface. Each subtest calls newStore once for a fresh, empty store
// that no other subtest sees; newStore owns the store's cleanup (the suite never calls Close). Subtests do not
// run in parallel with each other. Lock and MarkSeen tests use the store's own clock with short TTLs and poll
// with deadlines; no test asserts how long anything took.
package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
)

// Run runs the whole conformance suite against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	groups := []struct {
		name  string
		tests []subtest
	}{
		{"Commit", commitTests},
		{"Get", getTests},
		{"ListRequests", listRequestTests},
		{"DueRequests", dueRequestTests},
		{"ListGrants", listGrantTests},
		{"ClaimDueGrants", claimTests},
		{"NextDue", nextDueTests},
		{"Concurrency", concurrencyTests},
		{"Locks", lockTests},
		{"Audit", auditTests},
		{"MarkSeen", markSeenTests},
		{"Counters", counterTests},
		{"Context", contextTests},
		{"APITokens", apiTokenTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, st := range g.tests {
				t.Run(st.name, func(t *testing.T) {
					st.fn(t, newStore(t))
				})
			}
		})
	}
}

type subtest struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// t0 is the suite's reference instant for record times and the now passed to DueRequests/ClaimDueGrants.
// It is whole seconds so that offsets in milliseconds stay exact in any store that keeps ms precision.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func newRequest(id, requester string, created time.Time, state store.RequestState) *store.Request {
	return &store.Request{
		ID:                id,
		Requester:         requester,
		Role:              "db-admin",
		Duration:          time.Hour,
		Reason:            "incident " + id,
		State:             state,
		RequiredApprovals: 1,
		CreatedAt:         created,
		PendingUntil:      created.Add(30 * time.Minute),
	}
}

func newGrant(id, user, binding string, created time.Time, state store.GrantState) *store.Grant {
	return &store.Grant{
		ID:          id,
		RequestID:   "req-of-" + id,
		UserID:      user,
		Role:        "db-admin",
		Provider:    "aws-prod",
		Principal:   user + "@example.com",
		Target:      map[string]string{"account": "123456789012"},
		BindingKey:  binding,
		State:       state,
		Duration:    time.Hour,
		MaxDuration: 4 * time.Hour,
		CreatedAt:   created,
	}
}

func event(typ, requestID string) store.AuditEvent {
	return store.AuditEvent{Type: typ, At: t0, Actor: "U-actor", RequestID: requestID}
}

func createReqs(rs ...*store.Request) store.Batch {
	var b store.Batch
	for _, r := range rs {
		b.Requests = append(b.Requests, store.RequestPut{Request: r})
	}
	return b
}

func createGrants(gs ...*store.Grant) store.Batch {
	var b store.Batch
	for _, g := range gs {
		b.Grants = append(b.Grants, store.GrantPut{Grant: g})
	}
	return b
}

func mustCommit(t *testing.T, s store.Store, b store.Batch) {
	t.Helper()
	if err := s.Commit(t.Context(), b); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func mustGetRequest(t *testing.T, s store.Store, id string) store.Request {
	t.Helper()
	r, err := s.GetRequest(t.Context(), id)
	if err != nil {
		t.Fatalf("GetRequest(%q): %v", id, err)
	}
	return r
}

func mustGetGrant(t *testing.T, s store.Store, id string) store.Grant {
	t.Helper()
	g, err := s.GetGrant(t.Context(), id)
	if err != nil {
		t.Fatalf("GetGrant(%q): %v", id, err)
	}
	return g
}

// updateRequest re-reads id, applies change and commits it from the version it read.
func updateRequest(t *testing.T, s store.Store, id string, change func(r *store.Request)) store.Request {
	t.Helper()
	r := mustGetRequest(t, s, id)
	prev := r.Version
	change(&r)
	mustCommit(t, s, store.Batch{Requests: []store.RequestPut{{Request: &r, PrevVersion: prev}}})
	return r
}

func updateGrant(t *testing.T, s store.Store, id string, change func(g *store.Grant)) store.Grant {
	t.Helper()
	g := mustGetGrant(t, s, id)
	prev := g.Version
	change(&g)
	mustCommit(t, s, store.Batch{Grants: []store.GrantPut{{Grant: &g, PrevVersion: prev}}})
	return g
}

func wantNotFoundRequest(t *testing.T, s store.Store, id string) {
	t.Helper()
	if _, err := s.GetRequest(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetRequest(%q) err = %v, want ErrNotFound (record must not exist)", id, err)
	}
}

func wantNotFoundGrant(t *testing.T, s store.Store, id string) {
	t.Helper()
	if _, err := s.GetGrant(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetGrant(%q) err = %v, want ErrNotFound (record must not exist)", id, err)
	}
}

func wantErrIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: err = %v, want errors.Is(err, %v)", what, err, target)
	}
}

func requestIDs(rs []store.Request) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	return ids
}

func grantIDs(gs []store.Grant) []string {
	ids := make([]string, len(gs))
	for i, g := range gs {
		ids[i] = g.ID
	}
	return ids
}

func wantIDs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// wantIDSet compares ignoring order.
func wantIDSet(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	wantIDs(t, what+" (any order)", g, w...)
}

func listReqs(t *testing.T, s store.Store, q store.RequestQuery) []string {
	t.Helper()
	rs, err := s.ListRequests(t.Context(), q)
	if err != nil {
		t.Fatalf("ListRequests(%+v): %v", q, err)
	}
	return requestIDs(rs)
}

func listGrants(t *testing.T, s store.Store, q store.GrantQuery) []string {
	t.Helper()
	gs, err := s.ListGrants(t.Context(), q)
	if err != nil {
		t.Fatalf("ListGrants(%+v): %v", q, err)
	}
	for _, g := range gs {
		if q.UserID != "" && g.UserID != q.UserID ||
			q.BindingKey != "" && (g.BindingKey != q.BindingKey || !slices.Contains(store.LiveGrantStates, g.State)) ||
			len(q.States) > 0 && !slices.Contains(q.States, g.State) {
			t.Fatalf("ListGrants(%+v) returned non-matching grant %+v", q, g)
		}
	}
	return grantIDs(gs)
}

func claim(t *testing.T, s store.Store, now time.Time, limit int, hold time.Duration) []string {
	t.Helper()
	gs, err := s.ClaimDueGrants(t.Context(), now, limit, hold)
	if err != nil {
		t.Fatalf("ClaimDueGrants(%v, %d, %v): %v", now, limit, hold, err)
	}
	return grantIDs(gs)
}

func readAudit(t *testing.T, s store.Store, after uint64, limit int) []store.AuditRecord {
	t.Helper()
	recs, err := s.ReadAudit(t.Context(), after, limit)
	if err != nil {
		t.Fatalf("ReadAudit(%d, %d): %v", after, limit, err)
	}
	return recs
}

// ---- normalisation for round-trip comparisons: ms precision, UTC, nil == empty ----

func ms(t time.Time) time.Time { return t.Truncate(time.Millisecond).UTC() }

func normMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func normDecision(d store.Decision) store.Decision {
	d.At = ms(d.At)
	return d
}

func normRequest(r store.Request) store.Request {
	if len(r.Approvals) == 0 {
		r.Approvals = nil
	} else {
		as := make([]store.Decision, len(r.Approvals))
		for i, a := range r.Approvals {
			as[i] = normDecision(a)
		}
		r.Approvals = as
	}
	if r.Denial != nil {
		d := normDecision(*r.Denial)
		r.Denial = &d
	}
	r.CreatedAt, r.PendingUntil, r.DecidedAt = ms(r.CreatedAt), ms(r.PendingUntil), ms(r.DecidedAt)
	r.Meta = normMap(r.Meta)
	return r
}

func normGrant(g store.Grant) store.Grant {
	g.Target, g.Meta = normMap(g.Target), normMap(g.Meta)
	g.CreatedAt, g.ActivatedAt, g.ExpiresAt = ms(g.CreatedAt), ms(g.ActivatedAt), ms(g.ExpiresAt)
	g.EndedAt, g.RevokedAt, g.DueAt = ms(g.EndedAt), ms(g.RevokedAt), ms(g.DueAt)
	return g
}

func normEvent(e store.AuditEvent) store.AuditEvent {
	e.At = ms(e.At)
	e.Details = normMap(e.Details)
	return e
}

func wantEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s mismatch:\n got: %s\nwant: %s", what, dump(got), dump(want))
	}
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}

// poll calls try until it reports done, failing the test after a generous deadline.
func poll(t *testing.T, what string, interval time.Duration, try func() (done bool)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !try() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after 10s", what)
		}
		time.Sleep(interval)
	}
}
