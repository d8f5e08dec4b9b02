package redistest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// TestStartOwnServer exercises the fallback that starts a private redis-server, even when a shared one
// answers, and checks that closing the watchdog pipe (what happens when the test binary exits) stops it.
func TestStartOwnServer(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
	}
	saved := keep
	defer func() { keep = saved }()
	u, err := start(bin)
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(u, "redis://"), "/0")
	if err := ping(addr, time.Second); err != nil {
		t.Fatalf("started server does not answer: %v", err)
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	if v, err := c.ConfigGet(context.Background(), "save").Result(); err != nil || v["save"] != "" {
		t.Fatalf("CONFIG GET save = %v, %v; want persistence off", v, err)
	}
	_ = keep.Close()
	deadline := time.Now().Add(10 * time.Second)
	for ping(addr, 100*time.Millisecond) == nil {
		if time.Now().After(deadline) {
			t.Fatal("server still answers after its watchdog pipe closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestURLAndPrefix(t *testing.T) {
	u := URL(t)
	if u == "" {
		t.Fatal("empty URL")
	}
	var prefix string
	t.Run("inner", func(t *testing.T) {
		prefix = Prefix(t)
		if !strings.HasPrefix(prefix, "{jit-test-") || !strings.HasSuffix(prefix, "}") {
			t.Fatalf("Prefix = %q", prefix)
		}
		c := Client(t)
		for i := range 1500 {
			if err := c.Set(t.Context(), prefix+":k"+string(rune('a'+i%26))+strings.Repeat("x", i%7)+time.Now().String(), "1", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	c := Client(t)
	n, err := c.Keys(t.Context(), prefix+"*").Result()
	if err != nil || len(n) != 0 {
		t.Fatalf("keys left under %s after cleanup: %d, %v", prefix, len(n), err)
	}
}
