package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Exit codes of jitbot exec when the command did not run (or was stopped by jitbot). Otherwise jitbot exec
// exits with the command's own status.
const (
	exitUsage   = 2   // bad flags or configuration
	exitRefused = 3   // refused, denied, cancelled or expired without a decision
	exitFailed  = 4   // jitbot or the provider failed; nothing ran
	exitRevoked = 125 // access ended while the command ran (revoked, expired, heartbeat lost)
)

const execUsage = `usage: jitbot exec --role ROLE [--for 30m] --reason "..." [flags] -- COMMAND [ARGS...]

Requests ROLE through jitbot's API with the CI job's identity, waits for approval, runs COMMAND once access
is active, keeps the grant alive while COMMAND runs and releases it when COMMAND exits, whatever happens.
Exits with COMMAND's status; 3 when access was refused, denied or expired; 4 when jitbot failed; 125 when
access ended while COMMAND ran. Progress goes to stderr.

The token comes from, in order: --token-file, the variable named by --token-env, JITBOT_TOKEN, GitHub
Actions (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN; needs permissions: id-token: write), JITBOT_ID_TOKEN (a
GitLab CI id_tokens variable).

flags:
`

// execFlags is jitbot exec's configuration.
type execFlags struct {
	server, role, reason, tokenFile, tokenEnv, audience string
	dur, wait                                           time.Duration
}

func execCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f execFlags
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, execUsage); fs.PrintDefaults() }
	fs.StringVar(&f.server, "server", os.Getenv("JITBOT_URL"), "jitbot's base URL (default $JITBOT_URL)")
	fs.StringVar(&f.role, "role", "", "the role to request (required)")
	fs.DurationVar(&f.dur, "for", 0, "how long access lasts once active (default: the role's default)")
	fs.StringVar(&f.reason, "reason", "", "why the job needs the role, shown to approvers (required)")
	fs.StringVar(&f.tokenFile, "token-file", "", "read the OIDC ID token or API token from this file (re-read for every call)")
	fs.StringVar(&f.tokenEnv, "token-env", "", "read the token from this environment variable")
	fs.StringVar(&f.audience, "audience", os.Getenv("JITBOT_AUDIENCE"), "audience to ask GitHub Actions for (default $JITBOT_AUDIENCE, else the server URL)")
	fs.DurationVar(&f.wait, "wait", 0, "give up waiting for a decision after this long (default: until the request expires)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	command := fs.Args()
	var problems []string
	if f.server == "" {
		problems = append(problems, "--server (or JITBOT_URL) is required")
	} else if u, err := url.Parse(f.server); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		problems = append(problems, fmt.Sprintf("--server %q is not an http(s) URL", f.server))
	}
	if f.role == "" {
		problems = append(problems, "--role is required")
	}
	if strings.TrimSpace(f.reason) == "" {
		problems = append(problems, "--reason is required (approvers see it)")
	}
	if f.dur < 0 || f.wait < 0 {
		problems = append(problems, "--for and --wait must be positive")
	}
	if len(command) == 0 {
		problems = append(problems, "no command: put it after --, as in jitbot exec --role deploy --reason x -- ./deploy.sh")
	}
	if len(problems) > 0 {
		fmt.Fprintln(stderr, "jitbot exec: "+strings.Join(problems, "; "))
		return exitUsage
	}
	if f.audience == "" {
		f.audience = strings.TrimSuffix(f.server, "/")
	}
	tok, err := newTokenSource(f, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot exec:", err)
		return exitUsage
	}
	c := &apiClient{base: strings.TrimSuffix(f.server, "/"), tokens: tok, http: &http.Client{Timeout: 40 * time.Second}}
	x := &execution{f: f, c: c, command: command, stdout: stdout, stderr: stderr}
	return x.run(ctx)
}

// ---- tokens ----

// tokenSource returns a bearer token for the next call.
type tokenSource interface {
	Token(ctx context.Context) (string, error)
}

type staticToken string

func (t staticToken) Token(context.Context) (string, error) { return string(t), nil }

type fileToken string

