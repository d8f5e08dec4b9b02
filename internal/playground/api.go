package playground

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jitbot/jitbot/bot/slackfake"
)

//go:embed web
var webFS embed.FS

// routes serves the page (/), its assets (/static/), the JSON API (/api/) and, for everything else, jitbot's
// own handler (/healthz, /readyz, /metrics, /slack/*).
func (p *Playground) routes(appHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFS, "web")
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := fs.ReadFile(static, "index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /api/state", p.serveState)
	mux.HandleFunc("POST /api/command", p.api(p.command))
	mux.HandleFunc("POST /api/click", p.api(p.click))
	mux.HandleFunc("POST /api/select", p.api(p.selectOption))
	mux.HandleFunc("POST /api/submit", p.api(p.submit))
	mux.HandleFunc("POST /api/close", p.api(p.closeView))
	mux.HandleFunc("POST /api/home", p.api(p.openHome))
	mux.HandleFunc("POST /api/pipeline", p.pipelineJob)
	mux.Handle("/", appHandler)
	return mux
}

// ---- state ----

// State is what GET /api/state?user=U… answers: everything the acting user sees.
type State struct {
	User       string         `json:"user"`
	PolicyFile string         `json:"policy_file"`
	Users      []User         `json:"users"`
	Channels   []ChannelView  `json:"channels"`
	DM         ChannelView    `json:"dm"`
	Home       *ViewState     `json:"home"`  // the App Home tab jitbot last published for the user
	Modal      *ViewState     `json:"modal"` // the user's top open modal
	Deliveries []DeliveryView `json:"deliveries"`
	Stats      map[string]int `json:"stats"`
	Now        string         `json:"now"`
	Problems   []string       `json:"problems"` // Web API calls jitbot made that Slack refused (from the emulator)
	// Jobs are the simulated pipeline jobs (newest first); PipelineRoles the roles one can be run for.
	Jobs          []JobView `json:"jobs"`
	PipelineRoles []string  `json:"pipeline_roles"`
}

// ChannelView is a channel (or the DM with jitbot) as the acting user sees it.
type ChannelView struct {
	ID       string        `json:"id"`
	Name     string        `json:"name"`
	Purpose  string        `json:"purpose,omitempty"`
	Messages []MessageView `json:"messages"`
	HTML     string        `json:"html"`
	// Count is the number of top-level messages and ephemerals (the page shows new ones as unread).
	Count int `json:"count"`
}

// MessageView is one message, rendered.
type MessageView struct {
	TS        string        `json:"ts"`
	ThreadTS  string        `json:"thread_ts,omitempty"`
	Author    string        `json:"author"`
	Text      string        `json:"text"`  // the message's text field (notification fallback)
	Plain     string        `json:"plain"` // what the person reads (rendered blocks, as text)
	HTML      string        `json:"html"`
	Ephemeral bool          `json:"ephemeral,omitempty"`
	Edited    bool          `json:"edited,omitempty"`
	Buttons   []ButtonView  `json:"buttons,omitempty"`
	Replies   []MessageView `json:"replies,omitempty"`
	PostedAt  time.Time     `json:"posted_at"`

	body  string // rendered blocks or text
	isBot bool
}

// ButtonView is a button of a message or view.
type ButtonView struct {
	ActionID string `json:"action_id"`
	BlockID  string `json:"block_id"`
	Value    string `json:"value"`
	Text     string `json:"text"`
	Confirm  bool   `json:"confirm,omitempty"`
}

// ViewState is a modal or App Home tab, rendered.
type ViewState struct {
	ID         string            `json:"id"`
	Type       string            `json:"type"`
	CallbackID string            `json:"callback_id"`
	Title      string            `json:"title"`
	Submit     string            `json:"submit,omitempty"`
	Close      string            `json:"close,omitempty"`
	Errors     map[string]string `json:"errors,omitempty"`
	Inputs     []InputView       `json:"inputs,omitempty"`
	Buttons    []ButtonView      `json:"buttons,omitempty"`
	HTML       string            `json:"html"`
	Plain      string            `json:"plain"`
	// Key changes whenever the page must redraw the view (new view, new hash, new errors).
	Key string `json:"key"`
}

