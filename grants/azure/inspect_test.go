package azure_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/azure"
	"github.com/jitbot/jitbot/grants/azure/azurefake"
	"github.com/jitbot/jitbot/store"
)

// inspector is p as a grants.OtherAccessInspector; the test fails when the adapter is not one.
func inspector(t *testing.T, p grants.Provider) grants.OtherAccessInspector {
	t.Helper()
	in, ok := p.(grants.OtherAccessInspector)
	if !ok {
		t.Fatalf("%T is not a grants.OtherAccessInspector: a revoke verified with Check alone calls access that remains through an administrator's assignment gone", p)
	}
	return in
}

func wantPresence(t *testing.T, in grants.OtherAccessInspector, a grants.Assignment, ours bool, other ...string) {
	t.Helper()
	pr, err := in.Inspect(t.Context(), a)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if pr.Ours != ours || !slices.Equal(pr.Other, other) {
		t.Fatalf("Inspect = %+v; want ours %v, other %q", pr, ours, other)
	}
}

func wantCheck(t *testing.T, p grants.Provider, a grants.Assignment, want bool) {
	t.Helper()
	got, err := p.Check(t.Context(), a)
	if err != nil || got != want {
		t.Fatalf("Check(ref %q) = %v, %v; want %v", a.Ref, got, err, want)
	}
}

// TestInspectRBAC: an administrator assigns the role again under a name of their own after jitbot's revoke
// (ARM refuses an equal assignment while jitbot's exists, so this is the order in which Azure shows both).
// Inspect tells jitbot's assignment (its name) from the administrator's, which it names; Check keeps its
// meaning: with jitbot's reference it answers for jitbot's assignment only, without one for any.
func TestInspectRBAC(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, nil)
	in := inspector(t, p)
	a := newAssignment("")
	a.BindingKey = "b-" + a.GrantID
	wantPresence(t, in, a, false)
	ref, err := p.Grant(t.Context(), a)
	if err != nil || grants.IsPreExisting(ref) {
		t.Fatalf("Grant = %q, %v", ref, err)
	}
	a.Ref = ref
	wantPresence(t, in, a, true)
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	wantPresence(t, in, a, false)
	admin := standingName(a.Principal)
	f.AddAssignment(rg, admin, a.Principal, "User", readerDef, "standing access, ticket OPS-1")
	wantPresence(t, in, a, false, "roleAssignment/"+admin)
	wantCheck(t, p, a, false) // jitbot's reference: jitbot's assignment, gone
	noRef := a
	noRef.Ref = ""
	wantCheck(t, p, noRef, true) // no reference: the access from any source
	wantPresence(t, in, noRef, false, "roleAssignment/"+admin)

	// A missing scope holds nothing; an unusable assignment is a permanent error, as for Check.
	gone := a
	gone.Target = map[string]string{"scope": "/subscriptions/" + subID + "/resourceGroups/rg-gone", "role_definition_id": readerID}
	wantPresence(t, in, gone, false)
	bad := a
	bad.Principal = "alice"
	if _, err := in.Inspect(t.Context(), bad); !grants.IsPermanent(err) {
		t.Fatalf("Inspect of a principal that is not a GUID: %v, want a permanent error", err)
	}

	f.DeleteAssignment(rg, admin)
	wantPresence(t, in, a, false)

	// Drift reconciliation asks about an object whose grant record is gone without its binding key: the name
	// jitbot derives from the grant id is not the object's, but its description names the grant.
	orphan := newAssignment("")
	f.AddAssignment(rg, azure.AssignmentName("b-lost"), orphan.Principal, "User", readerDef, "jitbot grant "+orphan.GrantID+" (role prod-reader)")
	wantPresence(t, in, orphan, true)
}

// TestInspectPIM: after jitbot's AdminRemove an administrator assigns the role through PIM (a request of their
// own), or the principal holds it through an assignment made outside PIM (its schedule names no request).
// Inspect reports jitbot's instance as ours only while its schedule is jitbot's request's, and names the
// others; Check with jitbot's reference answers for jitbot's assignment only.
func TestInspectPIM(t *testing.T) {
	f, p, clk := newPIM(t)
	in := inspector(t, p)
	a := newAssignment("")
	a.BindingKey = "b-" + a.GrantID
	a.ExpiresAt = clk.now.Add(time.Hour)
	ref, err := p.Grant(t.Context(), a)
	if err != nil || grants.IsPreExisting(ref) {
		t.Fatalf("Grant = %q, %v", ref, err)
	}
	a.Ref = ref
	wantPresence(t, in, a, true)
	clk.Advance(10 * time.Minute) // past PIM's five-minute removal floor
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	wantPresence(t, in, a, false)

	f.AdminAssign(rg, a.Principal, readerDef, nil, "standing access for the on-call lead")
	insts := f.ActiveInstances(rg, a.Principal, readerID)
	if len(insts) != 1 {
		t.Fatalf("%d instances after the administrator's assignment", len(insts))
	}
	wantPresence(t, in, a, false, "pimInstance/"+insts[0].Name)
	wantCheck(t, p, a, false)
	noRef := a
	noRef.Ref = ""
	wantCheck(t, p, noRef, true)

	// A schedule not found right after its instance was listed is not absent access: retried, as for Check.
	f.FailNext(azurefake.Fault{Status: http.StatusNotFound, Code: "RoleAssignmentScheduleNotFound", Message: "The role assignment schedule is not found.",
		Match: func(method, path string) bool {
			return method == http.MethodGet && strings.Contains(strings.ToLower(path), "/roleassignmentschedules/")
		}})
	if pr, err := in.Inspect(t.Context(), a); err == nil || grants.IsPermanent(err) {
		t.Fatalf("Inspect with the schedule not found = %+v, %v; want a retryable error", pr, err)
	}

	f.SetInstance(rg, a.Principal, readerID, false, nil)
	wantPresence(t, in, a, false)
	f.SetInstance(rg, a.Principal, readerID, true, nil) // assigned outside PIM: its schedule names no request
	insts = f.ActiveInstances(rg, a.Principal, readerID)
	wantPresence(t, in, a, false, "pimInstance/"+insts[0].Name)
}

