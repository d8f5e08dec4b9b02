package audit_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	"github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// BenchmarkMonitorCheck measures the check the sweeper leader runs before every sweep, after two new audit
// entries (the commit itself is not timed), on both stores.
func BenchmarkMonitorCheck(b *testing.B) {
	open := map[string]func(b *testing.B) store.Store{
		"bolt": func(b *testing.B) store.Store {
			s, err := bolt.Open(filepath.Join(b.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
		"redis": func(b *testing.B) store.Store {
			s, err := redis.Open(context.Background(), redistest.URL(b), redis.Options{Prefix: redistest.Prefix(b)})
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
	for _, name := range []string{"bolt", "redis"} {
		b.Run(name, func(b *testing.B) {
			s := open[name](b)
			defer s.Close()
			ctx := context.Background()
			ev := store.AuditEvent{Type: store.EventGranted, Actor: "system:grants", GrantID: "g-1", RequestID: "r-1", Role: "db-admin"}
			m, err := audit.NewMonitor(audit.MonitorOptions{Store: s, Logger: zerolog.Nop()})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Commit(ctx, store.Batch{Audit: []store.AuditEvent{ev}}); err != nil {
				b.Fatal(err)
			}
			if err := m.Check(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				if err := s.Commit(ctx, store.Batch{Audit: []store.AuditEvent{ev, ev}}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := m.Check(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
