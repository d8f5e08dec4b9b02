package bot_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

const (
	alice       = "U0ALICE" // requester
	bob         = "U0BOB"   // approver (in the DBA user group)
	carol       = "U0CAROL" // approver (listed directly)
	dave        = "U0DAVE"  // nobody
	approvalsCh = "C0APPROVALS"
	auditCh     = "C0AUDIT"
	generalCh   = "C0GENERAL"
)

var hookSecret = []byte("slack-e2e-signing-secret-0123456789")

type world struct {
	t    *testing.T
	ctx  context.Context
	emu  *slackfake.Server
	recv *webhookfake.Server
	app  *app.App
	st   store.Store
	mode slackfake.Mode
	url  string // the bot's HTTP server
}

// worldConfig varies the workspace and the policy.
type worldConfig struct {
	freePlan  bool // the workspace is on Slack's free plan (no user groups)
	staticDBA bool // the policy lists the DBA user group statically under groups:
	// approvalsDown: the bot is not a member of the approval channel (every post there fails).
	approvalsDown bool
	// pagerDuty, when set, is the URL of a PagerDuty API (pdfake) the policy's break-glass role asks.
	pagerDuty string
}

func newEmulator(t *testing.T, cfg worldConfig) *slackfake.Server {
	t.Helper()
	emu := slackfake.New(slackfake.Options{
		Users:      []slackfake.User{{ID: alice, Name: "alice"}, {ID: bob, Name: "bob"}, {ID: carol, Name: "carol"}, {ID: dave, Name: "dave"}},
		UserGroups: []slackfake.UserGroup{{ID: "S0DBA", Handle: "dba", Members: []string{bob}}},
		Channels:   []slackfake.Channel{{ID: approvalsCh, Name: "approvals", BotNotMember: cfg.approvalsDown}, {ID: auditCh, Name: "audit"}, {ID: generalCh, Name: "general"}},
		FreePlan:   cfg.freePlan,
	})
	t.Cleanup(emu.Close)
	return emu
}

