package slackfake

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

// TestSocketModeWithSlackGo runs slack-go's own socketmode client against the
// emulator: it connects through apps.connections.open, receives a slash
// command, a button click, a view submission and an event, and acks them.
func TestSocketModeWithSlackGo(t *testing.T) {
	srv, api := newTest(t, nil)
	srv.SetMode(ModeSocket)
	// No deadline of its own: on a loaded machine the test may be slow, and go test's -timeout ends a hang.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	botAPI := slack.New(srv.BotToken(), slack.OptionAppLevelToken(srv.AppToken()), slack.OptionAPIURL(srv.APIURL()))
	client := socketmode.New(botAPI)
	h := socketmode.NewSocketmodeHandler(client)
	h.HandleSlashCommand("/jit", func(evt *socketmode.Event, c *socketmode.Client) {
		cmd := evt.Data.(slack.SlashCommand)
		_ = c.Ack(*evt.Request, map[string]any{"text": "ack " + cmd.Text + " from " + cmd.UserName})
	})
	// The handler's views.open is waited for by the test, not only its effect at the server: the test must not
	// end (and cancel ctx) while the client is still reading the answer.
	opened := make(chan error, 1)
	h.HandleInteractionBlockAction("approve", func(evt *socketmode.Event, c *socketmode.Client) {
		cb := evt.Data.(slack.InteractionCallback)
		_ = c.Ack(*evt.Request)
		_, err := botAPI.OpenViewContext(ctx, cb.TriggerID, reasonModal())
		opened <- err
	})
	h.HandleViewSubmission("deny_reason", func(evt *socketmode.Event, c *socketmode.Client) {
		cb := evt.Data.(slack.InteractionCallback)
		if cb.View.State.Values["reason"]["reason_input"].Value == "bad" {
			_ = c.Ack(*evt.Request, slack.NewErrorsViewSubmissionResponse(map[string]string{"reason": "Say more"}))
			return
		}
		_ = c.Ack(*evt.Request)
	})
	h.HandleEvents(slackevents.AppHomeOpened, func(evt *socketmode.Event, c *socketmode.Client) {
		_ = c.Ack(*evt.Request)
	})
	go func() { _ = h.RunEventLoopContext(ctx) }()

	if err := srv.WaitForSocket(ctx); err != nil {
		t.Fatal(err)
	}
	if calls := srv.Calls("apps.connections.open"); len(calls) == 0 || !calls[0].OK {
		t.Fatalf("apps.connections.open: %+v", calls)
	}

	resp, err := srv.SlashCommand(ctx, "U1", "C1", "/jit", "request admin")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Mode != ModeSocket || resp.StatusCode != 200 || resp.TimedOut || !strings.Contains(string(resp.Body), "ack request admin from alice") {
		t.Fatalf("slash command over socket: %+v body=%s", resp, resp.Body)
	}
	if e := srv.Ephemerals("C1", "U1"); len(e) != 1 || e[0].Text != "ack request admin from alice" {
		t.Fatalf("ack payload not posted: %+v", e)
	}
	env := srv.Envelopes()[0]
	if env.Type != "slash_commands" || !env.AcceptsResponsePayload || !env.Acked || len(env.Deliveries) != 1 {
		t.Fatalf("envelope: %+v", env)
	}

	_, ts, _ := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("request", false), slack.MsgOptionBlocks(approvalBlocks()...))
	if resp, err := srv.ClickButton(ctx, "U2", "C1", ts, "approve", "", ""); err != nil || resp.TimedOut {
		t.Fatalf("click over socket: %+v %v", resp, err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("views.open: %v", err)
	}
	if n := len(srv.ModalStack("U2")); n != 1 {
		t.Fatalf("modal stack of U2 has %d views after views.open, want 1", n)
	}
	viewID := srv.ModalStack("U2")[0].ID
	resp, err = srv.SubmitView(ctx, "U2", viewID, map[string]map[string]string{"reason": {"reason_input": "bad"}, "duration": {"duration_select": "1h"}})
	if err != nil || resp.ViewAction == nil || resp.ViewAction.ResponseAction != "errors" || resp.ViewAction.Errors["reason"] != "Say more" {
		t.Fatalf("view submission over socket: %+v %v", resp, err)
	}
	if resp, err := srv.OpenHome(ctx, "U1"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("event over socket: %+v %v", resp, err)
	}

	// Slack asks the client to reconnect; slack-go opens a new socket.
	srv.DisconnectSockets("refresh_requested")
	if err := srv.WaitFor(ctx, func() bool { return len(srv.Calls("apps.connections.open")) >= 2 && srv.SocketConnections() == 1 }); err != nil {
		t.Fatal(err)
	}
	if resp, err := srv.SlashCommand(ctx, "U1", "C1", "/jit", "after reconnect"); err != nil || resp.TimedOut {
		t.Fatalf("after reconnect: %+v %v", resp, err)
	}
}

