package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/internal/pipelinetest"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/workload"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

type rig struct {
	t    *testing.T
	logs *lockedBuffer
	st   store.Store
	iss  *oidcfake.Issuer
	a    *app.App
	fake *providerfake.Fake
	srv  *httptest.Server
	v    *pipelinetest.Validator
	http *http.Client
}

func newRig(t *testing.T, st store.Store) *rig {
	t.Helper()
	return newRigWith(t, st, pipelinetest.Issuer(t))
}

// newRigWith is newRig with the caller's issuer.
func newRigWith(t *testing.T, st store.Store, iss *oidcfake.Issuer) *rig {
	t.Helper()
	pol := pipelinetest.Policy(t, iss, "30s", "")
	fake := providerfake.New()
	logs := &lockedBuffer{}
	a, err := app.New(t.Context(), app.Deps{Policy: pol, Store: st, Providers: map[string]grants.Provider{"hook": fake}, Auth: pipelinetest.Authenticator(t, pol, st),
		Logger: zerolog.New(logs).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	v := pipelinetest.NewValidator(t, srv.URL)
	return &rig{t: t, logs: logs, st: st, iss: iss, a: a, fake: fake, srv: srv, v: v, http: v.Client()}
}

type answer struct {
	status int
	body   map[string]any
	raw    string
}

func (a answer) str(path ...string) string {
	var cur any = a.body
	for _, p := range path {
		m, _ := cur.(map[string]any)
		cur = m[p]
	}
	s, _ := cur.(string)
	return s
}

// call makes an API call with token (as Bearer, unless empty) and body (a JSON value, or raw bytes).
func (r *rig) call(method, path, token string, body any, invalid ...bool) answer {
	r.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, r.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if len(invalid) > 0 && invalid[0] {
		req.Header.Set(pipelinetest.SkipRequestValidation, "1")
	}
	resp, err := r.http.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := answer{status: resp.StatusCode, raw: string(data)}
	_ = json.Unmarshal(data, &out.body)
	return out
}

func (r *rig) token(ref, env, run string, opts ...oidcfake.TokenOption) string {
	return r.iss.SignWith(pipelinetest.Claims(ref, env, run), opts...)
}

func (r *rig) pending() int {
	r.t.Helper()
	rs, err := r.st.ListRequests(context.Background(), store.RequestQuery{State: store.RequestPending})
	if err != nil {
		r.t.Fatal(err)
	}
	return len(rs)
}

func (r *rig) audit(typ string) []store.AuditEvent {
	r.t.Helper()
	recs, err := r.st.ReadAudit(context.Background(), 0, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []store.AuditEvent
	for _, rec := range recs {
		if rec.Event.Type == typ {
			out = append(out, rec.Event)
		}
	}
	return out
}

// lockedBuffer collects the server's logs (every level) to check that no token ends up there.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// noLeak fails if any of the credentials (or the signature part of a JWT) appears in the logs or the audit
// log.
func (r *rig) noLeak(creds ...string) {
	r.t.Helper()
	recs, _ := r.st.ReadAudit(context.Background(), 0, 0)
	var audit strings.Builder
	for _, rec := range recs {
		audit.Write(rec.Raw)
	}
	for _, c := range creds {
		parts := []string{c}
		if p := strings.Split(c, "."); len(p) == 3 {
			parts = append(parts, p[2])
		}
		for _, p := range parts {
			if len(p) < 16 {
				continue
			}
			if strings.Contains(r.logs.String(), p) {
				r.t.Fatalf("a credential appears in the server log")
			}
			if strings.Contains(audit.String(), p) {
				r.t.Fatalf("a credential appears in the audit log")
			}
		}
	}
}

func eachStore(t *testing.T, fn func(t *testing.T, r *rig)) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, newRig(t, b.Open(t)))
		})
	}
}

