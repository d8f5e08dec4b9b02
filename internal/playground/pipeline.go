package playground

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

// JobRun is how long a simulated pipeline job "works" once its access is active.
var JobRun = 20 * time.Second

// pipelines runs the local OIDC issuers of the policy (loopback issuer URLs) and the simulated jobs.
type pipelines struct {
	ctx     context.Context // ends when the playground closes; simulated jobs stop then
	stop    context.CancelFunc
	mu      sync.Mutex
	issuers map[string]*oidcfake.Issuer // by policy issuer name
	jobs    []*JobView
	wg      sync.WaitGroup
}

// JobView is a simulated pipeline job as the page shows it.
type JobView struct {
	ID       string   `json:"id"`
	Role     string   `json:"role"`
	Workload string   `json:"workload"`
	State    string   `json:"state"` // waiting, running, done, refused, failed
	Lines    []string `json:"lines"`
}

// PipelineRoles are the roles a simulated job can request: those with a workload of a local issuer.
func (p *Playground) PipelineRoles() []string {
	var out []string
	for _, name := range p.pol.RoleNames() {
		if _, ok := p.jobWorkload(name); ok {
			out = append(out, name)
		}
	}
	return out
}

// startIssuers serves every issuer of the policy whose URL is a loopback http address, so that simulated
// jobs get real signed ID tokens that jitbot verifies as it would GitHub's.
func (p *Playground) startIssuers() error {
	ctx, stop := context.WithCancel(context.Background())
	p.jobsState = &pipelines{ctx: ctx, stop: stop, issuers: map[string]*oidcfake.Issuer{}}
	for _, name := range p.pol.IssuerNames() {
		iss := p.pol.Issuers[name]
		u, err := url.Parse(iss.URL)
		if err != nil || u.Scheme != "http" || u.Path != "" || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost") {
			continue
		}
		f, err := oidcfake.New(u.Host, oidcfake.Options{Audience: iss.Audiences[0]})
		if err != nil {
			return fmt.Errorf("playground OIDC issuer %s on %s: %w", name, u.Host, err)
		}
		p.jobsState.issuers[name] = f
	}
	return nil
}

func (p *Playground) stopIssuers() {
	if p.jobsState == nil {
		return
	}
	p.jobsState.stop()
	p.jobsState.wg.Wait()
	for _, f := range p.jobsState.issuers {
		_ = f.Close()
	}
}

// jobWorkload picks the workload a simulated job of role acts as.
func (p *Playground) jobWorkload(role string) (*policy.Workload, bool) {
	r, ok := p.pol.Role(role)
	if !ok || p.jobsState == nil {
		return nil, false
	}
	for _, name := range r.Requesters.Workloads {
		w, ok := p.pol.Workload(name)
		if ok && p.jobsState.issuers[w.Issuer] != nil {
			return w, true
		}
	}
	return nil, false
}

