package gcpfake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jitbot/jitbot/grants/gcp/gcpfake"
)

// These tests speak raw REST to the fake, as documented for Resource Manager v3, without any client library.

type reply struct {
	status int
	policy gcpfake.Policy
	err    struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
	}
}

func call(t *testing.T, srv *gcpfake.Server, path, body string) reply {
	t.Helper()
	resp, err := http.Post(srv.URL+path+"?alt=json&prettyPrint=false", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &r.policy); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return r
	}
	var env struct {
		Error *json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil || env.Error == nil {
		t.Fatalf("error body %s is not the {\"error\":{...}} envelope", b)
	}
	if err := json.Unmarshal(*env.Error, &r.err); err != nil {
		t.Fatal(err)
	}
	if r.err.Code != resp.StatusCode || r.err.Status == "" || r.err.Message == "" {
		t.Errorf("error %s: code, status and message must be set", b)
	}
	return r
}

const (
	get = "/v3/projects/p1:getIamPolicy"
	set = "/v3/projects/p1:setIamPolicy"
	v3  = `{"options":{"requestedPolicyVersion":3}}`
)

func newServer(t *testing.T) *gcpfake.Server {
	srv := gcpfake.New()
	t.Cleanup(srv.Close)
	srv.AddResource("projects/p1", gcpfake.Binding{Role: "roles/owner", Members: []string{"user:owner@example.com"}})
	return srv
}

func conditional(etag string, version int, role string) string {
	p := map[string]any{"version": version, "etag": etag, "bindings": []any{
		map[string]any{"role": "roles/owner", "members": []string{"user:owner@example.com"}},
		map[string]any{"role": role, "members": []string{"user:alice@example.com"},
			"condition": map[string]any{"title": "t", "expression": `request.time < timestamp("2030-01-01T00:00:00Z")`}},
	}}
	b, _ := json.Marshal(map[string]any{"policy": p})
	return string(b)
}

func TestReadWriteCycle(t *testing.T) {
	srv := newServer(t)
	r := call(t, srv, get, v3)
	if r.status != 200 || r.policy.Version != 1 || r.policy.Etag == "" || len(r.policy.Bindings) != 1 {
		t.Fatalf("read: %+v (a policy without conditions is version 1)", r)
	}
	w := call(t, srv, set, conditional(r.policy.Etag, 3, "roles/cloudsql.admin"))
	if w.status != 200 || w.policy.Version != 3 || w.policy.Etag == r.policy.Etag || len(w.policy.Bindings) != 2 {
		t.Fatalf("write: %+v", w)
	}
	if again := call(t, srv, get, v3); again.policy.Etag != w.policy.Etag || again.policy.Version != 3 {
		t.Errorf("re-read: %+v", again)
	}
	// A version 1 reader sees the conditional binding as a _withcond_ role, without its condition.
	old := call(t, srv, get, `{}`)
	if old.policy.Version != 1 || !strings.HasPrefix(old.policy.Bindings[1].Role, "roles/cloudsql.admin_withcond_") || old.policy.Bindings[1].Condition != nil {
		t.Errorf("version 1 read: %+v", old.policy)
	}
	// Writing that back is refused.
	b, _ := json.Marshal(map[string]any{"policy": old.policy})
	if r := call(t, srv, set, string(b)); r.status != 400 || r.err.Status != "INVALID_ARGUMENT" {
		t.Errorf("writing a _withcond_ role back: %+v", r)
	}
}

