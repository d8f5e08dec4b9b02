package main

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// redisLog sends go-redis's own messages (reconnects, sentinel failovers, pool errors) to jitbot's structured
// log instead of straight to the process's stderr, so they carry the service fields and go through the same
// log pipeline (and the same secret tests) as everything else.
type redisLog struct{ log zerolog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.log.Warn().Str("component", "go-redis").Msg(fmt.Sprintf(format, v...))
}

func routeRedisLogs(log zerolog.Logger) { goredis.SetLogger(redisLog{log}) }
