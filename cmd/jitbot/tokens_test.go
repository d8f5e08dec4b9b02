package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	"github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
	"github.com/jitbot/jitbot/workload"
)

// tokenStoreEnv points the CLI at a fresh store and returns a function that opens the same store for checks
// (the caller closes it before the next CLI call: the embedded file has one user at a time).
func tokenStoreEnvs() map[string]func(t *testing.T) func(t *testing.T) (workload.TokenStore, func()) {
	return map[string]func(t *testing.T) func(t *testing.T) (workload.TokenStore, func()){
		"bolt": func(t *testing.T) func(t *testing.T) (workload.TokenStore, func()) {
			clearEnv(t)
			dir := t.TempDir()
			t.Setenv("JITBOT_DATA_DIR", dir)
			return func(t *testing.T) (workload.TokenStore, func()) {
				s, err := bolt.Open(filepath.Join(dir, "jitbot.db"), bolt.Options{})
				if err != nil {
					t.Fatal(err)
				}
				return s, func() { s.Close() }
			}
		},
		"redis": func(t *testing.T) func(t *testing.T) (workload.TokenStore, func()) {
			clearEnv(t)
			url, prefix := redistest.URL(t), redistest.Prefix(t)
			t.Setenv("JITBOT_REDIS_URL", url)
			t.Setenv("JITBOT_REDIS_KEY_PREFIX", prefix)
			return func(t *testing.T) (workload.TokenStore, func()) {
				s, err := redis.Open(context.Background(), url, redis.Options{Prefix: prefix})
				if err != nil {
					t.Fatal(err)
				}
				return s, func() { s.Close() }
			}
		},
	}
}

func TestTokensCreateListRevoke(t *testing.T) {
	for name, setup := range tokenStoreEnvs() {
		t.Run(name, func(t *testing.T) {
			open := setup(t)
			authenticate := func(token string) error {
				st, done := open(t)
				defer done()
				_, err := workload.NewTokens(st, workload.TokensOptions{}).Authenticate(context.Background(), token)
				return err
			}

			code, stdout, stderr := runCLI(t, "tokens", "list")
			if code != 0 || !strings.Contains(stdout, "no API tokens") {
				t.Fatalf("empty list: exit %d %q %q", code, stdout, stderr)
			}

			code, stdout, stderr = runCLI(t, "tokens", "create", "--owner", "deploy-bot", "--ttl", "90d")
			if code != 0 {
				t.Fatalf("create: exit %d %s", code, stderr)
			}
			token := strings.TrimSpace(stdout)
			if !strings.HasPrefix(token, workload.TokenPrefix) || strings.Count(stdout, "\n") != 1 {
				t.Fatalf("create stdout = %q, want exactly the token on one line", stdout)
			}
			if strings.Contains(stderr, token) || !strings.Contains(stderr, "shown only now") || !strings.Contains(stderr, "expires at") {
				t.Fatalf("create stderr = %q", stderr)
			}
			id := strings.SplitN(strings.TrimPrefix(token, workload.TokenPrefix), "_", 2)[0]
			if err := authenticate(token); err != nil {
				t.Fatalf("the printed token does not authenticate: %v", err)
			}

			code, stdout, _ = runCLI(t, "tokens", "list")
			if code != 0 || !strings.Contains(stdout, id) || !strings.Contains(stdout, "deploy-bot") || !strings.Contains(stdout, "active") ||
				strings.Contains(stdout, token[len(token)-43:]) {
				t.Fatalf("list after create: exit %d\n%s", code, stdout)
			}
			if !strings.Contains(stdout, time.Now().UTC().Format("2006-01-02")) {
				t.Fatalf("list does not show the last use and creation date:\n%s", stdout)
			}

			code, stdout, stderr = runCLI(t, "tokens", "revoke", id)
			if code != 0 || !strings.Contains(stdout, "revoked token "+id) {
				t.Fatalf("revoke: exit %d %q %q", code, stdout, stderr)
			}
			if err := authenticate(token); workload.Reason(err) != workload.ReasonRevokedToken {
				t.Fatalf("after revoke: %v, want revoked_token", err)
			}
			code, stdout, _ = runCLI(t, "tokens", "revoke", id)
			if code != 0 || !strings.Contains(stdout, "already revoked") {
				t.Fatalf("second revoke: exit %d %q", code, stdout)
			}

			code, stdout, _ = runCLI(t, "tokens", "list", "--json")
			var list []map[string]any
			if code != 0 || json.Unmarshal([]byte(stdout), &list) != nil || len(list) != 1 {
				t.Fatalf("list --json: exit %d %s", code, stdout)
			}
			if list[0]["id"] != id || list[0]["owner"] != "deploy-bot" || list[0]["revoked_at"] == nil || list[0]["last_used_at"] == nil || list[0]["expires_at"] == nil {
				t.Fatalf("list --json entry = %v", list[0])
			}
			if strings.Contains(stdout, "hash") {
				t.Fatalf("list --json shows the hash: %s", stdout)
			}

			// Creation and the one revocation are in the audit log, which still verifies.
			st, done := open(t)
			recs, err := st.(store.Store).ReadAudit(context.Background(), 0, 0)
			done()
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, r := range recs {
				types = append(types, r.Event.Type)
				if r.Event.Details["token_id"] != id || r.Event.Actor != "system:cli" || strings.Contains(string(r.Raw), token[len(token)-43:]) {
					t.Fatalf("audit event %s", r.Raw)
				}
			}
			if strings.Join(types, ",") != workload.EventAPITokenCreated+","+workload.EventAPITokenRevoked {
				t.Fatalf("audit events %v, want created, revoked", types)
			}
			if code, stdout, stderr := runCLI(t, "audit", "verify"); code != 0 || !strings.Contains(stdout, "2 entries") {
				t.Fatalf("audit verify: exit %d %s %s", code, stdout, stderr)
			}
		})
	}
}

