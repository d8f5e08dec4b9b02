package redis_test

import (
	"testing"

	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/storetest"
)

// TestConformance runs the shared store.Store suite on Redis (and, from TestOnCluster, on a Redis Cluster).
func TestConformance(t *testing.T) { testConformance(t) }

func testConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newStore(t)
		return s
	})
}
