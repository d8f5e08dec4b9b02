package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/jitbot/jitbot/store/redis"
)

// Config is jitbot's whole configuration, from the environment. Slack variables keep Slack's usual names;
// everything else is JITBOT_*. It holds secrets: never log it (use Redacted).
type Config struct {
	SlackBotToken      string `envconfig:"SLACK_BOT_TOKEN"`
	SlackSigningSecret string `envconfig:"SLACK_SIGNING_SECRET"`
	SlackAppToken      string `envconfig:"SLACK_APP_TOKEN"`
	SlackAPIURL        string `envconfig:"SLACK_API_URL"`
	SlackCommand       string `envconfig:"JITBOT_SLASH_COMMAND" default:"/jit"`
	// Slack "off" runs serve without Slack on purpose (API-only, for pipelines); otherwise SLACK_BOT_TOKEN
	// is required.
	Slack string `envconfig:"JITBOT_SLACK"`

	PolicyFile string `envconfig:"JITBOT_POLICY_FILE" default:"./policy.yaml"`
	// PolicyPollInterval is how often the policy file is checked for changes (0: only on SIGHUP).
	PolicyPollInterval time.Duration `envconfig:"JITBOT_POLICY_POLL_INTERVAL" default:"5s"`
	RedisURL           string        `envconfig:"JITBOT_REDIS_URL"`
	// RedisKeyPrefix must contain one hash tag so every key lands in one Redis Cluster slot.
	RedisKeyPrefix string `envconfig:"JITBOT_REDIS_KEY_PREFIX" default:"{jit}"`
	// RedisMinReplicas makes every commit wait for that many replica acknowledgements (WAIT).
	RedisMinReplicas    int           `envconfig:"JITBOT_REDIS_MIN_REPLICAS" default:"0"`
	RedisReplicaTimeout time.Duration `envconfig:"JITBOT_REDIS_REPLICA_TIMEOUT" default:"1s"`
	RedisAllowEviction  bool          `envconfig:"JITBOT_REDIS_ALLOW_EVICTION" default:"false"`
	DataDir             string        `envconfig:"JITBOT_DATA_DIR" default:"./data"`
	ListenAddr          string        `envconfig:"JITBOT_LISTEN_ADDR" default:":8080"`
	LogLevel            string        `envconfig:"JITBOT_LOG_LEVEL" default:"info"`

	SweepInterval       time.Duration `envconfig:"JITBOT_SWEEP_INTERVAL" default:"1s"`
	RevokeRetryInterval time.Duration `envconfig:"JITBOT_REVOKE_RETRY_INTERVAL" default:"5m"`
	SweepConcurrency    int           `envconfig:"JITBOT_SWEEP_CONCURRENCY" default:"64"`
	ProviderTimeout     time.Duration `envconfig:"JITBOT_PROVIDER_TIMEOUT" default:"10s"`
	MaxAttempts         int           `envconfig:"JITBOT_MAX_ATTEMPTS" default:"5"`
	RetryBackoffBase    time.Duration `envconfig:"JITBOT_RETRY_BACKOFF_BASE" default:"1s"`
	RetryBackoffMax     time.Duration `envconfig:"JITBOT_RETRY_BACKOFF_MAX" default:"5m"`
	LeaderTTL           time.Duration `envconfig:"JITBOT_LEADER_TTL" default:"15s"`
	ReconcileInterval   time.Duration `envconfig:"JITBOT_RECONCILE_INTERVAL" default:"10m"`
	ShutdownTimeout     time.Duration `envconfig:"JITBOT_SHUTDOWN_TIMEOUT" default:"20s"`

	// ExpectedReplicas is how many replicas the deployment runs (the Helm chart sets it). The embedded store
	// is one process's file: several replicas on it would each run their own store and sweeper.
	ExpectedReplicas int `envconfig:"JITBOT_EXPECTED_REPLICAS" default:"1"`

	// Audit checkpoints (docs/audit.md). The signing key is a secret: never log it.
	AuditSigningKey         string        `envconfig:"JITBOT_AUDIT_SIGNING_KEY"`
	AuditLinkKey            string        `envconfig:"JITBOT_AUDIT_LINK_KEY"`
	AuditPublicKeys         string        `envconfig:"JITBOT_AUDIT_PUBLIC_KEYS"`
	AuditCheckpointFile     string        `envconfig:"JITBOT_AUDIT_CHECKPOINT_FILE"`
	AuditCheckpointInterval time.Duration `envconfig:"JITBOT_AUDIT_CHECKPOINT_INTERVAL" default:"10m"`
}

