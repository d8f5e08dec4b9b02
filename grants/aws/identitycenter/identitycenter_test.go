package identitycenter_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/aws/awsfake"
	"github.com/jitbot/jitbot/grants/aws/identitycenter"
	"github.com/jitbot/jitbot/grants/providertest"
)

const (
	secret  = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	akid    = "AKIDEXAMPLE"
	psARN   = "arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-aaaabbbbccccdddd"
	psARN2  = "arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-eeeeffff00001111"
	account = "111122223333"
)

type env struct {
	fake *awsfake.Server
	n    atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	f := awsfake.New(awsfake.Options{Region: "eu-west-1"})
	t.Cleanup(f.Close)
	f.AddPermissionSet(psARN)
	f.AddPermissionSet(psARN2)
	f.AddAccount(account)
	return &env{fake: f}
}

func (e *env) config() identitycenter.Config {
	return identitycenter.Config{
		InstanceARN:      e.fake.InstanceARN(),
		IdentityStoreID:  e.fake.IdentityStoreID(),
		Region:           "eu-west-1",
		Endpoint:         e.fake.URL,
		Credentials:      credentials.NewStaticCredentialsProvider(akid, secret, ""),
		PollInterval:     5 * time.Millisecond,
		PollTimeout:      5 * time.Second,
		RetryMaxAttempts: 1,
		RetryMaxBackoff:  5 * time.Millisecond,
		ConflictBackoff:  2 * time.Millisecond,
	}
}

