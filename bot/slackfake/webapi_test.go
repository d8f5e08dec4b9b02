package slackfake

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testOptions() Options {
	return Options{
		Users: []User{
			{ID: "U1", Name: "alice", RealName: "Alice A", Email: "alice@example.com"},
			{ID: "U2", Name: "bob", RealName: "Bob B", Email: "bob@example.com"},
			{ID: "U3", Name: "carol", RealName: "Carol C", Email: "carol@example.com"},
		},
		UserGroups: []UserGroup{{ID: "S1", Handle: "oncall", Name: "On call", Members: []string{"U2", "U3"}}},
		Channels: []Channel{
			{ID: "C1", Name: "access-requests"},
			{ID: "C2", Name: "private", IsPrivate: true, Members: []string{"U1"}, BotNotMember: true},
			{ID: "C3", Name: "small", Members: []string{"U1", "U2"}},
		},
	}
}

func newTest(t *testing.T, mutate func(*Options)) (*Server, *slack.Client) {
	t.Helper()
	o := testOptions()
	if mutate != nil {
		mutate(&o)
	}
	srv := New(o)
	t.Cleanup(srv.Close)
	return srv, slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()))
}

func slackErr(t *testing.T, err error) slack.SlackErrorResponse {
	t.Helper()
	var se slack.SlackErrorResponse
	if !errors.As(err, &se) {
		t.Fatalf("want slack.SlackErrorResponse, got %T %v", err, err)
	}
	return se
}

func wantErrCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error %q, got nil", code)
	}
	if se := slackErr(t, err); se.Err != code {
		t.Fatalf("want error %q, got %q (%v)", code, se.Err, se.ResponseMetadata.Messages)
	}
}

func section(text string) slack.Block {
	return slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil)
}