// InputView is an input block of a modal.
type InputView struct {
	BlockID  string   `json:"block_id"`
	ActionID string   `json:"action_id"`
	Type     string   `json:"type"`
	Label    string   `json:"label"`
	Optional bool     `json:"optional"`
	Options  []string `json:"options,omitempty"`
}

// DeliveryView is one signed webhook call the target system received.
type DeliveryView struct {
	At        time.Time         `json:"at"`
	Type      string            `json:"type"`
	GrantID   string            `json:"grant_id"`
	RequestID string            `json:"request_id"`
	Principal string            `json:"principal"`
	Role      string            `json:"role"`
	Target    map[string]string `json:"target"`
	ExpiresAt string            `json:"expires_at"`
	Status    int               `json:"status"`
}

func (p *Playground) renderer(me string) *Renderer {
	return &Renderer{
		Me: me,
		UserName: func(id string) string {
			if id == p.emu.BotUserID() {
				return "jitbot"
			}
			if u, ok := p.userByID[id]; ok {
				return u.RealName
			}
			return ""
		},
		ChannelName: func(id string) string {
			if c, ok := p.chanByID[id]; ok {
				return c.Name
			}
			return ""
		},
	}
}

func (p *Playground) serveState(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if _, ok := p.userByID[user]; !ok {
		if len(p.users) == 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "error": "the policy names no users"})
			return
		}
		user = p.users[0].ID
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, p.State(user))
}

// State is what user sees now.
func (p *Playground) State(user string) State {
	rd := p.renderer(user)
	st := State{User: user, PolicyFile: p.opts.PolicyFile, Users: p.users, Stats: map[string]int{}, Now: time.Now().Format(time.TimeOnly)}
	for _, c := range p.channels {
		cv := p.channelView(rd, user, c.ID, p.emu.Messages(c.ID))
		cv.Name, cv.Purpose = c.Name, c.Purpose
		st.Channels = append(st.Channels, cv)
	}
	dmID := p.emu.DMChannel(user)
	st.DM = p.channelView(rd, user, dmID, p.emu.DMs(user))
	st.DM.Name = "jitbot"
	if st.DM.ID == "" {
		st.DM.HTML = `<div class="empty">No messages from jitbot yet.</div>`
	}
	if v, ok := p.emu.HomeView(user); ok {
		st.Home = p.viewState(rd, v)
	}
	if stack := p.emu.ModalStack(user); len(stack) > 0 {
		st.Modal = p.viewState(rd, stack[len(stack)-1])
	}
	st.Deliveries = []DeliveryView{}
	for _, d := range p.recv.Deliveries() {
		st.Deliveries = append(st.Deliveries, DeliveryView{At: d.At, Type: d.Payload.Type, GrantID: d.Payload.GrantID,
			RequestID: d.Payload.RequestID, Principal: d.Payload.Principal, Role: d.Payload.Role, Target: d.Payload.Target,
			ExpiresAt: d.Payload.ExpiresAt, Status: d.Status})
	}
	slices.Reverse(st.Deliveries) // newest first
	st.Problems = []string{}
	for _, c := range p.emu.Calls("") {
		if !c.OK && c.Error != "" {
			st.Problems = append(st.Problems, c.Method+": "+c.Error)
		}
	}
	if len(st.Problems) > 20 {
		st.Problems = st.Problems[len(st.Problems)-20:]
	}
	st.Stats["deliveries"] = len(st.Deliveries)
	st.Jobs, st.PipelineRoles = p.jobs(), p.PipelineRoles()
	return st
}

// tsLess orders Slack timestamps ("seconds.micros").
func tsLess(a, b string) bool {
	fa, _ := strconv.ParseFloat(a, 64)
	fb, _ := strconv.ParseFloat(b, 64)
	if fa != fb {
		return fa < fb
	}
	return a < b
}