// TestAPIFlowMatchesOpenAPI drives every route through a request's life; every call and answer is validated
// against api/openapi.yaml, and every operation of the document must be exercised.
func TestAPIFlowMatchesOpenAPI(t *testing.T) {
	eachStore(t, func(t *testing.T, r *rig) {
		tok := r.token("refs/heads/feature", "staging", "100")
		if got := r.call("GET", "/api/v1/openapi.yaml", "", nil); got.status != 200 || !strings.Contains(got.raw, "openapi: 3") {
			t.Fatalf("openapi.yaml: %d", got.status)
		}
		created := r.call("POST", "/api/v1/requests", tok, map[string]string{"role": "deploy", "duration": "20m", "reason": "deploy v1.2"})
		if created.status != 201 || created.str("state") != "pending" || created.str("workload") != "web-main" {
			t.Fatalf("create: %d %s", created.status, created.raw)
		}
		id := created.str("id")
		pc := created.body["pipeline"].(map[string]any)
		if pc["repository"] != "acme/web" || pc["ref"] != "refs/heads/feature" || pc["actor"] != "octocat" || pc["actor_user"] != pipelinetest.Actor ||
			pc["run_url"] != "https://github.com/acme/web/actions/runs/100/attempts/1" || pc["commit"] == "" || pc["workflow"] != "deploy" || pc["environment"] != "staging" {
			t.Fatalf("pipeline context: %v", pc)
		}
		if created.str("approval_channel") != "C0APPROVALS" {
			t.Fatalf("approval channel: %s", created.raw)
		}
		// A long poll with a short timeout answers pending.
		if w := r.call("GET", "/api/v1/requests/"+id+"/wait?timeout=50ms", tok, nil); w.status != 200 || w.str("state") != "pending" {
			t.Fatalf("wait: %d %s", w.status, w.raw)
		}
		if w := r.call("GET", "/api/v1/requests/"+id+"/wait?timeout=soon", tok, nil, true); w.status != 400 || w.str("code") != "bad_timeout" {
			t.Fatalf("bad timeout: %d %s", w.status, w.raw)
		}
		// The triggering person cannot approve; another approver can, and the long poll wakes up.
		done := make(chan answer, 1)
		go func() { done <- r.call("GET", "/api/v1/requests/"+id+"/wait?timeout=20s", tok, nil) }()
		if _, err := r.a.Approvals.Approve(context.Background(), id, pipelinetest.Actor, ""); err == nil {
			t.Fatal("the triggering person approved their own pipeline's request")
		}
		if _, err := r.a.Approvals.Approve(context.Background(), id, pipelinetest.Approver, ""); err != nil {
			t.Fatal(err)
		}
		w := <-done
		if w.status != 200 || w.str("state") != "approved" || w.str("grant", "state") != "active" {
			t.Fatalf("wait after approval: %d %s", w.status, w.raw)
		}
		gid := w.str("grant", "id")
		if got := r.call("GET", "/api/v1/requests/"+id, tok, nil); got.status != 200 || got.str("grant_id") != gid {
			t.Fatalf("get request: %d %s", got.status, got.raw)
		}
		g := r.call("GET", "/api/v1/grants/"+gid, tok, nil)
		if g.status != 200 || g.str("state") != "active" || g.body["heartbeat_timeout_seconds"] != float64(30) || g.str("principal") != "ci-web" {
			t.Fatalf("get grant: %d %s", g.status, g.raw)
		}
		hb := r.call("POST", "/api/v1/grants/"+gid+"/heartbeat", tok, nil)
		if hb.status != 200 || hb.str("last_heartbeat") == "" {
			t.Fatalf("heartbeat: %d %s", hb.status, hb.raw)
		}
		if got := r.call("POST", "/api/v1/grants/"+gid+"/heartbeat", tok, []byte(`{"extend":"1h"}`), true); got.status != 400 {
			t.Fatalf("heartbeat with a body: %d %s", got.status, got.raw)
		}
		if r.fake.PresentCount() != 1 {
			t.Fatal("access not present while the grant is active")
		}
		rel := r.call("POST", "/api/v1/grants/"+gid+"/release", tok, nil)
		if rel.status != 200 || rel.str("state") != "revoked" || rel.str("end_reason") != "released" {
			t.Fatalf("release: %d %s", rel.status, rel.raw)
		}
		if r.fake.PresentCount() != 0 {
			t.Fatal("access still present after release")
		}
		if again := r.call("POST", "/api/v1/grants/"+gid+"/release", tok, nil); again.status != 200 || again.str("state") != "revoked" {
			t.Fatalf("second release: %d %s", again.status, again.raw)
		}
		if late := r.call("POST", "/api/v1/grants/"+gid+"/heartbeat", tok, nil); late.status != 409 || late.str("code") != "not_active" {
			t.Fatalf("heartbeat after release: %d %s", late.status, late.raw)
		}
		// Cancel: a second request is withdrawn; cancelling again is a conflict.
		// (A token creates one request: the second comes with a fresh token of the same run.)
		c2 := r.call("POST", "/api/v1/requests", r.token("refs/heads/feature", "staging", "100"), map[string]string{"role": "deploy", "reason": "second"})
		if got := r.call("POST", "/api/v1/requests/"+c2.str("id")+"/cancel", tok, nil); got.status != 200 || got.str("state") != "cancelled" {
			t.Fatalf("cancel: %d %s", got.status, got.raw)
		}
		if got := r.call("POST", "/api/v1/requests/"+c2.str("id")+"/cancel", tok, nil); got.status != 409 || got.str("code") != "already_decided" {
			t.Fatalf("cancel again: %d %s", got.status, got.raw)
		}
		if got := r.call("GET", "/api/v1/nothing", tok, nil, true); got.status != 404 || got.str("code") != "not_found" {
			// not in the document: the validator reports the unknown route, so skip it from there
			t.Fatalf("unknown route: %d %s", got.status, got.raw)
		}
		r.noLeak(tok)
		if missing := r.v.Unexercised(); len(missing) > 0 {
			t.Fatalf("operations never exercised: %v", missing)
		}
	})
}