func TestAuth(t *testing.T) {
	srv, api := newTest(t, nil)
	ctx := context.Background()
	res, err := api.AuthTestContext(ctx)
	if err != nil || res.UserID != srv.BotUserID() || res.TeamID != srv.TeamID() {
		t.Fatalf("auth.test = %+v, %v", res, err)
	}
	_, err = slack.New("xoxb-wrong", slack.OptionAPIURL(srv.APIURL())).AuthTestContext(ctx)
	wantErrCode(t, err, "invalid_auth")
	_, err = slack.New("", slack.OptionAPIURL(srv.APIURL())).AuthTestContext(ctx)
	wantErrCode(t, err, "not_authed")
	// The app-level token is only for apps.connections.open.
	_, _, err = slack.New(srv.AppToken(), slack.OptionAPIURL(srv.APIURL())).PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false))
	wantErrCode(t, err, "not_allowed_token_type")

	// Unknown method, and the token travelling as a Bearer header on a form post.
	req, _ := http.NewRequest(http.MethodPost, srv.APIURL()+"chat.frobnicate", strings.NewReader("channel=C1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+srv.BotToken())
	hres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(hres.Body).Decode(&body)
	hres.Body.Close()
	if body["error"] != "unknown_method" {
		t.Fatalf("unknown method answered %v", body)
	}
	// JSON body with a Bearer token (chat.* accept JSON); a token inside a JSON
	// body is not accepted; GET with a query string works for read methods.
	post := func(ct, auth, body string) map[string]any {
		req, _ := http.NewRequest(http.MethodPost, srv.APIURL()+"chat.postMessage", strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return m
	}
	if m := post("application/json; charset=utf-8", srv.BotToken(), `{"channel":"C1","text":"json","blocks":[{"type":"divider"}]}`); m["ok"] != true {
		t.Fatalf("JSON post: %v", m)
	}
	if m := post("application/json", "", `{"token":"`+srv.BotToken()+`","channel":"C1","text":"json"}`); m["error"] != "not_authed" {
		t.Fatalf("token in JSON body: %v", m)
	}
	if m := post("text/xml", srv.BotToken(), `<x/>`); m["error"] != "invalid_post_type" {
		t.Fatalf("bad content type: %v", m)
	}
	gres, err := http.Get(srv.APIURL() + "users.info?user=U1&token=" + srv.BotToken())
	if err != nil {
		t.Fatal(err)
	}
	var gm map[string]any
	_ = json.NewDecoder(gres.Body).Decode(&gm)
	gres.Body.Close()
	if gm["ok"] != true {
		t.Fatalf("GET users.info: %v", gm)
	}
	if c := srv.Calls("chat.postMessage"); len(c) != 4 || c[1].JSON == nil || c[1].Params.Get("blocks") != `[{"type":"divider"}]` || c[2].JSON["token"] != nil {
		t.Fatalf("JSON call recorded as %+v", c)
	}

	if calls := srv.Calls("auth.test"); len(calls) != 3 || calls[0].OK != true || calls[1].Error != "invalid_auth" {
		t.Fatalf("calls = %+v", calls)
	}
	if calls := srv.Calls("auth.test"); calls[0].Params.Get("token") != "" {
		t.Fatal("recorded calls must not keep the token")
	}
}

func TestPostMessageAndUpdate(t *testing.T) {
	srv, api := newTest(t, nil)
	ctx := context.Background()

	seen := map[string]bool{}
	last := ""
	for i := 0; i < 20; i++ {
		ch, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("hello", false))
		if err != nil || ch != "C1" {
			t.Fatalf("post: %v %v", ch, err)
		}
		if seen[ts] || ts <= last || len(strings.Split(ts, ".")[1]) != 6 {
			t.Fatalf("ts %q not unique / increasing / seconds.micros (last %q)", ts, last)
		}
		seen[ts], last = true, ts
	}
	// By channel name, as Slack allows.
	if ch, _, err := api.PostMessageContext(ctx, "#access-requests", slack.MsgOptionText("by name", false)); err != nil || ch != "C1" {
		t.Fatalf("post by name: %v %v", ch, err)
	}

	_, _, err := api.PostMessageContext(ctx, "C1")
	wantErrCode(t, err, "no_text")
	_, _, err = api.PostMessageContext(ctx, "C404", slack.MsgOptionText("x", false))
	wantErrCode(t, err, "channel_not_found")
	_, _, err = api.PostMessageContext(ctx, "C2", slack.MsgOptionText("x", false))
	wantErrCode(t, err, "not_in_channel")
	_, _, err = api.PostMessageContext(ctx, "C1", slack.MsgOptionText(strings.Repeat("x", 40001), false))
	wantErrCode(t, err, "msg_too_long")

	// Blocks + thread.
	_, parent, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("fallback", false),
		slack.MsgOptionBlocks(section("*Request* 1"), slack.NewActionBlock("decide",
			slack.NewButtonBlockElement("approve", "req-1", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)).WithStyle(slack.StylePrimary))))
	if err != nil {
		t.Fatal(err)
	}
	_, reply, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("in thread", false), slack.MsgOptionTS(parent))
	if err != nil {
		t.Fatal(err)
	}
	m, found := srv.Message("C1", reply)
	if !found || m.ThreadTS != parent {
		t.Fatalf("reply = %+v", m)
	}
	pm, _ := srv.Message("C1", parent)
	if !strings.Contains(string(pm.Blocks), `"block_id":"decide"`) || !strings.Contains(string(pm.Blocks), `"block_id":`) {
		t.Fatalf("blocks not stored: %s", pm.Blocks)
	}

	// chat.update with text only drops the blocks (chat.update reference).
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", parent, slack.MsgOptionText("decided", false)); err != nil {
		t.Fatal(err)
	}
	pm, _ = srv.Message("C1", parent)
	if pm.Text != "decided" || len(pm.Blocks) != 0 || len(pm.Edits) != 1 || !strings.Contains(string(pm.Edits[0].Blocks), "approve") {
		t.Fatalf("after update: %+v", pm)
	}
	// With blocks: text kept when not given? slack-go always sends text when set; send blocks only.
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", parent, slack.MsgOptionBlocks(section("new"))); err != nil {
		t.Fatal(err)
	}
	pm, _ = srv.Message("C1", parent)
	if pm.Text != "decided" || !strings.Contains(string(pm.Blocks), "new") {
		t.Fatalf("after blocks update: %+v", pm)
	}
	_, _, _, err = api.UpdateMessageContext(ctx, "C1", "1.000001", slack.MsgOptionText("x", false))
	wantErrCode(t, err, "message_not_found")
	_, _, _, err = api.UpdateMessageContext(ctx, "C404", parent, slack.MsgOptionText("x", false))
	wantErrCode(t, err, "channel_not_found")

	link, err := api.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: "C1", Ts: parent})
	if err != nil || !strings.Contains(link, "/archives/C1/p") {
		t.Fatalf("permalink %q %v", link, err)
	}

	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	got, err := srv.WaitForMessage(wctx, "C1", func(m Message) bool { return m.Text == "in thread" })
	if err != nil || got.TS != reply {
		t.Fatalf("WaitForMessage: %+v %v", got, err)
	}
	if c, err := srv.WaitForCall(wctx, "chat.update", func(c Call) bool { return c.Error == "message_not_found" }); err != nil || c.Params.Get("ts") != "1.000001" {
		t.Fatalf("WaitForCall: %+v %v", c, err)
	}
}

