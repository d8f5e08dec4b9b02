// Package backendtest gives tests every store back end (embedded bbolt and a real Redis server), so engine
// tests run against both exactly as the conformance suite does.
package backendtest

import (
	"path/filepath"
	"testing"

	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	"github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// Backend opens one isolated, initially empty store. Every call of the opener returned by Prepare opens the
// same data again, as a restarted process would; close the previous store before opening it again.
type Backend struct {
	Name    string
	Prepare func(t testing.TB) (open func() store.Store)
}

// All returns the embedded and Redis back ends.
func All() []Backend {
	return []Backend{
		{Name: "bolt", Prepare: func(t testing.TB) func() store.Store {
			path := filepath.Join(t.TempDir(), "jitbot.db")
			return func() store.Store {
				s, err := bolt.Open(path, bolt.Options{NoSync: true})
				if err != nil {
					t.Fatalf("open bolt store: %v", err)
				}
				return s
			}
		}},
		{Name: "redis", Prepare: func(t testing.TB) func() store.Store {
			url := redistest.URL(t)
			prefix := redistest.Prefix(t)
			return func() store.Store {
				s, err := redis.Open(t.Context(), url, redis.Options{Prefix: prefix})
				if err != nil {
					t.Fatalf("open redis store: %v", err)
				}
				return s
			}
		}},
	}
}

// Open opens a fresh, empty store of this back end, closed when t ends.
func (b Backend) Open(t testing.TB) store.Store {
	t.Helper()
	s := b.Prepare(t)()
	t.Cleanup(func() { _ = s.Close() })
	return s
}
