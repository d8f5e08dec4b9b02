package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	"github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestPolicyCheckNamesFileLineAndField(t *testing.T) {
	code, _, stderr := runCLI(t, "policy", "check", "../../policy/testdata/broken.yaml")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{
		`broken.yaml:18:19: roles.prod-db-admin.max_duration: "4x" is not a duration`,
		`broken.yaml:17:5: roles.prod-db-admin: unknown field "aprovers"`,
		`broken.yaml:20:15: roles.Prod_Readonly.provider: unknown provider "aws"`,
		`broken.yaml:11:7: providers.access-webhook.webhook.token`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("policy check output lacks %q:\n%s", want, stderr)
		}
	}
	code, stdout, _ := runCLI(t, "policy", "check", "../../examples/policy.yaml")
	if code != 0 || !strings.Contains(stdout, "examples/policy.yaml: ok") {
		t.Fatalf("example policy: exit %d, %s", code, stdout)
	}
	if code, _, stderr := runCLI(t, "policy", "check", "/nonexistent/policy.yaml"); code != 1 || !strings.Contains(stderr, "/nonexistent/policy.yaml") {
		t.Fatalf("missing file: exit %d, %s", code, stderr)
	}
}

func TestUnknownCommandAndUsage(t *testing.T) {
	if code, _, stderr := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if code, stdout, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(stdout, "jitbot ") {
		t.Fatalf("version: %d %q", code, stdout)
	}
}

// clearEnv makes the test independent of the developer's environment.
func clearEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "JITBOT_") || strings.HasPrefix(k, "SLACK_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

func TestBadConfigurationStopsStartupWithOneClearMessage(t *testing.T) {
	cases := map[string][2]string{
		"JITBOT_SWEEP_INTERVAL": {"soon", "JITBOT_SWEEP_INTERVAL"},
		"JITBOT_MAX_ATTEMPTS":   {"0", "JITBOT_MAX_ATTEMPTS must be between 1 and 100"},
		"SLACK_BOT_TOKEN":       {"xoxp-user-token-secret", "SLACK_BOT_TOKEN must be a bot token"},
		"JITBOT_POLICY_FILE":    {"/nonexistent.yaml", "policy file /nonexistent.yaml does not exist"},
		// Several replicas on the embedded store would be a split brain: refused before anything starts.
		"JITBOT_EXPECTED_REPLICAS": {"3", "JITBOT_EXPECTED_REPLICAS is 3 but JITBOT_REDIS_URL is not set"},
	}
	for env, c := range cases {
		t.Run(env, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("JITBOT_DATA_DIR", t.TempDir())
			t.Setenv("JITBOT_SLACK", "off")
			if env == "SLACK_BOT_TOKEN" {
				t.Setenv("JITBOT_SLACK", "")
			}
			t.Setenv(env, c[0])
			code, _, stderr := runCLI(t, "serve")
			if code != 1 || !strings.Contains(stderr, c[1]) {
				t.Fatalf("exit %d, stderr %q; want it to mention %q", code, stderr, c[1])
			}
			if strings.Contains(stderr, "xoxp-user-token-secret") {
				t.Fatal("a token was printed")
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Fatalf("want one line, got:\n%s", stderr)
			}
		})
	}
	t.Run("missing secret", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("JITBOT_DATA_DIR", t.TempDir())
		t.Setenv("JITBOT_SLACK", "off")
		t.Setenv("JITBOT_POLICY_FILE", "../../examples/policy.yaml")
		code, _, stderr := runCLI(t, "serve")
		if code != 1 || !strings.Contains(stderr, "JITBOT_WEBHOOK_SECRET") {
			t.Fatalf("exit %d, %s", code, stderr)
		}
	})
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServeHealthReadyMetricsAndGracefulShutdown(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	t.Setenv("JITBOT_DATA_DIR", dir)
	t.Setenv("JITBOT_SLACK", "off")
	t.Setenv("JITBOT_POLICY_FILE", "../../examples/policy.yaml")
	t.Setenv("JITBOT_WEBHOOK_SECRET", "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3ODk=")
	t.Setenv("JITBOT_LISTEN_ADDR", addr)
	t.Setenv("JITBOT_LEADER_TTL", "3s")
	ctx, cancel := context.WithCancel(context.Background())
	var buf bytes.Buffer
	stderr := &syncWriter{w: &buf}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve"}, strings.NewReader(""), io.Discard, stderr) }()

	base := "http://" + addr
	var ready map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&ready)
			resp.Body.Close()
			if resp.StatusCode == 200 && ready["sweeper_leader"] == true {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v %v", err, ready)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for path, want := range map[string]string{
		"/healthz": `"status":"ok"`,
		"/metrics": `jitbot_grants{state="active"} 0`,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d: %s", code, buf.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not shut down")
	}
	if strings.Contains(buf.String(), "c2VjcmV0") {
		t.Fatal("the webhook secret appeared in the logs")
	}
	// Shutdown released the leader lock: a new holder gets it at once.
	st, err := bolt.Open(filepath.Join(dir, "jitbot.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.AcquireLock(context.Background(), "sweeper", "someone-else", time.Second); err != nil {
		t.Fatalf("leader lock still held after shutdown: %v", err)
	}
}

