package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jitbot/jitbot/store/redistest"
)

func redisServeEnv(t *testing.T, url string) {
	clearEnv(t)
	t.Setenv("JITBOT_DATA_DIR", t.TempDir())
	t.Setenv("JITBOT_SLACK", "off")
	t.Setenv("JITBOT_POLICY_FILE", "../../examples/policy.yaml")
	t.Setenv("JITBOT_WEBHOOK_SECRET", "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3ODk=")
	t.Setenv("JITBOT_LISTEN_ADDR", freeAddr(t))
	t.Setenv("JITBOT_REDIS_URL", url)
	t.Setenv("JITBOT_REDIS_KEY_PREFIX", redistest.Prefix(t))
}

// TestServeChecksRedisDurability: serve reads the Redis configuration at start-up, says loudly what loses
// grants and refuses an evicting Redis unless told otherwise.
func TestServeChecksRedisDurability(t *testing.T) {
	t.Run("no persistence warns with the setting", func(t *testing.T) {
		url, _ := redistest.StartServer(t)
		redisServeEnv(t, url)
		logs := serveUntilReady(t, nil)
		if !strings.Contains(logs, `"level":"error"`) || !strings.Contains(logs, "persists nothing") || !strings.Contains(logs, "appendonly yes") {
			t.Fatalf("no loud persistence warning:\n%s", logs)
		}
	})
	t.Run("evicting redis refuses to start", func(t *testing.T) {
		url, _ := redistest.StartServer(t, "--appendonly", "yes", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
		redisServeEnv(t, url)
		var out bytes.Buffer
		code := run(context.Background(), []string{"serve"}, strings.NewReader(""), io.Discard, &syncWriter{w: &out})
		if code != 1 || !strings.Contains(out.String(), "maxmemory-policy noeviction") || !strings.Contains(out.String(), "JITBOT_REDIS_ALLOW_EVICTION") {
			t.Fatalf("exit %d:\n%s", code, out.String())
		}
		t.Setenv("JITBOT_REDIS_ALLOW_EVICTION", "true")
		logs := serveUntilReady(t, nil)
		if !strings.Contains(logs, "JITBOT_REDIS_ALLOW_EVICTION=true") {
			t.Fatalf("the override is not logged:\n%s", logs)
		}
	})
	t.Run("durable redis starts quietly", func(t *testing.T) {
		url, _ := redistest.StartServer(t, "--appendonly", "yes", "--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
		redisServeEnv(t, url)
		logs := serveUntilReady(t, func(base string) {
			// The clock skew against Redis TIME is measured at start-up and exported.
			resp, err := http.Get(base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "\njitbot_clock_skew_seconds ") {
				t.Errorf("/metrics has no jitbot_clock_skew_seconds sample")
			}
		})
		if strings.Contains(logs, "redis-durability") || !strings.Contains(logs, `"aof":true`) {
			t.Fatalf("unexpected durability warnings:\n%s", logs)
		}
	})
	t.Run("min replicas without replicas", func(t *testing.T) {
		url, _ := redistest.StartServer(t, "--appendonly", "yes")
		redisServeEnv(t, url)
		t.Setenv("JITBOT_REDIS_MIN_REPLICAS", "1")
		t.Setenv("JITBOT_REDIS_REPLICA_TIMEOUT", "20ms")
		logs := serveUntilReady(t, nil)
		if !strings.Contains(logs, "every commit fails until enough replicas connect") {
			t.Fatalf("no warning about missing replicas:\n%s", logs)
		}
	})
}
