package storetest

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/store"
)

// KeyedStorage opens one store's storage again and again, with or without an audit link key, as jitbot
// restarted with another configuration would. Close the previous store before opening it again.
type KeyedStorage func(key []byte) (store.Store, AuditTamperer)

// RunAuditKeyed runs the keyed-link tests. newStorage returns fresh, empty storage for each test.
func RunAuditKeyed(t *testing.T, newStorage func(t *testing.T) KeyedStorage) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, open KeyedStorage)
	}{
		{"KeyedLinksVerifyOnlyWithTheKey", testKeyedLinks},
		{"RelinkedTailIsCaught", testKeyedRelinkedTail},
		{"WholeLogRelinkedWithoutTheKey", testKeyedWholeLogRelinked},
		{"LegacyEntriesAreCoveredByTheFirstKeyedLink", testKeyedAfterLegacy},
		{"MonitorRefusesToCheckpointARelinkedTail", testKeyedMonitor},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStorage(t)) })
	}
}

var (
	linkKey  = bytes.Repeat([]byte("k"), 32)
	otherKey = bytes.Repeat([]byte("o"), 32)
)

func wantChainBreak(t *testing.T, err error, seq uint64, reason string) {
	t.Helper()
	var ce *store.ChainError
	if !errors.As(err, &ce) || ce.Seq != seq || !strings.Contains(ce.Reason, reason) {
		t.Fatalf("VerifyLog err = %v, want a chain break at seq %d (%s)", err, seq, reason)
	}
}

func testKeyedLinks(t *testing.T, open KeyedStorage) {
	s, _ := open(linkKey)
	defer s.Close()
	recs := seedLog(t, s, 4)
	for _, r := range recs {
		if !store.IsKeyed(r.Hash) || r.Hash != store.KeyedChainHash(linkKey, r.PrevHash, r.Seq, r.Raw) {
			t.Fatalf("entry %d hash %q is not the keyed link", r.Seq, r.Hash)
		}
	}
	rep, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{LinkKey: linkKey})
	if err != nil || rep.Keyed != 4 || rep.KeyedUnchecked != 0 {
		t.Fatalf("VerifyLog with the key: %+v, %v", rep, err)
	}
	rep, err = audit.VerifyLog(t.Context(), s, audit.VerifyOptions{})
	if err != nil || rep.KeyedUnchecked != 4 {
		t.Fatalf("VerifyLog without the key checks continuity only: %+v, %v", rep, err)
	}
	_, err = audit.VerifyLog(t.Context(), s, audit.VerifyOptions{LinkKey: otherKey})
	wantChainBreak(t, err, 1, "keyed hash")
}

// relink rewrites entries from seq from on with edit applied and unkeyed links, and moves the head: what
// someone with write access to the store but without the link key can do.
func relink(t *testing.T, tm AuditTamperer, recs []store.AuditRecord, from int, edit func(string) string) {
	t.Helper()
	prev := store.GenesisHash
	if from > 0 {
		prev = recs[from-1].Hash
	}
	for _, r := range recs[from:] {
		raw := []byte(edit(string(r.Raw)))
		h := store.ChainHash(prev, r.Seq, raw)
		if err := tm.PutAuditEntry(t.Context(), store.AuditRecord{Seq: r.Seq, PrevHash: prev, Hash: h, Raw: raw}); err != nil {
			t.Fatal(err)
		}
		prev = h
	}
	if err := tm.SetAuditHead(t.Context(), store.AuditHead{Seq: recs[len(recs)-1].Seq, Hash: prev}); err != nil {
		t.Fatal(err)
	}
}

func mallory(raw string) string { return strings.Replace(raw, "U-alice", "U-mallo", 1) }

func testKeyedRelinkedTail(t *testing.T, open KeyedStorage) {
	s, tm := open(linkKey)
	defer s.Close()
	recs := seedLog(t, s, 5)
	relink(t, tm, recs, 3, mallory)
	// Even without the key, an unkeyed link after keyed ones is a break.
	_, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{})
	wantChainBreak(t, err, 4, "unkeyed entry follows keyed ones")
	_, err = audit.VerifyLog(t.Context(), s, audit.VerifyOptions{LinkKey: linkKey})
	wantChainBreak(t, err, 4, "unkeyed entry follows keyed ones")
}

func testKeyedWholeLogRelinked(t *testing.T, open KeyedStorage) {
	s, tm := open(linkKey)
	defer s.Close()
	recs := seedLog(t, s, 4)
	relink(t, tm, recs, 0, mallory)
	// Consistent on its own: only the key tells.
	if _, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{}); err != nil {
		t.Fatalf("a fully re-linked log verifies without the key (that is why the key matters): %v", err)
	}
	_, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{LinkKey: linkKey})
	wantKind(t, err, audit.KindNotKeyed, "unkeyed entry (seq 4)")
}

func testKeyedAfterLegacy(t *testing.T, open KeyedStorage) {
	s, _ := open(nil) // a log written before the key was configured
	legacy := seedLog(t, s, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, tm := open(linkKey)
	defer s.Close()
	mustCommit(t, s, store.Batch{Audit: []store.AuditEvent{event("test-event", "k-1"), event("test-event", "k-2")}})
	recs := readAudit(t, s, 0, 0)
	if store.IsKeyed(recs[2].Hash) || !store.IsKeyed(recs[3].Hash) || recs[3].PrevHash != legacy[2].Hash {
		t.Fatalf("legacy entries must keep their links and the first keyed one must follow them: %+v", recs)
	}
	rep, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{LinkKey: linkKey})
	if err != nil || rep.Unkeyed != 3 || rep.Keyed != 2 {
		t.Fatalf("VerifyLog of legacy + keyed entries: %+v, %v", rep, err)
	}
	// Rewriting a legacy entry (and re-linking the legacy part) breaks the first keyed link, which the
	// rewriter cannot recompute.
	relinkPrefix := recs[:3]
	prev := store.GenesisHash
	for _, r := range relinkPrefix {
		raw := []byte(mallory(string(r.Raw)))
		h := store.ChainHash(prev, r.Seq, raw)
		if err := tm.PutAuditEntry(t.Context(), store.AuditRecord{Seq: r.Seq, PrevHash: prev, Hash: h, Raw: raw}); err != nil {
			t.Fatal(err)
		}
		prev = h
	}
	_, err = audit.VerifyLog(t.Context(), s, audit.VerifyOptions{LinkKey: linkKey})
	wantChainBreak(t, err, 4, "prev_hash")
}

func testKeyedMonitor(t *testing.T, open KeyedStorage) {
	s, tm := open(linkKey)
	defer s.Close()
	m, err := audit.NewMonitor(audit.MonitorOptions{Store: s, LinkKey: linkKey, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	seedLog(t, s, 3)
	if _, ok, err := m.Checkpoint(t.Context()); !ok || err != nil {
		t.Fatalf("checkpoint of a keyed log: %v %v", ok, err)
	}
	mustCommit(t, s, store.Batch{Audit: []store.AuditEvent{event("test-event", "a"), event("test-event", "b")}})
	relink(t, tm, readAudit(t, s, 0, 0), 3, mallory)
	if err := m.Check(t.Context()); err != nil {
		t.Fatalf("the quick check sees nothing wrong below the new entries: %v", err)
	}
	if _, ok, err := m.Checkpoint(t.Context()); ok || !errors.Is(err, audit.ErrStoreDiverged) || !strings.Contains(err.Error(), "not keyed") {
		t.Fatalf("Checkpoint over a tail re-linked without the key = %v, %v; want refused", ok, err)
	}
}
