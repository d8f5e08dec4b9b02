// Package telemetry exposes jitbot's Prometheus metrics.
package telemetry

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/store"
)

// Metrics holds jitbot's collectors. It is a grants.Observer and an audit subscriber.
type Metrics struct {
	requests      *prometheus.CounterVec
	providerCalls *prometheus.CounterVec
	providerFails *prometheus.CounterVec
	revocationLag prometheus.Histogram
	verifiedLag   prometheus.Histogram
	sweepDuration prometheus.Histogram
	sweepClaimed  prometheus.Counter
	alerts        prometheus.Counter
	remains       prometheus.Counter
	decisionWait  *prometheus.HistogramVec
}

var _ grants.Observer = (*Metrics)(nil)

// CountFunc counts grants in a state (for the grants-active gauge).
type CountFunc func(ctx context.Context, state store.GrantState) (int, error)

// New registers jitbot's collectors on reg. count, when set, backs the jitbot_grants gauge.
func New(reg prometheus.Registerer, count CountFunc) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitbot_requests_total", Help: "Access requests by outcome (requested, approved, granted, denied, cancelled, expired, break_glass).",
		}, []string{"outcome"}),
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitbot_provider_attempts_total", Help: "Provider grant and revoke attempts.",
		}, []string{"op"}),
		providerFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitbot_provider_failures_total", Help: "Failed provider attempts, by kind (retryable, permanent).",
		}, []string{"op", "kind"}),
		revocationLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jitbot_revocation_lag_seconds", Help: "Time from a grant's expiry to its revocation at the provider.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		verifiedLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jitbot_revoke_verified_lag_seconds", Help: "Time from a grant's end (expiry or release) until a check at the provider confirmed its access gone.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900},
		}),
		sweepDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jitbot_sweep_duration_seconds", Help: "Duration of one sweep.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		sweepClaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitbot_sweep_claimed_total", Help: "Due grants claimed by sweeps.",
		}),
		alerts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitbot_revoke_failed_total", Help: "Grants escalated because revocation kept failing. Alert on any increase.",
		}),
		remains: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jitbot_revoke_access_remains_total", Help: "Revokes verified at the provider after which the principal still held the access through objects jitbot did not grant (access-remains events).",
		}),
	}
	m.decisionWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "jitbot_request_decision_seconds", Help: "Time from a request to its decision (the approval that completed the quorum, or the denial), by outcome.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600},
	}, []string{"outcome"})
	reg.MustRegister(m.requests, m.providerCalls, m.providerFails, m.revocationLag, m.verifiedLag, m.sweepDuration, m.sweepClaimed, m.alerts, m.remains, m.decisionWait)
	if count != nil {
		for _, st := range []store.GrantState{store.GrantActive, store.GrantActivating, store.GrantRevoking, store.GrantRevokeFailed} {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "jitbot_grants", Help: "Grants by live state.", ConstLabels: prometheus.Labels{"state": string(st)},
			}, func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				n, err := count(ctx, st)
				if err != nil {
					return -1
				}
				return float64(n)
			}))
		}
	}
	return m
}

func (m *Metrics) ProviderCall(op string, err error) {
	m.providerCalls.WithLabelValues(op).Inc()
	if err != nil {
		kind := "retryable"
		if grants.IsPermanent(err) {
			kind = "permanent"
		}
		m.providerFails.WithLabelValues(op, kind).Inc()
	}
}

func (m *Metrics) Revoked(lag time.Duration) { m.revocationLag.Observe(lag.Seconds()) }

func (m *Metrics) Swept(took time.Duration, claimed int) {
	m.sweepDuration.Observe(took.Seconds())
	m.sweepClaimed.Add(float64(claimed))
}

// Publish counts request outcomes and alerts from committed audit events.
func (m *Metrics) Publish(_ context.Context, events ...store.AuditEvent) {
	for _, e := range events {
		switch e.Type {
		case store.EventRequested, store.EventDenied, store.EventCancelled, store.EventExpired:
			m.requests.WithLabelValues(e.Type).Inc()
			if e.Type == store.EventDenied {
				m.observeDecision("denied", e)
			}
		case store.EventBreakGlass:
			m.requests.WithLabelValues("break_glass").Inc()
		case store.EventApproved:
			// One event per approval; the request's outcome is "approved" when the quorum is reached.
			if p, ok := approvals.ProgressOf(e); ok && p.Complete() {
				m.requests.WithLabelValues("approved").Inc()
				m.observeDecision("approved", e)
			}
		case store.EventGranted:
			m.requests.WithLabelValues("granted").Inc()
		case store.EventRevokeFailed:
			m.alerts.Inc()
		case store.EventRevokeVerified, store.EventAccessRemains:
			// Both say jitbot's access was confirmed gone; access-remains adds that someone else's remains.
			if e.Type == store.EventAccessRemains {
				m.remains.Inc()
			}
			if ms, err := strconv.ParseInt(e.Details["lag_ms"], 10, 64); err == nil && ms >= 0 {
				m.verifiedLag.Observe(float64(ms) / 1000)
			}
		}
	}
}

func (m *Metrics) observeDecision(outcome string, e store.AuditEvent) {
	if ms, err := strconv.ParseInt(e.Details["decision_wait_ms"], 10, 64); err == nil && ms >= 0 {
		m.decisionWait.WithLabelValues(outcome).Observe(float64(ms) / 1000)
	}
}
