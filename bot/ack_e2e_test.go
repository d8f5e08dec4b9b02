package bot_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/oncall/pagerduty/pdfake"
	"github.com/jitbot/jitbot/policy"
)

// gate holds every caller until the test opens it, and tells the test how many are waiting.
type gate struct {
	open    chan struct{}
	arrived chan struct{}
}

func newGate() *gate { return &gate{open: make(chan struct{}), arrived: make(chan struct{}, 1000)} }

func (g *gate) pass(ctx context.Context) error {
	g.arrived <- struct{}{}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitFor waits until n callers have arrived (hang guard: ctx).
func (g *gate) waitFor(t *testing.T, ctx context.Context, n int, what string) {
	t.Helper()
	for i := range n {
		select {
		case <-g.arrived:
		case <-ctx.Done():
			t.Fatalf("only %d of %d %s arrived at the gate", i, n, what)
		}
	}
}

// gatedOnCall asks the real on-call resolver (against a local PagerDuty) once its gate opens.
type gatedOnCall struct {
	g     *gate
	inner approvals.OnCall
}

func (o gatedOnCall) Check(ctx context.Context, user string, rule policy.BreakGlass) (approvals.OnCallAnswer, error) {
	if err := o.g.pass(ctx); err != nil {
		return approvals.OnCallAnswer{}, err
	}
	ans, err := o.inner.Check(ctx, user, rule)
	return ans, err
}

// gatedProvider is the real webhook provider whose Grant waits for its gate.
type gatedProvider struct {
	grants.Provider
	g *gate
}

func (p gatedProvider) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	if err := p.g.pass(ctx); err != nil {
		return "", err
	}
	return p.Provider.Grant(ctx, a)
}

type ackWorld struct {
	*world
	onCall, provider *gate
	users            []string
}

