package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/store/redistest"
)

// Every secret the tests below hand jitbot. Each is distinctive so that a leak of any part of it is found.
const (
	secretRedisPassword    = "S3CRET-redis-password-7f3a"
	secretRedisUser        = "S3CRET-redis-user-19bc"
	secretSentinelPassword = "S3CRET-sentinel-password-e4d1"
	secretSentinelUser     = "S3CRET-sentinel-user-0c2f"
	secretBotToken         = "xoxb-S3CRET-bot-token-5a6b"
	secretAppToken         = "xapp-1-S3CRET-app-token-8e9f"
	secretSigning          = "S3CRET-signing-secret-2d3c"
	secretWebhook          = "S3CRET-webhook-hmac-key-4b5a"
	secretPagerDuty        = "S3CRET-pagerduty-key-6c7d"
	secretOpsgenie         = "S3CRET-opsgenie-key-9e0f"
	secretAuditSigning     = "UzNDUkVULWF1ZGl0LXNpZ25pbmctc2VlZC0wMDAxYWI=" // base64 of 32 bytes
	secretAuditLink        = "UzNDUkVULWF1ZGl0LWxpbmsta2V5LTAwMDAwMDAwY2Q="
)

var allSecrets = []string{secretRedisPassword, secretRedisUser, secretSentinelPassword, secretSentinelUser, secretBotToken,
	secretAppToken, secretSigning, secretWebhook, secretPagerDuty, secretOpsgenie, secretAuditSigning, secretAuditLink}

// secretPolicy names a provider secret and two on-call keys by *_env, the way every documented secret of a
// policy is given.
const secretPolicy = `version: 1
defaults: {approval_channel: C0APPROVALS}
providers:
  hook:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "http://127.0.0.1:1/hook", secret_env: T_WEBHOOK_SECRET}
oncall_sources:
  pd:
    type: pagerduty
    api_key_env: T_PD_KEY
    base_url: http://127.0.0.1:1
    users: {U0ALICE: PALICE}
  og:
    type: opsgenie
    api_key_env: T_OG_KEY
    base_url: http://127.0.0.1:1
    users: {U0ALICE: og-alice}
roles:
  db:
    provider: hook
    target: {db: prod}
    requesters: {users: [U0ALICE]}
    approvers: {users: [U0BOB]}
    breakglass: {source: pd, schedules: [PSCHED]}
`

// secretEnv sets every secret-bearing variable (the Redis URL is set per case) and returns the policy path.
func secretEnv(t *testing.T) string {
	clearEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(secretPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JITBOT_POLICY_FILE", path)
	t.Setenv("JITBOT_DATA_DIR", filepath.Join(dir, "data"))
	t.Setenv("JITBOT_LISTEN_ADDR", freeAddr(t))
	t.Setenv("JITBOT_LOG_LEVEL", "debug")
	t.Setenv("T_WEBHOOK_SECRET", secretWebhook)
	t.Setenv("T_PD_KEY", secretPagerDuty)
	t.Setenv("T_OG_KEY", secretOpsgenie)
	t.Setenv("SLACK_BOT_TOKEN", secretBotToken)
	t.Setenv("SLACK_SIGNING_SECRET", secretSigning)
	t.Setenv("JITBOT_AUDIT_SIGNING_KEY", secretAuditSigning)
	t.Setenv("JITBOT_AUDIT_LINK_KEY", secretAuditLink)
	t.Setenv("SLACK_API_URL", "http://127.0.0.1:1/api/")
	return path
}

// withUserinfo puts credentials into a redis:// URL from redistest.
func withUserinfo(u, userinfo string) string {
	scheme, rest, _ := strings.Cut(u, "://")
	return scheme + "://" + userinfo + "@" + rest
}

func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range allSecrets {
		// A secret cut in half (a truncated log field) must not appear either.
		for _, part := range []string{s, s[:len(s)/2+1], s[len(s)/2:]} {
			if strings.Contains(text, part) {
				t.Errorf("%s contains (part of) the secret %q:\n%s", what, s, text)
				return
			}
		}
	}
}

