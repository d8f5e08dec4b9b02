package azure_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/azure"
	"github.com/jitbot/jitbot/grants/azure/azurefake"
)

// pimClock is a fake clock shared by the adapter and the fake, so that PIM's five-minute removal floor and
// schedule ends are deterministic.
type pimClock struct{ now time.Time }

func (c *pimClock) Now() time.Time          { return c.now }
func (c *pimClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func newPIM(t *testing.T) (*azurefake.Server, *azure.Provider, *pimClock) {
	t.Helper()
	f := newFake(t)
	f.MinActiveDuration = 5 * time.Minute
	clk := &pimClock{now: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	f.Now = clk.Now
	p := newProvider(t, f, func(c *azure.Config) { c.Mode = "pim"; c.Now = clk.Now })
	return f, p, clk
}

// lease returns the assignment of one jitbot lease on binding (same principal and target as base).
func lease(base grants.Assignment, grantID string, expires time.Time) grants.Assignment {
	a := base
	a.GrantID, a.RequestID, a.ExpiresAt = grantID, "r-"+grantID, expires
	return a
}

func instanceEnd(t *testing.T, f *azurefake.Server, a grants.Assignment) time.Time {
	t.Helper()
	in := f.ActiveInstances(rg, a.Principal, readerID)
	if len(in) != 1 {
		t.Fatalf("%d active instances, want 1", len(in))
	}
	if in[0].EndDateTime == nil {
		return time.Time{}
	}
	return *in[0].EndDateTime
}

// TestPIMExtensionReachesAzure: jitbot calls Grant again with the later end when a lease is extended or a
// longer lease overlaps, and with the earlier end when the longer lease ends first. Azure must end the access
// exactly then, not at the first lease's end (before the fix, Grant returned early when an instance existed).
func TestPIMExtensionReachesAzure(t *testing.T) {
	f, p, clk := newPIM(t)
	base := newAssignment("")
	base.BindingKey = "b-" + base.GrantID
	first := lease(base, base.GrantID, clk.now.Add(time.Hour))
	if _, err := p.Grant(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	if end := instanceEnd(t, f, first); !end.Equal(first.ExpiresAt) {
		t.Fatalf("Azure ends the assignment at %s, want %s", end, first.ExpiresAt)
	}
	// Extension of the same lease by 30 minutes.
	clk.Advance(10 * time.Minute)
	extended := first
	extended.ExpiresAt = first.ExpiresAt.Add(30 * time.Minute)
	if _, err := p.Grant(t.Context(), extended); err != nil {
		t.Fatalf("extend: %v", err)
	}
	if end := instanceEnd(t, f, first); !end.Equal(extended.ExpiresAt) {
		t.Fatalf("after the extension Azure ends the assignment at %s, want %s", end, extended.ExpiresAt)
	}
	// Repeating the extension (a retry after a lost answer) changes nothing and makes no new request.
	n := len(f.ScheduleRequests())
	if _, err := p.Grant(t.Context(), extended); err != nil {
		t.Fatal(err)
	}
	if got := len(f.ScheduleRequests()); got != n {
		t.Fatalf("repeating the extension made %d new requests", got-n)
	}
	// An overlapping longer lease of another grant.
	clk.Advance(time.Minute)
	longer := lease(base, "g-longer-"+base.GrantID, clk.now.Add(4*time.Hour))
	if _, err := p.Grant(t.Context(), longer); err != nil {
		t.Fatalf("overlapping grant: %v", err)
	}
	if end := instanceEnd(t, f, first); !end.Equal(longer.ExpiresAt) {
		t.Fatalf("with a longer overlapping lease Azure ends at %s, want %s", end, longer.ExpiresAt)
	}
	// The longer lease is released early: jitbot tells the provider the remaining lease's end.
	clk.Advance(time.Minute)
	if _, err := p.Grant(t.Context(), extended); err != nil {
		t.Fatalf("shorten: %v", err)
	}
	if end := instanceEnd(t, f, first); !end.Equal(extended.ExpiresAt) {
		t.Fatalf("after shortening Azure ends at %s, want %s", end, extended.ExpiresAt)
	}
	var kinds []string
	for _, r := range f.ScheduleRequests() {
		kinds = append(kinds, r.RequestType)
	}
	if fmt.Sprint(kinds) != "[AdminAssign AdminExtend AdminExtend AdminUpdate]" {
		t.Fatalf("requests = %v", kinds)
	}
	// The wire shape of the schedule changes: the schedule they change, and the new end as AfterDateTime.
	sched := f.ActiveInstances(rg, base.Principal, readerID)[0].ScheduleID
	for _, r := range f.Requests() {
		if r.Method != http.MethodPut {
			continue
		}
		var body struct {
			Properties struct {
				RequestType                    string
				TargetRoleAssignmentScheduleID string
				ScheduleInfo                   struct {
					Expiration struct {
						Type        string
						EndDateTime time.Time
					}
				}
			}
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		pr := body.Properties
		if pr.ScheduleInfo.Expiration.Type != "AfterDateTime" || pr.ScheduleInfo.Expiration.EndDateTime.IsZero() {
			t.Errorf("%s: expiration %+v", pr.RequestType, pr.ScheduleInfo.Expiration)
		}
		if (pr.RequestType == "AdminExtend" || pr.RequestType == "AdminUpdate") && pr.TargetRoleAssignmentScheduleID != sched {
			t.Errorf("%s names schedule %q, want %q", pr.RequestType, pr.TargetRoleAssignmentScheduleID, sched)
		}
	}
	// The changed assignment is still jitbot's: revoke removes it.
	if err := p.Revoke(t.Context(), extended); err != nil {
		t.Fatal(err)
	}
	if n := len(f.ActiveInstances(rg, base.Principal, readerID)); n != 0 {
		t.Fatalf("%d instances after revoke", n)
	}
}

// TestPIMCyclesWithAdminAssignmentInBetween: 25 grant/revoke cycles of one binding (one user, role and scope),
// each lease a new grant, with a standing assignment made by an administrator in the middle. Before the fix,
// request names derived from the binding ran out after 16 cycles, and ownership ("did jitbot create this?") was
// decided by a request name that never changed, so the administrator's assignment was removed.
func TestPIMCyclesWithAdminAssignmentInBetween(t *testing.T) {
	f, p, clk := newPIM(t)
	base := newAssignment("")
	base.BindingKey = "b-cycles-" + base.GrantID
	const cycles = 25
	for i := range cycles {
		a := lease(base, fmt.Sprintf("g-cycle-%d-%s", i, base.GrantID), clk.now.Add(time.Hour))
		switch i {
		case 10:
			f.AdminAssign(rg, base.Principal, readerID, nil, "standing access for the on-call lead")
		case 12:
			// Drift reconciliation must not take the administrator's assignment for jitbot's either.
			if owned, err := p.ListOwned(t.Context()); err != nil || len(owned) != 0 {
				t.Fatalf("cycle %d: ListOwned = %+v, %v; want nothing", i, owned, err)
			}
		case 14:
			// The administrator takes the standing assignment away again.
			f.SetInstance(rg, base.Principal, readerID, false, nil)
		}
		if _, err := p.Grant(t.Context(), a); err != nil {
			t.Fatalf("cycle %d: grant: %v", i, err)
		}
		if present, err := p.Check(t.Context(), a); err != nil || !present {
			t.Fatalf("cycle %d: Check = %v, %v", i, present, err)
		}
		clk.Advance(6 * time.Minute) // past PIM's five-minute removal floor
		if err := p.Revoke(t.Context(), a); err != nil {
			t.Fatalf("cycle %d: revoke: %v", i, err)
		}
		want := 0
		if i >= 10 && i < 14 {
			want = 1 // the administrator's standing assignment survives jitbot's revoke
		}
		if n := len(f.ActiveInstances(rg, base.Principal, readerID)); n != want {
			t.Fatalf("cycle %d: %d active instances after revoke, want %d", i, n, want)
		}
		clk.Advance(time.Minute)
	}
	// Every jitbot request had its own name; none was refused as a duplicate.
	for _, r := range f.Requests() {
		if r.Method == http.MethodPut && r.Status >= 400 {
			t.Errorf("PUT %s answered %d %s", r.Path, r.Status, r.ErrorCode)
		}
	}
}

// TestPIMPreexistingTimeBoundAssignmentIsLeftAlone: an administrator's time-bound assignment that was there
// before the grant is neither changed (no extension of someone else's assignment) nor removed.
func TestPIMPreexistingTimeBoundAssignmentIsLeftAlone(t *testing.T) {
	f, p, clk := newPIM(t)
	a := newAssignment("")
	end := clk.now.Add(30 * time.Minute)
	f.AdminAssign(rg, a.Principal, readerID, &end, "temporary access for an audit")
	a.ExpiresAt = clk.now.Add(2 * time.Hour)
	ref, err := p.Grant(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ref %s", ref)
	if got := instanceEnd(t, f, a); !got.Equal(end) {
		t.Fatalf("jitbot changed the administrator's assignment: end %s, want %s", got, end)
	}
	clk.Advance(6 * time.Minute)
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if n := len(f.ActiveInstances(rg, a.Principal, readerID)); n != 1 {
		t.Fatalf("revoke removed the administrator's assignment (%d left)", n)
	}
	for _, r := range f.ScheduleRequests() {
		if r.RequestorID == azurefake.CallerID {
			t.Errorf("jitbot made a %s request on an assignment it does not own", r.RequestType)
		}
	}
}

// TestRBACCyclesWithHumanAssignmentInBetween: plain RBAC, 20 cycles on one binding; a role assignment a human
// makes in between (under a name of their own) survives jitbot's revokes and is not listed as jitbot's.
func TestRBACCyclesWithHumanAssignmentInBetween(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, nil)
	base := newAssignment("")
	base.BindingKey = "b-rbac-cycles-" + base.GrantID
	for i := range 20 {
		a := lease(base, fmt.Sprintf("g-rbac-%d-%s", i, base.GrantID), time.Now().Add(time.Hour))
		switch i {
		case 8:
			f.AddAssignment(rg, "0d0d0d0d-0000-4000-8000-000000000001", base.Principal, "User",
				"/subscriptions/"+subID+"/providers/Microsoft.Authorization/roleDefinitions/"+readerID, "standing access, ticket OPS-1")
		case 12:
			f.RemoveAssignments(rg, base.Principal, readerID)
		}
		if _, err := p.Grant(t.Context(), a); err != nil {
			t.Fatalf("cycle %d: grant: %v", i, err)
		}
		if i == 9 {
			if owned, err := p.ListOwned(t.Context()); err != nil || len(owned) != 0 {
				t.Fatalf("cycle %d: ListOwned = %+v, %v; want nothing", i, owned, err)
			}
		}
		if err := p.Revoke(t.Context(), a); err != nil {
			t.Fatalf("cycle %d: revoke: %v", i, err)
		}
		want := 0
		if i >= 8 && i < 12 {
			want = 1
		}
		if n := len(f.Assignments(rg, base.Principal, readerID)); n != want {
			t.Fatalf("cycle %d: %d assignments after revoke, want %d", i, n, want)
		}
	}
}

// TestResumedCallKnowsItsOwnAccess: the process died after Azure accepted jitbot's first request and before the
// answer was recorded; the resumed attempt (Assignment.Ref = grants.RefCallPending) finds the access and knows
// it is jitbot's, in both modes, and the revoke removes it. Next to it, an administrator's assignment of another
// principal is still reported as pre-existing by a resumed call.
func TestResumedCallKnowsItsOwnAccess(t *testing.T) {
	for _, mode := range []string{"rbac", "pim"} {
		t.Run(mode, func(t *testing.T) {
			f := newFake(t)
			p := newProvider(t, f, func(c *azure.Config) { c.Mode = mode })
			a := newAssignment("")
			a.BindingKey = "b-resume-" + a.GrantID
			if _, err := p.Grant(t.Context(), a); err != nil { // the answer is "lost"
				t.Fatal(err)
			}
			a.Ref = grants.RefCallPending
			ref, err := p.Grant(t.Context(), a)
			if err != nil || grants.IsPreExisting(ref) {
				t.Fatalf("resumed Grant = %q, %v; want jitbot's own reference", ref, err)
			}
			a.Ref = ref
			if err := p.Revoke(t.Context(), a); err != nil {
				t.Fatal(err)
			}
			present, err := p.Check(t.Context(), a)
			if err != nil || present {
				t.Fatalf("after revoke Check = %v, %v", present, err)
			}

			b := newAssignment("")
			if mode == "pim" {
				f.AdminAssign(rg, b.Principal, readerDef, nil, "standing")
			} else {
				f.AddAssignment(rg, standingName(b.Principal), b.Principal, "User", readerDef, "standing")
			}
			b.Ref = grants.RefCallPending
			if ref, err := p.Grant(t.Context(), b); err != nil || !grants.IsPreExisting(ref) {
				t.Fatalf("resumed Grant over an administrator's assignment = %q, %v; want pre-existing", ref, err)
			}
		})
	}
}

// TestPIMWaitsForProcessing: a request PIM has accepted but not provisioned (Granted comes before Provisioned) is
// not success: Grant waits for it within its attempt, fails retryably when the attempt ends first (no access
// yet), and the next attempt resumes the same request by name instead of making another.
func TestPIMWaitsForProcessing(t *testing.T) {
	for _, pending := range []string{"Granted", "Accepted", "PendingProvisioning"} {
		t.Run(pending, func(t *testing.T) {
			f, p, clk := newPIM(t)
			f.PendingStatus = pending
			f.SetProvisionDelay(time.Minute) // by the fake's clock, which stands still until advanced
			a := newAssignment("")
			a.ExpiresAt = clk.now.Add(time.Hour)
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			_, err := p.Grant(ctx, a)
			cancel()
			if err == nil || grants.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Grant while the request is %s: %v; want a retryable deadline error", pending, err)
			}
			if n := len(f.ActiveInstances(rg, a.Principal, readerID)); n != 0 {
				t.Fatalf("%d instances before PIM processed the request", n)
			}
			clk.Advance(time.Minute)
			if _, err := p.Grant(t.Context(), a); err != nil {
				t.Fatalf("resumed Grant: %v", err)
			}
			if n := len(f.ScheduleRequests()); n != 1 {
				t.Fatalf("%d schedule requests, want the one resumed", n)
			}
			if n := len(f.ActiveInstances(rg, a.Principal, readerID)); n != 1 {
				t.Fatalf("%d instances after processing", n)
			}
		})
	}
}

// TestCheckWithOwnReference: verifying jitbot's revoke asks Check with the lease's own reference; an equal
// assignment an administrator made after the revoke is not jitbot's access and must not make the revoke look
// failed. Without a reference Check answers for the access from any source.
func TestCheckWithOwnReference(t *testing.T) {
	for _, mode := range []string{"rbac", "pim"} {
		t.Run(mode, func(t *testing.T) {
			f, _, clk := newPIM(t)
			p := newProvider(t, f, func(c *azure.Config) { c.Mode = mode; c.Now = clk.Now })
			a := newAssignment("")
			a.BindingKey, a.ExpiresAt = "b-own-"+a.GrantID, clk.now.Add(time.Hour)
			ref, err := p.Grant(t.Context(), a)
			if err != nil || grants.IsPreExisting(ref) {
				t.Fatalf("Grant = %q, %v", ref, err)
			}
			a.Ref = ref
			if ok, err := p.Check(t.Context(), a); err != nil || !ok {
				t.Fatalf("Check of jitbot's own access = %v, %v", ok, err)
			}
			clk.Advance(6 * time.Minute)
			if err := p.Revoke(t.Context(), a); err != nil {
				t.Fatal(err)
			}
			if mode == "pim" {
				f.AdminAssign(rg, a.Principal, readerDef, nil, "standing, after jitbot's revoke")
			} else {
				f.AddAssignment(rg, standingName(a.Principal), a.Principal, "User", readerDef, "standing, after jitbot's revoke")
			}
			if ok, err := p.Check(t.Context(), a); err != nil || ok {
				t.Fatalf("Check with jitbot's reference after its revoke = %v, %v; the administrator's assignment is not jitbot's", ok, err)
			}
			a.Ref = ""
			if ok, err := p.Check(t.Context(), a); err != nil || !ok {
				t.Fatalf("Check without a reference = %v, %v; want the access from any source", ok, err)
			}
		})
	}
}
