package slackfake

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// response_url limits: "You can use a response_url up to 5 times within 30
// minutes" (https://api.slack.com/interactivity/handling#message_responses).
const (
	responseURLMaxUses = 5
	responseURLTTL     = 30 * time.Minute
)

type responseURL struct {
	id        string
	channel   string
	user      string
	messageTS string // the message the interaction came from ("" for slash commands)
	ephemeral bool   // that message is ephemeral
	created   time.Time
	uses      int
	lastTS    string // last message posted through this URL
	lastEph   bool
}

// ResponseURLPost is one POST the bot made to a response_url.
type ResponseURLPost struct {
	URL     string
	Body    json.RawMessage
	At      time.Time
	Status  int
	Error   string // "" when accepted
	Channel string
	User    string
}

func (s *Server) newResponseURLLocked(channel, user, messageTS string, ephemeral bool) string {
	id := s.nextID("R") + randHex(8)
	s.responseURLs[id] = &responseURL{id: id, channel: channel, user: user, messageTS: messageTS, ephemeral: ephemeral, created: s.now()}
	return s.hs.URL + "/response/" + id
}

func writeJSON(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// handleResponseURL serves the response_url endpoints. Slack does not document
// the exact refusal; the emulator answers HTTP 404 with
// {"ok":false,"error":"used_url"} after 5 uses and "expired_url" after 30
// minutes, so a bot must check the HTTP status (slack-go reports a
// StatusCodeError) as well as "ok".
func (s *Server) handleResponseURL(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/response/")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.notifyLocked()
	ru, found := s.responseURLs[id]
	record := func(status int, errCode string) {
		post := ResponseURLPost{URL: s.hs.URL + r.URL.Path, Body: append(json.RawMessage(nil), body...), At: s.now(), Status: status, Error: errCode}
		if ru != nil {
			post.Channel, post.User = ru.channel, ru.user
		}
		s.responsePosts = append(s.responsePosts, post)
	}
	switch {
	case r.Method != http.MethodPost:
		record(http.StatusMethodNotAllowed, "invalid_method")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"ok": false, "error": "invalid_method"})
		return
	case !found:
		record(http.StatusNotFound, "no_service")
		writeJSON(w, http.StatusNotFound, map[string]any{"ok": false, "error": "no_service"})
		return
	case s.now().Sub(ru.created) > responseURLTTL:
		record(http.StatusNotFound, "expired_url")
		writeJSON(w, http.StatusNotFound, map[string]any{"ok": false, "error": "expired_url"})
		return
	case ru.uses >= responseURLMaxUses:
		record(http.StatusNotFound, "used_url")
		writeJSON(w, http.StatusNotFound, map[string]any{"ok": false, "error": "used_url"})
		return
	}
	ru.uses++
	var msg map[string]any
	if err := json.Unmarshal(body, &msg); err != nil || msg == nil {
		record(http.StatusBadRequest, "invalid_payload")
		writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "error": "invalid_payload"})
		return
	}
	if probs := s.applyMessagePayloadLocked(msg, ru, "response_url"); len(probs) > 0 {
		code := probs[0]
		res := map[string]any{"ok": false, "error": code}
		if len(probs) > 1 {
			res["response_metadata"] = map[string]any{"messages": probs[1:]}
		}
		record(http.StatusBadRequest, code)
		writeJSON(w, http.StatusBadRequest, res)
		return
	}
	record(http.StatusOK, "")
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// ResponseURLPosts returns every POST made to response_urls, in order.
func (s *Server) ResponseURLPosts() []ResponseURLPost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ResponseURLPost(nil), s.responsePosts...)
}

// applyMessagePayloadLocked applies a message payload sent to a response_url
// or as a slash command's immediate answer: {text, blocks, attachments,
// response_type, replace_original, delete_original, thread_ts}. It answers
// problems, the first being an error code.
func (s *Server) applyMessagePayloadLocked(msg map[string]any, ru *responseURL, source string) []string {
	text := asString(msg["text"])
	var blocks, attachments json.RawMessage
	if raw, has := msg["blocks"]; has && raw != nil {
		arr, isArr := raw.([]any)
		if !isArr {
			return []string{"invalid_blocks_format"}
		}
		if errs := validateBlocks(arr, "message", "/blocks"); len(errs) > 0 {
			return append([]string{"invalid_blocks"}, errs...)
		}
		if len(arr) > 0 {
			blocks = s.normalizeBlocks(arr)
		}
	}
	if raw, has := msg["attachments"]; has && raw != nil {
		if arr, isArr := raw.([]any); isArr && len(arr) > 0 {
			attachments = mustJSON(arr)
		}
	}
	if runeLen(text) > maxTextLen {
		return []string{"msg_too_long"}
	}
	now := s.now()
	origTS, origEph := ru.messageTS, ru.ephemeral
	if origTS == "" {
		origTS, origEph = ru.lastTS, ru.lastEph
	}
	if msg["delete_original"] == true {
		if origTS == "" {
			return []string{"message_not_found"}
		}
		if origEph {
			for _, e := range s.ephemerals {
				if e.Channel == ru.channel && e.TS == origTS {
					e.Deleted = true
				}
			}
		} else if m := s.findMessageLocked(ru.channel, origTS); m != nil {
			m.Deleted = true
		}
		return nil
	}
	if text == "" && blocks == nil && attachments == nil {
		return []string{"no_text"}
	}
	if msg["replace_original"] == true {
		if origTS == "" {
			return []string{"message_not_found"}
		}
		if origEph {
			for _, e := range s.ephemerals {
				if e.Channel == ru.channel && e.TS == origTS {
					e.Edits = append(e.Edits, Edit{Text: e.Text, Blocks: e.Blocks, ReplacedAt: now, By: source})
					e.Text, e.Blocks = text, blocks
					return nil
				}
			}
			return []string{"message_not_found"}
		}
		m := s.findMessageLocked(ru.channel, origTS)
		if m == nil {
			return []string{"message_not_found"}
		}
		m.Edits = append(m.Edits, Edit{Text: m.Text, Blocks: m.Blocks, Attachments: m.Attachments, ReplacedAt: now, By: source})
		m.Text, m.Blocks, m.Attachments = text, blocks, attachments
		return nil
	}
	ts := s.nextTSLocked()
	if asString(msg["response_type"]) == "in_channel" {
		m := &Message{
			Channel: ru.channel, TS: ts, ThreadTS: asString(msg["thread_ts"]), Text: text, Blocks: blocks,
			Attachments: attachments, User: s.opts.BotUserID, BotID: s.opts.BotID, Source: source, PostedAt: now,
		}
		s.messages[ru.channel] = append(s.messages[ru.channel], m)
		ru.lastTS, ru.lastEph = ts, false
		return nil
	}
	s.ephemerals = append(s.ephemerals, &Ephemeral{
		Channel: ru.channel, User: ru.user, TS: ts, ThreadTS: asString(msg["thread_ts"]),
		Text: text, Blocks: blocks, Source: source, PostedAt: now,
	})
	ru.lastTS, ru.lastEph = ts, true
	return nil
}
