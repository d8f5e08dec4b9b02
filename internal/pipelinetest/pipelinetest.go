// Package pipelinetest is the shared rig of the pipeline tests: a local OIDC issuer (oidcfake), a policy
// that trusts it, and a request recorder that validates every API call and answer against api/openapi.yaml
// with kin-openapi.
package pipelinetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/jitbot/jitbot/api"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/workload"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

// Audience is the aud the test policy accepts.
const Audience = "https://jitbot.test"

// Slack users of the test policy.
const (
	Approver = "U0BOB"
	Actor    = "U0OCTO" // mapped to the GitHub login "octocat", who triggers the runs
	Carol    = "U0CAROL"
)

// Policy returns a policy that trusts iss as a GitHub-style issuer, with:
//   - workload web-main (acme/web, any ref) and web-other (acme/other), principals at provider hook;
//   - role deploy: web-main may request it, Bob and Octo approve, max 1h, auto-approved for refs/heads/main +
//     environment production up to 15m;
//   - role other: web-other and nightly (API tokens of owner "reporting") may request it.
//
// heartbeat is web-main's heartbeat_timeout.
func Policy(t testing.TB, iss *oidcfake.Issuer, heartbeat string, extra string) *policy.Policy {
	t.Helper()
	src := fmt.Sprintf(`version: 1
defaults:
  approval_channel: C0APPROVALS
  pending_ttl: 10m
providers:
  hook:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "http://127.0.0.1:1/unused", secret_env: JITBOT_TEST_HOOK_SECRET}
issuers:
  github:
    url: %s
    type: github
    audience: %s
    required_claims: [ref]
workloads:
  web-main:
    issuer: github
    claims: {repository: acme/web}
    heartbeat_timeout: %s
    principals: {hook: ci-web}
  web-other:
    issuer: github
    claims: {repository: acme/other}
    principals: {hook: ci-other}
  nightly:
    api_token_owner: reporting
    principals: {hook: ci-report}
identities:
  U0OCTO: {github: octocat}
roles:
  deploy:
    provider: hook
    target: {app: web}
    requesters: {workloads: [web-main]}
    approvers: {users: [U0BOB, U0OCTO]}
    max_duration: 1h
    auto_approve:
      - when: 'claims.ref == "refs/heads/main" && claims.environment == "production"'
        max_duration: 15m
  other:
    provider: hook
    target: {app: other}
    requesters: {workloads: [web-other, nightly]}
    approvers: {users: [U0BOB]}
%s`, iss.URL(), Audience, heartbeat, extra)
	p, err := policy.Parse("pipelines.yaml", []byte(src))
	if err != nil {
		t.Fatalf("test policy: %v", err)
	}
	return p
}

// Issuer starts a local issuer for Audience.
func Issuer(t testing.TB) *oidcfake.Issuer {
	t.Helper()
	iss, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{Audience: Audience})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	return iss
}

// Claims are GitHub Actions claims of a run of acme/web on ref in environment env, run runID.
func Claims(ref, env, runID string) map[string]any {
	c := oidcfake.GitHubActions("acme/web", ref, env)
	c["run_id"] = runID
	return c
}

// Authenticator is the production authenticator (OIDC for the policy's issuers, then API tokens), with the
// key refresh interval shortened so that a key rotation right after a verification is picked up at once.
func Authenticator(t testing.TB, pol *policy.Policy, st store.Store) workload.Authenticator {
	t.Helper()
	var cfgs []workload.IssuerConfig
	for _, name := range pol.IssuerNames() {
		iss := pol.Issuers[name]
		cfgs = append(cfgs, workload.IssuerConfig{Name: name, URL: iss.URL, Audiences: iss.Audiences, Leeway: iss.Leeway, RequiredClaims: iss.RequiredClaims})
	}
	o, err := workload.NewOIDC(context.Background(), cfgs, workload.OIDCOptions{KeyRefreshMin: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	auths := []workload.Authenticator{o}
	if ts, ok := st.(workload.TokenStore); ok {
		auths = append(auths, workload.NewTokens(ts, workload.TokensOptions{}))
	}
	return workload.Chain(auths...)
}

// Validator is an http.RoundTripper that checks each request and response against the OpenAPI document
// and records which operations and status codes were seen.
type Validator struct {
	t      testing.TB
	router routers.Router
	base   http.RoundTripper

	mu   sync.Mutex
	seen map[string]map[int]bool // operation id -> statuses
}

// SkipRequestValidation marks a request that is invalid on purpose (its answer is still validated).
const SkipRequestValidation = "X-Test-Invalid-Request"

// NewValidator loads api/openapi.yaml, checks that it is a valid OpenAPI 3 document, and routes it for
// serverURL.
func NewValidator(t testing.TB, serverURL string) *Validator {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI 3: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: serverURL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route openapi.yaml: %v", err)
	}
	return &Validator{t: t, router: router, base: http.DefaultTransport, seen: map[string]map[int]bool{}}
}

// Client returns an HTTP client whose calls are validated.
func (v *Validator) Client() *http.Client { return &http.Client{Transport: v} }

func (v *Validator) RoundTrip(req *http.Request) (*http.Response, error) {
	skip := req.Header.Get(SkipRequestValidation) != ""
	req.Header.Del(SkipRequestValidation)
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	reset := func() {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	reset()
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		if !skip {
			v.t.Errorf("openapi: %s %s is not in api/openapi.yaml: %v", req.Method, req.URL.Path, err)
		}
		return v.base.RoundTrip(req)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if !skip {
		if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
			v.t.Errorf("openapi: request %s %s does not match the document: %v", req.Method, req.URL.Path, err)
		}
	}
	reset()
	resp, err := v.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	rbody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(rbody))
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(rbody)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		v.t.Errorf("openapi: answer %d to %s %s does not match the document: %v\nbody: %s", resp.StatusCode, req.Method, req.URL.Path, err, rbody)
	}
	v.mu.Lock()
	if v.seen[route.Operation.OperationID] == nil {
		v.seen[route.Operation.OperationID] = map[int]bool{}
	}
	v.seen[route.Operation.OperationID][resp.StatusCode] = true
	v.mu.Unlock()
	return resp, nil
}

// Unexercised returns the document's operations no validated call reached.
func (v *Validator) Unexercised() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	doc, _ := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	var out []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if v.seen[op.OperationID] == nil {
				out = append(out, strings.ToUpper(method)+" "+path)
			}
		}
	}
	return out
}
