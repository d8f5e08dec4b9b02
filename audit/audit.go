// Package audit fans committed audit events out to subscribers and verifies the stored hash chain.
package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
	AuditHead(ctx context.Context) (store.AuditHead, error)
}

// Report is the outcome of a verification.
type Report struct {
	Entries  uint64 // entries checked: the chain is unbroken from seq 1 to this seq
	HeadHash string // hash of the last good entry; publish it (or a signed checkpoint) to detect rewrites later
	// StoreHead is the head the store records beside the entries.
	StoreHead store.AuditHead
	// Checkpoints is how many signed checkpoints the log was checked against (see VerifyOptions).
	Checkpoints int
	// LatestCheckpoint is the highest checkpoint checked (zero when none).
	LatestCheckpoint Checkpoint
	// Keyed and Unkeyed count the entries by link kind; KeyedUnchecked is how many keyed links could only be
	// checked for continuity (no LinkKey given).
	Keyed, Unkeyed, KeyedUnchecked uint64
}

// Expectation is a head recorded earlier: the entry at Seq must have Hash. Seq 0 means "some entry has
// Hash" (a bare hash, as older jitbot versions printed).
type Expectation struct {
	Seq  uint64
	Hash string
}

// ParseExpectation reads "SEQ:HASH" (as `jitbot audit verify` prints a head) or a bare 64-hex-digit HASH.
func ParseExpectation(s string) (Expectation, error) {
	var e Expectation
	hash := strings.TrimSpace(s)
	if seq, h, ok := strings.Cut(hash, ":"); ok {
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil || n == 0 {
			return e, fmt.Errorf("%q: the part before ':' must be a sequence number (1 or more)", s)
		}
		e.Seq, hash = n, h
	}
	hash = strings.ToLower(hash)
	if b, err := hex.DecodeString(hash); err != nil || len(b) != 32 {
		return e, fmt.Errorf("%q is not a head: want SEQ:HASH or HASH, with HASH 64 hex digits (as `jitbot audit verify` prints it)", s)
	}
	e.Hash = hash
	return e, nil
}

// VerifyOptions are the outside knowledge a verification checks the log against. The zero value checks the
// chain and the store's own head only.
type VerifyOptions struct {
	// Expect is a head recorded earlier (`--expect-head`).
	Expect *Expectation
	// Checkpoints are signed checkpoints published earlier; each must verify with Keys and the log must
	// still have each one's hash at its seq.
	Checkpoints []Checkpoint
	Keys        []PublicKey
	// LinkKey recomputes keyed links (JITBOT_AUDIT_LINK_KEY). With it, the log must end with a keyed entry:
	// a log re-linked without the key (all unkeyed) would otherwise pass.
	LinkKey []byte
}

// Kinds of VerifyError.
const (
	KindEmpty          = "empty"           // no entries and no head: nothing to verify
	KindTruncated      = "truncated"       // the head names entries that are gone from the end
	KindHeadBehind     = "head-behind"     // entries continue past the head the store records
	KindHeadMismatch   = "head-mismatch"   // the last entry is not the one the head names
	KindExpectMissing  = "expect-missing"  // the expected head is past the end of the log
	KindExpectMismatch = "expect-mismatch" // the entry at the expected seq has another hash
	KindCheckpoint     = "checkpoint"      // a signed checkpoint does not match the log, or does not verify
	KindNotKeyed       = "not-keyed"       // a link key is given but the log does not end with a keyed entry
)

// VerifyError is a verification failure other than a broken link (those are *store.ChainError). Kind says
// what was found; the message says it in words.
type VerifyError struct {
	Kind string
	Msg  string
}

func (e *VerifyError) Error() string { return e.Msg }

// IsKind reports whether err is a *VerifyError of kind.
func IsKind(err error, kind string) bool {
	var ve *VerifyError
	return errors.As(err, &ve) && ve.Kind == kind
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}

// Verify is VerifyLog with an optional expected head ("SEQ:HASH" or "HASH", see ParseExpectation), for
// tests and callers that count entries: an empty log verifies here (0 entries). `jitbot audit verify` uses
// VerifyLog, which refuses an empty log.
func Verify(ctx context.Context, r Reader, expectHead string) (Report, error) {
	var o VerifyOptions
	if expectHead != "" {
		e, err := ParseExpectation(expectHead)
		if err != nil {
			return Report{HeadHash: store.GenesisHash}, fmt.Errorf("audit: expected head %w", err)
		}
		o.Expect = &e
	}
	rep, err := VerifyLog(ctx, r, o)
	if IsKind(err, KindEmpty) && o.Expect == nil {
		return rep, nil
	}
	return rep, err
}

