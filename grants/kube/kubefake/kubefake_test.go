package kubefake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jitbot/jitbot/grants/kube/kubefake"
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
	if code != 409 || !strings.Contains(m["message"].(string), "Precondition failed: UID in precondition: not-it") {
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
	if code, m = do(t, srv, tok, "GET", "/apis/rbac.authorization.k8s.io/v1/roles", ""); code != 404 {
		t.Errorf("unknown resource: %d %v", code, m)
	}
}
