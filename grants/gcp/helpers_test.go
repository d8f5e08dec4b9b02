package gcp_test

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/gcp"
	"github.com/jitbot/jitbot/grants/gcp/gcpfake"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
)

// testToken is the OAuth access token the tests authenticate with: it must reach the fake in the Authorization
// header and never appear in an error or reference.
const testToken = "tok-8c1f2e7a-SECRET-access-token-do-not-print"

// newFake starts a fake and fails the test at the end if the adapter ever wrote a policy without version 3 or
// without an etag.
func newFake(t *testing.T) *gcpfake.Server {
	t.Helper()
	srv := gcpfake.New()
	t.Cleanup(func() {
		assertSafeWrites(t, srv.Requests())
		srv.Close()
	})
	return srv
}

// assertSafeWrites checks every recorded setIamPolicy: version 3, an etag, and getIamPolicy always asks for
// version 3. Either mistake lets IAM drop the policy's conditions.
func assertSafeWrites(t *testing.T, reqs []gcpfake.Request) {
	t.Helper()
	for i, r := range reqs {
		switch r.Method {
		case "getIamPolicy":
			var b struct {
				Options struct {
					RequestedPolicyVersion int `json:"requestedPolicyVersion"`
				} `json:"options"`
			}
			if err := json.Unmarshal(r.Body, &b); err != nil || b.Options.RequestedPolicyVersion != 3 {
				t.Errorf("request %d: getIamPolicy body %s does not request policy version 3", i, r.Body)
			}
		case "setIamPolicy":
			var b gcpfake.SetBody
			if err := json.Unmarshal(r.Body, &b); err != nil || b.Policy == nil {
				t.Errorf("request %d: setIamPolicy body %s: %v", i, r.Body, err)
				continue
			}
			if b.Policy.Version != 3 {
				t.Errorf("request %d: setIamPolicy with policy version %d, want 3", i, b.Policy.Version)
			}
			if b.Policy.Etag == "" {
				t.Errorf("request %d: setIamPolicy without an etag", i)
			}
		}
	}
}

type provOpt func(*gcp.Config)

func newProvider(t *testing.T, srv *gcpfake.Server, opts ...provOpt) *gcp.Provider {
	t.Helper()
	cfg := gcp.Config{
		Endpoint:        srv.URL,
		ClientOptions:   []option.ClientOption{option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: testToken}))},
		ConflictBackoff: time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	p, err := gcp.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("gcp.New: %v", err)
	}
	return p
}

var expiryRe = regexp.MustCompile(`^request\.time < timestamp\("([^"]+)"\)$`)

// liveJitbotBinding is the ground truth, read from the fake without the adapter: the policy holds a binding with
// the grant's title, the role and the member, and its expiry is after now.
func liveJitbotBinding(pol gcpfake.Policy, role, member, grantID string, now time.Time) bool {
	for _, b := range pol.Bindings {
		if b.Role != role || b.Condition == nil || b.Condition.Title != "jitbot "+grantID || !slices.Contains(b.Members, member) {
			continue
		}
		m := expiryRe.FindStringSubmatch(b.Condition.Expression)
		if m == nil {
			return true
		}
		exp, err := time.Parse(time.RFC3339, m[1])
		if err != nil || exp.After(now) {
			return true
		}
	}
	return false
}

func countTitle(pol gcpfake.Policy, member, title string) int {
	n := 0
	for _, b := range pol.Bindings {
		if b.Condition != nil && b.Condition.Title == title && slices.Contains(b.Members, member) {
			n++
		}
	}
	return n
}

func methods(reqs []gcpfake.Request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Method)
	}
	return out
}

func setBodies(t *testing.T, reqs []gcpfake.Request) []gcpfake.SetBody {
	t.Helper()
	var out []gcpfake.SetBody
	for _, r := range reqs {
		if r.Method != "setIamPolicy" {
			continue
		}
		var b gcpfake.SetBody
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatalf("setIamPolicy body: %v", err)
		}
		out = append(out, b)
	}
	return out
}

func mustPolicy(t *testing.T, srv *gcpfake.Server, resource string) gcpfake.Policy {
	t.Helper()
	p, ok := srv.Policy(resource)
	if !ok {
		t.Fatalf("fake has no %s", resource)
	}
	return p
}

var _ grants.Provider = (*gcp.Provider)(nil)

// liveAnyJitbotBinding: a jitbot binding (any title) of role holds member and has not expired.
func liveAnyJitbotBinding(pol gcpfake.Policy, role, member string, now time.Time) bool {
	for _, b := range pol.Bindings {
		if b.Role != role || b.Condition == nil || !strings.HasPrefix(b.Condition.Title, "jitbot ") || !slices.Contains(b.Members, member) {
			continue
		}
		m := expiryRe.FindStringSubmatch(b.Condition.Expression)
		if m == nil {
			return true
		}
		if exp, err := time.Parse(time.RFC3339, m[1]); err != nil || exp.After(now) {
			return true
		}
	}
	return false
}

func hasUnconditional(pol gcpfake.Policy, role, member string) bool {
	for _, b := range pol.Bindings {
		if b.Role == role && b.Condition == nil && slices.Contains(b.Members, member) {
			return true
		}
	}
	return false
}

func countJitbot(pol gcpfake.Policy, role, member string) int {
	n := 0
	for _, b := range pol.Bindings {
		if b.Role == role && b.Condition != nil && strings.HasPrefix(b.Condition.Title, "jitbot ") && slices.Contains(b.Members, member) {
			n++
		}
	}
	return n
}

// jitbotEnds returns the request.time ends of the jitbot bindings of role holding member.
func jitbotEnds(pol gcpfake.Policy, role, member string) []time.Time {
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
