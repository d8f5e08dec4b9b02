package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ErrNotReplicated is returned (wrapped) by Commit when Options.MinReplicas is set and fewer replicas
// acknowledged the commit within Options.ReplicaTimeout. The commit reached the primary, but a failover now
// could lose it, so the caller is told it failed: it is in the same position as after a network error with
// the outcome unknown (write-ahead grants are resumed by the sweeper either way).
var ErrNotReplicated = errors.New("commit not acknowledged by enough replicas")

// DefaultReplicaTimeout bounds WAIT when Options.MinReplicas is set and Options.ReplicaTimeout is zero.
const DefaultReplicaTimeout = time.Second

// Durability is what CheckDurability found out about the Redis behind a Store.
type Durability struct {
	// AOF and RDB report whether append-only-file and snapshot persistence are on. RDBKnown is false when
	// the snapshot schedule could not be read (CONFIG GET refused, as many managed Redis services do).
	AOF, RDB, RDBKnown bool
	// AppendFsync is the AOF fsync policy ("everysec", "always", "no"), "" when unknown.
	AppendFsync string
	// MaxMemory is the memory limit in bytes (0: none) and EvictionPolicy the maxmemory-policy.
	MaxMemory      int64
	EvictionPolicy string
	// Replicas is the number of connected replicas the primary reports.
	Replicas int
	// ConfigErr is why CONFIG GET could not be used, nil when it could.
	ConfigErr error
}

// Persistent reports whether Redis writes the data to disk in some form.
func (d Durability) Persistent() bool { return d.AOF || d.RDB }

// Evicting reports whether Redis may delete keys jitbot wrote to stay under its memory limit: any
// maxmemory-policy but noeviction once a limit is set. volatile-* policies count too: they evict the keys
// with an expiry, which are jitbot's locks (losing one lets two replicas act on one binding at once).
func (d Durability) Evicting() bool {
	return d.MaxMemory > 0 && d.EvictionPolicy != "" && d.EvictionPolicy != "noeviction"
}

// Warnings are what an operator should change, each with the setting to change, in order of severity.
func (d Durability) Warnings() []string {
	var w []string
	switch {
	case !d.AOF && d.RDBKnown && !d.RDB:
		w = append(w, "Redis persists nothing (appendonly no, save \"\"): a restart loses every grant and the record of what must be revoked. "+
			"Turn on AOF: CONFIG SET appendonly yes (and appendonly yes in redis.conf), or your service's persistence setting")
	case !d.AOF && !d.RDBKnown:
		w = append(w, fmt.Sprintf("Redis AOF is off, and jitbot could not check RDB snapshots (%v): make sure the service persists data "+
			"(appendonly yes, or a save schedule), or a restart loses every grant", d.ConfigErr))
	case !d.AOF && d.RDB:
		w = append(w, "Redis persists only RDB snapshots: a crash loses the writes since the last snapshot (grants jitbot must revoke). "+
			"Turn on AOF: appendonly yes with appendfsync everysec")
	}
	if d.AOF && d.AppendFsync == "no" {
		w = append(w, "Redis AOF has appendfsync no: the OS decides when writes reach disk, so a crash can lose many seconds of grants; use appendfsync everysec (or always)")
	}
	if d.Evicting() {
		w = append(w, fmt.Sprintf("Redis maxmemory-policy is %s with maxmemory %d: Redis may delete grants, indexes or locks to free memory. "+
			"Set maxmemory-policy noeviction", d.EvictionPolicy, d.MaxMemory))
	} else if d.EvictionPolicy != "" && d.EvictionPolicy != "noeviction" {
		w = append(w, fmt.Sprintf("Redis maxmemory-policy is %s: with no maxmemory it never evicts, but once a limit is set it may delete grants. "+
			"Set maxmemory-policy noeviction", d.EvictionPolicy))
	}
	return w
}

