package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	"github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/workload"
)

// Both back ends keep API tokens; openTokenStore relies on it.
var (
	_ workload.TokenStore = (*bolt.Store)(nil)
	_ workload.TokenStore = (*redis.Store)(nil)
)

const tokensUsage = `usage:
  jitbot tokens create --owner NAME [--ttl 90d]   create an API token; the token is printed once, on stdout
  jitbot tokens list [--json]                     every token with owner, created, last used, expiry, revoked
  jitbot tokens revoke ID                         revoke a token (by its id, e.g. tok-2k4m6p8r9t)
The store is the one serve uses (JITBOT_REDIS_URL, else the embedded file in JITBOT_DATA_DIR).
`

// tokensCmd manages API tokens for systems that cannot present an OIDC token.
func tokensCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprint(stderr, tokensUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("tokens "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var owner, ttl string
	var asJSON bool
	switch sub {
	case "create":
		fs.StringVar(&owner, "owner", "", "who the token is for: the api_token_owner of a policy workload, e.g. deploy-bot (required)")
		fs.StringVar(&ttl, "ttl", "", "expire the token after this long (e.g. 90d, 720h); default: until revoked")
	case "list":
		fs.BoolVar(&asJSON, "json", false, "print JSON (one array) instead of a table")
	case "revoke":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, tokensUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "jitbot tokens: unknown command %q\n\n%s", sub, tokensUsage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var opts workload.CreateOptions
	switch sub {
	case "create":
		if owner == "" || fs.NArg() > 0 {
			fmt.Fprint(stderr, "usage: jitbot tokens create --owner NAME [--ttl 90d]\n")
			return 2
		}
		if ttl != "" {
			d, err := policy.ParseDuration(ttl)
			if err != nil || d <= 0 {
				if err == nil {
					err = errors.New("it must be positive")
				}
				fmt.Fprintf(stderr, "jitbot tokens create: --ttl: %v\n", err)
				return 2
			}
			opts.TTL = d
		}
	case "list":
		if fs.NArg() > 0 {
			fmt.Fprint(stderr, "usage: jitbot tokens list [--json]\n")
			return 2
		}
	case "revoke":
		if fs.NArg() != 1 {
			fmt.Fprint(stderr, "usage: jitbot tokens revoke ID\n")
			return 2
		}
	}

	tokens, closeStore, err := openTokens(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return 1
	}
	defer closeStore()

	switch sub {
	case "create":
		plain, info, err := tokens.CreateWith(ctx, owner, opts)
		if err != nil {
			fmt.Fprintln(stderr, "jitbot tokens create:", err)
			return 1
		}
		fmt.Fprintln(stdout, plain)
		expiry := "it does not expire"
		if !info.ExpiresAt.IsZero() {
			expiry = "it expires at " + info.ExpiresAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stderr, "created API token %s for owner %q; %s.\nThe token above is shown only now: store it in your CI's secret store. Revoke it with `jitbot tokens revoke %s`.\n", info.ID, info.Owner, expiry, info.ID)
		return 0
	case "list":
		list, err := tokens.List(ctx)
		if err != nil {
			fmt.Fprintln(stderr, "jitbot tokens list:", err)
			return 1
		}
		if asJSON {
			return printTokensJSON(list, stdout, stderr)
		}
		printTokensTable(list, time.Now(), stdout)
		return 0
	default: // revoke
		id := fs.Arg(0)
		before, err := tokens.Get(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			fmt.Fprintf(stderr, "jitbot tokens revoke: there is no token %q (see `jitbot tokens list`)\n", id)
			return 1
		}
		if err != nil {
			fmt.Fprintln(stderr, "jitbot tokens revoke:", err)
			return 1
		}
		info, err := tokens.RevokeInfo(ctx, id)
		if err != nil {
			fmt.Fprintln(stderr, "jitbot tokens revoke:", err)
			return 1
		}
		if before.Revoked() {
			fmt.Fprintf(stdout, "token %s (owner %q) was already revoked at %s\n", info.ID, info.Owner, info.RevokedAt.UTC().Format(time.RFC3339))
			return 0
		}
		fmt.Fprintf(stdout, "revoked token %s (owner %q); calls with it are refused from now on\n", info.ID, info.Owner)
		return 0
	}
}

// openTokens opens the configured store (as serve does) for its API tokens.
func openTokens(ctx context.Context) (*workload.Tokens, func(), error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		if errors.Is(err, bolt.ErrFileLocked) {
			return nil, nil, fmt.Errorf("%w\nA running jitbot holds the embedded store; stop it first (with Redis, tokens can be managed while it runs)", err)
		}
		return nil, nil, err
	}
	ts, ok := st.(workload.TokenStore)
	if !ok {
		st.Close()
		return nil, nil, fmt.Errorf("the %s store does not keep API tokens", cfg.storeDescription())
	}
	// Creations and revocations go to the hash-chained audit log, with the operating-system user who ran
	// the command (the CLI has no Slack identity).
	details := map[string]string{"via": "jitbot tokens"}
	if u, err := user.Current(); err == nil {
		details["os_user"] = u.Username
	}
	tokens := workload.NewTokens(ts, workload.TokensOptions{
		Actor:        "system:cli",
		AuditDetails: details,
		Audit: func(ctx context.Context, e store.AuditEvent) error {
			return st.Commit(ctx, store.Batch{Audit: []store.AuditEvent{e}})
		},
	})
	return tokens, func() { st.Close() }, nil
}

func printTokensTable(list []workload.TokenInfo, now time.Time, w io.Writer) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no API tokens (create one with `jitbot tokens create --owner NAME`)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tCREATED\tLAST USED\tEXPIRES\tSTATUS")
	ts := func(t time.Time, zero string) string {
		if t.IsZero() {
			return zero
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, t := range list {
		status := "active"
		switch {
		case t.Revoked():
			status = "revoked " + ts(t.RevokedAt, "")
		case t.Expired(now):
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Owner, ts(t.CreatedAt, "-"), ts(t.LastUsedAt, "never"), ts(t.ExpiresAt, "never"), status)
	}
	tw.Flush()
}

type tokenJSON struct {
	ID         string     `json:"id"`
	Owner      string     `json:"owner"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

func printTokensJSON(list []workload.TokenInfo, stdout, stderr io.Writer) int {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	out := make([]tokenJSON, len(list))
	for i, t := range list {
		out[i] = tokenJSON{ID: t.ID, Owner: t.Owner, CreatedAt: t.CreatedAt.UTC(), LastUsedAt: opt(t.LastUsedAt), ExpiresAt: opt(t.ExpiresAt), RevokedAt: opt(t.RevokedAt)}
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(stderr, "jitbot tokens list:", err)
		return 1
	}
	return 0
}