// TestRefusedTokensStoreNothing: every kind of bad token is refused with a clear reason, nothing is stored
// but one rate-limited audit line per reason, and the token never appears in the answer or the audit log.
func TestRefusedTokensStoreNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, r *rig) {
		other := pipelinetest.Issuer(t) // same audience, but not the policy's issuer
		good := pipelinetest.Claims("refs/heads/x", "staging", "7")
		cases := []struct {
			name, token string
			status      int
			code        string
			reason      string
		}{
			{"no token", "", 401, "unauthenticated", "missing_credentials"},
			{"not a token", "hello", 401, "unauthenticated", "malformed"},
			{"bad signature", r.iss.SignWith(good, oidcfake.BadSignature()), 401, "unauthenticated", "bad_signature"},
			{"signed by another key", r.iss.SignWith(good, oidcfake.WrongKey()), 401, "unauthenticated", "bad_signature"},
			{"wrong audience", r.iss.SignWith(good, oidcfake.Audience("https://other.example")), 401, "unauthenticated", "wrong_audience"},
			{"wrong issuer", other.SignWith(good), 401, "unauthenticated", "unknown_issuer"},
			{"expired", r.iss.SignWith(good, oidcfake.Expired()), 401, "unauthenticated", "expired"},
			{"not yet valid", r.iss.SignWith(good, oidcfake.NotYetValid()), 401, "unauthenticated", "not_yet_valid"},
			{"missing required claim", r.iss.SignWith(good, oidcfake.Without("ref")), 401, "unauthenticated", "missing_claim"},
			{"unknown API token", "jit_nosuchtoken_0000000000000000000000", 401, "unauthenticated", ""},
			{"no workload matches", r.iss.SignWith(oidcfake.GitHubActions("evil/repo", "refs/heads/main", "production")), 403, "no_workload", "no_workload"},
		}
		// Lines are rate-limited per reason and per minute of the wall clock: the flood may straddle a minute
		// boundary, and then one more line per reason is right.
		firstWindow := time.Now().Truncate(time.Minute)
		for _, tc := range cases {
			for range 5 { // a small flood per reason
				got := r.call("POST", "/api/v1/requests", tc.token, map[string]string{"role": "deploy", "reason": "x"})
				if got.status != tc.status || got.str("code") != tc.code || (tc.reason != "" && got.str("reason") != tc.reason) || got.str("message") == "" {
					t.Fatalf("%s: %d %s", tc.name, got.status, got.raw)
				}
				if tc.token != "" && len(tc.token) > 20 && strings.Contains(got.raw, tc.token[len(tc.token)-20:]) {
					t.Fatalf("%s: the answer repeats the token", tc.name)
				}
			}
		}
		// A valid workload asking for a role it may not request.
		if got := r.call("POST", "/api/v1/requests", r.iss.Sign(good), map[string]string{"role": "other", "reason": "x"}); got.status != 403 || got.str("code") != "not_allowed" {
			t.Fatalf("role not allowed: %d %s", got.status, got.raw)
		}
		if n := r.pending(); n != 0 {
			t.Fatalf("refused calls stored %d requests", n)
		}
		lines := r.audit(store.EventAuthRefused)
		reasons := map[string]int{}
		for _, e := range lines {
			reasons[e.Details["reason"]]++
			for _, tc := range cases {
				for _, v := range e.Details {
					if len(tc.token) > 20 && strings.Contains(v, tc.token[len(tc.token)-20:]) {
						t.Fatalf("audit line holds a token: %v", e.Details)
					}
				}
			}
		}
		windows := 1 + int(time.Now().Truncate(time.Minute).Sub(firstWindow)/time.Minute)
		for reason, n := range reasons {
			if n < 1 || n > windows {
				t.Fatalf("reason %s: %d audit lines for 5+ refusals in %d minute window(s), want one per window (rate-limited)", reason, n, windows)
			}
		}
		if len(reasons) < 9 {
			t.Fatalf("audit reasons = %v", reasons)
		}
		if len(r.audit(store.EventRequested)) != 0 {
			t.Fatal("a refused call was audited as a request")
		}
		var creds []string
		for _, tc := range cases {
			creds = append(creds, tc.token)
		}
		r.noLeak(creds...)
	})
}