func TestTokensBadInput(t *testing.T) {
	for name, setup := range tokenStoreEnvs() {
		t.Run(name, func(t *testing.T) {
			open := setup(t)
			cases := []struct {
				args []string
				code int
				want string
			}{
				{[]string{"tokens"}, 2, "usage"},
				{[]string{"tokens", "mint"}, 2, `unknown command "mint"`},
				{[]string{"tokens", "create"}, 2, "--owner NAME"},
				{[]string{"tokens", "create", "--owner", "x", "extra"}, 2, "--owner NAME"},
				{[]string{"tokens", "create", "--owner", "x", "--ttl", "soon"}, 2, "not a duration"},
				{[]string{"tokens", "create", "--owner", "x", "--ttl", "-1h"}, 2, "positive"},
				{[]string{"tokens", "create", "--owner", "two words"}, 1, "invalid token owner"},
				{[]string{"tokens", "revoke"}, 2, "revoke ID"},
				{[]string{"tokens", "revoke", "tok-2345678923"}, 1, `no token "tok-2345678923"`},
				{[]string{"tokens", "list", "extra"}, 2, "usage"},
			}
			for _, tc := range cases {
				code, _, stderr := runCLI(t, tc.args...)
				if code != tc.code || !strings.Contains(stderr, tc.want) {
					t.Errorf("%v: exit %d, stderr %q; want exit %d containing %q", tc.args, code, stderr, tc.code, tc.want)
				}
			}
			st, done := open(t)
			defer done()
			if list, err := st.ListAPITokens(context.Background()); err != nil || len(list) != 0 {
				t.Fatalf("bad input stored tokens: %v, %v", list, err)
			}
		})
	}
}

func TestTokensWhileTheEmbeddedStoreIsInUse(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	t.Setenv("JITBOT_DATA_DIR", dir)
	held, err := bolt.Open(filepath.Join(dir, "jitbot.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	code, _, stderr := runCLI(t, "tokens", "list")
	if code != 1 || !strings.Contains(stderr, "stop it first") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
}
