package slackfake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
)

// testBot is a minimal HTTP-mode bot written the way slack-go documents it:
// verify the signature on the raw body, then parse.
type testBot struct {
	t      *testing.T
	secret string
	api    *slack.Client
	hs     *httptest.Server

	mu          sync.Mutex
	verifyErrs  []error
	commands    []slack.SlashCommand
	callbacks   []slack.InteractionCallback
	events      []slackevents.EventsAPIEvent
	retryHeader []string

	onCommand     func(slack.SlashCommand) (int, string)
	onInteraction func(slack.InteractionCallback) (int, string)
	delay         time.Duration
}

func newTestBot(t *testing.T, srv *Server) *testBot {
	b := &testBot{t: t, secret: srv.SigningSecret(), api: slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()))}
	mux := http.NewServeMux()
	mux.HandleFunc("/commands", b.handle)
	mux.HandleFunc("/interactions", b.handle)
	mux.HandleFunc("/events", b.handle)
	b.hs = httptest.NewServer(mux)
	t.Cleanup(b.hs.Close)
	srv.SetRequestURLs(b.hs.URL+"/commands", b.hs.URL+"/interactions", b.hs.URL+"/events")
	return b
}

func (b *testBot) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	sv, err := slack.NewSecretsVerifier(r.Header, b.secret)
	if err == nil {
		_, _ = sv.Write(body)
		err = sv.Ensure()
	}
	if err != nil {
		b.mu.Lock()
		b.verifyErrs = append(b.verifyErrs, err)
		b.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if b.delay > 0 {
		time.Sleep(b.delay)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	status, answer := http.StatusOK, ""
	switch r.URL.Path {
	case "/commands":
		cmd, err := slack.SlashCommandParse(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.commands = append(b.commands, cmd)
		b.mu.Unlock()
		if b.onCommand != nil {
			status, answer = b.onCommand(cmd)
		}
	case "/interactions":
		cb, err := slack.InteractionCallbackParse(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.callbacks = append(b.callbacks, cb)
		b.mu.Unlock()
		if b.onInteraction != nil {
			status, answer = b.onInteraction(cb)
		}
	case "/events":
		ev, err := slackevents.ParseEvent(body, slackevents.OptionNoVerifyToken())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if ev.Type == slackevents.URLVerification {
			var ch slackevents.ChallengeResponse
			_ = json.Unmarshal(body, &ch)
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte(ch.Challenge))
			return
		}
		b.mu.Lock()
		b.events = append(b.events, ev)
		b.retryHeader = append(b.retryHeader, r.Header.Get("X-Slack-Retry-Num"))
		b.mu.Unlock()
	}
	if strings.HasPrefix(answer, "{") {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(answer))
}

func TestSignatureVerifiesWithSlackGo(t *testing.T) {
	body := []byte("token=x&team_id=T1&text=hello")
	now := time.Now().Unix()
	h := http.Header{}
	h.Set("X-Slack-Request-Timestamp", strconv.FormatInt(now, 10))
	h.Set("X-Slack-Signature", Sign("s3cret", now, body))
	sv, err := slack.NewSecretsVerifier(h, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = sv.Write(body)
	if err := sv.Ensure(); err != nil {
		t.Fatalf("slack-go rejects our signature: %v", err)
	}
}

func TestSlashCommandHTTPAndSecurityOptions(t *testing.T) {
	srv, _ := newTest(t, nil)
	bot := newTestBot(t, srv)
	ctx := context.Background()

	resp, err := srv.SlashCommand(ctx, "U1", "C1", "/jit", "request admin 1h")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.TimedOut || len(resp.Problems) != 0 || resp.Latency <= 0 {
		t.Fatalf("resp = %+v", resp)
	}
	cmd := bot.commands[0]
	if cmd.TeamID != srv.TeamID() || cmd.ChannelID != "C1" || cmd.ChannelName != "access-requests" || cmd.UserID != "U1" ||
		cmd.UserName != "alice" || cmd.Command != "/jit" || cmd.Text != "request admin 1h" || cmd.APIAppID == "" ||
		!strings.HasPrefix(cmd.ResponseURL, srv.URL()+"/response/") || cmd.TriggerID != resp.TriggerID {
		t.Fatalf("slash command fields: %+v", cmd)
	}

	// Replay: the very same signed bytes verify again (signature checks do not deduplicate).
	again, err := srv.Replay(ctx, resp.Request)
	if err != nil || again.StatusCode != 200 || len(bot.commands) != 2 || bot.commands[1].TriggerID != cmd.TriggerID {
		t.Fatalf("replay: %+v %v", again, err)
	}

	for _, tc := range []struct {
		opt  SendOption
		want error
	}{
		{WithWrongSecret(), slack.ErrInvalidSignature},
		{WithStaleTimestamp(), slack.ErrExpiredTimestamp},
		{WithoutSignature(), slack.ErrMissingHeaders},
	} {
		before := len(bot.verifyErrs)
		resp, err := srv.SlashCommand(ctx, "U1", "C1", "/jit", "x", tc.opt)
		if err != nil || resp.StatusCode != http.StatusUnauthorized || len(resp.Problems) == 0 {
			t.Fatalf("%v: %+v %v", tc.want, resp, err)
		}
		if got := bot.verifyErrs[before]; !errors.Is(got, tc.want) {
			t.Fatalf("bot saw %v, want %v", got, tc.want)
		}
	}

	// The bot's immediate answer is posted like Slack does.
	bot.onCommand = func(c slack.SlashCommand) (int, string) {
		if c.Text == "public" {
			return 200, `{"response_type":"in_channel","text":"for everyone"}`
		}
		return 200, `{"text":"just you","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"*just you*"}}]}`
	}
	if _, err := srv.SlashCommand(ctx, "U1", "C1", "/jit", "public"); err != nil {
		t.Fatal(err)
	}
	if m := srv.Messages("C1"); len(m) != 1 || m[0].Text != "for everyone" || m[0].Source != "slash_command_response" {
		t.Fatalf("in_channel answer: %+v", m)
	}
	if _, err := srv.SlashCommand(ctx, "U1", "C1", "/jit", "private"); err != nil {
		t.Fatal(err)
	}
	if e := srv.Ephemerals("C1", "U1"); len(e) != 1 || e[0].Text != "just you" || !strings.Contains(string(e[0].Blocks), "*just you*") {
		t.Fatalf("ephemeral answer: %+v", e)
	}
	bot.onCommand = func(slack.SlashCommand) (int, string) {
		return 200, `{"blocks":[{"type":"header","text":{"type":"plain_text","text":"` + strings.Repeat("h", 151) + `"}}]}`
	}
	resp, _ = srv.SlashCommand(ctx, "U1", "C1", "/jit", "bad")
	if len(resp.Problems) == 0 || resp.Problems[0] != "invalid_blocks" {
		t.Fatalf("invalid answer blocks not reported: %+v", resp.Problems)
	}

	// Not in the channel: Slack would not even let the user type it.
	if _, err := srv.SlashCommand(ctx, "U3", "C3", "/jit", "x"); err == nil {
		t.Fatal("command from a non-member accepted")
	}
}

func TestAckTimeout(t *testing.T) {
	srv, _ := newTest(t, func(o *Options) { o.AckTimeout = 200 * time.Millisecond })
	bot := newTestBot(t, srv)
	bot.delay = 600 * time.Millisecond
	resp, err := srv.SlashCommand(context.Background(), "U1", "C1", "/jit", "slow")
	if err != nil {
		t.Fatal(err)
	}
	if !resp.TimedOut || resp.Latency < 200*time.Millisecond || len(resp.Problems) == 0 {
		t.Fatalf("slow bot not flagged: %+v", resp)
	}
}

func approvalBlocks() []slack.Block {
	pt := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
	}
	return []slack.Block{
		section("*alice* requests *admin* for 1h"),
		slack.NewActionBlock("decide",
			slack.NewButtonBlockElement("approve", "req-1", pt("Approve")).WithStyle(slack.StylePrimary),
			slack.NewButtonBlockElement("deny", "req-1", pt("Deny")).WithStyle(slack.StyleDanger)),
	}
}

func reasonModal() slack.ModalViewRequest {
	pt := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
	}
	sel := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, pt("Duration"), "duration_select",
		slack.NewOptionBlockObject("1h", pt("1 hour"), nil), slack.NewOptionBlockObject("4h", pt("4 hours"), nil))
	return slack.ModalViewRequest{
		Type: slack.VTModal, Title: pt("Deny request"), Submit: pt("Deny"), Close: pt("Cancel"),
		CallbackID: "deny_reason", PrivateMetadata: "req-1",
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewInputBlock("reason", pt("Reason"), nil, slack.NewPlainTextInputBlockElement(pt("why?"), "reason_input")),
			slack.NewInputBlock("duration", pt("Duration"), nil, sel),
		}},
	}
}