func TestEphemeralDMAndUsers(t *testing.T) {
	srv, api := newTest(t, nil)
	ctx := context.Background()
	if _, err := api.PostEphemeralContext(ctx, "C3", "U1", slack.MsgOptionText("only you", false)); err != nil {
		t.Fatal(err)
	}
	_, err := api.PostEphemeralContext(ctx, "C3", "U3", slack.MsgOptionText("x", false))
	wantErrCode(t, err, "user_not_in_channel")
	if eph := srv.Ephemerals("C3", "U1"); len(eph) != 1 || eph[0].Text != "only you" {
		t.Fatalf("ephemerals = %+v", eph)
	}

	ch, _, _, err := api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{"U2"}})
	if err != nil || !strings.HasPrefix(ch.ID, "D") {
		t.Fatalf("conversations.open: %+v %v", ch, err)
	}
	ch2, _, _, _ := api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{"U2"}})
	if ch2.ID != ch.ID {
		t.Fatalf("DM id not stable: %s vs %s", ch.ID, ch2.ID)
	}
	if _, _, err := api.PostMessageContext(ctx, ch.ID, slack.MsgOptionText("psst", false)); err != nil {
		t.Fatal(err)
	}
	// Posting to a user id goes to the DM too.
	if c, _, err := api.PostMessageContext(ctx, "U2", slack.MsgOptionText("again", false)); err != nil || c != ch.ID {
		t.Fatalf("post to user id: %s %v", c, err)
	}
	if dms := srv.DMs("U2"); len(dms) != 2 || dms[0].Text != "psst" {
		t.Fatalf("DMs = %+v", dms)
	}
	_, _, _, err = api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{"U404"}})
	wantErrCode(t, err, "user_not_found")

	u, err := api.GetUserInfoContext(ctx, "U1")
	if err != nil || u.Name != "alice" || u.Profile.Email != "alice@example.com" {
		t.Fatalf("users.info: %+v %v", u, err)
	}
	_, err = api.GetUserInfoContext(ctx, "U404")
	wantErrCode(t, err, "user_not_found")
	u, err = api.GetUserByEmailContext(ctx, "BOB@example.com")
	if err != nil || u.ID != "U2" {
		t.Fatalf("lookupByEmail: %+v %v", u, err)
	}
	_, err = api.GetUserByEmailContext(ctx, "nobody@example.com")
	wantErrCode(t, err, "users_not_found")
}

