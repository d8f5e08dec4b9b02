package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jitbot/jitbot/internal/app"
)

// reloadOnSIGHUP reloads the policy file on every SIGHUP until ctx ends or the returned stop is called. An
// invalid file keeps the policy in force (the App logs and audits why).
func reloadOnSIGHUP(ctx context.Context, a *app.App) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = a.ReloadPolicy(ctx, "sighup")
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}

// pollInterval maps JITBOT_POLICY_POLL_INTERVAL (0: off) onto app.Tuning.PolicyPollInterval (negative: off).
func pollInterval(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