func TestButtonModalAndResponseURL(t *testing.T) {
	srv, api := newTest(t, nil)
	bot := newTestBot(t, srv)
	ctx := context.Background()

	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("request", false), slack.MsgOptionBlocks(approvalBlocks()...))
	if err != nil {
		t.Fatal(err)
	}
	var opened *slack.ViewResponse
	bot.onInteraction = func(cb slack.InteractionCallback) (int, string) {
		switch cb.Type {
		case slack.InteractionTypeBlockActions:
			if cb.ActionCallback.BlockActions[0].ActionID == "deny" {
				v, err := bot.api.OpenViewContext(ctx, cb.TriggerID, reasonModal())
				if err != nil {
					t.Errorf("views.open: %v", err)
				}
				opened = v
			}
		case slack.InteractionTypeViewSubmission:
			if cb.View.State.Values["reason"]["reason_input"].Value == "bad" {
				b, _ := json.Marshal(slack.NewErrorsViewSubmissionResponse(map[string]string{"reason": "Say more"}))
				return 200, string(b)
			}
		}
		return 200, ""
	}

	// A button that is not in the message fails the test.
	if _, err := srv.ClickButton(ctx, "U2", "C1", ts, "escalate", "", ""); err == nil {
		t.Fatal("clicking a missing button succeeded")
	}
	// Two buttons share value req-1 but have distinct action ids.
	resp, err := srv.ClickButton(ctx, "U2", "C1", ts, "approve", "", "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("click: %+v %v", resp, err)
	}
	cb := bot.callbacks[0]
	act := cb.ActionCallback.BlockActions[0]
	if cb.Type != slack.InteractionTypeBlockActions || act.ActionID != "approve" || act.BlockID != "decide" || act.Value != "req-1" ||
		cb.User.ID != "U2" || cb.Container.ChannelID != "C1" || cb.Container.MessageTs != ts || cb.Message.Timestamp != ts ||
		cb.Channel.ID != "C1" || cb.ResponseURL == "" || cb.TriggerID == "" {
		t.Fatalf("block_actions payload: %+v / %+v", cb, act)
	}
	if len(cb.Message.Blocks.BlockSet) != 2 {
		t.Fatalf("payload message blocks: %+v", cb.Message.Blocks)
	}

	// response_url: replace the original message.
	if _, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(cb.ResponseURL, slack.ResponseTypeInChannel),
		slack.MsgOptionReplaceOriginal(cb.ResponseURL), slack.MsgOptionText("Approved by bob", false)); err != nil {
		t.Fatalf("response_url: %v", err)
	}
	m, _ := srv.Message("C1", ts)
	if m.Text != "Approved by bob" || len(m.Blocks) != 0 || len(m.Edits) != 1 {
		t.Fatalf("replace_original: %+v", m)
	}

	// Deny opens a modal from the click's trigger.
	_, ts2, _ := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("request 2", false), slack.MsgOptionBlocks(approvalBlocks()...))
	if _, err := srv.ClickButton(ctx, "U2", "C1", ts2, "deny", "req-1", "decide"); err != nil {
		t.Fatal(err)
	}
	if opened == nil || len(srv.Views()) != 1 || srv.Views()[0].User != "U2" {
		t.Fatalf("modal not open: %+v", srv.Views())
	}
	viewID := opened.View.ID

	// Field errors keep the modal open.
	resp, err = srv.SubmitView(ctx, "U2", viewID, map[string]map[string]string{"reason": {"reason_input": "bad"}, "duration": {"duration_select": "4h"}})
	if err != nil || resp.ViewAction == nil || resp.ViewAction.ResponseAction != "errors" || len(resp.Problems) != 0 {
		t.Fatalf("errors answer: %+v %v", resp, err)
	}
	if v, _ := srv.GetView(viewID); !v.Open || v.Errors["reason"] != "Say more" {
		t.Fatalf("view after errors: %+v", v)
	}
	sub := bot.callbacks[len(bot.callbacks)-1]
	if sub.Type != slack.InteractionTypeViewSubmission || sub.View.CallbackID != "deny_reason" || sub.View.PrivateMetadata != "req-1" ||
		sub.View.State.Values["duration"]["duration_select"].SelectedOption.Value != "4h" || sub.View.Hash == "" {
		t.Fatalf("view_submission payload: %+v", sub.View)
	}
	// Unknown option / missing required input fail the test.
	if _, err := srv.SubmitView(ctx, "U2", viewID, map[string]map[string]string{"reason": {"reason_input": "x"}, "duration": {"duration_select": "9h"}}); err == nil {
		t.Fatal("unknown option accepted")
	}
	if _, err := srv.SubmitView(ctx, "U2", viewID, map[string]map[string]string{"duration": {"duration_select": "1h"}}); err == nil {
		t.Fatal("missing required input accepted")
	}
	// An empty answer closes the modal.
	if _, err := srv.SubmitView(ctx, "U2", viewID, map[string]map[string]string{"reason": {"reason_input": "not needed"}, "duration": {"duration_select": "1h"}}); err != nil {
		t.Fatal(err)
	}
	if len(srv.Views()) != 0 {
		t.Fatalf("modal still open: %+v", srv.Views())
	}
}