// jobClaims are GitHub Actions claims that satisfy the workload's claim rules (each rule's first pattern,
// with glob characters filled in).
func jobClaims(w *policy.Workload, run int) map[string]any {
	c := oidcfake.GitHubActions("acme/web", "refs/heads/main", "production")
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range w.Claims {
			if !yield(k) {
				return
			}
		}
	}) {
		c[name] = strings.NewReplacer("**", "x", "*", "x", "?", "x", `\`, "").Replace(w.Claims[name][0])
	}
	c["run_id"] = fmt.Sprint(1000 + run)
	c["actor"] = "playground"
	return c
}

// jobs returns a copy of the simulated jobs, newest first.
func (p *Playground) jobs() []JobView {
	if p.jobsState == nil {
		return []JobView{}
	}
	p.jobsState.mu.Lock()
	defer p.jobsState.mu.Unlock()
	out := make([]JobView, 0, len(p.jobsState.jobs))
	for i := len(p.jobsState.jobs) - 1; i >= 0; i-- {
		j := *p.jobsState.jobs[i]
		j.Lines = slices.Clone(j.Lines)
		out = append(out, j)
	}
	return out
}

// runJob starts a simulated pipeline job that requests role through the real HTTP API, like jitbot exec:
// create, wait for the decision, work for JobRun while heartbeating, release.
func (p *Playground) runJob(role string) (*JobView, error) {
	w, ok := p.jobWorkload(role)
	if !ok {
		return nil, fmt.Errorf("role %s has no workload of a local issuer, so no job can be simulated for it", role)
	}
	ps := p.jobsState
	ps.mu.Lock()
	n := len(ps.jobs) + 1
	job := &JobView{ID: fmt.Sprintf("job-%d", n), Role: role, Workload: w.Name, State: "waiting"}
	ps.jobs = append(ps.jobs, job)
	ps.mu.Unlock()
	token := ps.issuers[w.Issuer].Sign(jobClaims(w, n))
	say := func(state, format string, args ...any) {
		ps.mu.Lock()
		defer ps.mu.Unlock()
		if state != "" {
			job.State = state
		}
		job.Lines = append(job.Lines, time.Now().Format(time.TimeOnly)+" "+fmt.Sprintf(format, args...))
	}
	ps.wg.Add(1)
	go func() {
		defer ps.wg.Done()
		p.drive(ps.ctx, job, token, say)
	}()
	return job, nil
}

type jobGrant struct {
	ID                      string `json:"id"`
	State                   string `json:"state"`
	HeartbeatTimeoutSeconds int    `json:"heartbeat_timeout_seconds"`
}

type jobRequest struct {
	ID    string    `json:"id"`
	State string    `json:"state"`
	Grant *jobGrant `json:"grant"`
}

type jobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (p *Playground) call(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.url+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var e jobError
		_ = json.Unmarshal(data, &e)
		return fmt.Errorf("%s (%s)", e.Message, e.Code)
	}
	return json.Unmarshal(data, out)
}

func (p *Playground) drive(ctx context.Context, job *JobView, token string, say func(state, format string, args ...any)) {
	var req jobRequest
	say("", "$ jitbot exec --role %s --for 10m --reason \"deploy (simulated job)\" -- ./deploy.sh", job.Role)
	if err := p.call(ctx, http.MethodPost, "/api/v1/requests", token, map[string]string{"role": job.Role, "duration": "10m", "reason": "deploy acme/web (simulated pipeline job)"}, &req); err != nil {
		say("refused", "request refused: %v", err)
		return
	}
	say("", "requested %s as %s; waiting for approval in Slack", job.Role, req.ID)
	deadline := time.Now().Add(10 * time.Minute)
	for req.State == "pending" || (req.Grant != nil && req.Grant.State == "activating") {
		if time.Now().After(deadline) || ctx.Err() != nil {
			say("failed", "gave up waiting")
			return
		}
		if err := p.call(ctx, http.MethodGet, "/api/v1/requests/"+req.ID+"/wait?timeout=20s", token, nil, &req); err != nil {
			say("failed", "cannot follow the request: %v", err)
			return
		}
	}
	if req.State != "approved" || req.Grant == nil || req.Grant.State != "active" {
		say("refused", "request %s is %s; nothing ran", req.ID, req.State)
		return
	}
	g := req.Grant
	say("running", "access active (grant %s); ./deploy.sh runs for %s, heartbeating", g.ID, JobRun)
	every := max(time.Duration(g.HeartbeatTimeoutSeconds)*time.Second/3, time.Second)
	end := time.NewTimer(JobRun)
	defer end.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-end.C:
			running = false
		case <-ctx.Done():
			running = false
		case <-tick.C:
			var out jobGrant
			if err := p.call(ctx, http.MethodPost, "/api/v1/grants/"+g.ID+"/heartbeat", token, nil, &out); err != nil {
				say("failed", "access ended while the job ran: %v", err)
				return
			}
			say("", "heartbeat sent")
		}
	}
	var out jobGrant
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.call(rctx, http.MethodPost, "/api/v1/grants/"+g.ID+"/release", token, nil, &out); err != nil && !errors.Is(err, context.Canceled) {
		say("failed", "release failed: %v (the grant ends at its next missed heartbeat)", err)
		return
	}
	say("done", "./deploy.sh exited 0; released grant %s (%s): the target system saw the revoke", g.ID, out.State)
}

// pipelineJob is POST /api/pipeline {"role": ...}: start a simulated job.
func (p *Playground) pipelineJob(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Role string `json:"role"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "error": "send {\"role\": \"...\"}"})
		return
	}
	if in.Role == "" {
		if roles := p.PipelineRoles(); len(roles) > 0 {
			in.Role = roles[0]
		}
	}
	job, err := p.runJob(in.Role)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "job": job.ID})
}
