package slackfake

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
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sign computes Slack's request signature for body at timestamp ts:
// "v0=" + hex(HMAC-SHA256(secret, "v0:" + ts + ":" + body)).
// https://api.slack.com/authentication/verifying-requests-from-slack
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:", ts)
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// SendOption changes how one HTTP-mode request is sent to the bot (security
// and retry tests). Socket Mode deliveries are not signed and ignore them.
type SendOption func(*sendConfig)

type sendConfig struct {
	secret      *string
	timestamp   *time.Time
	noSignature bool
	retryNum    int
	retryReason string
}

// WithSecret signs the request with another secret (a forged request).
func WithSecret(secret string) SendOption { return func(c *sendConfig) { c.secret = &secret } }

// WithWrongSecret signs the request with a secret the bot does not know.
func WithWrongSecret() SendOption { return WithSecret("not-the-signing-secret") }

// WithTimestamp puts t in X-Slack-Request-Timestamp (and in the signature).
func WithTimestamp(t time.Time) SendOption { return func(c *sendConfig) { c.timestamp = &t } }

// WithStaleTimestamp signs the request as if sent 10 minutes ago; Slack's
// guidance is to reject requests older than 5 minutes.
func WithStaleTimestamp() SendOption {
	return func(c *sendConfig) { t := time.Time{}; c.timestamp = &t } // resolved at send time
}

// WithoutSignature omits X-Slack-Request-Timestamp and X-Slack-Signature.
func WithoutSignature() SendOption { return func(c *sendConfig) { c.noSignature = true } }

// WithRetry marks an Events API request as Slack's n-th retry
// (X-Slack-Retry-Num, X-Slack-Retry-Reason; https://api.slack.com/apis/connections/events-api#retries).
func WithRetry(n int, reason string) SendOption {
	return func(c *sendConfig) { c.retryNum, c.retryReason = n, reason }
}

// SentRequest is exactly what the emulator sent over HTTP; pass it to Replay
// to send the very same bytes and headers again.
type SentRequest struct {
	URL    string
	Header http.Header
	Body   []byte
}

// Response is the bot's answer to something the emulator delivered.
type Response struct {
	// Mode the request was delivered in.
	Mode Mode
	// StatusCode and Header of the bot's HTTP answer (ModeHTTP); StatusCode is
	// 200 for an acked Socket Mode envelope and 0 when nothing came back.
	StatusCode int
	Header     http.Header
	// Body is the HTTP body, or the ack's payload JSON in Socket Mode.
	Body []byte
	// Latency is the time from sending to the answer (ack latency).
	Latency time.Duration
	// TimedOut is set when the bot did not answer within Options.AckTimeout
	// (3 s), which Slack shows the user as a failure.
	TimedOut bool
	// Problems lists what Slack would have rejected in the answer: invalid
	// JSON, invalid blocks, a response_action that cannot apply, a non-200
	// status... Empty means Slack accepted it.
	Problems []string
	// Request is what was sent in ModeHTTP (for Replay).
	Request *SentRequest
	// EnvelopeID and Deliveries describe a Socket Mode delivery (Deliveries
	// counts redeliveries of un-acked envelopes too).
	EnvelopeID string
	Deliveries int
	// TriggerID and ResponseURL are the ones given to the bot with this request.
	TriggerID   string
	ResponseURL string
	// EventID is the Events API event_id (OpenHome).
	EventID string
	// ViewAction is the parsed answer to a view submission.
	ViewAction *ViewAction
	// Retries holds Slack's automatic Events API retries (Options.EventRetries).
	Retries []*Response
}

// ViewAction is a parsed view_submission answer
// (https://api.slack.com/surfaces/modals#responses).
type ViewAction struct {
	ResponseAction string            // "", "errors", "update", "push", "clear"
	Errors         map[string]string // for "errors"
	View           json.RawMessage   // for "update" / "push"
}

// ErrNoRequestURL is returned when the bot's request URL was not set.
var ErrNoRequestURL = errors.New("slackfake: request URL not set (SetRequestURLs)")

// delivery is one thing to deliver to the bot.
type delivery struct {
	kind        string // "slash_commands", "interactive", "events_api"
	form        url.Values
	payload     map[string]any
	acceptsResp bool
	triggerID   string
	responseURL string
	eventID     string
}

func (d *delivery) httpBody() (body []byte, contentType string) {
	switch d.kind {
	case "slash_commands":
		return []byte(d.form.Encode()), "application/x-www-form-urlencoded"
	case "interactive":
		return []byte(url.Values{"payload": {string(mustJSON(d.payload))}}.Encode()), "application/x-www-form-urlencoded"
	default:
		return mustJSON(d.payload), "application/json"
	}
}