func TestUserGroups(t *testing.T) {
	srv, api := newTest(t, nil)
	ctx := context.Background()
	groups, err := api.GetUserGroupsContext(ctx, slack.GetUserGroupsOptionIncludeUsers(true))
	if err != nil || len(groups) != 1 || groups[0].Handle != "oncall" || len(groups[0].Users) != 2 {
		t.Fatalf("usergroups.list: %+v %v", groups, err)
	}
	members, err := api.GetUserGroupMembersContext(ctx, "S1")
	if err != nil || strings.Join(members, ",") != "U2,U3" {
		t.Fatalf("usergroups.users.list: %v %v", members, err)
	}
	_, err = api.GetUserGroupMembersContext(ctx, "S404")
	wantErrCode(t, err, "no_such_subteam")

	srv.SetUserGroupMembers("S1", []string{"U1"})
	if members, _ := api.GetUserGroupMembersContext(ctx, "S1"); strings.Join(members, ",") != "U1" {
		t.Fatalf("after SetUserGroupMembers: %v", members)
	}

	srv.SetFreePlan(true)
	_, err = api.GetUserGroupsContext(ctx)
	wantErrCode(t, err, "plan_upgrade_required")
	_, err = api.GetUserGroupMembersContext(ctx, "S1")
	wantErrCode(t, err, "plan_upgrade_required")
}

func TestRateLimits(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	srv, api := newTest(t, func(o *Options) {
		o.Now = clock.Now
		o.PostMessageRate = &ChannelRate{Interval: time.Second, Burst: 2}
	})
	ctx := context.Background()

	srv.RateLimit("users.info", 2, 1500*time.Millisecond)
	for i := 0; i < 2; i++ {
		_, err := api.GetUserInfoContext(ctx, "U1")
		var rl *slack.RateLimitedError
		if !errors.As(err, &rl) || rl.RetryAfter != 2*time.Second {
			t.Fatalf("call %d: want *slack.RateLimitedError{2s}, got %T %v", i, err, err)
		}
	}
	if _, err := api.GetUserInfoContext(ctx, "U1"); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if c := srv.Calls("users.info"); c[0].HTTPStatus != http.StatusTooManyRequests || c[0].Error != "ratelimited" {
		t.Fatalf("recorded: %+v", c[0])
	}

	// chat.postMessage: burst of 2 per channel, then 1 per second.
	for i := 0; i < 2; i++ {
		if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false)); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) {
		t.Fatalf("third burst post: %v", err)
	}
	if _, _, err := api.PostMessageContext(ctx, "C3", slack.MsgOptionText("other channel", false)); err != nil {
		t.Fatalf("other channel must have its own bucket: %v", err)
	}
	clock.Add(time.Second)
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false)); err != nil {
		t.Fatalf("after a second: %v", err)
	}
}