func (p *Playground) channelView(rd *Renderer, user, channelID string, msgs []slackfake.Message) ChannelView {
	cv := ChannelView{ID: channelID, Messages: []MessageView{}}
	replies := map[string][]MessageView{}
	for _, m := range msgs {
		if m.Deleted {
			continue
		}
		mv := p.messageView(rd, channelID, m.TS, m.User, m.Text, m.Blocks, len(m.Edits) > 0, false, m.PostedAt)
		if m.ThreadTS != "" && m.ThreadTS != m.TS {
			mv.ThreadTS = m.ThreadTS
			replies[m.ThreadTS] = append(replies[m.ThreadTS], mv)
			continue
		}
		cv.Messages = append(cv.Messages, mv)
	}
	if channelID != "" {
		for _, e := range p.emu.Ephemerals(channelID, user) {
			if e.Deleted {
				continue
			}
			mv := p.messageView(rd, channelID, e.TS, p.emu.BotUserID(), e.Text, e.Blocks, len(e.Edits) > 0, true, e.PostedAt)
			cv.Messages = append(cv.Messages, mv)
		}
	}
	for i := range cv.Messages {
		cv.Messages[i].Replies = replies[cv.Messages[i].TS]
		cv.Messages[i].HTML = messageHTML(channelID, cv.Messages[i])
	}
	slices.SortStableFunc(cv.Messages, func(a, b MessageView) int {
		if tsLess(a.TS, b.TS) {
			return -1
		}
		if tsLess(b.TS, a.TS) {
			return 1
		}
		return 0
	})
	cv.Count = len(cv.Messages)
	var b strings.Builder
	if len(cv.Messages) == 0 {
		b.WriteString(`<div class="empty">No messages yet.</div>`)
	}
	for _, m := range cv.Messages {
		b.WriteString(m.HTML)
	}
	cv.HTML = b.String()
	return cv
}

func (p *Playground) messageView(rd *Renderer, channel, ts, author, text string, blocks json.RawMessage, edited, ephemeral bool, at time.Time) MessageView {
	mv := MessageView{TS: ts, Text: text, Ephemeral: ephemeral, Edited: edited, PostedAt: at}
	mv.Author = rd.UserName(author)
	if mv.Author == "" {
		mv.Author = author
	}
	body := ""
	if len(blocks) > 0 && string(blocks) != "null" && string(blocks) != "[]" {
		body = rd.Blocks(blocks, nil)
		mv.Buttons = buttons(blocks)
	} else {
		body = `<div class="bk-text">` + rd.Mrkdwn(text) + `</div>`
	}
	mv.Plain = TextContent(body)
	mv.body, mv.isBot = body, author == p.emu.BotUserID()
	mv.HTML = messageHTML(channel, mv)
	return mv
}

