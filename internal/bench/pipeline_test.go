package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

const pipelinePolicy = `version: 1
defaults: {approval_channel: C0BENCH, pending_ttl: 1h}
providers:
  hook:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "%s", secret_env: BENCH_HOOK_SECRET, timeout: 5s}
issuers:
  ci:
    url: %s
    type: github
    audience: jitbot
workloads:
  app:
    issuer: ci
    claims: {repository: acme/app}
    principals: {hook: ci-app}
roles:
  deploy:
    provider: hook
    target: {app: main}
    requesters: {workloads: [app]}
    approvers: {users: [U0BENCHAPPROVER]}
    max_duration: 1h
`

type pipelineRig struct {
	a    *app.App
	srv  *httptest.Server
	recv *webhookfake.Server
	iss  *oidcfake.Issuer
}

func newPipelineRig(b *testing.B, be backendtest.Backend) *pipelineRig {
	iss, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = iss.Close() })
	recv := webhookfake.NewServer(secret)
	b.Cleanup(recv.Close)
	pol, err := policy.Parse("bench.yaml", fmt.Appendf(nil, pipelinePolicy, recv.URL, iss.URL()))
	if err != nil {
		b.Fatal(err)
	}
	st := be.Prepare(b)()
	b.Cleanup(func() { _ = st.Close() })
	a, err := app.New(b.Context(), app.Deps{Policy: pol, Store: st, Logger: zerolog.Nop(), Getenv: func(string) string { return string(secret) },
		Tuning: app.Tuning{ProviderTimeout: 5 * time.Second}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewServer(a.Handler())
	b.Cleanup(srv.Close)
	return &pipelineRig{a: a, srv: srv, recv: recv, iss: iss}
}

func (r *pipelineRig) post(client *http.Client, path, token string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

func runToken(iss *oidcfake.Issuer, run int) string {
	c := oidcfake.GitHubActions("acme/app", "refs/heads/feature", "staging")
	c["run_id"] = fmt.Sprint(run)
	return iss.Sign(c)
}

// BenchmarkAPICreate: POST /api/v1/requests at a steady 200 requests per second for 5 s (1,000 requests,
// each with its own verified OIDC token), latency from send to answer. Target p99 < 100 ms.
func BenchmarkAPICreate(b *testing.B) {
	const rate, total = 200, 1000
	for _, be := range backendtest.All() {
		b.Run(be.Name, func(b *testing.B) {
			r := newPipelineRig(b, be)
			tokens := make([]string, total)
			for i := range tokens {
				tokens[i] = runToken(r.iss, i)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			// Warm up: discovery and keys fetched, connections open.
			if code, _, err := r.post(client, "/api/v1/requests", runToken(r.iss, -1), map[string]string{"role": "deploy", "reason": "warm-up"}); err != nil || code != 201 {
				b.Fatalf("warm-up: %d %v", code, err)
			}
			for b.Loop() {
				lat := make([]time.Duration, total)
				var wg sync.WaitGroup
				var failed sync.Map
				tick := time.NewTicker(time.Second / rate)
				for i := range total {
					<-tick.C
					wg.Add(1)
					go func() {
						defer wg.Done()
						start := time.Now()
						code, _, err := r.post(client, "/api/v1/requests", tokens[i], map[string]string{"role": "deploy", "duration": "10m", "reason": "bench"})
						lat[i] = time.Since(start)
						if err != nil || code != 201 {
							failed.Store(i, fmt.Sprint(code, err))
						}
					}()
				}
				tick.Stop()
				wg.Wait()
				failed.Range(func(k, v any) bool { b.Fatalf("request %v: %v", k, v); return false })
				slices.Sort(lat)
				b.ReportMetric(float64(pct(lat, 0.5).Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(pct(lat, 0.99).Microseconds())/1000, "p99_ms")
				b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max_ms")
			}
		})
	}
}

// BenchmarkReleaseToRevoke: 200 pipeline grants, each approved and then released through
// POST /api/v1/grants/{id}/release; latency from sending the release to the signed revoke arriving at the
// webhook receiver. Target p99 < 100 ms.
func BenchmarkReleaseToRevoke(b *testing.B) {
	const n = 200
	for _, be := range backendtest.All() {
		b.Run(be.Name, func(b *testing.B) {
			r := newPipelineRig(b, be)
			client := &http.Client{}
			for b.Loop() {
				// One grant at a time: leases of the same binding overlap, and releasing a covered lease
				// rightly revokes nothing at the provider.
				lags := make([]time.Duration, 0, n)
				for i := range n {
					tok := runToken(r.iss, 10000+i)
					code, body, err := r.post(client, "/api/v1/requests", tok, map[string]string{"role": "deploy", "duration": "30m", "reason": "bench"})
					if err != nil || code != 201 {
						b.Fatalf("create: %d %v", code, err)
					}
					out, err := r.a.Approvals.Approve(context.Background(), body["id"].(string), "U0BENCHAPPROVER", "")
					if err != nil || out.GrantID == "" {
						b.Fatalf("approve: %v", err)
					}
					start := time.Now()
					code, body, err = r.post(client, "/api/v1/grants/"+out.GrantID+"/release", tok, nil)
					if err != nil || code != 200 || body["state"] != "revoked" {
						b.Fatalf("release: %d %v %v", code, body, err)
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					d, err := r.recv.WaitFor(ctx, func(d webhookfake.Delivery) bool {
						return d.Payload.Type == "revoke" && d.Payload.GrantID == out.GrantID
					})
					cancel()
					if err != nil {
						b.Fatalf("no revoke for %s: %v", out.GrantID, err)
					}
					lags = append(lags, d.At.Sub(start))
				}
				slices.Sort(lags)
				b.ReportMetric(float64(pct(lags, 0.5).Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(pct(lags, 0.99).Microseconds())/1000, "p99_ms")
				b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "max_ms")
			}
		})
	}
}