// loadConfig reads and validates the environment. Every problem is reported in one error.
func loadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
		// envconfig names the variable and the bad value; drop the value in case it is a secret.
		return c, fmt.Errorf("configuration: %s", scrubEnvconfigError(err))
	}
	return c, c.validate()
}

func scrubEnvconfigError(err error) string {
	if pe, ok := err.(*envconfig.ParseError); ok {
		return fmt.Sprintf("%s: cannot parse its value as %s", pe.KeyName, pe.TypeName)
	}
	return err.Error()
}

func (c Config) validate() error {
	var problems []string
	positive := map[string]time.Duration{
		"JITBOT_SWEEP_INTERVAL": c.SweepInterval, "JITBOT_REVOKE_RETRY_INTERVAL": c.RevokeRetryInterval,
		"JITBOT_PROVIDER_TIMEOUT": c.ProviderTimeout, "JITBOT_RETRY_BACKOFF_BASE": c.RetryBackoffBase,
		"JITBOT_RETRY_BACKOFF_MAX": c.RetryBackoffMax, "JITBOT_LEADER_TTL": c.LeaderTTL, "JITBOT_SHUTDOWN_TIMEOUT": c.ShutdownTimeout,
	}
	for _, name := range []string{"JITBOT_SWEEP_INTERVAL", "JITBOT_REVOKE_RETRY_INTERVAL", "JITBOT_PROVIDER_TIMEOUT", "JITBOT_RETRY_BACKOFF_BASE", "JITBOT_RETRY_BACKOFF_MAX", "JITBOT_LEADER_TTL", "JITBOT_SHUTDOWN_TIMEOUT"} {
		if positive[name] <= 0 {
			problems = append(problems, name+" must be a positive duration such as 1s or 5m")
		}
	}
	if c.ReconcileInterval < 0 {
		problems = append(problems, "JITBOT_RECONCILE_INTERVAL must be a duration such as 10m (0 turns drift reconciliation off)")
	}
	if c.PolicyPollInterval < 0 {
		problems = append(problems, "JITBOT_POLICY_POLL_INTERVAL must be a duration such as 5s (0: reload only on SIGHUP)")
	}
	if c.RedisMinReplicas < 0 || c.RedisMinReplicas > 16 {
		problems = append(problems, "JITBOT_REDIS_MIN_REPLICAS must be between 0 and 16")
	}
	if c.RedisReplicaTimeout <= 0 {
		problems = append(problems, "JITBOT_REDIS_REPLICA_TIMEOUT must be a positive duration such as 1s")
	}
	if c.SweepConcurrency < 1 || c.SweepConcurrency > 1024 {
		problems = append(problems, "JITBOT_SWEEP_CONCURRENCY must be between 1 and 1024")
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		problems = append(problems, "JITBOT_MAX_ATTEMPTS must be between 1 and 100")
	}
	if c.LeaderTTL > 0 && c.LeaderTTL < 3*time.Second {
		problems = append(problems, "JITBOT_LEADER_TTL must be at least 3s (it is renewed every third of it)")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		problems = append(problems, "JITBOT_LOG_LEVEL must be debug, info, warn or error")
	}
	if c.SlackAPIURL != "" {
		if u, err := url.Parse(c.SlackAPIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, "SLACK_API_URL must be an absolute http(s) URL such as https://slack.com/api/")
		} else if u.User != nil || u.RawQuery != "" {
			// Errors of Slack calls quote the URL: credentials in it would end up in logs and /readyz.
			problems = append(problems, "SLACK_API_URL must not carry credentials or a query (the bot token authenticates every call)")
		}
	}
	if c.SlackBotToken != "" && !strings.HasPrefix(c.SlackBotToken, "xoxb-") {
		problems = append(problems, "SLACK_BOT_TOKEN must be a bot token (it starts with xoxb-)")
	}
	if c.SlackAppToken != "" && !strings.HasPrefix(c.SlackAppToken, "xapp-") {
		problems = append(problems, "SLACK_APP_TOKEN must be an app-level token (it starts with xapp-)")
	}
	if c.SlackCommand == "" || c.SlackCommand[0] != '/' || strings.ContainsAny(c.SlackCommand, " \t") {
		problems = append(problems, "JITBOT_SLASH_COMMAND must be a slash command such as /jit")
	}
	switch c.Slack {
	case "":
	case "off":
		if c.SlackBotToken != "" || c.SlackAppToken != "" {
			problems = append(problems, "JITBOT_SLACK=off but a Slack token is set: unset SLACK_BOT_TOKEN and SLACK_APP_TOKEN, or unset JITBOT_SLACK")
		}
	default:
		problems = append(problems, "JITBOT_SLACK must be off (run without Slack) or unset")
	}
	if c.SlackBotToken != "" && c.SlackAppToken == "" && c.SlackSigningSecret == "" {
		problems = append(problems, "SLACK_SIGNING_SECRET is required in HTTP mode (set it, or set SLACK_APP_TOKEN for Socket Mode)")
	}
	if c.ExpectedReplicas < 1 {
		problems = append(problems, "JITBOT_EXPECTED_REPLICAS must be at least 1")
	} else if c.ExpectedReplicas > 1 && c.RedisURL == "" {
		problems = append(problems, fmt.Sprintf("JITBOT_EXPECTED_REPLICAS is %d but JITBOT_REDIS_URL is not set: every replica would run its own embedded store and sweeper (split brain); set JITBOT_REDIS_URL or run one replica", c.ExpectedReplicas))
	}
	problems = append(problems, c.auditProblems()...)
	if len(problems) > 0 {
		return fmt.Errorf("configuration: %s", strings.Join(problems, "; "))
	}
	return nil
}

