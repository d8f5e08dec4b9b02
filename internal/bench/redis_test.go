package bench

import (
	"testing"

	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/redis"
)

func openRedis(tb testing.TB, url, prefix string) store.Store {
	s, err := redis.Open(tb.Context(), url, redis.Options{Prefix: prefix})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