func TestViewsAndTriggers(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	srv, api := newTest(t, func(o *Options) { o.Now = clock.Now })
	ctx := context.Background()

	trig := srv.IssueTrigger("U1")
	v, err := api.OpenViewContext(ctx, trig, reasonModal())
	if err != nil || v.View.ID == "" || v.View.Hash == "" || v.View.State == nil {
		t.Fatalf("views.open: %+v %v", v, err)
	}
	_, err = api.OpenViewContext(ctx, trig, reasonModal())
	wantErrCode(t, err, "exchanged_trigger_id")
	late := srv.IssueTrigger("U1")
	clock.Add(3*time.Second + time.Millisecond)
	_, err = api.OpenViewContext(ctx, late, reasonModal())
	wantErrCode(t, err, "expired_trigger_id")
	_, err = api.OpenViewContext(ctx, "123.456.abcdef", reasonModal())
	wantErrCode(t, err, "invalid_trigger_id")

	// Modal limits.
	bad := reasonModal()
	bad.Title = slack.NewTextBlockObject(slack.PlainTextType, strings.Repeat("t", 25), false, false)
	_, err = api.OpenViewContext(ctx, srv.IssueTrigger("U1"), bad)
	wantErrCode(t, err, "invalid_arguments")
	if msgs := slackErr(t, err).ResponseMetadata.Messages; !strings.Contains(strings.Join(msgs, " "), "/view/title/text") {
		t.Fatalf("messages: %v", msgs)
	}
	bad = reasonModal()
	bad.Submit = nil
	_, err = api.OpenViewContext(ctx, srv.IssueTrigger("U1"), bad)
	wantErrCode(t, err, "invalid_arguments")
	bad = reasonModal()
	bad.PrivateMetadata = strings.Repeat("m", 3001)
	_, err = api.OpenViewContext(ctx, srv.IssueTrigger("U1"), bad)
	wantErrCode(t, err, "invalid_arguments")

	// views.update with hash.
	upd := reasonModal()
	upd.Title = slack.NewTextBlockObject(slack.PlainTextType, "Updated", false, false)
	_, err = api.UpdateViewContext(ctx, upd, "", "stale.hash", v.View.ID)
	wantErrCode(t, err, "hash_conflict")
	u2, err := api.UpdateViewContext(ctx, upd, "", v.View.ID[:0]+v.View.Hash, v.View.ID)
	if err != nil || u2.View.Hash == v.View.Hash || u2.View.Title.Text != "Updated" {
		t.Fatalf("views.update: %+v %v", u2, err)
	}
	_, err = api.UpdateViewContext(ctx, upd, "", "", "V404")
	wantErrCode(t, err, "not_found")

	// views.push up to 3 deep.
	for i := 0; i < 2; i++ {
		if _, err := api.PushViewContext(ctx, srv.IssueTrigger("U1"), reasonModal()); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	_, err = api.PushViewContext(ctx, srv.IssueTrigger("U1"), reasonModal())
	wantErrCode(t, err, "push_limit_reached")
	if st := srv.ModalStack("U1"); len(st) != 3 || st[1].PreviousViewID != st[0].ID || st[2].RootViewID != st[0].ID {
		t.Fatalf("stack: %+v", st)
	}

	// views.publish.
	home := slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: approvalBlocks()}}
	p, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U1", View: home})
	if err != nil || p.View.Type != slack.VTHomeTab {
		t.Fatalf("views.publish: %+v %v", p, err)
	}
	hv, found := srv.HomeView("U1")
	if !found || hv.ID != p.View.ID || !strings.Contains(string(hv.Blocks), "approve") {
		t.Fatalf("HomeView: %+v", hv)
	}
	stale := "0.stale"
	_, err = api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U1", View: home, Hash: &stale})
	wantErrCode(t, err, "hash_conflict")
	_, err = api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U404", View: home})
	wantErrCode(t, err, "invalid_arguments")
	wrongType := slack.HomeTabViewRequest{Type: slack.VTModal, Blocks: home.Blocks}
	_, err = api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U1", View: wrongType})
	wantErrCode(t, err, "invalid_arguments")
	big := slack.HomeTabViewRequest{Type: slack.VTHomeTab}
	for i := 0; i < 90; i++ {
		big.Blocks.BlockSet = append(big.Blocks.BlockSet, section(strings.Repeat("x", 2900)))
	}
	_, err = api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U1", View: big})
	wantErrCode(t, err, "view_too_large")
	var many slack.HomeTabViewRequest
	many.Type = slack.VTHomeTab
	for i := 0; i < 101; i++ {
		many.Blocks.BlockSet = append(many.Blocks.BlockSet, slack.NewDividerBlock())
	}
	_, err = api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U1", View: many})
	wantErrCode(t, err, "invalid_arguments")

	// A Home tab button click carries the view container.
	bot := newTestBot(t, srv)
	if _, err := srv.ClickViewButton(ctx, "U1", hv.ID, "approve", "", ""); err != nil {
		t.Fatal(err)
	}
	if cb := bot.callbacks[0]; cb.Container.Type != "view" || cb.Container.ViewID != hv.ID || cb.View.ID != hv.ID {
		t.Fatalf("view click: %+v", cb.Container)
	}
}