// requireSlack is serve's rule: Slack is configured, or JITBOT_SLACK=off says it is off on purpose. (A bot
// that starts without Slack by accident reports ready and answers 404 to every Slack request.)
func (c Config) requireSlack() error {
	if c.SlackBotToken == "" && c.Slack != "off" {
		return errors.New("configuration: SLACK_BOT_TOKEN is not set: jitbot serve needs Slack (set SLACK_BOT_TOKEN, and SLACK_SIGNING_SECRET or SLACK_APP_TOKEN; see docs/slack-setup.md), " +
			"or set JITBOT_SLACK=off to run without Slack on purpose (API-only, for pipelines)")
	}
	return nil
}

// slackMode says how jitbot reaches Slack.
func (c Config) slackMode() string {
	switch {
	case c.SlackBotToken == "":
		return "off (JITBOT_SLACK=off)"
	case c.SlackAppToken != "":
		return "socket mode"
	}
	return "http mode (/slack/commands, /slack/interactions, /slack/events)"
}

// storeDescription says which store is in use without revealing credentials (userinfo and secret query
// parameters such as sentinel_password are redacted).
func (c Config) storeDescription() string {
	if c.RedisURL == "" {
		return "embedded (" + c.DataDir + ")"
	}
	return "redis (" + redis.RedactURL(c.RedisURL) + ")"
}
