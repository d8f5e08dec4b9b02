// Command jitbot is a Slack bot for just-in-time privilege elevation.
//
//	jitbot [serve]                 run the bot (configuration from the environment)
//	jitbot dev                     local playground: embedded store, example policy, no Slack needed
//	jitbot policy check FILE...    validate policy files; every problem with file, line and field
//	jitbot audit verify|export|keygen|accept   check, export and anchor the audit log (auditcmd.go)
//	jitbot version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	"github.com/jitbot/jitbot/store/redis"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	restore := func() {}
	if os.Getenv("JITBOT_FOREGROUND") == "1" {
		restore = takeTerminalForeground()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	restore()
	os.Exit(code)
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		if len(args) > 0 {
			if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help" {
				fmt.Fprint(stdout, serveUsage())
				return 0
			}
			fmt.Fprintf(stderr, "jitbot serve takes no arguments (configuration comes from the environment), got %q\n\n%s", args[0], serveUsage())
			return 2
		}
		err = serve(ctx, stderr)
	case "dev":
		err = dev(ctx, args, stdin, stdout, stderr)
	case "policy":
		return policyCmd(args, stdout, stderr)
	case "grants", "requests":
		return adminCmd(ctx, cmd, args, stdout, stderr)
	case "exec":
		return execCmd(ctx, args, stdout, stderr)
	case "audit":
		return auditCmd(ctx, args, stdout, stderr)
	case "tokens":
		return tokensCmd(ctx, args, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "jitbot", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "jitbot: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return 1
	}
	return 0
}

const usage = `usage:
  jitbot [serve]                          run the bot (configuration from the environment; see README)
  jitbot dev                              local playground: embedded store, example policy, no Slack needed
  jitbot policy check FILE...             validate policy files
  jitbot audit verify [--checkpoint F]    verify the audit log (also: audit export|keygen|accept)
  jitbot grants list|show|revoke          admin CLI on the configured store (also: requests list)
  jitbot tokens create|list|revoke        API tokens for pipelines without OIDC
  jitbot exec --role R --reason "..." -- CMD   run CMD in a CI job with just-in-time access (docs/pipelines.md)
  jitbot version
`

func newLogger(w io.Writer, level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("service", "jitbot").Logger()
}

// openStore opens Redis when a URL is configured, else the embedded bbolt file in the data directory.
func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if cfg.RedisURL != "" {
		s, err := redis.Open(ctx, cfg.RedisURL, redis.Options{Prefix: cfg.RedisKeyPrefix, MinReplicas: cfg.RedisMinReplicas, ReplicaTimeout: cfg.RedisReplicaTimeout})
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", cfg.storeDescription(), err)
		}
		s.SetAuditLinkKey(cfg.auditLinkKey())
		return s, nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
	}
	s, err := bolt.Open(filepath.Join(cfg.DataDir, "jitbot.db"), bolt.Options{AuditLinkKey: cfg.auditLinkKey()})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.storeDescription(), err)
	}
	return s, nil
}

func serve(ctx context.Context, stderr io.Writer) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if err := cfg.requireSlack(); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	routeRedisLogs(log)
	pol, err := loadPolicyForServe(cfg.PolicyFile)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	if rs, ok := st.(*redis.Store); ok {
		if err := checkRedisDurability(ctx, log, cfg, rs); err != nil {
			return err
		}
	}
	deps := app.Deps{Policy: pol, Store: st, Logger: log, Tuning: cfg.tuning(), PolicyFile: cfg.PolicyFile}
	if deps.Audit, err = cfg.auditOptions(); err != nil {
		return err
	}
	if cfg.SlackBotToken != "" {
		deps.Slack = &app.SlackConfig{BotToken: cfg.SlackBotToken, SigningSecret: cfg.SlackSigningSecret,
			AppToken: cfg.SlackAppToken, APIURL: cfg.SlackAPIURL, Command: cfg.SlackCommand}
	}
	a, err := app.New(ctx, deps)
	if err != nil {
		return err
	}
	log.Info().Str("slack", cfg.slackMode()).Str("store", cfg.storeDescription()).Str("policy", cfg.PolicyFile).Str("policy_sha256", a.PolicySHA256()).Int("roles", len(pol.Roles)).Str("listen", cfg.ListenAddr).Msg("jitbot starting")
	stopHUP := reloadOnSIGHUP(ctx, a)
	defer stopHUP()
	return serveHTTP(ctx, log, cfg, a, a.Handler())
}