func TestResponseURLLimits(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	srv, api := newTest(t, func(o *Options) { o.Now = clock.Now })
	newTestBot(t, srv)
	ctx := context.Background()
	resp, err := srv.SlashCommand(ctx, "U1", "C1", "/jit", "status")
	if err != nil {
		t.Fatal(err)
	}
	post := func(text string) error {
		_, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(resp.ResponseURL, slack.ResponseTypeEphemeral), slack.MsgOptionText(text, false))
		return err
	}
	for i := 0; i < 5; i++ {
		if err := post("update"); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	err = post("sixth")
	var sce slack.StatusCodeError
	if !errors.As(err, &sce) || sce.Code != http.StatusNotFound {
		t.Fatalf("sixth post: %T %v", err, err)
	}
	if posts := srv.ResponseURLPosts(); len(posts) != 6 || posts[5].Error != "used_url" {
		t.Fatalf("posts: %+v", posts)
	}
	if e := srv.Ephemerals("C1", "U1"); len(e) != 5 {
		t.Fatalf("ephemerals: %d", len(e))
	}
	// Expiry after 30 minutes.
	resp, _ = srv.SlashCommand(ctx, "U1", "C1", "/jit", "status")
	clock.Add(31 * time.Minute)
	if err := post("late"); err == nil {
		t.Fatal("expired response_url accepted")
	}
	if posts := srv.ResponseURLPosts(); posts[len(posts)-1].Error != "expired_url" {
		t.Fatalf("posts: %+v", posts[len(posts)-1])
	}
}

