package slackfake

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Message is a message visible in a conversation.
type Message struct {
	Channel  string
	TS       string
	ThreadTS string // parent ts for a thread reply, "" otherwise
	Text     string
	// Blocks is the message's blocks array as JSON ("" / nil when none).
	Blocks      json.RawMessage
	Attachments json.RawMessage
	// User is the author: the bot's user id for messages the bot posted.
	User  string
	BotID string // set for bot messages
	// Source is how the message arrived: "chat.postMessage",
	// "response_url", "slash_command_response".
	Source string
	// Edits holds the previous versions, oldest first (chat.update and
	// response_url replace_original).
	Edits []Edit
	// Deleted is set by response_url delete_original.
	Deleted  bool
	PostedAt time.Time
}

// Edit is a former version of a message.
type Edit struct {
	Text        string
	Blocks      json.RawMessage
	Attachments json.RawMessage
	ReplacedAt  time.Time
	By          string // "chat.update" or "response_url"
}

// Ephemeral is a message only one user sees.
type Ephemeral struct {
	Channel  string
	User     string // the only user who sees it
	TS       string
	ThreadTS string
	Text     string
	Blocks   json.RawMessage
	Source   string // "chat.postEphemeral", "response_url", "slash_command_response"
	Edits    []Edit
	Deleted  bool
	PostedAt time.Time
}

func (m *Message) clone() Message {
	c := *m
	c.Edits = append([]Edit(nil), m.Edits...)
	return c
}

func (e *Ephemeral) clone() Ephemeral {
	c := *e
	c.Edits = append([]Edit(nil), e.Edits...)
	return c
}

// Messages returns the messages of a channel (including thread replies and
// deleted ones, which carry Deleted), oldest first.
func (s *Server) Messages(channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages[channel] {
		out = append(out, m.clone())
	}
	return out
}

// Message returns one message by channel and ts.
func (s *Server) Message(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.findMessageLocked(channel, ts); m != nil {
		return m.clone(), true
	}
	return Message{}, false
}

// DMChannel returns the id of the bot's DM with user ("" if none was opened
// or written to yet).
func (s *Server) DMChannel(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dmByUser[user]
}

// DMs returns the messages in the bot's DM with user.
func (s *Server) DMs(user string) []Message {
	s.mu.Lock()
	id, ok := s.dmByUser[user]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return s.Messages(id)
}

// Ephemerals returns the ephemeral messages shown to user in channel
// (user "" = every user), oldest first.
func (s *Server) Ephemerals(channel, user string) []Ephemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Ephemeral
	for _, e := range s.ephemerals {
		if e.Channel == channel && (user == "" || e.User == user) {
			out = append(out, e.clone())
		}
	}
	return out
}

// Calls returns the recorded Web API calls of method ("" = all), in order.
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// WaitForCall waits until a call of method satisfying match (nil = any) has
// been recorded, including calls recorded before WaitForCall was called.
func (s *Server) WaitForCall(ctx context.Context, method string, match func(Call) bool) (Call, error) {
	for {
		s.mu.Lock()
		for _, c := range s.calls {
			if c.Method == method && (match == nil || match(c)) {
				s.mu.Unlock()
				return c, nil
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Call{}, fmt.Errorf("slackfake: no matching %s call: %w", method, ctx.Err())
		}
	}
}

// WaitForMessage waits until channel holds a (non-deleted) message
// satisfying match (nil = any), looking at its current version. Messages
// present before the call count.
func (s *Server) WaitForMessage(ctx context.Context, channel string, match func(Message) bool) (Message, error) {
	for {
		s.mu.Lock()
		for _, m := range s.messages[channel] {
			if m.Deleted {
				continue
			}
			c := m.clone()
			if match == nil || match(c) {
				s.mu.Unlock()
				return c, nil
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Message{}, fmt.Errorf("slackfake: no matching message in %s: %w", channel, ctx.Err())
		}
	}
}

// WaitForDM waits for a message in the bot's DM with user (the DM may not
// exist yet when WaitForDM is called).
func (s *Server) WaitForDM(ctx context.Context, user string, match func(Message) bool) (Message, error) {
	for {
		s.mu.Lock()
		id, ok := s.dmByUser[user]
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return s.WaitForMessage(ctx, id, match)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Message{}, fmt.Errorf("slackfake: no DM with %s: %w", user, ctx.Err())
		}
	}
}

// WaitForEphemeral waits for an ephemeral message to user in channel.
func (s *Server) WaitForEphemeral(ctx context.Context, channel, user string, match func(Ephemeral) bool) (Ephemeral, error) {
	for {
		s.mu.Lock()
		for _, e := range s.ephemerals {
			if e.Channel == channel && (user == "" || e.User == user) && !e.Deleted {
				c := e.clone()
				if match == nil || match(c) {
					s.mu.Unlock()
					return c, nil
				}
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Ephemeral{}, fmt.Errorf("slackfake: no matching ephemeral for %s in %s: %w", user, channel, ctx.Err())
		}
	}
}

// WaitFor waits until cond (called without locks held, after every state
// change) returns true.
func (s *Server) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("slackfake: condition not met: %w", ctx.Err())
		}
	}
}

func (s *Server) findMessageLocked(channel, ts string) *Message {
	for _, m := range s.messages[channel] {
		if m.TS == ts {
			return m
		}
	}
	return nil
}

// AddUserMessage seeds a message written by a user (not the bot) into
// channel and answers its ts.
func (s *Server) AddUserMessage(channel, user, text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.nextTSLocked()
	s.messages[channel] = append(s.messages[channel], &Message{Channel: channel, TS: ts, Text: text, User: user, Source: "user", PostedAt: s.now()})
	s.notifyLocked()
	return ts
}