func (f fileToken) Token(context.Context) (string, error) {
	data, err := os.ReadFile(string(f))
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", string(f))
	}
	return t, nil
}

// githubToken asks the Actions runtime for an ID token, and again when the one it has is about to expire.
type githubToken struct {
	url, bearer, audience string
	client                *http.Client
	mu                    sync.Mutex
	cached                string
	exp                   time.Time
}

func (g *githubToken) Token(ctx context.Context) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cached != "" && time.Until(g.exp) > time.Minute {
		return g.cached, nil
	}
	u, err := url.Parse(g.url)
	if err != nil {
		return "", fmt.Errorf("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL")
	}
	q := u.Query()
	q.Set("audience", g.audience)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "bearer "+g.bearer)
	req.Header.Set("Accept", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("ask GitHub Actions for an ID token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GitHub Actions refused an ID token (HTTP %d); does the job have permissions: id-token: write?", resp.StatusCode)
	}
	var body struct {
		Value string `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body); err != nil || body.Value == "" {
		return "", errors.New("GitHub Actions answered without an ID token")
	}
	g.cached, g.exp = body.Value, jwtExpiry(body.Value)
	return g.cached, nil
}

// jwtExpiry reads exp from a JWT without verifying it (the server verifies); only for caching.
func jwtExpiry(t string) time.Time {
	parts := strings.Split(t, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var c struct {
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(data, &c) != nil || c.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(int64(c.Exp), 0)
}

func newTokenSource(f execFlags, getenv func(string) string) (tokenSource, error) {
	switch {
	case f.tokenFile != "":
		return fileToken(f.tokenFile), nil
	case f.tokenEnv != "":
		if v := strings.TrimSpace(getenv(f.tokenEnv)); v != "" {
			return staticToken(v), nil
		}
		return nil, fmt.Errorf("--token-env %s: the variable is not set or empty", f.tokenEnv)
	case strings.TrimSpace(getenv("JITBOT_TOKEN")) != "":
		return staticToken(strings.TrimSpace(getenv("JITBOT_TOKEN"))), nil
	case getenv("ACTIONS_ID_TOKEN_REQUEST_URL") != "" && getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN") != "":
		return &githubToken{url: getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), bearer: getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
			audience: f.audience, client: &http.Client{Timeout: 20 * time.Second}}, nil
	case strings.TrimSpace(getenv("JITBOT_ID_TOKEN")) != "":
		return staticToken(strings.TrimSpace(getenv("JITBOT_ID_TOKEN"))), nil
	}
	return nil, errors.New("no token: in GitHub Actions grant the job permissions: id-token: write; in GitLab CI add id_tokens: {JITBOT_ID_TOKEN: {aud: <jitbot URL>}}; elsewhere use --token-file or JITBOT_TOKEN")
}

// ---- API client ----

type apiClient struct {
	base   string
	tokens tokenSource
	http   *http.Client
}

// apiError is an error answer of the API.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

func (e *apiError) Error() string {
	if e.Reason != "" && !strings.Contains(e.Message, e.Reason) {
		return fmt.Sprintf("%s (%s, %s)", e.Message, e.Code, e.Reason)
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// permanent reports whether retrying cannot help.
func (e *apiError) permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests
}

type apiRequest struct {
	ID                string    `json:"id"`
	Role              string    `json:"role"`
	State             string    `json:"state"`
	Duration          string    `json:"duration"`
	PendingUntil      time.Time `json:"pending_until"`
	RequiredApprovals int       `json:"required_approvals"`
	Approvals         []struct {
		By   string `json:"by"`
		Note string `json:"note"`
	} `json:"approvals"`
	Denial *struct {
		By   string `json:"by"`
		Note string `json:"note"`
	} `json:"denial"`
	ApprovalChannel string `json:"approval_channel"`
	Approvers       struct {
		Users  []string `json:"users"`
		Groups []string `json:"groups"`
	} `json:"approvers"`
	Grant *apiGrant `json:"grant"`
}

type apiGrant struct {
	ID                      string    `json:"id"`
	Role                    string    `json:"role"`
	State                   string    `json:"state"`
	ExpiresAt               time.Time `json:"expires_at"`
	EndReason               string    `json:"end_reason"`
	HeartbeatTimeoutSeconds int64     `json:"heartbeat_timeout_seconds"`
	HeartbeatDeadline       time.Time `json:"heartbeat_deadline"`
}

func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return err
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, scrubURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Code == "" {
			e.Code, e.Message = "http_"+fmt.Sprint(resp.StatusCode), "jitbot answered HTTP "+resp.Status
		}
		return e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return nil
}

// scrubURLError drops the URL from a transport error (it carries no token, but keep messages short).
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retry calls fn until it succeeds, fails permanently or ctx ends, with a short backoff.
func retry(ctx context.Context, fn func() error) error {
	return retryIf(ctx, func(err error) bool {
		var ae *apiError
		return !errors.As(err, &ae) || !ae.permanent()
	}, fn)
}

// nothingStored reports whether a failed create certainly changed nothing: no connection was made, or the
// server refused to check the token for now (503 unavailable).
func nothingStored(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusServiceUnavailable && ae.Code == "unavailable"
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// retryIf calls fn until it succeeds, again reports false for its error, or ctx ends, with a short backoff.
func retryIf(ctx context.Context, again func(error) bool, fn func() error) error {
	wait := 200 * time.Millisecond
	for {
		err := fn()
		if err == nil || !again(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// ---- the execution ----

type execution struct {
	f       execFlags
	c       *apiClient
	command []string
	stdout  io.Writer
	stderr  io.Writer
}

func (x *execution) say(format string, args ...any) {
	fmt.Fprintf(x.stderr, "jitbot: "+format+"\n", args...)
}

func (x *execution) run(ctx context.Context) int {
	// Signals are ours from here on: while waiting they cancel the request, while the command runs they are
	// forwarded to it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	var req apiRequest
	body := map[string]string{"role": x.f.role, "reason": x.f.reason}
	if x.f.dur > 0 {
		body["duration"] = x.f.dur.String()
	}
	// Creating is not idempotent: retry only when jitbot certainly stored nothing (it could not be reached,
	// or it could not check the token yet), never after a timeout or a server error.
	callCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err := retryIf(callCtx, nothingStored, func() error { return x.c.do(callCtx, http.MethodPost, "/api/v1/requests", body, &req) })
	cancel()
	if err != nil {
		x.say("request refused: %v", err)
		if ae := (*apiError)(nil); errors.As(err, &ae) && ae.permanent() {
			return exitRefused
		}
		return exitFailed
	}
	x.say("requested %s for %s as request %s", req.Role, req.Duration, req.ID)

	req, code := x.await(ctx, req, sigs)
	if code != 0 {
		return code
	}
	return x.runCommand(ctx, req, sigs)
}

// await waits for a decision with long polls, printing one progress line at a time.
func (x *execution) await(ctx context.Context, req apiRequest, sigs <-chan os.Signal) (apiRequest, int) {
	start := time.Now()
	var giveUp <-chan time.Time
	if x.f.wait > 0 {
		t := time.NewTimer(x.f.wait)
		defer t.Stop()
		giveUp = t.C
	}
	announced := false
	for {
		if req.State != "pending" && (req.Grant == nil || req.Grant.State != "activating") {
			return x.decided(req)
		}
		if req.State == "pending" {
			waited := time.Since(start).Round(time.Second)
			if !announced {
				x.say("waiting for approval of %s: asked %s in Slack channel %s (%d of %d approvals; expires %s)",
					req.ID, who(req), orNone(req.ApprovalChannel), len(req.Approvals), req.RequiredApprovals, req.PendingUntil.Local().Format("15:04:05"))
				announced = true
			} else {
				x.say("still waiting for approval of %s after %s (%d of %d approvals)", req.ID, waited, len(req.Approvals), req.RequiredApprovals)
			}
		} else {
			x.say("approved; applying access (grant %s)...", req.Grant.ID)
		}
		pollCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		var next apiRequest
		go func() {
			done <- x.c.do(pollCtx, http.MethodGet, "/api/v1/requests/"+url.PathEscape(req.ID)+"/wait?timeout=20s", nil, &next)
		}()
		select {
		case sig := <-sigs:
			cancel()
			<-done
			x.say("got %s while waiting; withdrawing request %s, running nothing", sig, req.ID)
			x.cancelRequest(req.ID)
			return req, exitRefused
		case <-giveUp:
			cancel()
			<-done
			x.say("gave up after --wait %s without a decision; withdrawing request %s, running nothing", x.f.wait, req.ID)
			x.cancelRequest(req.ID)
			return req, exitRefused
		case <-ctx.Done():
			cancel()
			<-done
			x.cancelRequest(req.ID)
			return req, exitRefused
		case err := <-done:
			cancel()
			var ae *apiError
			if errors.As(err, &ae) && ae.permanent() {
				x.say("cannot follow request %s: %v", req.ID, err)
				return req, exitFailed
			}
			if err != nil {
				x.say("jitbot did not answer (%v); retrying", err)
				select {
				case <-time.After(2 * time.Second):
				case sig := <-sigs:
					x.say("got %s while waiting; withdrawing request %s, running nothing", sig, req.ID)
					x.cancelRequest(req.ID)
					return req, exitRefused
				}
				continue
			}
			req = next
		}
	}
}

func (x *execution) decided(req apiRequest) (apiRequest, int) {
	switch req.State {
	case "approved":
		switch {
		case req.Grant == nil:
			x.say("request %s was approved but has no grant; nothing ran", req.ID)
			return req, exitFailed
		case req.Grant.State == "active":
			by := []string{}
			for _, a := range req.Approvals {
				by = append(by, a.By)
			}
			x.say("access to %s is active until %s (grant %s, approved by %s)", req.Grant.Role, req.Grant.ExpiresAt.Local().Format(time.RFC3339), req.Grant.ID, strings.Join(by, ", "))
			return req, 0
		default:
			x.say("request %s was approved but access could not be applied (grant %s is %s %s); nothing ran", req.ID, req.Grant.ID, req.Grant.State, req.Grant.EndReason)
			return req, exitFailed
		}
	case "denied":
		by, note := "", ""
		if req.Denial != nil {
			by, note = req.Denial.By, req.Denial.Note
		}
		x.say("request %s was denied by %s: %s; nothing ran", req.ID, by, oneLine(note))
	case "expired":
		x.say("request %s expired without a decision; nothing ran", req.ID)
	case "cancelled":
		x.say("request %s was cancelled; nothing ran", req.ID)
	default:
		x.say("request %s is %s; nothing ran", req.ID, req.State)
	}
	return req, exitRefused
}

func (x *execution) cancelRequest(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out apiRequest
	err := retry(ctx, func() error {
		return x.c.do(ctx, http.MethodPost, "/api/v1/requests/"+url.PathEscape(id)+"/cancel", nil, &out)
	})
	var ae *apiError
	if err != nil && !(errors.As(err, &ae) && ae.Code == "already_decided") {
		x.say("could not withdraw request %s: %v", id, err)
	}
	if out.Grant != nil {
		x.release(out.Grant.ID) // approved in the meantime: give it back
	} else if err != nil && errors.As(err, &ae) && ae.Code == "already_decided" {
		var cur apiRequest
		if x.c.do(ctx, http.MethodGet, "/api/v1/requests/"+url.PathEscape(id), nil, &cur) == nil && cur.Grant != nil {
			x.release(cur.Grant.ID)
		}
	}
}

// runCommand runs the command while the grant is active, heartbeating, and releases the grant when the
// command exits for any reason.
func (x *execution) runCommand(ctx context.Context, req apiRequest, sigs <-chan os.Signal) int {
	g := *req.Grant
	cmd := exec.Command(x.command[0], x.command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, x.stdout, x.stderr
	cmd.Env = append(os.Environ(), "JITBOT_GRANT_ID="+g.ID, "JITBOT_REQUEST_ID="+req.ID, "JITBOT_ROLE="+g.Role,
		"JITBOT_EXPIRES_AT="+g.ExpiresAt.UTC().Format(time.RFC3339))
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		x.say("could not start %s: %v", x.command[0], err)
		x.release(g.ID)
		return 127
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// ended is closed when access ends under the command: the server says so, the grant expires, or no
	// heartbeat got through before the deadline.
	// The heartbeat outlives a signal to jitbot exec itself (forwarded to the command): access must last
	// until the command has exited and the grant is released.
	hbCtx, stopHB := context.WithCancel(context.WithoutCancel(ctx))
	ended := make(chan string, 1)
	go x.heartbeat(hbCtx, g, ended)

	revoked := ""
	var status int
	var stopTimer *time.Timer
loop:
	for {
		select {
		case err := <-exited:
			status = exitStatus(err)
			break loop
		case sig := <-sigs:
			x.say("forwarding %s to the command", sig)
			_ = cmd.Process.Signal(sig)
		case why := <-ended:
			if revoked == "" {
				revoked = why
				x.say("access ended while the command ran (%s); stopping it", why)
				_ = cmd.Process.Signal(syscall.SIGTERM)
				stopTimer = time.AfterFunc(10*time.Second, func() { _ = cmd.Process.Kill() })
			}
		}
	}
	stopHB()
	if stopTimer != nil {
		stopTimer.Stop()
	}
	x.release(g.ID)
	if revoked != "" {
		if status == 0 {
			status = exitRevoked
		}
		x.say("exit %d: access ended before the command finished (%s)", status, revoked)
		return status
	}
	return status
}

// heartbeat keeps the grant alive at a third of its heartbeat timeout and reports on ended when access is
// gone.
func (x *execution) heartbeat(ctx context.Context, g apiGrant, ended chan<- string) {
	every := time.Duration(g.HeartbeatTimeoutSeconds) * time.Second / 3
	if every <= 0 {
		every = 20 * time.Second
	}
	every = max(every, 200*time.Millisecond)
	deadline := g.HeartbeatDeadline
	expiry := time.NewTimer(time.Until(g.ExpiresAt))
	defer expiry.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	report := func(why string) {
		select {
		case ended <- why:
		default:
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-expiry.C:
			report("the grant expired at " + g.ExpiresAt.Local().Format("15:04:05"))
			return
		case <-tick.C:
		}
		if g.HeartbeatTimeoutSeconds > 0 && !deadline.IsZero() && time.Now().After(deadline) {
			report("no heartbeat reached jitbot before the deadline; the server revokes the grant")
			return
		}
		callCtx, cancel := context.WithTimeout(ctx, every)
		var out apiGrant
		err := x.c.do(callCtx, http.MethodPost, "/api/v1/grants/"+url.PathEscape(g.ID)+"/heartbeat", nil, &out)
		cancel()
		var ae *apiError
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && out.State == "active":
			deadline = out.HeartbeatDeadline
		case err == nil:
			report(fmt.Sprintf("grant %s is %s %s", g.ID, out.State, out.EndReason))
			return
		case errors.As(err, &ae) && ae.permanent():
			report(ae.Message)
			return
		default:
			x.say("heartbeat did not get through (%v); retrying", err)
		}
	}
}

// release gives the grant back, retrying for a while: the server revokes it anyway at the next missed
// heartbeat, but a prompt release makes the revocation immediate.
func (x *execution) release(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out apiGrant
	err := retry(ctx, func() error {
		return x.c.do(ctx, http.MethodPost, "/api/v1/grants/"+url.PathEscape(id)+"/release", nil, &out)
	})
	if err != nil {
		x.say("could not release grant %s (%v); it ends at its next missed heartbeat or at expiry", id, err)
		return
	}
	x.say("released grant %s (%s)", id, out.State)
}

func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}

func who(r apiRequest) string {
	parts := append([]string(nil), r.Approvers.Users...)
	for _, g := range r.Approvers.Groups {
		parts = append(parts, "group "+g)
	}
	if len(parts) == 0 {
		return "the role's approvers"
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
