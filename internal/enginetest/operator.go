package enginetest

import (
	"errors"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/store"
)

// testOperatorRevoke: an operator (the admin CLI) ends grants whoever holds them, through the same lease
// and provider path as a release, and each act is an audit event naming the operator.
func testOperatorRevoke(t *testing.T, e *env) {
	first := e.approved(alice, "db", 10*time.Minute)
	e.clock.Advance(time.Minute)
	second := e.approved(alice, "db", 30*time.Minute)
	a := grants.Assignment{Principal: alice, Target: map[string]string{"db": "main"}}

	// Refusals change nothing.
	before := e.auditLen()
	if _, err := e.mgr.OperatorRevoke(e.ctx, first.ID, "ann", "", nil); !errors.Is(err, grants.ErrNoReason) {
		t.Fatalf("revoke without a reason: %v", err)
	}
	if _, err := e.mgr.OperatorRevoke(e.ctx, "g-unknown", "ann", "x", nil); !errors.Is(err, grants.ErrNotFound) {
		t.Fatalf("revoke of an unknown grant: %v", err)
	}
	if e.auditLen() != before || e.grant(first.ID).State != store.GrantActive {
		t.Fatal("a refused operator revoke changed something")
	}

	// The first lease is covered by the second: it ends, the access stays.
	g, err := e.mgr.OperatorRevoke(e.ctx, first.ID, "ann", "INC-5 over", map[string]string{"via": "cli", "reason": "ignored: the operator's reason wins"})
	if err != nil || g.State != store.GrantRevoked || g.CoveredBy != second.ID || g.EndedBy != "cli:ann" || g.EndReason != "revoked_by_operator" {
		t.Fatalf("operator revoke of a covered lease = %+v, %v", g, err)
	}
	if len(e.fake.Calls("revoke")) != 0 || !e.fake.Present(a) {
		t.Fatal("revoking a covered lease removed access another lease still covers")
	}
	ev := e.pub.last(grants.EventOperatorRevoked)
	if ev.Actor != "cli:ann" || ev.GrantID != first.ID || ev.Details["reason"] != "INC-5 over" || ev.Details["operator"] != "ann" ||
		ev.Details["via"] != "cli" || ev.Details["previous_state"] != string(store.GrantActive) {
		t.Fatalf("operator event = %+v", ev)
	}

	// The provider fails once: the grant is ended and retried like any revocation, the error is returned.
	e.fake.FailNext("revoke", providerfake.ErrUnavailable, 1)
	g, err = e.mgr.OperatorRevoke(e.ctx, second.ID, "ann", "leaver", nil)
	if err == nil || g.State != store.GrantRevoking || g.Attempts != 1 || !e.fake.Present(a) {
		t.Fatalf("operator revoke with a failing provider = %+v, %v; want revoking, attempt 1, error", g, err)
	}
	// Revoking it again retries now, and that attempt is recorded too.
	g, err = e.mgr.OperatorRevoke(e.ctx, second.ID, "bo", "retry", nil)
	if err != nil || g.State != store.GrantRevoked || e.fake.Present(a) {
		t.Fatalf("operator retry = %+v, %v", g, err)
	}
	if ev := e.pub.last(grants.EventOperatorRevoked); ev.Actor != "cli:bo" || ev.Details["previous_state"] != string(store.GrantRevoking) {
		t.Fatalf("retry event = %+v", ev)
	}
	if _, err := e.mgr.OperatorRevoke(e.ctx, second.ID, "ann", "again", nil); !errors.Is(err, grants.ErrNotActive) {
		t.Fatalf("revoke of an ended grant: %v", err)
	}
	e.auditLen() // the chain still verifies
}

// last returns the newest published event of type typ (zero if none).
func (r *recorder) last(typ string) store.AuditEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Type == typ {
			return r.events[i]
		}
	}
	return store.AuditEvent{}
}