func TestRefusals(t *testing.T) {
	srv := newServer(t)
	etag := call(t, srv, get, v3).policy.Etag
	for name, tc := range map[string]struct {
		path, body   string
		code         int
		status, text string
	}{
		"stale etag":              {set, conditional("AAAAAAAAAAA=", 3, "roles/cloudsql.admin"), 409, "ABORTED", "concurrent policy changes"},
		"conditions in version 1": {set, conditional(etag, 1, "roles/cloudsql.admin"), 400, "INVALID_ARGUMENT", "version 3"},
		"condition on basic role": {set, conditional(etag, 3, "roles/editor"), 400, "INVALID_ARGUMENT", "primitive roles"},
		"bad requested version":   {get, `{"options":{"requestedPolicyVersion":2}}`, 400, "INVALID_ARGUMENT", "valid values"},
		"bad update mask":         {set, `{"policy":{"etag":"` + etag + `"},"updateMask":"version"}`, 400, "INVALID_ARGUMENT", "update mask"},
		"bad member":              {set, `{"policy":{"etag":"` + etag + `","bindings":[{"role":"roles/browser","members":["alice@example.com"]}]}}`, 400, "INVALID_ARGUMENT", "member"},
		"unknown project":         {"/v3/projects/nope:getIamPolicy", v3, 403, "PERMISSION_DENIED", "permission"},
		"unknown folder":          {"/v3/folders/1:setIamPolicy", conditional("", 3, "roles/browser"), 403, "PERMISSION_DENIED", "permission"},
	} {
		r := call(t, srv, tc.path, tc.body)
		if r.status != tc.code || r.err.Status != tc.status || !strings.Contains(r.err.Message, tc.text) {
			t.Errorf("%s: %d %+v, want %d %s mentioning %q", name, r.status, r.err, tc.code, tc.status, tc.text)
		}
	}
	if p, _ := srv.Policy("projects/p1"); p.Etag != etag {
		t.Error("a refused write changed the policy")
	}
}

// Without an etag the write is a blind overwrite, as Google allows: the reason adapters must always send one.
func TestBlindWriteDropsConditions(t *testing.T) {
	srv := newServer(t)
	etag := call(t, srv, get, v3).policy.Etag
	call(t, srv, set, conditional(etag, 3, "roles/cloudsql.admin"))
	r := call(t, srv, set, `{"policy":{"bindings":[{"role":"roles/owner","members":["user:owner@example.com"]}]}}`)
	if r.status != 200 || r.policy.HasCondition() {
		t.Errorf("blind write: %+v", r)
	}
}

func TestFaultsDriftAndConcurrentWriters(t *testing.T) {
	srv := newServer(t)
	srv.Fail(gcpfake.Fault{Method: "setIamPolicy", Code: 503, Status: "UNAVAILABLE", Message: "try later"})
	srv.Fail(gcpfake.Throttled)
	if r := call(t, srv, get, v3); r.status != 429 || r.err.Status != "RESOURCE_EXHAUSTED" {
		t.Errorf("first call: %+v", r)
	}
	etag := call(t, srv, get, v3).policy.Etag // the setIamPolicy fault waits for a set
	if r := call(t, srv, set, conditional(etag, 3, "roles/browser")); r.status != 503 {
		t.Errorf("set fault: %+v", r)
	}
	// Drift changes the etag.
	srv.Mutate("projects/p1", func(p *gcpfake.Policy) { p.Bindings = p.Bindings[:0] })
	if r := call(t, srv, set, conditional(etag, 3, "roles/browser")); r.status != 409 {
		t.Errorf("write after drift: %+v", r)
	}
	// A concurrent writer between read and write.
	etag = call(t, srv, get, v3).policy.Etag
	srv.ConcurrentWrites(1)
	if r := call(t, srv, set, conditional(etag, 3, "roles/browser")); r.status != 409 {
		t.Errorf("write meeting a concurrent writer: %+v", r)
	}
	p, _ := srv.Policy("projects/p1")
	if len(p.Bindings) != 1 || p.Bindings[0].Members[0] != "user:concurrent-writer-1@example.com" {
		t.Errorf("policy after the concurrent write: %+v", p)
	}
	reqs := srv.Requests()
	if len(reqs) != 6 || reqs[0].Method != "getIamPolicy" || reqs[0].Resource != "projects/p1" || reqs[0].Status != 429 {
		t.Errorf("recorded requests: %+v", reqs)
	}
}

func TestMergesIdenticalBindings(t *testing.T) {
	srv := newServer(t)
	etag := call(t, srv, get, v3).policy.Etag
	cond := `{"title":"t","expression":"request.time < timestamp(\"2030-01-01T00:00:00Z\")"}`
	body := `{"policy":{"version":3,"etag":"` + etag + `","bindings":[
		{"role":"roles/browser","members":["user:a@example.com"],"condition":` + cond + `},
		{"role":"roles/browser","members":["user:b@example.com","user:a@example.com"],"condition":` + cond + `}]}}`
	r := call(t, srv, set, body)
	if r.status != 200 || len(r.policy.Bindings) != 1 || len(r.policy.Bindings[0].Members) != 2 {
		t.Errorf("merged: %+v", r)
	}
}
