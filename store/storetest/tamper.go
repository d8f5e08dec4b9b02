package storetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/store"
)

// AuditTamperer edits a store's audit log behind its back, as someone with write access to the store would,
// or as a store that lost writes ends up (a Redis restarted without persistence, a restored backup). Each
// back end's tests implement it on their raw storage.
type AuditTamperer interface {
	// DeleteAuditEntry removes entry seq and leaves the head as it is.
	DeleteAuditEntry(ctx context.Context, seq uint64) error
	// SetAuditHead overwrites the head the store keeps beside the entries.
	SetAuditHead(ctx context.Context, h store.AuditHead) error
	// PutAuditEntry writes entry rec.Seq (its PrevHash, Hash and Raw) as stored, replacing any.
	PutAuditEntry(ctx context.Context, rec store.AuditRecord) error
}

// RunAuditTamper runs the tamper-evidence and lost-write tests. newStore returns a fresh, empty store and a
// tamperer on its storage.
func RunAuditTamper(t *testing.T, newStore func(t *testing.T) (store.Store, AuditTamperer)) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s store.Store, tm AuditTamperer)
	}{
		{"EmptyLogIsNotOK", testVerifyEmpty},
		{"CutOffTailIsTruncation", testVerifyTruncatedTail},
		{"HeadSetBackBehindEntries", testVerifyHeadBehind},
		{"LostWritesAgainstAnExpectedHead", testVerifyLostWritesExpected},
		{"MonitorSeesStoreGoBackwards", testMonitorRewound},
		{"MonitorSeesLostWritesOvertaken", testMonitorOvertaken},
		{"CheckpointFileSurvivesRestart", testMonitorCheckpointFile},
		{"MalformedCheckpointFile", testMonitorBadCheckpointFile},
		{"FollowerAdoptsTheAcceptance", testMonitorFollowerAccept},
		{"CheckpointNeverBlessesABrokenChain", testMonitorCheckpointBrokenChain},
		{"SignedCheckpointsProveTheLog", testSignedCheckpoints},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, tm := newStore(t)
			tc.fn(t, s, tm)
		})
	}
}

// seedLog appends n events in batches of up to 2 and returns the records.
func seedLog(t *testing.T, s store.Store, n int) []store.AuditRecord {
	t.Helper()
	for i := 0; i < n; i += 2 {
		var b store.Batch
		for j := i; j < min(i+2, n); j++ {
			b.Audit = append(b.Audit, store.AuditEvent{Type: store.EventApproved, At: at(time.Duration(j) * time.Second), Actor: "U-alice",
				RequestID: fmt.Sprintf("req-%d", j)})
		}
		mustCommit(t, s, b)
	}
	recs := readAudit(t, s, 0, 0)
	if len(recs) < n {
		t.Fatalf("seeded %d events, log has %d", n, len(recs))
	}
	return recs
}

// rollBack makes the store look as if every write after seq keep was lost: the entries are gone and the head
// is the one of entry keep, consistently.
func rollBack(t *testing.T, s store.Store, tm AuditTamperer, recs []store.AuditRecord, keep int) {
	t.Helper()
	for _, r := range recs[keep:] {
		if err := tm.DeleteAuditEntry(t.Context(), r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := tm.SetAuditHead(t.Context(), store.AuditHead{Seq: recs[keep-1].Seq, Hash: recs[keep-1].Hash}); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{}); err != nil {
		t.Fatalf("a consistently rolled-back log must verify on its own (only outside knowledge can tell): %v", err)
	}
}

func wantKind(t *testing.T, err error, kind string, contains ...string) {
	t.Helper()
	if !audit.IsKind(err, kind) {
		t.Fatalf("Verify err = %v, want a %s failure", err, kind)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Fatalf("Verify err = %q, want it to say %q", err, c)
		}
	}
}

func testVerifyEmpty(t *testing.T, s store.Store, _ AuditTamperer) {
	h, err := s.AuditHead(t.Context())
	if err != nil || h.Seq != 0 || h.Hash != store.GenesisHash {
		t.Fatalf("AuditHead of an empty store = %+v, %v; want {0, GenesisHash}", h, err)
	}
	_, err = audit.VerifyLog(t.Context(), s, audit.VerifyOptions{})
	wantKind(t, err, audit.KindEmpty, "empty")
}