func TestBlockKitValidation(t *testing.T) {
	srv, api := newTest(t, nil)
	ctx := context.Background()
	pt := func(s string) *slack.TextBlockObject {
		return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
	}
	btn := func(id, text string) *slack.ButtonBlockElement { return slack.NewButtonBlockElement(id, "v", pt(text)) }
	many := func(n int) []slack.Block {
		var out []slack.Block
		for i := 0; i < n; i++ {
			out = append(out, slack.NewDividerBlock())
		}
		return out
	}
	cases := []struct {
		name   string
		blocks []slack.Block
		want   string // substring of a response_metadata message
	}{
		{"51 blocks", many(51), "no more than 50 items"},
		{"section text too long", []slack.Block{section(strings.Repeat("a", 3001))}, "less than 3001 characters [json-pointer:/blocks/0/text/text]"},
		{"section text empty", []slack.Block{slack.NewSectionBlock(pt(""), nil, nil)}, "more than 0 characters"},
		{"11 fields", []slack.Block{slack.NewSectionBlock(nil, func() []*slack.TextBlockObject {
			var f []*slack.TextBlockObject
			for i := 0; i < 11; i++ {
				f = append(f, pt("f"))
			}
			return f
		}(), nil)}, "no more than 10 items"},
		{"field too long", []slack.Block{slack.NewSectionBlock(nil, []*slack.TextBlockObject{pt(strings.Repeat("a", 2001))}, nil)}, "less than 2001"},
		{"header too long", []slack.Block{slack.NewHeaderBlock(pt(strings.Repeat("h", 151)))}, "less than 151"},
		{"header mrkdwn", []slack.Block{slack.NewHeaderBlock(slack.NewTextBlockObject(slack.MarkdownType, "h", false, false))}, "must be plain_text"},
		{"duplicate block_id", []slack.Block{slack.NewSectionBlock(pt("a"), nil, nil, slack.SectionBlockOptionBlockID("x")), slack.NewSectionBlock(pt("b"), nil, nil, slack.SectionBlockOptionBlockID("x"))}, "duplicate block_id"},
		{"block_id too long", []slack.Block{slack.NewSectionBlock(pt("a"), nil, nil, slack.SectionBlockOptionBlockID(strings.Repeat("b", 256)))}, "less than 256"},
		{"26 elements", []slack.Block{slack.NewActionBlock("a", func() []slack.BlockElement {
			var e []slack.BlockElement
			for i := 0; i < 26; i++ {
				e = append(e, btn(strings.Repeat("x", i+1), "b"))
			}
			return e
		}()...)}, "no more than 25 items"},
		{"button text too long", []slack.Block{slack.NewActionBlock("a", btn("b", strings.Repeat("t", 76)))}, "less than 76"},
		{"button value too long", []slack.Block{slack.NewActionBlock("a", slack.NewButtonBlockElement("b", strings.Repeat("v", 2001), pt("ok")))}, "less than 2001"},
		{"button action_id too long", []slack.Block{slack.NewActionBlock("a", btn(strings.Repeat("i", 256), "ok"))}, "less than 256"},
		{"button bad style", []slack.Block{slack.NewActionBlock("a", btn("b", "ok").WithStyle("fancy"))}, "primary, danger"},
		{"duplicate action_id in block", []slack.Block{slack.NewActionBlock("a", btn("same", "1"), btn("same", "2"))}, "duplicate action_id"},
		{"confirm title too long", []slack.Block{slack.NewActionBlock("a", btn("b", "ok").WithConfirm(slack.NewConfirmationBlockObject(pt(strings.Repeat("t", 101)), pt("sure?"), pt("Yes"), pt("No"))))}, "less than 101"},
		{"confirm text too long", []slack.Block{slack.NewActionBlock("a", btn("b", "ok").WithConfirm(slack.NewConfirmationBlockObject(pt("t"), pt(strings.Repeat("s", 301)), pt("Yes"), pt("No"))))}, "less than 301"},
		{"plain_text_input outside input", []slack.Block{slack.NewActionBlock("a", slack.NewPlainTextInputBlockElement(pt("p"), "in"))}, "only allowed in input blocks"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("fallback", false), slack.MsgOptionBlocks(tc.blocks...))
			wantErrCode(t, err, "invalid_blocks")
			msgs := strings.Join(slackErr(t, err).ResponseMetadata.Messages, "\n")
			if !strings.Contains(msgs, tc.want) {
				t.Fatalf("messages %q do not mention %q", msgs, tc.want)
			}
			if !strings.HasPrefix(msgs, "[ERROR] ") {
				t.Fatalf("messages should look like Slack's: %q", msgs)
			}
		})
	}
	// Exactly at the limits is fine.
	ok := []slack.Block{section(strings.Repeat("a", 3000)), slack.NewHeaderBlock(pt(strings.Repeat("h", 150))),
		slack.NewActionBlock("a", btn("b", strings.Repeat("t", 75)))}
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("fallback", false), slack.MsgOptionBlocks(append(ok, many(47)...)...)); err != nil {
		t.Fatalf("50 blocks at the limits: %v", err)
	}
	// Invalid JSON in blocks.
	_, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false), func() slack.MsgOption {
		return slack.UnsafeMsgOptionEndpoint(srv.APIURL()+"chat.postMessage", func(v url.Values) { v.Set("blocks", "[{") })
	}())
	if err == nil {
		t.Fatal("invalid blocks JSON accepted")
	}
}
