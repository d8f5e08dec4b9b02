package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/store"
)

// ErrStoreDiverged: the store's audit log no longer extends the last head seen outside it (this process's
// memory, or the last checkpoint in the checkpoint file). The store went backwards (a Redis restarted without
// persistence, a failover that lost writes, a restored backup) or its log was rewritten. Its grants may be
// missing or stale, so the sweeper must not act on them blindly.
var ErrStoreDiverged = errors.New("audit: the store went backwards or its audit log was rewritten")

// EventStoreDiverged is the alert event the monitor appends when it finds the store diverged.
const EventStoreDiverged = "audit-store-diverged"

// MonitorStore is what the monitor reads, and writes its alert event to.
type MonitorStore interface {
	Reader
	Commit(ctx context.Context, b store.Batch) error
}

// MonitorObserver receives the monitor's state for metrics. Every method must be cheap.
type MonitorObserver interface {
	AuditVerified(seq uint64)
	AuditDiverged(diverged bool)
	AuditCheckpointed(seq uint64)
	// AuditCheckRefused counts Checks that found the store diverged (each is a sweep not run).
	AuditCheckRefused()
}

// MonitorOptions configure a Monitor. Store is required; everything else is optional.
type MonitorOptions struct {
	Store MonitorStore
	// Signer signs checkpoints; nil writes unsigned ones (they still catch a store that lost writes).
	Signer *Signer
	// LinkKey recomputes keyed audit links when new entries are verified (JITBOT_AUDIT_LINK_KEY).
	LinkKey []byte
	// CheckpointFile is where checkpoints are appended (JITBOT_AUDIT_CHECKPOINT_FILE), and where the last head
	// published before a restart is read from. Empty: no file; the last head lives only in this process.
	CheckpointFile string
	// Post publishes a line to the Slack audit channel (a checkpoint, an alert); nil: not posted.
	Post func(text string)
	// Publisher receives the alert event after it is committed (logs, metrics, Slack).
	Publisher Subscriber
	Observer  MonitorObserver
	Now       func() time.Time
	Logger    zerolog.Logger
	// RemindEvery repeats the divergence error in the log while it lasts. Default 5m.
	RemindEvery time.Duration
	// FollowEvery is how often Follow reads the head on a replica that does not lead. Default 1s.
	FollowEvery time.Duration
}

// Monitor watches the audit log for a store that went backwards and writes the periodic checkpoints. Check
// is cheap (two reads) and runs before every sweep: the head must not be behind the last head seen, and the
// entry at that seq must still have the hash seen. Checkpoint runs on the checkpoint interval: it verifies
// every entry appended since the last verified head, then signs the head and publishes it. Methods are safe
// for concurrent use; the sweeper leader calls them.
type Monitor struct {
	o MonitorOptions

	mu          sync.Mutex
	started     bool
	trusted     store.AuditHead // every entry up to it was verified (or it is a checkpoint from the file)
	seen        store.AuditHead // the highest head seen; trusted.Seq <= seen.Seq
	seenKnown   bool
	source      string // where seen came from, for messages
	published   uint64 // seq of the last checkpoint written
	diverged    error  // non-nil while the store does not extend seen
	divergedAt  time.Time
	suspectAt   time.Time // when Observe first found the store not extending the head seen
	lastWarning time.Time
	// lastReadError rate-limits the log line for a store that cannot be read.
	lastReadError time.Time
}

// NewMonitor returns a Monitor; it reads nothing until the first Check.
func NewMonitor(o MonitorOptions) (*Monitor, error) {
	if o.Store == nil {
		return nil, errors.New("audit: monitor needs a Store")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RemindEvery <= 0 {
		o.RemindEvery = 5 * time.Minute
	}
	if o.FollowEvery <= 0 {
		o.FollowEvery = time.Second
	}
	return &Monitor{o: o}, nil
}

// Seen returns the highest audit head this monitor has seen the store extend to.
func (m *Monitor) Seen() store.AuditHead {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seen
}

// Follow keeps the head seen up to date while this replica does not lead (leading reports whether it does;
// the leader checks before every sweep), until ctx ends. So a replica that takes over the sweeper after a
// failover knows the head the store had, and notices a store that lost writes in the same failover. It only
// observes: the alert is raised by the first Check of the replica that leads.
func (m *Monitor) Follow(ctx context.Context, leading func() bool) {
	t := time.NewTicker(m.o.FollowEvery)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if leading() {
			continue
		}
		why, err := m.Observe(ctx)
		if err == nil && why != "" && !warned {
			warned = true
			m.o.Logger.Warn().Str("reason", why).Msg("audit: the store does not extend the audit head this replica saw; the sweeper leader pauses on its next check")
		}
	}
}

