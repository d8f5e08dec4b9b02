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
}

// MonitorOptions configure a Monitor. Store is required; everything else is optional.
type MonitorOptions struct {
	Store MonitorStore
	// Signer signs checkpoints; nil writes unsigned ones (they still catch a store that lost writes).
	Signer *Signer
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
}

// Monitor follows the audit log as it grows and checks each new entry against the last head it trusts, so a
// store that went backwards is noticed before the sweeper acts on it. It also writes the periodic
// checkpoints. Its methods are safe for concurrent use; the leader calls them.
type Monitor struct {
	o MonitorOptions

	mu          sync.Mutex
	started     bool
	trusted     store.AuditHead // verified: the log had this head, and every entry up to it chains
	source      string          // where trusted came from, for messages
	published   uint64          // seq of the last checkpoint written
	diverged    error           // non-nil while the store does not extend trusted
	divergedAt  time.Time
	lastWarning time.Time
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
	return &Monitor{o: o}, nil
}

// Diverged returns the divergence error while the store does not extend the trusted head, else nil.
func (m *Monitor) Diverged() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.diverged
}

// Trusted returns the last verified head.
func (m *Monitor) Trusted() store.AuditHead {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.trusted
}

// Check verifies the entries appended since the last check and returns nil when the store extends the
// trusted head, an error wrapping ErrStoreDiverged when it does not (it stays so until the checkpoint file
// shows an operator accepted the store's state, see `jitbot audit accept`), or another error when the store
// could not be read.
func (m *Monitor) Check(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.check(ctx)
}

func (m *Monitor) check(ctx context.Context) error {
	if !m.started || m.diverged != nil {
		// At start, and while diverged (an operator may have accepted the store since), the trusted head is the
		// last checkpoint in the file when there is one.
		if err := m.loadTrusted(); err != nil {
			return err
		}
		m.started = true
	}
	head, err := m.o.Store.AuditHead(ctx)
	if err != nil {
		return fmt.Errorf("audit: monitor: %w", err)
	}
	why, err := m.extends(ctx, head)
	if err != nil {
		return err
	}
	if why != "" {
		return m.divergedNow(ctx, head, why)
	}
	if m.diverged != nil {
		m.o.Logger.Warn().Uint64("seq", head.Seq).Msg("audit log matches the accepted checkpoint again; sweeping resumes")
		m.diverged = nil
		m.observeDiverged(false)
	}
	m.trusted = head
	if m.o.Observer != nil {
		m.o.Observer.AuditVerified(head.Seq)
	}
	return nil
}

// loadTrusted reads the checkpoint file. At start, its last checkpoint becomes the trusted head (none: the
// genesis, so the whole log is verified once). While diverged, a checkpoint an operator wrote after the
// divergence with `jitbot audit accept` replaces the trusted head.
func (m *Monitor) loadTrusted() error {
	if !m.started {
		m.trusted, m.source = store.AuditHead{Hash: store.GenesisHash}, "the start of the log"
	}
	if m.o.CheckpointFile == "" {
		return nil
	}
	cs, err := ReadCheckpointFile(m.o.CheckpointFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil && len(cs) == 0 {
		return err
	}
	if err != nil {
		m.o.Logger.Error().Err(err).Msg("checkpoint file has a malformed line; using the checkpoints before it")
	}
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		if m.o.Signer != nil {
			// With a key, only signed checkpoints count: anyone who can write the file can add unsigned lines.
			if verr := c.Verify([]PublicKey{m.o.Signer.Public()}); verr != nil || !c.Signed() {
				m.o.Logger.Error().Uint64("seq", c.Seq).AnErr("reason", verr).Msg("ignoring a checkpoint that is unsigned or does not verify with the signing key")
				continue
			}
		}
		switch {
		case !m.started:
		case c.Accept && c.At.After(m.divergedAt):
		default:
			return nil
		}
		m.trusted = store.AuditHead{Seq: c.Seq, Hash: c.Hash}
		m.source = "the checkpoint of " + c.At.Format(timeFormat) + " in " + m.o.CheckpointFile
		m.published = c.Seq
		return nil
	}
	return nil
}

// extends reports why the log with head does not extend the trusted head ("" when it does), reading and
// verifying every entry after the trusted head.
func (m *Monitor) extends(ctx context.Context, head store.AuditHead) (string, error) {
	t := m.trusted
	switch {
	case head.Seq < t.Seq:
		return fmt.Sprintf("the store's audit head is seq %d, behind seq %d recorded by %s: %d entries are gone",
			head.Seq, t.Seq, m.source, t.Seq-head.Seq), nil
	case head.Seq == t.Seq:
		if head.Hash != t.Hash {
			return fmt.Sprintf("the store's audit head is seq %d with hash %s, but %s recorded hash %s at that seq",
				head.Seq, short(head.Hash), m.source, short(t.Hash)), nil
		}
		return "", nil
	}
	seq, hash := t.Seq, t.Hash
	const page = 1000
	for seq < head.Seq {
		recs, err := m.o.Store.ReadAudit(ctx, seq, int(min(page, head.Seq-seq)))
		if err != nil {
			return "", fmt.Errorf("audit: monitor: read after %d: %w", seq, err)
		}
		if len(recs) == 0 {
			return fmt.Sprintf("the store's audit head is seq %d but the log ends at seq %d", head.Seq, seq), nil
		}
		next, nextHash, err := store.VerifyChain(recs, seq, hash)
		if err != nil {
			var ce *store.ChainError
			if errors.As(err, &ce) && ce.Seq == t.Seq+1 && seq == t.Seq {
				return fmt.Sprintf("entry %d no longer follows the head seq %d recorded by %s (%s): the log was rewritten or replaced",
					ce.Seq, t.Seq, m.source, ce.Reason), nil
			}
			return err.Error(), nil
		}
		seq, hash = next, nextHash
	}
	if hash != head.Hash {
		return fmt.Sprintf("the last entry (seq %d) has hash %s but the store's head records %s", seq, short(hash), short(head.Hash)), nil
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
	m.o.Logger.Error().Err(err).Uint64("store_seq", head.Seq).Uint64("trusted_seq", m.trusted.Seq).
		Msg("audit: the store went backwards or its audit log was rewritten; the sweeper is paused until an operator checks it (see docs/audit.md: jitbot audit accept)")
	ev := store.AuditEvent{Type: EventStoreDiverged, At: now, Actor: "system:audit", Details: map[string]string{
		"reason": why, "store_seq": strconv.FormatUint(head.Seq, 10), "store_head": head.Hash,
		"trusted_seq": strconv.FormatUint(m.trusted.Seq, 10), "trusted_head": m.trusted.Hash,
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
	if err := m.check(ctx); err != nil {
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
