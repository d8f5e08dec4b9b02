package gcp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/gcp"
	"github.com/jitbot/jitbot/grants/gcp/gcpfake"
	"google.golang.org/api/option"
)

const (
	project  = "prod-data"
	resource = "projects/prod-data"
	role     = "roles/cloudsql.admin"
	alice    = "user:alice@example.com"
)

var (
	now    = time.Date(2030, 1, 2, 2, 4, 5, 0, time.UTC)
	expiry = time.Date(2030, 1, 2, 3, 4, 5, 789_000_000, time.UTC) // sub-second part is truncated
)

func fixedNow(c *gcp.Config) { c.Now = func() time.Time { return now } }

func asg(id string) grants.Assignment {
	return grants.Assignment{
		GrantID: id, RequestID: "r-" + id, UserID: "U01ALICE", Role: "db-admin", Principal: "Alice@Example.com",
		Target: map[string]string{"project": project, "role": role}, ExpiresAt: expiry,
	}
}

var ownerBinding = gcpfake.Binding{Role: "roles/owner", Members: []string{"user:owner@example.com"}}

func setup(t *testing.T, opts ...provOpt) (*gcpfake.Server, *gcp.Provider) {
	t.Helper()
	srv := newFake(t)
	srv.AddResource(resource, ownerBinding)
	return srv, newProvider(t, srv, append([]provOpt{fixedNow}, opts...)...)
}

