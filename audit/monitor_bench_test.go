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

// BenchmarkVerifyLog measures a full verification of a 10,000-entry log (jitbot audit verify), with unkeyed
// and keyed links, on the embedded store.
func BenchmarkVerifyLog(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		name := "unkeyed"
		var key []byte
		if keyed {
			name, key = "keyed", []byte("0123456789abcdef0123456789abcdef")
		}
		b.Run(name, func(b *testing.B) {
			s, err := bolt.Open(filepath.Join(b.TempDir(), "jitbot.db"), bolt.Options{NoSync: true, AuditLinkKey: key})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			ev := store.AuditEvent{Type: store.EventGranted, Actor: "system:grants", GrantID: "g-1", RequestID: "r-1", Role: "db-admin",
				Details: map[string]string{"provider": "aws-prod", "expires_at": "2026-01-02T03:04:05Z"}}
			const n = 10_000
			for i := 0; i < n; i += 100 {
				batch := store.Batch{}
				for range 100 {
					batch.Audit = append(batch.Audit, ev)
				}
				if err := s.Commit(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				rep, err := audit.VerifyLog(ctx, s, audit.VerifyOptions{LinkKey: key})
				if err != nil || rep.Entries != n {
					b.Fatal(rep, err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
