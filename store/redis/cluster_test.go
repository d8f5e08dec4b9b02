package redis_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store/redistest"
)

// startCluster starts a one-node Redis Cluster (all 16384 slots on one redis-server) and returns its
// redis+cluster:// URL. A real cluster makes go-redis route by slot and makes Redis refuse cross-slot
// multi-key commands, so it checks the hash-tag design end to end.
func startCluster(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir := t.TempDir()
	// The shell stops redis-server when its stdin closes: at cleanup, or when the test binary dies.
	const watchdog = `"$0" --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$2" --logfile "$2/redis.log" \
  --cluster-enabled yes --cluster-config-file "$2/nodes.conf" & pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid"`
	cmd := exec.Command("sh", "-c", watchdog, bin, strconv.Itoa(port), dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	wait := func(what string, ok func() bool) {
		for !ok() {
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
				t.Fatalf("cluster node on %s: %s\n%s", addr, what, log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("does not answer", func() bool { return c.Ping(ctx).Err() == nil })
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	wait("cluster_state never became ok", func() bool {
		info, err := c.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})
	return "redis+cluster://" + addr
}

// TestOnCluster runs this package's store tests against a one-node Redis Cluster through a ClusterClient.
func TestOnCluster(t *testing.T) {
	u := startCluster(t)
	t.Setenv(redistest.EnvURL, u)
	c := redistest.Client(t)
	if _, ok := c.(*goredis.ClusterClient); !ok {
		t.Fatalf("redistest.Client(%s) is a %T, want *redis.ClusterClient", u, c)
	}
	// A cross-slot command must fail here, or this test proves nothing.
	if err := c.Do(t.Context(), "MGET", "{a}x", "{b}y").Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("cross-slot MGET err = %v, want CROSSSLOT", err)
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"CommitIndexesAndLists", TestCommitIndexesAndLists},
		{"RequestsPendingAndDue", TestRequestsPendingAndDue},
		{"ClaimDueGrants", TestClaimDueGrants},
		{"LocksAndMarkSeen", TestLocksAndMarkSeen},
		{"AuditChain", TestAuditChain},
		{"AuditTamperDetected", TestAuditTamperDetected},
		{"EveryKeySharesTheHashTag", TestEveryKeySharesTheHashTag},
		{"Conformance", testConformance},
	} {
		t.Run(tc.name, tc.fn)
	}
}