// testPolicy: alice may request db-admin (2 approvals: the DBA group and carol) and db-read (1 approval:
// carol or the DBA group); dave may request db-root only, which nobody else may.
func testPolicy(t *testing.T, hookURL string, cfg worldConfig) *policy.Policy {
	t.Helper()
	groups := ""
	if cfg.staticDBA {
		groups = "groups:\n  S0DBA: [" + bob + "]\n"
	}
	src := fmt.Sprintf(`version: 1
defaults: {approval_channel: %s, audit_channel: %s}
%sproviders:
  target:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "%s/hook", secret_env: HOOK_SECRET, timeout: 5s}
roles:
  db-admin:
    description: Admin on the test database
    provider: target
    target: {resource: db, permission: admin}
    requesters: {users: [%s]}
    approvers: {groups: [S0DBA], users: [%s]}
    approvals: 2
    default_duration: 2s
    max_duration: 1h
  db-read:
    provider: target
    target: {resource: db, permission: read}
    requesters: {users: [%s]}
    approvers: {groups: [S0DBA], users: [%s]}
    default_duration: 1h
    max_duration: 2h
  db-root:
    provider: target
    target: {resource: db, permission: root}
    requesters: {users: [%s]}
    approvers: {users: [%s]}
    default_duration: 1h
    max_duration: 1h
`, approvalsCh, auditCh, groups, hookURL, alice, carol, alice, carol, dave, carol)
	if cfg.pagerDuty != "" {
		src = strings.Replace(src, "roles:\n", fmt.Sprintf(`oncall_sources:
  pd:
    type: pagerduty
    api_key_env: PD_KEY
    base_url: %s
    users: {%s: PALICE}
roles:
  db-bg:
    description: Emergency admin
    provider: target
    target: {resource: db, permission: emergency}
    requesters: {users: [%s]}
    approvers: {users: [%s]}
    max_duration: 1h
    breakglass: {source: pd, schedules: [PSCHED], max_level: 1, max_duration: 30m, review_every: 1m}
`, cfg.pagerDuty, alice, alice, carol), 1)
	}
	pol, err := policy.Parse("slack-e2e.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func newApp(t *testing.T, mode slackfake.Mode, emu *slackfake.Server, st store.Store, pol *policy.Policy) (*app.App, error) {
	sc := &app.SlackConfig{BotToken: emu.BotToken(), SigningSecret: emu.SigningSecret(), APIURL: emu.APIURL()}
	if mode == slackfake.ModeSocket {
		sc.AppToken = emu.AppToken()
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	return app.New(t.Context(), app.Deps{Policy: pol, Store: st, Logger: log, Slack: sc,
		Getenv: func(string) string { return string(hookSecret) },
		Tuning: app.Tuning{ProviderTimeout: 5 * time.Second, LeaderTTL: 3 * time.Second}})
}

func newWorld(t *testing.T, mode slackfake.Mode, be backendtest.Backend) *world {
	return newWorldWith(t, mode, be, worldConfig{})
}

func newWorldWith(t *testing.T, mode slackfake.Mode, be backendtest.Backend, cfg worldConfig) *world {
	t.Helper()
	emu := newEmulator(t, cfg)
	recv := webhookfake.NewServer(hookSecret)
	t.Cleanup(recv.Close)
	pol := testPolicy(t, recv.URL, cfg)
	st := be.Prepare(t)()
	t.Cleanup(func() { _ = st.Close() })
	a, err := newApp(t, mode, emu, st, pol)
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
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app stopped with %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang guard, not a speed check
	t.Cleanup(wcancel)
	if mode == slackfake.ModeSocket {
		if err := emu.WaitForSocket(wctx); err != nil {
			t.Fatalf("bot never connected over Socket Mode: %v", err)
		}
	}
	return &world{t: t, ctx: wctx, emu: emu, recv: recv, app: a, st: st, mode: mode, url: srv.URL}
}

func (w *world) command(user, text string) *slackfake.Response {
	w.t.Helper()
	resp, err := w.emu.SlashCommand(w.ctx, user, generalCh, "/jit", text)
	if err != nil {
		w.t.Fatalf("/jit %s: %v", text, err)
	}
	if resp.TimedOut || len(resp.Problems) > 0 {
		w.t.Fatalf("/jit %s: timed out %v, problems %v", text, resp.TimedOut, resp.Problems)
	}
	return resp
}

func (w *world) approvalMessage(match func(slackfake.Message) bool) slackfake.Message {
	w.t.Helper()
	m, err := w.emu.WaitForMessage(w.ctx, approvalsCh, func(m slackfake.Message) bool { return m.ThreadTS == "" && match(m) })
	if err != nil {
		w.t.Fatalf("approval message: %v (messages: %+v)", err, w.emu.Messages(approvalsCh))
	}
	return m
}

func (w *world) click(user string, m slackfake.Message, action, value string) *slackfake.Response {
	w.t.Helper()
	resp, err := w.emu.ClickButton(w.ctx, user, m.Channel, m.TS, action, value, "")
	if err != nil {
		w.t.Fatalf("click %s by %s: %v", action, user, err)
	}
	if resp.TimedOut || resp.StatusCode != 200 {
		w.t.Fatalf("click %s: status %d timed out %v", action, resp.StatusCode, resp.TimedOut)
	}
	return resp
}

func (w *world) ephemeral(user, contains string) {
	w.t.Helper()
	err := w.emu.WaitFor(w.ctx, func() bool {
		for _, ch := range []string{approvalsCh, generalCh} {
			for _, e := range w.emu.Ephemerals(ch, user) {
				if strings.Contains(e.Text, contains) {
					return true
				}
			}
		}
		return false
	})
	if err != nil {
		w.t.Fatalf("no ephemeral for %s containing %q: %v", user, contains, err)
	}
}

func (w *world) dm(user, contains string) slackfake.Message {
	w.t.Helper()
	m, err := w.emu.WaitForDM(w.ctx, user, func(m slackfake.Message) bool { return strings.Contains(m.Text, contains) })
	if err != nil {
		w.t.Fatalf("no DM to %s containing %q: %v (DMs: %+v)", user, contains, err, w.emu.DMs(user))
	}
	return m
}

func (w *world) auditLine(contains string) {
	w.t.Helper()
	if _, err := w.emu.WaitForMessage(w.ctx, auditCh, func(m slackfake.Message) bool { return strings.Contains(m.Text, contains) }); err != nil {
		w.t.Fatalf("no audit line containing %q: %v", contains, err)
	}
}

func TestSlackEndToEnd(t *testing.T) {
	for _, mode := range []slackfake.Mode{slackfake.ModeHTTP, slackfake.ModeSocket} {
		be := backendtest.All()[0]
		if mode == slackfake.ModeSocket {
			be = backendtest.All()[1] // Socket Mode against Redis, HTTP against the embedded store
		}
		name := "http-" + be.Name
		if mode == slackfake.ModeSocket {
			name = "socket-" + be.Name
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			flows := []struct {
				name string
				run  func(t *testing.T, w *world)
				cfg  worldConfig
			}{
				{"QuorumOfTwoGrantExpireRevoke", testQuorumFlow, worldConfig{}},
				{"RequestByModal", testRequestByModal, worldConfig{}},
				{"DenyWithReason", testDenyWithReason, worldConfig{}},
				{"RepeatedAndLateClicks", testRepeatedAndLateClicks, worldConfig{}},
				{"Done", testDone, worldConfig{}},
				{"Extend", testExtend, worldConfig{}},
				{"CommandsAndBadInput", testCommands, worldConfig{}},
				{"AppHome", testAppHome, worldConfig{}},
				{"RateLimitedUpdate", testRateLimitedUpdate, worldConfig{}},
				{"FailingPostMessage", testFailingPostMessage, worldConfig{}},
				{"ApprovalChannelDown", testApprovalChannelDown, worldConfig{approvalsDown: true}},
			}
			t.Run("BreakGlass", func(t *testing.T) {
				t.Parallel()
				testBreakGlass(t, mode, be)
			})
			t.Run("BreakGlassByModal", func(t *testing.T) {
				t.Parallel()
				testBreakGlassModal(t, mode, be)
			})
			for _, f := range flows {
				t.Run(f.name, func(t *testing.T) {
					t.Parallel()
					f.run(t, newWorldWith(t, mode, be, f.cfg))
				})
			}
			if mode == slackfake.ModeHTTP {
				t.Run("Security", func(t *testing.T) {
					t.Parallel()
					testSecurity(t, newWorld(t, mode, be))
				})
			}
			if mode == slackfake.ModeSocket {
				t.Run("Redelivery", func(t *testing.T) {
					t.Parallel()
					testSocketRedelivery(t, newWorld(t, mode, be))
				})
			}
			t.Run("FreePlanUserGroups", func(t *testing.T) {
				t.Parallel()
				testFreePlan(t, mode, be)
			})
		})
	}
}

func testQuorumFlow(t *testing.T, w *world) {
	resp := w.command(alice, "request db-admin 2s INC-4521 failover")
	if a := w.answer(resp); !strings.Contains(a, "waiting for 2 approval(s)") {
		t.Fatalf("answer = %s", a)
	}
	msg := w.approvalMessage(func(m slackfake.Message) bool { return strings.Contains(string(m.Blocks), "INC-4521 failover") })
	if !strings.Contains(string(msg.Blocks), `"action_id":"jit_approve"`) || !strings.Contains(string(msg.Blocks), "0 of 2") {
		t.Fatalf("approval message blocks = %s", msg.Blocks)
	}
	reqID := regexp.MustCompile(`Access request (r-[a-z0-9]+)`).FindStringSubmatch(string(msg.Blocks))[1]

	// The requester and a bystander are refused, privately, and nothing changes.
	w.click(alice, msg, "jit_approve", reqID)
	w.ephemeral(alice, "You cannot approve your own request")
	w.click(dave, msg, "jit_approve", reqID)
	w.ephemeral(dave, "You are not an approver for db-admin")

	w.click(bob, msg, "jit_approve", reqID) // approver through the Slack user group
	w.ephemeral(bob, "recorded (1 of 2)")
	w.click(carol, msg, "jit_approve", reqID)

	granted, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "grant" })
	if err != nil {
		t.Fatalf("no grant at the provider: %v", err)
	}
	if granted.Payload.Principal != alice || granted.Payload.RequestID != reqID {
		t.Fatalf("grant payload %+v", granted.Payload)
	}
	w.dm(alice, "Your access to `db-admin` is active until")
	w.approvalMessage(func(m slackfake.Message) bool {
		b := string(m.Blocks)
		return m.TS == msg.TS && strings.Contains(b, "Active until") && !strings.Contains(b, "jit_approve")
	})
	// Expiry, revocation, and the messages that say so.
	if _, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "revoke" }); err != nil {
		t.Fatalf("no revoke at the provider: %v", err)
	}
	w.dm(alice, "Your access to `db-admin` has ended")
	w.approvalMessage(func(m slackfake.Message) bool {
		return m.TS == msg.TS && strings.Contains(string(m.Blocks), "Access ended (expired)")
	})
	for _, ev := range []string{"`requested`", "`approved` <@" + bob + ">", "`granted`", "`grant-expired`", "`revoked`"} {
		w.auditLine(ev)
	}
	// Each event is also a reply in the request's thread.
	if err := w.emu.WaitFor(w.ctx, func() bool {
		n := 0
		for _, m := range w.emu.Messages(approvalsCh) {
			if m.ThreadTS == msg.TS {
				n++
			}
		}
		return n >= 5 // approved ×2, granted, expired, revoked
	}); err != nil {
		t.Fatalf("thread replies: %v", err)
	}
}
