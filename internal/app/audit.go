package app

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/bot"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/telemetry"
)

// AuditOptions configure the audit monitor and its checkpoints (docs/audit.md). The zero value still
// watches for a store that goes backwards, with the last head seen kept in memory only.
type AuditOptions struct {
	// Signer signs checkpoints (JITBOT_AUDIT_SIGNING_KEY); nil writes unsigned ones.
	Signer *audit.Signer
	// LinkKey recomputes keyed links when the monitor verifies new entries (JITBOT_AUDIT_LINK_KEY; the
	// store itself is opened with the same key to write them).
	LinkKey []byte
	// CheckpointFile receives a checkpoint line per interval when the head moved, and tells a restarted
	// process the last head published (JITBOT_AUDIT_CHECKPOINT_FILE).
	CheckpointFile string
	// CheckpointInterval is how often the log is verified and checkpointed. Default 10m.
	CheckpointInterval time.Duration
}

// newAuditMonitor builds the monitor that gates the sweeper; signed checkpoints and its alert go to the
// default audit channel when Slack is configured.
func newAuditMonitor(d Deps, bus audit.Subscriber, notes *bot.Notifier) (*audit.Monitor, error) {
	o := audit.MonitorOptions{
		Store: d.Store, Signer: d.Audit.Signer, LinkKey: d.Audit.LinkKey, CheckpointFile: d.Audit.CheckpointFile, Publisher: bus,
		Observer: telemetry.NewAuditMetrics(d.Registry), Now: d.Now, FollowEvery: d.Tuning.SweepInterval,
		Logger: d.Logger.With().Str("component", "audit").Logger(),
	}
	if notes != nil {
		o.Post = func(text string) { notes.PostToAuditChannel(text) }
	}
	return audit.NewMonitor(o)
}

// auditCheckpointJob verifies the new entries and writes a checkpoint on the checkpoint interval (leader only).
func auditCheckpointJob(m *audit.Monitor, o AuditOptions) grants.PeriodicJob {
	every := o.CheckpointInterval
	if every <= 0 {
		every = 10 * time.Minute
	}
	return grants.PeriodicJob{Name: "audit checkpoint", Every: every, Run: func(ctx context.Context) error {
		_, _, err := m.Checkpoint(ctx)
		if err != nil {
			zerolog.Ctx(ctx).Debug().Err(err).Msg("audit checkpoint not written")
		}
		return err
	}}
}

// finalCheckpoint writes a checkpoint as the process stops, so that a store that comes back without its last
// writes together with jitbot (a node restart, a Redis without persistence) is caught by the next process.
func (a *App) finalCheckpoint(ctx context.Context) {
	if a.Monitor == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, _, err := a.Monitor.Checkpoint(cctx); err != nil {
		a.log.Warn().Err(err).Msg("audit: no checkpoint written at shutdown")
	}
}

// followAudit runs Monitor.Follow until the returned stop is called.
func (a *App) followAudit(ctx context.Context) (stop func()) {
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.Monitor.Follow(fctx, a.Sweeper.Leading) }()
	return func() { cancel(); <-done }
}