// VerifyLog walks the whole log page by page, checks the hash chain, and checks that it ends exactly at the
// head the store records (a cut-off tail or a head set back is reported), then checks the log against o. A
// broken link returns a *store.ChainError naming the first bad entry; every other failure is a *VerifyError.
// An empty log is an error (KindEmpty): verifying nothing proves nothing.
func VerifyLog(ctx context.Context, r Reader, o VerifyOptions) (Report, error) {
	head, err := r.AuditHead(ctx)
	if err != nil {
		return Report{HeadHash: store.GenesisHash}, fmt.Errorf("audit: read the store's head: %w", err)
	}
	rep := Report{HeadHash: store.GenesisHash, StoreHead: head}
	// The hashes the options ask about, by seq, collected during the single walk.
	want := map[uint64]bool{}
	if o.Expect != nil && o.Expect.Seq > 0 {
		want[o.Expect.Seq] = true
	}
	for _, c := range o.Checkpoints {
		want[c.Seq] = true
	}
	got := map[uint64]string{}
	foundExpect := false

	const page = 1000
	v := store.ChainVerifier{Hash: store.GenesisHash, Key: o.LinkKey}
	var seq uint64
	hash := store.GenesisHash
	for {
		recs, err := r.ReadAudit(ctx, seq, page)
		if err != nil {
			rep.Entries, rep.HeadHash = seq, hash
			return rep, fmt.Errorf("audit: read after %d: %w", seq, err)
		}
		err = v.Verify(recs)
		seq, hash = v.Seq, v.Hash
		rep.Entries, rep.HeadHash = seq, hash
		rep.Keyed, rep.Unkeyed, rep.KeyedUnchecked = v.Keyed, v.Unkeyed, v.KeyedUnchecked
		if err != nil {
			return rep, err
		}
		for _, rec := range recs {
			if want[rec.Seq] {
				got[rec.Seq] = rec.Hash
			}
			if o.Expect != nil && o.Expect.Seq == 0 && rec.Hash == o.Expect.Hash {
				foundExpect = true
			}
		}
		if len(recs) < page {
			break
		}
	}

	switch {
	case seq == 0 && head.Seq == 0:
		return rep, &VerifyError{Kind: KindEmpty, Msg: "the audit log is empty: no entries and no head"}
	case seq < head.Seq:
		return rep, &VerifyError{Kind: KindTruncated, Msg: fmt.Sprintf(
			"the log ends at seq %d but the store's head is seq %d (hash %s): entries %d..%d were removed from its end",
			seq, head.Seq, short(head.Hash), seq+1, head.Seq)}
	case seq > head.Seq:
		return rep, &VerifyError{Kind: KindHeadBehind, Msg: fmt.Sprintf(
			"the store's head is seq %d but entries continue to seq %d: the head was set back (lost writes, or someone hid the tail)",
			head.Seq, seq)}
	case hash != head.Hash:
		return rep, &VerifyError{Kind: KindHeadMismatch, Msg: fmt.Sprintf(
			"the last entry (seq %d) has hash %s but the store's head records %s: the head or the last entry was replaced",
			seq, short(hash), short(head.Hash))}
	}

	if len(o.LinkKey) > 0 && !store.IsKeyed(hash) {
		return rep, &VerifyError{Kind: KindNotKeyed, Msg: fmt.Sprintf(
			"the log ends with an unkeyed entry (seq %d) although a link key is given: it was re-linked by someone without "+
				"the key, or the jitbot that wrote it runs without JITBOT_AUDIT_LINK_KEY (a key configured just now is "+
				"used from the next event on)", seq)}
	}

	if e := o.Expect; e != nil {
		switch {
		case e.Seq == 0 && !foundExpect:
			return rep, &VerifyError{Kind: KindExpectMismatch, Msg: fmt.Sprintf(
				"no entry has the expected head hash %s (checked %d entries, the log's head is %d:%s): the log was rewritten, "+
					"or that hash comes from another store; give SEQ:HASH to tell a cut-off tail from a rewrite", short(e.Hash), seq, seq, short(hash))}
		case e.Seq > seq:
			return rep, &VerifyError{Kind: KindExpectMissing, Msg: fmt.Sprintf(
				"the expected head is seq %d but the log has only %d entries: entries %d..%d are gone (or that head comes from another store)",
				e.Seq, seq, seq+1, e.Seq)}
		case e.Seq > 0 && got[e.Seq] != e.Hash:
			return rep, &VerifyError{Kind: KindExpectMismatch, Msg: fmt.Sprintf(
				"entry %d has hash %s, not the expected %s: the log was rewritten at or before seq %d (or that head comes from another store)",
				e.Seq, short(got[e.Seq]), short(e.Hash), e.Seq)}
		}
	}

	for _, c := range o.Checkpoints {
		if err := c.Verify(o.Keys); err != nil {
			return rep, &VerifyError{Kind: KindCheckpoint, Msg: fmt.Sprintf("checkpoint at seq %d: %v", c.Seq, err)}
		}
		switch {
		case c.Seq > seq:
			return rep, &VerifyError{Kind: KindCheckpoint, Msg: fmt.Sprintf(
				"a signed checkpoint published seq %d (%s) but the log has only %d entries: entries %d..%d were removed",
				c.Seq, c.At.Format(timeFormat), seq, seq+1, c.Seq)}
		case got[c.Seq] != c.Hash:
			return rep, &VerifyError{Kind: KindCheckpoint, Msg: fmt.Sprintf(
				"entry %d has hash %s, but the checkpoint signed at %s says %s: the log was rewritten at or before seq %d",
				c.Seq, short(got[c.Seq]), c.At.Format(timeFormat), short(c.Hash), c.Seq)}
		}
		rep.Checkpoints++
		if c.Seq >= rep.LatestCheckpoint.Seq {
			rep.LatestCheckpoint = c
		}
	}
	return rep, nil
}
