package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/internal/pipelinetest"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

// issuerPolicy trusts one issuer, at issuerURL, for the workload web-main.
func issuerPolicy(hookURL, issuerURL string) string {
	return fmt.Sprintf(`version: 1
providers:
  hook:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: %s, secret_env: %s}
issuers:
  github:
    url: %s
    type: github
    audience: %s
workloads:
  web-main:
    issuer: github
    claims: {repository: acme/web}
    principals: {hook: ci-web}
roles:
  deploy:
    provider: hook
    target: {app: web}
    requesters: {workloads: [web-main]}
    approvers: {users: [%s]}
    max_duration: 1h
    approval_channel: C0APPROVALS
`, hookURL, hookSecretEnv, issuerURL, pipelinetest.Audience, bob)
}

// TestPolicyReloadReachesIssuers: the issuers a reload puts in force are the ones the API trusts from then on
// (before, the API kept verifying tokens against the issuers of the policy it started with): an issuer added
// by a reload is trusted, one removed by it is not.
func TestPolicyReloadReachesIssuers(t *testing.T) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			oldIss, newIss := pipelinetest.Issuer(t), pipelinetest.Issuer(t)
			e := newReloadEnvFrom(t, b, -1, func(hookURL string) string { return issuerPolicy(hookURL, oldIss.URL()) })
			srv := httptest.NewServer(e.a.Handler())
			t.Cleanup(srv.Close)
			create := func(iss *oidcfake.Issuer) (int, string) {
				t.Helper()
				body, _ := json.Marshal(map[string]string{"role": "deploy", "reason": "deploy"})
				req, _ := http.NewRequest("POST", srv.URL+"/api/v1/requests", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+iss.Sign(pipelinetest.Claims("refs/heads/main", "production", "1")))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var out struct{ Reason string }
				_ = json.NewDecoder(resp.Body).Decode(&out)
				return resp.StatusCode, out.Reason
			}
			if code, reason := create(oldIss); code != 201 {
				t.Fatalf("before the reload, the policy's issuer: %d %s", code, reason)
			}
			if code, reason := create(newIss); code != 401 || reason != "unknown_issuer" {
				t.Fatalf("before the reload, an issuer the policy does not name: %d %s", code, reason)
			}
			e.write(issuerPolicy(e.url, newIss.URL()))
			if err := e.a.ReloadPolicy(context.Background(), "sighup"); err != nil {
				t.Fatal(err)
			}
			if code, reason := create(newIss); code != 201 {
				t.Fatalf("after the reload, the issuer it added: %d %s", code, reason)
			}
			if code, reason := create(oldIss); code != 401 || reason != "unknown_issuer" {
				t.Fatalf("after the reload, the issuer it removed: %d %s", code, reason)
			}
		})
	}
}