func TestEventsHTTP(t *testing.T) {
	srv, api := newTest(t, nil)
	bot := newTestBot(t, srv)
	ctx := context.Background()
	if _, err := srv.URLVerification(ctx); err != nil {
		t.Fatal(err)
	}
	home := slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: []slack.Block{section("hi")}}}
	if _, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U1", View: home}); err != nil {
		t.Fatal(err)
	}
	r1, err := srv.OpenHome(ctx, "U1")
	if err != nil || r1.StatusCode != 200 {
		t.Fatalf("OpenHome: %+v %v", r1, err)
	}
	r2, _ := srv.OpenHome(ctx, "U1")
	if r1.EventID == "" || r1.EventID == r2.EventID {
		t.Fatalf("event ids %q %q", r1.EventID, r2.EventID)
	}
	ev := bot.events[0]
	inner, ok := ev.InnerEvent.Data.(*slackevents.AppHomeOpenedEvent)
	if !ok || inner.User != "U1" || inner.Tab != "home" || inner.View == nil || !strings.HasPrefix(inner.Channel, "D") {
		t.Fatalf("app_home_opened: %+v", ev.InnerEvent.Data)
	}
	cb, _ := ev.Data.(*slackevents.EventsAPICallbackEvent)
	if cb == nil || cb.EventID != r1.EventID {
		t.Fatalf("callback: %+v", ev.Data)
	}
	// A retry carries the same event_id and X-Slack-Retry-Num.
	if _, err := srv.Retry(ctx, r1.Request, 1, "http_timeout"); err != nil {
		t.Fatal(err)
	}
	if bot.retryHeader[2] != "1" {
		t.Fatalf("retry headers: %v", bot.retryHeader)
	}
	if cb3, _ := bot.events[2].Data.(*slackevents.EventsAPICallbackEvent); cb3 == nil || cb3.EventID != r1.EventID {
		t.Fatal("retry changed the event_id")
	}
}