// jsonEqual compares a JSON body with a literal, ignoring formatting.
func jsonEqual(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: bad want: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

func TestGrantRequests(t *testing.T) {
	srv, p := setup(t)
	etag := mustPolicy(t, srv, resource).Etag
	ref, err := p.Grant(t.Context(), asg("g-1"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `projects/prod-data roles/cloudsql.admin condition "jitbot g-1"`; ref != want {
		t.Errorf("ref = %q, want %q", ref, want)
	}
	reqs := srv.Requests()
	if got := methods(reqs); !slices.Equal(got, []string{"getIamPolicy", "setIamPolicy"}) {
		t.Fatalf("calls = %v", got)
	}
	get, set := reqs[0], reqs[1]
	if get.HTTP != "POST" || get.Path != "/v3/projects/prod-data:getIamPolicy" || get.Query.Get("alt") != "json" {
		t.Errorf("get: %s %s?%s", get.HTTP, get.Path, get.Query.Encode())
	}
	jsonEqual(t, "getIamPolicy body", get.Body, `{"options":{"requestedPolicyVersion":3}}`)
	if set.HTTP != "POST" || set.Path != "/v3/projects/prod-data:setIamPolicy" {
		t.Errorf("set: %s %s", set.HTTP, set.Path)
	}
	jsonEqual(t, "setIamPolicy body", set.Body, `{
		"policy": {
			"version": 3,
			"etag": "`+etag+`",
			"bindings": [
				{"role": "roles/owner", "members": ["user:owner@example.com"]},
				{"role": "roles/cloudsql.admin", "members": ["user:alice@example.com"],
				 "condition": {
					"title": "jitbot g-1",
					"description": "jitbot grant g-1 for U01ALICE (request r-g-1), expires 2030-01-02T03:04:05Z",
					"expression": "request.time < timestamp(\"2030-01-02T03:04:05Z\")"}}
			]
		},
		"updateMask": "bindings,etag"
	}`)
	for _, r := range reqs {
		if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
			t.Errorf("%s Authorization = %q, want the test token", r.Method, got)
		}
	}
	if got := set.Header.Get("X-Goog-Request-Reason"); got != "jitbot grant jitbot g-1" {
		t.Errorf("X-Goog-Request-Reason = %q", got)
	}
	pol := mustPolicy(t, srv, resource)
	if pol.Version != 3 || pol.Etag == etag || !liveJitbotBinding(pol, role, alice, "g-1", now) {
		t.Errorf("stored policy: %+v", pol)
	}
}

func TestGrantIdempotentAndExtends(t *testing.T) {
	srv, p := setup(t)
	a := asg("g-1")
	for range 2 {
		if _, err := p.Grant(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	if got := methods(srv.Requests()); !slices.Equal(got, []string{"getIamPolicy", "setIamPolicy", "getIamPolicy"}) {
		t.Errorf("granting twice: calls = %v (the second grant must not write)", got)
	}
	// An extension (or a retry with a new expiry) updates the same binding instead of adding one.
	a.ExpiresAt = expiry.Add(time.Hour)
	if _, err := p.Grant(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	pol := mustPolicy(t, srv, resource)
	if n := countTitle(pol, alice, "jitbot g-1"); n != 1 {
		t.Fatalf("%d bindings titled jitbot g-1, want 1: %+v", n, pol.Bindings)
	}
	for _, b := range pol.Bindings {
		if b.Condition != nil && b.Condition.Expression != `request.time < timestamp("2030-01-02T04:04:05Z")` {
			t.Errorf("expression after extension = %s", b.Condition.Expression)
		}
	}
}

func TestGrantKeepsOtherMembersOfItsBinding(t *testing.T) {
	srv, p := setup(t)
	if _, err := p.Grant(t.Context(), asg("g-1")); err != nil {
		t.Fatal(err)
	}
	// Someone adds bob to jitbot's binding; an extension must not extend bob's access.
	srv.Mutate(resource, func(pol *gcpfake.Policy) {
		for i, b := range pol.Bindings {
			if b.Condition != nil {
				pol.Bindings[i].Members = append(pol.Bindings[i].Members, "user:bob@example.com")
			}
		}
	})
	a := asg("g-1")
	a.ExpiresAt = expiry.Add(time.Hour)
	if _, err := p.Grant(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	pol := mustPolicy(t, srv, resource)
	var bobExpr, aliceExpr string
	for _, b := range pol.Bindings {
		if b.Condition == nil {
			continue
		}
		for _, m := range b.Members {
			switch m {
			case "user:bob@example.com":
				bobExpr = b.Condition.Expression
			case alice:
				aliceExpr = b.Condition.Expression
			}
		}
	}
	if !strings.Contains(bobExpr, "03:04:05Z") || !strings.Contains(aliceExpr, "04:04:05Z") {
		t.Errorf("bob %q, alice %q: bob must keep the old expiry and alice get the new one", bobExpr, aliceExpr)
	}
}

func TestRevokeRequests(t *testing.T) {
	srv, p := setup(t)
	if _, err := p.Grant(t.Context(), asg("g-1")); err != nil {
		t.Fatal(err)
	}
	srv.ClearRequests()
	etag := mustPolicy(t, srv, resource).Etag
	if err := p.Revoke(t.Context(), asg("g-1")); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if got := methods(reqs); !slices.Equal(got, []string{"getIamPolicy", "setIamPolicy"}) {
		t.Fatalf("calls = %v", got)
	}
	jsonEqual(t, "getIamPolicy body", reqs[0].Body, `{"options":{"requestedPolicyVersion":3}}`)
	jsonEqual(t, "setIamPolicy body", reqs[1].Body, `{
		"policy": {"version": 3, "etag": "`+etag+`",
			"bindings": [{"role": "roles/owner", "members": ["user:owner@example.com"]}]},
		"updateMask": "bindings,etag"}`)
	if pol := mustPolicy(t, srv, resource); liveJitbotBinding(pol, role, alice, "g-1", now) || len(pol.Bindings) != 1 {
		t.Errorf("after revoke: %+v", pol.Bindings)
	}
	// Revoking what is absent reads and does not write.
	srv.ClearRequests()
	if err := p.Revoke(t.Context(), asg("g-1")); err != nil {
		t.Fatal(err)
	}
	if got := methods(srv.Requests()); !slices.Equal(got, []string{"getIamPolicy"}) {
		t.Errorf("revoking an absent grant: calls = %v", got)
	}
}

func TestRevokePreservesOtherMembersAndBindings(t *testing.T) {
	srv, p := setup(t)
	cond := &gcpfake.Expr{Title: "jitbot g-1", Expression: `request.time < timestamp("2030-01-02T03:04:05Z")`}
	manual := &gcpfake.Expr{Title: "break-glass", Expression: `request.time < timestamp("2030-01-02T03:04:05Z")`}
	srv.AddResource(resource,
		ownerBinding,
		gcpfake.Binding{Role: role, Members: []string{alice, "user:bob@example.com"}, Condition: cond},
		gcpfake.Binding{Role: role, Members: []string{alice}, Condition: manual},                 // not jitbot's
		gcpfake.Binding{Role: "roles/bigquery.admin", Members: []string{alice}, Condition: cond}, // another role
	)
	if err := p.Revoke(t.Context(), asg("g-1")); err != nil {
		t.Fatal(err)
	}
	want := []gcpfake.Binding{
		ownerBinding,
		{Role: role, Members: []string{"user:bob@example.com"}, Condition: cond},
		{Role: role, Members: []string{alice}, Condition: manual},
		{Role: "roles/bigquery.admin", Members: []string{alice}, Condition: cond},
	}
	if got := mustPolicy(t, srv, resource).Bindings; !reflect.DeepEqual(got, want) {
		t.Errorf("bindings after revoke:\n got %+v\nwant %+v", got, want)
	}
}

// Leases sharing a binding differ only in grant id: revoking with the last lease must remove an earlier lease's
// binding too, or access would outlive the revocation.
func TestRevokeRemovesOverlappingLeases(t *testing.T) {
	srv, p := setup(t)
	long, short := asg("g-long"), asg("g-short")
	long.ExpiresAt = expiry.Add(3 * time.Hour)
	for _, a := range []grants.Assignment{long, short} {
		if _, err := p.Grant(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Revoke(t.Context(), short); err != nil {
		t.Fatal(err)
	}
	pol := mustPolicy(t, srv, resource)
	if liveJitbotBinding(pol, role, alice, "g-long", now) || liveJitbotBinding(pol, role, alice, "g-short", now) {
		t.Errorf("access remains after revoke: %+v", pol.Bindings)
	}
}

// A member whose account was deleted is rewritten by IAM as deleted:user:...?uid=...; revoke still removes it.
func TestRevokeDeletedMember(t *testing.T) {
	srv, p := setup(t)
	srv.AddResource(resource, ownerBinding, gcpfake.Binding{Role: role, Members: []string{"deleted:user:alice@example.com?uid=123456789"},
		Condition: &gcpfake.Expr{Title: "jitbot g-1", Expression: `request.time < timestamp("2030-01-02T03:04:05Z")`}})
	if err := p.Revoke(t.Context(), asg("g-1")); err != nil {
		t.Fatal(err)
	}
	if got := mustPolicy(t, srv, resource).Bindings; len(got) != 1 {
		t.Errorf("bindings after revoke: %+v", got)
	}
}

func TestCheck(t *testing.T) {
	srv, p := setup(t)
	present := func(p *gcp.Provider, a grants.Assignment) bool {
		t.Helper()
		ok, err := p.Check(t.Context(), a)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if present(p, asg("g-1")) {
		t.Error("present before grant")
	}
	if _, err := p.Grant(t.Context(), asg("g-1")); err != nil {
		t.Fatal(err)
	}
	srv.ClearRequests()
	if !present(p, asg("g-1")) {
		t.Error("absent after grant")
	}
	if got := methods(srv.Requests()); !slices.Equal(got, []string{"getIamPolicy"}) {
		t.Errorf("check: calls = %v (check must only read)", got)
	}
	jsonEqual(t, "getIamPolicy body", srv.Requests()[0].Body, `{"options":{"requestedPolicyVersion":3}}`)
	other := asg("g-1")
	other.Principal = "bob@example.com"
	if present(p, other) {
		t.Error("another principal is present")
	}
	// Another lease of the same access (principal, role, resource) sees it: leases share the binding.
	if !present(p, asg("g-2")) {
		t.Error("another lease of the same access does not see it")
	}
	otherRole := asg("g-3")
	otherRole.Target = map[string]string{"project": project, "role": "roles/cloudsql.viewer"}
	if present(p, otherRole) {
		t.Error("another role is present")
	}
	// After the condition's expiry the binding grants nothing.
	later := newProvider(t, srv, func(c *gcp.Config) { c.Now = func() time.Time { return expiry.Add(time.Second) } })
	if present(later, asg("g-1")) {
		t.Error("present after expiry")
	}
}

func TestConflictRereadsAndRetries(t *testing.T) {
	srv, p := setup(t)
	srv.ConcurrentWrites(2)
	if _, err := p.Grant(t.Context(), asg("g-1")); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	want := []string{"getIamPolicy", "setIamPolicy", "getIamPolicy", "setIamPolicy", "getIamPolicy", "setIamPolicy"}
	if got := methods(reqs); !slices.Equal(got, want) {
		t.Fatalf("calls = %v, want %v", got, want)
	}
	if reqs[1].Status != http.StatusConflict || reqs[3].Status != http.StatusConflict || reqs[5].Status != http.StatusOK {
		t.Errorf("statuses = %d %d %d", reqs[1].Status, reqs[3].Status, reqs[5].Status)
	}
	sets := setBodies(t, reqs)
	if sets[0].Policy.Etag == sets[2].Policy.Etag {
		t.Error("the retry reused the stale etag")
	}
	pol := mustPolicy(t, srv, resource)
	if !liveJitbotBinding(pol, role, alice, "g-1", now) {
		t.Error("grant missing after retries")
	}
	// The concurrent writers' changes survive: the retry re-read the policy instead of replaying the old one.
	var browsers []string
	for _, b := range pol.Bindings {
		if b.Role == "roles/browser" {
			browsers = append(browsers, b.Members...)
		}
	}
	if len(browsers) != 2 {
		t.Errorf("concurrent writers' members = %v, want 2", browsers)
	}
}

func TestPreconditionFailedIsAConflict(t *testing.T) {
	srv, p := setup(t)
	srv.Fail(gcpfake.Fault{Method: "setIamPolicy", Code: 412, Status: "FAILED_PRECONDITION", Message: "etag mismatch"})
	if _, err := p.Grant(t.Context(), asg("g-1")); err != nil {
		t.Fatal(err)
	}
	if got := len(srv.Requests()); got != 4 {
		t.Errorf("%d calls, want 4 (read, 412, read, write)", got)
	}
}

func TestConflictRetriesExhausted(t *testing.T) {
	srv, p := setup(t, func(c *gcp.Config) { c.MaxConflictRetries = 3 })
	srv.ConcurrentWrites(100)
	_, err := p.Grant(t.Context(), asg("g-1"))
	var ge *gcp.Error
	if err == nil || grants.IsPermanent(err) || !errors.As(err, &ge) || ge.Code != http.StatusConflict || ge.Status != "ABORTED" {
		t.Fatalf("err = %v; want a retryable 409 ABORTED *gcp.Error", err)
	}
	if n := len(setBodies(t, srv.Requests())); n != 4 {
		t.Errorf("%d writes, want 1 + 3 retries", n)
	}
	if liveJitbotBinding(mustPolicy(t, srv, resource), role, alice, "g-1", now) {
		t.Error("binding present after a failed grant")
	}
}

func TestSetFaults(t *testing.T) {
	for _, tc := range []struct {
		fault     gcpfake.Fault
		permanent bool
	}{
		{gcpfake.Throttled, false},
		{gcpfake.ServerError, false},
		{gcpfake.Unavailable, false},
		{gcpfake.AccessDenied, true},
		{gcpfake.Fault{Code: 400, Status: "INVALID_ARGUMENT", Message: "Role roles/x is not supported for this resource."}, true},
	} {
		t.Run(tc.fault.Status, func(t *testing.T) {
			srv, p := setup(t)
			f := tc.fault
			f.Method = "setIamPolicy"
			srv.Fail(f)
			_, err := p.Grant(t.Context(), asg("g-1"))
			if err == nil || grants.IsPermanent(err) != tc.permanent {
				t.Fatalf("grant: err = %v, want permanent = %v", err, tc.permanent)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d %s", f.Code, f.Status)) || !strings.Contains(err.Error(), "setIamPolicy") {
				t.Errorf("error %q does not name the call and status", err)
			}
		})
	}
}

func TestNotFoundAndDeletedResources(t *testing.T) {
	srv, p := setup(t)
	// Grant: 404 cannot heal by retrying.
	srv.Fail(gcpfake.NotFound)
	if _, err := p.Grant(t.Context(), asg("g-1")); !grants.IsPermanent(err) {
		t.Errorf("grant meeting 404: %v, want permanent", err)
	}
	// Revoke: the resource is gone, and its bindings with it.
	srv.Fail(gcpfake.NotFound)
	if err := p.Revoke(t.Context(), asg("g-1")); err != nil {
		t.Errorf("revoke meeting 404: %v, want success", err)
	}
	srv.Fail(gcpfake.NotFound)
	if ok, err := p.Check(t.Context(), asg("g-1")); ok || err != nil {
		t.Errorf("check meeting 404: %v %v, want absent", ok, err)
	}
	// Google answers 403 for a project that does not exist (or cannot be seen): permanent everywhere, since it
	// cannot be told apart from a missing permission.
	srv.RemoveResource(resource)
	if err := p.Revoke(t.Context(), asg("g-1")); !grants.IsPermanent(err) || !strings.Contains(err.Error(), "403 PERMISSION_DENIED") {
		t.Errorf("revoke on a deleted project: %v, want permanent 403", err)
	}
}

func TestBasicRolesRefused(t *testing.T) {
	for _, r := range []string{"roles/owner", "roles/editor", "roles/viewer"} {
		err := gcp.ValidateTarget(map[string]string{"project": project, "role": r})
		if err == nil || !strings.Contains(err.Error(), "basic role") || !strings.Contains(err.Error(), "conditions") {
			t.Errorf("%s: %v", r, err)
		}
	}
	srv, p := setup(t)
	a := asg("g-1")
	a.Target = map[string]string{"project": project, "role": "roles/editor"}
	if _, err := p.Grant(t.Context(), a); !grants.IsPermanent(err) {
		t.Errorf("grant of roles/editor: %v, want permanent", err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d calls for a refused target", n)
	}
}

func TestValidateTarget(t *testing.T) {
	for _, tc := range []struct {
		target map[string]string
		want   string // "" = valid, else a substring of the error
	}{
		{map[string]string{"project": "prod-data", "role": "roles/cloudsql.admin"}, ""},
		{map[string]string{"project": "123456789012", "role": "roles/cloudsql.admin"}, ""},
		{map[string]string{"project": "example.com:prod-data", "role": "roles/cloudsql.admin"}, ""},
		{map[string]string{"folder": "123456789012", "role": "roles/resourcemanager.folderViewer"}, ""},
		{map[string]string{"organization": "987654321", "role": "organizations/987654321/roles/jitDbAdmin"}, ""},
		{map[string]string{"project": "prod-data", "role": "projects/prod-data/roles/jit_admin"}, ""},
		{map[string]string{"role": "roles/cloudsql.admin"}, "one of project, folder or organization is required"},
		{map[string]string{"project": "prod-data", "folder": "1", "role": "roles/x"}, "exactly one"},
		{map[string]string{"project": "Prod_Data", "role": "roles/x"}, "not a project id"},
		{map[string]string{"project": "projects/prod-data", "role": "roles/x"}, `without "projects/"`},
		{map[string]string{"folder": "folders/123", "role": "roles/x"}, "not a numeric folder id"},
		{map[string]string{"organization": "example.com", "role": "roles/x"}, "not a numeric organization id"},
		{map[string]string{"project": "prod-data"}, "role is required"},
		{map[string]string{"project": "prod-data", "role": "cloudsql.admin"}, "not a role name"},
		{map[string]string{"project": "prod-data", "role": "projects/other-proj/roles/x_admin"}, "only be granted on that project"},
		{map[string]string{"project": "prod-data", "role": "roles/x", "region": "eu"}, `unknown key "region"`},
	} {
		err := gcp.ValidateTarget(tc.target)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.target, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want an error containing %q", tc.target, err, tc.want)
		}
	}
}

func TestNormalizePrincipal(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":                             "user:alice@example.com",
		"Alice@Example.COM":                             "user:alice@example.com",
		"user:alice@example.com":                        "user:alice@example.com",
		"group:sre@example.com":                         "group:sre@example.com",
		"serviceAccount:ci@p1.iam.gserviceaccount.com":  "serviceAccount:ci@p1.iam.gserviceaccount.com",
		"serviceAccount:ci@example.com":                 "",
		"domain:example.com":                            "",
		"allUsers":                                      "",
		"alice":                                         "",
		"user:alice@example.com, user:mallory@evil.com": "",
		"U01ALICE":                                      "",
	} {
		got, err := gcp.NormalizePrincipal(in)
		if want == "" {
			if err == nil {
				t.Errorf("%q: accepted as %q", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%q = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestGrantRefusesBadAssignments(t *testing.T) {
	srv, p := setup(t)
	for name, edit := range map[string]func(*grants.Assignment){
		"no expiry":      func(a *grants.Assignment) { a.ExpiresAt = time.Time{} },
		"expired":        func(a *grants.Assignment) { a.ExpiresAt = now.Add(-time.Minute) },
		"bad principal":  func(a *grants.Assignment) { a.Principal = "domain:example.com" },
		"bad grant id":   func(a *grants.Assignment) { a.GrantID = `g-1" || true || "` },
		"missing target": func(a *grants.Assignment) { a.Target = nil },
	} {
		a := asg("g-1")
		edit(&a)
		if _, err := p.Grant(t.Context(), a); !grants.IsPermanent(err) {
			t.Errorf("%s: %v, want permanent", name, err)
		}
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d calls for refused assignments", n)
	}
}

func TestFoldersAndOrganizations(t *testing.T) {
	srv := newFake(t)
	srv.AddResource("folders/123456789012")
	srv.AddResource("organizations/987654321", ownerBinding)
	p := newProvider(t, srv, fixedNow)
	for key, res := range map[string]string{"folder": "folders/123456789012", "organization": "organizations/987654321"} {
		id := strings.TrimPrefix(res, key+"s/")
		a := asg("g-" + key)
		a.Target = map[string]string{key: id, "role": "roles/iam.securityReviewer"}
		srv.ClearRequests()
		if _, err := p.Grant(t.Context(), a); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if reqs := srv.Requests(); len(reqs) != 2 || reqs[0].Path != "/v3/"+res+":getIamPolicy" || reqs[1].Path != "/v3/"+res+":setIamPolicy" {
			t.Errorf("%s: requests %v", key, reqs)
		}
		if ok, err := p.Check(t.Context(), a); !ok || err != nil {
			t.Errorf("%s: check %v %v", key, ok, err)
		}
		if err := p.Revoke(t.Context(), a); err != nil {
			t.Errorf("%s: revoke %v", key, err)
		}
		if liveJitbotBinding(mustPolicy(t, srv, res), "roles/iam.securityReviewer", alice, a.GrantID, now) {
			t.Errorf("%s: present after revoke", key)
		}
	}
}

func TestListOwned(t *testing.T) {
	srv := newFake(t)
	srv.AddResource(resource, ownerBinding)
	srv.AddResource("folders/123456789012")
	p := newProvider(t, srv, fixedNow, func(c *gcp.Config) { c.Scopes = []string{resource, "folders/123456789012"} })
	if _, err := p.Grant(t.Context(), asg("g-live")); err != nil {
		t.Fatal(err)
	}
	// A leftover whose condition already expired (jitbot was down, or a revoke failed), and a conditional
	// binding that is not jitbot's.
	srv.Mutate("folders/123456789012", func(pol *gcpfake.Policy) {
		pol.Bindings = append(pol.Bindings,
			gcpfake.Binding{Role: "roles/browser", Members: []string{"group:sre@example.com"}, Condition: &gcpfake.Expr{
				Title: "jitbot g-old", Expression: `request.time < timestamp("2029-12-31T00:00:00Z")`}},
			gcpfake.Binding{Role: "roles/browser", Members: []string{"user:carol@example.com"}, Condition: &gcpfake.Expr{
				Title: "office hours", Expression: `request.time.getHours("Europe/Berlin") < 18`}})
	})
	srv.ClearRequests()
	owned, err := p.ListOwned(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []grants.Owned{
		{GrantID: "g-live", Principal: alice, Target: map[string]string{"project": project, "role": role},
			Ref: `projects/prod-data roles/cloudsql.admin condition "jitbot g-live" (expires 2030-01-02T03:04:05Z)`},
		{GrantID: "g-old", Principal: "group:sre@example.com", Target: map[string]string{"folder": "123456789012", "role": "roles/browser"},
			Ref: `folders/123456789012 roles/browser condition "jitbot g-old" (expired 2029-12-31T00:00:00Z)`},
	}
	if !reflect.DeepEqual(owned, want) {
		t.Errorf("ListOwned:\n got %+v\nwant %+v", owned, want)
	}
	if got := methods(srv.Requests()); !slices.Equal(got, []string{"getIamPolicy", "getIamPolicy"}) {
		t.Errorf("ListOwned calls = %v (it must only read)", got)
	}
	// Revoking the listed leftover removes it.
	if err := p.Revoke(t.Context(), grants.Assignment{GrantID: "g-old", Principal: "group:sre@example.com", Target: want[1].Target}); err != nil {
		t.Fatal(err)
	}
	if pol := mustPolicy(t, srv, "folders/123456789012"); len(pol.Bindings) != 1 || pol.Bindings[0].Condition.Title != "office hours" {
		t.Errorf("after revoking the leftover: %+v", pol.Bindings)
	}
}

func TestContextCancellation(t *testing.T) {
	srv, p := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Grant(ctx, asg("g-1")); !errors.Is(err, context.Canceled) || grants.IsPermanent(err) {
		t.Errorf("grant with a cancelled context: %v", err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d calls with a cancelled context", n)
	}
	// A deadline that ends while backing off after a conflict ends the call promptly.
	// The backoff is an hour: a call that returns at all was ended by its deadline (the bound below only
	// turns a hang into a failure; it is no speed check).
	p = newProvider(t, srv, fixedNow, func(c *gcp.Config) { c.ConflictBackoff = time.Hour })
	srv.ConcurrentWrites(100)
	ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := p.Grant(ctx, asg("g-1"))
	if !errors.Is(err, context.DeadlineExceeded) || grants.IsPermanent(err) {
		t.Errorf("grant whose deadline ends during backoff: %v", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("took %s", d)
	}
}

func TestNoCredentialInErrors(t *testing.T) {
	srv, p := setup(t)
	// A server message that quotes a credential is redacted.
	srv.Fail(gcpfake.Fault{Code: 401, Status: "UNAUTHENTICATED", Message: "Request had invalid authentication credentials: Bearer " + testToken + " (ya29.a0AfH6SMBx-secret)"})
	_, err := p.Grant(t.Context(), asg("g-1"))
	if err == nil || !grants.IsPermanent(err) {
		t.Fatalf("401: %v, want permanent", err)
	}
	t.Logf("401 error: %v", err)
	for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		if strings.Contains(s, testToken) || strings.Contains(s, "ya29.a0AfH6SMBx") {
			t.Errorf("error shows a credential: %s", s)
		}
	}
	// Transport errors do not quote the request URL, where an API key would be.
	const apiKey = "AIzaSyD-SECRET-api-key-0123456789"
	dead := gcpfake.New()
	dead.Close()
	p2, err := gcp.New(t.Context(), gcp.Config{Endpoint: dead.URL, ClientOptions: []option.ClientOption{option.WithAPIKey(apiKey)}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p2.Check(t.Context(), asg("g-1"))
	if err == nil || grants.IsPermanent(err) {
		t.Fatalf("unreachable endpoint: %v, want retryable", err)
	}
	t.Logf("transport error: %v", err)
	if s := fmt.Sprintf("%v %+v", err, err); strings.Contains(s, apiKey) || strings.Contains(s, "key=") {
		t.Errorf("error shows the API key: %s", s)
	}
}

func TestNewValidates(t *testing.T) {
	for name, cfg := range map[string]gcp.Config{
		"negative retries": {Endpoint: "http://127.0.0.1:1", MaxConflictRetries: -1},
		"plain http":       {Endpoint: "http://iam.example.com/"},
		"userinfo":         {Endpoint: "https://u:p@example.com/"},
		"bad scope":        {Endpoint: "http://127.0.0.1:1", Scopes: []string{"project/p1"}},
	} {
		if _, err := gcp.New(t.Context(), cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSettings(t *testing.T) {
	ok := gcp.Settings{Endpoint: "https://cloudresourcemanager.googleapis.com/", Scopes: []string{"projects/prod-data", "folders/123", "organizations/456"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid settings: %v", err)
	}
	if cfg := ok.Config(); cfg.Endpoint != ok.Endpoint || !slices.Equal(cfg.Scopes, ok.Scopes) {
		t.Errorf("Config() = %+v", cfg)
	}
	bad := gcp.Settings{Endpoint: "http://example.com", Scopes: []string{"projects/P!", "folders/x", "buckets/b", "projects/prod-data", "projects/prod-data"}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad settings accepted")
	}
	for _, want := range []string{"http://", `"projects/P!"`, `"folders/x"`, `"buckets/b"`, "listed twice"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// jitbotExpiries returns the conditions' ends of every jitbot binding of role that holds member.
func jitbotExpiries(pol gcpfake.Policy, member string) []time.Time {
	var out []time.Time
	for _, b := range pol.Bindings {
		if b.Role != role || b.Condition == nil || !strings.HasPrefix(b.Condition.Title, "jitbot ") || !slices.Contains(b.Members, member) {
			continue
		}
		if m := expiryRe.FindStringSubmatch(b.Condition.Expression); m != nil {
			if exp, err := time.Parse(time.RFC3339, m[1]); err == nil {
				out = append(out, exp)
			}
		}
	}
	return out
}

// TestOverlappingLeasesProviderExpiryFollowsRemaining: GCP's own expiry (the request.time condition) is the
// second guard, for when jitbot is down. jitbot calls Grant for every lease of a binding with the latest end of
// them all, and again with the remaining lease's end when a longer lease ends early. The binding's condition
// must follow: before the fix, the ended lease's binding kept its later condition until the final revoke, so
// GCP would have granted access until the ended lease's time.
func TestOverlappingLeasesProviderExpiryFollowsRemaining(t *testing.T) {
	srv, p := setup(t)
	long, short := asg("g-long"), asg("g-short")
	long.ExpiresAt = expiry.Add(3 * time.Hour)
	// The long lease first; then the short one, told the binding's latest end (the long lease's).
	if _, err := p.Grant(t.Context(), long); err != nil {
		t.Fatal(err)
	}
	short.ExpiresAt = long.ExpiresAt
	if _, err := p.Grant(t.Context(), short); err != nil {
		t.Fatal(err)
	}
	if got := jitbotExpiries(mustPolicy(t, srv, resource), alice); len(got) != 1 || !got[0].Equal(long.ExpiresAt.Truncate(time.Second)) {
		t.Fatalf("with two live leases: jitbot bindings end at %v, want one ending %s", got, long.ExpiresAt)
	}
	// The long lease is released: jitbot tells the provider the short lease's own end.
	short.ExpiresAt = expiry
	if _, err := p.Grant(t.Context(), short); err != nil {
		t.Fatal(err)
	}
	got := jitbotExpiries(mustPolicy(t, srv, resource), alice)
	if len(got) != 1 || !got[0].Equal(expiry.Truncate(time.Second)) {
		t.Fatalf("after the long lease ended: jitbot bindings end at %v, want exactly one ending %s", got, expiry.Truncate(time.Second))
	}
	// Either lease's Check sees the binding's access.
	for _, a := range []grants.Assignment{long, short} {
		if ok, err := p.Check(t.Context(), a); err != nil || !ok {
			t.Fatalf("Check(%s) = %v, %v", a.GrantID, ok, err)
		}
	}
	if err := p.Revoke(t.Context(), short); err != nil {
		t.Fatal(err)
	}
	if got := jitbotExpiries(mustPolicy(t, srv, resource), alice); len(got) != 0 {
		t.Fatalf("after revoke: %v", got)
	}
}

// TestPreexistingBindingsSurvive: bindings of the same member and role that a human made (unconditional, or
// with a condition of their own) are neither changed by grant nor removed by revoke, nor listed as jitbot's.
func TestPreexistingBindingsSurvive(t *testing.T) {
	srv, p := setup(t)
	standing := gcpfake.Binding{Role: role, Members: []string{alice}}
	temporary := gcpfake.Binding{Role: role, Members: []string{alice},
		Condition: &gcpfake.Expr{Title: "audit week", Expression: `request.time < timestamp("2030-01-09T00:00:00Z")`}}
	srv.AddResource(resource, ownerBinding, standing, temporary)
	for i := range 20 {
		a := asg(fmt.Sprintf("g-%d", i))
		ref, err := p.Grant(t.Context(), a)
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		// The unconditional binding is the same access: nothing is written, the manager is told.
		if !grants.IsPreExisting(ref) {
			t.Fatalf("cycle %d: Grant over an unconditional human binding returned %q, want a pre-existing reference", i, ref)
		}
		if i == 3 {
			owned, err := p.ListOwned(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range owned {
				if !strings.HasPrefix(o.GrantID, "g-") {
					t.Fatalf("ListOwned lists a human's binding: %+v", o)
				}
			}
		}
		if err := p.Revoke(t.Context(), a); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	pol := mustPolicy(t, srv, resource)
	if !reflect.DeepEqual(pol.Bindings, []gcpfake.Binding{ownerBinding, standing, temporary}) {
		t.Fatalf("bindings after 20 cycles: %+v", pol.Bindings)
	}
}

// TestPreexistingOnlyForTheSameAccess: a human binding with a condition on resources, or ending before the
// lease, is not the same access: jitbot adds its own binding (and its revoke removes only that one). With a
// reference of its own jitbot keeps ownership even when standing access appears meanwhile.
func TestPreexistingOnlyForTheSameAccess(t *testing.T) {
	srv, p := setup(t)
	narrow := gcpfake.Binding{Role: role, Members: []string{alice},
		Condition: &gcpfake.Expr{Title: "one instance", Expression: `resource.name.startsWith("projects/_/instances/db1")`}}
	short := gcpfake.Binding{Role: role, Members: []string{alice},
		Condition: &gcpfake.Expr{Title: "until lunch", Expression: `request.time < timestamp("2030-01-02T02:30:00Z")`}}
	srv.AddResource(resource, ownerBinding, narrow, short)
	ref, err := p.Grant(t.Context(), asg("g-1"))
	if err != nil || grants.IsPreExisting(ref) {
		t.Fatalf("Grant next to narrower bindings = %q, %v; want jitbot's own binding", ref, err)
	}
	if n := countJitbot(mustPolicy(t, srv, resource), role, alice); n != 1 {
		t.Fatalf("%d jitbot bindings", n)
	}
	// Standing access appears while jitbot's lease runs; an extension (with jitbot's reference) keeps jitbot's
	// binding, and the revoke removes only jitbot's.
	srv.Mutate(resource, func(pol *gcpfake.Policy) {
		pol.Bindings = append(pol.Bindings, gcpfake.Binding{Role: role, Members: []string{alice}})
	})
	ext := asg("g-1")
	ext.Ref, ext.ExpiresAt = ref, expiry.Add(time.Hour)
	if ref2, err := p.Grant(t.Context(), ext); err != nil || grants.IsPreExisting(ref2) {
		t.Fatalf("extension = %q, %v", ref2, err)
	}
	if err := p.Revoke(t.Context(), ext); err != nil {
		t.Fatal(err)
	}
	pol := mustPolicy(t, srv, resource)
	if countJitbot(pol, role, alice) != 0 || !hasUnconditional(pol, role, alice) || len(pol.Bindings) != 4 {
		t.Fatalf("bindings after revoke: %+v", pol.Bindings)
	}
}

// TestPropagationDelay: the manager verifies a revoke only after IAM's documented propagation (up to 7 minutes).
func TestPropagationDelay(t *testing.T) {
	_, p := setup(t)
	var d interface{ PropagationDelay() time.Duration } = p
	if got := d.PropagationDelay(); got != 7*time.Minute {
		t.Fatalf("PropagationDelay = %s, want 7m", got)
	}
}

// TestCheckWithOwnReference: with the lease's own reference (verifying jitbot's revoke) Check answers for
// jitbot's bindings only; a binding someone added after the revoke does not make the revoke look failed.
func TestCheckWithOwnReference(t *testing.T) {
	srv, p := setup(t)
	a := asg("g-own")
	ref, err := p.Grant(t.Context(), a)
	if err != nil || grants.IsPreExisting(ref) {
		t.Fatalf("Grant = %q, %v", ref, err)
	}
	a.Ref = ref
	if err := p.Revoke(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	srv.Mutate(resource, func(pol *gcpfake.Policy) {
		pol.Bindings = append(pol.Bindings, gcpfake.Binding{Role: role, Members: []string{alice}})
	})
	if ok, err := p.Check(t.Context(), a); err != nil || ok {
		t.Fatalf("Check with jitbot's reference = %v, %v; the new binding is not jitbot's", ok, err)
	}
	a.Ref = ""
	if ok, err := p.Check(t.Context(), a); err != nil || !ok {
		t.Fatalf("Check without a reference = %v, %v; want the access from any source", ok, err)
	}
}

// Inspect tells jitbot's binding from other access, one binding of the principal's role at a time: each row is
// the one binding on the resource besides the owner's, at the provider's clock (now).
func TestInspectBindings(t *testing.T) {
	live, ended := gcp.Expression(now.Add(time.Hour)), gcp.Expression(now.Add(-time.Hour))
	cases := []struct {
		name  string
		cond  *gcpfake.Expr
		role  string
		ours  bool
		other string // the one object named, "" for none
	}{
		{"unconditional", nil, role, false, resource + " " + role + " unconditional binding"},
		{"someone's live time-bound", &gcpfake.Expr{Title: "oncall", Expression: live}, role, false,
			fmt.Sprintf("%s %s binding %q until %s", resource, role, "oncall", now.Add(time.Hour).UTC().Format(time.RFC3339))},
		{"someone's ended time-bound", &gcpfake.Expr{Title: "oncall", Expression: ended}, role, false, ""},
		{"someone's condition on resources", &gcpfake.Expr{Title: "bucket", Expression: `resource.name.startsWith("x")`}, role, false, ""},
		{"jitbot's live", &gcpfake.Expr{Title: gcp.TitlePrefix + "g-9", Expression: live}, role, true, ""},
		{"jitbot's ended", &gcpfake.Expr{Title: gcp.TitlePrefix + "g-9", Expression: ended}, role, false, ""},
		{"jitbot's with a condition changed by hand", &gcpfake.Expr{Title: gcp.TitlePrefix + "g-9", Expression: "true"}, role, true, ""},
		{"another role", nil, "roles/viewer", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, p := setup(t)
			srv.Mutate(resource, func(pol *gcpfake.Policy) {
				pol.Bindings = append(pol.Bindings, gcpfake.Binding{Role: c.role, Members: []string{alice}, Condition: c.cond})
			})
			pr, err := p.Inspect(t.Context(), asg("g-1"))
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			if c.other != "" {
				want = []string{c.other}
			}
			if pr.Ours != c.ours || !slices.Equal(pr.Other, want) {
				t.Fatalf("Inspect = ours %v, other %q; want ours %v, other %q", pr.Ours, pr.Other, c.ours, want)
			}
		})
	}
}
