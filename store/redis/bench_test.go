package redis_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
)

// BenchmarkClaimDueNoneDue measures ClaimDueGrants with 100,000 scheduled grants of which none is due.
func BenchmarkClaimDueNoneDue(b *testing.B) {
	s, prefix := newStore(b)
	ctx := context.Background()
	const total, perBatch = 100_000, 500
	for start := 0; start < total; start += perBatch {
		var batch store.Batch
		for i := start; i < start+perBatch; i++ {
			g := grant(fmt.Sprintf("g-%06d", i), fmt.Sprintf("U%d", i%1000), fmt.Sprintf("B%d", i%5000),
				t0, store.GrantActive, t0.Add(time.Hour+time.Duration(i)*time.Millisecond))
			batch.Grants = append(batch.Grants, store.GrantPut{Grant: g})
		}
		commit(b, s, batch)
	}
	if n, err := s.Client().ZCard(ctx, prefix+":idx:due").Result(); err != nil || n != total {
		b.Fatalf("due index holds %d grants (%v), want %d", n, err, total)
	}
	b.ResetTimer()
	for b.Loop() {
		gs, err := s.ClaimDueGrants(ctx, t0, 100, time.Minute)
		if err != nil || len(gs) != 0 {
			b.Fatalf("ClaimDueGrants = %d grants, %v", len(gs), err)
		}
	}
}

// BenchmarkCommitAudit measures a typical transition: one grant update plus one audit event whose hash the
// Lua SHA-256 computes inside the commit script.
func BenchmarkCommitAudit(b *testing.B) {
	s, _ := newStore(b)
	g := grant("g-1", "U1", "B1", t0, store.GrantActive, t0.Add(time.Hour))
	commit(b, s, store.Batch{Grants: []store.GrantPut{{Grant: g}}})
	ev := auditEvent(7)
	ev.Details["note"] = strings.Repeat("x", 400)
	for b.Loop() {
		g.Attempts++
		commit(b, s, store.Batch{Grants: []store.GrantPut{{Grant: g, PrevVersion: g.Version}}, Audit: []store.AuditEvent{ev}})
	}
}
