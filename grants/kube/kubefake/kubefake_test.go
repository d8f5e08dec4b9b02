package kubefake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jitbot/jitbot/grants/kube/kubefake"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// do sends a raw request, the way any client would, and decodes the JSON answer.
func do(t *testing.T, srv *kubefake.Server, token, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %s", method, path, b)
	}
	return resp.StatusCode, m
}

func wantStatus(t *testing.T, m map[string]any, code int, reason string) {
	t.Helper()
	if m["kind"] != "Status" || m["apiVersion"] != "v1" || m["status"] != "Failure" || m["reason"] != reason || m["code"] != float64(code) {
		t.Errorf("status object %v, want Failure %s %d", m, reason, code)
	}
}

func TestWireProtocol(t *testing.T) {
	srv := kubefake.New(kubefake.Options{})
	t.Cleanup(srv.Close)
	tok := srv.Token()
	const rbs = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings"
	rb := `{"kind":"RoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"b1","labels":{"app":"x"}},
		"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"alice"}],
		"roleRef":{"kind":"ClusterRole","apiGroup":"rbac.authorization.k8s.io","name":"view"}}`

	code, m := do(t, srv, "", "GET", rbs, "")
	if code != 401 {
		t.Errorf("no token: %d", code)
	}
	wantStatus(t, m, 401, "Unauthorized")

	code, m = do(t, srv, tok, "POST", rbs, rb)
	meta, _ := m["metadata"].(map[string]any)
	if code != 201 || meta["uid"] == "" || meta["resourceVersion"] == "" || meta["namespace"] != "team" {
		t.Fatalf("create: %d %v", code, m)
	}
	code, m = do(t, srv, tok, "POST", rbs, rb)
	if code != 409 {
		t.Errorf("second create: %d", code)
	}
	wantStatus(t, m, 409, "AlreadyExists")

	code, m = do(t, srv, tok, "POST", rbs, strings.Replace(rb, `"kind":"User","apiGroup":"rbac.authorization.k8s.io"`, `"kind":"User"`, 1))
	if code != 422 {
		t.Errorf("user subject without apiGroup: %d", code)
	}
	wantStatus(t, m, 422, "Invalid")

	for sel, n := range map[string]int{"app%3Dx": 1, "app%3Dy": 0, "app": 1, "%21app": 0, "app%21%3Dx": 0} {
		code, m = do(t, srv, tok, "GET", "/apis/rbac.authorization.k8s.io/v1/rolebindings?labelSelector="+sel, "")
		items, _ := m["items"].([]any)
		if code != 200 || m["kind"] != "RoleBindingList" || len(items) != n {
			t.Errorf("selector %s: %d %v, want %d items", sel, code, m, n)
		}
	}

	code, m = do(t, srv, tok, "DELETE", rbs+"/b1", `{"preconditions":{"uid":"not-it"}}`)
	if code != 409 || !strings.Contains(m["message"].(string), `Operation cannot be fulfilled on RoleBinding.rbac.authorization.k8s.io "b1": the UID in the precondition (not-it) does not match the UID in record`) {
		t.Errorf("delete with a wrong uid: %d %v", code, m)
	}
	code, m = do(t, srv, tok, "DELETE", rbs+"/b1", "")
	if code != 200 || m["status"] != "Success" {
		t.Errorf("delete: %d %v", code, m)
	}
	code, m = do(t, srv, tok, "GET", rbs+"/b1", "")
	if code != 404 {
		t.Errorf("get deleted: %d", code)
	}
	wantStatus(t, m, 404, "NotFound")

	srv.FailNext(kubefake.TooManyRequests)
	code, m = do(t, srv, tok, "GET", rbs, "")
	wantStatus(t, m, 429, "TooManyRequests")
	if code != 429 {
		t.Errorf("fault: %d", code)
	}
	if code, _ = do(t, srv, tok, "GET", rbs, ""); code != 200 {
		t.Errorf("after a one-shot fault: %d", code)
	}
	if code, m = do(t, srv, tok, "GET", "/apis/rbac.authorization.k8s.io/v1/widgets", ""); code != 404 {
		t.Errorf("unknown resource: %d %v", code, m)
	}
}

const crbPath = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"