// Observe is one step of Follow: it reads the head and, when the store extends the head seen, records it.
// When it does not, it returns why and leaves the head seen as it was (so the leader's Check finds the same
// and alerts), unless the checkpoint file holds an acceptance written since this replica first saw the
// mismatch (a shared checkpoint file), which it then adopts like the leader.
func (m *Monitor) Observe(ctx context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.diverged != nil {
		return "", nil
	}
	if !m.started {
		if err := m.loadCheckpoint(time.Time{}); err != nil {
			return "", err
		}
		m.started = true
	}
	head, err := m.o.Store.AuditHead(ctx)
	if err != nil {
		return "", err
	}
	why, err := m.follows(ctx, head)
	if err == nil && why != "" {
		if m.suspectAt.IsZero() {
			m.suspectAt = m.o.Now()
		}
		if lerr := m.loadCheckpoint(m.suspectAt); lerr == nil {
			why, err = m.follows(ctx, head)
		}
	}
	if err != nil || why != "" {
		return why, err
	}
	m.seen, m.seenKnown, m.source, m.suspectAt = head, true, "this process", time.Time{}
	return "", nil
}

// Diverged returns the divergence error while the store does not extend the last head seen, else nil.
func (m *Monitor) Diverged() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.diverged
}

// Check returns nil when the store extends the last head seen outside it, an error wrapping
// ErrStoreDiverged when it does not (it stays so until the checkpoint file shows that an operator accepted the
// store's state, see `jitbot audit accept`), or another error when the store could not be read.
func (m *Monitor) Check(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.check(ctx, false)
	if errors.Is(err, ErrStoreDiverged) && m.o.Observer != nil {
		m.o.Observer.AuditCheckRefused()
	}
	if err != nil && !errors.Is(err, ErrStoreDiverged) && ctx.Err() == nil {
		// The store could not be read: the sweep is skipped too. Say so, at most every RemindEvery.
		if now := m.o.Now(); now.Sub(m.lastReadError) >= m.o.RemindEvery {
			m.lastReadError = now
			m.o.Logger.Error().Err(err).Msg("audit: cannot check the store's audit head; sweeps are skipped until it answers")
		}
	}
	return err
}

func (m *Monitor) check(ctx context.Context, full bool) (store.AuditHead, error) {
	if !m.started || m.diverged != nil {
		// At start, and while diverged (an operator may have accepted the store since), read the checkpoint file.
		if err := m.loadCheckpoint(m.divergedAt); err != nil {
			return store.AuditHead{}, err
		}
		m.started = true
	}
	head, err := m.o.Store.AuditHead(ctx)
	if err != nil {
		return head, fmt.Errorf("audit: monitor: %w", err)
	}
	why, err := m.follows(ctx, head)
	if err == nil && why == "" && full {
		why, err = m.chains(ctx, head)
	}
	if err != nil {
		return head, err
	}
	if why != "" {
		return head, m.divergedNow(ctx, head, why)
	}
	if m.diverged != nil {
		m.o.Logger.Warn().Uint64("seq", head.Seq).Msg("audit: the store extends the accepted checkpoint; sweeping resumes")
		m.diverged = nil
		m.observeDiverged(false)
	}
	m.seen, m.seenKnown, m.source = head, true, "this process"
	if full {
		m.trusted = head
		if m.o.Observer != nil {
			m.o.Observer.AuditVerified(head.Seq)
		}
	}
	return head, nil
}