func TestSelectCloseAndEventRetries(t *testing.T) {
	srv, api := newTest(t, func(o *Options) {
		o.EventRetries = 3
		o.AckTimeout = 300 * time.Millisecond
	})
	bot := newTestBot(t, srv)
	ctx := context.Background()
	pt := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
	}

	sel := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, pt("Duration"), "pick_duration",
		slack.NewOptionBlockObject("1h", pt("1 hour"), nil), slack.NewOptionBlockObject("4h", pt("4 hours"), nil))
	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("pick", false), slack.MsgOptionBlocks(slack.NewActionBlock("dur", sel)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.SelectOption(ctx, "U1", "C1", ts, "pick_duration", "8h", ""); err == nil {
		t.Fatal("unknown option accepted")
	}
	if _, err := srv.SelectOption(ctx, "U1", "C1", ts, "pick_duration", "4h", ""); err != nil {
		t.Fatal(err)
	}
	act := bot.callbacks[0].ActionCallback.BlockActions[0]
	if act.Type != "static_select" || act.BlockID != "dur" || act.SelectedOption.Value != "4h" {
		t.Fatalf("select action: %+v", act)
	}

	// notify_on_close sends view_closed.
	modal := reasonModal()
	modal.NotifyOnClose = true
	v, err := api.OpenViewContext(ctx, srv.IssueTrigger("U1"), modal)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.CloseView(ctx, "U1", v.View.ID)
	if err != nil || resp == nil || resp.StatusCode != 200 {
		t.Fatalf("CloseView: %+v %v", resp, err)
	}
	if cb := bot.callbacks[1]; cb.Type != slack.InteractionTypeViewClosed || cb.View.ID != v.View.ID || len(srv.Views()) != 0 {
		t.Fatalf("view_closed: %+v", cb)
	}

	// A bot that answers events slowly gets Slack's retries, same event_id.
	bot.delay = 400 * time.Millisecond
	resp, err = srv.OpenHome(ctx, "U1")
	if err != nil || !resp.TimedOut || len(resp.Retries) != 3 {
		t.Fatalf("retries: %+v %v", resp, err)
	}
	if h := resp.Retries[2].Request.Header; h.Get("X-Slack-Retry-Num") != "3" || h.Get("X-Slack-Retry-Reason") != "http_timeout" {
		t.Fatalf("retry headers: %v", h)
	}
}

