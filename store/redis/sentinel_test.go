package redis_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
	"github.com/jitbot/jitbot/store/storetest"
)

// startRedis runs redis-server with args until the test ends (the shell stops it when its stdin closes, also
// when the test binary dies) and waits until addr answers PING.
func startRedis(t *testing.T, dir string, port int, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
	}
	const watchdog = `"$0" "$@" & pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid"`
	cmd := exec.Command("sh", append([]string{"-c", watchdog, bin}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	c := goredis.NewClient(&goredis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server %v does not answer\n%s", args, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestThroughSentinel runs the conformance suite through a real Sentinel: the store finds the master by
// asking the Sentinel, as a production deployment with JITBOT_REDIS_URL=redis+sentinel://... does.
func TestThroughSentinel(t *testing.T) {
	redistest.URL(t) // fails clearly when no redis-server exists
	dir := t.TempDir()
	master, sentinel := freePort(t), freePort(t)
	startRedis(t, dir, master, "--port", strconv.Itoa(master), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor jitmaster 127.0.0.1 %d 1\n",
		sentinel, dir, filepath.Join(dir, "sentinel.log"), master), 0o600); err != nil {
		t.Fatal(err)
	}
	startRedis(t, dir, sentinel, conf, "--sentinel")
	url := fmt.Sprintf("redis+sentinel://127.0.0.1:%d/jitmaster", sentinel)

	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := jitredis.Open(context.Background(), url, jitredis.Options{Prefix: redistest.Prefix(t)})
		if err != nil {
			t.Fatalf("open through sentinel: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
