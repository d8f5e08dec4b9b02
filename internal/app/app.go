// Package app wires jitbot's parts together: the same wiring serves `jitbot serve`, the playground and the
// end-to-end tests, so what is tested is what runs.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/slack-go/slack"

	jitapi "github.com/jitbot/jitbot/api"
	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/bot"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/telemetry"
	"github.com/jitbot/jitbot/workload"
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
	// ClockCheckInterval is how often the local clock is compared with the store's (Redis TIME); default 1m.
	ClockCheckInterval time.Duration
	// SlackWorkers and SlackQueue size the Slack front end's worker pool (bot.Options.Workers, QueueSize).
	SlackWorkers int
	SlackQueue   int
	// SlackAuthInterval is how often auth.test is called for readiness; default DefaultSlackAuthInterval.
	SlackAuthInterval time.Duration
	// PolicyPollInterval is how often Deps.PolicyFile is checked for changes; default
	// DefaultPolicyPollInterval, negative: only ReloadPolicy (SIGHUP) reloads.
	PolicyPollInterval time.Duration
}

// Deps are what an App is built from. Policy and Store are required.
type Deps struct {
	Policy *policy.Policy
	Store  store.Store
	// Providers by policy provider name; nil builds them from the policy (secrets from Getenv).
	Providers map[string]grants.Provider
	Getenv    func(string) string
	Directory approvals.Directory
	// Emails resolves Slack profile emails (principal_from: slack_email); default: users.info when Slack is
	// configured.
	Emails approvals.EmailResolver
	// OnCall answers break-glass checks; default: built from the policy's oncall_sources.
	OnCall approvals.OnCall
	// Subscribers receive every committed audit event (besides logs and metrics).
	Subscribers []audit.Subscriber
	Registry    *prometheus.Registry
	Logger      zerolog.Logger
	Now         func() time.Time
	Holder      string
	Tuning      Tuning
	// Slack, when set, adds the Slack front end (HTTP mode, or Socket Mode with an app token).
	Slack *SlackConfig
	// Audit configures the audit monitor and checkpoints (audit.go).
	Audit AuditOptions
	// Auth verifies callers of the HTTP API for systems (/api/v1); default: BuildAuthenticator.
	Auth workload.Authenticator
	// IssuerHTTPClient fetches OIDC discovery and keys for the default Auth; nil: a client with a timeout.
	IssuerHTTPClient *http.Client
	// PolicyFile, when set, is the file Policy was loaded from: the App reloads it when it changes and on
	// ReloadPolicy (serve calls it on SIGHUP).
	PolicyFile string
}

// SlackConfig is how jitbot reaches Slack.
type SlackConfig struct {
	BotToken      string
	SigningSecret string // HTTP mode
	AppToken      string // Socket Mode when set
	APIURL        string // another Slack (an emulator); "" for Slack's
	Command       string // slash command name, default /jit
	// SkipGroupCheck skips resolving the policy's user groups at start-up (tests that add groups later).
	SkipGroupCheck bool
}

// App is a wired jitbot engine.
type App struct {
	Bot       *bot.Bot
	Notifier  *bot.Notifier
	slack     *slack.Client
	slackCfg  *SlackConfig
	stopNotes context.CancelFunc
	Approvals *approvals.Service
	Grants    *grants.Manager
	Sweeper   *grants.Sweeper
	Store     store.Store
	Metrics   *telemetry.Metrics
	Monitor   *audit.Monitor // pauses the sweeper while the store is behind the last audit head seen
	registry  *prometheus.Registry
	log       zerolog.Logger
	// clock compares this process's clock with the store's, when the store has one (Redis).
	clock         *telemetry.ClockWatch
	clockInterval time.Duration

	// API serves /api/v1, the HTTP API for systems (pipelines).
	API *jitapi.Server
	// reloader re-reads Deps.PolicyFile; bus receives the reload audit events.
	reloader *policyReloader
	// issuerAuth is the API's default authenticator, which a reload that changes the issuers replaces; nil
	// when Deps.Auth was given. rebuildAuth builds one for a policy.
	issuerAuth   *workload.Switch
	rebuildAuth  func(ctx context.Context, p *policy.Policy) (workload.Authenticator, error)
	pollInterval time.Duration
	bus          audit.Bus
	now          func() time.Time
	slackAuth    slackAuth
	authInterval time.Duration
}

