package redis_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

func openAt(t *testing.T, url string, opts jitredis.Options) *jitredis.Store {
	t.Helper()
	if opts.Prefix == "" {
		opts.Prefix = "{jit-durability}"
	}
	s, err := jitredis.Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func warningsOf(t *testing.T, s *jitredis.Store) (jitredis.Durability, string) {
	t.Helper()
	d, err := s.CheckDurability(context.Background())
	if err != nil {
		t.Fatalf("CheckDurability: %v", err)
	}
	return d, strings.Join(d.Warnings(), "\n")
}

// TestDurabilityChecksRealServers: each case is a redis-server started with the settings it names.
func TestDurabilityChecksRealServers(t *testing.T) {
	t.Run("no persistence", func(t *testing.T) {
		url, _ := redistest.StartServer(t)
		d, w := warningsOf(t, openAt(t, url, jitredis.Options{}))
		if d.Persistent() || !d.RDBKnown || !strings.Contains(w, "persists nothing") || !strings.Contains(w, "appendonly yes") {
			t.Fatalf("%+v\n%s", d, w)
		}
	})
	t.Run("AOF everysec", func(t *testing.T) {
		url, _ := redistest.StartServer(t, "--appendonly", "yes", "--appendfsync", "everysec")
		d, w := warningsOf(t, openAt(t, url, jitredis.Options{}))
		if !d.AOF || d.AppendFsync != "everysec" || w != "" {
			t.Fatalf("%+v\nwarnings: %s", d, w)
		}
	})
	t.Run("AOF without fsync", func(t *testing.T) {
		url, _ := redistest.StartServer(t, "--appendonly", "yes", "--appendfsync", "no")
		if _, w := warningsOf(t, openAt(t, url, jitredis.Options{})); !strings.Contains(w, "appendfsync everysec") {
			t.Fatalf("warnings: %s", w)
		}
	})
	t.Run("RDB only", func(t *testing.T) {
		url, _ := redistest.StartServer(t, "--save", "900 1")
		d, w := warningsOf(t, openAt(t, url, jitredis.Options{}))
		if !d.RDB || d.AOF || !d.Persistent() || !strings.Contains(w, "only RDB") {
			t.Fatalf("%+v\n%s", d, w)
		}
	})
	t.Run("evicting", func(t *testing.T) {
		url, _ := redistest.StartServer(t, "--appendonly", "yes", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
		d, w := warningsOf(t, openAt(t, url, jitredis.Options{}))
		if !d.Evicting() || !strings.Contains(w, "noeviction") {
			t.Fatalf("%+v\n%s", d, w)
		}
	})
	t.Run("volatile policy evicts locks", func(t *testing.T) {
		url, _ := redistest.StartServer(t, "--appendonly", "yes", "--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru")
		if d, _ := warningsOf(t, openAt(t, url, jitredis.Options{})); !d.Evicting() {
			t.Fatalf("volatile-lru with a limit must count as evicting: %+v", d)
		}
	})
	t.Run("evicting policy without a limit", func(t *testing.T) {
		url, _ := redistest.StartServer(t, "--appendonly", "yes", "--maxmemory-policy", "allkeys-lru")
		d, w := warningsOf(t, openAt(t, url, jitredis.Options{}))
		if d.Evicting() || !strings.Contains(w, "once a limit is set") {
			t.Fatalf("%+v\n%s", d, w)
		}
	})
	t.Run("noeviction with a limit", func(t *testing.T) {
		url, _ := redistest.StartServer(t, "--appendonly", "yes", "--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
		if d, w := warningsOf(t, openAt(t, url, jitredis.Options{})); d.Evicting() || w != "" {
			t.Fatalf("%+v\n%s", d, w)
		}
	})
	t.Run("CONFIG forbidden", func(t *testing.T) {
		// As on managed Redis: jitbot's ACL user may not run CONFIG.
		_, addr := redistest.StartServer(t, "--user", "jitbot", "on", ">pw", "~*", "&*", "+@all", "-@admin", "--user", "default", "off")
		d, w := warningsOf(t, openAt(t, "redis://jitbot:pw@"+addr+"/0", jitredis.Options{}))
		if d.RDBKnown || d.ConfigErr == nil || !strings.Contains(w, "could not check") {
			t.Fatalf("%+v\n%s", d, w)
		}
	})
	t.Run("the shared test Redis", func(t *testing.T) {
		// The Redis tests share (6379 persists nothing): the report must match what the server says.
		c := redistest.Client(t)
		aof, _ := c.ConfigGet(context.Background(), "appendonly").Result()
		save, _ := c.ConfigGet(context.Background(), "save").Result()
		persists := aof["appendonly"] == "yes" || strings.TrimSpace(save["save"]) != ""
		d, w := warningsOf(t, openAt(t, redistest.URL(t), jitredis.Options{Prefix: redistest.Prefix(t)}))
		if d.Persistent() != persists || (!persists && !strings.Contains(w, "persists nothing")) {
			t.Fatalf("server: appendonly %q save %q; report %+v\n%s", aof["appendonly"], save["save"], d, w)
		}
	})
}

func commitOne(s *jitredis.Store, id string) error {
	return s.Commit(context.Background(), store.Batch{
		Requests: []store.RequestPut{{Request: &store.Request{ID: id, Requester: "U1", Role: "db", State: store.RequestPending,
			CreatedAt: time.Now(), PendingUntil: time.Now().Add(time.Hour)}}},
		Audit: []store.AuditEvent{{Type: store.EventRequested, At: time.Now(), Actor: "U1", RequestID: id}},
	})
}

// TestMinReplicasWaitsForAcknowledgement: with MinReplicas a commit fails unless enough replicas
// acknowledged it (WAIT), on a primary without replicas and then with one.
func TestMinReplicasWaitsForAcknowledgement(t *testing.T) {
	url, addr := redistest.StartServer(t)
	s := openAt(t, url, jitredis.Options{MinReplicas: 1, ReplicaTimeout: 50 * time.Millisecond})
	err := commitOne(s, "r-alone")
	if !errors.Is(err, jitredis.ErrNotReplicated) || !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Fatalf("commit on a primary without replicas: %v, want ErrNotReplicated", err)
	}
	// Conflicts are still conflicts, not replication failures.
	if err := commitOne(s, "r-alone"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("re-create: %v, want ErrConflict", err)
	}

	host, port, _ := strings.Cut(addr, ":")
	replicaURL, _ := redistest.StartServer(t, "--replicaof", host, port)
	rc := redistest.ClientFor(t, replicaURL)
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, _ := rc.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica did not sync: %s", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s2 := openAt(t, url, jitredis.Options{MinReplicas: 1, ReplicaTimeout: 10 * time.Second})
	if err := commitOne(s2, "r-replicated"); err != nil {
		t.Fatalf("commit with one replica: %v", err)
	}
	// The write is on the replica once WAIT returned.
	if n, err := rc.Exists(context.Background(), "{jit-durability}:req:r-replicated").Result(); err != nil || n != 1 {
		t.Fatalf("record on the replica: %d %v", n, err)
	}
	if d, _ := warningsOf(t, s2); d.Replicas != 1 {
		t.Fatalf("replicas reported: %d", d.Replicas)
	}
	// A fresh script cache (a restart, a failover) is handled: the script is loaded again.
	if err := goredis.NewClient(&goredis.Options{Addr: addr}).ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := commitOne(s2, "r-after-flush"); err != nil {
		t.Fatalf("commit after SCRIPT FLUSH: %v", err)
	}
}
