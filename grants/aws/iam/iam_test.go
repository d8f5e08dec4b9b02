package iam_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/aws/awsfake"
	jiam "github.com/jitbot/jitbot/grants/aws/iam"
	"github.com/jitbot/jitbot/grants/providertest"
)

const (
	secret    = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
	readOnly  = "arn:aws:iam::aws:policy/ReadOnlyAccess"
	group     = "oncall-admins"
	s3Reader  = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::logs/*"},{"Sid":"List","Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::logs"}]}`
	namedName = "logs-read"
)

type env struct {
	fake *awsfake.Server
	n    atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	f := awsfake.New(awsfake.Options{})
	t.Cleanup(f.Close)
	f.AddIAMGroup(group)
	f.AddManagedPolicy(readOnly)
	return &env{fake: f}
}

func (e *env) provider(t *testing.T, mod func(*jiam.Config)) *jiam.Provider {
	t.Helper()
	cfg := jiam.Config{
		Endpoint:         e.fake.URL,
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", secret, ""),
		RetryMaxAttempts: 1,
		RetryMaxBackoff:  5 * time.Millisecond,
		ConflictBackoff:  2 * time.Millisecond,
		Policies:         map[string]string{namedName: s3Reader},
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := jiam.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type mode struct {
	name    string
	target  map[string]string
	role    bool
	present func(f *awsfake.Server, a grants.Assignment) bool
	set     func(f *awsfake.Server, a grants.Assignment, present bool)
}

var modes = []mode{
	{
		name: "group", target: map[string]string{"group": group},
		present: func(f *awsfake.Server, a grants.Assignment) bool { return f.InGroup(group, a.Principal) },
		set:     func(f *awsfake.Server, a grants.Assignment, p bool) { f.SetInGroup(group, a.Principal, p) },
	},
	{
		name: "managed-user", target: map[string]string{"managed_policy_arn": readOnly},
		present: func(f *awsfake.Server, a grants.Assignment) bool { return f.Attached(false, a.Principal, readOnly) },
		set:     func(f *awsfake.Server, a grants.Assignment, p bool) { f.SetAttached(false, a.Principal, readOnly, p) },
	},
	{
		name: "managed-role", target: map[string]string{"managed_policy_arn": readOnly, "principal_type": "role"}, role: true,
		present: func(f *awsfake.Server, a grants.Assignment) bool { return f.Attached(true, a.Principal, readOnly) },
		set:     func(f *awsfake.Server, a grants.Assignment, p bool) { f.SetAttached(true, a.Principal, readOnly, p) },
	},
	{
		name: "inline-named", target: map[string]string{"inline_policy": namedName},
		present: func(f *awsfake.Server, a grants.Assignment) bool {
			_, ok := f.InlinePolicy(a.Principal, inlineName(a))
			return ok
		},
		set: func(f *awsfake.Server, a grants.Assignment, p bool) {
			f.SetInlinePolicy(a.Principal, inlineName(a), s3Reader, p)
		},
	},
	{
		name: "inline-json", target: map[string]string{"inline_policy": s3Reader},
		present: func(f *awsfake.Server, a grants.Assignment) bool {
			_, ok := f.InlinePolicy(a.Principal, inlineName(a))
			return ok
		},
		set: func(f *awsfake.Server, a grants.Assignment, p bool) {
			f.SetInlinePolicy(a.Principal, inlineName(a), s3Reader, p)
		},
	},
}

// inlineName is the policy the adapter writes for a: named after the binding, or the grant id without one.
func inlineName(a grants.Assignment) string {
	if a.BindingKey != "" {
		return jiam.InlinePolicyName(a.BindingKey)
	}
	return jiam.InlinePolicyName(a.GrantID)
}

// standingPolicy is the name of an administrator's own inline policy in the lifecycle cases.
const standingPolicy = "admin-standing-access"

// inlineExpiry reads the aws:CurrentTime bound of the first statement of a's inline policy.
func inlineExpiry(f *awsfake.Server, a grants.Assignment) (time.Time, bool) {
	doc, ok := f.InlinePolicy(a.Principal, inlineName(a))
	if !ok {
		return time.Time{}, false
	}
	var d struct {
		Statement []struct {
			Condition struct {
				DateLessThan map[string]string
			}
		}
	}
	if err := json.Unmarshal([]byte(doc), &d); err != nil || len(d.Statement) == 0 {
		return time.Time{}, false
	}
	end, err := time.Parse(time.RFC3339, d.Statement[0].Condition.DateLessThan["aws:CurrentTime"])
	return end, err == nil
}

func (e *env) assignment(m mode) grants.Assignment {
	n := e.n.Add(1)
	name := fmt.Sprintf("user%d", n)
	if m.role {
		name = fmt.Sprintf("role%d", n)
		e.fake.AddIAMRole(name)
	} else {
		e.fake.AddIAMUser(name)
	}
	return grants.Assignment{
		GrantID: fmt.Sprintf("g-%d", n), RequestID: fmt.Sprintf("r-%d", n), UserID: "U1", Role: "admin",
		Principal: name, Target: m.target, ExpiresAt: time.Now().Add(time.Hour).Truncate(time.Second),
	}
}

var faults = map[providertest.Fault]awsfake.Fault{
	providertest.Throttled:    awsfake.Throttling,
	providertest.Conflict:     awsfake.Conflict,
	providertest.NotFound:     awsfake.NotFound,
	providertest.AccessDenied: awsfake.AccessDenied,
	providertest.ServerError:  awsfake.ServerError,
}

func TestConformance(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t)
			h := providertest.Harness{
				New:        func(t *testing.T) grants.Provider { return e.provider(t, nil) },
				Assignment: func(t *testing.T) grants.Assignment { return e.assignment(m) },
				Present:    func(t *testing.T, a grants.Assignment) bool { return m.present(e.fake, a) },
				Inject:     func(t *testing.T, f providertest.Fault) { e.fake.Inject("", faults[f], 0, 1) },
				SetPresent: func(t *testing.T, a grants.Assignment, p bool) { m.set(e.fake, a, p) },
				Latency:    func(t *testing.T, d time.Duration) { e.fake.SetLatency(d) },
				Reset:      func(t *testing.T) { e.fake.Reset() },
				Secrets:    []string{secret},
				Cycles:     20,
				// Memberships and attachments are reported pre-existing; a call-pending reference skips the look.
				HonoursCallPending: true,
			}
			if strings.HasPrefix(m.name, "inline") {
				// An administrator's standing access is an inline policy of their own, which jitbot never touches;
				// jitbot's policy carries its own end.
				h.Standing = func(t *testing.T, a grants.Assignment, p bool) {
					e.fake.SetInlinePolicy(a.Principal, standingPolicy, s3Reader, p)
				}
				h.StandingPresent = func(t *testing.T, a grants.Assignment) bool {
					_, ok := e.fake.InlinePolicy(a.Principal, standingPolicy)
					return ok
				}
				h.ProviderExpiry = func(t *testing.T, a grants.Assignment) (time.Time, bool) { return inlineExpiry(e.fake, a) }
			} else {
				// A membership or attachment an administrator made is the very object jitbot would make.
				h.Standing = h.SetPresent
				h.StandingPresent = h.Present
			}
			providertest.Run(t, h)
			if errs := e.fake.SignatureErrors(); len(errs) > 0 {
				t.Errorf("malformed SigV4: %v", errs)
			}
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestExactRequests(t *testing.T) {
	type call struct {
		op     string
		params map[string]string
	}
	cases := []struct {
		mode   mode
		grant  func(a grants.Assignment) call
		revoke func(a grants.Assignment) call
		check  string
	}{
		{modes[0],
			func(a grants.Assignment) call {
				return call{"AddUserToGroup", map[string]string{"GroupName": group, "UserName": a.Principal}}
			},
			func(a grants.Assignment) call {
				return call{"RemoveUserFromGroup", map[string]string{"GroupName": group, "UserName": a.Principal}}
			},
			"ListGroupsForUser"},
		{modes[1],
			func(a grants.Assignment) call {
				return call{"AttachUserPolicy", map[string]string{"PolicyArn": readOnly, "UserName": a.Principal}}
			},
			func(a grants.Assignment) call {
				return call{"DetachUserPolicy", map[string]string{"PolicyArn": readOnly, "UserName": a.Principal}}
			},
			"ListAttachedUserPolicies"},
		{modes[2],
			func(a grants.Assignment) call {
				return call{"AttachRolePolicy", map[string]string{"PolicyArn": readOnly, "RoleName": a.Principal}}
			},
			func(a grants.Assignment) call {
				return call{"DetachRolePolicy", map[string]string{"PolicyArn": readOnly, "RoleName": a.Principal}}
			},
			"ListAttachedRolePolicies"},
		{modes[3],
			func(a grants.Assignment) call {
				return call{"PutUserPolicy", map[string]string{"PolicyName": "jitbot-" + a.GrantID, "UserName": a.Principal}}
			},
			func(a grants.Assignment) call {
				return call{"DeleteUserPolicy", map[string]string{"PolicyName": "jitbot-" + a.GrantID, "UserName": a.Principal}}
			},
			"GetUserPolicy"},
	}
	for _, c := range cases {
		t.Run(c.mode.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.provider(t, nil)
			a := e.assignment(c.mode)
			match := func(got awsfake.Call, want call) {
				t.Helper()
				if got.Service != awsfake.ServiceIAM || got.Operation != want.op || got.Param("Action") != want.op ||
					got.Param("Version") != "2010-05-08" {
					t.Fatalf("call = %s %s %v, want %s", got.Service, got.Operation, got.Params, want.op)
				}
				for k, v := range want.params {
					if got.Param(k) != v {
						t.Errorf("%s %s = %q, want %q", want.op, k, got.Param(k), v)
					}
				}
			}
			e.fake.ClearCalls()
			if _, err := p.Grant(ctx(t), a); err != nil {
				t.Fatal(err)
			}
			calls := e.fake.Calls()
			// Memberships and attachments carry no marker: the adapter looks first (standing access is not
			// jitbot's), then adds. Inline policies are jitbot's by name.
			want := 1
			if c.mode.name != "inline-json" && c.mode.name != "inline-named" {
				want = 2
				if calls[0].Operation != c.check {
					t.Fatalf("grant made %v, want %s first", e.fake.Operations(), c.check)
				}
			}
			if len(calls) != want {
				t.Fatalf("grant made %v", e.fake.Operations())
			}
			last := calls[len(calls)-1]
			match(last, c.grant(a))
			if n := len(last.Params); c.mode.name != "inline-named" && n != 4 {
				t.Errorf("grant params = %v, want Action, Version and two more", last.Params)
			}

			e.fake.ClearCalls()
			if ok, err := p.Check(ctx(t), a); err != nil || !ok {
				t.Fatalf("Check = %v, %v", ok, err)
			}
			if ops := e.fake.Operations(); len(ops) < 1 || ops[0] != c.check {
				t.Fatalf("check made %v, want %s", ops, c.check)
			}

			e.fake.ClearCalls()
			if err := p.Revoke(ctx(t), a); err != nil {
				t.Fatal(err)
			}
			calls = e.fake.Calls()
			if len(calls) != 1 {
				t.Fatalf("revoke made %v", e.fake.Operations())
			}
			match(calls[0], c.revoke(a))
			if c.mode.present(e.fake, a) {
				t.Fatal("still present after revoke")
			}
			if errs := e.fake.SignatureErrors(); len(errs) > 0 {
				t.Errorf("SigV4: %v", errs)
			}
		})
	}
}

func TestInlinePolicyExpiresAtAWS(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	for _, m := range []mode{modes[3], modes[4]} {
		a := e.assignment(m)
		a.ExpiresAt = time.Date(2031, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
		e.fake.ClearCalls()
		if _, err := p.Grant(ctx(t), a); err != nil {
			t.Fatal(err)
		}
		sent := e.fake.Calls()[0].Param("PolicyDocument")
		stored, _ := e.fake.InlinePolicy(a.Principal, "jitbot-"+a.GrantID)
		if sent != stored {
			t.Fatalf("stored document differs from the sent one")
		}
		var doc struct {
			Version   string
			Statement []struct {
				Effect    string
				Action    string
				Condition map[string]map[string]string
			}
		}
		if err := json.Unmarshal([]byte(sent), &doc); err != nil {
			t.Fatalf("PolicyDocument %q: %v", sent, err)
		}
		if doc.Version != "2012-10-17" || len(doc.Statement) != 2 {
			t.Fatalf("document = %s", sent)
		}
		for i, st := range doc.Statement {
			if got := st.Condition["DateLessThan"]["aws:CurrentTime"]; got != "2031-03-04T04:06:07Z" {
				t.Errorf("statement %d: DateLessThan aws:CurrentTime = %q, want the expiry in UTC", i, got)
			}
			if st.Action == "" || st.Effect != "Allow" {
				t.Errorf("statement %d lost its content: %+v", i, st)
			}
		}
	}
}

func TestDocument(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	// A single statement object, an existing condition, and an earlier bound that must be kept.
	in := `{"Statement":{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*","Condition":{"Bool":{"aws:MultiFactorAuthPresent":"true"},"DateLessThan":{"aws:CurrentTime":"2029-01-01T00:00:00Z"}}}}`
	out, err := jiam.Document(in, exp)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	_ = json.Unmarshal([]byte(out), &doc)
	st := doc["Statement"].([]any)[0].(map[string]any)
	cond := st["Condition"].(map[string]any)
	if cond["DateLessThan"].(map[string]any)["aws:CurrentTime"] != "2029-01-01T00:00:00Z" || cond["Bool"] == nil {
		t.Fatalf("document = %s", out)
	}
	later := strings.Replace(in, "2029-01-01", "2035-01-01", 1)
	out, _ = jiam.Document(later, exp)
	if !strings.Contains(out, `"aws:CurrentTime":"2030-01-02T03:04:05Z"`) {
		t.Fatalf("later bound not replaced by the expiry: %s", out)
	}
	for _, bad := range []string{`[]`, `{"Statement":[]}`, `{"Statement":[{"Action":"s3:*"}]}`, `{"Version":"2012-10-17"}`, `{"Statement":[{"Effect":"Allow","Condition":"x"}]}`} {
		if _, err := jiam.Document(bad, exp); err == nil {
			t.Errorf("Document(%s) accepted", bad)
		}
	}
}

func TestInlineNeedsExpiry(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	a := e.assignment(modes[3])
	a.ExpiresAt = time.Time{}
	if _, err := p.Grant(ctx(t), a); !grants.IsPermanent(err) {
		t.Fatalf("inline grant without expiry: %v", err)
	}
	if len(e.fake.Calls()) != 0 {
		t.Fatal("called IAM anyway")
	}
}

func TestErrorClassification(t *testing.T) {
	cases := []struct {
		fault  awsfake.Fault
		status int
		op     string // grant op to inject on
		want   string // "permanent", "retryable", "success"
	}{
		{awsfake.Throttling, 0, "AddUserToGroup", "retryable"},
		{awsfake.Throttling, 429, "AddUserToGroup", "retryable"},
		{awsfake.ServerError, 0, "AddUserToGroup", "retryable"},
		{awsfake.ServerError, 503, "AddUserToGroup", "retryable"},
		{awsfake.LimitExceeded, 0, "AddUserToGroup", "permanent"},
		{awsfake.NotFound, 0, "AddUserToGroup", "permanent"},
		{awsfake.AccessDenied, 0, "AddUserToGroup", "permanent"},
		{awsfake.Validation, 0, "AddUserToGroup", "permanent"},
		{awsfake.AlreadyExists, 0, "AddUserToGroup", "success"},
		{awsfake.Conflict, 0, "AddUserToGroup", "success"}, // retried internally
	}
	for _, c := range cases {
		e := newEnv(t)
		p := e.provider(t, nil)
		a := e.assignment(modes[0])
		e.fake.Inject(c.op, c.fault, c.status, 1)
		_, err := p.Grant(ctx(t), a)
		got := "success"
		if err != nil {
			got = "retryable"
			if grants.IsPermanent(err) {
				got = "permanent"
			}
		}
		if got != c.want {
			t.Errorf("fault %d (status %d): %s (%v), want %s", c.fault, c.status, got, err, c.want)
		}
	}
}

func TestConcurrentModificationRetried(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	a := e.assignment(modes[1])
	e.fake.Inject("AttachUserPolicy", awsfake.Conflict, 0, 3)
	e.fake.ClearCalls()
	if _, err := p.Grant(ctx(t), a); err != nil {
		t.Fatal(err)
	}
	if ops := e.fake.Operations(); !slices.Equal(ops, []string{"ListAttachedUserPolicies", "AttachUserPolicy", "AttachUserPolicy", "AttachUserPolicy", "AttachUserPolicy"}) {
		t.Fatalf("operations = %v", ops)
	}
	b := e.assignment(modes[1])
	e.fake.Inject("AttachUserPolicy", awsfake.Conflict, 0, 100)
	_, err := p.Grant(ctx(t), b)
	e.fake.Reset()
	if err == nil || grants.IsPermanent(err) {
		t.Fatalf("persistent ConcurrentModification: %v, want retryable", err)
	}
}

func TestNotFound(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	ghost := grants.Assignment{GrantID: "g-x", Principal: "ghost", Target: map[string]string{"group": group}, ExpiresAt: time.Now().Add(time.Hour)}
	if _, err := p.Grant(ctx(t), ghost); !grants.IsPermanent(err) || !strings.Contains(err.Error(), "NoSuchEntity") {
		t.Fatalf("grant to an unknown user: %v", err)
	}
	if err := p.Revoke(ctx(t), ghost); err != nil {
		t.Fatalf("revoke of an unknown user: %v", err)
	}
	if ok, err := p.Check(ctx(t), ghost); err != nil || ok {
		t.Fatalf("check of an unknown user: %v, %v", ok, err)
	}
	a := e.assignment(modes[0])
	a.Target = map[string]string{"group": "no-such-group"}
	if _, err := p.Grant(ctx(t), a); !grants.IsPermanent(err) {
		t.Fatalf("grant to an unknown group: %v", err)
	}
	m := e.assignment(modes[1])
	m.Target = map[string]string{"managed_policy_arn": "arn:aws:iam::123456789012:policy/Nope"}
	if _, err := p.Grant(ctx(t), m); !grants.IsPermanent(err) {
		t.Fatalf("attach of an unknown policy: %v", err)
	}
	for _, mo := range modes {
		x := e.assignment(mo)
		if err := p.Revoke(ctx(t), x); err != nil {
			t.Fatalf("%s: revoke of something never granted: %v", mo.name, err)
		}
	}
}

func TestLimitExceededByTheFake(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	a := e.assignment(modes[3])
	big := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::` + strings.Repeat("b", 2100) + `"}]}`
	a.Target = map[string]string{"inline_policy": big}
	_, err := p.Grant(ctx(t), a)
	if !grants.IsPermanent(err) || !strings.Contains(err.Error(), "LimitExceeded") {
		t.Fatalf("oversized inline policy: %v", err)
	}
}

func TestListOwned(t *testing.T) {
	e := newEnv(t)
	a := e.assignment(modes[3])
	b := e.assignment(modes[3])
	p := e.provider(t, func(c *jiam.Config) { c.ScanUsers = []string{a.Principal, b.Principal, "deleted-user"} })
	for _, x := range []grants.Assignment{a, b} {
		if _, err := p.Grant(ctx(t), x); err != nil {
			t.Fatal(err)
		}
	}
	b2 := b
	b2.GrantID = "g-second"
	if _, err := p.Grant(ctx(t), b2); err != nil {
		t.Fatal(err)
	}
	e.fake.SetInlinePolicy(a.Principal, "human-made", s3Reader, true)
	e.fake.SetInlinePolicy(a.Principal, "jitbot-sha256-0123456789abcdef0123456789abcdef", s3Reader, true)
	owned, err := p.ListOwned(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range owned {
		got = append(got, o.Principal+":"+o.GrantID+":"+o.Target["inline_policy"])
	}
	slices.Sort(got)
	want := []string{
		a.Principal + ":" + a.GrantID + ":jitbot-" + a.GrantID,
		a.Principal + "::jitbot-sha256-0123456789abcdef0123456789abcdef",
		b.Principal + ":" + b.GrantID + ":jitbot-" + b.GrantID,
		b.Principal + ":g-second:jitbot-g-second",
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("owned = %v\nwant %v", got, want)
	}
	// The reconciler can revoke what it found.
	for _, o := range owned {
		if o.GrantID == "" {
			continue
		}
		if err := p.Revoke(ctx(t), grants.Assignment{GrantID: o.GrantID, Principal: o.Principal, Target: o.Target}); err != nil {
			t.Fatalf("revoking owned %+v: %v", o, err)
		}
	}
	if _, ok := e.fake.InlinePolicy(b.Principal, "jitbot-g-second"); ok {
		t.Fatal("owned policy not revoked")
	}
}

func TestInlinePolicyName(t *testing.T) {
	if got := jiam.InlinePolicyName("g-23abc"); got != "jitbot-g-23abc" {
		t.Fatal(got)
	}
	got := jiam.InlinePolicyName("weird id/with spaces")
	if !strings.HasPrefix(got, "jitbot-sha256-") || len(got) != len("jitbot-sha256-")+32 {
		t.Fatal(got)
	}
}

func TestValidateTarget(t *testing.T) {
	for _, ok := range []map[string]string{
		{"group": "admins"},
		{"managed_policy_arn": readOnly},
		{"managed_policy_arn": "arn:aws:iam::123456789012:policy/team/DbAdmin", "principal_type": "role"},
		{"inline_policy": namedName},
		{"inline_policy": s3Reader},
	} {
		if err := jiam.ValidateTarget(ok); err != nil {
			t.Errorf("ValidateTarget(%v) = %v", ok, err)
		}
	}
	for _, c := range []struct {
		target map[string]string
		want   string
	}{
		{map[string]string{}, "exactly one of"},
		{map[string]string{"group": "a", "inline_policy": "b"}, "exactly one of"},
		{map[string]string{"group": "a b"}, "not an IAM group name"},
		{map[string]string{"group": "a", "principal_type": "role"}, `"principal_type" does not go with group`},
		{map[string]string{"managed_policy_arn": "ReadOnlyAccess"}, "not a managed policy ARN"},
		{map[string]string{"managed_policy_arn": readOnly, "principal_type": "group"}, "want user or role"},
		{map[string]string{"inline_policy": `{"Statement":[]}`}, "no statements"},
		{map[string]string{"inline_policy": "has space"}, "neither a JSON policy document nor a policy name"},
	} {
		err := jiam.ValidateTarget(c.target)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ValidateTarget(%v) = %v, want %q", c.target, err, c.want)
		}
	}
	s := jiam.Settings{Policies: map[string]string{namedName: s3Reader}}
	if err := s.ValidateTarget(map[string]string{"inline_policy": "unknown"}); err == nil || !strings.Contains(err.Error(), "names no policy") {
		t.Errorf("Settings.ValidateTarget(unknown policy) = %v", err)
	}
	if err := s.ValidateTarget(map[string]string{"inline_policy": namedName}); err != nil {
		t.Error(err)
	}
}

func TestSettingsValidate(t *testing.T) {
	if err := (jiam.Settings{}).Validate(); err != nil {
		t.Fatal(err)
	}
	bad := jiam.Settings{Region: "mars", Endpoint: "ftp://x", Policies: map[string]string{"ok": "{", "bad name": s3Reader}, ScanUsers: []string{"a b"}}
	err := bad.Validate()
	for _, want := range []string{"region", "endpoint", "policies: ok", `"bad name"`, "scan_users"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a problem with %s", err, want)
		}
	}
}

func TestNoSecretInErrors(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	for _, f := range []awsfake.Fault{awsfake.Throttling, awsfake.AccessDenied, awsfake.ServerError, awsfake.LimitExceeded} {
		e.fake.Inject("", f, 0, 1)
		_, err := p.Grant(ctx(t), e.assignment(modes[4]))
		if err == nil || strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, err), secret) {
			t.Fatalf("fault %d: err %v (or the secret appears in it)", f, err == nil)
		}
	}
}

// TestInlineOverlappingLeasesShareOnePolicy: overlapping grants of one access carry one BindingKey and must
// map to one inline policy, so that jitbot's single revoke (sent with the last lease) leaves nothing behind.
func TestInlineOverlappingLeasesShareOnePolicy(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	first := e.assignment(modes[4])
	first.BindingKey = "0123456789abcdef0123456789abcdef"
	second := first
	second.GrantID, second.ExpiresAt = "g-second", first.ExpiresAt.Add(time.Hour)
	for _, a := range []grants.Assignment{first, second} {
		if _, err := p.Grant(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	doc, ok := e.fake.InlinePolicy(first.Principal, "jitbot-"+first.BindingKey)
	if !ok || !strings.Contains(doc, second.ExpiresAt.UTC().Format(time.RFC3339)) {
		t.Fatalf("shared policy present=%v, want it to carry the later expiry: %s", ok, doc)
	}
	if _, ok := e.fake.InlinePolicy(first.Principal, "jitbot-"+first.GrantID); ok {
		t.Fatal("a per-grant policy was created for a lease of a binding")
	}
	if err := p.Revoke(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.fake.InlinePolicy(first.Principal, "jitbot-"+first.BindingKey); ok {
		t.Fatal("the binding's revoke left the policy in place")
	}
}

// Issue 10 item 1: once jitbot has asked IAM to add the membership, it is jitbot's, even when the answer is
// lost: a retry that finds the membership (applied by the failed call) must not take it for standing access.
func TestAddWhoseAnswerWasLostStaysJitbots(t *testing.T) {
	e := newEnv(t)
	p := e.provider(t, nil)
	a := e.assignment(modes[0])
	e.fake.Inject("AddUserToGroup", awsfake.ServerError, 0, 1)
	ref, err := p.Grant(ctx(t), a)
	if err == nil || ref == "" || grants.IsPreExisting(ref) {
		t.Fatalf("failed add: ref %q, err %v; want jitbot's reference with a retryable error", ref, err)
	}
	e.fake.SetInGroup(group, a.Principal, true) // the call did apply; only its answer was lost
	a.Ref = ref
	ref, err = p.Grant(ctx(t), a)
	if err != nil || grants.IsPreExisting(ref) {
		t.Fatalf("retry: ref %q, err %v; want jitbot's own", ref, err)
	}
	a.Ref = ref
	if err := p.Revoke(ctx(t), a); err != nil || e.fake.InGroup(group, a.Principal) {
		t.Fatalf("revoke: %v; still a member: %v", err, e.fake.InGroup(group, a.Principal))
	}
	// And a pre-existing reference is honoured by Revoke on its own.
	b := e.assignment(modes[0])
	e.fake.SetInGroup(group, b.Principal, true)
	ref, err = p.Grant(ctx(t), b)
	if err != nil || !grants.IsPreExisting(ref) {
		t.Fatalf("standing membership: ref %q, err %v", ref, err)
	}
	b.Ref = ref
	if err := p.Revoke(ctx(t), b); err != nil || !e.fake.InGroup(group, b.Principal) {
		t.Fatalf("revoke of standing membership: %v; member: %v", err, e.fake.InGroup(group, b.Principal))
	}
}
