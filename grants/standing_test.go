package grants_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/aws/awsfake"
	awsiam "github.com/jitbot/jitbot/grants/aws/iam"
	"github.com/jitbot/jitbot/grants/aws/identitycenter"
	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

const (
	icPermSet = "arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-aaaabbbbccccdddd"
	icAccount = "111122223333"
)

type managerStore interface {
	grants.Store
	ReadAudit(ctx context.Context, afterSeq uint64, limit int) ([]store.AuditRecord, error)
}

// stores runs fn on both back ends.
func stores(t *testing.T, fn func(t *testing.T, st managerStore)) {
	t.Run("bolt", func(t *testing.T) {
		st := openStore(t)
		t.Cleanup(func() { _ = st.Close() })
		fn(t, st)
	})
	t.Run("redis", func(t *testing.T) {
		st := jitredis.New(redistest.Client(t), jitredis.Options{Prefix: redistest.Prefix(t)})
		fn(t, st)
	})
}

type icEnv struct {
	fake *awsfake.Server
	st   managerStore
	m    *grants.Manager
	now  time.Time
}

func newICEnv(t *testing.T, st managerStore) *icEnv {
	t.Helper()
	f := awsfake.New(awsfake.Options{Region: "eu-west-1"})
	t.Cleanup(f.Close)
	f.AddPermissionSet(icPermSet)
	f.AddAccount(icAccount)
	p, err := identitycenter.New(t.Context(), identitycenter.Config{
		InstanceARN: f.InstanceARN(), IdentityStoreID: f.IdentityStoreID(), Region: "eu-west-1", Endpoint: f.URL,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		PollInterval: 2 * time.Millisecond, PollTimeout: 5 * time.Second, RetryMaxAttempts: 1, ConflictBackoff: time.Millisecond,
		Scopes: []identitycenter.Scope{{AccountID: icAccount, PermissionSetARN: icPermSet}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &icEnv{fake: f, st: st, now: time.Now().Truncate(time.Millisecond)}
	e.m, err = grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"aws-sso": p},
		Now: func() time.Time { return e.now }, AttemptTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *icEnv) key(uid string) awsfake.AssignmentKey {
	return awsfake.AssignmentKey{AccountID: icAccount, PermissionSetARN: icPermSet, PrincipalType: "USER", PrincipalID: uid}
}

// lease stores an activating lease for uid and activates it.
func (e *icEnv) lease(t *testing.T, uid string) store.Grant {
	t.Helper()
	ctx := t.Context()
	g := grants.NewLease(grants.LeaseSpec{RequestID: store.NewID("r"), UserID: "U1", Role: "prod-admin", Provider: "aws-sso",
		Principal: uid, Target: map[string]string{"account_id": icAccount, "permission_set_arn": icPermSet}, Duration: time.Hour},
		e.now, e.now.Add(e.m.ActivationResumeAfter()))
	if err := e.st.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Activate(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	g, err := e.st.GetGrant(ctx, g.ID)
	if err != nil || g.State != store.GrantActive {
		t.Fatalf("grant %s: %s, %v (last error %q)", g.ID, g.State, err, g.LastError)
	}
	return g
}

func (e *icEnv) release(t *testing.T, g store.Grant) store.Grant {
	t.Helper()
	out, err := e.m.Release(t.Context(), g.ID, g.UserID)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// events returns the audit details of the grant's events of type typ.
func (e *icEnv) events(t *testing.T, grantID, typ string) []map[string]string {
	t.Helper()
	recs, err := e.st.ReadAudit(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, r := range recs {
		if r.Event.GrantID == grantID && r.Event.Type == typ {
			out = append(out, r.Event.Details)
		}
	}
	return out
}

// TestStandingAssignmentSurvives: a person who already had the Identity Center assignment keeps it after a
// jitbot grant of the same access ends, through overlapping leases, expiry and drift reconciliation; the
// grant and its revocation say so in the audit log.
func TestStandingAssignmentSurvives(t *testing.T) {
	stores(t, func(t *testing.T, st managerStore) {
		e := newICEnv(t, st)
		uid := e.fake.AddUser("", "alice@example.com")
		e.fake.SetAssignment(e.key(uid), true) // made by an administrator, long before jitbot

		a := e.lease(t, uid)
		if !grants.IsPreExisting(a.ProviderRef) {
			t.Fatalf("provider reference %q, want one saying the access pre-existed", a.ProviderRef)
		}
		if ev := e.events(t, a.ID, store.EventGranted); len(ev) != 1 || ev[0]["pre_existing"] != "true" {
			t.Fatalf("granted events %v, want pre_existing=true", ev)
		}
		b := e.lease(t, uid) // an overlapping lease inherits what the binding's access is
		if !grants.IsPreExisting(b.ProviderRef) {
			t.Fatalf("second lease's reference %q, want pre-existing", b.ProviderRef)
		}
		e.release(t, a)
		// The second lease expires; the sweeper's converge revokes.
		e.now = b.ExpiresAt.Add(time.Second)
		if err := e.m.Converge(t.Context(), b.BindingKey); err != nil {
			t.Fatal(err)
		}
		b, _ = st.GetGrant(t.Context(), b.ID)
		if b.State != store.GrantRevoked {
			t.Fatalf("second lease %s (%s), want revoked", b.State, b.LastError)
		}
		if !e.fake.HasAssignment(e.key(uid)) {
			t.Fatal("the standing assignment was removed when the jitbot grant ended")
		}
		if ev := e.events(t, b.ID, store.EventRevoked); len(ev) != 1 || ev[0]["pre_existing"] != "true" {
			t.Fatalf("revoked events %v, want pre_existing=true", ev)
		}
		for _, op := range e.fake.Operations() {
			if op == "DeleteAccountAssignment" {
				t.Fatalf("jitbot called DeleteAccountAssignment on standing access: %v", e.fake.Operations())
			}
		}

		rep, err := e.m.Reconcile(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !e.fake.HasAssignment(e.key(uid)) || rep.Revoked != 0 || rep.Unattributed != 1 {
			t.Fatalf("reconcile %+v; standing assignment present: %v", rep, e.fake.HasAssignment(e.key(uid)))
		}
	})
}

// TestJitbotAssignmentStillRemoved: ownership is not guessed in the other direction. An assignment jitbot
// created is removed at revoke, and one that an administrator removed during a pre-existing lease and jitbot
// then re-created (on extension) is jitbot's to remove.
func TestJitbotAssignmentStillRemoved(t *testing.T) {
	stores(t, func(t *testing.T, st managerStore) {
		e := newICEnv(t, st)
		bob := e.fake.AddUser("", "bob@example.com")
		g := e.lease(t, bob)
		if g.ProviderRef == "" || grants.IsPreExisting(g.ProviderRef) {
			t.Fatalf("reference %q, want jitbot's own", g.ProviderRef)
		}
		e.release(t, g)
		if e.fake.HasAssignment(e.key(bob)) {
			t.Fatal("jitbot's own assignment survived its revoke")
		}

		carol := e.fake.AddUser("", "carol@example.com")
		e.fake.SetAssignment(e.key(carol), true)
		c := e.lease(t, carol)
		e.fake.SetAssignment(e.key(carol), false) // the administrator takes the standing access away
		c, err := e.m.Extend(t.Context(), c.ID, c.UserID, 30*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if grants.IsPreExisting(c.ProviderRef) || !e.fake.HasAssignment(e.key(carol)) {
			t.Fatalf("after extension: reference %q, present %v; want jitbot's own, present", c.ProviderRef, e.fake.HasAssignment(e.key(carol)))
		}
		e.release(t, c)
		if e.fake.HasAssignment(e.key(carol)) {
			t.Fatal("the assignment jitbot re-created survived its revoke")
		}
	})
}

// TestResumedFirstCallFailsClosed: a process that dies during a lease's first grant call leaves the write-ahead
// reference grants.RefCallPending; the resumed attempt cannot know whether access it finds is what the lost call
// created, so it is recorded as jitbot's (removed at revoke), never as pre-existing.
func TestResumedFirstCallFailsClosed(t *testing.T) {
	stores(t, func(t *testing.T, st managerStore) {
		e := newICEnv(t, st)
		dan := e.fake.AddUser("", "dan@example.com")
		g := grants.NewLease(grants.LeaseSpec{RequestID: "r-crash", UserID: "U1", Role: "prod-admin", Provider: "aws-sso",
			Principal: dan, Target: map[string]string{"account_id": icAccount, "permission_set_arn": icPermSet}, Duration: time.Hour},
			e.now, e.now.Add(e.m.ActivationResumeAfter()))
		g.ProviderRef = grants.RefCallPending  // what the dead process had written before calling
		e.fake.SetAssignment(e.key(dan), true) // and what its call created
		if err := st.Commit(t.Context(), store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
			t.Fatal(err)
		}
		if err := e.m.Activate(t.Context(), g.ID); err != nil {
			t.Fatal(err)
		}
		g, _ = st.GetGrant(t.Context(), g.ID)
		if g.State != store.GrantActive || grants.IsPreExisting(g.ProviderRef) {
			t.Fatalf("resumed grant %s with reference %q, want active and jitbot's own", g.State, g.ProviderRef)
		}
		e.release(t, g)
		if e.fake.HasAssignment(e.key(dan)) {
			t.Fatal("access the lost call may have created survived the revoke")
		}
	})
}

// spyGrant records the lease's stored provider reference at the moment its adapter is called.
type spyGrant struct {
	grants.Provider
	st   grants.Store
	seen []string
}

func (s *spyGrant) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	g, err := s.st.GetGrant(ctx, a.GrantID)
	if err != nil {
		return "", err
	}
	s.seen = append(s.seen, g.ProviderRef+" / passed "+a.Ref)
	return s.Provider.Grant(ctx, a)
}

// TestFirstCallIsWrittenAhead: the marker is in the store before the adapter is called, and the adapter itself
// is told there is no reference yet (so it may still recognise standing access).
func TestFirstCallIsWrittenAhead(t *testing.T) {
	st := openStore(t)
	defer st.Close()
	cloud := newAsyncCloud(0)
	spy := &spyGrant{Provider: cloud, st: st}
	m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"cloud": spy}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	g := grants.NewLease(grants.LeaseSpec{RequestID: "r1", UserID: "U1", Role: "admin", Provider: "cloud",
		Principal: "alice", Target: map[string]string{"account": "1"}, Duration: time.Hour}, now, now.Add(time.Minute))
	if err := st.Commit(t.Context(), store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Activate(t.Context(), g.ID); err != nil {
		t.Fatal(err)
	}
	if len(spy.seen) != 1 || spy.seen[0] != grants.RefCallPending+" / passed " {
		t.Fatalf("at the call the store held / the adapter got: %q", spy.seen)
	}
	g, _ = st.GetGrant(t.Context(), g.ID)
	if g.State != store.GrantActive || g.ProviderRef != "op:1" {
		t.Fatalf("after the call: %s %q", g.State, g.ProviderRef)
	}
}

// TestUndoOfAnUntouchedGrantRemovesNothing: when every attempt fails before the adapter changed anything (its
// first look is throttled each time), the undo after the last attempt has nothing of jitbot's to remove: a
// standing IAM group membership stays, and RemoveUserFromGroup is never called.
func TestUndoOfAnUntouchedGrantRemovesNothing(t *testing.T) {
	stores(t, func(t *testing.T, st managerStore) {
		f := awsfake.New(awsfake.Options{})
		t.Cleanup(f.Close)
		f.AddIAMGroup("oncall")
		f.AddIAMUser("erin")
		f.SetInGroup("oncall", "erin", true) // standing membership
		p, err := awsiam.New(t.Context(), awsiam.Config{Endpoint: f.URL, RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
		if err != nil {
			t.Fatal(err)
		}
		checks := &countChecks{Provider: p}
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"aws-iam": checks}, MaxAttempts: 3})
		if err != nil {
			t.Fatal(err)
		}
		f.Inject("ListGroupsForUser", awsfake.Throttling, 0, 100)
		now := time.Now()
		g := grants.NewLease(grants.LeaseSpec{RequestID: "r-throttled", UserID: "U1", Role: "oncall", Provider: "aws-iam",
			Principal: "erin", Target: map[string]string{"group": "oncall"}, Duration: time.Hour}, now, now.Add(time.Minute))
		if err := st.Commit(t.Context(), store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			_ = m.Converge(t.Context(), g.BindingKey) // as the sweeper would at each retry
		}
		g, _ = st.GetGrant(t.Context(), g.ID)
		if g.State != store.GrantFailed || g.ProviderRef != grants.RefUntouched {
			t.Fatalf("grant %s with reference %q, want failed and untouched", g.State, g.ProviderRef)
		}
		if !f.InGroup("oncall", "erin") {
			t.Fatal("the undo of a grant that never changed anything removed the standing membership")
		}
		for _, op := range f.Operations() {
			if op == "AddUserToGroup" || op == "RemoveUserFromGroup" {
				t.Fatalf("unexpected %s: %v", op, f.Operations())
			}
		}
		if n := checks.n.Load(); n != 0 {
			t.Fatalf("%d Check calls after a revoke that removed nothing: nothing is to be verified gone", n)
		}
	})
}

// countChecks counts Check calls (the manager's revoke verification).
type countChecks struct {
	grants.Provider
	n atomic.Int64
}

func (c *countChecks) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	c.n.Add(1)
	return c.Provider.Check(ctx, a)
}