// messageHTML renders a message with its author, time, marks and thread.
func messageHTML(channel string, mv MessageView) string {
	cls := "msg"
	if mv.Ephemeral {
		cls += " msg-ephemeral"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<div class="%s"%s>`, cls, Target{Channel: channel, TS: mv.TS}.attrs())
	avatar := "🤖"
	if !mv.isBot {
		avatar = html.EscapeString(strings.ToUpper(mv.Author[:min(1, len(mv.Author))]))
	}
	fmt.Fprintf(&b, `<div class="avatar">%s</div><div class="msg-main"><div class="msg-head"><span class="author">%s</span>`, avatar, html.EscapeString(mv.Author))
	if mv.isBot {
		b.WriteString(`<span class="app-tag">APP</span>`)
	}
	fmt.Fprintf(&b, `<span class="time">%s</span>`, mv.PostedAt.Local().Format(time.TimeOnly))
	if mv.Edited {
		b.WriteString(`<span class="edited">(edited)</span>`)
	}
	b.WriteString(`</div>`)
	if mv.Ephemeral {
		b.WriteString(`<div class="eph-note">👁 Only visible to you</div>`)
	}
	b.WriteString(`<div class="msg-body">` + mv.body + `</div>`)
	if n := len(mv.Replies); n > 0 {
		fmt.Fprintf(&b, `<details class="thread" data-thread="%s"><summary>%d %s</summary>`, attr(mv.TS), n, map[bool]string{true: "reply", false: "replies"}[n == 1])
		for _, r := range mv.Replies {
			b.WriteString(messageHTML(channel, r))
		}
		b.WriteString(`</details>`)
	}
	b.WriteString(`</div></div>`)
	return b.String()
}

// buttons lists the buttons of a blocks array.
func buttons(raw json.RawMessage) []ButtonView {
	var blocks []any
	_ = json.Unmarshal(raw, &blocks)
	var out []ButtonView
	add := func(bid string, e map[string]any) {
		if str(e["type"]) != "button" {
			return
		}
		out = append(out, ButtonView{ActionID: str(e["action_id"]), BlockID: bid, Value: str(e["value"]),
			Text: str(obj(e["text"])["text"]), Confirm: e["confirm"] != nil})
	}
	for _, x := range blocks {
		bl := obj(x)
		bid := str(bl["block_id"])
		for _, e := range arr(bl["elements"]) {
			add(bid, obj(e))
		}
		if acc := obj(bl["accessory"]); acc != nil {
			add(bid, acc)
		}
	}
	return out
}

func (p *Playground) viewState(rd *Renderer, v slackfake.View) *ViewState {
	var body map[string]any
	_ = json.Unmarshal(v.JSON, &body)
	vs := &ViewState{ID: v.ID, Type: v.Type, CallbackID: v.CallbackID, Title: v.Title, Errors: v.Errors,
		Submit: str(obj(body["submit"])["text"]), Close: str(obj(body["close"])["text"]), Buttons: buttons(v.Blocks)}
	if len(vs.Errors) == 0 {
		vs.Errors = nil
	}
	var blocks []any
	_ = json.Unmarshal(v.Blocks, &blocks)
	for _, x := range blocks {
		bl := obj(x)
		if str(bl["type"]) != "input" {
			continue
		}
		el := obj(bl["element"])
		in := InputView{BlockID: str(bl["block_id"]), ActionID: str(el["action_id"]), Type: str(el["type"]),
			Label: str(obj(bl["label"])["text"]), Optional: bl["optional"] == true}
		for _, o := range options(el) {
			in.Options = append(in.Options, str(o["value"]))
		}
		vs.Inputs = append(vs.Inputs, in)
	}
	inner := rd.Blocks(v.Blocks, v.Errors)
	vs.Plain = TextContent(inner)
	vs.HTML = `<div class="view view-` + attr(v.Type) + `"` + Target{ViewID: v.ID}.attrs() + `>` + inner + `</div>`
	errs, _ := json.Marshal(v.Errors)
	vs.Key = v.ID + "/" + v.Hash + "/" + string(errs)
	return vs
}

// ---- actions ----

// ActionResult is what the action endpoints answer.
type ActionResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Status is the HTTP status jitbot answered the emulator with; TimedOut is set when it took longer than
	// Slack's 3 seconds; Problems lists what Slack would have rejected in the answer.
	Status   int               `json:"status,omitempty"`
	TimedOut bool              `json:"timed_out,omitempty"`
	Problems []string          `json:"problems,omitempty"`
	Errors   map[string]string `json:"errors,omitempty"` // a modal's field errors (response_action: errors)
	Closed   bool              `json:"closed,omitempty"` // the modal was closed by the answer
	Body     string            `json:"body,omitempty"`
}

// ActionRequest is the body of the action endpoints.
type ActionRequest struct {
	User     string                       `json:"user"`
	Channel  string                       `json:"channel"`
	TS       string                       `json:"ts"`
	ViewID   string                       `json:"view_id"`
	ActionID string                       `json:"action_id"`
	BlockID  string                       `json:"block_id"`
	Value    string                       `json:"value"`
	Text     string                       `json:"text"`
	Values   map[string]map[string]string `json:"values"`
}

func (p *Playground) api(fn func(ctx context.Context, req ActionRequest) (*slackfake.Response, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req ActionRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, ActionResult{Error: "bad request: " + err.Error()})
			return
		}
		if _, ok := p.userByID[req.User]; !ok {
			writeJSON(w, http.StatusBadRequest, ActionResult{Error: fmt.Sprintf("unknown user %q", req.User)})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		resp, err := fn(ctx, req)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, ActionResult{Error: strings.TrimPrefix(err.Error(), "slackfake: ")})
			return
		}
		res := ActionResult{OK: true}
		if resp != nil {
			res.Status, res.TimedOut, res.Problems, res.Body = resp.StatusCode, resp.TimedOut, resp.Problems, string(resp.Body)
			if resp.ViewAction != nil {
				res.Errors = resp.ViewAction.Errors
				res.Closed = resp.ViewAction.ResponseAction == "" || resp.ViewAction.ResponseAction == "clear"
			}
			if resp.TimedOut {
				res.OK, res.Error = false, "jitbot did not answer within Slack's 3 seconds (the user would see operation_timeout)"
			} else if resp.StatusCode != http.StatusOK {
				res.OK, res.Error = false, fmt.Sprintf("jitbot answered HTTP %d", resp.StatusCode)
			}
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// command sends "/jit TEXT" typed by the user in a channel (default #general) as a signed slash command.
func (p *Playground) command(ctx context.Context, req ActionRequest) (*slackfake.Response, error) {
	text := strings.TrimSpace(req.Text)
	cmd, rest, _ := strings.Cut(text, " ")
	if !strings.HasPrefix(cmd, "/") {
		return nil, errors.New(`type a slash command, e.g. "/jit help"`)
	}
	if cmd != "/jit" {
		return nil, fmt.Errorf("%s is not a command of this workspace; jitbot's command is /jit", cmd)
	}
	ch := req.Channel
	if ch == "" || (!strings.HasPrefix(ch, "D") && p.chanByID[ch].ID == "") {
		ch = GeneralChannel
	}
	return p.emu.SlashCommand(ctx, req.User, ch, cmd, strings.TrimSpace(rest))
}

// click sends a button click: block_actions built by the emulator from the stored message or view.
func (p *Playground) click(ctx context.Context, req ActionRequest) (*slackfake.Response, error) {
	if req.ViewID != "" {
		return p.emu.ClickViewButton(ctx, req.User, req.ViewID, req.ActionID, req.Value, req.BlockID)
	}
	return p.emu.ClickButton(ctx, req.User, req.Channel, req.TS, req.ActionID, req.Value, req.BlockID)
}

func (p *Playground) selectOption(ctx context.Context, req ActionRequest) (*slackfake.Response, error) {
	return p.emu.SelectOption(ctx, req.User, req.Channel, req.TS, req.ActionID, req.Value, req.BlockID)
}

// submit presses a modal's submit button with the values the person filled in.
func (p *Playground) submit(ctx context.Context, req ActionRequest) (*slackfake.Response, error) {
	values := map[string]map[string]string{}
	for bid, acts := range req.Values {
		for aid, v := range acts {
			if strings.TrimSpace(v) == "" {
				continue // empty: no value, as Slack sends it
			}
			if values[bid] == nil {
				values[bid] = map[string]string{}
			}
			values[bid][aid] = v
		}
	}
	return p.emu.SubmitView(ctx, req.User, req.ViewID, values)
}

func (p *Playground) closeView(ctx context.Context, req ActionRequest) (*slackfake.Response, error) {
	return p.emu.CloseView(ctx, req.User, req.ViewID)
}

// openHome tells jitbot the user opened its App Home tab (app_home_opened).
func (p *Playground) openHome(ctx context.Context, req ActionRequest) (*slackfake.Response, error) {
	return p.emu.OpenHome(ctx, req.User)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