// rawSocket connects a bare gorilla client the way a Socket Mode app would.
func rawSocket(t *testing.T, srv *Server) *websocket.Conn {
	t.Helper()
	api := slack.New("", slack.OptionAppLevelToken(srv.AppToken()), slack.OptionAPIURL(srv.APIURL()))
	_, wsURL, err := api.StartSocketModeContext(context.Background())
	if err != nil || !strings.HasPrefix(wsURL, "ws://") {
		t.Fatalf("apps.connections.open: %q %v", wsURL, err)
	}
	conn, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var hello map[string]any
	if err := conn.ReadJSON(&hello); err != nil || hello["type"] != "hello" {
		t.Fatalf("hello: %v %v", hello, err)
	}
	// The ticket is single use.
	if c2, _, err := websocket.DefaultDialer.Dial(wsURL, nil); err == nil {
		c2.Close()
		t.Fatal("websocket URL reusable")
	}
	return conn
}

func TestSocketRedeliveryAndAckLimit(t *testing.T) {
	srv, _ := newTest(t, func(o *Options) {
		o.SocketRetryDelay = 500 * time.Millisecond
		o.AckTimeout = 5 * time.Second
	})
	srv.SetMode(ModeSocket)
	conn := rawSocket(t, srv)

	type result struct {
		resp *Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		r, err := srv.SlashCommand(context.Background(), "U1", "C1", "/jit", "hi")
		done <- result{r, err}
	}()
	read := func() map[string]any {
		var m map[string]any
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	first := read()
	if first["type"] != "slash_commands" || first["retry_attempt"].(float64) != 0 || first["accepts_response_payload"] != true {
		t.Fatalf("first delivery: %v", first)
	}
	payload, _ := first["payload"].(map[string]any)
	if payload["command"] != "/jit" || payload["user_id"] != "U1" || payload["trigger_id"] == "" {
		t.Fatalf("payload: %v", payload)
	}
	second := read() // not acked: redelivered
	if second["envelope_id"] != first["envelope_id"] || second["retry_attempt"].(float64) != 1 || second["retry_reason"] != "timeout" {
		t.Fatalf("redelivery: %v", second)
	}
	// An ack of 20 KiB or more is dropped.
	big, _ := json.Marshal(map[string]any{"envelope_id": first["envelope_id"], "payload": map[string]any{"text": strings.Repeat("x", 21*1024)}})
	if err := conn.WriteMessage(websocket.TextMessage, big); err != nil {
		t.Fatal(err)
	}
	third := read()
	if third["retry_attempt"].(float64) != 2 {
		t.Fatalf("after dropped ack: %v", third)
	}
	if err := conn.WriteJSON(map[string]any{"envelope_id": first["envelope_id"], "payload": map[string]any{"text": "ok"}}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.resp.StatusCode != 200 || r.resp.Deliveries != 3 || !strings.Contains(string(r.resp.Body), `"ok"`) {
		t.Fatalf("result: %+v %v", r.resp, r.err)
	}
	if env := srv.Envelopes()[0]; env.DroppedAcks != 1 || !env.Acked {
		t.Fatalf("envelope: %+v", env)
	}
}

func TestSocketTokenChecks(t *testing.T) {
	srv, _ := newTest(t, nil)
	// The bot token cannot open a socket.
	_, _, err := slack.New("", slack.OptionAppLevelToken(srv.BotToken()), slack.OptionAPIURL(srv.APIURL())).StartSocketModeContext(context.Background())
	wantErrCode(t, err, "not_allowed_token_type")
	_, _, err = slack.New("", slack.OptionAppLevelToken("xapp-wrong"), slack.OptionAPIURL(srv.APIURL())).StartSocketModeContext(context.Background())
	wantErrCode(t, err, "invalid_auth")
}