func (d *delivery) socketPayload() json.RawMessage {
	if d.kind == "slash_commands" {
		m := map[string]string{}
		for k := range d.form {
			m[k] = d.form.Get(k)
		}
		return mustJSON(m)
	}
	return mustJSON(d.payload)
}

func (s *Server) deliver(ctx context.Context, d *delivery, opts []SendOption) (*Response, error) {
	s.mu.Lock()
	mode := s.mode
	target := map[string]string{
		"slash_commands": s.requestURLs.commands,
		"interactive":    s.requestURLs.interactions,
		"events_api":     s.requestURLs.events,
	}[d.kind]
	s.mu.Unlock()
	var resp *Response
	var err error
	if mode == ModeSocket {
		resp, err = s.sock.deliver(ctx, d)
	} else {
		if target == "" {
			return nil, ErrNoRequestURL
		}
		body, ct := d.httpBody()
		hdr := http.Header{"Content-Type": {ct}}
		resp, err = s.sendHTTP(ctx, target, hdr, body, opts)
		if err == nil && d.kind == "events_api" {
			s.retryEvent(ctx, resp)
		}
	}
	if resp != nil {
		resp.TriggerID, resp.ResponseURL, resp.EventID = d.triggerID, d.responseURL, d.eventID
	}
	return resp, err
}

// sendHTTP signs and posts body, and measures the answer.
func (s *Server) sendHTTP(ctx context.Context, target string, hdr http.Header, body []byte, opts []SendOption) (*Response, error) {
	cfg := sendConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	hdr = hdr.Clone()
	hdr.Set("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
	if !cfg.noSignature {
		// Signatures use the wall clock, not Options.Now: the bot under test
		// checks the timestamp against its own clock.
		ts := time.Now()
		if cfg.timestamp != nil {
			ts = *cfg.timestamp
			if ts.IsZero() {
				ts = time.Now().Add(-10 * time.Minute)
			}
		}
		secret := s.opts.SigningSecret
		if cfg.secret != nil {
			secret = *cfg.secret
		}
		hdr.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts.Unix(), 10))
		hdr.Set("X-Slack-Signature", Sign(secret, ts.Unix(), body))
	}
	if cfg.retryNum > 0 {
		hdr.Set("X-Slack-Retry-Num", strconv.Itoa(cfg.retryNum))
		hdr.Set("X-Slack-Retry-Reason", cfg.retryReason)
	}
	return s.Replay(ctx, &SentRequest{URL: target, Header: hdr, Body: body})
}

// Replay sends a previously sent request again, byte for byte, with the same
// headers (and therefore the same, still valid, signature): a replay attack.
func (s *Server) Replay(ctx context.Context, req *SentRequest) (*Response, error) {
	if req == nil {
		return nil, errors.New("slackfake: Replay needs the Request of an HTTP-mode Response")
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.AckTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return nil, err
	}
	hreq.Header = req.Header.Clone()
	s.logf("-> %s %s", req.URL, truncate(string(req.Body), 200))
	start := time.Now()
	hresp, err := http.DefaultClient.Do(hreq)
	out := &Response{Mode: ModeHTTP, Request: req}
	if err != nil {
		out.Latency = time.Since(start)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			out.TimedOut = true
			out.Problems = append(out.Problems, "operation_timeout: no answer within "+s.opts.AckTimeout.String())
			return out, nil
		}
		return out, err
	}
	defer hresp.Body.Close()
	b, err := io.ReadAll(hresp.Body)
	out.Latency = time.Since(start)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			out.TimedOut = true
			out.Problems = append(out.Problems, "operation_timeout: no answer within "+s.opts.AckTimeout.String())
			return out, nil
		}
		return out, err
	}
	out.StatusCode, out.Header, out.Body = hresp.StatusCode, hresp.Header, b
	if hresp.StatusCode != http.StatusOK {
		out.Problems = append(out.Problems, fmt.Sprintf("http_service_error: status %d", hresp.StatusCode))
	}
	s.logf("<- %d in %v: %s", out.StatusCode, out.Latency, truncate(string(b), 200))
	return out, nil
}

// retryEvent applies Options.EventRetries to a failed Events API delivery
// (https://api.slack.com/apis/connections/events-api#retries).
func (s *Server) retryEvent(ctx context.Context, resp *Response) {
	last := resp
	for n := 1; n <= s.opts.EventRetries; n++ {
		if !last.TimedOut && last.StatusCode >= 200 && last.StatusCode < 300 {
			return
		}
		reason := "http_error"
		if last.TimedOut {
			reason = "http_timeout"
		}
		if s.opts.EventRetryDelay > 0 {
			select {
			case <-time.After(s.opts.EventRetryDelay):
			case <-ctx.Done():
				return
			}
		}
		r, err := s.Retry(ctx, resp.Request, n, reason)
		if err != nil {
			return
		}
		resp.Retries = append(resp.Retries, r)
		last = r
	}
}