// newAckWorld: ten on-call engineers may request db-oncall, which on-call auto-approval grants at once;
// the on-call lookup and the provider's Grant each wait for a gate the test opens.
func newAckWorld(t *testing.T, mode slackfake.Mode, be backendtest.Backend, tuning app.Tuning) *ackWorld {
	t.Helper()
	now := time.Now()
	pd := pdfake.New(string(hookSecret))
	t.Cleanup(pd.Close)
	var users []string
	var slackUsers []slackfake.User
	var mapping []string
	for i := range 10 {
		u := fmt.Sprintf("U0ONCALL%d", i)
		users = append(users, u)
		slackUsers = append(slackUsers, slackfake.User{ID: u, Name: fmt.Sprintf("oncall%d", i)})
		mapping = append(mapping, fmt.Sprintf("%s: P%d", u, i))
		pd.AddUser(pdfake.User{ID: fmt.Sprintf("P%d", i), Name: u, Email: u + "@example.com"})
		pd.AddOnCall(pdfake.OnCall{UserID: fmt.Sprintf("P%d", i), ScheduleID: "PSCHED", ScheduleName: "Database", EscalationPolicyID: "PEP",
			EscalationPolicyName: "Database", Level: 1, Start: now.Add(-time.Hour), End: now.Add(2 * time.Hour)})
	}
	emu := slackfake.New(slackfake.Options{
		Users:    append(slackUsers, slackfake.User{ID: carol, Name: "carol"}),
		Channels: []slackfake.Channel{{ID: approvalsCh, Name: "approvals"}, {ID: auditCh, Name: "audit"}, {ID: generalCh, Name: "general"}},
	})
	t.Cleanup(emu.Close)
	recv := webhookfake.NewServer(hookSecret)
	t.Cleanup(recv.Close)
	pol, err := policy.Parse("ack.yaml", []byte(fmt.Sprintf(`version: 1
defaults: {approval_channel: %s, audit_channel: %s}
providers:
  target:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "%s/hook", secret_env: HOOK_SECRET, timeout: 5s}
oncall_sources:
  pd:
    type: pagerduty
    api_key_env: PD_KEY
    base_url: %s
    users: {%s}
roles:
  db-oncall:
    provider: target
    target: {resource: db, permission: oncall}
    requesters: {users: [%s]}
    approvers: {users: [%s]}
    default_duration: 30m
    max_duration: 1h
    breakglass: {source: pd, schedules: [PSCHED], max_level: 1, auto_approve: true}
`, approvalsCh, auditCh, recv.URL, pd.URL, strings.Join(mapping, ", "), strings.Join(users, ", "), carol)))
	if err != nil {
		t.Fatal(err)
	}
	getenv := func(string) string { return string(hookSecret) }
	providers, err := app.BuildProviders(context.Background(), pol, getenv)
	if err != nil {
		t.Fatal(err)
	}
	aw := &ackWorld{onCall: newGate(), provider: newGate(), users: users}
	providers["target"] = gatedProvider{Provider: providers["target"], g: aw.provider}
	resolver, err := app.BuildOnCall(pol, getenv, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := be.Prepare(t)()
	t.Cleanup(func() { _ = st.Close() })
	sc := &app.SlackConfig{BotToken: emu.BotToken(), SigningSecret: emu.SigningSecret(), APIURL: emu.APIURL()}
	if mode == slackfake.ModeSocket {
		sc.AppToken = emu.AppToken()
	}
	// The gates hold work far longer than a provider attempt may take: no attempt times out meanwhile.
	tuning.ProviderTimeout, tuning.LeaderTTL = time.Minute, 3*time.Second
	a, err := app.New(t.Context(), app.Deps{Policy: pol, Store: st, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Slack: sc,
		Getenv: getenv, Providers: providers, OnCall: gatedOnCall{g: aw.onCall, inner: resolver}, Tuning: tuning})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	emu.SetRequestURLs(srv.URL+"/slack/commands", srv.URL+"/slack/interactions", srv.URL+"/slack/events")
	emu.SetMode(mode)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 90*time.Second) // a hang guard, not a speed check
	t.Cleanup(func() {
		// Open the gates so that nothing is left waiting, then stop.
		for _, g := range []*gate{aw.onCall, aw.provider} {
			select {
			case <-g.open:
			default:
				close(g.open)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app stopped with %v", err)
		}
		wcancel()
	})
	if mode == slackfake.ModeSocket {
		if err := emu.WaitForSocket(wctx); err != nil {
			t.Fatalf("bot never connected over Socket Mode: %v", err)
		}
	}
	aw.world = &world{t: t, ctx: wctx, emu: emu, recv: recv, app: a, st: st, mode: mode, url: srv.URL}
	return aw
}

// acked sends /jit text as user and fails unless Slack got an acknowledgement (within its 3 seconds:
// the emulator gives up after that, as Slack does) saying the work is under way.
func (w *ackWorld) acked(user, text, says string) *slackfake.Response {
	w.t.Helper()
	resp, err := w.emu.SlashCommand(w.ctx, user, generalCh, "/jit", text)
	if err != nil {
		w.t.Fatalf("/jit %s by %s: %v", text, user, err)
	}
	if resp.TimedOut || resp.StatusCode != 200 || len(resp.Problems) > 0 {
		w.t.Fatalf("/jit %s by %s was not acknowledged: timed out %v, status %d, problems %v", text, user, resp.TimedOut, resp.StatusCode, resp.Problems)
	}
	if says != "" {
		mustContain(w.t, "ack of /jit "+text, ackText(w.t, resp), says)
	}
	return resp
}

// TestAckBeforeSlowWork: with the on-call lookup and then the provider blocked, ten people's commands are
// all acknowledged while the slow work waits (so the acknowledgement cannot depend on it: no wall clock is
// needed to show it), on both transports; once the gates open, each person gets their answer.
func TestAckBeforeSlowWork(t *testing.T) {
	for i, mode := range []slackfake.Mode{slackfake.ModeHTTP, slackfake.ModeSocket} {
		be := backendtest.All()[i%len(backendtest.All())]
		t.Run(fmt.Sprintf("%s-%s", map[slackfake.Mode]string{slackfake.ModeHTTP: "http", slackfake.ModeSocket: "socket"}[mode], be.Name), func(t *testing.T) {
			t.Parallel()
			w := newAckWorld(t, mode, be, app.Tuning{})
			var requests []*slackfake.Response
			for i, u := range w.users {
				requests = append(requests, w.acked(u, fmt.Sprintf("request db-oncall 30m INC-%d database down", i), "Sending your request for `db-oncall` (30m)…"))
			}
			w.onCall.waitFor(t, w.ctx, len(w.users), "on-call lookups")

			// The lookups answer; every activation now waits at the provider. Commands are still
			// acknowledged, and answered, meanwhile.
			close(w.onCall.open)
			w.provider.waitFor(t, w.ctx, len(w.users), "provider grants")
			for _, u := range w.users {
				list := w.acked(u, "list", "")
				mustContain(t, "list while the provider is blocked", w.answer(list), "`db-oncall` activating")
			}
			if n := len(w.recv.Deliveries()); n != 0 {
				t.Fatalf("%d provider deliveries while the gate was closed", n)
			}

			close(w.provider.open)
			for i, u := range w.users {
				mustContain(t, "answer to the request", w.answer(requests[i]), "was approved at once because you are on call")
				w.dm(u, "Your access to `db-oncall` is active until")
			}
			if n := len(w.recv.Deliveries()); n != len(w.users) {
				t.Fatalf("%d grants at the provider, want %d", n, len(w.users))
			}
		})
	}
}

// TestFullPoolStillAcks: when the worker pool and its queue are full, a command is still acknowledged, the
// person is told jitbot is busy, and nothing is done; the work already taken finishes.
func TestFullPoolStillAcks(t *testing.T) {
	for i, mode := range []slackfake.Mode{slackfake.ModeHTTP, slackfake.ModeSocket} {
		be := backendtest.All()[(i+1)%len(backendtest.All())]
		t.Run(fmt.Sprintf("%s-%s", map[slackfake.Mode]string{slackfake.ModeHTTP: "http", slackfake.ModeSocket: "socket"}[mode], be.Name), func(t *testing.T) {
			t.Parallel()
			w := newAckWorld(t, mode, be, app.Tuning{SlackWorkers: 1, SlackQueue: 1})
			first := w.acked(w.users[0], "request db-oncall 30m INC-1 first", "Sending your request")
			w.onCall.waitFor(t, w.ctx, 1, "on-call lookups") // the only worker is busy
			second := w.acked(w.users[1], "request db-oncall 30m INC-2 queued", "Sending your request")
			w.acked(w.users[2], "request db-oncall 30m INC-3 refused", "jitbot is too busy to take this right now, so nothing was done")
			w.acked(w.users[3], "list", "jitbot is too busy")

			close(w.onCall.open)
			close(w.provider.open)
			mustContain(t, "first answer", w.answer(first), "was approved at once")
			mustContain(t, "second answer", w.answer(second), "was approved at once")
			w.app.Bot.Wait()
			if rs := w.requests(w.users[2]); len(rs) != 0 {
				t.Fatalf("the refused command stored %+v", rs)
			}
		})
	}
}