func (e *env) provider(t *testing.T, mod func(*identitycenter.Config)) *identitycenter.Provider {
	t.Helper()
	cfg := e.config()
	if mod != nil {
		mod(&cfg)
	}
	p, err := identitycenter.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// assignment returns an assignment for a fresh Identity Store user (by id).
func (e *env) assignment(t *testing.T) grants.Assignment {
	n := e.n.Add(1)
	uid := e.fake.AddUser("", fmt.Sprintf("user%d@example.com", n))
	return grants.Assignment{
		GrantID: fmt.Sprintf("g-%d", n), RequestID: fmt.Sprintf("r-%d", n), UserID: "U1", Role: "admin",
		Principal: uid, Target: map[string]string{"account_id": account, "permission_set_arn": psARN},
		ExpiresAt: time.Now().Add(time.Hour),
	}
}

func key(a grants.Assignment) awsfake.AssignmentKey {
	return awsfake.AssignmentKey{AccountID: a.Target["account_id"], PermissionSetARN: a.Target["permission_set_arn"],
		PrincipalType: "USER", PrincipalID: a.Principal}
}

var faults = map[providertest.Fault]awsfake.Fault{
	providertest.Throttled:    awsfake.Throttling,
	providertest.Conflict:     awsfake.Conflict,
	providertest.NotFound:     awsfake.NotFound,
	providertest.AccessDenied: awsfake.AccessDenied,
	providertest.ServerError:  awsfake.ServerError,
}

// Statuses as the brief's fault table has them; TestErrorCodesNotStatuses covers AWS's documented 400s.
var faultStatus = map[providertest.Fault]int{
	providertest.Throttled: 429, providertest.Conflict: 409, providertest.NotFound: 404,
	providertest.AccessDenied: 403, providertest.ServerError: 500,
}

func TestConformance(t *testing.T) {
	e := newEnv(t)
	scoped := func(c *identitycenter.Config) {
		c.Scopes = []identitycenter.Scope{{AccountID: account, PermissionSetARN: psARN}} // so that reconciliation looks
	}
	providertest.Run(t, providertest.Harness{
		New:        func(t *testing.T) grants.Provider { return e.provider(t, scoped) },
		Assignment: e.assignment,
		Present:    func(t *testing.T, a grants.Assignment) bool { return e.fake.HasAssignment(key(a)) },
		Inject: func(t *testing.T, f providertest.Fault) {
			e.fake.Inject("", faults[f], faultStatus[f], 1)
		},
		SetPresent: func(t *testing.T, a grants.Assignment, present bool) { e.fake.SetAssignment(key(a), present) },
		Count:      func(t *testing.T, a grants.Assignment) int { return e.fake.AssignmentCount(key(a)) },
		Latency:    func(t *testing.T, d time.Duration) { e.fake.SetLatency(d) },
		Reset:      func(t *testing.T) { e.fake.Reset() },
		Secrets:    []string{secret},
		// Lifecycle cases: an administrator's assignment is the same object as jitbot's.
		Standing:        func(t *testing.T, a grants.Assignment, present bool) { e.fake.SetAssignment(key(a), present) },
		StandingPresent: func(t *testing.T, a grants.Assignment) bool { return e.fake.HasAssignment(key(a)) },
		InFlight: func(t *testing.T, a grants.Assignment, op providertest.Op) {
			e.fake.StartRequest(key(a), op == providertest.OpRevoke)
		},
		Settle:             func(t *testing.T) { e.fake.Settle() },
		HonoursCallPending: true,
		Cycles:             20,
		SlowAsync:          func(t *testing.T, d time.Duration) { e.fake.SetAsyncDuration(d) },
		Skip:               map[string]string{"OtherAccessRemains": sameObject},
	})
	if errs := e.fake.SignatureErrors(); len(errs) > 0 {
		t.Errorf("malformed SigV4 headers: %v", errs)
	}
}

// sameObject is why the harnesses whose standing access is the user's own assignment skip OtherAccessRemains:
// an administrator's USER assignment made during jitbot's grant is the very object jitbot's revoke removes
// (Identity Center keeps one per user, account and permission set, and it carries no mark of who made it).
// TestConformanceGroupAccess runs the case with the standing access that does remain: a group assignment.
const sameObject = "standing access here is the user's own assignment, the object jitbot revokes; see TestConformanceGroupAccess"

// TestConformanceGroupAccess runs the suite with standing access through a group: an administrator assigns the
// permission set in the account to a group the user is a member of. jitbot neither reports it as pre-existing
// (it is not the user's own assignment) nor removes it, and Inspect names it after jitbot's revoke
// (OtherAccessRemains).
func TestConformanceGroupAccess(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	groups := map[string]string{} // user id -> the group of its standing access
	group := func(a grants.Assignment) string {
		mu.Lock()
		defer mu.Unlock()
		if groups[a.Principal] == "" {
			groups[a.Principal] = e.fake.AddGroup("", "standing-"+a.GrantID)
		}
		return groups[a.Principal]
	}
	groupKey := func(a grants.Assignment) awsfake.AssignmentKey {
		k := key(a)
		k.PrincipalType, k.PrincipalID = "GROUP", group(a)
		return k
	}
	providertest.Run(t, providertest.Harness{
		New:        func(t *testing.T) grants.Provider { return e.provider(t, nil) },
		Assignment: e.assignment,
		Present:    func(t *testing.T, a grants.Assignment) bool { return e.fake.HasAssignment(key(a)) },
		Inject:     func(t *testing.T, f providertest.Fault) { e.fake.Inject("", faults[f], faultStatus[f], 1) },
		SetPresent: func(t *testing.T, a grants.Assignment, present bool) { e.fake.SetAssignment(key(a), present) },
		Reset:      func(t *testing.T) { e.fake.Reset() },
		Secrets:    []string{secret},
		Standing: func(t *testing.T, a grants.Assignment, present bool) {
			e.fake.SetGroupMember(group(a), a.Principal, present)
			e.fake.SetAssignment(groupKey(a), present)
		},
		StandingPresent: func(t *testing.T, a grants.Assignment) bool {
			return e.fake.IsGroupMember(group(a), a.Principal) && e.fake.HasAssignment(groupKey(a))
		},
		Cycles: 5, // the group's access made between two cycles survives the next cycle's revoke
	})
	if errs := e.fake.SignatureErrors(); len(errs) > 0 {
		t.Errorf("malformed SigV4 headers: %v", errs)
	}
}

// TestConformanceUserNames runs the suite with user names as principals (resolved through identitystore).
func TestConformanceUserNames(t *testing.T) {
	e := newEnv(t)
	names := map[string]string{}
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T) grants.Provider { return e.provider(t, nil) },
		Assignment: func(t *testing.T) grants.Assignment {
			a := e.assignment(t)
			name := fmt.Sprintf("name-%s@example.com", a.GrantID)
			e.fake.RenameUser(a.Principal, name)
			names[name] = a.Principal
			a.Principal = name
			return a
		},
		Present: func(t *testing.T, a grants.Assignment) bool {
			k := key(a)
			k.PrincipalID = names[a.Principal]
			return e.fake.HasAssignment(k)
		},
		Inject: func(t *testing.T, f providertest.Fault) { e.fake.Inject("", faults[f], faultStatus[f], 1) },
		Reset:  func(t *testing.T) { e.fake.Reset() },
		Standing: func(t *testing.T, a grants.Assignment, present bool) {
			k := key(a)
			k.PrincipalID = names[a.Principal]
			e.fake.SetAssignment(k, present)
		},
		StandingPresent: func(t *testing.T, a grants.Assignment) bool {
			k := key(a)
			k.PrincipalID = names[a.Principal]
			return e.fake.HasAssignment(k)
		},
		Cycles: 20,
		Skip:   map[string]string{"OtherAccessRemains": sameObject},
		// Grant's first call is GetUserId (a NotFound there is an unknown user: permanent, as the table wants);
		// revoke and check follow a grant by the same adapter, so the cached id is used and the fault meets the
		// sso-admin call. TestUserNameResolution covers unknown users on revoke and check.
		Secrets: []string{secret},
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestGrantRequests(t *testing.T) {
	e := newEnv(t)
	e.fake.SetPollsToFinish(3)
	p := e.provider(t, nil)
	a := e.assignment(t)
	e.fake.ClearCalls()
	ref, err := p.Grant(ctx(t), a)
	if err != nil {
		t.Fatal(err)
	}
	calls := e.fake.Calls()
	// It looks first (to tell standing access from its own), then creates and polls.
	want := []string{"ListAccountAssignments", "CreateAccountAssignment", "DescribeAccountAssignmentCreationStatus",
		"DescribeAccountAssignmentCreationStatus", "DescribeAccountAssignmentCreationStatus"}
	if got := e.fake.Operations(); !slices.Equal(got, want) {
		t.Fatalf("operations = %v, want %v", got, want)
	}
	c := calls[1]
	wantParams := map[string]string{
		"InstanceArn": e.fake.InstanceARN(), "PermissionSetArn": psARN, "PrincipalId": a.Principal,
		"PrincipalType": "USER", "TargetId": account, "TargetType": "AWS_ACCOUNT",
	}
	for k, v := range wantParams {
		if c.Param(k) != v {
			t.Errorf("CreateAccountAssignment %s = %q, want %q", k, c.Param(k), v)
		}
	}
	if len(c.Params) != len(wantParams) {
		t.Errorf("CreateAccountAssignment params = %v, want exactly %v", c.Params, wantParams)
	}
	reqID := calls[2].Param("AccountAssignmentCreationRequestId")
	for _, d := range calls[2:] {
		if reqID == "" || d.Param("AccountAssignmentCreationRequestId") != reqID || d.Param("InstanceArn") != e.fake.InstanceARN() {
			t.Errorf("%s params = %v, want one request id %q", d.Operation, d.Params, reqID)
		}
		if d.Service != awsfake.ServiceSSOAdmin {
			t.Errorf("service = %q", d.Service)
		}
	}
	if ref == "" || grants.IsPreExisting(ref) || !e.fake.HasAssignment(key(a)) {
		t.Fatalf("ref %q (want jitbot's own), present %v", ref, e.fake.HasAssignment(key(a)))
	}
	if errs := e.fake.SignatureErrors(); len(errs) > 0 {
		t.Errorf("SigV4: %v", errs)
	}
}

func TestRevokeRequests(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	a := e.assignment(t)
	e.fake.SetAssignment(key(a), true)
	e.fake.ClearCalls()
	if err := p.Revoke(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	calls := e.fake.Calls()
	want := []string{"DeleteAccountAssignment", "DescribeAccountAssignmentDeletionStatus", "DescribeAccountAssignmentDeletionStatus"}
	if got := e.fake.Operations(); !slices.Equal(got, want) {
		t.Fatalf("operations = %v, want %v", got, want)
	}
	for k, v := range map[string]string{"InstanceArn": e.fake.InstanceARN(), "PermissionSetArn": psARN,
		"PrincipalId": a.Principal, "PrincipalType": "USER", "TargetId": account, "TargetType": "AWS_ACCOUNT"} {
		if calls[0].Param(k) != v {
			t.Errorf("DeleteAccountAssignment %s = %q, want %q", k, calls[0].Param(k), v)
		}
	}
	id := calls[1].Param("AccountAssignmentDeletionRequestId")
	if id == "" || calls[2].Param("AccountAssignmentDeletionRequestId") != id {
		t.Errorf("deletion polls do not name one request id: %v / %v", calls[1].Params, calls[2].Params)
	}
	if e.fake.HasAssignment(key(a)) {
		t.Fatal("still assigned")
	}
}

func TestRevokeAbsentVariants(t *testing.T) {
	for _, mode := range []string{"notfound", "succeed", "fail"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.fake.SetDeleteAbsent(mode)
			p := e.provider(t, nil)
			if err := p.Revoke(ctx(t), e.assignment(t)); err != nil {
				t.Fatalf("revoking an absent assignment (service answers %s): %v", mode, err)
			}
		})
	}
}