// New wires an App. ctx carries the start-up work (building providers and authenticators, checking the
// policy's user groups and the Slack token) and should live as long as the App: a provider built from the
// policy may keep it for its clients. The App's background work runs under Run's context.
func New(ctx context.Context, d Deps) (_ *App, err error) {
	if d.Policy == nil || d.Store == nil {
		return nil, errors.New("app: Policy and Store are required")
	}
	if d.Getenv == nil {
		d.Getenv = os.Getenv
	}
	if d.Providers == nil {
		ps, err := BuildProviders(ctx, d.Policy, d.Getenv)
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
	waker := &apiWaker{}
	bus = append(bus, waker)

	var api *slack.Client
	var notes *bot.Notifier
	// svcRef lets the notifier, built before the approvals service, read the policy in force.
	var svcRef *approvals.Service
	// The notifier's workers outlive start-up: they stop with stopNotes (Run's end), not with ctx.
	notesCtx, stopNotes := context.WithCancel(d.Logger.WithContext(context.WithoutCancel(ctx)))
	defer func() {
		if err != nil {
			stopNotes()
		}
	}()
	if d.Slack != nil {
		opts := []slack.Option{}
		if d.Slack.APIURL != "" {
			opts = append(opts, slack.OptionAPIURL(d.Slack.APIURL))
		}
		if d.Slack.AppToken != "" {
			opts = append(opts, slack.OptionAppLevelToken(d.Slack.AppToken))
		}
		// Every Web API answer is counted (jitbot_slack_api_calls_total): Slack errors and 429s show on the
		// dashboard and in the alerts without reading logs.
		opts = append(opts, slack.OptionHTTPClient(&http.Client{Transport: telemetry.NewSlackTransport(d.Registry, nil)}))
		api = slack.New(d.Slack.BotToken, opts...)
		dir := bot.NewDirectory(api, 0)
		if d.Directory == nil {
			d.Directory = dir
		}
		if !d.Slack.SkipGroupCheck {
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := bot.CheckGroups(ctx, d.Policy, approvals.ChainDirectory{approvals.StaticDirectory(d.Policy.Groups), d.Directory})
			cancel()
			if err != nil {
				return nil, fmt.Errorf("policy user groups: %w", err)
			}
		}
		if d.Emails == nil {
			d.Emails = slackEmails{api}
		}
		notes = bot.NewNotifier(notesCtx, bot.NotifierOptions{API: api, Store: d.Store, Refs: lateRefs{&svcRef}, Policy: d.Policy, Now: d.Now, Logger: d.Logger,
			CurrentPolicy: func() *policy.Policy { return svcRef.Policy() }})
		bus = append(bus, notes)
	}

	if d.OnCall == nil {
		if d.OnCall, err = BuildOnCall(d.Policy, d.Getenv, d.Emails); err != nil {
			return nil, err
		}
	}

	mgr, err := grants.NewManager(grants.Options{
		Store: d.Store, Providers: d.Providers, Publisher: bus, Observer: metrics, Now: d.Now, Holder: d.Holder,
		AttemptTimeout: d.Tuning.ProviderTimeout, MaxAttempts: d.Tuning.MaxAttempts,
		BackoffBase: d.Tuning.BackoffBase, BackoffMax: d.Tuning.BackoffMax,
	})
	if err != nil {
		return nil, err
	}
	svc, err := approvals.New(approvals.Options{
		Store: d.Store, Policy: d.Policy, Directory: d.Directory, Emails: d.Emails, OnCall: d.OnCall, Activator: mgr, Publisher: bus, Now: d.Now,
		ActivationResumeAfter: mgr.ActivationResumeAfter(),
	})
	if err != nil {
		return nil, err
	}
	mon, err := newAuditMonitor(d, bus, notes)
	if err != nil {
		return nil, err
	}
	svcRef = svc
	sw, err := grants.NewSweeper(grants.SweeperOptions{
		Manager: mgr, Store: d.Store, Interval: d.Tuning.SweepInterval, SlowInterval: d.Tuning.RevokeRetryInterval,
		Concurrency: d.Tuning.SweepConcurrency, LeaderTTL: d.Tuning.LeaderTTL, ClaimHold: d.Tuning.ClaimHold,
		Jobs: []func(context.Context) error{func(ctx context.Context) error {
			_, err := svc.ExpirePending(ctx)
			return err
		}, func(ctx context.Context) error {
			_, err := svc.RemindReviews(ctx)
			return err
		}},
		Gate: mon.Check,
		Periodic: []grants.PeriodicJob{auditCheckpointJob(mon, d.Audit), {Name: "drift reconciliation", Every: d.Tuning.ReconcileInterval, Run: func(ctx context.Context) error {
			rep, err := mgr.Reconcile(ctx)
			if rep.Revoked > 0 || rep.Failed > 0 {
				zerolog.Ctx(ctx).Warn().Int("checked", rep.Checked).Int("revoked", rep.Revoked).Int("failed", rep.Failed).Msg("drift reconciliation")
			}
			if rep.Unattributed > 0 { // e.g. Identity Center assignments no grant covers: reported, never removed
				zerolog.Ctx(ctx).Info().Int("unattributed", rep.Unattributed).Msg("drift reconciliation: access jitbot cannot attribute, left in place")
			}
			return err
		}}},
	})
	if err != nil {
		return nil, err
	}
	telemetry.LeaderGauge(d.Registry, sw.Leading)
	// The default authenticator follows policy reloads (their issuers); one passed in Deps is the caller's.
	var issuerAuth *workload.Switch
	if d.Auth == nil {
		built, err := BuildAuthenticator(ctx, d.Policy, d.Store, d.IssuerHTTPClient, d.Now)
		if err != nil {
			return nil, err
		}
		issuerAuth = workload.NewSwitch(built)
		d.Auth = issuerAuth
	}
	apiSrv, err := jitapi.New(jitapi.Options{Auth: d.Auth, Approvals: svc, Grants: mgr, Store: d.Store, Publisher: bus, Now: d.Now})
	if err != nil {
		return nil, err
	}
	waker.srv.Store(apiSrv)
	a := &App{API: apiSrv, Approvals: svc, Grants: mgr, Sweeper: sw, Store: d.Store, Metrics: metrics, Monitor: mon, registry: d.Registry, log: d.Logger,
		slack: api, slackCfg: d.Slack, Notifier: notes, stopNotes: stopNotes, clockInterval: d.Tuning.ClockCheckInterval}
	a.bus, a.now, a.pollInterval, a.authInterval = bus, d.Now, d.Tuning.PolicyPollInterval, d.Tuning.SlackAuthInterval
	if issuerAuth != nil {
		a.issuerAuth = issuerAuth
		a.rebuildAuth = func(ctx context.Context, p *policy.Policy) (workload.Authenticator, error) {
			return BuildAuthenticator(ctx, p, d.Store, d.IssuerHTTPClient, d.Now)
		}
	}
	if d.PolicyFile != "" {
		data, err := os.ReadFile(d.PolicyFile)
		if err != nil {
			return nil, fmt.Errorf("app: read policy file: %w", err)
		}
		a.reloader = &policyReloader{a: a, path: d.PolicyFile, check: startupPolicyCheck(d), data: data, sum: sha256Hex(data)}
	}
	if api != nil {
		// The first auth.test answers readiness from the start; a failure is not fatal (Slack may be down
		// briefly) but keeps the replica not ready until a later check succeeds.
		if err := a.checkSlackAuth(ctx); err != nil {
			d.Logger.Error().Err(err).Msg("Slack authentication check failed; this replica reports not ready")
		}
	}
	if sc, ok := d.Store.(telemetry.StoreClock); ok {
		a.clock = telemetry.NewClockWatch(d.Registry, sc, d.Now, 0)
	}
	if api != nil {
		b, err := bot.New(bot.Options{Approvals: svc, Grants: mgr, Store: d.Store, API: api, Policy: d.Policy, Notifier: notes,
			Command: d.Slack.Command, Now: d.Now, Workers: d.Tuning.SlackWorkers, QueueSize: d.Tuning.SlackQueue})
		if err != nil {
			return nil, err
		}
		a.Bot = b
	}
	return a, nil
}

// Run runs the background work (the sweeper, and Socket Mode when configured) until ctx ends, then lets
// follow-up work and queued Slack updates finish.
func (a *App) Run(ctx context.Context) error {
	ctx = a.log.WithContext(ctx)
	errc := make(chan error, 2)
	clockCtx, stopClock := context.WithCancel(ctx)
	clockDone := make(chan struct{})
	if a.clock != nil {
		go func() { defer close(clockDone); a.clock.Run(clockCtx, a.clockInterval) }()
	} else {
		close(clockDone)
	}
	defer func() { stopClock(); <-clockDone }()
	defer a.followAudit(ctx)()
	watchDone := make(chan struct{})
	if a.reloader != nil && a.pollInterval >= 0 {
		every := a.pollInterval
		if every == 0 {
			every = DefaultPolicyPollInterval
		}
		go func() { defer close(watchDone); a.reloader.watch(clockCtx, every) }()
	} else {
		close(watchDone)
	}
	defer func() { stopClock(); <-watchDone }()
	authDone := make(chan struct{})
	if a.slack != nil {
		go func() { defer close(authDone); a.watchSlackAuth(clockCtx, a.authInterval) }()
	} else {
		close(authDone)
	}
	defer func() { stopClock(); <-authDone }()
	go func() { errc <- a.Sweeper.Run(ctx) }()
	n := 1
	if a.Bot != nil && a.slackCfg.AppToken != "" {
		n++
		go func() { errc <- a.Bot.RunSocketMode(ctx, a.slack) }()
	}
	var first error
	for range n {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	if a.Bot != nil {
		a.Bot.Wait()
	}
	a.finalCheckpoint(ctx)
	a.stopNotes()
	if a.Notifier != nil {
		a.Notifier.Wait()
	}
	return first
}

// Handler serves /healthz (the process is up), /readyz (see Readiness; 503 with the reason) and /metrics.
func (a *App) Handler() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	mux.Handle("/api/v1/", a.API.Handler())
	if a.Bot != nil && a.slackCfg.AppToken == "" {
		mux.Handle("/slack/", a.Bot.HTTPHandler(a.slackCfg.SigningSecret))
	}
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// lateRefs lets the notifier record its message references through the approvals service, which is built
// after it (the service publishes to the notifier); no event reaches the notifier before the service exists.
type lateRefs struct{ svc **approvals.Service }

func (r lateRefs) SetMessageRef(ctx context.Context, requestID string, ref approvals.MessageRef, seen int64) (bool, error) {
	return (*r.svc).SetMessageRef(ctx, requestID, ref, seen)
}

func (r lateRefs) AddDMRef(ctx context.Context, requestID string, ref approvals.MessageRef) error {
	return (*r.svc).AddDMRef(ctx, requestID, ref)
}

// slackEmails reads profile emails with users.info (scope users:read.email).
type slackEmails struct{ api *slack.Client }

func (e slackEmails) Email(ctx context.Context, userID string) (string, error) {
	u, err := e.api.GetUserInfoContext(ctx, userID)
	if err != nil {
		return "", fmt.Errorf("slack users.info %s: %w", userID, err)
	}
	if u.Deleted || u.IsBot {
		return "", fmt.Errorf("slack user %s is deactivated or a bot", userID)
	}
	return u.Profile.Email, nil
}