func TestViewResponseActions(t *testing.T) {
	srv, api := newTest(t, nil)
	bot := newTestBot(t, srv)
	ctx := context.Background()
	next := ""
	bot.onInteraction = func(cb slack.InteractionCallback) (int, string) {
		var b []byte
		switch next {
		case "update":
			m := reasonModal()
			m.Title = slack.NewTextBlockObject(slack.PlainTextType, "Step 2", false, false)
			b, _ = json.Marshal(slack.NewUpdateViewSubmissionResponse(&m))
		case "push":
			m := reasonModal()
			m.Title = slack.NewTextBlockObject(slack.PlainTextType, "Pushed", false, false)
			b, _ = json.Marshal(slack.NewPushViewSubmissionResponse(&m))
		case "bad-update":
			m := reasonModal()
			m.Title = slack.NewTextBlockObject(slack.PlainTextType, strings.Repeat("t", 30), false, false)
			b, _ = json.Marshal(slack.NewUpdateViewSubmissionResponse(&m))
		case "clear":
			b, _ = json.Marshal(slack.NewClearViewSubmissionResponse())
		case "500":
			return 500, "boom"
		case "bad-errors":
			b, _ = json.Marshal(slack.NewErrorsViewSubmissionResponse(map[string]string{"not-an-input": "x"}))
		}
		return 200, string(b)
	}
	v, err := api.OpenViewContext(ctx, srv.IssueTrigger("U1"), reasonModal())
	if err != nil {
		t.Fatal(err)
	}
	id := v.View.ID
	vals := map[string]map[string]string{"reason": {"reason_input": "r"}, "duration": {"duration_select": "1h"}}
	submit := func(action string) *Response {
		t.Helper()
		next = action
		resp, err := srv.SubmitView(ctx, "U1", srv.ModalStack("U1")[len(srv.ModalStack("U1"))-1].ID, vals)
		if err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		return resp
	}
	if r := submit("update"); len(r.Problems) != 0 {
		t.Fatal(r.Problems)
	}
	if gv, _ := srv.GetView(id); gv.Title != "Step 2" || gv.Hash == v.View.Hash {
		t.Fatalf("after update: %+v", gv)
	}
	if r := submit("bad-update"); len(r.Problems) == 0 {
		t.Fatal("invalid update view not reported")
	}
	if r := submit("500"); len(r.Problems) == 0 || len(srv.ModalStack("U1")) != 1 {
		t.Fatalf("500 answer: %+v", r)
	}
	if r := submit("bad-errors"); len(r.Problems) == 0 {
		t.Fatal("errors keyed by a non-input block not reported")
	}
	submit("push")
	if st := srv.ModalStack("U1"); len(st) != 2 || st[1].Title != "Pushed" {
		t.Fatalf("after push: %+v", st)
	}
	submit("") // closes the pushed view only
	if st := srv.ModalStack("U1"); len(st) != 1 || st[0].ID != id {
		t.Fatalf("after empty answer: %+v", st)
	}
	submit("push")
	submit("clear")
	if st := srv.ModalStack("U1"); len(st) != 0 {
		t.Fatalf("after clear: %+v", st)
	}
}