// loadCheckpoint reads the checkpoint file. At start, its last checkpoint is the head seen (and trusted).
// Later, a checkpoint an operator wrote after acceptAfter (the divergence) with `jitbot audit accept`
// replaces them.
func (m *Monitor) loadCheckpoint(acceptAfter time.Time) error {
	if !m.started {
		m.trusted = store.AuditHead{Hash: store.GenesisHash}
	}
	if m.o.CheckpointFile == "" {
		return nil
	}
	cs, err := ReadCheckpointFile(m.o.CheckpointFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil && !m.started {
		// Unreadable or malformed: as good as no file (which anyone who can corrupt it could also arrange),
		// so say it loudly and go on with the checkpoints read before the bad line, if any.
		m.o.Logger.Error().Err(err).Int("usable_checkpoints", len(cs)).
			Msg("audit: the checkpoint file cannot be read in full; a store that lost writes before this start may go unnoticed")
	}
	ignored := 0
	defer func() {
		if ignored > 0 && !m.started {
			m.o.Logger.Warn().Int("ignored", ignored).Str("file", m.o.CheckpointFile).
				Msg("audit: ignoring checkpoints that are unsigned or do not verify with JITBOT_AUDIT_SIGNING_KEY")
		}
	}()
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		if m.o.Signer != nil {
			// With a key, only signed checkpoints count: anyone who can write the file can add unsigned lines.
			if verr := c.Verify([]PublicKey{m.o.Signer.Public()}); verr != nil || !c.Signed() {
				ignored++
				continue
			}
		}
		if m.started && !(c.Accept && c.At.After(acceptAfter)) {
			return nil
		}
		h := store.AuditHead{Seq: c.Seq, Hash: c.Hash}
		m.trusted, m.seen, m.seenKnown = h, h, true
		m.source = "the checkpoint of " + c.At.Format(timeFormat) + " in " + m.o.CheckpointFile
		m.published = c.Seq
		return nil
	}
	return nil
}

// follows reports why head does not follow the head seen ("" when it does): it must not be behind, and the
// entry at the seen seq must still be the one seen.
func (m *Monitor) follows(ctx context.Context, head store.AuditHead) (string, error) {
	if !m.seenKnown {
		return "", nil
	}
	t := m.seen
	switch {
	case head.Seq < t.Seq:
		return fmt.Sprintf("the store's audit head is seq %d, behind seq %d seen by %s: %d entries are gone",
			head.Seq, t.Seq, m.source, t.Seq-head.Seq), nil
	case head.Seq == t.Seq:
		if head.Hash != t.Hash {
			return fmt.Sprintf("the store's audit head is seq %d with hash %s, but %s saw hash %s at that seq",
				head.Seq, short(head.Hash), m.source, short(t.Hash)), nil
		}
		return "", nil
	case t.Seq == 0:
		return "", nil
	}
	recs, err := m.o.Store.ReadAudit(ctx, t.Seq-1, 1)
	if err != nil {
		return "", fmt.Errorf("audit: monitor: read entry %d: %w", t.Seq, err)
	}
	if len(recs) == 0 || recs[0].Seq != t.Seq {
		return fmt.Sprintf("entry %d, seen by %s, is gone from the store", t.Seq, m.source), nil
	}
	if recs[0].Hash != t.Hash {
		return fmt.Sprintf("entry %d has hash %s, but %s saw hash %s: the store lost writes and new ones took their place, or the log was rewritten",
			t.Seq, short(recs[0].Hash), m.source, short(t.Hash)), nil
	}
	return "", nil
}