func testVerifyTruncatedTail(t *testing.T, s store.Store, tm AuditTamperer) {
	recs := seedLog(t, s, 6)
	h, err := s.AuditHead(t.Context())
	if err != nil || h.Seq != 6 || h.Hash != recs[5].Hash {
		t.Fatalf("AuditHead = %+v, %v; want seq 6 and the last entry's hash", h, err)
	}
	if rep, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{}); err != nil || rep.Entries != 6 {
		t.Fatalf("intact log: %+v, %v", rep, err)
	}
	// Delete the last two entries and leave the head: every remaining link is intact.
	for _, seq := range []uint64{6, 5} {
		if err := tm.DeleteAuditEntry(t.Context(), seq); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{})
	wantKind(t, err, audit.KindTruncated, "ends at seq 4", "head is seq 6", "entries 5..6 were removed")
	if rep.Entries != 4 {
		t.Fatalf("report says %d good entries, want 4", rep.Entries)
	}
}

func testVerifyHeadBehind(t *testing.T, s store.Store, tm AuditTamperer) {
	recs := seedLog(t, s, 5)
	if err := tm.SetAuditHead(t.Context(), store.AuditHead{Seq: 3, Hash: recs[2].Hash}); err != nil {
		t.Fatal(err)
	}
	_, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{})
	wantKind(t, err, audit.KindHeadBehind, "head is seq 3", "continue to seq 5")

	// Same seq, another hash: the head names an entry that is not the last one.
	if err := tm.SetAuditHead(t.Context(), store.AuditHead{Seq: 5, Hash: recs[1].Hash}); err != nil {
		t.Fatal(err)
	}
	_, err = audit.VerifyLog(t.Context(), s, audit.VerifyOptions{})
	wantKind(t, err, audit.KindHeadMismatch, "seq 5")
}

func testVerifyLostWritesExpected(t *testing.T, s store.Store, tm AuditTamperer) {
	recs := seedLog(t, s, 6)
	rollBack(t, s, tm, recs, 4)
	_, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{Expect: &audit.Expectation{Seq: 6, Hash: recs[5].Hash}})
	wantKind(t, err, audit.KindExpectMissing, "only 4 entries", "5..6")
	// An expected head the log never had is not called a truncation.
	bogus := strings.Repeat("ab", 32)
	_, err = audit.VerifyLog(t.Context(), s, audit.VerifyOptions{Expect: &audit.Expectation{Seq: 2, Hash: bogus}})
	wantKind(t, err, audit.KindExpectMismatch, "entry 2 has hash", "rewritten")
	if strings.Contains(err.Error(), "removed") {
		t.Fatalf("a wrong expected head must not be reported as removed entries: %v", err)
	}
	_, err = audit.VerifyLog(t.Context(), s, audit.VerifyOptions{Expect: &audit.Expectation{Hash: bogus}})
	wantKind(t, err, audit.KindExpectMismatch, "no entry has")
	if _, err := audit.VerifyLog(t.Context(), s, audit.VerifyOptions{Expect: &audit.Expectation{Seq: 3, Hash: recs[2].Hash}}); err != nil {
		t.Fatalf("an older head the log still has: %v", err)
	}
}

type recordingObserver struct {
	verified, checkpointed uint64
	diverged               []bool
}

func (o *recordingObserver) AuditVerified(seq uint64)     { o.verified = seq }
func (o *recordingObserver) AuditDiverged(d bool)         { o.diverged = append(o.diverged, d) }
func (o *recordingObserver) AuditCheckpointed(seq uint64) { o.checkpointed = seq }
func (o *recordingObserver) AuditCheckRefused()           {}