// serveHTTP runs the HTTP server and the engine until ctx ends, then shuts both down gracefully.
func serveHTTP(ctx context.Context, log zerolog.Logger, cfg Config, a *app.App, h http.Handler) error {
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (JITBOT_LISTEN_ADDR): %w", cfg.ListenAddr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	engineCtx, stopEngine := context.WithCancel(ctx)
	defer stopEngine()
	engineDone := make(chan error, 1)
	go func() { engineDone <- a.Run(engineCtx) }()
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(ln) }()

	select {
	case <-ctx.Done():
	case err := <-httpDone:
		stopEngine()
		<-engineDone
		return fmt.Errorf("http server: %w", err)
	}
	log.Info().Msg("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn().Err(err).Msg("http shutdown")
	}
	stopEngine()
	select {
	case <-engineDone:
	case <-shutdownCtx.Done():
		log.Warn().Msg("engine did not stop within JITBOT_SHUTDOWN_TIMEOUT")
	}
	log.Info().Msg("stopped")
	return nil
}

func (c Config) tuning() app.Tuning {
	return app.Tuning{
		SweepInterval: c.SweepInterval, RevokeRetryInterval: c.RevokeRetryInterval, SweepConcurrency: c.SweepConcurrency,
		ProviderTimeout: c.ProviderTimeout, MaxAttempts: c.MaxAttempts, BackoffBase: c.RetryBackoffBase,
		BackoffMax: c.RetryBackoffMax, LeaderTTL: c.LeaderTTL, ReconcileInterval: c.ReconcileInterval,
		PolicyPollInterval: pollInterval(c.PolicyPollInterval),
	}
}

// loadPolicyForServe loads the policy and refuses to start when a secret it names is missing.
func loadPolicyForServe(path string) (*policy.Policy, error) {
	pol, err := policy.Load(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("policy file %s does not exist (set JITBOT_POLICY_FILE; see examples/policy.yaml)", path)
		}
		return nil, fmt.Errorf("policy is invalid:\n%w", err)
	}
	if missing := pol.MissingSecrets(); len(missing) > 0 {
		ps := policy.Problems(missing)
		return nil, fmt.Errorf("policy needs secrets that are not set:\n%w", &ps)
	}
	return pol, nil
}

func policyCmd(args []string, stdout, stderr io.Writer) int {
	// --probe also connects to providers whose targets can be verified live (Kubernetes: the roles exist).
	probe := len(args) > 1 && args[0] == "check" && args[1] == "--probe"
	if probe {
		args = append([]string{"check"}, args[2:]...)
	}
	if len(args) < 2 || args[0] != "check" {
		fmt.Fprint(stderr, "usage: jitbot policy check [--probe] FILE...\n")
		return 2
	}
	code := 0
	for _, file := range args[1:] {
		pol, err := policy.Load(file)
		if err != nil {
			fmt.Fprintln(stderr, err)
			code = 1
			continue
		}
		if probs := app.CheckPolicy(pol); len(probs) > 0 {
			ps := policy.Problems(probs)
			fmt.Fprintln(stderr, ps.Error())
			code = 1
			continue
		}
		for _, w := range pol.Warnings() {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		if probe {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			probs, warns := app.ProbePolicy(ctx, pol, os.Getenv)
			cancel()
			for _, w := range warns {
				fmt.Fprintf(stderr, "warning: %s\n", w)
			}
			if len(probs) > 0 {
				ps := policy.Problems(probs)
				fmt.Fprintln(stderr, ps.Error())
				code = 1
				continue
			}
		}
		fmt.Fprintf(stdout, "%s: ok (%d roles, %d providers)\n", file, len(pol.Roles), len(pol.Providers))
	}
	return code
}