// syncWriter lets the server's goroutines log into one buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func seedAudit(t *testing.T, st store.Store, n int) {
	for i := range n {
		ev := store.AuditEvent{Type: store.EventRequested, At: time.Now(), Actor: "U0ALICE", RequestID: fmt.Sprintf("r-%d", i)}
		if err := st.Commit(context.Background(), store.Batch{Audit: []store.AuditEvent{ev}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuditVerifyDetectsAnEditedEntry(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		clearEnv(t)
		dir := t.TempDir()
		t.Setenv("JITBOT_DATA_DIR", dir)
		path := filepath.Join(dir, "jitbot.db")
		st, err := bolt.Open(path, bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		seedAudit(t, st, 5)
		st.Close()
		code, stdout, stderr := runCLI(t, "audit", "verify")
		if code != 0 || !strings.Contains(stdout, "audit log ok: 5 entries") {
			t.Fatalf("clean log: exit %d %s %s", code, stdout, stderr)
		}
		// Edit entry 3's actor in the file, as someone with access to the data file could.
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte("audit"))
			k := []byte{0, 0, 0, 0, 0, 0, 0, 3}
			v := bytes.Replace(b.Get(k), []byte("U0ALICE"), []byte("U0MALLORY"), 1)
			return b.Put(k, v)
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		code, _, stderr = runCLI(t, "audit", "verify")
		if code != 1 || !strings.Contains(stderr, "seq 3") || !strings.Contains(stderr, "edited") {
			t.Fatalf("edited log: exit %d, %s", code, stderr)
		}
	})
	t.Run("redis", func(t *testing.T) {
		clearEnv(t)
		url, prefix := redistest.URL(t), redistest.Prefix(t)
		t.Setenv("JITBOT_REDIS_URL", url)
		t.Setenv("JITBOT_REDIS_KEY_PREFIX", prefix)
		st, err := redis.Open(context.Background(), url, redis.Options{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		seedAudit(t, st, 4)
		code, stdout, _ := runCLI(t, "audit", "verify")
		if code != 0 || !strings.Contains(stdout, "4 entries") {
			t.Fatalf("clean log: exit %d %s", code, stdout)
		}
		first := strings.Fields(strings.SplitN(stdout, "\n", 2)[0])
		head := first[len(first)-1]
		// Truncation is only visible against a head recorded earlier.
		if code, _, stderr := runCLI(t, "audit", "verify", "--expect-head", head); code != 0 {
			t.Fatalf("expect-head of the current log: exit %d %s", code, stderr)
		}
		c := st.Client()
		raw, err := c.HGet(context.Background(), prefix+":audit:log", "2").Result()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.HSet(context.Background(), prefix+":audit:log", "2", strings.Replace(raw, "r-1", "r-9", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runCLI(t, "audit", "verify")
		if code != 1 || !strings.Contains(stderr, "seq 2") {
			t.Fatalf("edited log: exit %d, %s", code, stderr)
		}
		st.Close()
	})
}
