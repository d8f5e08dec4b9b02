package slackfake

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// maxTextLen: "The text for a message is truncated at 40,000 characters"; longer
// text answers msg_too_long (https://api.slack.com/methods/chat.postMessage#truncating).
const maxTextLen = 40000

// resolveChannelLocked maps a channel argument (id, #name, name, or a user id
// meaning the bot's DM with that user) to a channel.
func (s *Server) resolveChannelLocked(arg string) (*Channel, bool) {
	if arg == "" {
		return nil, false
	}
	if c, found := s.channels[arg]; found {
		return c, true
	}
	if _, isUser := s.users[arg]; isUser && (strings.HasPrefix(arg, "U") || strings.HasPrefix(arg, "W")) {
		return s.channels[s.dmChannelLocked(arg)], true
	}
	name := strings.TrimPrefix(arg, "#")
	for _, c := range s.channels {
		if c.Name == name && !strings.HasPrefix(c.ID, "D") {
			return c, true
		}
	}
	return nil, false
}

// messageContent parses and validates text / blocks / attachments. It answers
// the error result, if any.
type content struct {
	text        string
	hasText     bool
	blocks      json.RawMessage // normalized, with generated block_ids
	hasBlocks   bool
	attachments json.RawMessage
	hasAttach   bool
}

func (s *Server) parseContent(r *apiRequest, surface string) (content, *apiResult) {
	var c content
	if vs, present := r.params["text"]; present {
		c.text, c.hasText = vs[0], true
	}
	if r.params.Get("markdown_text") != "" {
		if c.hasText || r.params.Get("blocks") != "" {
			res := fail("markdown_text_conflict")
			return c, &res
		}
		c.text, c.hasText = r.params.Get("markdown_text"), true
	}
	if raw, present := r.params["blocks"]; present {
		var blocks []any
		if err := json.Unmarshal([]byte(raw[0]), &blocks); err != nil {
			res := fail("invalid_blocks_format")
			return c, &res
		}
		if errs := validateBlocks(blocks, surface, "/blocks"); len(errs) > 0 {
			res := fail("invalid_blocks", errs...)
			return c, &res
		}
		c.blocks, c.hasBlocks = s.normalizeBlocks(blocks), true
	}
	if raw, present := r.params["attachments"]; present {
		var att []any
		if err := json.Unmarshal([]byte(raw[0]), &att); err != nil {
			res := fail("invalid_attachments")
			return c, &res
		}
		if len(att) > 100 {
			res := fail("too_many_attachments")
			return c, &res
		}
		c.attachments, c.hasAttach = mustJSON(att), true
	}
	if utf8.RuneCountInString(c.text) > maxTextLen {
		res := fail("msg_too_long")
		return c, &res
	}
	return c, nil
}

func (c content) empty() bool {
	return c.text == "" && !(c.hasBlocks && len(c.blocks) > 2) && !(c.hasAttach && len(c.attachments) > 2)
}

// normalizeBlocks gives every block a block_id and every interactive element
// an action_id, as Slack does for blocks posted without them.
func (s *Server) normalizeBlocks(blocks []any) json.RawMessage {
	if len(blocks) == 0 {
		return json.RawMessage("[]")
	}
	for _, b := range blocks {
		bm, isMap := b.(map[string]any)
		if !isMap {
			continue
		}
		if _, has := bm["block_id"]; !has {
			bm["block_id"] = randHex(3)[:5]
		}
		fill := func(e any) {
			if em, ok := e.(map[string]any); ok && isInteractive(asString(em["type"])) {
				if _, has := em["action_id"]; !has {
					em["action_id"] = randHex(3)[:5]
				}
			}
		}
		if els, ok := bm["elements"].([]any); ok && asString(bm["type"]) == "actions" {
			for _, e := range els {
				fill(e)
			}
		}
		if acc, ok := bm["accessory"]; ok {
			fill(acc)
		}
		if el, ok := bm["element"]; ok {
			fill(el)
		}
	}
	return mustJSON(blocks)
}

func (s *Server) messageJSON(m *Message) map[string]any {
	out := map[string]any{
		"type": "message", "text": m.Text, "ts": m.TS, "team": s.opts.TeamID,
	}
	if m.User != "" {
		out["user"] = m.User
	}
	if m.BotID != "" {
		out["bot_id"] = m.BotID
		out["app_id"] = s.opts.AppID
	}
	if m.ThreadTS != "" {
		out["thread_ts"] = m.ThreadTS
	}
	if len(m.Blocks) > 0 {
		out["blocks"] = m.Blocks
	}
	if len(m.Attachments) > 0 {
		out["attachments"] = m.Attachments
	}
	return out
}

func (s *Server) takeChannelTokenLocked(channel string) (time.Duration, bool) {
	rate := s.opts.PostMessageRate
	if rate == nil {
		return 0, true
	}
	now := s.now()
	b, found := s.buckets[channel]
	if !found {
		b = &bucket{tokens: float64(rate.Burst), last: now}
		s.buckets[channel] = b
	}
	b.tokens += float64(now.Sub(b.last)) / float64(rate.Interval)
	if b.tokens > float64(rate.Burst) {
		b.tokens = float64(rate.Burst)
	}
	b.last = now
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) * float64(rate.Interval)), false
	}
	b.tokens--
	return 0, true
}