func TestGrantExistingVariants(t *testing.T) {
	for _, mode := range []string{"succeed", "fail"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			e.fake.SetDuplicateCreate(mode)
			p := e.provider(t, nil)
			a := e.assignment(t)
			e.fake.SetAssignment(key(a), true)
			if _, err := p.Grant(ctx(t), a); err != nil {
				t.Fatalf("granting an existing assignment (service answers %s): %v", mode, err)
			}
			if !e.fake.HasAssignment(key(a)) {
				t.Fatal("assignment gone")
			}
		})
	}
}

func TestCheckPaginates(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	var all []grants.Assignment
	for range 5 {
		a := e.assignment(t)
		e.fake.SetAssignment(key(a), true)
		all = append(all, a)
	}
	// A group with the same id as a user must not count.
	other := e.assignment(t)
	gk := key(other)
	gk.PrincipalType = "GROUP"
	e.fake.SetAssignment(gk, true)

	// The fake pages in principal id order: look for the user on the last page.
	last := slices.MaxFunc(all, func(x, y grants.Assignment) int { return strings.Compare(x.Principal, y.Principal) })
	e.fake.ClearCalls()
	present, err := p.Check(ctx(t), last)
	if err != nil || !present {
		t.Fatalf("Check = %v, %v", present, err)
	}
	calls := e.fake.Calls()
	if len(calls) < 2 {
		t.Fatalf("want several ListAccountAssignments pages (page size 2), got %v", e.fake.Operations())
	}
	for i, c := range calls {
		if c.Operation != "ListAccountAssignments" || c.Param("AccountId") != account || c.Param("PermissionSetArn") != psARN ||
			c.Param("InstanceArn") != e.fake.InstanceARN() {
			t.Errorf("call %d = %s %v", i, c.Operation, c.Params)
		}
		if (i == 0) != (c.Param("NextToken") == "") {
			t.Errorf("call %d NextToken = %q", i, c.Param("NextToken"))
		}
	}
	if present, err := p.Check(ctx(t), other); err != nil || present {
		t.Fatalf("Check of a user whose id only has a GROUP assignment = %v, %v", present, err)
	}
}