// Retry re-sends an Events API request as Slack's retry number n: same body,
// fresh timestamp and signature, X-Slack-Retry-Num / X-Slack-Retry-Reason set.
func (s *Server) Retry(ctx context.Context, req *SentRequest, n int, reason string) (*Response, error) {
	if req == nil {
		return nil, errors.New("slackfake: Retry needs the Request of an HTTP-mode Response")
	}
	hdr := http.Header{"Content-Type": req.Header.Values("Content-Type")}
	return s.sendHTTP(ctx, req.URL, hdr, req.Body, []SendOption{WithRetry(n, reason)})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (s *Server) userLocked(id string) (*User, error) {
	u, found := s.users[id]
	if !found {
		return nil, fmt.Errorf("slackfake: unknown user %q", id)
	}
	return u, nil
}

func (s *Server) userObjLocked(u *User) map[string]any {
	return map[string]any{"id": u.ID, "username": u.Name, "name": u.Name, "team_id": s.opts.TeamID}
}

// ---- slash commands ----

// SlashCommand emulates user typing "command text" in channel. The bot
// receives the documented fields (team_id, team_domain, channel_id,
// channel_name, user_id, user_name, command, text, response_url, trigger_id,
// api_app_id, plus the deprecated token). A JSON answer is posted like Slack
// does: ephemeral by default, in_channel on request.
// https://api.slack.com/interactivity/slash-commands
func (s *Server) SlashCommand(ctx context.Context, user, channel, command, text string, opts ...SendOption) (*Response, error) {
	s.mu.Lock()
	u, err := s.userLocked(user)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	ch, found := s.channels[channel]
	if !found {
		s.mu.Unlock()
		return nil, fmt.Errorf("slackfake: unknown channel %q", channel)
	}
	if !s.channelMemberLocked(ch, user) {
		s.mu.Unlock()
		return nil, fmt.Errorf("slackfake: %s is not in %s and cannot run commands there", user, channel)
	}
	if !strings.HasPrefix(command, "/") {
		command = "/" + command
	}
	trig := s.issueTriggerLocked(user, "")
	ru := s.newResponseURLLocked(channel, user, "", false)
	chName := ch.Name
	if strings.HasPrefix(ch.ID, "D") {
		chName = "directmessage"
	}
	form := url.Values{
		"token": {s.opts.VerificationToken}, "team_id": {s.opts.TeamID}, "team_domain": {s.opts.TeamDomain},
		"channel_id": {ch.ID}, "channel_name": {chName}, "user_id": {u.ID}, "user_name": {u.Name},
		"command": {command}, "text": {text}, "api_app_id": {s.opts.AppID},
		"is_enterprise_install": {"false"}, "response_url": {ru}, "trigger_id": {trig},
	}
	s.mu.Unlock()

	resp, err := s.deliver(ctx, &delivery{kind: "slash_commands", form: form, acceptsResp: true, triggerID: trig, responseURL: ru}, opts)
	if err != nil || resp == nil {
		return resp, err
	}
	if resp.StatusCode == http.StatusOK && len(bytes.TrimSpace(resp.Body)) > 0 {
		s.postCommandAnswer(resp, channel, user)
	}
	return resp, nil
}

// postCommandAnswer applies a slash command's immediate answer
// (https://api.slack.com/interactivity/slash-commands#responding_immediate_response).
func (s *Server) postCommandAnswer(resp *Response, channel, user string) {
	body := bytes.TrimSpace(resp.Body)
	var msg map[string]any
	isJSON := resp.Mode == ModeSocket || strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || (len(body) > 0 && body[0] == '{')
	if isJSON {
		if err := json.Unmarshal(body, &msg); err != nil {
			resp.Problems = append(resp.Problems, "invalid JSON answer: "+err.Error())
			return
		}
	} else {
		msg = map[string]any{"text": string(body)}
	}
	if msg == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if probs := s.applyMessagePayloadLocked(msg, &responseURL{channel: channel, user: user}, "slash_command_response"); len(probs) > 0 {
		resp.Problems = append(resp.Problems, probs...)
	}
}

// ---- interactivity ----

type foundElement struct {
	blockID string
	elem    map[string]any
}

// findElement looks for an element of one of types with actionID in blocks
// (actions blocks, section accessories and input blocks), optionally
// restricted to blockID and to elements accepted by pred.
func findElement(blocks json.RawMessage, types []string, actionID, blockID string, pred func(map[string]any) bool) (foundElement, error) {
	var bl []map[string]any
	if len(blocks) > 0 {
		if err := json.Unmarshal(blocks, &bl); err != nil {
			return foundElement{}, err
		}
	}
	var matches []foundElement
	consider := func(bid string, e any) {
		em, isObj := e.(map[string]any)
		if !isObj || asString(em["action_id"]) != actionID {
			return
		}
		typeOK := false
		for _, t := range types {
			typeOK = typeOK || asString(em["type"]) == t
		}
		if !typeOK || (blockID != "" && bid != blockID) || (pred != nil && !pred(em)) {
			return
		}
		matches = append(matches, foundElement{blockID: bid, elem: em})
	}
	for _, b := range bl {
		bid := asString(b["block_id"])
		if els, isArr := b["elements"].([]any); isArr && asString(b["type"]) == "actions" {
			for _, e := range els {
				consider(bid, e)
			}
		}
		if acc, has := b["accessory"]; has {
			consider(bid, acc)
		}
		if el, has := b["element"]; has && b["dispatch_action"] == true {
			consider(bid, el)
		}
	}
	switch len(matches) {
	case 0:
		return foundElement{}, fmt.Errorf("slackfake: no %s with action_id %q (block_id %q) matching in %s", strings.Join(types, "/"), actionID, blockID, truncate(string(blocks), 400))
	case 1:
		return matches[0], nil
	}
	return foundElement{}, fmt.Errorf("slackfake: %d elements match action_id %q; pass blockID or value", len(matches), actionID)
}

func buttonWithValue(value string) func(map[string]any) bool {
	return func(e map[string]any) bool { return value == "" || asString(e["value"]) == value }
}

func optionNamed(value string, dst *map[string]any) func(map[string]any) bool {
	return func(e map[string]any) bool {
		for _, o := range optionsOf(e) {
			if asString(o["value"]) == value {
				*dst = o
				return true
			}
		}
		return false
	}
}

func (s *Server) actionJSON(b foundElement, actionTS string, selected map[string]any) map[string]any {
	t := asString(b.elem["type"])
	a := map[string]any{"type": t, "action_id": asString(b.elem["action_id"]), "block_id": b.blockID, "action_ts": actionTS}
	if t == "button" {
		a["text"] = b.elem["text"]
		if v, has := b.elem["value"]; has {
			a["value"] = v
		}
		if st, has := b.elem["style"]; has {
			a["style"] = st
		}
	}
	if selected != nil {
		a["selected_option"] = selected
	}
	if ph, has := b.elem["placeholder"]; has && t != "button" {
		a["placeholder"] = ph
	}
	return a
}

// messageTarget is the message an interaction starts from.
type messageTarget struct {
	user      *User
	blocks    json.RawMessage
	message   map[string]any
	ephemeral bool
	chName    string
}

func (s *Server) messageTargetLocked(user, channel, messageTS string) (*messageTarget, error) {
	u, err := s.userLocked(user)
	if err != nil {
		return nil, err
	}
	ch, found := s.channels[channel]
	if !found {
		return nil, fmt.Errorf("slackfake: unknown channel %q", channel)
	}
	mt := &messageTarget{user: u, chName: ch.Name}
	if strings.HasPrefix(ch.ID, "D") {
		mt.chName = "directmessage"
	}
	if m := s.findMessageLocked(channel, messageTS); m != nil && !m.Deleted {
		if !s.channelMemberLocked(ch, user) {
			return nil, fmt.Errorf("slackfake: %s is not in %s and cannot see message %s", user, channel, messageTS)
		}
		mt.blocks, mt.message = m.Blocks, s.messageJSON(m)
		return mt, nil
	}
	for _, e := range s.ephemerals {
		if e.Channel == channel && e.TS == messageTS && !e.Deleted {
			if e.User != user {
				return nil, fmt.Errorf("slackfake: ephemeral message %s is shown to %s, not %s", messageTS, e.User, user)
			}
			mt.blocks, mt.ephemeral = e.Blocks, true
			return mt, nil
		}
	}
	return nil, fmt.Errorf("slackfake: no message %s in %s", messageTS, channel)
}

// ClickButton emulates user clicking a button in the message at messageTS in
// channel (a channel message, or an ephemeral message shown to user). The
// button is looked up in the stored message by actionID, and by value and
// blockID when they are not empty; the payload carries the block_id, value
// and text the message really has. It fails when no such button exists or
// the user cannot see the message. The bot receives a block_actions payload
// (https://api.slack.com/reference/interaction-payloads/block-actions).
func (s *Server) ClickButton(ctx context.Context, user, channel, messageTS, actionID, value, blockID string, opts ...SendOption) (*Response, error) {
	return s.messageAction(ctx, user, channel, messageTS, []string{"button"}, actionID, blockID, buttonWithValue(value), nil, opts)
}

// SelectOption emulates user choosing the option with optionValue in a
// static_select, overflow or radio_buttons element of a message (block_actions
// with selected_option).
func (s *Server) SelectOption(ctx context.Context, user, channel, messageTS, actionID, optionValue, blockID string, opts ...SendOption) (*Response, error) {
	var selected map[string]any
	return s.messageAction(ctx, user, channel, messageTS, []string{"static_select", "overflow", "radio_buttons"}, actionID, blockID, optionNamed(optionValue, &selected), &selected, opts)
}

func (s *Server) messageAction(ctx context.Context, user, channel, messageTS string, types []string, actionID, blockID string, pred func(map[string]any) bool, selected *map[string]any, opts []SendOption) (*Response, error) {
	s.mu.Lock()
	mt, err := s.messageTargetLocked(user, channel, messageTS)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	el, err := findElement(mt.blocks, types, actionID, blockID, pred)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	var sel map[string]any
	if selected != nil {
		sel = *selected
	}
	trig := s.issueTriggerLocked(user, "")
	ru := s.newResponseURLLocked(channel, user, messageTS, mt.ephemeral)
	payload := map[string]any{
		"type": "block_actions", "user": s.userObjLocked(mt.user), "api_app_id": s.opts.AppID,
		"token": s.opts.VerificationToken, "trigger_id": trig, "response_url": ru,
		"team":       map[string]any{"id": s.opts.TeamID, "domain": s.opts.TeamDomain},
		"enterprise": nil, "is_enterprise_install": false,
		"container": map[string]any{"type": "message", "message_ts": messageTS, "channel_id": channel, "is_ephemeral": mt.ephemeral},
		"channel":   map[string]any{"id": channel, "name": mt.chName},
		"state":     map[string]any{"values": map[string]any{}},
		"actions":   []any{s.actionJSON(el, s.nextTSLocked(), sel)},
	}
	if mt.message != nil {
		payload["message"] = mt.message
	}
	s.mu.Unlock()
	return s.deliver(ctx, &delivery{kind: "interactive", payload: payload, triggerID: trig, responseURL: ru}, opts)
}

// ClickViewButton emulates user clicking a button in an open modal or in
// their Home tab (container type "view").
func (s *Server) ClickViewButton(ctx context.Context, user, viewID, actionID, value, blockID string, opts ...SendOption) (*Response, error) {
	s.mu.Lock()
	u, err := s.userLocked(user)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	rec, found := s.views[viewID]
	if !found || !rec.open || rec.user != user {
		s.mu.Unlock()
		return nil, fmt.Errorf("slackfake: view %q is not open for %s", viewID, user)
	}
	el, err := findElement(rec.blocks, []string{"button"}, actionID, blockID, buttonWithValue(value))
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	trig := s.issueTriggerLocked(user, viewID)
	payload := map[string]any{
		"type": "block_actions", "user": s.userObjLocked(u), "api_app_id": s.opts.AppID,
		"token": s.opts.VerificationToken, "trigger_id": trig,
		"team":       map[string]any{"id": s.opts.TeamID, "domain": s.opts.TeamDomain},
		"enterprise": nil, "is_enterprise_install": false,
		"container": map[string]any{"type": "view", "view_id": viewID},
		"view":      s.viewJSONLocked(rec),
		"state":     map[string]any{"values": map[string]any{}},
		"actions":   []any{s.actionJSON(el, s.nextTSLocked(), nil)},
	}
	s.mu.Unlock()
	return s.deliver(ctx, &delivery{kind: "interactive", payload: payload, triggerID: trig}, opts)
}

// SubmitView emulates user pressing the submit button of the open modal
// viewID. values maps block_id -> action_id -> value: the text for text
// inputs, the option value for static_select / radio_buttons, the user /
// conversation / channel id for the *_select menus, "YYYY-MM-DD" for
// datepicker, "HH:mm" for timepicker; multi-selects and checkboxes take
// several values separated by commas. Input blocks without a value keep
// their initial value (or null). The bot receives a view_submission payload
// with state.values in the documented shape
// (https://api.slack.com/reference/interaction-payloads/views#view_submission)
// and its answer is applied: empty closes the view, response_action
// errors / update / push / clear as documented
// (https://api.slack.com/surfaces/modals#responses).
func (s *Server) SubmitView(ctx context.Context, user, viewID string, values map[string]map[string]string, opts ...SendOption) (*Response, error) {
	s.mu.Lock()
	u, err := s.userLocked(user)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	rec, found := s.views[viewID]
	if !found || !rec.open || rec.user != user || rec.typ != "modal" {
		s.mu.Unlock()
		return nil, fmt.Errorf("slackfake: modal %q is not open for %s", viewID, user)
	}
	if _, hasSubmit := rec.body["submit"]; !hasSubmit {
		s.mu.Unlock()
		return nil, fmt.Errorf("slackfake: modal %q has no submit button", viewID)
	}
	state, err := buildState(rec.blocks, values)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	rec.submittedValues = state
	trig := s.issueTriggerLocked(user, viewID)
	payload := map[string]any{
		"type": "view_submission", "user": s.userObjLocked(u), "api_app_id": s.opts.AppID,
		"token": s.opts.VerificationToken, "trigger_id": trig,
		"team":       map[string]any{"id": s.opts.TeamID, "domain": s.opts.TeamDomain},
		"enterprise": nil, "is_enterprise_install": false,
		"view":          s.viewJSONLocked(rec),
		"response_urls": []any{},
	}
	s.mu.Unlock()

	resp, err := s.deliver(ctx, &delivery{kind: "interactive", payload: payload, acceptsResp: true, triggerID: trig}, opts)
	if err != nil || resp == nil {
		return resp, err
	}
	s.applyViewAnswer(resp, user, viewID)
	return resp, nil
}

func (s *Server) applyViewAnswer(resp *Response, user, viewID string) {
	if resp.TimedOut || resp.StatusCode != http.StatusOK {
		return // Slack keeps the modal open and shows an error
	}
	act := &ViewAction{}
	resp.ViewAction = act
	body := bytes.TrimSpace(resp.Body)
	var parsed struct {
		ResponseAction string            `json:"response_action"`
		Errors         map[string]string `json:"errors"`
		View           json.RawMessage   `json:"view"`
	}
	if len(body) > 0 && string(body) != "null" {
		if err := json.Unmarshal(body, &parsed); err != nil {
			resp.Problems = append(resp.Problems, "invalid JSON answer to view_submission: "+err.Error())
			return
		}
	}
	act.ResponseAction, act.Errors, act.View = parsed.ResponseAction, parsed.Errors, parsed.View
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.views[viewID]
	defer s.notifyLocked()
	switch parsed.ResponseAction {
	case "":
		s.popViewLocked(user, viewID)
	case "clear":
		s.closeStackLocked(user)
	case "errors":
		inputs := inputBlockIDs(rec.blocks)
		for k := range parsed.Errors {
			if !inputs[k] {
				resp.Problems = append(resp.Problems, fmt.Sprintf("errors key %q is not the block_id of an input block", k))
			}
		}
		if len(parsed.Errors) == 0 {
			resp.Problems = append(resp.Problems, "response_action errors without errors")
		}
		rec.errors = parsed.Errors
	case "update", "push":
		view, blocks, bad := s.parseView(&apiRequest{params: url.Values{"view": {string(parsed.View)}}}, "modal")
		if bad != nil {
			resp.Problems = append(resp.Problems, fmt.Sprintf("response_action %s with an invalid view: %v %v", parsed.ResponseAction, bad.body["error"], bad.body["errors"]))
			return
		}
		if parsed.ResponseAction == "update" {
			rec.body, rec.blocks, rec.hash, rec.errors, rec.submittedValues = view, blocks, s.newHashLocked(), nil, nil
			return
		}
		stack := s.modalStacks[user]
		if len(stack) >= maxModalPushers {
			resp.Problems = append(resp.Problems, "push_limit_reached")
			return
		}
		nv, bad := s.newViewLocked(user, "modal", view, blocks, stack[0], stack[len(stack)-1])
		if bad != nil {
			resp.Problems = append(resp.Problems, fmt.Sprint(bad.body["error"]))
			return
		}
		s.modalStacks[user] = append(stack, nv.id)
	default:
		resp.Problems = append(resp.Problems, fmt.Sprintf("unknown response_action %q", parsed.ResponseAction))
	}
}

func inputBlockIDs(blocks json.RawMessage) map[string]bool {
	var bl []map[string]any
	_ = json.Unmarshal(blocks, &bl)
	out := map[string]bool{}
	for _, b := range bl {
		if asString(b["type"]) == "input" {
			out[asString(b["block_id"])] = true
		}
	}
	return out
}

// buildState produces view.state.values for a submission.
func buildState(blocks json.RawMessage, values map[string]map[string]string) (map[string]map[string]any, error) {
	var bl []map[string]any
	_ = json.Unmarshal(blocks, &bl)
	used := map[string]bool{}
	state := map[string]map[string]any{}
	for _, b := range bl {
		if asString(b["type"]) != "input" {
			continue
		}
		bid := asString(b["block_id"])
		el, _ := b["element"].(map[string]any)
		aid := asString(el["action_id"])
		given, has := values[bid][aid]
		if _, blockGiven := values[bid]; blockGiven {
			used[bid] = true
			for k := range values[bid] {
				if k != aid {
					return nil, fmt.Errorf("slackfake: input block %q has action_id %q, not %q", bid, aid, k)
				}
			}
		}
		v, err := elementState(el, given, has)
		if err != nil {
			return nil, fmt.Errorf("slackfake: block %q: %w", bid, err)
		}
		if !hasValue(v) && b["optional"] != true {
			return nil, fmt.Errorf("slackfake: required input %q/%q has no value; Slack would not let the user submit", bid, aid)
		}
		state[bid] = map[string]any{aid: v}
	}
	for bid := range values {
		if !used[bid] {
			return nil, fmt.Errorf("slackfake: no input block %q in the view", bid)
		}
	}
	return state, nil
}

func hasValue(v map[string]any) bool {
	for k, x := range v {
		if k == "type" {
			continue
		}
		switch t := x.(type) {
		case nil:
		case string:
			if t != "" {
				return true
			}
		case []any:
			if len(t) > 0 {
				return true
			}
		default:
			return true
		}
	}
	return false
}

func optionsOf(el map[string]any) []map[string]any {
	var out []map[string]any
	add := func(list any) {
		arr, _ := list.([]any)
		for _, o := range arr {
			if om, isObj := o.(map[string]any); isObj {
				out = append(out, om)
			}
		}
	}
	add(el["options"])
	if groups, isArr := el["option_groups"].([]any); isArr {
		for _, g := range groups {
			if gm, isObj := g.(map[string]any); isObj {
				add(gm["options"])
			}
		}
	}
	return out
}

func splitValues(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// elementState renders one input element's state entry.
func elementState(el map[string]any, given string, has bool) (map[string]any, error) {
	t := asString(el["type"])
	st := map[string]any{"type": t}
	pick := func(val string) (map[string]any, error) {
		for _, o := range optionsOf(el) {
			if asString(o["value"]) == val {
				return o, nil
			}
		}
		return nil, fmt.Errorf("no option with value %q", val)
	}
	switch t {
	case "plain_text_input", "email_text_input", "url_text_input", "number_input":
		v := asString(el["initial_value"])
		if has {
			v = given
		}
		if t == "plain_text_input" && v != "" {
			if n := runeLen(v); n < intField(el, "min_length") || (intField(el, "max_length") > 0 && n > intField(el, "max_length")) {
				return nil, fmt.Errorf("value length %d is outside min_length/max_length", n)
			}
		}
		if v == "" {
			st["value"] = nil
		} else {
			st["value"] = v
		}
	case "static_select", "external_select", "radio_buttons":
		st["selected_option"] = el["initial_option"]
		if has && given != "" {
			o, err := pick(given)
			if err != nil && t != "external_select" {
				return nil, err
			}
			if o == nil {
				o = map[string]any{"text": map[string]any{"type": "plain_text", "text": given}, "value": given}
			}
			st["selected_option"] = o
		}
		if st["selected_option"] == nil {
			st["selected_option"] = nil
		}
	case "multi_static_select", "multi_external_select", "checkboxes":
		sel := []any{}
		if init, isArr := el["initial_options"].([]any); isArr {
			sel = init
		}
		if has {
			sel = []any{}
			for _, v := range splitValues(given) {
				o, err := pick(v)
				if err != nil && t != "multi_external_select" {
					return nil, err
				}
				if o == nil {
					o = map[string]any{"text": map[string]any{"type": "plain_text", "text": v}, "value": v}
				}
				sel = append(sel, o)
			}
		}
		st["selected_options"] = sel
	case "users_select", "conversations_select", "channels_select":
		key := map[string]string{"users_select": "selected_user", "conversations_select": "selected_conversation", "channels_select": "selected_channel"}[t]
		initKey := map[string]string{"users_select": "initial_user", "conversations_select": "initial_conversation", "channels_select": "initial_channel"}[t]
		st[key] = el[initKey]
		if has {
			st[key] = given
		}
	case "multi_users_select", "multi_conversations_select", "multi_channels_select":
		key := map[string]string{"multi_users_select": "selected_users", "multi_conversations_select": "selected_conversations", "multi_channels_select": "selected_channels"}[t]
		initKey := map[string]string{"multi_users_select": "initial_users", "multi_conversations_select": "initial_conversations", "multi_channels_select": "initial_channels"}[t]
		sel := []any{}
		if init, isArr := el[initKey].([]any); isArr {
			sel = init
		}
		if has {
			sel = []any{}
			for _, v := range splitValues(given) {
				sel = append(sel, v)
			}
		}
		st[key] = sel
	case "datepicker":
		st["selected_date"] = el["initial_date"]
		if has {
			if _, err := time.Parse("2006-01-02", given); err != nil {
				return nil, fmt.Errorf("datepicker value %q is not YYYY-MM-DD", given)
			}
			st["selected_date"] = given
		}
	case "timepicker":
		st["selected_time"] = el["initial_time"]
		if has {
			if _, err := time.Parse("15:04", given); err != nil {
				return nil, fmt.Errorf("timepicker value %q is not HH:mm", given)
			}
			st["selected_time"] = given
		}
	case "datetimepicker":
		st["selected_date_time"] = el["initial_date_time"]
		if has {
			n, err := strconv.ParseInt(given, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("datetimepicker value %q is not a unix timestamp", given)
			}
			st["selected_date_time"] = n
		}
	default:
		if has {
			st["value"] = given
		}
	}
	return st, nil
}

// ---- events ----

// OpenHome emulates user opening the app's Home tab: the bot receives an
// Events API event_callback wrapping an app_home_opened event with a unique
// event_id (https://api.slack.com/events/app_home_opened).
func (s *Server) OpenHome(ctx context.Context, user string, opts ...SendOption) (*Response, error) {
	s.mu.Lock()
	if _, err := s.userLocked(user); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	ev := map[string]any{
		"type": "app_home_opened", "user": user, "channel": s.dmChannelLocked(user),
		"tab": "home", "event_ts": s.nextTSLocked(),
	}
	if id, has := s.homeByUser[user]; has {
		ev["view"] = s.viewJSONLocked(s.views[id])
	}
	payload, eventID := s.eventCallbackLocked(ev)
	s.mu.Unlock()
	return s.deliver(ctx, &delivery{kind: "events_api", payload: payload, eventID: eventID}, opts)
}

// SendEvent delivers any Events API event (the inner "event" object) to the
// bot wrapped in an event_callback with a unique event_id.
func (s *Server) SendEvent(ctx context.Context, event map[string]any, opts ...SendOption) (*Response, error) {
	s.mu.Lock()
	if _, has := event["event_ts"]; !has {
		event["event_ts"] = s.nextTSLocked()
	}
	payload, eventID := s.eventCallbackLocked(event)
	s.mu.Unlock()
	return s.deliver(ctx, &delivery{kind: "events_api", payload: payload, eventID: eventID}, opts)
}

func (s *Server) eventCallbackLocked(ev map[string]any) (map[string]any, string) {
	s.eventSeq++
	eventID := fmt.Sprintf("Ev%08X%s", s.eventSeq, strings.ToUpper(randHex(2)))
	return map[string]any{
		"token": s.opts.VerificationToken, "team_id": s.opts.TeamID, "api_app_id": s.opts.AppID,
		"event": ev, "type": "event_callback", "event_id": eventID, "event_time": s.now().Unix(),
		"authorizations": []any{map[string]any{
			"enterprise_id": nil, "team_id": s.opts.TeamID, "user_id": s.opts.BotUserID,
			"is_bot": true, "is_enterprise_install": false,
		}},
		"is_ext_shared_channel": false,
		"event_context":         "4-" + randHex(8),
	}, eventID
}

// URLVerification sends the url_verification challenge Slack sends when the
// Events request URL is saved, and checks the bot echoes the challenge
// (https://api.slack.com/events/url_verification). It is always HTTP.
func (s *Server) URLVerification(ctx context.Context, opts ...SendOption) (*Response, error) {
	s.mu.Lock()
	target := s.requestURLs.events
	s.mu.Unlock()
	if target == "" {
		return nil, ErrNoRequestURL
	}
	challenge := randHex(16)
	body := mustJSON(map[string]any{"token": s.opts.VerificationToken, "challenge": challenge, "type": "url_verification"})
	resp, err := s.sendHTTP(ctx, target, http.Header{"Content-Type": {"application/json"}}, body, opts)
	if err != nil {
		return resp, err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(resp.Body, []byte(challenge)) {
		return resp, fmt.Errorf("slackfake: url_verification failed: status %d, body %q does not carry challenge %q", resp.StatusCode, truncate(string(resp.Body), 200), challenge)
	}
	return resp, nil
}