// TestKeyRotation: a token signed with a key the server has not seen yet is accepted after the key set is
// fetched again.
func TestKeyRotation(t *testing.T) {
	eachStore(t, func(t *testing.T, r *rig) {
		if got := r.call("POST", "/api/v1/requests", r.token("refs/heads/a", "staging", "1"), map[string]string{"role": "deploy", "reason": "before"}); got.status != 201 {
			t.Fatalf("before rotation: %d %s", got.status, got.raw)
		}
		r.iss.Rotate()
		if got := r.call("POST", "/api/v1/requests", r.token("refs/heads/a", "staging", "2"), map[string]string{"role": "deploy", "reason": "after"}); got.status != 201 {
			t.Fatalf("after rotation: %d %s", got.status, got.raw)
		}
		if r.pending() != 2 {
			t.Fatal("want two requests")
		}
	})
}

// TestBadBodies: strict JSON, size limit, durations checked against the role; nothing stored.
func TestBadBodies(t *testing.T) {
	eachStore(t, func(t *testing.T, r *rig) {
		tok := r.token("refs/heads/a", "staging", "1")
		cases := []struct {
			name   string
			body   []byte
			status int
			code   string
		}{
			{"unknown field", []byte(`{"role":"deploy","reason":"x","repository":"acme/prod"}`), 400, "unknown_field"},
			{"two objects", []byte(`{"role":"deploy","reason":"x"}{}`), 400, "invalid_json"},
			{"not json", []byte(`role=deploy`), 400, "invalid_json"},
			{"empty", []byte(``), 400, "invalid_json"},
			{"too large", []byte(`{"role":"deploy","reason":"` + strings.Repeat("a", 20000) + `"}`), 413, "body_too_large"},
			{"no role", []byte(`{"reason":"x"}`), 400, "invalid_request"},
			{"bad duration", []byte(`{"role":"deploy","reason":"x","duration":"soon"}`), 400, "bad_duration"},
			{"negative duration", []byte(`{"role":"deploy","reason":"x","duration":"-5m"}`), 400, "bad_duration"},
			{"over the role's maximum", []byte(`{"role":"deploy","reason":"x","duration":"2h"}`), 400, "bad_duration"},
			{"no reason", []byte(`{"role":"deploy","reason":"  "}`), 400, "bad_reason"},
			{"unknown role", []byte(`{"role":"nope","reason":"x"}`), 404, "unknown_role"},
		}
		for _, tc := range cases {
			got := r.call("POST", "/api/v1/requests", tok, tc.body, true)
			if got.status != tc.status || got.str("code") != tc.code || got.str("message") == "" {
				t.Fatalf("%s: %d %s", tc.name, got.status, got.raw)
			}
		}
		if n := r.pending(); n != 0 {
			t.Fatalf("bad bodies stored %d requests", n)
		}
	})
}

