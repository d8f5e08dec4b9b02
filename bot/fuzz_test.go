package bot_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http/httpguts"

	"github.com/jitbot/jitbot/bot"
	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/policy"
)

// formatCommand writes a parsed command back as slash-command text (the inverse of bot.Parse).
func formatCommand(c bot.Command) string {
	switch c.Verb {
	case bot.VerbModal:
		return ""
	case bot.VerbRequest, bot.VerbBreak:
		return fmt.Sprintf("%s %s %s %s", c.Verb, c.Role, policy.FormatDuration(c.Duration), c.Reason)
	case bot.VerbDone, bot.VerbCancel:
		return fmt.Sprintf("%s %s", c.Verb, c.ID)
	case bot.VerbExtend:
		return fmt.Sprintf("%s %s %s", c.Verb, c.ID, policy.FormatDuration(c.Duration))
	}
	return string(c.Verb)
}

// FuzzParseCommand: the slash-command grammar never panics, refuses only with a usage message, and what it
// accepts, written back out, parses to the same command.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"", "help", "roles", "list", "request db-admin 1h INC-1 failover", "REQUEST db 90m x",
		"breakglass db-bg 20m INC-4521 primary down", "extend g-1 30m", "extend g-1 1d12h", "done g-1", "cancel r-1",
		"request role 5", "request db 1h0m0s  spaced   reason ", "extend g-1 -1h", "request db 99999999999h x", "\u00a0help", "roles please"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := bot.Parse("/jit", text)
		if err != nil {
			var ue *bot.UsageError
			if !errors.As(err, &ue) || ue.Msg == "" {
				t.Fatalf("Parse(%q) failed without a usage message: %v", text, err)
			}
			return
		}
		again, err := bot.Parse("/jit", formatCommand(c))
		if err != nil {
			t.Fatalf("Parse(%q) = %+v, but its formatted form %q does not parse: %v", text, c, formatCommand(c), err)
		}
		if again != c {
			t.Fatalf("round trip of %q: %+v became %+v (via %q)", text, c, again, formatCommand(c))
		}
	})
}

// fuzzBot is a real jitbot (embedded store, the Slack emulator) serving HTTP mode, shared by the iterations
// of one fuzzing process.
type fuzzBot struct {
	emu    *slackfake.Server
	url    string
	secret string
}

func newFuzzBot(f *testing.F, mode slackfake.Mode) *fuzzBot {
	f.Helper()
	emu := slackfake.New(slackfake.Options{
		Users:    []slackfake.User{{ID: alice, Name: "alice"}, {ID: carol, Name: "carol"}},
		Channels: []slackfake.Channel{{ID: approvalsCh, Name: "approvals"}, {ID: auditCh, Name: "audit"}, {ID: generalCh, Name: "general"}},
	})
	f.Cleanup(emu.Close)
	recv := webhookfake.NewServer(hookSecret)
	f.Cleanup(recv.Close)
	pol, err := policy.Parse("fuzz.yaml", []byte(fmt.Sprintf(`version: 1
defaults: {approval_channel: %s, audit_channel: %s}
providers:
  target:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "%s/hook", secret_env: HOOK_SECRET, timeout: 5s}
roles:
  db-read:
    provider: target
    target: {resource: db, permission: read}
    requesters: {users: [%s]}
    approvers: {users: [%s]}
    default_duration: 1h
    max_duration: 2h
`, approvalsCh, auditCh, recv.URL, alice, carol)))
	if err != nil {
		f.Fatal(err)
	}
	st := backendtest.All()[0].Prepare(f)()
	f.Cleanup(func() { _ = st.Close() })
	sc := &app.SlackConfig{BotToken: emu.BotToken(), SigningSecret: emu.SigningSecret(), APIURL: emu.APIURL()}
	if mode == slackfake.ModeSocket {
		sc.AppToken = emu.AppToken()
	}
	a, err := app.New(f.Context(), app.Deps{Policy: pol, Store: st, Logger: zerolog.Nop(), Slack: sc,
		Getenv: func(string) string { return string(hookSecret) }, Tuning: app.Tuning{ProviderTimeout: 5 * time.Second}})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	f.Cleanup(srv.Close)
	emu.SetRequestURLs(srv.URL+"/slack/commands", srv.URL+"/slack/interactions", srv.URL+"/slack/events")
	emu.SetMode(mode)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	f.Cleanup(func() { cancel(); <-done })
	if mode == slackfake.ModeSocket {
		wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
		defer wcancel()
		if err := emu.WaitForSocket(wctx); err != nil {
			f.Fatal(err)
		}
	}
	return &fuzzBot{emu: emu, url: srv.URL, secret: emu.SigningSecret()}
}

var fuzzPaths = []string{"/slack/commands", "/slack/interactions", "/slack/events"}