// TestServeNeverLogsSecrets starts `jitbot serve` with secrets in every secret-bearing variable and drives it
// through start-up success and every start-up failure; no log line and no error may contain any of them.
func TestServeNeverLogsSecrets(t *testing.T) {
	redisURL := redistest.URL(t)
	if !strings.HasPrefix(redisURL, "redis://") {
		t.Skipf("the success case needs a plain redis:// test Redis, have another form")
	}
	// The test Redis's default user has no password, so Redis accepts AUTH with any password: the URL
	// carries a real-looking credential through a successful connection.
	authURL := withUserinfo(redisURL, "default:"+secretRedisPassword)

	t.Run("success/redis+http-mode", func(t *testing.T) {
		secretEnv(t)
		emu := slackfake.New(slackfake.Options{BotToken: secretBotToken, SigningSecret: secretSigning, AppToken: secretAppToken,
			Users:    []slackfake.User{{ID: "U0ALICE", Name: "alice"}, {ID: "U0BOB", Name: "bob"}},
			Channels: []slackfake.Channel{{ID: "C0APPROVALS", Name: "approvals"}}})
		t.Cleanup(emu.Close)
		t.Setenv("SLACK_API_URL", emu.APIURL())
		t.Setenv("JITBOT_REDIS_URL", authURL)
		t.Setenv("JITBOT_REDIS_KEY_PREFIX", redistest.Prefix(t))
		logs := serveUntilReady(t, func(base string) {
			emu.SetRequestURLs(base+"/slack/commands", base+"/slack/interactions", base+"/slack/events")
			resp, err := emu.SlashCommand(t.Context(), "U0ALICE", "C0APPROVALS", "/jit", "request db 30m INC-1 secrets test")
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("slash command: %v %+v", err, resp)
			}
			// A forged request (wrong signature) is refused and logged.
			req, _ := http.NewRequest("POST", base+"/slack/commands", strings.NewReader("command=/jit&text=help"))
			req.Header.Set("X-Slack-Request-Timestamp", "1")
			req.Header.Set("X-Slack-Signature", "v0=00")
			if r, err := http.DefaultClient.Do(req); err == nil {
				r.Body.Close()
			}
		})
		if !strings.Contains(logs, "REDACTED@") {
			t.Errorf("the start-up log does not show the redacted store URL:\n%s", logs)
		}
	})
	t.Run("runtime/redis-with-password-goes-away", func(t *testing.T) {
		// A Redis that really requires the password; once serve is ready the server goes away, so the
		// store errors of the running engine (sweeper, leader loop, /readyz) are logged too.
		secretEnv(t)
		t.Setenv("JITBOT_SLACK", "off")
		t.Setenv("SLACK_BOT_TOKEN", "")
		t.Setenv("SLACK_SIGNING_SECRET", "")
		_, addr := redistest.StartServer(t, "--requirepass", secretRedisPassword)
		t.Setenv("JITBOT_REDIS_URL", "redis://:"+secretRedisPassword+"@"+addr+"/0?max_retries=-1")
		logs := serveUntilReady(t, func(base string) {
			c := redistest.ClientFor(t, "redis://:"+secretRedisPassword+"@"+addr+"/0")
			_ = c.Do(t.Context(), "SHUTDOWN", "NOSAVE").Err()
			deadline := time.Now().Add(30 * time.Second)
			for {
				resp, err := http.Get(base + "/readyz")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					assertNoSecret(t, "/readyz", string(body))
					if resp.StatusCode == 503 && strings.Contains(string(body), "store") {
						return
					}
				}
				if time.Now().After(deadline) {
					t.Fatal("serve never noticed the store was gone")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
		if !strings.Contains(logs, "readiness check failed") {
			t.Errorf("no runtime store error was logged:\n%s", logs)
		}
	})
	t.Run("success/embedded+socket-mode", func(t *testing.T) {
		secretEnv(t)
		emu := slackfake.New(slackfake.Options{BotToken: secretBotToken, SigningSecret: secretSigning, AppToken: secretAppToken,
			Users: []slackfake.User{{ID: "U0ALICE", Name: "alice"}}})
		t.Cleanup(emu.Close)
		t.Setenv("SLACK_API_URL", emu.APIURL())
		t.Setenv("SLACK_APP_TOKEN", secretAppToken)
		serveUntilReady(t, nil)
	})

	failures := map[string]struct {
		env  map[string]string
		want string
	}{
		"unreachable redis":  {env: map[string]string{"JITBOT_REDIS_URL": "redis://" + secretRedisUser + ":" + secretRedisPassword + "@127.0.0.1:1/0"}, want: "open redis"},
		"unreachable rediss": {env: map[string]string{"JITBOT_REDIS_URL": "rediss://:" + secretRedisPassword + "@127.0.0.1:1/0"}, want: "open redis"},
		"unreachable sentinel": {env: map[string]string{"JITBOT_REDIS_URL": "redis+sentinel://" + secretRedisUser + ":" + secretRedisPassword +
			"@127.0.0.1:1,127.0.0.1:2/mymaster/0?max_retries=-1&sentinel_username=" + secretSentinelUser + "&sentinel_password=" + secretSentinelPassword}, want: "open redis"},
		"unreachable cluster":  {env: map[string]string{"JITBOT_REDIS_URL": "redis+cluster://:" + secretRedisPassword + "@127.0.0.1:1,127.0.0.1:2"}, want: "open redis"},
		"wrong redis password": {env: map[string]string{"JITBOT_REDIS_URL": withUserinfo(redisURL, "nosuchuser:"+secretRedisPassword)}, want: "open redis"},
		"bad url: port":        {env: map[string]string{"JITBOT_REDIS_URL": "redis://u:" + secretRedisPassword + "@127.0.0.1:99999/0"}, want: "invalid port"},
		"bad url: scheme":      {env: map[string]string{"JITBOT_REDIS_URL": "http://u:" + secretRedisPassword + "@127.0.0.1/0"}, want: "unsupported scheme"},
		"bad url: sentinel parameter": {env: map[string]string{"JITBOT_REDIS_URL": "redis://127.0.0.1/0?sentinel_password=" + secretSentinelPassword},
			want: "only applies to redis+sentinel"},
		"bad url: unknown parameter": {env: map[string]string{"JITBOT_REDIS_URL": "redis://127.0.0.1/0?password=" + secretRedisPassword}, want: "unknown parameter"},
		"bad url: escape":            {env: map[string]string{"JITBOT_REDIS_URL": "redis://u:" + secretRedisPassword + "%zz@127.0.0.1/0"}, want: "invalid escape"},
		"bad key prefix":             {env: map[string]string{"JITBOT_REDIS_URL": authURL, "JITBOT_REDIS_KEY_PREFIX": "nohashtag"}, want: "hash tag"},
		"bad policy":                 {env: map[string]string{"JITBOT_POLICY_FILE": "../../policy/testdata/broken.yaml"}, want: "policy is invalid"},
		"missing policy":             {env: map[string]string{"JITBOT_POLICY_FILE": "/nonexistent/policy.yaml"}, want: "does not exist"},
		"missing provider secret":    {env: map[string]string{"T_WEBHOOK_SECRET": ""}, want: "T_WEBHOOK_SECRET"},
		"missing on-call key":        {env: map[string]string{"T_OG_KEY": ""}, want: "T_OG_KEY"},
		"bad bot token":              {env: map[string]string{"SLACK_BOT_TOKEN": "xoxp-" + secretBotToken}, want: "SLACK_BOT_TOKEN must be a bot token"},
		"bad app token":              {env: map[string]string{"SLACK_APP_TOKEN": "xoxb-" + secretAppToken}, want: "SLACK_APP_TOKEN must be an app-level token"},
		"bad duration":               {env: map[string]string{"JITBOT_SWEEP_INTERVAL": secretSigning}, want: "JITBOT_SWEEP_INTERVAL"},
		"bad audit signing key":      {env: map[string]string{"JITBOT_AUDIT_SIGNING_KEY": secretAuditSigning[:40]}, want: "JITBOT_AUDIT_SIGNING_KEY"},
		"bad audit link key":         {env: map[string]string{"JITBOT_AUDIT_LINK_KEY": secretAuditLink[:20]}, want: "JITBOT_AUDIT_LINK_KEY"},
		"slack url with credentials": {env: map[string]string{"SLACK_API_URL": "http://" + secretRedisUser + ":" + secretRedisPassword + "@127.0.0.1:1/api/"}, want: "must not carry credentials"},
		"slack url with a token":     {env: map[string]string{"SLACK_API_URL": "http://127.0.0.1:1/api/?token=" + secretBotToken}, want: "must not carry credentials"},
	}
	for name, c := range failures {
		t.Run("failure/"+name, func(t *testing.T) {
			secretEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			stderr := &syncWriter{w: &out}
			code := run(ctx, []string{"serve"}, strings.NewReader(""), io.Discard, stderr)
			if code == 0 && ctx.Err() == nil {
				t.Fatalf("serve exited 0:\n%s", out.String())
			}
			if !strings.Contains(out.String(), c.want) {
				t.Errorf("the failure does not say %q:\n%s", c.want, out.String())
			}
			assertNoSecret(t, "serve's output", out.String())
		})
	}
}

// serveUntilReady runs serve until /readyz answers 200, calls during (if set) with the base URL, stops it and
// checks that nothing it logged holds a secret. It returns the logs.
func serveUntilReady(t *testing.T, during func(base string)) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var buf bytes.Buffer
	stderr := &syncWriter{w: &buf}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve"}, strings.NewReader(""), io.Discard, stderr) }()
	base := "http://" + os.Getenv("JITBOT_LISTEN_ADDR")
	for ready := false; !ready; {
		select {
		case code := <-done:
			t.Fatalf("serve exited %d before it was ready:\n%s", code, buf.String())
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := http.Get(base + "/readyz"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assertNoSecret(t, "/readyz", string(body))
			ready = resp.StatusCode == 200
		}
	}
	if during != nil {
		during(base)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, buf.String())
	}
	stderr.mu.Lock()
	logs := buf.String()
	stderr.mu.Unlock()
	assertNoSecret(t, "serve's logs", logs)
	return logs
}