func TestThrottlingIsRetryable(t *testing.T) {
	for _, status := range []int{400, 429} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			e := newEnv(t)
			p := e.provider(t, nil)
			a := e.assignment(t)
			e.fake.Inject("CreateAccountAssignment", awsfake.Throttling, status, 1)
			_, err := p.Grant(ctx(t), a)
			if err == nil || grants.IsPermanent(err) || !strings.Contains(err.Error(), "ThrottlingException") {
				t.Fatalf("err = %v, want retryable ThrottlingException", err)
			}
		})
	}
}

func TestSDKRetryer(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, func(c *identitycenter.Config) { c.RetryMaxAttempts = 3 })
	a := e.assignment(t)
	// One throttle is absorbed by the SDK's retryer...
	e.fake.Inject("ListAccountAssignments", awsfake.Throttling, 400, 1)
	if _, err := p.Grant(ctx(t), a); err != nil {
		t.Fatalf("one throttle with 3 SDK attempts: %v", err)
	}
	// ...persistent throttling is returned as retryable after exactly 3 attempts.
	b := e.assignment(t)
	e.fake.ClearCalls()
	e.fake.Inject("ListAccountAssignments", awsfake.Throttling, 400, 10)
	_, err := p.Grant(ctx(t), b)
	if err == nil || grants.IsPermanent(err) {
		t.Fatalf("persistent throttling: err = %v, want retryable", err)
	}
	if n := countOps(e.fake, "ListAccountAssignments"); n != 3 {
		t.Fatalf("SDK made %d attempts (%v), want 3", n, e.fake.Operations())
	}
	e.fake.Reset()

	// CreateAccountAssignment is sent once per decision, never retried by the SDK: an error answer must prove
	// that the one request was not taken (a retried create can fail after an earlier try was applied). A
	// throttled create is therefore jitbot's to retry, and changes nothing.
	c := e.assignment(t)
	e.fake.ClearCalls()
	e.fake.Inject("CreateAccountAssignment", awsfake.Throttling, 400, 1)
	ref, err := p.Grant(ctx(t), c)
	if err == nil || grants.IsPermanent(err) || ref != grants.RefUntouched {
		t.Fatalf("throttled create: ref %q, err %v; want a retryable error and an untouched reference", ref, err)
	}
	if n := countOps(e.fake, "CreateAccountAssignment"); n != 1 {
		t.Fatalf("CreateAccountAssignment sent %d times, want 1", n)
	}
	// A 5xx may have been applied: the reference stays jitbot's.
	e.fake.Inject("CreateAccountAssignment", awsfake.ServerError, 500, 1)
	if ref, err := p.Grant(ctx(t), c); err == nil || ref != "ic:create" {
		t.Fatalf("create answered 500: ref %q, err %v; want jitbot's reference (the request may have been applied)", ref, err)
	}
}

