// Command baseline is the floor any Slack app pays for a slash command, run as its own process so the
// benchmarks compare it with the deployed `jitbot serve` binary under the same load: verify the Slack
// signature with slack-go, parse the form, write one Redis key (the same replay record jitbot writes, through
// the same store), answer 200 with an ephemeral message. It is a benchmark fixture, not a product.
//
// Environment: BASELINE_LISTEN_ADDR, SLACK_SIGNING_SECRET, JITBOT_REDIS_URL, JITBOT_REDIS_KEY_PREFIX.
// It prints "ready" on stdout once it listens.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/slack-go/slack"

	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/redis"
)

// maxBody matches jitbot's own limit on a Slack request body (bot.MaxBodyBytes).
const maxBody = 256 << 10

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	secret := os.Getenv("SLACK_SIGNING_SECRET")
	if secret == "" {
		return fmt.Errorf("SLACK_SIGNING_SECRET is not set")
	}
	st, err := redis.Open(ctx, os.Getenv("JITBOT_REDIS_URL"), redis.Options{Prefix: os.Getenv("JITBOT_REDIS_KEY_PREFIX")})
	if err != nil {
		return err
	}
	defer st.Close()
	ln, err := net.Listen("tcp", os.Getenv("BASELINE_LISTEN_ADDR"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler(secret, st), ReadHeaderTimeout: 5 * time.Second}
	fmt.Println("ready")
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

func handler(secret string, st store.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "could not read the request", http.StatusBadRequest)
			return
		}
		sv, err := slack.NewSecretsVerifier(r.Header, secret)
		if err == nil {
			_, _ = sv.Write(body)
			err = sv.Ensure()
		}
		if err != nil {
			http.Error(w, "invalid Slack signature", http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sc, err := slack.SlashCommandParse(r)
		if err != nil {
			http.Error(w, "malformed slash command", http.StatusBadRequest)
			return
		}
		if first, err := st.MarkSeen(r.Context(), "slack-sig:"+r.Header.Get("X-Slack-Signature"), 6*time.Minute); err != nil || !first {
			http.Error(w, "replayed or store down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		// Echo what the benchmark's command mix checks for, so the same signed shots validate.
		_, _ = fmt.Fprintf(w, `{"response_type":"ephemeral","text":"%s: Sending your request for"}`, sc.UserID)
	})
}
