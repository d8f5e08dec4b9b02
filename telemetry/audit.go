package telemetry

import "github.com/prometheus/client_golang/prometheus"

// AuditMetrics are the audit monitor's collectors (an audit.MonitorObserver).
type AuditMetrics struct {
	verifiedSeq   prometheus.Gauge
	diverged      prometheus.Gauge
	divergences   prometheus.Counter
	checkpointSeq prometheus.Gauge
	checkpoints   prometheus.Counter
	refused       prometheus.Counter
}

// NewAuditMetrics registers the audit monitor's collectors on reg.
func NewAuditMetrics(reg prometheus.Registerer) *AuditMetrics {
	m := &AuditMetrics{
		verifiedSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitbot_audit_verified_seq", Help: "Highest audit log seq whose hash chain this replica verified.",
		}),
		diverged: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitbot_audit_store_diverged", Help: "1 while the store's audit log does not extend the last head seen outside it (the store went backwards or was rewritten); the sweeper is paused. Alert on 1.",
		}),
		divergences: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitbot_audit_divergences_total", Help: "Times the store was found to have gone backwards or to have a rewritten audit log.",
		}),
		checkpointSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitbot_audit_checkpoint_seq", Help: "Seq of the last audit checkpoint this replica wrote.",
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitbot_audit_checkpoints_total", Help: "Audit checkpoints written.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitbot_audit_sweeps_refused_total", Help: "Sweeps skipped because the store's audit log did not extend the last head seen.",
		}),
	}
	reg.MustRegister(m.verifiedSeq, m.diverged, m.divergences, m.checkpointSeq, m.checkpoints, m.refused)
	return m
}

func (m *AuditMetrics) AuditVerified(seq uint64) { m.verifiedSeq.Set(float64(seq)) }

func (m *AuditMetrics) AuditDiverged(d bool) {
	if d {
		m.diverged.Set(1)
		m.divergences.Inc()
		return
	}
	m.diverged.Set(0)
}

func (m *AuditMetrics) AuditCheckpointed(seq uint64) {
	m.checkpointSeq.Set(float64(seq))
	m.checkpoints.Inc()
}

func (m *AuditMetrics) AuditCheckRefused() { m.refused.Inc() }
