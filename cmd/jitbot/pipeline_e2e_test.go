package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jitbot/jitbot/bot"
	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	"github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

// childEnv makes the test binary act as the jitbot binary: the end-to-end tests start `jitbot serve` and
// `jitbot exec` as real processes (signals and kill -9 included) without a separate build.
const childEnv = "JITBOT_TEST_RUN_AS_JITBOT"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

const (
	e2eApprovals = "C0APPROVALS"
	e2eBob       = "U0BOB"
	e2eOcto      = "U0OCTO"
	e2eHeartbeat = 2 * time.Second
)

var e2eHookSecret = "pipeline-e2e-webhook-secret-0123456789"

// pipelineWorld is a running jitbot serve process with its Slack emulator, local OIDC issuer and webhook
// provider receiver.
type pipelineWorld struct {
	t     *testing.T
	ctx   context.Context
	emu   *slackfake.Server
	iss   *oidcfake.Issuer
	recv  *webhookfake.Server
	base  string
	dir   string
	store string // "bolt" or "redis"
	open  func() store.Store
	serve *exec.Cmd
	logs  *syncWriter
}

func childCmd(args []string, env []string) *exec.Cmd {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, args...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "JITBOT_") && !strings.HasPrefix(k, "SLACK_") && !strings.HasPrefix(k, "ACTIONS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, childEnv+"=1")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

func newPipelineWorld(t *testing.T, backend string) *pipelineWorld {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard, not a speed check
	t.Cleanup(cancel)
	w := &pipelineWorld{t: t, ctx: ctx, dir: t.TempDir(), store: backend, logs: &syncWriter{w: &bytes.Buffer{}}}
	w.emu = slackfake.New(slackfake.Options{
		Users:    []slackfake.User{{ID: e2eBob, Name: "bob"}, {ID: e2eOcto, Name: "octo"}},
		Channels: []slackfake.Channel{{ID: e2eApprovals, Name: "approvals"}},
	})
	t.Cleanup(w.emu.Close)
	iss, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{Audience: "https://jitbot.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = iss.Close() })
	w.iss = iss
	w.recv = webhookfake.NewServer([]byte(e2eHookSecret))
	t.Cleanup(w.recv.Close)

	policyFile := filepath.Join(w.dir, "policy.yaml")
	pol := fmt.Sprintf(`version: 1
defaults:
  approval_channel: %s
  pending_ttl: 10m
providers:
  hook:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "%s/hook", secret_env: HOOK_SECRET, timeout: 5s}
issuers:
  github:
    url: %s
    type: github
    audience: https://jitbot.test
workloads:
  web-main:
    issuer: github
    claims: {repository: acme/web}
    heartbeat_timeout: %s
    principals: {hook: ci-web}
identities:
  %s: {github: octocat}
roles:
  deploy:
    provider: hook
    target: {app: web}
    requesters: {workloads: [web-main]}
    approvers: {users: [%s, %s]}
    max_duration: 1h
    auto_approve:
      - when: 'claims.ref == "refs/heads/main" && claims.environment == "production"'
        max_duration: 15m
`, e2eApprovals, w.recv.URL, iss.URL(), e2eHeartbeat, e2eOcto, e2eBob, e2eOcto)
	if err := os.WriteFile(policyFile, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	w.base = "http://" + addr
	env := []string{"JITBOT_POLICY_FILE=" + policyFile, "JITBOT_LISTEN_ADDR=" + addr, "JITBOT_LEADER_TTL=3s",
		"JITBOT_LOG_LEVEL=warn", "HOOK_SECRET=" + e2eHookSecret, "SLACK_BOT_TOKEN=" + w.emu.BotToken(),
		"SLACK_SIGNING_SECRET=" + w.emu.SigningSecret(), "SLACK_API_URL=" + w.emu.APIURL()}
	switch backend {
	case "bolt":
		env = append(env, "JITBOT_DATA_DIR="+filepath.Join(w.dir, "data"))
		w.open = func() store.Store {
			st, err := bolt.Open(filepath.Join(w.dir, "data", "jitbot.db"), bolt.Options{})
			if err != nil {
				t.Fatalf("open the store after serve stopped: %v", err)
			}
			return st
		}
	case "redis":
		u, prefix := redistest.URL(t), redistest.Prefix(t)
		env = append(env, "JITBOT_REDIS_URL="+u, "JITBOT_REDIS_KEY_PREFIX="+prefix)
		w.open = func() store.Store {
			st, err := redis.Open(context.Background(), u, redis.Options{Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	}
	w.serve = childCmd([]string{"serve"}, env)
	w.serve.Stdout, w.serve.Stderr = w.logs, w.logs
	if err := w.serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.serve.Process.Signal(syscall.SIGTERM)
		_ = w.serve.Wait()
		if t.Failed() {
			t.Logf("jitbot serve log:\n%s", w.logs.w.(*bytes.Buffer).String())
		}
	})
	w.emu.SetRequestURLs(w.base+"/slack/commands", w.base+"/slack/interactions", w.base+"/slack/events")
	for {
		resp, err := http.Get(w.base + "/readyz")
		if err == nil {
			var ready map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&ready)
			resp.Body.Close()
			if ready["sweeper_leader"] == true {
				break
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("jitbot serve never became ready: %v\n%s", err, w.logs.w.(*bytes.Buffer).String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return w
}

// job is one `jitbot exec` process running a shell script that records its environment and waits for the
// test to let it finish with a given status.
type job struct {
	w      *pipelineWorld
	dir    string
	cmd    *exec.Cmd
	stderr *syncWriter
	done   chan int
}

func (w *pipelineWorld) startJob(claims map[string]any, extra ...string) *job {
	w.t.Helper()
	dir := w.t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte(w.iss.Sign(claims)), 0o600); err != nil {
		w.t.Fatal(err)
	}
	// The script writes its grant id and role, then waits for "finish" (holding the exit status); its exit
	// time goes to "exited".
	script := `echo "$JITBOT_GRANT_ID $JITBOT_ROLE $JITBOT_EXPIRES_AT" > started
trap 'date +%s.%N > exited; exit 143' TERM
while [ ! -f finish ]; do sleep 0.02; done
code=$(cat finish)
date +%s.%N > exited
exit $code`
	args := append([]string{"exec", "--server", w.base, "--role", "deploy", "--for", "10m", "--reason", "deploy v1.2",
		"--token-file", tok}, extra...)
	args = append(args, "--", "sh", "-c", script)
	j := &job{w: w, dir: dir, stderr: &syncWriter{w: &bytes.Buffer{}}, done: make(chan int, 1)}
	j.cmd = childCmd(args, nil)
	j.cmd.Dir = dir
	j.cmd.Stderr = j.stderr
	if err := j.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() {
		err := j.cmd.Wait()
		j.done <- exitStatus(err)
	}()
	return j
}

func (j *job) log() string {
	j.stderr.mu.Lock() // exec's stderr is still being copied in while the test reads it
	defer j.stderr.mu.Unlock()
	return j.stderr.w.(*bytes.Buffer).String()
}

// started waits until the command runs and returns the grant id it was given.
func (j *job) started() string {
	j.w.t.Helper()
	for {
		if data, err := os.ReadFile(filepath.Join(j.dir, "started")); err == nil && strings.Count(string(data), " ") == 2 {
			f := strings.Fields(string(data))
			if f[1] != "deploy" {
				j.w.t.Fatalf("command environment: %q", data)
			}
			return f[0]
		}
		select {
		case code := <-j.done:
			j.w.t.Fatalf("jitbot exec exited %d before running the command:\n%s", code, j.log())
		case <-j.w.ctx.Done():
			j.w.t.Fatalf("the command never started:\n%s", j.log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (j *job) finish(code int) {
	_ = os.WriteFile(filepath.Join(j.dir, "finish"), []byte(strconv.Itoa(code)), 0o600)
}

func (j *job) exited() time.Time {
	j.w.t.Helper()
	data, err := os.ReadFile(filepath.Join(j.dir, "exited"))
	if err != nil {
		j.w.t.Fatalf("the command did not record its exit: %v", err)
	}
	f, _ := strconv.ParseFloat(strings.TrimSpace(string(data)), 64)
	return time.Unix(0, int64(f*1e9))
}

func (j *job) wait() int {
	j.w.t.Helper()
	select {
	case code := <-j.done:
		return code
	case <-j.w.ctx.Done():
		j.w.t.Fatalf("jitbot exec did not exit:\n%s", j.log())
	}
	return -1
}

// approve waits for the approval message of the pipeline request and clicks Approve as user.
func (w *pipelineWorld) approvalMessage() slackfake.Message {
	w.t.Helper()
	m, err := w.emu.WaitForMessage(w.ctx, e2eApprovals, func(m slackfake.Message) bool {
		return m.ThreadTS == "" && strings.Contains(string(mustJSONBlocks(m)), "Pipeline request")
	})
	if err != nil {
		w.t.Fatalf("approval message: %v", err)
	}
	return m
}

func mustJSONBlocks(m slackfake.Message) []byte {
	data, _ := json.Marshal(m)
	return data
}

func (w *pipelineWorld) click(user string, m slackfake.Message) {
	w.t.Helper()
	resp, err := w.emu.ClickButton(w.ctx, user, m.Channel, m.TS, bot.ActionApprove, requestIDOf(m), "")
	if err != nil || resp.StatusCode != 200 {
		w.t.Fatalf("click approve: %v %+v", err, resp)
	}
}

// requestIDOf reads the request id from the message header (":key: Access request r-…").
func requestIDOf(m slackfake.Message) string {
	data := string(mustJSONBlocks(m))
	i := strings.Index(data, "Access request r-")
	if i < 0 {
		return ""
	}
	id := data[i+len("Access request "):]
	if j := strings.IndexAny(id, `"\ `); j >= 0 {
		id = id[:j]
	}
	return id
}

// revokedAt waits for the provider to see the revoke of grant id and returns when it did.
func (w *pipelineWorld) revokedAt(id string) time.Time {
	w.t.Helper()
	d, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "revoke" && d.Payload.GrantID == id })
	if err != nil {
		w.t.Fatalf("the provider never saw the revoke of %s", id)
	}
	return d.At
}

func within(t *testing.T, what string, from, to time.Time, limit time.Duration) {
	t.Helper()
	if lag := to.Sub(from); lag > limit {
		t.Fatalf("%s took %s, want at most %s", what, lag, limit)
	} else {
		t.Logf("%s: %s", what, lag.Round(time.Millisecond))
	}
}

func ghClaims(ref, env, run string) map[string]any {
	c := oidcfake.GitHubActions("acme/web", ref, env)
	c["run_id"] = run
	return c
}

// TestPipelineEndToEnd: jitbot exec against a real jitbot serve process, approved in the Slack emulator,
// granting through the webhook provider; on both stores.
func TestPipelineEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	for _, backend := range []string{"bolt", "redis"} {
		t.Run(backend, func(t *testing.T) {
			w := newPipelineWorld(t, backend)
			endReasons := map[string]string{} // grant id -> the end the store must record

			t.Run("SuccessAfterApproval", func(t *testing.T) {
				w.t = t
				j := w.startJob(ghClaims("refs/heads/feature", "staging", "1"))
				m := w.approvalMessage()
				blocks := string(mustJSONBlocks(m))
				for _, want := range []string{"acme/web", "refs/heads/feature", "staging", "octocat", "actions/runs/1"} {
					if !strings.Contains(blocks, want) {
						t.Fatalf("approval message lacks %q: %s", want, blocks)
					}
				}
				// The triggering person cannot approve; Bob can.
				if resp, err := w.emu.ClickButton(w.ctx, e2eOcto, m.Channel, m.TS, bot.ActionApprove, requestIDOf(m), ""); err != nil || resp.StatusCode != 200 {
					t.Fatalf("click by the actor: %v", err)
				}
				if _, err := w.emu.WaitForEphemeral(w.ctx, m.Channel, e2eOcto, func(e slackfake.Ephemeral) bool { return strings.Contains(e.Text, "triggered this pipeline") }); err != nil {
					t.Fatalf("the actor was not told why: %v", err)
				}
				w.click(e2eBob, m)
				gid := j.started()
				if !w.recv.Present(gid) {
					t.Fatal("the command runs but the grant is not active at the provider")
				}
				time.Sleep(3 * e2eHeartbeat) // longer than heartbeat_timeout: heartbeats must keep it alive
				if !w.recv.Present(gid) {
					t.Fatalf("the grant ended while the command ran:\n%s", j.log())
				}
				j.finish(0)
				if code := j.wait(); code != 0 {
					t.Fatalf("exit %d:\n%s", code, j.log())
				}
				within(t, "command exit -> provider revoke", j.exited(), w.revokedAt(gid), time.Second)
				for _, want := range []string{"waiting for approval", "is active until", "released grant " + gid} {
					if !strings.Contains(j.log(), want) {
						t.Fatalf("progress lacks %q:\n%s", want, j.log())
					}
				}
			})

			t.Run("CommandFails", func(t *testing.T) {
				w.t = t
				j := w.startJob(ghClaims("refs/heads/feature", "staging", "2"))
				w.click(e2eBob, w.approvalMessageFor(t, "2"))
				gid := j.started()
				j.finish(7)
				if code := j.wait(); code != 7 {
					t.Fatalf("exit %d, want the command's 7:\n%s", code, j.log())
				}
				within(t, "failed command exit -> provider revoke", j.exited(), w.revokedAt(gid), time.Second)
			})

			t.Run("ExecGetsSIGTERM", func(t *testing.T) {
				w.t = t
				j := w.startJob(ghClaims("refs/heads/feature", "staging", "3"))
				w.click(e2eBob, w.approvalMessageFor(t, "3"))
				gid := j.started()
				_ = j.cmd.Process.Signal(syscall.SIGTERM)
				if code := j.wait(); code != 143 {
					t.Fatalf("exit %d, want 143 (the command got the forwarded SIGTERM):\n%s", code, j.log())
				}
				within(t, "SIGTERM: command exit -> provider revoke", j.exited(), w.revokedAt(gid), time.Second)
			})

			t.Run("ExecKilled", func(t *testing.T) {
				w.t = t
				j := w.startJob(ghClaims("refs/heads/feature", "staging", "4"))
				w.click(e2eBob, w.approvalMessageFor(t, "4"))
				gid := j.started()
				killed := time.Now()
				_ = j.cmd.Process.Kill()
				j.wait()
				within(t, "kill -9 -> provider revoke", killed, w.revokedAt(gid), e2eHeartbeat+time.Second)
				endReasons[gid] = "heartbeat_missed"
			})

			t.Run("GrantExpiresWhileRunning", func(t *testing.T) {
				w.t = t
				j := w.startJob(ghClaims("refs/heads/feature", "staging", "7"), "--for", "2s")
				w.click(e2eBob, w.approvalMessageFor(t, "7"))
				gid := j.started()
				code := j.wait() // the script only ends when told, or on SIGTERM
				if code == 0 {
					t.Fatalf("exit 0 after the grant expired under the command:\n%s", j.log())
				}
				if _, err := os.Stat(filepath.Join(j.dir, "exited")); err != nil {
					t.Fatal("the command was not signalled")
				}
				if !strings.Contains(j.log(), "access ended while the command ran") {
					t.Fatalf("reason: %s", j.log())
				}
				w.revokedAt(gid)
				endReasons[gid] = "expired|released" // the sweeper and jitbot exec's own expiry timer race; both end it
			})

			t.Run("RevokedWhileRunning", func(t *testing.T) {
				w.t = t
				j := w.startJob(ghClaims("refs/heads/feature", "staging", "9"))
				w.click(e2eBob, w.approvalMessageFor(t, "9"))
				gid := j.started()
				// The grant ends under the command (here released by another caller of the same run).
				tok, _ := os.ReadFile(filepath.Join(j.dir, "token"))
				req, _ := http.NewRequest(http.MethodPost, w.base+"/api/v1/grants/"+gid+"/release", nil)
				req.Header.Set("Authorization", "Bearer "+string(tok))
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("release from outside: %v %v", resp, err)
				}
				resp.Body.Close()
				if code := j.wait(); code == 0 {
					t.Fatalf("exit 0 although access ended under the command:\n%s", j.log())
				}
				if _, err := os.Stat(filepath.Join(j.dir, "exited")); err != nil {
					t.Fatal("the command was not signalled")
				}
				if !strings.Contains(j.log(), "access ended while the command ran") {
					t.Fatalf("reason: %s", j.log())
				}
			})

			t.Run("AutoApprovedAndAnnounced", func(t *testing.T) {
				w.t = t
				j := w.startJob(ghClaims("refs/heads/main", "production", "5"))
				gid := j.started() // no click
				if _, err := w.emu.WaitForMessage(w.ctx, e2eApprovals, func(m slackfake.Message) bool {
					b := string(mustJSONBlocks(m))
					return m.ThreadTS == "" && strings.Contains(b, "actions/runs/5") && strings.Contains(b, "auto_approve rule")
				}); err != nil {
					t.Fatalf("the auto-approval was not announced: %v", err)
				}
				j.finish(0)
				if code := j.wait(); code != 0 {
					t.Fatalf("exit %d:\n%s", code, j.log())
				}
				w.revokedAt(gid)
			})

			t.Run("NonMatchingWaitsAndGivesUp", func(t *testing.T) {
				w.t = t
				j := w.startJob(ghClaims("refs/heads/main", "staging", "6"), "--wait", "1s")
				if code := j.wait(); code != exitRefused {
					t.Fatalf("exit %d, want %d:\n%s", code, exitRefused, j.log())
				}
				if _, err := os.Stat(filepath.Join(j.dir, "started")); err == nil {
					t.Fatal("the command ran without approval")
				}
				if !strings.Contains(j.log(), "gave up after --wait 1s") {
					t.Fatalf("reason: %s", j.log())
				}
			})

			t.Run("BadTokenRunsNothing", func(t *testing.T) {
				w.t = t
				dir := t.TempDir()
				tok := filepath.Join(dir, "token")
				_ = os.WriteFile(tok, []byte(w.iss.SignWith(ghClaims("refs/heads/main", "production", "8"), oidcfake.BadSignature())), 0o600)
				cmd := childCmd([]string{"exec", "--server", w.base, "--role", "deploy", "--reason", "x", "--token-file", tok, "--", "sh", "-c", "touch ran"}, nil)
				cmd.Dir = dir
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				err := cmd.Run()
				if code := exitStatus(err); code != exitRefused {
					t.Fatalf("exit %d: %s", code, stderr.String())
				}
				if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
					t.Fatal("the command ran with a bad token")
				}
				if lines := strings.Count(strings.TrimSpace(stderr.String()), "\n"); lines != 0 || !strings.Contains(stderr.String(), "bad_signature") {
					t.Fatalf("want one line naming the reason, got: %q", stderr.String())
				}
			})

			// Stop serve and check the store: exactly the requests made by valid tokens, grants all revoked.
			_ = w.serve.Process.Signal(syscall.SIGTERM)
			_ = w.serve.Wait()
			st := w.open()
			defer st.Close()
			var reqs []store.Request
			for _, state := range []store.RequestState{store.RequestPending} {
				rs, _ := st.ListRequests(context.Background(), store.RequestQuery{State: state})
				reqs = append(reqs, rs...)
			}
			for _, r := range reqs {
				t.Errorf("request left pending: %s run %s created %s (%d approvals)", r.ID, r.Pipeline.RunID, r.CreatedAt.Format(time.RFC3339Nano), len(r.Approvals))
			}
			live, _ := st.ListGrants(context.Background(), store.GrantQuery{States: store.LiveGrantStates})
			if len(live) != 0 {
				t.Fatalf("live grants left: %+v", live)
			}
			for id, want := range endReasons {
				if g, err := st.GetGrant(context.Background(), id); err != nil || !slices.Contains(strings.Split(want, "|"), g.EndReason) {
					t.Fatalf("grant %s ended %q (%v), want %q", id, g.EndReason, err, want)
				}
			}
		})
	}
}

// approvalMessageFor waits for the approval message of run runID.
func (w *pipelineWorld) approvalMessageFor(t *testing.T, runID string) slackfake.Message {
	t.Helper()
	m, err := w.emu.WaitForMessage(w.ctx, e2eApprovals, func(m slackfake.Message) bool {
		return m.ThreadTS == "" && strings.Contains(string(mustJSONBlocks(m)), "actions/runs/"+runID+"/")
	})
	if err != nil {
		t.Fatalf("approval message of run %s: %v", runID, err)
	}
	return m
}