// TestOwnership: another run of the same workflow, or another workload, cannot read, heartbeat, cancel or
// release a pipeline's request and grant.
func TestOwnership(t *testing.T) {
	eachStore(t, func(t *testing.T, r *rig) {
		mine := r.token("refs/heads/a", "staging", "1")
		created := r.call("POST", "/api/v1/requests", mine, map[string]string{"role": "deploy", "reason": "mine"})
		id := created.str("id")
		if _, err := r.a.Approvals.Approve(context.Background(), id, pipelinetest.Approver, ""); err != nil {
			t.Fatal(err)
		}
		gid := r.call("GET", "/api/v1/requests/"+id, mine, nil).str("grant_id")
		others := map[string]string{
			"another run":      r.token("refs/heads/a", "staging", "2"),
			"another workload": r.iss.Sign(oidcfake.GitHubActions("acme/other", "refs/heads/a", "staging")),
			"another subject":  r.token("refs/heads/a", "", "1"),
		}
		for name, tok := range others {
			for _, c := range []struct{ method, path string }{
				{"GET", "/api/v1/requests/" + id}, {"GET", "/api/v1/requests/" + id + "/wait?timeout=1ms"},
				{"POST", "/api/v1/requests/" + id + "/cancel"}, {"GET", "/api/v1/grants/" + gid},
				{"POST", "/api/v1/grants/" + gid + "/heartbeat"}, {"POST", "/api/v1/grants/" + gid + "/release"},
			} {
				if got := r.call(c.method, c.path, tok, nil); got.status != 404 || got.str("code") != "not_found" {
					t.Fatalf("%s: %s %s: %d %s", name, c.method, c.path, got.status, got.raw)
				}
			}
		}
		if g, _ := r.st.GetGrant(context.Background(), gid); g.State != store.GrantActive || !g.LastHeartbeat.IsZero() {
			t.Fatalf("another caller changed the grant: %s", g.State)
		}
	})
}

// TestAutoApprovalOverAPI: a matching pipeline gets an active grant in the create answer; a non-matching
// one waits.
func TestAutoApprovalOverAPI(t *testing.T) {
	eachStore(t, func(t *testing.T, r *rig) {
		got := r.call("POST", "/api/v1/requests", r.token("refs/heads/main", "production", "9"), map[string]string{"role": "deploy", "duration": "10m", "reason": "release"})
		if got.status != 201 || got.str("state") != "approved" || got.str("grant", "state") != "active" {
			t.Fatalf("matching: %d %s", got.status, got.raw)
		}
		if a := got.body["approvals"].([]any); len(a) != 1 || a[0].(map[string]any)["by"] != "system:auto-approve" {
			t.Fatalf("approvals: %v", a)
		}
		got = r.call("POST", "/api/v1/requests", r.token("refs/heads/main", "production", "10"), map[string]string{"role": "deploy", "duration": "30m", "reason": "release"})
		if got.status != 201 || got.str("state") != "pending" {
			t.Fatalf("too long for the rule: %d %s", got.status, got.raw)
		}
	})
}

// TestAPITokenWorkload: a system without OIDC uses a static API token of the workload's owner; a revoked
// token is refused; the token is in no log.
func TestAPITokenWorkload(t *testing.T) {
	eachStore(t, func(t *testing.T, r *rig) {
		ts, ok := r.st.(workload.TokenStore)
		if !ok {
			t.Skip("this store keeps no API tokens")
		}
		tokens := workload.NewTokens(ts, workload.TokensOptions{})
		secret, info, err := tokens.Create(context.Background(), "reporting")
		if err != nil {
			t.Fatal(err)
		}
		got := r.call("POST", "/api/v1/requests", secret, map[string]string{"role": "other", "reason": "nightly report"})
		if got.status != 201 || got.str("workload") != "nightly" || got.str("pipeline", "method") != "api_token" {
			t.Fatalf("create with an API token: %d %s", got.status, got.raw)
		}
		if got := r.call("POST", "/api/v1/requests", secret, map[string]string{"role": "deploy", "reason": "x"}); got.status != 403 || got.str("code") != "not_allowed" {
			t.Fatalf("role not allowed for the token's workload: %d %s", got.status, got.raw)
		}
		if err := tokens.Revoke(context.Background(), info.ID); err != nil {
			t.Fatal(err)
		}
		if got := r.call("POST", "/api/v1/requests", secret, map[string]string{"role": "other", "reason": "x"}); got.status != 401 || got.str("reason") != "revoked_token" {
			t.Fatalf("revoked token: %d %s", got.status, got.raw)
		}
		r.noLeak(secret)
	})
}