// chains reports why the entries after the trusted head up to head do not form an unbroken chain ending at
// head ("" when they do).
func (m *Monitor) chains(ctx context.Context, head store.AuditHead) (string, error) {
	v := store.ChainVerifier{Seq: m.trusted.Seq, Hash: m.trusted.Hash, Key: m.o.LinkKey}
	const page = 1000
	for v.Seq < head.Seq {
		recs, err := m.o.Store.ReadAudit(ctx, v.Seq, int(min(page, head.Seq-v.Seq)))
		if err != nil {
			return "", fmt.Errorf("audit: monitor: read after %d: %w", v.Seq, err)
		}
		if len(recs) == 0 {
			return fmt.Sprintf("the store's audit head is seq %d but the log ends at seq %d", head.Seq, v.Seq), nil
		}
		if err := v.Verify(recs); err != nil {
			return err.Error(), nil
		}
	}
	if v.Hash != head.Hash {
		return fmt.Sprintf("the last entry (seq %d) has hash %s but the store's head records %s", v.Seq, short(v.Hash), short(head.Hash)), nil
	}
	if len(m.o.LinkKey) > 0 && head.Seq > m.trusted.Seq && !store.IsKeyed(head.Hash) {
		return fmt.Sprintf("the new entries up to seq %d are not keyed although this jitbot writes keyed links: they were re-linked without the key, "+
			"or another replica runs without JITBOT_AUDIT_LINK_KEY", head.Seq), nil
	}
	return "", nil
}

func (m *Monitor) observeDiverged(d bool) {
	if m.o.Observer != nil {
		m.o.Observer.AuditDiverged(d)
	}
}

// divergedNow records the divergence; the first time it alerts (log, metric, audit event, Slack).
func (m *Monitor) divergedNow(ctx context.Context, head store.AuditHead, why string) error {
	err := fmt.Errorf("%w: %s", ErrStoreDiverged, why)
	now := m.o.Now()
	if m.diverged != nil {
		m.diverged = err
		if now.Sub(m.lastWarning) >= m.o.RemindEvery {
			m.lastWarning = now
			m.o.Logger.Error().Err(err).Msg("audit: the store still does not extend the trusted audit head; the sweeper stays paused (see docs/audit.md: jitbot audit accept)")
		}
		return err
	}
	m.diverged, m.lastWarning, m.divergedAt = err, now, now
	m.observeDiverged(true)
	m.o.Logger.Error().Err(err).Uint64("store_seq", head.Seq).Uint64("seen_seq", m.seen.Seq).
		Msg("audit: the store went backwards or its audit log was rewritten; the sweeper is paused until an operator checks it (see docs/audit.md: jitbot audit accept)")
	ev := store.AuditEvent{Type: EventStoreDiverged, At: now, Actor: "system:audit", Details: map[string]string{
		"reason": why, "store_seq": strconv.FormatUint(head.Seq, 10), "store_head": head.Hash,
		"seen_seq": strconv.FormatUint(m.seen.Seq, 10), "seen_head": m.seen.Hash,
	}}
	if cerr := m.o.Store.Commit(ctx, store.Batch{Audit: []store.AuditEvent{ev}}); cerr != nil {
		m.o.Logger.Error().Err(cerr).Msg("audit: could not record the divergence alert in the store")
	} else if m.o.Publisher != nil {
		m.o.Publisher.Publish(ctx, ev)
	}
	if m.o.Post != nil {
		m.o.Post(":rotating_light: jitbot paused its sweeper: " + why + ". Check the store, then run `jitbot audit accept` (see docs/audit.md).")
	}
	return err
}

// Checkpoint checks the log and, when its head moved since the last checkpoint, writes a new checkpoint to
// the checkpoint file and posts it to the audit channel. A diverged store is never checkpointed: that would
// bless the rewritten history.
func (m *Monitor) Checkpoint(ctx context.Context) (Checkpoint, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.check(ctx, true); err != nil {
		return Checkpoint{}, false, err
	}
	if m.trusted.Seq == 0 || m.trusted.Seq <= m.published {
		return Checkpoint{}, false, nil
	}
	c := m.o.Signer.Checkpoint(m.trusted.Seq, m.trusted.Hash, m.o.Now(), false)
	if m.o.CheckpointFile != "" {
		if err := AppendCheckpoint(m.o.CheckpointFile, c); err != nil {
			return c, false, err
		}
	}
	m.published = c.Seq
	if m.o.Post != nil && c.Signed() {
		m.o.Post("`" + c.String() + "`")
	}
	if m.o.Observer != nil {
		m.o.Observer.AuditCheckpointed(c.Seq)
	}
	m.o.Logger.Info().Uint64("seq", c.Seq).Str("hash", c.Hash).Bool("signed", c.Signed()).Msg("audit checkpoint")
	return c, true, nil
}
