package identitycenter_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/aws/awsfake"
	"github.com/jitbot/jitbot/grants/aws/identitycenter"
)

// inspector is p as a grants.OtherAccessInspector; the test fails when the adapter is not one.
func inspector(t *testing.T, p grants.Provider) grants.OtherAccessInspector {
	t.Helper()
	in, ok := p.(grants.OtherAccessInspector)
	if !ok {
		t.Fatalf("%T is not a grants.OtherAccessInspector: a revoke verified with Check alone calls access that remains through a group assignment gone", p)
	}
	return in
}

func wantPresence(t *testing.T, in grants.OtherAccessInspector, a grants.Assignment, ours bool, other ...string) {
	t.Helper()
	pr, err := in.Inspect(ctx(t), a)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if pr.Ours != ours || !slices.Equal(pr.Other, other) {
		t.Fatalf("Inspect = %+v; want ours %v, other %q", pr, ours, other)
	}
}

// groupKey is the GROUP assignment of group to a's permission set in a's account.
func groupKey(a grants.Assignment, group string) awsfake.AssignmentKey {
	k := key(a)
	k.PrincipalType, k.PrincipalID = "GROUP", group
	return k
}

// TestInspectReportsGroupAccess: after jitbot's revoke, a user who is a member of a group assigned the same
// permission set in the same account still holds the access; Inspect names that group (and only groups the user
// is a member of, assigned this permission set in this account) so that the manager records access-remains.
func TestInspectReportsGroupAccess(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	in := inspector(t, p)
	a := e.assignment(t)

	oncall := e.fake.AddGroup("", "oncall") // the user is a member, assigned the same permission set: remains
	e.fake.SetGroupMember(oncall, a.Principal, true)
	e.fake.SetAssignment(groupKey(a, oncall), true)
	others := e.fake.AddGroup("", "others") // assigned the same permission set, the user is not a member
	e.fake.SetAssignment(groupKey(a, others), true)
	readers := e.fake.AddGroup("", "readers") // the user is a member, but of another permission set's group
	e.fake.SetGroupMember(readers, a.Principal, true)
	rk := groupKey(a, readers)
	rk.PermissionSetARN = psARN2
	e.fake.SetAssignment(rk, true)

	ref, err := p.Grant(ctx(t), a)
	if err != nil {
		t.Fatal(err)
	}
	a.Ref = ref
	wantPresence(t, in, a, true, "group/"+oncall)
	if err := p.Revoke(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	if !e.fake.HasAssignment(groupKey(a, oncall)) {
		t.Fatal("jitbot's revoke removed a group assignment")
	}
	wantPresence(t, in, a, false, "group/"+oncall)
	if present, err := p.Check(ctx(t), a); err != nil || present {
		t.Fatalf("Check = %v, %v; want the user's own assignment absent", present, err)
	}
	e.fake.SetGroupMember(oncall, a.Principal, false) // left the group: nothing remains
	wantPresence(t, in, a, false)
}

// TestInspectBatchesGroupIDs: IsMemberInGroups takes at most 100 group ids per call.
func TestInspectBatchesGroupIDs(t *testing.T) {
	f := awsfake.New(awsfake.Options{Region: "eu-west-1", PageSize: 100})
	t.Cleanup(f.Close)
	f.AddPermissionSet(psARN)
	f.AddAccount(account)
	e := &env{fake: f}
	in := inspector(t, e.provider(t, nil))
	a := e.assignment(t)
	var want []string
	for i := range 150 {
		g := f.AddGroup(fmt.Sprintf("%08x-0000-4000-8000-000000000000", i), fmt.Sprintf("g%d", i))
		f.SetAssignment(groupKey(a, g), true)
		if i == 3 || i == 140 {
			f.SetGroupMember(g, a.Principal, true)
			want = append(want, "group/"+g)
		}
	}
	f.ClearCalls()
	wantPresence(t, in, a, false, want...)
	var batches []int
	for _, c := range f.Calls() {
		if c.Operation == "IsMemberInGroups" {
			ids, _ := c.Params["GroupIds"].([]any)
			batches = append(batches, len(ids))
			if m, _ := c.Params["MemberId"].(map[string]any); m["UserId"] != a.Principal {
				t.Errorf("IsMemberInGroups asked about member %v, want user %s", c.Params["MemberId"], a.Principal)
			}
		}
	}
	if !slices.Equal(batches, []int{100, 50}) {
		t.Fatalf("IsMemberInGroups batches of %v group ids, want [100 50]", batches)
	}
}

// TestInspectWithoutGroupsAsksNoMembership: no GROUP assignment, no identitystore call.
func TestInspectWithoutGroupsAsksNoMembership(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	a := e.assignment(t)
	e.fake.SetAssignment(key(a), true)
	e.fake.ClearCalls()
	wantPresence(t, inspector(t, p), a, true)
	if n := countOps(e.fake, "IsMemberInGroups"); n != 0 {
		t.Fatalf("%d IsMemberInGroups calls without any group assignment", n)
	}
}

// TestInspectGroupReadDenied: the group read is optional. Without identitystore:IsMemberInGroups Inspect
// reports the user's own assignment alone (never an error that would fail the revoke's verification) and warns
// once; a retryable failure of the group read is returned as retryable.
func TestInspectGroupReadDenied(t *testing.T) {
	e := newEnv(t)
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	p := e.provider(t, func(c *identitycenter.Config) { c.Logger = &log })
	in := inspector(t, p)
	a := e.assignment(t)
	g := e.fake.AddGroup("", "oncall")
	e.fake.SetGroupMember(g, a.Principal, true)
	e.fake.SetAssignment(groupKey(a, g), true)
	e.fake.SetAssignment(key(a), true)

	e.fake.Inject("IsMemberInGroups", awsfake.AccessDenied, 0, 2)
	wantPresence(t, in, a, true)
	wantPresence(t, in, a, true)
	if n := strings.Count(buf.String(), "cannot read group memberships"); n != 1 {
		t.Fatalf("%d warnings about the group read, want 1: %s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "AccessDeniedException") {
		t.Errorf("the warning does not say why: %s", buf.String())
	}

	e.fake.Inject("IsMemberInGroups", awsfake.Throttling, 0, 1)
	if _, err := in.Inspect(ctx(t), a); err == nil || grants.IsPermanent(err) {
		t.Fatalf("Inspect with a throttled group read = %v; want a retryable error", err)
	}
	wantPresence(t, in, a, true, "group/"+g) // and the next try reads the groups
}

// TestInspectWithoutIdentityStore: user ids work without an identity store, but group memberships cannot be read.
func TestInspectWithoutIdentityStore(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, func(c *identitycenter.Config) { c.IdentityStoreID = "" })
	a := e.assignment(t)
	g := e.fake.AddGroup("", "oncall")
	e.fake.SetGroupMember(g, a.Principal, true)
	e.fake.SetAssignment(groupKey(a, g), true)
	wantPresence(t, inspector(t, p), a, false)
}

// TestInspectGoneScope: a permission set that is gone holds nothing.
func TestInspectGoneScope(t *testing.T) {
	e := newEnv(t)
	a := e.assignment(t)
	a.Target["permission_set_arn"] = "arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-0000000000000000"
	wantPresence(t, inspector(t, e.provider(t, nil)), a, false)
}

// TestInspectWarnsThroughContextLogger: without Config.Logger the warning goes to the call's context logger; a
// call without one does not use the warning up.
func TestInspectWarnsThroughContextLogger(t *testing.T) {
	e := newEnv(t)
	in := inspector(t, e.provider(t, func(c *identitycenter.Config) { c.IdentityStoreID = "" }))
	a := e.assignment(t)
	g := e.fake.AddGroup("", "oncall")
	e.fake.SetAssignment(groupKey(a, g), true)
	if _, err := in.Inspect(ctx(t), a); err != nil { // no logger in the context
		t.Fatal(err)
	}
	var buf bytes.Buffer
	lctx := zerolog.New(&buf).WithContext(ctx(t))
	for range 2 {
		if _, err := in.Inspect(lctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "cannot read group memberships"); n != 1 {
		t.Fatalf("%d warnings through the context logger, want 1: %s", n, buf.String())
	}
}
