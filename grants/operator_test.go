package grants_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/internal/enginetest"
	"github.com/jitbot/jitbot/store"
)

// testOperatorRevoke: an operator (the admin CLI) ends grants whoever holds them, through the same lease
// and provider path as a release, and each act is an audit event naming the operator.
func testOperatorRevoke(t *testing.T, e *enginetest.Env) {
	first := e.Approved(alice, "db", 10*time.Minute)
	e.Clock.Advance(time.Minute)
	second := e.Approved(alice, "db", 30*time.Minute)
	a := grants.Assignment{Principal: alice, Target: map[string]string{"db": "main"}}

	// Refusals change nothing.
	before := e.AuditLen()
	if _, err := e.Mgr.OperatorRevoke(e.Ctx, first.ID, "ann", "", nil); !errors.Is(err, grants.ErrNoReason) {
		t.Fatalf("revoke without a reason: %v", err)
	}
	if _, err := e.Mgr.OperatorRevoke(e.Ctx, "g-unknown", "ann", "x", nil); !errors.Is(err, grants.ErrNotFound) {
		t.Fatalf("revoke of an unknown grant: %v", err)
	}
	if e.AuditLen() != before || e.Grant(first.ID).State != store.GrantActive {
		t.Fatal("a refused operator revoke changed something")
	}

	// The first lease is covered by the second: it ends, the access stays.
	g, err := e.Mgr.OperatorRevoke(e.Ctx, first.ID, "ann", "INC-5 over", map[string]string{"via": "cli", "reason": "ignored: the operator's reason wins"})
	if err != nil || g.State != store.GrantRevoked || g.CoveredBy != second.ID || g.EndedBy != "cli:ann" || g.EndReason != "revoked_by_operator" {
		t.Fatalf("operator revoke of a covered lease = %+v, %v", g, err)
	}
	if len(e.Fake.Calls("revoke")) != 0 || !e.Fake.Present(a) {
		t.Fatal("revoking a covered lease removed access another lease still covers")
	}
	ev := e.Pub.Last(grants.EventOperatorRevoked)
	if ev.Actor != "cli:ann" || ev.GrantID != first.ID || ev.Details["reason"] != "INC-5 over" || ev.Details["operator"] != "ann" ||
		ev.Details["via"] != "cli" || ev.Details["previous_state"] != string(store.GrantActive) {
		t.Fatalf("operator event = %+v", ev)
	}

	// The provider fails once: the grant is ended and retried like any revocation, the error is returned.
	e.Fake.FailNext("revoke", providerfake.ErrUnavailable, 1)
	g, err = e.Mgr.OperatorRevoke(e.Ctx, second.ID, "ann", "leaver", nil)
	if err == nil || g.State != store.GrantRevoking || g.Attempts != 1 || !e.Fake.Present(a) {
		t.Fatalf("operator revoke with a failing provider = %+v, %v; want revoking, attempt 1, error", g, err)
	}
	// Revoking it again retries now, and that attempt is recorded too.
	g, err = e.Mgr.OperatorRevoke(e.Ctx, second.ID, "bo", "retry", nil)
	if err != nil || g.State != store.GrantRevoked || e.Fake.Present(a) {
		t.Fatalf("operator retry = %+v, %v", g, err)
	}
	if ev := e.Pub.Last(grants.EventOperatorRevoked); ev.Actor != "cli:bo" || ev.Details["previous_state"] != string(store.GrantRevoking) {
		t.Fatalf("retry event = %+v", ev)
	}
	if _, err := e.Mgr.OperatorRevoke(e.Ctx, second.ID, "ann", "again", nil); !errors.Is(err, grants.ErrNotActive) {
		t.Fatalf("revoke of an ended grant: %v", err)
	}
	e.AuditLen() // the chain still verifies
}
