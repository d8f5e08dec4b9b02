// Package app wires jitbot's parts together: the same wiring serves `jitbot serve`, the playground and the
// end-to-end tests, so what is tested is what runs.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/telemetry"
)

// Tuning holds the engine's timing knobs. The zero value takes each component's defaults.
type Tuning struct {
	SweepInterval       time.Duration
	RevokeRetryInterval time.Duration
	SweepConcurrency    int
	ProviderTimeout     time.Duration
	MaxAttempts         int
	BackoffBase         time.Duration
	BackoffMax          time.Duration
	LeaderTTL           time.Duration
	ClaimHold           time.Duration
	// ReconcileInterval is how often providers are listed for drift; 0 disables it.
	ReconcileInterval time.Duration
}

// Deps are what an App is built from. Policy and Store are required.
type Deps struct {
	Policy *policy.Policy
	Store  store.Store
	// Providers by policy provider name; nil builds them from the policy (secrets from Getenv).
	Providers map[string]grants.Provider
	Getenv    func(string) string
	Directory approvals.Directory
	// Subscribers receive every committed audit event (besides logs and metrics).
	Subscribers []audit.Subscriber
	Registry    *prometheus.Registry
	Logger      zerolog.Logger
	Now         func() time.Time
	Holder      string
	Tuning      Tuning
}

// App is a wired jitbot engine.
type App struct {
	Approvals *approvals.Service
	Grants    *grants.Manager
	Sweeper   *grants.Sweeper
	Store     store.Store
	Metrics   *telemetry.Metrics
	registry  *prometheus.Registry
	log       zerolog.Logger
}

// New wires an App.
func New(d Deps) (*App, error) {
	if d.Policy == nil || d.Store == nil {
		return nil, errors.New("app: Policy and Store are required")
	}
	if d.Getenv == nil {
		d.Getenv = os.Getenv
	}
	if d.Providers == nil {
		ps, err := BuildProviders(context.Background(), d.Policy, d.Getenv)
		if err != nil {
			return nil, err
		}
		d.Providers = ps
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
		d.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	metrics := telemetry.New(d.Registry, d.Store.CountGrants)
	bus := audit.Bus{audit.LogSubscriber{Logger: d.Logger}, metrics}
	bus = append(bus, d.Subscribers...)

	mgr, err := grants.NewManager(grants.Options{
		Store: d.Store, Providers: d.Providers, Publisher: bus, Observer: metrics, Now: d.Now, Holder: d.Holder,
		AttemptTimeout: d.Tuning.ProviderTimeout, MaxAttempts: d.Tuning.MaxAttempts,
		BackoffBase: d.Tuning.BackoffBase, BackoffMax: d.Tuning.BackoffMax,
	})
	if err != nil {
		return nil, err
	}
	svc, err := approvals.New(approvals.Options{
		Store: d.Store, Policy: d.Policy, Directory: d.Directory, Activator: mgr, Publisher: bus, Now: d.Now,
		ActivationResumeAfter: mgr.ActivationResumeAfter(),
	})
	if err != nil {
		return nil, err
	}
	sw, err := grants.NewSweeper(grants.SweeperOptions{
		Manager: mgr, Store: d.Store, Interval: d.Tuning.SweepInterval, SlowInterval: d.Tuning.RevokeRetryInterval,
		Concurrency: d.Tuning.SweepConcurrency, LeaderTTL: d.Tuning.LeaderTTL, ClaimHold: d.Tuning.ClaimHold,
		Jobs: []func(context.Context) error{func(ctx context.Context) error {
			_, err := svc.ExpirePending(ctx)
			return err
		}},
		Periodic: []grants.PeriodicJob{{Name: "drift reconciliation", Every: d.Tuning.ReconcileInterval, Run: func(ctx context.Context) error {
			rep, err := mgr.Reconcile(ctx)
			if rep.Revoked > 0 || rep.Failed > 0 {
				zerolog.Ctx(ctx).Warn().Int("checked", rep.Checked).Int("revoked", rep.Revoked).Int("failed", rep.Failed).Msg("drift reconciliation")
			}
			return err
		}}},
	})
	if err != nil {
		return nil, err
	}
	return &App{Approvals: svc, Grants: mgr, Sweeper: sw, Store: d.Store, Metrics: metrics, registry: d.Registry, log: d.Logger}, nil
}

// Run runs the background work (the sweeper) until ctx ends.
func (a *App) Run(ctx context.Context) error {
	return a.Sweeper.Run(a.log.WithContext(ctx))
}

// Handler serves /healthz (the process is up), /readyz (the store answers) and /metrics.
func (a *App) Handler() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.Store.Ping(ctx); err != nil {
			a.log.Warn().Err(err).Msg("readiness check: store unreachable")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "store": "unreachable"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "sweeper_leader": a.Sweeper.Leading()})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
