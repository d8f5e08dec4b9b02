package telemetry

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// StoreClock is a store that can tell its own time (Redis TIME): the one clock every replica shares.
type StoreClock interface {
	Time(ctx context.Context) (time.Time, error)
}

// DefaultSkewThreshold is the skew over which ClockWatch warns.
const DefaultSkewThreshold = time.Second

// ClockWatch measures this process's clock against the store's. Expiry, claims and lock deadlines are
// computed with the local wall clock of whichever replica leads, so a replica whose clock is off revokes
// early or late by the offset: the skew is exported and a warning logged when it passes the threshold.
type ClockWatch struct {
	store     StoreClock
	now       func() time.Time
	threshold time.Duration
	skew      prometheus.Gauge
	errors    prometheus.Counter
}

// NewClockWatch registers jitbot_clock_skew_seconds and jitbot_clock_skew_check_errors_total on reg. now
// defaults to time.Now and threshold to DefaultSkewThreshold.
func NewClockWatch(reg prometheus.Registerer, st StoreClock, now func() time.Time, threshold time.Duration) *ClockWatch {
	if now == nil {
		now = time.Now
	}
	if threshold <= 0 {
		threshold = DefaultSkewThreshold
	}
	w := &ClockWatch{store: st, now: now, threshold: threshold,
		skew: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jitbot_clock_skew_seconds",
			Help: "This process's clock minus the store's clock (Redis TIME), measured at the midpoint of the round trip. Alert when its absolute value exceeds 1.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitbot_clock_skew_check_errors_total", Help: "Clock skew measurements that failed (the store did not answer TIME).",
		}),
	}
	reg.MustRegister(w.skew, w.errors)
	return w
}

// Measure reads the store's clock once. skew is local minus store time at the midpoint of the round trip;
// the true skew lies within ±uncertainty (half the round trip) of it. It sets the gauge and logs a warning
// when |skew| is over the threshold.
func (w *ClockWatch) Measure(ctx context.Context) (skew, uncertainty time.Duration, err error) {
	before := w.now()
	remote, err := w.store.Time(ctx)
	after := w.now()
	if err != nil {
		w.errors.Inc()
		return 0, 0, err
	}
	rtt := after.Sub(before)
	mid := before.Add(rtt / 2)
	skew, uncertainty = mid.Sub(remote), rtt/2
	w.skew.Set(skew.Seconds())
	if skew > w.threshold || skew < -w.threshold {
		zerolog.Ctx(ctx).Warn().Dur("skew", skew).Dur("uncertainty", uncertainty).Dur("threshold", w.threshold).
			Msg("this replica's clock differs from the store's (Redis TIME) by more than the threshold: grants expire early or late by that much while it leads; fix NTP on this host")
	}
	return skew, uncertainty, nil
}

// Run measures at once and then every interval until ctx ends.
func (w *ClockWatch) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, _, err := w.Measure(ctx); err != nil && ctx.Err() == nil {
			zerolog.Ctx(ctx).Warn().Err(err).Msg("could not measure clock skew against the store")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
