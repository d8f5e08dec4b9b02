// Package audit fans committed audit events out to subscribers and verifies the stored hash chain.
package audit

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/store"
)

// Subscriber receives audit events after they were committed. Publish must not block for long: a slow
// subscriber (Slack) queues internally.
type Subscriber interface {
	Publish(ctx context.Context, events ...store.AuditEvent)
}

// Bus publishes every event to each subscriber in order.
type Bus []Subscriber

func (b Bus) Publish(ctx context.Context, events ...store.AuditEvent) {
	for _, s := range b {
		s.Publish(ctx, events...)
	}
}

// LogSubscriber writes each event as a structured log line.
type LogSubscriber struct{ Logger zerolog.Logger }

func (l LogSubscriber) Publish(_ context.Context, events ...store.AuditEvent) {
	for _, e := range events {
		ev := l.Logger.Info().Str("audit", e.Type).Str("actor", e.Actor)
		if e.RequestID != "" {
			ev = ev.Str("request_id", e.RequestID)
		}
		if e.GrantID != "" {
			ev = ev.Str("grant_id", e.GrantID)
		}
		if e.Role != "" {
			ev = ev.Str("role", e.Role)
		}
		ev.Msg("audit event")
	}
}

// Reader is the part of store.Store that verification reads.
type Reader interface {
	ReadAudit(ctx context.Context, afterSeq uint64, limit int) ([]store.AuditRecord, error)
}

// Report is the outcome of a verification.
type Report struct {
	Entries  uint64 // entries checked
	HeadHash string // hash of the last entry; publish it somewhere else to detect truncation later
}

// Verify walks the whole log page by page and checks the hash chain. A broken chain returns a
// *store.ChainError naming the first bad entry. When expectHead is set (a hash recorded earlier, e.g. from a
// previous run or the audit channel), the log must contain it, which also detects truncation.
func Verify(ctx context.Context, r Reader, expectHead string) (Report, error) {
	const page = 1000
	var seq uint64
	hash := store.GenesisHash
	foundHead := expectHead == ""
	for {
		recs, err := r.ReadAudit(ctx, seq, page)
		if err != nil {
			return Report{Entries: seq, HeadHash: hash}, fmt.Errorf("audit: read after %d: %w", seq, err)
		}
		seq, hash, err = store.VerifyChain(recs, seq, hash)
		if err != nil {
			return Report{Entries: seq, HeadHash: hash}, err
		}
		for _, rec := range recs {
			if rec.Hash == expectHead {
				foundHead = true
			}
		}
		if len(recs) < page {
			break
		}
	}
	if !foundHead {
		return Report{Entries: seq, HeadHash: hash}, fmt.Errorf("audit: the log does not contain the expected head %s: entries were removed from its end", expectHead)
	}
	return Report{Entries: seq, HeadHash: hash}, nil
}
