package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultSlackAuthInterval is how often auth.test is called for readiness when Tuning.SlackAuthInterval is 0.
const DefaultSlackAuthInterval = time.Minute

type slackAuthStatus struct {
	at  time.Time
	err error
}

// slackAuth holds the last auth.test answer.
type slackAuth struct {
	last atomic.Pointer[slackAuthStatus]
}

// checkSlackAuth calls auth.test once and records the answer.
func (a *App) checkSlackAuth(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := a.slack.AuthTestContext(cctx)
	if err == nil && resp == nil {
		err = errors.New("empty answer")
	}
	if err != nil {
		err = fmt.Errorf("slack auth.test: %w", err)
	}
	a.slackAuth.last.Store(&slackAuthStatus{at: time.Now(), err: err})
	return err
}

// watchSlackAuth calls auth.test every interval until ctx ends (New made the first call): a revoked token, a
// removed app or an unreachable Slack makes the replica not ready.
func (a *App) watchSlackAuth(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultSlackAuthInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.checkSlackAuth(ctx); err != nil && ctx.Err() == nil {
			a.log.Error().Err(err).Msg("Slack authentication check failed; this replica reports not ready")
		}
	}
}

// Readiness checks what a replica needs to do its work: the store answers, Slack accepts the bot token
// (when Slack is configured) and the sweeper's leader loop gets answers from the store. It returns the
// problems by component; none means ready.
func (a *App) Readiness(ctx context.Context) map[string]string {
	problems := map[string]string{}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := a.Store.Ping(pctx); err != nil {
		problems["store"] = "unreachable: " + err.Error()
	}
	if a.slack != nil {
		switch st := a.slackAuth.last.Load(); {
		case st == nil:
			problems["slack"] = "auth.test has not answered yet"
		case st.err != nil:
			problems["slack"] = st.err.Error()
		}
	}
	if err := a.Sweeper.LeaderLoopHealth(time.Now()); err != nil {
		problems["leader_loop"] = err.Error()
	}
	return problems
}

func (a *App) serveReady(w http.ResponseWriter, r *http.Request) {
	problems := a.Readiness(r.Context())
	if len(problems) == 0 {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "sweeper_leader": a.Sweeper.Leading()})
		return
	}
	var parts []string
	for k, v := range problems {
		parts = append(parts, k+": "+v)
	}
	sort.Strings(parts)
	reason := strings.Join(parts, "; ")
	a.log.Warn().Str("reason", reason).Msg("readiness check failed")
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "reason": reason, "problems": problems,
		"sweeper_leader": a.Sweeper.Leading()})
}