// chat.postMessage: https://api.slack.com/methods/chat.postMessage
func (s *Server) chatPostMessage(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, found := s.resolveChannelLocked(r.params.Get("channel"))
	if !found {
		return fail("channel_not_found")
	}
	c, bad := s.parseContent(r, "message")
	if bad != nil {
		return *bad
	}
	if c.empty() {
		return fail("no_text")
	}
	if ch.BotNotMember {
		return fail("not_in_channel")
	}
	if wait, allowed := s.takeChannelTokenLocked(ch.ID); !allowed {
		return ratelimited(wait)
	}
	threadTS := r.params.Get("thread_ts")
	if threadTS != "" {
		if parent := s.findMessageLocked(ch.ID, threadTS); parent != nil && parent.ThreadTS != "" {
			threadTS = parent.ThreadTS // a reply's ts is mapped to its parent, as Slack does
		}
	}
	m := &Message{
		Channel: ch.ID, TS: s.nextTSLocked(), ThreadTS: threadTS, Text: c.text,
		Blocks: c.blocks, Attachments: c.attachments,
		User: s.opts.BotUserID, BotID: s.opts.BotID, Source: "chat.postMessage", PostedAt: s.now(),
	}
	s.messages[ch.ID] = append(s.messages[ch.ID], m)
	s.notifyLocked()
	return ok(map[string]any{"channel": ch.ID, "ts": m.TS, "message": s.messageJSON(m)})
}

// chat.postEphemeral: https://api.slack.com/methods/chat.postEphemeral
func (s *Server) chatPostEphemeral(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, found := s.resolveChannelLocked(r.params.Get("channel"))
	if !found {
		return fail("channel_not_found")
	}
	user := r.params.Get("user")
	if _, known := s.users[user]; !known {
		return fail("user_not_found")
	}
	c, bad := s.parseContent(r, "message")
	if bad != nil {
		return *bad
	}
	if c.empty() {
		return fail("no_text")
	}
	if ch.BotNotMember {
		return fail("not_in_channel")
	}
	if !s.channelMemberLocked(ch, user) {
		return fail("user_not_in_channel")
	}
	e := &Ephemeral{
		Channel: ch.ID, User: user, TS: s.nextTSLocked(), ThreadTS: r.params.Get("thread_ts"),
		Text: c.text, Blocks: c.blocks, Source: "chat.postEphemeral", PostedAt: s.now(),
	}
	s.ephemerals = append(s.ephemerals, e)
	s.notifyLocked()
	return ok(map[string]any{"message_ts": e.TS})
}

// chat.update: https://api.slack.com/methods/chat.update
// "If you don't include blocks, the message's previous blocks will only be
// retained if the text argument is not provided. If the text argument is
// provided and blocks are not provided, the blocks will be removed."
// Attachments are retained unless an (empty) attachments array is passed.
func (s *Server) chatUpdate(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, found := s.channels[r.params.Get("channel")]
	if !found {
		return fail("channel_not_found")
	}
	m := s.findMessageLocked(ch.ID, r.params.Get("ts"))
	if m == nil || m.Deleted {
		return fail("message_not_found")
	}
	if m.User != s.opts.BotUserID {
		return fail("cant_update_message")
	}
	c, bad := s.parseContent(r, "message")
	if bad != nil {
		return *bad
	}
	if !c.hasText && !c.hasBlocks && !c.hasAttach {
		return fail("no_text")
	}
	if ch.BotNotMember {
		return fail("not_in_channel")
	}
	m.Edits = append(m.Edits, Edit{Text: m.Text, Blocks: m.Blocks, Attachments: m.Attachments, ReplacedAt: s.now(), By: "chat.update"})
	switch {
	case c.hasBlocks:
		m.Blocks = c.blocks
		if string(c.blocks) == "[]" {
			m.Blocks = nil
		}
	case c.hasText:
		m.Blocks = nil
	}
	if c.hasText {
		m.Text = c.text
	}
	if c.hasAttach {
		m.Attachments = c.attachments
		if string(c.attachments) == "[]" {
			m.Attachments = nil
		}
	}
	if m.Text == "" && len(m.Blocks) == 0 && len(m.Attachments) == 0 {
		// Roll back: Slack refuses to leave a message empty.
		prev := m.Edits[len(m.Edits)-1]
		m.Text, m.Blocks, m.Attachments = prev.Text, prev.Blocks, prev.Attachments
		m.Edits = m.Edits[:len(m.Edits)-1]
		return fail("no_text")
	}
	s.notifyLocked()
	return ok(map[string]any{"channel": ch.ID, "ts": m.TS, "text": m.Text, "message": s.messageJSON(m)})
}

// chat.getPermalink: https://api.slack.com/methods/chat.getPermalink
func (s *Server) chatGetPermalink(r *apiRequest) apiResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, found := s.channels[r.params.Get("channel")]
	if !found {
		return fail("channel_not_found")
	}
	ts := r.params.Get("message_ts")
	if s.findMessageLocked(ch.ID, ts) == nil {
		return fail("message_not_found")
	}
	return ok(map[string]any{
		"channel":   ch.ID,
		"permalink": fmt.Sprintf("https://%s.slack.com/archives/%s/p%s", s.opts.TeamDomain, ch.ID, strings.ReplaceAll(ts, ".", "")),
	})
}
