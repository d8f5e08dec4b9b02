package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

type readyBody struct {
	Status   string            `json:"status"`
	Reason   string            `json:"reason"`
	Problems map[string]string `json:"problems"`
}

func readyz(t *testing.T, h http.Handler) (int, readyBody) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	var b readyBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("readyz body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, b
}

// waitReadyz polls /readyz until cond holds for its answer.
func waitReadyz(t *testing.T, h http.Handler, what string, cond func(code int, b readyBody) bool) readyBody {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, b := readyz(t, h)
		if cond(code, b) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last /readyz: %d %+v", what, code, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type readyEnv struct {
	a    *app.App
	stop func()
}

func startApp(t *testing.T, st store.Store, slack *app.SlackConfig) *readyEnv {
	t.Helper()
	recv := webhookfake.NewServer(hookSecret)
	t.Cleanup(recv.Close)
	a, err := app.New(t.Context(), app.Deps{Policy: testPolicy(t, recv.URL+"/hook"), Store: st, Slack: slack, Holder: "ready-test",
		Tuning: app.Tuning{LeaderTTL: 3 * time.Second, SlackAuthInterval: 20 * time.Millisecond},
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
		Getenv: func(k string) string { return string(hookSecret) }})
	if err != nil {
		t.Fatal(err)
	}
	return &readyEnv{a: a}
}

func (e *readyEnv) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.a.Run(ctx) }()
	e.stop = func() { cancel(); <-done }
}

// TestReadyzReportsSlackAuth: /readyz is not ready, with the reason, until auth.test succeeds; a bot token
// Slack refuses keeps it not ready.
func TestReadyzReportsSlackAuth(t *testing.T) {
	emu := slackfake.New(slackfake.Options{Channels: []slackfake.Channel{{ID: "C0APPROVALS", Name: "approvals"}}})
	t.Cleanup(emu.Close)

	t.Run("refused token", func(t *testing.T) {
		st := openBolt(t)
		e := startApp(t, st, &app.SlackConfig{BotToken: "xoxb-revoked", SigningSecret: emu.SigningSecret(), APIURL: emu.APIURL(), SkipGroupCheck: true})
		code, b := readyz(t, e.a.Handler())
		// New already asked auth.test once; the leader loop starts with Run.
		if code != 503 || !strings.Contains(b.Problems["slack"], "invalid_auth") || !strings.Contains(b.Problems["leader_loop"], "has not run") {
			t.Fatalf("before Run: %d %+v", code, b)
		}
		e.run()
		defer e.stop()
		b = waitReadyz(t, e.a.Handler(), "the auth.test refusal", func(code int, b readyBody) bool {
			return code == 503 && strings.Contains(b.Problems["slack"], "invalid_auth") && b.Problems["leader_loop"] == ""
		})
		if !strings.Contains(b.Reason, "slack: slack auth.test: invalid_auth") || strings.Contains(b.Reason, "xoxb-revoked") {
			t.Fatalf("reason %q", b.Reason)
		}
	})
	t.Run("accepted token", func(t *testing.T) {
		e := startApp(t, openBolt(t), &app.SlackConfig{BotToken: emu.BotToken(), SigningSecret: emu.SigningSecret(), APIURL: emu.APIURL()})
		e.run()
		defer e.stop()
		waitReadyz(t, e.a.Handler(), "ready", func(code int, _ readyBody) bool { return code == 200 })
	})
}

// TestReadyzReportsStoreAndLeaderLoop: a Redis that goes away, and a Redis that answers PING but refuses the
// sweeper's lock, both make the replica not ready with the reason.
func TestReadyzReportsStoreAndLeaderLoop(t *testing.T) {
	t.Run("store gone", func(t *testing.T) {
		url, _ := redistest.StartServer(t)
		st, err := jitredis.Open(context.Background(), url+"?max_retries=-1&dial_timeout=200ms", jitredis.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		e := startApp(t, st, nil)
		e.run()
		defer e.stop()
		waitReadyz(t, e.a.Handler(), "ready", func(code int, _ readyBody) bool { return code == 200 })
		// The server exits (SHUTDOWN answers with a closed connection).
		_ = redistest.ClientFor(t, url).Do(context.Background(), "SHUTDOWN", "NOSAVE").Err()
		waitReadyz(t, e.a.Handler(), "the store failure", func(code int, b readyBody) bool {
			return code == 503 && strings.Contains(b.Problems["store"], "unreachable") && strings.Contains(b.Reason, "store: unreachable")
		})
	})
	t.Run("lock refused", func(t *testing.T) {
		// An ACL that lets jitbot read and write everything but its lock keys: PING works, the leader loop
		// cannot take the sweeper lock.
		_, addr := redistest.StartServer(t, "--user", "jitbot", "on", ">pw", "~{jr}:[^l]*", "+@all", "--user", "default", "off")
		st, err := jitredis.Open(context.Background(), "redis://jitbot:pw@"+addr+"/0", jitredis.Options{Prefix: "{jr}"})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		e := startApp(t, st, nil)
		e.run()
		defer e.stop()
		b := waitReadyz(t, e.a.Handler(), "the leader loop failure", func(code int, b readyBody) bool {
			return code == 503 && strings.Contains(b.Problems["leader_loop"], "NOPERM")
		})
		if b.Problems["store"] != "" || !strings.Contains(b.Problems["leader_loop"], "NOPERM") {
			t.Fatalf("problems: %+v", b.Problems)
		}
	})
}

func openBolt(t *testing.T) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
