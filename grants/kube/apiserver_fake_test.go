package kube_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/jitbot/jitbot/grants/kube/kubefake"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// wireAnswer is what a request got: the HTTP status and, for failures, the Status reason and message.
type wireAnswer struct {
	Code    int
	Reason  string
	Message string
	UID     string // of a created object, for the precondition step
}

var uidPattern = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

func doWire(t *testing.T, cfg *rest.Config, method, path string, body any) wireAnswer {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(mustJSON(t, body))
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(t.Context()), method, strings.TrimSuffix(cfg.Host, "/")+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := wireAnswer{Code: resp.StatusCode}
	if resp.StatusCode >= 300 {
		var st metav1.Status
		_ = json.Unmarshal(raw, &st)
		out.Reason, out.Message = string(st.Reason), uidPattern.ReplaceAllString(st.Message, "<uid>")
	} else {
		var obj struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		_ = json.Unmarshal(raw, &obj)
		out.UID = string(obj.Metadata.UID)
	}
	return out
}

// TestAPIServerMatchesKubefake sends the same requests, as the bot, to the real API server and to kubefake set
// up with the same roles and the bot's rules, and compares status, reason and message (UIDs masked). It is how
// the fake's doc comment knows where it diverges; each step here is one the fake must get right.
func TestAPIServerMatchesKubefake(t *testing.T) {
	c := needAPIServer(t)
	extra := []rbacv1.PolicyRule{
		{APIGroups: []string{rbacGroup}, Resources: []string{"clusterroles"}, Verbs: []string{"bind", "get"}, ResourceNames: []string{"veiw"}},
		{APIGroups: []string{rbacGroup}, Resources: []string{"clusterroles"}, Verbs: []string{"get"}, ResourceNames: []string{"secret-reader"}},
	}
	secretReader := rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "secret-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}}}
	if _, err := c.rbac.ClusterRoles().Create(t.Context(), &secretReader, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	c.extraBotRules(t, "jitbot-test-wire", extra, accessProbe{"get", "clusterroles", "secret-reader", ""})

	var granter rbacv1.ClusterRole
	var botRules []rbacv1.PolicyRule
	for _, obj := range documentedRBAC(t) {
		if obj["kind"] == "ClusterRole" {
			strictDecodeLoose(t, string(mustJSON(t, obj)), &granter)
		}
		if obj["kind"] == "ClusterRole" || obj["kind"] == "Role" {
			var r rbacv1.ClusterRole
			strictDecodeLoose(t, string(mustJSON(t, obj)), &r)
			botRules = append(botRules, r.Rules...)
		}
	}
	srv := newFake(kubefake.Options{CallerRules: append(botRules, extra...), ClusterRoles: []rbacv1.ClusterRole{secretReader, granter}})
	t.Cleanup(srv.Close)

	crb := func(name, role string) map[string]any {
		return map[string]any{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
			"metadata": map[string]any{"name": name},
			"subjects": []any{map[string]any{"kind": "User", "apiGroup": rbacGroup, "name": "wire-test"}},
			"roleRef":  map[string]any{"apiGroup": rbacGroup, "kind": "ClusterRole", "name": role}}
	}
	const crbs = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
	type step struct {
		name         string
		method, path string
		body         func(uid string) any
	}
	steps := []step{
		{name: "get a bindable ClusterRole", method: "GET", path: "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit"},
		{name: "get a ClusterRole outside the bot's RBAC", method: "GET", path: "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin"},
		{name: "get a missing ClusterRole the bot may read", method: "GET", path: "/apis/rbac.authorization.k8s.io/v1/clusterroles/veiw"},
		{name: "get the bindable Role", method: "GET", path: "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/roles/debugger"},
		{name: "bind a missing ClusterRole holding bind", method: "POST", path: crbs, body: func(string) any { return crb("wire-missing", "veiw") }},
		{name: "bind a ClusterRole without bind and without its rules", method: "POST", path: crbs, body: func(string) any { return crb("wire-escalate", "secret-reader") }},
		{name: "bind a missing ClusterRole without bind", method: "POST", path: crbs, body: func(string) any { return crb("wire-nosuch", "nosuch") }},
		{name: "bind a missing Role without bind", method: "POST", path: "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings", body: func(string) any {
			b := crb("wire-nosuch-role", "nosuch")
			b["kind"], b["roleRef"] = "RoleBinding", map[string]any{"apiGroup": rbacGroup, "kind": "Role", "name": "nosuch"}
			return b
		}},
		{name: "bind the bot's own role without bind", method: "POST", path: crbs, body: func(string) any { return crb("wire-self", "jitbot-granter") }},
		{name: "create the same name again", method: "POST", path: crbs, body: func(string) any { return crb("wire-self", "jitbot-granter") }},
		{name: "delete with a stale UID precondition", method: "DELETE", path: crbs + "/wire-self", body: func(string) any {
			return map[string]any{"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": map[string]any{"uid": "00000000-0000-0000-0000-000000000000"}}
		}},
		{name: "delete with the right UID precondition", method: "DELETE", path: crbs + "/wire-self", body: func(uid string) any {
			return map[string]any{"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": map[string]any{"uid": uid}}
		}},
		{name: "delete what is gone", method: "DELETE", path: crbs + "/wire-self"},
		{name: "list rolebindings everywhere", method: "GET", path: "/apis/rbac.authorization.k8s.io/v1/rolebindings?labelSelector=app.kubernetes.io%2Fmanaged-by%3Djitbot"},
	}
	t.Cleanup(func() {
		for _, n := range []string{"wire-missing", "wire-escalate", "wire-nosuch", "wire-self"} {
			_ = c.rbac.ClusterRoleBindings().Delete(context.WithoutCancel(t.Context()), n, metav1.DeleteOptions{})
		}
	})
	fakeCfg := srv.RESTConfig()
	var realUID, fakeUID string
	for _, s := range steps {
		var realBody, fakeBody any
		if s.body != nil {
			realBody, fakeBody = s.body(realUID), s.body(fakeUID)
		}
		real := doWire(t, c.botConfig(), s.method, s.path, realBody)
		fake := doWire(t, fakeCfg, s.method, s.path, fakeBody)
		if real.UID != "" {
			realUID, fakeUID = real.UID, fake.UID
		}
		real.UID, fake.UID = "", ""
		t.Logf("%s: real %d %s %q", s.name, real.Code, real.Reason, real.Message)
		if real != fake {
			t.Errorf("%s (%s %s):\n real: %s\n fake: %s", s.name, s.method, s.path, fmtAnswer(real), fmtAnswer(fake))
		}
	}
}

func fmtAnswer(a wireAnswer) string { return fmt.Sprintf("%d %s %q", a.Code, a.Reason, a.Message) }