func TestConflictRetriedInternally(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	a := e.assignment(t)
	e.fake.Inject("CreateAccountAssignment", awsfake.Conflict, 400, 2)
	e.fake.ClearCalls()
	if _, err := p.Grant(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	ops := e.fake.Operations()
	creates := 0
	for _, op := range ops {
		if op == "CreateAccountAssignment" {
			creates++
		}
	}
	// Each conflict makes it look for requests in flight for the assignment before asking again.
	if creates != 3 || !slices.Contains(ops, "ListAccountAssignmentCreationStatus") || ops[len(ops)-1] != "DescribeAccountAssignmentCreationStatus" {
		t.Fatalf("operations = %v", ops)
	}
	if !e.fake.HasAssignment(key(a)) {
		t.Fatal("not assigned")
	}

	// Conflicts that outlast the retries end retryable.
	b := e.assignment(t)
	e.fake.Inject("CreateAccountAssignment", awsfake.Conflict, 409, 100)
	_, err := p.Grant(ctx(t), b)
	e.fake.Reset()
	if err == nil || grants.IsPermanent(err) || !strings.Contains(err.Error(), "ConflictException") {
		t.Fatalf("err = %v, want retryable ConflictException", err)
	}

	// A delete that closely follows a create meets the service's own ConflictException: the adapter finds the
	// creation in flight, waits for it to end, then deletes. The creation is started at the fake directly (as
	// an earlier attempt that gave up would have left it), so nothing races a timer.
	c := e.assignment(t)
	e.fake.SetPollsToFinish(3)
	e.fake.StartRequest(key(c), false)
	if err := p.Revoke(ctx(t), c); err != nil {
		t.Fatalf("revoke after a pending create: %v", err)
	}
	e.fake.Settle()
	if e.fake.HasAssignment(key(c)) {
		t.Fatal("still assigned")
	}
	conflicts := 0
	for _, call := range e.fake.Calls() {
		if call.Operation == "DeleteAccountAssignment" && call.Error == "ConflictException" {
			conflicts++
		}
	}
	if conflicts == 0 {
		t.Error("expected the fake to answer ConflictException while the creation was pending")
	}
}

func TestErrorCodesNotStatuses(t *testing.T) {
	// AWS documents 400 for AccessDenied, ResourceNotFound, Validation, ServiceQuota and Throttling
	// exceptions of sso-admin: classification must go by the error code.
	cases := []struct {
		fault     awsfake.Fault
		permanent bool
	}{
		{awsfake.AccessDenied, true}, {awsfake.NotFound, true}, {awsfake.Validation, true},
		{awsfake.LimitExceeded, true}, {awsfake.Throttling, false}, {awsfake.ServerError, false},
	}
	for _, c := range cases {
		e := newEnv(t)
		p := e.provider(t, nil)
		e.fake.Inject("CreateAccountAssignment", c.fault, 400, 1)
		_, err := p.Grant(ctx(t), e.assignment(t))
		if err == nil || grants.IsPermanent(err) != c.permanent {
			t.Errorf("fault %d at status 400: err = %v, permanent %v, want %v", c.fault, err, grants.IsPermanent(err), c.permanent)
		}
	}
}

func TestNotFound(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	a := e.assignment(t)
	// Unknown permission set: the service answers ResourceNotFoundException.
	a.Target = map[string]string{"account_id": account, "permission_set_arn": "arn:aws:sso:::permissionSet/ssoins-1111222233334444/ps-0000000000000000"}
	_, err := p.Grant(ctx(t), a)
	if !grants.IsPermanent(err) || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Fatalf("grant with an unknown permission set: %v", err)
	}
	if err := p.Revoke(ctx(t), a); err != nil {
		t.Fatalf("revoke with an unknown permission set: %v", err)
	}
	if present, err := p.Check(ctx(t), a); err != nil || present {
		t.Fatalf("check with an unknown permission set: %v, %v", present, err)
	}
	// Unknown account: the request is accepted and ends FAILED; the reason says "not found".
	b := e.assignment(t)
	b.Target = map[string]string{"account_id": "999999999999", "permission_set_arn": psARN}
	ref, err := p.Grant(ctx(t), b)
	if !grants.IsPermanent(err) || ref == "" || !strings.Contains(err.Error(), "FAILED") {
		t.Fatalf("grant to an unknown account: ref %q, %v", ref, err)
	}
}