func crb(name, role string) string {
	return `{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"` + name + `"},
		"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"mallory"}],
		"roleRef":{"kind":"ClusterRole","apiGroup":"rbac.authorization.k8s.io","name":"` + role + `"}}`
}

// TestMissingRoles: like kube-apiserver, a caller with bind (the default) may bind a role that does not exist;
// the role endpoints answer 404 for it, which is how a client can tell.
func TestMissingRoles(t *testing.T) {
	srv := kubefake.New(kubefake.Options{})
	t.Cleanup(srv.Close)
	tok := srv.Token()
	if code, m := do(t, srv, tok, "POST", crbPath, crb("b-typo", "veiw")); code != 201 {
		t.Fatalf("binding a missing role with bind: %d %v", code, m)
	}
	code, m := do(t, srv, tok, "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/veiw", "")
	wantStatus(t, m, 404, "NotFound")
	if code != 404 || m["message"] != `clusterroles.rbac.authorization.k8s.io "veiw" not found` {
		t.Errorf("GET missing ClusterRole: %d %v", code, m)
	}
	if code, m := do(t, srv, tok, "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/view", ""); code != 200 || m["kind"] != "ClusterRole" {
		t.Errorf("GET bootstrap ClusterRole view: %d %v", code, m)
	}
	code, m = do(t, srv, tok, "GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles/debugger", "")
	if code != 404 || m["message"] != `roles.rbac.authorization.k8s.io "debugger" not found` {
		t.Errorf("GET missing Role: %d %v", code, m)
	}
}

// TestRuleBasedEscalation: with CallerRules, creating a binding needs bind on the role or every one of its
// rules (escalation prevention). So the caller can bind its own granting role without bind - the risk the
// admission policy in docs/providers closes - but neither a role with rules it lacks, nor a role that does not
// exist (nothing to compare); and requests outside its rules are forbidden.
func TestRuleBasedEscalation(t *testing.T) {
	granter := []rbacv1.PolicyRule{
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"rolebindings", "clusterrolebindings"}, Verbs: []string{"create", "get", "list", "delete"}},
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"bind", "get"}, ResourceNames: []string{"view"}},
	}
	srv := kubefake.New(kubefake.Options{CallerRules: granter,
		ClusterRoles: []rbacv1.ClusterRole{{ObjectMeta: metav1.ObjectMeta{Name: "jitbot-granter"}, Rules: granter}}})
	t.Cleanup(srv.Close)
	tok := srv.Token()
	if code, m := do(t, srv, tok, "POST", crbPath, crb("b-view", "view")); code != 201 {
		t.Errorf("bind on view: %d %v", code, m)
	}
	if code, m := do(t, srv, tok, "POST", crbPath, crb("b-copy", "jitbot-granter")); code != 201 {
		t.Errorf("binding its own granting role (rules it holds), without bind: %d %v; the real apiserver allows it", code, m)
	}
	code, m := do(t, srv, tok, "POST", crbPath, crb("b-edit", "edit"))
	wantStatus(t, m, 403, "Forbidden")
	if msg, _ := m["message"].(string); code != 403 || !strings.Contains(msg, `clusterrolebindings.rbac.authorization.k8s.io "b-edit" is forbidden: user "system:serviceaccount:jitbot:jitbot" (groups=["system:serviceaccounts" "system:serviceaccounts:jitbot" "system:authenticated"])`) ||
		!strings.Contains(msg, "is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"get\" \"list\" \"watch\" \"create\"") {
		t.Errorf("binding edit: %d %v", code, m)
	}
	code, m = do(t, srv, tok, "POST", crbPath, crb("b-typo", "veiw"))
	// kube-apiserver v1.37 (TestAPIServerMatchesKubefake): 404, the binding resource with the role's name.
	if msg, _ := m["message"].(string); code != 404 || msg != `clusterrolebindings.rbac.authorization.k8s.io "veiw" not found` {
		t.Errorf("binding a missing role without bind: %d %v", code, m)
	}
	code, m = do(t, srv, tok, "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit", "")
	if msg, _ := m["message"].(string); code != 403 || !strings.Contains(msg, `cannot get resource "clusterroles"`) {
		t.Errorf("GET of a role outside its rules: %d %v", code, m)
	}
}
