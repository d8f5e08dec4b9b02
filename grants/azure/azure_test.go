package azure_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/azure"
	"github.com/jitbot/jitbot/grants/azure/azurefake"
)

func writes(f *azurefake.Server) []azurefake.Request {
	var out []azurefake.Request
	for _, r := range f.Requests() {
		if r.Method != http.MethodGet {
			out = append(out, r)
		}
	}
	return out
}

func noToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testToken) {
		t.Fatalf("error contains the token")
	}
}

func TestGrantRequestShape(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, nil)
	a := newAssignment("")
	ref, err := p.Grant(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	name := azure.AssignmentName(a.GrantID)
	wantPath := rg + "/providers/Microsoft.Authorization/roleAssignments/" + name
	if ref != wantPath {
		t.Errorf("ref = %q, want %q", ref, wantPath)
	}
	reqs := f.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1 PUT", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPut || r.Path != wantPath || r.Query.Get("api-version") != "2022-04-01" || !r.HadBearer {
		t.Fatalf("request = %s %s ?%s bearer=%v", r.Method, r.Path, r.RawQuery, r.HadBearer)
	}
	if !strings.Contains(r.ClientUA, "jitbot") {
		t.Errorf("User-Agent %q lacks jitbot", r.ClientUA)
	}
	var body struct {
		Properties map[string]any `json:"properties"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	pr := body.Properties
	if pr["principalId"] != a.Principal || pr["principalType"] != "User" ||
		pr["roleDefinitionId"] != "/subscriptions/"+subID+"/providers/Microsoft.Authorization/roleDefinitions/"+readerID {
		t.Errorf("body = %s", r.Body)
	}
	desc, _ := pr["description"].(string)
	if !strings.HasPrefix(desc, "jitbot grant "+a.GrantID+" (role prod-reader, request r-"+a.GrantID+", expires ") {
		t.Errorf("description = %q", desc)
	}
	// A fault, then a retry: the same name both times.
	b := newAssignment("")
	f.ClearRequests()
	f.FailNext(azurefake.ServerError())
	if _, err := p.Grant(t.Context(), b); err == nil || grants.IsPermanent(err) {
		t.Fatalf("500: err = %v, want retryable", err)
	}
	if _, err := p.Grant(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	w := writes(f)
	if len(w) != 2 || w[0].Path != w[1].Path || !strings.HasSuffix(w[0].Path, "/"+azure.AssignmentName(b.GrantID)) {
		t.Fatalf("writes = %+v", w)
	}
	// Revoke and Check use the same name.
	f.ClearRequests()
	if err := p.Revoke(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if present, err := p.Check(t.Context(), b); err != nil || present {
		t.Fatalf("Check = %v, %v", present, err)
	}
	// Check: GET of jitbot's name (404), then the list that would find an equal assignment someone else made.
	rs := f.Requests()
	if len(rs) != 3 || rs[0].Method != http.MethodDelete || rs[0].Path != w[0].Path || rs[1].Method != http.MethodGet || rs[1].Path != w[0].Path ||
		rs[1].Status != http.StatusNotFound || rs[1].ErrorCode != "RoleAssignmentNotFound" ||
		rs[2].Method != http.MethodGet || rs[2].Query.Get("$filter") != "principalId eq '"+b.Principal+"'" {
		t.Fatalf("revoke/check requests = %+v", rs)
	}
}

func TestRepeatedPutAnswered409(t *testing.T) {
	f := newFake(t) // IdempotentPut false: ARM answers a repeated PUT with 409 RoleAssignmentExists
	p := newProvider(t, f, nil)
	a := newAssignment("")
	for range 2 {
		ref, err := p.Grant(t.Context(), a)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(ref, "pre-existing") {
			t.Fatalf("own assignment reported as pre-existing: %q", ref)
		}
	}
	f.IdempotentPut = true
	if _, err := p.Grant(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Assignments(rg, a.Principal, readerID)); n != 1 {
		t.Fatalf("%d assignments", n)
	}
}

func TestRoleAssignmentExistsUnderOtherName(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, nil)
	a := newAssignment("")
	standing := f.AddAssignment(rg, "0b0b0b0b-0000-4000-8000-000000000001", a.Principal, "User",
		"/subscriptions/"+subID+"/providers/Microsoft.Authorization/roleDefinitions/"+readerID, "standing access")
	ref, err := p.Grant(t.Context(), a)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	if !strings.Contains(ref, standing.ID) || !strings.Contains(ref, "pre-existing") {
		t.Fatalf("ref = %q, want the existing id and a note", ref)
	}
	var put azurefake.Request
	for _, r := range f.Requests() {
		if r.Method == http.MethodPut {
			put = r
		}
	}
	if put.Status != http.StatusConflict || put.ErrorCode != "RoleAssignmentExists" {
		t.Fatalf("PUT answered %d %s", put.Status, put.ErrorCode)
	}
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Assignments(rg, a.Principal, readerID)); n != 1 {
		t.Fatalf("revoke removed the standing assignment (%d left)", n)
	}
}

func TestPrincipalNotFoundIsRetryableUntilReplicated(t *testing.T) {
	f := newFake(t)
	f.SetReplicationDelay(2)
	p := newProvider(t, f, nil)
	a := newAssignment("")
	for i := range 2 {
		_, err := p.Grant(t.Context(), a)
		if err == nil || grants.IsPermanent(err) || azure.CodeOf(err) != "PrincipalNotFound" || azure.StatusOf(err) != 400 {
			t.Fatalf("attempt %d: err = %v, want retryable PrincipalNotFound", i+1, err)
		}
	}
	if _, err := p.Grant(t.Context(), a); err != nil {
		t.Fatalf("after replication: %v", err)
	}
	w := writes(f)
	if len(w) != 3 || w[0].Path != w[2].Path {
		t.Fatalf("writes = %d, paths differ", len(w))
	}
}

func TestThrottlingExposesRetryAfterAndSDKDoesNotRetry(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, nil)
	a := newAssignment("")
	f.FailNext(azurefake.Throttled(7))
	_, err := p.Grant(t.Context(), a)
	if err == nil || grants.IsPermanent(err) {
		t.Fatalf("err = %v, want retryable", err)
	}
	if got := azure.RetryAfterOf(err); got != 7*time.Second {
		t.Errorf("RetryAfterOf = %s, want 7s", got)
	}
	if n := len(f.Requests()); n != 1 {
		t.Errorf("%d requests: the SDK retried on its own", n)
	}
	var ae *azure.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 429 || ae.RequestID == "" {
		t.Errorf("APIError = %+v", ae)
	}
}

func TestErrorClassification(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, nil)
	cases := []struct {
		fault     azurefake.Fault
		permanent bool
	}{
		{azurefake.AuthorizationFailed(), true},
		{azurefake.Fault{Status: 400, Code: "InvalidRoleDefinitionId", Message: "x"}, true},
		{azurefake.Fault{Status: 401, Code: "ExpiredAuthenticationToken", Message: "x"}, false},
		{azurefake.Fault{Status: 503, Code: "ServiceUnavailable", Message: "x"}, false},
		{azurefake.PrincipalNotFound("00000000-0000-0000-0000-000000000000"), false},
	}
	for _, c := range cases {
		f.FailNext(c.fault)
		_, err := p.Grant(t.Context(), newAssignment(""))
		if err == nil || grants.IsPermanent(err) != c.permanent || azure.CodeOf(err) != c.fault.Code {
			t.Errorf("%d %s: err = %v (permanent %v)", c.fault.Status, c.fault.Code, err, grants.IsPermanent(err))
		}
		noToken(t, err)
	}
	// A role definition that does not exist, from the fake's own validation.
	f.SetRoleDefinitions(readerID)
	a := newAssignment("")
	a.Target["role_definition_id"] = "b24988ac-6180-42a0-ab88-20f7382dd24c"
	if _, err := p.Grant(t.Context(), a); !grants.IsPermanent(err) || azure.CodeOf(err) != "RoleDefinitionDoesNotExist" {
		t.Errorf("unknown role: %v", err)
	}
}

func TestRevokeAbsentAndNotFound(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, nil)
	a := newAssignment("")
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if r := f.Requests()[0]; r.Method != http.MethodDelete || r.Status != http.StatusNoContent {
		t.Fatalf("DELETE of an absent assignment answered %d", r.Status)
	}
	f.FailNext(azurefake.NotFound())
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatalf("404 on revoke: %v", err)
	}
}

func TestContextAndCredential(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Grant(ctx, newAssignment("")); !errors.Is(err, context.Canceled) || grants.IsPermanent(err) {
		t.Fatalf("cancelled: %v", err)
	}
	if len(f.Requests()) != 0 {
		t.Fatal("a cancelled call reached the API")
	}
	// The fake would answer after an hour: a call that returns at all was ended by its deadline (the bound
	// below only turns a hang into a failure; it is no speed check).
	f.SetLatency(time.Hour)
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := p.Check(ctx, newAssignment(""))
	f.SetLatency(0)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Minute {
		t.Fatalf("deadline in flight: %v after %s", err, time.Since(start))
	}
	f.SetLatency(0)

	bad := newProvider(t, f, func(c *azure.Config) {
		c.Credential = &azurefake.StaticCredential{Err: errors.New("ManagedIdentityCredential: no identity endpoint")}
	})
	_, err = bad.Grant(t.Context(), newAssignment(""))
	if err == nil || grants.IsPermanent(err) {
		t.Fatalf("credential failure: %v, want retryable", err)
	}
}

func TestFakeRequiresTokenAndAPIVersion(t *testing.T) {
	f := newFake(t)
	path := f.URL + rg + "/providers/Microsoft.Authorization/roleAssignments/" + azure.AssignmentName("x")
	for _, c := range []struct {
		url, auth, code string
		status          int
	}{
		{path + "?api-version=2022-04-01", "", "AuthenticationFailed", 401},
		{path, "Bearer abc", "MissingApiVersionParameter", 400},
		{path + "?api-version=2020-10-01", "Bearer abc", "InvalidApiVersionParameter", 400},
		{path + "?api-version=2022-04-01", "Bearer abc", "RoleAssignmentNotFound", 404},
	} {
		req, _ := http.NewRequest(http.MethodGet, c.url, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := f.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.status || e.Error.Code != c.code || strings.Contains(e.Error.Message, "abc") {
			t.Errorf("%s auth=%q: %d %s %q", c.url, c.auth, resp.StatusCode, e.Error.Code, e.Error.Message)
		}
	}
}

func TestTargetValidation(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, nil)
	good := []map[string]string{
		{"scope": rg, "role_definition_id": readerID},
		{"scope": "/subscriptions/" + subID, "role_definition_id": "/subscriptions/" + subID + "/providers/Microsoft.Authorization/roleDefinitions/" + readerID, "principal_type": "Group"},
		{"scope": rg + "/providers/Microsoft.Storage/storageAccounts/st1", "role_definition_id": readerID, "mode": "pim"},
		{"scope": "/providers/Microsoft.Management/managementGroups/platform", "role_definition_id": readerID, "principal_type": "ServicePrincipal"},
	}
	for _, g := range good {
		if err := p.ValidateTarget(g); err != nil {
			t.Errorf("%v: %v", g, err)
		}
	}
	bad := []map[string]string{
		{},
		{"scope": rg},
		{"role_definition_id": readerID},
		{"scope": "subscriptions/" + subID, "role_definition_id": readerID},
		{"scope": rg + "?x=1", "role_definition_id": readerID},
		{"scope": "/subscriptions/00000000-0000-0000-0000-000000000001", "role_definition_id": readerID}, // another subscription
		{"scope": rg, "role_definition_id": "Reader"},
		{"scope": rg, "role_definition_id": readerID, "principal_type": "Robot"},
		{"scope": rg, "role_definition_id": readerID, "mode": "eligible"},
		{"scope": rg, "role_definition_id": readerID, "scopes": rg},
	}
	for _, b := range bad {
		if err := p.ValidateTarget(b); err == nil {
			t.Errorf("%v accepted", b)
		}
	}
	a := newAssignment("")
	a.Principal = "alice@example.com"
	if _, err := p.Grant(t.Context(), a); !grants.IsPermanent(err) {
		t.Errorf("non-GUID principal: %v", err)
	}
	if len(f.Requests()) != 0 {
		t.Error("an invalid assignment reached the API")
	}
}

func TestISODuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		90 * time.Minute:                 "PT1H30M",
		89*time.Minute + 30*time.Second:  "PT1H30M",
		61 * time.Second:                 "PT2M",
		time.Hour:                        "PT1H",
		5 * time.Minute:                  "PT5M",
		26*time.Hour + 1*time.Nanosecond: "PT26H1M",
	} {
		if got := azure.ISODuration(d); got != want {
			t.Errorf("ISODuration(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestPIMRequestShape(t *testing.T) {
	f := newFake(t)
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	f.Now = func() time.Time { return now }
	p := newProvider(t, f, func(c *azure.Config) { c.Mode = "pim"; c.Now = func() time.Time { return now } })
	a := newAssignment("")
	a.ExpiresAt = now.Add(89*time.Minute + 30*time.Second)
	ref, err := p.Grant(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	name := azure.RequestName(a.GrantID+"/"+a.GrantID, "assign", 0) // no binding key: the grant id stands in
	wantPath := rg + "/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/" + name
	if ref != wantPath {
		t.Errorf("ref = %q", ref)
	}
	var put azurefake.Request
	for _, r := range f.Requests() {
		if r.Query.Get("api-version") != "2020-10-01" {
			t.Errorf("%s %s api-version %q", r.Method, r.Path, r.Query.Get("api-version"))
		}
		if r.Method == http.MethodPut {
			put = r
		}
	}
	if put.Path != wantPath {
		t.Fatalf("PUT path %q, want %q", put.Path, wantPath)
	}
	var body struct {
		Properties struct {
			PrincipalID, RoleDefinitionID, RequestType, Justification string
			ScheduleInfo                                              struct {
				StartDateTime time.Time
				Expiration    struct {
					Type        string
					EndDateTime time.Time
				}
			}
		}
	}
	if err := json.Unmarshal(put.Body, &body); err != nil {
		t.Fatal(err)
	}
	pr := body.Properties
	if pr.RequestType != "AdminAssign" || pr.PrincipalID != a.Principal || !strings.HasSuffix(pr.RoleDefinitionID, "/roleDefinitions/"+readerID) ||
		!strings.HasPrefix(pr.Justification, "jitbot grant "+a.GrantID+": assign, role prod-reader, request r-"+a.GrantID) ||
		!pr.ScheduleInfo.StartDateTime.Equal(now) || pr.ScheduleInfo.Expiration.Type != "AfterDateTime" ||
		!pr.ScheduleInfo.Expiration.EndDateTime.Equal(a.ExpiresAt.Truncate(time.Second)) {
		t.Fatalf("body = %s", put.Body)
	}
	if present, err := p.Check(t.Context(), a); err != nil || !present {
		t.Fatalf("Check = %v, %v", present, err)
	}
	// Azure ends it at expiry by itself.
	now = now.Add(91 * time.Minute)
	if present, err := p.Check(t.Context(), a); err != nil || present {
		t.Fatalf("after expiry Check = %v, %v", present, err)
	}
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
}

func TestPIMRevokeAndRegrant(t *testing.T) {
	f := newFake(t)
	f.MinActiveDuration = 5 * time.Minute
	now := time.Now().UTC()
	f.Now = func() time.Time { return now }
	p := newProvider(t, f, func(c *azure.Config) { c.Mode = "pim"; c.Now = func() time.Time { return now } })
	a := newAssignment("")
	a.ExpiresAt = now.Add(2 * time.Hour)
	if _, err := p.Grant(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	err := p.Revoke(t.Context(), a)
	if err == nil || grants.IsPermanent(err) || azure.CodeOf(err) != "ActiveDurationTooShort" {
		t.Fatalf("early revoke: %v, want retryable ActiveDurationTooShort", err)
	}
	now = now.Add(6 * time.Minute)
	f.ClearRequests()
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	var put azurefake.Request
	for _, r := range f.Requests() {
		if r.Method == http.MethodPut {
			put = r
		}
	}
	key := a.GrantID + "/" + a.GrantID
	if !strings.HasSuffix(put.Path, "/"+azure.RequestName(key, "remove", 0)) || !strings.Contains(string(put.Body), `"requestType":"AdminRemove"`) {
		t.Fatalf("remove PUT = %s %s", put.Path, put.Body)
	}
	if len(f.ActiveInstances(rg, a.Principal, readerID)) != 0 {
		t.Fatal("still active")
	}
	// Granting again after a revoke needs a new request name; so does revoking again.
	if _, err := p.Grant(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Minute)
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range f.ScheduleRequests() {
		names[r.Name] = true
	}
	for _, n := range []string{azure.RequestName(key, "assign", 0), azure.RequestName(key, "assign", 1),
		azure.RequestName(key, "remove", 0), azure.RequestName(key, "remove", 1)} {
		if !names[n] {
			t.Errorf("request %s missing", n)
		}
	}
	// Faults on the write itself.
	b := newAssignment("")
	f.FailNext(azurefake.Fault{Status: 429, Code: "TooManyRequests", Message: "x", RetryAfter: "2",
		Match: func(m, _ string) bool { return m == http.MethodPut }})
	if _, err := p.Grant(t.Context(), b); err == nil || grants.IsPermanent(err) || azure.RetryAfterOf(err) != 2*time.Second {
		t.Fatalf("429 on PUT: %v", err)
	}
	f.FailNext(azurefake.Fault{Status: 403, Code: "AuthorizationFailed", Message: "x", Match: func(m, _ string) bool { return m == http.MethodPut }})
	if _, err := p.Grant(t.Context(), b); !grants.IsPermanent(err) {
		t.Fatalf("403 on PUT: %v", err)
	}
	if _, err := p.Grant(t.Context(), b); err != nil {
		t.Fatal(err)
	}
}

func TestPIMLeavesStandingAccess(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, func(c *azure.Config) { c.Mode = "pim" })
	a := newAssignment("")
	f.SetInstance(rg, a.Principal, readerID, true, nil) // permanent active assignment, not jitbot's
	if _, err := p.Grant(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if len(f.ActiveInstances(rg, a.Principal, readerID)) != 1 {
		t.Fatal("revoke removed standing access jitbot did not grant")
	}
	for _, r := range f.Requests() {
		if r.Method == http.MethodPut {
			t.Fatalf("unexpected write %s %s", r.Method, r.Path)
		}
	}
}

func TestPIMRoleAssignmentExistsOnPut(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, func(c *azure.Config) { c.Mode = "pim" })
	a := newAssignment("")
	// The instance appears between the adapter's list and its PUT (propagation, or an administrator at the same
	// moment): PUT answers RoleAssignmentExists. Whose it is is decided on the next attempt, from its schedule.
	f.Drift = func(s *azurefake.Server, method, path string) {
		if method == http.MethodPut {
			s.Drift = nil
			s.SetInstance(rg, a.Principal, readerID, true, nil)
		}
	}
	_, err := p.Grant(t.Context(), a)
	if err == nil || grants.IsPermanent(err) || azure.CodeOf(err) != "RoleAssignmentExists" {
		t.Fatalf("Grant meeting RoleAssignmentExists: %v, want retryable", err)
	}
	ref, err := p.Grant(t.Context(), a)
	if err != nil || !strings.Contains(ref, "pre-existing") {
		t.Fatalf("Grant = %q, %v", ref, err)
	}
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if len(f.ActiveInstances(rg, a.Principal, readerID)) != 1 {
		t.Fatal("revoke removed an assignment jitbot did not make")
	}
}

func TestListOwned(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, func(c *azure.Config) { c.Mode = "pim"; c.Scopes = []string{"/subscriptions/" + subID} })
	rbacA := newAssignment("rbac")
	pimA := newAssignment("")
	if _, err := p.Grant(t.Context(), rbacA); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Grant(t.Context(), pimA); err != nil {
		t.Fatal(err)
	}
	f.AddAssignment(rg, "0c0c0c0c-0000-4000-8000-000000000001", newPrincipal(), "User", readerID, "made by hand")
	owned, err := p.ListOwned(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range owned {
		got[o.GrantID] = o.Target["mode"] + " " + o.Principal
	}
	if len(owned) != 2 || got[rbacA.GrantID] != "rbac "+rbacA.Principal || got[pimA.GrantID] != "pim "+pimA.Principal {
		t.Fatalf("ListOwned = %+v", owned)
	}
	for _, o := range owned {
		if err := p.Revoke(t.Context(), grants.Assignment{GrantID: o.GrantID, Principal: o.Principal, Target: o.Target}); err != nil {
			t.Fatalf("revoking %s: %v", o.GrantID, err)
		}
	}
	if owned, err := p.ListOwned(t.Context()); err != nil || len(owned) != 0 {
		t.Fatalf("after revoke: %+v, %v", owned, err)
	}
}

func TestSettings(t *testing.T) {
	good := azure.Settings{SubscriptionID: subID, Mode: "pim", Scopes: []string{rg}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if c := good.Config(); c.SubscriptionID != subID || c.Mode != "pim" || len(c.Scopes) != 1 {
		t.Fatalf("Config = %+v", c)
	}
	for _, b := range []azure.Settings{
		{},
		{SubscriptionID: "prod"},
		{SubscriptionID: subID, Mode: "jit"},
		{SubscriptionID: subID, Scopes: []string{"/subscriptions/00000000-0000-0000-0000-000000000001"}},
		{SubscriptionID: subID, Scopes: []string{"resourceGroups/rg"}},
	} {
		if err := b.Validate(); err == nil {
			t.Errorf("%+v accepted", b)
		}
	}
}

// TestOverlappingLeasesShareOneAssignment: jitbot's overlapping grants of one access carry the same
// BindingKey; they must map to one Azure assignment, which the single revoke (sent with the last lease)
// removes. Named by grant id, the first lease's assignment would survive as standing access.
func TestOverlappingLeasesShareOneAssignment(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, nil)
	first := newAssignment("")
	first.BindingKey = "b-" + first.GrantID
	second := newAssignment("")
	second.BindingKey, second.Principal = first.BindingKey, first.Principal
	for _, a := range []grants.Assignment{first, second} {
		if _, err := p.Grant(t.Context(), a); err != nil {
			t.Fatalf("grant %s: %v", a.GrantID, err)
		}
	}
	if got := f.Assignments(rg, first.Principal, readerID); len(got) != 1 {
		t.Fatalf("%d assignments for one binding, want 1", len(got))
	}
	if err := p.Revoke(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	if got := f.Assignments(rg, first.Principal, readerID); len(got) != 0 {
		t.Fatalf("after the binding's revoke %d assignments remain", len(got))
	}
}

// TestPropagationDelay: the manager verifies a revoke only after Azure's documented propagation (the method is
// grants.PropagationDelayer's; declared structurally so that it does not depend on that interface's arrival).
func TestPropagationDelay(t *testing.T) {
	var p interface{ PropagationDelay() time.Duration } = newProvider(t, newFake(t), nil)
	if got := p.PropagationDelay(); got != 10*time.Minute {
		t.Fatalf("PropagationDelay = %s, want 10m", got)
	}
}

// Drift reconciliation revokes what ListOwned found with the grant id its description names and no binding key
// (the grant record is gone, and a role assignment's name is a hash of the binding key that cannot be read
// back). The revoke must still remove that assignment, not delete a name derived from the grant id and report
// the absent name as done.
func TestDriftRevokeWithoutTheBindingKey(t *testing.T) {
	f := newFake(t)
	p := newProvider(t, f, func(c *azure.Config) { c.Scopes = []string{"/subscriptions/" + subID} })
	a := newAssignment("rbac")
	a.BindingKey = "5e1f0c7a9b2d4e6f8a0b1c2d3e4f5a6b" // as every lease the manager makes has
	if _, err := p.Grant(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	admin := newPrincipal()
	f.AddAssignment(rg, "0c0c0c0c-0000-4000-8000-000000000002", admin, "User", readerDef, "made by hand")
	owned, err := p.ListOwned(t.Context())
	if err != nil || len(owned) != 1 || owned[0].GrantID != a.GrantID || owned[0].BindingKey != "" {
		t.Fatalf("ListOwned = %+v, %v", owned, err)
	}
	o := owned[0]
	if err := p.Revoke(t.Context(), grants.Assignment{GrantID: o.GrantID, Principal: o.Principal, Target: o.Target}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Assignments(rg, a.Principal, readerID)); n != 0 {
		t.Fatalf("%d assignments of the drifted principal after the revoke, want 0", n)
	}
	if n := len(f.Assignments(rg, admin, readerID)); n != 1 {
		t.Fatalf("the revoke removed someone else's assignment (%d left, want 1)", n)
	}
}