func TestUserNameResolution(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	uid := e.fake.AddUser("", "alice@example.com")
	a := grants.Assignment{GrantID: "g-a", Principal: "alice@example.com",
		Target: map[string]string{"account_id": account, "permission_set_arn": psARN}}
	e.fake.ClearCalls()
	if _, err := p.Grant(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	calls := e.fake.Calls()
	if calls[0].Service != awsfake.ServiceIdentityStore || calls[0].Operation != "GetUserId" {
		t.Fatalf("first call %s.%s, want identitystore GetUserId", calls[0].Service, calls[0].Operation)
	}
	alt, _ := calls[0].Params["AlternateIdentifier"].(map[string]any)
	ua, _ := alt["UniqueAttribute"].(map[string]any)
	if calls[0].Param("IdentityStoreId") != e.fake.IdentityStoreID() || ua["AttributePath"] != "userName" ||
		ua["AttributeValue"] != "alice@example.com" || len(alt) != 1 {
		t.Fatalf("GetUserId params = %v", calls[0].Params)
	}
	i := slices.IndexFunc(calls, func(c awsfake.Call) bool { return c.Operation == "CreateAccountAssignment" })
	if i < 0 || calls[i].Param("PrincipalId") != uid {
		t.Fatalf("CreateAccountAssignment not called with %q: %v", uid, e.fake.Operations())
	}
	// Cached: the check does not ask again.
	e.fake.ClearCalls()
	if present, err := p.Check(ctx(t), a); err != nil || !present {
		t.Fatalf("Check = %v, %v", present, err)
	}
	if ops := e.fake.Operations(); slices.Contains(ops, "GetUserId") {
		t.Fatalf("user name resolved again within the cache TTL: %v", ops)
	}
	// Ids are used as is.
	e.fake.ClearCalls()
	if _, err := p.Check(ctx(t), grants.Assignment{Principal: uid, Target: a.Target}); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(e.fake.Operations(), "GetUserId") {
		t.Fatal("a user id was resolved")
	}
	// Unknown users are permanent errors everywhere.
	u := grants.Assignment{GrantID: "g-u", Principal: "nobody@example.com", Target: a.Target}
	if _, err := p.Grant(ctx(t), u); !grants.IsPermanent(err) {
		t.Fatalf("grant for an unknown user: %v", err)
	}
	if err := p.Revoke(ctx(t), u); !grants.IsPermanent(err) {
		t.Fatalf("revoke for an unknown user: %v", err)
	}
	if _, err := p.Check(ctx(t), u); !grants.IsPermanent(err) {
		t.Fatalf("check for an unknown user: %v", err)
	}
}

func TestContextCancelledWhilePolling(t *testing.T) {
	e := newEnv(t)
	e.fake.SetPollsToFinish(1 << 20)
	p := e.provider(t, func(c *identitycenter.Config) { c.PollInterval = 20 * time.Millisecond })
	c, cancel := context.WithCancel(t.Context())
	defer cancel()
	polled := e.fake.Await("DescribeAccountAssignmentCreationStatus")
	go func() { <-polled; cancel() }() // cancel while the adapter is polling, not at a guessed time
	ref, err := p.Grant(c, e.assignment(t))
	if !errors.Is(err, context.Canceled) || grants.IsPermanent(err) {
		t.Fatalf("err = %v, want retryable context.Canceled", err)
	}
	if !strings.HasPrefix(ref, "ic:create:") {
		t.Fatalf("ref %q after cancelling a pending creation, want the creation request for the next attempt", ref)
	}
}

func TestPollTimeoutIsRetryable(t *testing.T) {
	e := newEnv(t)
	e.fake.SetPollsToFinish(1 << 20)
	p := e.provider(t, func(c *identitycenter.Config) { c.PollTimeout = 50 * time.Millisecond })
	ref, err := p.Grant(ctx(t), e.assignment(t))
	if err == nil || grants.IsPermanent(err) || ref == "" || !strings.Contains(err.Error(), "IN_PROGRESS") {
		t.Fatalf("ref %q err %v, want a retryable timeout naming the request", ref, err)
	}
}

func TestUnsignedRequestsRejected(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, func(c *identitycenter.Config) { c.Credentials = aws.AnonymousCredentials{} })
	_, err := p.Grant(ctx(t), e.assignment(t))
	if !grants.IsPermanent(err) {
		t.Fatalf("unsigned request: %v, want permanent", err)
	}
	if len(e.fake.SignatureErrors()) == 0 {
		t.Fatal("fake did not notice the missing signature")
	}
}