func newMonitor(t *testing.T, s store.Store, file string, obs audit.MonitorObserver, posts *[]string) *audit.Monitor {
	t.Helper()
	m, err := audit.NewMonitor(audit.MonitorOptions{Store: s, CheckpointFile: file, Observer: obs, Logger: zerolog.Nop(),
		Post: func(text string) { *posts = append(*posts, text) }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// lastEvent returns the newest audit event in the store.
func lastEvent(t *testing.T, s store.Store) store.AuditEvent {
	t.Helper()
	recs := readAudit(t, s, 0, 0)
	if len(recs) == 0 {
		t.Fatal("empty log")
	}
	return recs[len(recs)-1].Event
}

func testMonitorRewound(t *testing.T, s store.Store, tm AuditTamperer) {
	obs := &recordingObserver{}
	var posts []string
	m := newMonitor(t, s, "", obs, &posts)
	recs := seedLog(t, s, 6)
	if err := m.Check(t.Context()); err != nil {
		t.Fatalf("Check of a growing log: %v", err)
	}
	rollBack(t, s, tm, recs, 4) // the store lost seq 5 and 6
	err := m.Check(t.Context())
	if !errors.Is(err, audit.ErrStoreDiverged) || !strings.Contains(err.Error(), "seq 4, behind seq 6") {
		t.Fatalf("Check after lost writes = %v, want ErrStoreDiverged naming seq 4 behind 6", err)
	}
	if ev := lastEvent(t, s); ev.Type != audit.EventStoreDiverged || ev.Details["seen_seq"] != "6" || ev.Details["store_seq"] != "4" {
		t.Fatalf("alert event = %+v, want %s with seen_seq 6, store_seq 4", ev, audit.EventStoreDiverged)
	}
	if len(obs.diverged) != 1 || !obs.diverged[0] || len(posts) != 1 || !strings.Contains(posts[0], "paused") {
		t.Fatalf("observer %v, posts %q: want one divergence and one Slack alert", obs.diverged, posts)
	}
	// It stays diverged (and alerts once) while the store does not extend what was seen.
	if err := m.Check(t.Context()); !errors.Is(err, audit.ErrStoreDiverged) {
		t.Fatalf("second Check = %v, want still diverged", err)
	}
	if len(obs.diverged) != 1 || len(posts) != 1 {
		t.Fatalf("alerted again: observer %v, posts %q", obs.diverged, posts)
	}
	if _, ok, err := m.Checkpoint(t.Context()); ok || !errors.Is(err, audit.ErrStoreDiverged) {
		t.Fatalf("Checkpoint of a diverged store = %v, %v; want refused", ok, err)
	}
}

func testMonitorOvertaken(t *testing.T, s store.Store, tm AuditTamperer) {
	var posts []string
	m := newMonitor(t, s, "", nil, &posts)
	recs := seedLog(t, s, 6)
	if err := m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	rollBack(t, s, tm, recs, 4)
	// New writes land before the next check and carry the sequence past what was seen: the count alone looks
	// fine, the chain does not.
	for i := range 3 {
		mustCommit(t, s, store.Batch{Audit: []store.AuditEvent{event("test-event", fmt.Sprintf("new-%d", i))}})
	}
	if h, _ := s.AuditHead(t.Context()); h.Seq != 7 {
		t.Fatalf("head after new writes = %d, want 7", h.Seq)
	}
	if err := m.Check(t.Context()); !errors.Is(err, audit.ErrStoreDiverged) || !strings.Contains(err.Error(), "entry 6 has hash") {
		t.Fatalf("Check = %v, want ErrStoreDiverged: entry 6 is not the one seen", err)
	}
}

func testMonitorCheckpointFile(t *testing.T, s store.Store, tm AuditTamperer) {
	file := filepath.Join(t.TempDir(), "checkpoints")
	var posts []string
	obs := &recordingObserver{}
	m := newMonitor(t, s, file, obs, &posts)
	recs := seedLog(t, s, 6)
	c, ok, err := m.Checkpoint(t.Context())
	if err != nil || !ok || c.Seq != 6 || c.Hash != recs[5].Hash || obs.checkpointed != 6 {
		t.Fatalf("Checkpoint = %+v, %v, %v", c, ok, err)
	}
	if _, ok, err := m.Checkpoint(t.Context()); ok || err != nil {
		t.Fatalf("a second checkpoint of an unchanged head = %v, %v; want none", ok, err)
	}
	if len(posts) != 0 {
		t.Fatalf("an unsigned checkpoint was posted to Slack: %q", posts)
	}

	// The process restarts and the store comes back without its last writes: only the file remembers.
	rollBack(t, s, tm, recs, 3)
	restarted := newMonitor(t, s, file, nil, &posts)
	err = restarted.Check(t.Context())
	if !errors.Is(err, audit.ErrStoreDiverged) || !strings.Contains(err.Error(), "checkpoint of") {
		t.Fatalf("Check after a restart on a rolled-back store = %v, want ErrStoreDiverged naming the checkpoint", err)
	}
	// The operator accepts the store as it is now: a checkpoint with accept=1 after the alert.
	h, err := s.AuditHead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.AppendCheckpoint(file, (*audit.Signer)(nil).Checkpoint(h.Seq, h.Hash, time.Now().Add(time.Second), true)); err != nil {
		t.Fatal(err)
	}
	if err := restarted.Check(t.Context()); err != nil {
		t.Fatalf("Check after the operator accepted the store: %v", err)
	}
	mustCommit(t, s, store.Batch{Audit: []store.AuditEvent{event("test-event", "after-accept")}})
	if err := restarted.Check(t.Context()); err != nil {
		t.Fatalf("Check of new writes after the acceptance: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
}

func testMonitorCheckpointBrokenChain(t *testing.T, s store.Store, tm AuditTamperer) {
	var posts []string
	m := newMonitor(t, s, "", nil, &posts)
	seedLog(t, s, 4)
	if err := m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, store.Batch{Audit: []store.AuditEvent{event("test-event", "a"), event("test-event", "b")}})
	if err := tm.DeleteAuditEntry(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	// The quick check before a sweep only sees that the store did not go backwards ...
	if err := m.Check(t.Context()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	// ... the checkpoint verifies every new entry and refuses to sign a broken chain.
	if _, ok, err := m.Checkpoint(t.Context()); ok || !errors.Is(err, audit.ErrStoreDiverged) || !strings.Contains(err.Error(), "seq 5") {
		t.Fatalf("Checkpoint over a missing entry = %v, %v; want refused, naming seq 5", ok, err)
	}
}

func testSignedCheckpoints(t *testing.T, s store.Store, tm AuditTamperer) {
	priv, _, err := audit.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.ParseSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "checkpoints")
	var posts []string
	m, err := audit.NewMonitor(audit.MonitorOptions{Store: s, Signer: signer, CheckpointFile: file, Logger: zerolog.Nop(),
		Post: func(text string) { posts = append(posts, text) }})
	if err != nil {
		t.Fatal(err)
	}
	recs := seedLog(t, s, 5)
	c, ok, err := m.Checkpoint(t.Context())
	if err != nil || !ok || !c.Signed() {
		t.Fatalf("Checkpoint = %+v, %v, %v", c, ok, err)
	}
	if len(posts) != 1 || !strings.Contains(posts[0], c.String()) {
		t.Fatalf("posted %q, want the checkpoint line", posts)
	}
	fromSlack, err := audit.ParseCheckpoint(posts[0])
	if err != nil {
		t.Fatal(err)
	}
	cs, err := audit.ReadCheckpointFile(file)
	if err != nil || len(cs) != 1 {
		t.Fatalf("checkpoint file: %v, %v", cs, err)
	}
	keys := []audit.PublicKey{signer.Public()}
	o := audit.VerifyOptions{Checkpoints: []audit.Checkpoint{cs[0], fromSlack}, Keys: keys}
	if rep, err := audit.VerifyLog(t.Context(), s, o); err != nil || rep.Checkpoints != 2 || rep.LatestCheckpoint.Seq != 5 {
		t.Fatalf("VerifyLog against its own checkpoints: %+v, %v", rep, err)
	}
	// The store loses its last two writes (or someone cuts them and sets the head back): the log is
	// consistent on its own, the signed checkpoint is not satisfied.
	rollBack(t, s, tm, recs, 3)
	_, err = audit.VerifyLog(t.Context(), s, o)
	wantKind(t, err, audit.KindCheckpoint, "published seq 5", "only 3 entries")

	// Whoever did it also appends an unsigned "acceptance" of the shorter log to the checkpoint file: a
	// jitbot that signs checkpoints ignores it and still sees the store behind the signed checkpoint.
	if err := audit.AppendCheckpoint(file, (*audit.Signer)(nil).Checkpoint(3, recs[2].Hash, time.Now().Add(time.Hour), true)); err != nil {
		t.Fatal(err)
	}
	restarted, err := audit.NewMonitor(audit.MonitorOptions{Store: s, Signer: signer, CheckpointFile: file, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.Check(t.Context()); !errors.Is(err, audit.ErrStoreDiverged) || !strings.Contains(err.Error(), "behind seq 5") {
		t.Fatalf("Check with a forged unsigned acceptance in the file = %v, want ErrStoreDiverged behind seq 5", err)
	}
}

// testMonitorBadCheckpointFile: a checkpoint file that cannot be parsed does not stop the monitor (nor the
// sweeper behind it); the checkpoints before the bad line still count.
func testMonitorBadCheckpointFile(t *testing.T, s store.Store, tm AuditTamperer) {
	file := filepath.Join(t.TempDir(), "checkpoints")
	recs := seedLog(t, s, 4)
	if err := audit.AppendCheckpoint(file, (*audit.Signer)(nil).Checkpoint(4, recs[3].Hash, time.Now(), false)); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(audit.CheckpointPrefix + " seq=garbage\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var posts []string
	m := newMonitor(t, s, file, nil, &posts)
	if err := m.Check(t.Context()); err != nil {
		t.Fatalf("Check with a malformed line after a good checkpoint: %v", err)
	}
	rollBack(t, s, tm, recs, 2)
	m = newMonitor(t, s, file, nil, &posts)
	if err := m.Check(t.Context()); !errors.Is(err, audit.ErrStoreDiverged) {
		t.Fatalf("the good checkpoint before the malformed line must still count: %v", err)
	}
	if err := os.WriteFile(file, []byte(audit.CheckpointPrefix+" nonsense\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m = newMonitor(t, s, file, nil, &posts)
	if err := m.Check(t.Context()); err != nil {
		t.Fatalf("a wholly malformed checkpoint file must not stop the sweeper: %v", err)
	}
}

// testMonitorFollowerAccept: a replica that follows the head (not leading) sees the store go backwards, does
// not move its head seen, and adopts the operator's acceptance from the shared checkpoint file, so it does
// not pause again when it leads later. An acceptance from before the mismatch is not adopted.
func testMonitorFollowerAccept(t *testing.T, s store.Store, tm AuditTamperer) {
	file := filepath.Join(t.TempDir(), "checkpoints")
	var posts []string
	leader := newMonitor(t, s, file, nil, &posts)
	follower := newMonitor(t, s, file, nil, &posts)
	recs := seedLog(t, s, 6)
	// An acceptance from an older incident is in the file already.
	if err := audit.AppendCheckpoint(file, (*audit.Signer)(nil).Checkpoint(2, recs[1].Hash, time.Now().Add(-time.Hour), true)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := leader.Checkpoint(t.Context()); !ok || err != nil {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	if why, err := follower.Observe(t.Context()); why != "" || err != nil || follower.Seen().Seq != 6 {
		t.Fatalf("Observe = %q, %v; seen %d", why, err, follower.Seen().Seq)
	}
	rollBack(t, s, tm, recs, 4)
	why, err := follower.Observe(t.Context())
	if err != nil || !strings.Contains(why, "behind seq 6") || follower.Seen().Seq != 6 {
		t.Fatalf("Observe after lost writes = %q, %v (seen %d); want the mismatch reported and the head seen kept", why, err, follower.Seen().Seq)
	}
	if err := leader.Check(t.Context()); !errors.Is(err, audit.ErrStoreDiverged) {
		t.Fatalf("leader Check: %v", err)
	}
	h, err := s.AuditHead(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.AppendCheckpoint(file, (*audit.Signer)(nil).Checkpoint(h.Seq, h.Hash, time.Now().Add(time.Second), true)); err != nil {
		t.Fatal(err)
	}
	if err := leader.Check(t.Context()); err != nil {
		t.Fatalf("leader Check after the acceptance: %v", err)
	}
	if why, err := follower.Observe(t.Context()); why != "" || err != nil || follower.Seen() != h {
		t.Fatalf("follower Observe after the acceptance = %q, %v (seen %+v, want %+v)", why, err, follower.Seen(), h)
	}
	// It leads now: no pause.
	if err := follower.Check(t.Context()); err != nil {
		t.Fatalf("the former follower's Check: %v", err)
	}
}