// TestManagerAccessRemainsAfterAdminAssigns drives the real grants.Manager on both stores and in both modes: an
// administrator assigns the role themselves between jitbot's revoke and its verification (which waits for
// Azure's propagation delay). The verification records access-remains naming the administrator's object: not
// revoke-verified (the principal still holds the role), and not a failed revoke (the object is not jitbot's to
// remove, so it is neither revoked again nor escalated).
func TestManagerAccessRemainsAfterAdminAssigns(t *testing.T) {
	type auditStore interface {
		ReadAudit(ctx context.Context, afterSeq uint64, limit int) ([]store.AuditRecord, error)
	}
	modes := []struct {
		mode  string
		admin func(f *azurefake.Server, principal string) string // assigns as an administrator, returns the expected name
	}{
		{"rbac", func(f *azurefake.Server, principal string) string {
			f.AddAssignment(rg, standingName(principal), principal, "User", readerDef, "standing access, ticket OPS-1")
			return "roleAssignment/" + standingName(principal)
		}},
		{"pim", func(f *azurefake.Server, principal string) string {
			f.AdminAssign(rg, principal, readerDef, nil, "standing access for the on-call lead")
			return "pimInstance/" + f.ActiveInstances(rg, principal, readerID)[0].Name
		}},
	}
	for _, md := range modes {
		t.Run(md.mode, func(t *testing.T) {
			var clock *pimClock
			bothStores(t, func() time.Time { return clock.Now() }, func(t *testing.T, st grants.Store) {
				f, _, clk := newPIM(t)
				clock = clk
				p := newProvider(t, f, func(c *azure.Config) { c.Mode = md.mode; c.Now = clk.Now })
				e := newManagerEnv(t, st, p, clk)
				base := newAssignment("")
				g := e.lease(t, base, time.Hour)
				if g.State != store.GrantActive || grants.IsPreExisting(g.ProviderRef) {
					t.Fatalf("lease %s, ref %q: %s", g.State, g.ProviderRef, g.LastError)
				}
				clk.Advance(10 * time.Minute)
				if _, err := e.m.Release(t.Context(), g.ID, "U01ALICE"); err != nil {
					t.Fatal(err)
				}
				got := e.get(t, g.ID)
				if got.State != store.GrantRevoked || got.RecheckAt.IsZero() {
					t.Fatalf("after the release: %s, check at %v: %s", got.State, got.RecheckAt, got.LastError)
				}
				other := md.admin(f, base.Principal)
				clk.now = got.RecheckAt
				if err := e.m.ConvergeDue(t.Context(), got.BindingKey, []store.Grant{got}); err != nil {
					t.Fatal(err)
				}
				recs, err := st.(auditStore).ReadAudit(t.Context(), 0, 0)
				if err != nil {
					t.Fatal(err)
				}
				n, details := map[string]int{}, map[string]string{}
				for _, r := range recs {
					if r.Event.GrantID != g.ID {
						continue
					}
					n[r.Event.Type]++
					if r.Event.Type == store.EventAccessRemains {
						details = r.Event.Details
					}
				}
				if n[store.EventAccessRemains] != 1 || details["other"] != other || n[store.EventRevokeVerified] != 0 ||
					n[store.EventDriftRevoked] != 0 || n[store.EventRevokeFailed] != 0 {
					t.Fatalf("events %v (other %q); want one access-remains naming %s and no revoke-verified, drift-revoked or revoke-failed", n, details["other"], other)
				}
				if got := e.get(t, g.ID); got.Attempts != 0 || got.VerifiedAt.IsZero() {
					t.Fatalf("after the check: %d attempts, verified at %v", got.Attempts, got.VerifiedAt)
				}
				if md.mode == "rbac" && len(f.Assignments(rg, base.Principal, readerID)) != 1 {
					t.Fatal("the administrator's role assignment is gone")
				}
				if md.mode == "pim" && len(f.ActiveInstances(rg, base.Principal, readerID)) != 1 {
					t.Fatal("the administrator's PIM assignment is gone")
				}
			})
		})
	}
}