// CheckDurability reads INFO persistence, memory and replication, and CONFIG GET save and appendfsync where
// the server allows it, from the primary (for a Cluster, from the primary of jitbot's slot).
func (s *Store) CheckDurability(ctx context.Context) (Durability, error) {
	c, err := s.primary(ctx)
	if err != nil {
		return Durability{}, fmt.Errorf("redis: check durability: %w", err)
	}
	var d Durability
	info, err := c.Info(ctx, "persistence", "memory", "replication").Result()
	if err != nil {
		return d, fmt.Errorf("redis: check durability: INFO: %w", err)
	}
	f := infoFields(info)
	d.AOF = f["aof_enabled"] == "1"
	d.MaxMemory, _ = strconv.ParseInt(f["maxmemory"], 10, 64)
	d.EvictionPolicy = f["maxmemory_policy"]
	d.Replicas, _ = strconv.Atoi(f["connected_slaves"])

	cfg, err := c.ConfigGet(ctx, "save").Result()
	if err != nil {
		d.ConfigErr = fmt.Errorf("CONFIG GET save: %w", err)
		return d, nil
	}
	save, ok := cfg["save"]
	d.RDBKnown = ok
	d.RDB = ok && strings.TrimSpace(save) != ""
	if cfg, err := c.ConfigGet(ctx, "appendfsync").Result(); err == nil {
		d.AppendFsync = cfg["appendfsync"]
	}
	return d, nil
}

func infoFields(info string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}

// primary is a client on the primary that holds jitbot's keys: the client itself for a single Redis and
// for Sentinel (the failover client always talks to the master), the slot's master for a Cluster.
func (s *Store) primary(ctx context.Context) (goredis.Cmdable, error) {
	if cc, ok := s.c.(*goredis.ClusterClient); ok {
		return cc.MasterForKey(ctx, s.keys.auditSeq())
	}
	return s.c, nil
}

// Time returns the Redis server's clock (TIME), for measuring this process's clock skew.
func (s *Store) Time(ctx context.Context) (time.Time, error) {
	c, err := s.primary(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("redis: time: %w", err)
	}
	t, err := c.Time(ctx).Result()
	if err != nil {
		return time.Time{}, fmt.Errorf("redis: time: %w", err)
	}
	return t, nil
}

// evalCommit runs the commit script; with MinReplicas it sends WAIT on the same connection right after it
// (WAIT counts the replicas that acknowledged this connection's writes) and fails a commit that wrote but
// was not acknowledged by enough replicas. WAIT cannot run inside a script, hence the pipeline.
func (s *Store) evalCommit(ctx context.Context, keys []string, args ...any) ([]any, error) {
	if s.minReplicas <= 0 {
		return scriptCommit.Run(ctx, s.c, keys, args...).Slice()
	}
	c, err := s.primary(ctx)
	if err != nil {
		return nil, err
	}
	pc, ok := c.(interface {
		Pipeline() goredis.Pipeliner
	})
	if !ok {
		return nil, fmt.Errorf("redis: commit: client %T cannot pipeline WAIT", c)
	}
	for attempt := 0; ; attempt++ {
		pl := pc.Pipeline()
		script := scriptCommit.EvalSha(ctx, pl, keys, args...)
		wait := pl.Do(ctx, "WAIT", s.minReplicas, s.replicaTimeout.Milliseconds())
		_, _ = pl.Exec(ctx)
		res, err := script.Slice()
		if err != nil && attempt == 0 && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			if err := scriptCommit.Load(ctx, c).Err(); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(res) > 0 && res[0] == "ok" {
			n, werr := wait.Int64()
			if werr != nil {
				return nil, fmt.Errorf("WAIT %d: %w (the commit reached the primary: %w)", s.minReplicas, werr, ErrNotReplicated)
			}
			if n < int64(s.minReplicas) {
				return nil, fmt.Errorf("%d of %d replicas acknowledged within %s (JITBOT_REDIS_MIN_REPLICAS): %w",
					n, s.minReplicas, s.replicaTimeout, ErrNotReplicated)
			}
		}
		return res, nil
	}
}