func (fb *fuzzBot) post(t *testing.T, path string, body []byte, ts, sig string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, fb.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ct := "application/x-www-form-urlencoded"
	if path == "/slack/events" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-Slack-Request-Timestamp", ts)
	req.Header.Set("X-Slack-Signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func seedBodies() [][]byte {
	cmd := url.Values{"team_id": {"T0"}, "channel_id": {generalCh}, "user_id": {alice}, "command": {"/jit"},
		"text": {"request db-read 1h INC-1 fuzz"}, "response_url": {"http://127.0.0.1:1/r"}, "trigger_id": {"1.2.3"}}
	click, _ := json.Marshal(map[string]any{"type": "block_actions", "user": map[string]any{"id": carol}, "trigger_id": "1.2.3",
		"actions":   []any{map[string]any{"action_id": "jit_approve", "block_id": "decide:r-1", "value": "r-1", "type": "button"}},
		"container": map[string]any{"type": "message", "channel_id": approvalsCh, "message_ts": "1.1"}, "state": map[string]any{"values": map[string]any{}}})
	submit, _ := json.Marshal(map[string]any{"type": "view_submission", "user": map[string]any{"id": alice}, "trigger_id": "1.2.3",
		"view": map[string]any{"id": "V1", "callback_id": "jit_extend_modal", "private_metadata": "g-1",
			"state": map[string]any{"values": map[string]any{"reason": map[string]any{"value": map[string]any{"type": "plain_text_input", "value": "30m"}}}}}})
	event := []byte(`{"type":"event_callback","event_id":"Ev1","event":{"type":"app_home_opened","user":"` + alice + `","tab":"home"}}`)
	return [][]byte{[]byte(cmd.Encode()), []byte(url.Values{"payload": {string(click)}}.Encode()),
		[]byte(url.Values{"payload": {string(submit)}}.Encode()), event, []byte(`{"type":"url_verification","challenge":"c"}`), {}, []byte("payload=%7B")}
}

// FuzzSlackHTTP: the real HTTP handler, given any body on any path, signed correctly or with any signature
// header, never panics and never fails with a server error; a body signed correctly is parsed or refused
// with 400; a signature header that is not a spelling of the true HMAC is refused with 401, always.
func FuzzSlackHTTP(f *testing.F) {
	for i, b := range seedBodies() {
		f.Add(uint8(i%3), b, true, "")
		f.Add(uint8(i%3), b, false, "v0="+strings.Repeat("0", 64))
	}
	fb := newFuzzBot(f, slackfake.ModeHTTP)
	f.Fuzz(func(t *testing.T, path uint8, body []byte, signed bool, sigHeader string) {
		p := fuzzPaths[int(path)%len(fuzzPaths)]
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		mac := hmac.New(sha256.New, []byte(fb.secret))
		fmt.Fprintf(mac, "v0:%s:", ts)
		mac.Write(body)
		want := mac.Sum(nil)
		sig := sigHeader
		if signed {
			sig = "v0=" + hex.EncodeToString(want)
		}
		if !httpguts.ValidHeaderFieldValue(sig) {
			t.Skip("no HTTP client can send this header value, so neither can Slack nor an attacker")
		}
		status, answer := fb.post(t, p, body, ts, sig)
		if status >= 500 {
			t.Fatalf("%s answered %d %q", p, status, answer)
		}
		genuine := false
		if h, ok := strings.CutPrefix(strings.TrimSpace(sig), "v0="); ok {
			if got, err := hex.DecodeString(h); err == nil && hmac.Equal(got, want) {
				genuine = true
			}
		}
		if !genuine && status != http.StatusUnauthorized && len(body) <= bot.MaxBodyBytes {
			t.Fatalf("%s accepted signature %q with status %d", p, sig, status)
		}
		if genuine && status != http.StatusOK && status != http.StatusBadRequest && status != http.StatusUnauthorized {
			t.Fatalf("%s answered a signed body with %d %q", p, status, answer)
		}
	})
}

// FuzzSocketEnvelope: the real Socket Mode client and the bot's handlers, given any frame, never panic.
// After each frame a valid envelope is delivered and must be acknowledged: frames are read in order, so
// the fuzzed frame has been taken by then.
func FuzzSocketEnvelope(f *testing.F) {
	for _, b := range seedBodies() {
		for _, typ := range []string{"slash_commands", "interactive", "events_api"} {
			var payload json.RawMessage = b
			if !json.Valid(b) {
				vals, _ := url.ParseQuery(string(b))
				if p := vals.Get("payload"); json.Valid([]byte(p)) {
					payload = json.RawMessage(p)
				} else {
					m := map[string]string{}
					for k := range vals {
						m[k] = vals.Get(k)
					}
					payload, _ = json.Marshal(m)
				}
			}
			env, _ := json.Marshal(map[string]any{"envelope_id": "e-" + typ, "type": typ, "payload": payload, "accepts_response_payload": true})
			f.Add(env)
		}
	}
	f.Add([]byte(`{"type":"disconnect","reason":"warning"}`))
	f.Add([]byte(`{"envelope_id":"","type":"slash_commands","payload":null}`))
	fb := newFuzzBot(f, slackfake.ModeSocket)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if bytes.Contains(frame, []byte("disconnect")) {
			return // Slack's request to reconnect: valid, and only slows the fuzzer down
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hang guard
		defer cancel()
		if err := fb.emu.SendRaw(ctx, frame); err != nil {
			t.Skipf("connection dropped: %v", err)
		}
		resp, err := fb.emu.SendEvent(ctx, map[string]any{"type": "app_home_opened", "user": alice, "tab": "messages"})
		if err != nil {
			t.Fatalf("the bot stopped answering after frame %q: %v", frame, err)
		}
		if resp.TimedOut {
			t.Fatalf("no ack after frame %q", frame)
		}
	})
}