func TestNoSecretInErrors(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	for _, f := range []awsfake.Fault{awsfake.Throttling, awsfake.AccessDenied, awsfake.ServerError, awsfake.Validation} {
		e.fake.Inject("", f, 0, 1)
		_, err := p.Grant(ctx(t), e.assignment(t))
		if err == nil {
			t.Fatalf("fault %d: no error", f)
		}
		if s := fmt.Sprintf("%v %+v %#v", err, err, err); strings.Contains(s, secret) {
			t.Fatalf("fault %d: the secret access key appears in the error", f)
		}
	}
}

func TestListOwned(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, func(c *identitycenter.Config) {
		c.Scopes = []identitycenter.Scope{{AccountID: account, PermissionSetARN: psARN}, {AccountID: account, PermissionSetARN: psARN2}}
	})
	a, b := e.assignment(t), e.assignment(t)
	b.Target = map[string]string{"account_id": account, "permission_set_arn": psARN2}
	outside := e.assignment(t)
	outside.Target = map[string]string{"account_id": "444455556666", "permission_set_arn": psARN}
	for _, x := range []grants.Assignment{a, b, outside} {
		e.fake.SetAssignment(key(x), true)
	}
	g := key(e.assignment(t))
	g.PrincipalType = "GROUP"
	e.fake.SetAssignment(g, true)

	owned, err := p.ListOwned(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]grants.Owned{}
	for _, o := range owned {
		got[o.Principal] = o
	}
	if len(owned) != 2 || got[a.Principal].Target["permission_set_arn"] != psARN || got[b.Principal].Target["permission_set_arn"] != psARN2 {
		t.Fatalf("owned = %+v", owned)
	}
	if got[a.Principal].GrantID != "" || got[a.Principal].Ref == "" {
		t.Fatalf("owned entry = %+v", got[a.Principal])
	}

	pn := e.provider(t, func(c *identitycenter.Config) {
		c.Scopes = []identitycenter.Scope{{AccountID: account, PermissionSetARN: psARN}}
		c.OwnedPrincipal = "user_name"
	})
	owned, err = pn.ListOwned(ctx(t))
	if err != nil || len(owned) != 1 || !strings.HasSuffix(owned[0].Principal, "@example.com") {
		t.Fatalf("user_name mode: %+v, %v", owned, err)
	}
}

func TestValidateTarget(t *testing.T) {
	ok := map[string]string{"account_id": account, "permission_set_arn": psARN}
	if err := identitycenter.ValidateTarget(ok); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		target map[string]string
		want   string
	}{
		{map[string]string{"permission_set_arn": psARN}, "needs account_id"},
		{map[string]string{"account_id": "12345", "permission_set_arn": psARN}, "12-digit"},
		{map[string]string{"account_id": account}, "needs permission_set_arn"},
		{map[string]string{"account_id": account, "permission_set_arn": "AdministratorAccess"}, "not a permission set ARN"},
		{map[string]string{"account_id": account, "permission_set_arn": psARN, "role": "x"}, `unknown target key "role"`},
	} {
		err := identitycenter.ValidateTarget(c.target)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ValidateTarget(%v) = %v, want %q", c.target, err, c.want)
		}
	}
	// A malformed target is a permanent error at grant time.
	e := newEnv(t)
	p := e.provider(t, nil)
	if _, err := p.Grant(ctx(t), grants.Assignment{Principal: "x", Target: map[string]string{"account_id": "1"}}); !grants.IsPermanent(err) {
		t.Fatalf("malformed target: %v", err)
	}
}

func TestSettingsValidate(t *testing.T) {
	good := identitycenter.Settings{InstanceARN: "arn:aws:sso:::instance/ssoins-1111222233334444", IdentityStoreID: "d-1234567890", Region: "eu-west-1"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := identitycenter.Settings{InstanceARN: "ssoins-1", IdentityStoreID: "store", Region: "Europe", Endpoint: "http://example.com"}
	err := bad.Validate()
	for _, want := range []string{"instance_arn", "identity_store_id", "region", "endpoint"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a problem with %s", err, want)
		}
	}
	if c := good.Config(); c.InstanceARN != good.InstanceARN || c.Region != "eu-west-1" || c.Credentials != nil {
		t.Errorf("Config() = %+v", c)
	}
}

func countOps(f *awsfake.Server, op string) int {
	n := 0
	for _, o := range f.Operations() {
		if o == op {
			n++
		}
	}
	return n
}

