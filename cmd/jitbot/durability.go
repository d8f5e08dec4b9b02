package main

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/store/redis"
)

// checkRedisDurability reads the Redis configuration at start-up: every setting that can lose grants is logged
// at error level with the setting to change; an evicting Redis (it may delete grants, indexes or locks to free
// memory) refuses to start unless JITBOT_REDIS_ALLOW_EVICTION says the operator accepts that.
func checkRedisDurability(ctx context.Context, log zerolog.Logger, cfg Config, rs *redis.Store) error {
	d, err := rs.CheckDurability(ctx)
	if err != nil {
		log.Error().Err(err).Msg("could not check Redis durability (INFO failed); make sure persistence is on and maxmemory-policy is noeviction")
		return nil
	}
	if d.ConfigErr != nil {
		log.Warn().Str("reason", d.ConfigErr.Error()).Msg("Redis refused CONFIG GET, so jitbot could not check its RDB snapshot schedule and AOF fsync policy; check them in the service's settings")
	}
	for _, w := range d.Warnings() {
		log.Error().Str("check", "redis-durability").Msg(w)
	}
	if d.Evicting() {
		if !cfg.RedisAllowEviction {
			return fmt.Errorf("redis maxmemory-policy is %s with a memory limit: it may delete grants jitbot must revoke. "+
				"Set maxmemory-policy noeviction (or set JITBOT_REDIS_ALLOW_EVICTION=true to start anyway)", d.EvictionPolicy)
		}
		log.Error().Str("check", "redis-durability").Msg("starting on an evicting Redis because JITBOT_REDIS_ALLOW_EVICTION=true")
	}
	if cfg.RedisMinReplicas > d.Replicas {
		log.Error().Int("min_replicas", cfg.RedisMinReplicas).Int("connected_replicas", d.Replicas).
			Msg("JITBOT_REDIS_MIN_REPLICAS is more than the replicas connected to the Redis primary: every commit fails until enough replicas connect")
	}
	log.Info().Bool("aof", d.AOF).Bool("rdb", d.RDB).Bool("rdb_known", d.RDBKnown).Str("appendfsync", d.AppendFsync).
		Str("maxmemory_policy", d.EvictionPolicy).Int64("maxmemory", d.MaxMemory).Int("replicas", d.Replicas).
		Int("min_replicas", cfg.RedisMinReplicas).Msg("redis durability")
	return nil
}