// Issue 10 item 2: an attempt that runs out of time while its creation is IN_PROGRESS returns the request in
// its reference; the next attempt resumes polling that request instead of creating again.
func TestGrantResumesItsOwnCreation(t *testing.T) {
	e := newEnv(t)
	e.fake.SetPollsToFinish(1)
	p := e.provider(t, func(c *identitycenter.Config) { c.PollTimeout = 30 * time.Millisecond })
	a := e.assignment(t)
	e.fake.SetAsyncDuration(time.Hour) // provisioning outlasts every attempt until released below
	ref, err := p.Grant(ctx(t), a)
	if err == nil || grants.IsPermanent(err) || !strings.HasPrefix(ref, "ic:create:") {
		t.Fatalf("first attempt: ref %q, err %v; want a retryable timeout naming the creation request", ref, err)
	}
	ref2, err := p.Grant(ctx(t), grants.Assignment{GrantID: a.GrantID, Principal: a.Principal, Target: a.Target, Ref: ref})
	if err == nil || ref2 != ref {
		t.Fatalf("second attempt while still provisioning: ref %q, err %v; want the same request, still waiting", ref2, err)
	}
	e.fake.SetAsyncDuration(0)
	a.Ref = ref
	ref3, err := p.Grant(ctx(t), a)
	if err != nil || ref3 != "ic:owned" {
		t.Fatalf("third attempt: ref %q, err %v", ref3, err)
	}
	if n := countOps(e.fake, "CreateAccountAssignment"); n != 1 {
		t.Fatalf("CreateAccountAssignment called %d times, want 1 (operations %v)", n, e.fake.Operations())
	}
	if !e.fake.HasAssignment(key(a)) {
		t.Fatal("not assigned")
	}
}

// The undo after a failed activation gets the creation request in the reference: it waits for it, then
// deletes, so access that was still being provisioned does not appear after "revoked".
func TestUndoWaitsForItsOwnCreation(t *testing.T) {
	e := newEnv(t)
	e.fake.SetPollsToFinish(1)
	short := e.provider(t, func(c *identitycenter.Config) { c.PollTimeout = 30 * time.Millisecond })
	a := e.assignment(t)
	e.fake.SetAsyncDuration(time.Hour)
	ref, err := short.Grant(ctx(t), a)
	if err == nil || !strings.HasPrefix(ref, "ic:create:") {
		t.Fatalf("ref %q, err %v", ref, err)
	}
	e.fake.SetAsyncDuration(0)
	a.Ref = ref
	if err := e.provider(t, nil).Revoke(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	e.fake.Settle()
	if e.fake.HasAssignment(key(a)) || e.fake.InProgress(key(a)) != 0 {
		t.Fatalf("after the undo: assigned %v, requests in flight %d", e.fake.HasAssignment(key(a)), e.fake.InProgress(key(a)))
	}
}

// A revoke whose deletion outlasts the attempt is resumed by the next attempt: it meets the deletion in flight
// (ConflictException), waits for it, and only then reports success.
func TestRevokeResumesItsDeletion(t *testing.T) {
	e := newEnv(t)
	e.fake.SetPollsToFinish(1)
	p := e.provider(t, func(c *identitycenter.Config) { c.PollTimeout = 30 * time.Millisecond })
	a := e.assignment(t)
	e.fake.SetAssignment(key(a), true)
	e.fake.SetAsyncDuration(time.Hour)
	if err := p.Revoke(ctx(t), a); err == nil || grants.IsPermanent(err) {
		t.Fatalf("first attempt: %v, want a retryable timeout", err)
	}
	if err := p.Revoke(ctx(t), a); err == nil {
		t.Fatal("second attempt reported success while the deletion was still in flight")
	}
	e.fake.SetAsyncDuration(0)
	if err := p.Revoke(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	if e.fake.HasAssignment(key(a)) {
		t.Fatal("still assigned after a successful revoke")
	}
	if n := countOps(e.fake, "DeleteAccountAssignment"); n < 2 {
		t.Fatalf("DeleteAccountAssignment called %d times", n)
	}
}

// The endpoint's host decides "local", not the start of the string: plain http to a host that merely begins
// with "localhost" would send signed calls in the clear to somebody else's server.
func TestSettingsEndpointHost(t *testing.T) {
	base := identitycenter.Settings{InstanceARN: "arn:aws:sso:::instance/ssoins-1111222233334444", IdentityStoreID: "d-1234567890", Region: "eu-west-1"}
	for endpoint, ok := range map[string]bool{
		"https://sso.example.com":             true,
		"http://localhost:4566":               true,
		"http://127.0.0.1:4566":               true,
		"http://[::1]:4566":                   true,
		"http://localhost.evil.example.com":   false,
		"http://127.0.0.1.evil.example.com/x": false,
		"https://user:pw@sso.example.com":     false,
		"sso.example.com":                     false,
	} {
		s := base
		s.Endpoint = endpoint
		if err := s.Validate(); (err == nil) != ok {
			t.Errorf("endpoint %q: Validate() = %v, want accepted %v", endpoint, err, ok)
		}
	}
}
