package slackfake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Socket Mode, as described on https://api.slack.com/apis/connections/socket
// and https://api.slack.com/apis/connections/socket-implement:
// apps.connections.open (app-level token) answers a single-use WebSocket
// URL; the server greets with "hello", sends envelopes
// {envelope_id, type, payload, accepts_response_payload, retry_attempt,
// retry_reason}, expects {"envelope_id":..., "payload":...} acks, and
// redelivers envelopes that were not acknowledged.

// maxAckBytes: Slack drops Socket Mode responses of 20 KiB or more.
const maxAckBytes = 20 * 1024

// Envelope is one Socket Mode envelope and what became of it.
type Envelope struct {
	ID      string
	Type    string // "slash_commands", "interactive", "events_api"
	Payload json.RawMessage
	// AcceptsResponsePayload is true for slash commands and view submissions.
	AcceptsResponsePayload bool
	Deliveries             []time.Time // one per (re)delivery
	Acked                  bool
	AckedAt                time.Time
	AckPayload             json.RawMessage
	DroppedAcks            int // acks ignored for being 20 KiB or more
	// RepeatAcks counts acks that came after the envelope was already acknowledged (the bot's answers to
	// Redeliver): Slack ignores them.
	RepeatAcks int
}

type envelope struct {
	Envelope
	ackCh chan struct{}
}

type sockConn struct {
	c   *websocket.Conn
	wmu sync.Mutex
}

func (c *sockConn) writeJSON(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.c.WriteJSON(v)
}

type socketHub struct {
	s         *Server
	mu        sync.Mutex
	tickets   map[string]bool
	conns     []*sockConn
	envelopes map[string]*envelope
	order     []string
	connected chan struct{} // closed and replaced when a connection arrives
	done      chan struct{}
	closeOnce sync.Once
	seq       int
}

func newSocketHub(s *Server) *socketHub {
	return &socketHub{
		s: s, tickets: map[string]bool{}, envelopes: map[string]*envelope{},
		connected: make(chan struct{}), done: make(chan struct{}),
	}
}

func (h *socketHub) newTicket() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := randHex(16)
	h.tickets[t] = true
	return t
}

func (h *socketHub) close() {
	h.closeOnce.Do(func() {
		close(h.done)
		h.mu.Lock()
		conns := h.conns
		h.conns = nil
		h.mu.Unlock()
		for _, c := range conns {
			_ = c.c.Close()
		}
	})
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (s *Server) handleSocket(w http.ResponseWriter, r *http.Request) {
	h := s.sock
	ticket := r.URL.Query().Get("ticket")
	h.mu.Lock()
	valid := h.tickets[ticket]
	delete(h.tickets, ticket) // WebSocket URLs are single use
	h.mu.Unlock()
	if !valid {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	conn := &sockConn{c: c}
	h.mu.Lock()
	h.conns = append(h.conns, conn)
	n := len(h.conns)
	h.mu.Unlock()
	hello := map[string]any{
		"type": "hello", "num_connections": n,
		"debug_info":      map[string]any{"host": "slackfake", "build_number": 1, "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": s.opts.AppID},
	}
	if err := conn.writeJSON(hello); err != nil {
		h.drop(conn)
		return
	}
	h.mu.Lock()
	close(h.connected)
	h.connected = make(chan struct{})
	h.mu.Unlock()
	s.mu.Lock()
	s.notifyLocked()
	s.mu.Unlock()
	s.logf("socket mode connection %d open", n)

	stopPing := make(chan struct{})
	go func() {
		t := time.NewTicker(s.opts.SocketPingInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				conn.wmu.Lock()
				err := c.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(5*time.Second))
				conn.wmu.Unlock()
				if err != nil {
					return
				}
			case <-stopPing:
				return
			case <-h.done:
				return
			}
		}
	}()
	defer close(stopPing)
	defer h.drop(conn)
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		h.handleAck(data)
	}
}

func (h *socketHub) drop(conn *sockConn) {
	h.mu.Lock()
	for i, c := range h.conns {
		if c == conn {
			h.conns = append(h.conns[:i], h.conns[i+1:]...)
			break
		}
	}
	h.mu.Unlock()
	_ = conn.c.Close()
}

func (h *socketHub) handleAck(data []byte) {
	var ack struct {
		EnvelopeID string          `json:"envelope_id"`
		Payload    json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(data, &ack); err != nil || ack.EnvelopeID == "" {
		h.s.logf("socket mode: ignoring message %q", truncate(string(data), 200))
		return
	}
	h.mu.Lock()
	env, found := h.envelopes[ack.EnvelopeID]
	if !found {
		h.mu.Unlock()
		return
	}
	if env.Acked {
		env.RepeatAcks++
		h.mu.Unlock()
		h.s.mu.Lock()
		h.s.notifyLocked()
		h.s.mu.Unlock()
		return
	}
	if len(bytes.TrimRight(data, "\n")) >= maxAckBytes {
		env.DroppedAcks++
		h.mu.Unlock()
		h.s.logf("socket mode: dropped %d-byte ack for %s (limit %d)", len(data), ack.EnvelopeID, maxAckBytes)
		return
	}
	env.Acked, env.AckedAt = true, time.Now()
	if len(ack.Payload) > 0 && string(ack.Payload) != "null" {
		env.AckPayload = ack.Payload
	}
	close(env.ackCh)
	h.mu.Unlock()
	h.s.mu.Lock()
	h.s.notifyLocked()
	h.s.mu.Unlock()
}

// waitConn waits for a live connection.
func (h *socketHub) waitConn(ctx context.Context) (*sockConn, error) {
	for {
		h.mu.Lock()
		if n := len(h.conns); n > 0 {
			c := h.conns[n-1]
			h.mu.Unlock()
			return c, nil
		}
		ch := h.connected
		h.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("slackfake: no Socket Mode connection: %w", ctx.Err())
		case <-h.done:
			return nil, errors.New("slackfake: server closed")
		}
	}
}

func (h *socketHub) deliver(ctx context.Context, d *delivery) (*Response, error) {
	if _, err := h.waitConn(ctx); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.seq++
	env := &envelope{
		Envelope: Envelope{
			ID:   fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", h.seq, h.seq&0xffff, h.seq&0xfff, h.seq&0xfff, time.Now().UnixNano()&0xffffffffffff),
			Type: d.kind, Payload: d.socketPayload(), AcceptsResponsePayload: d.acceptsResp,
		},
		ackCh: make(chan struct{}),
	}
	h.envelopes[env.ID] = env
	h.order = append(h.order, env.ID)
	h.mu.Unlock()

	start := time.Now()
	go h.runEnvelope(env)
	resp := &Response{Mode: ModeSocket, EnvelopeID: env.ID}
	timer := time.NewTimer(h.s.opts.AckTimeout)
	defer timer.Stop()
	select {
	case <-env.ackCh:
		resp.StatusCode = http.StatusOK
		resp.Latency = time.Since(start)
		h.mu.Lock()
		resp.Body = append([]byte(nil), env.AckPayload...)
		resp.Deliveries = len(env.Deliveries)
		h.mu.Unlock()
	case <-timer.C:
		resp.TimedOut = true
		resp.Latency = time.Since(start)
		resp.Problems = append(resp.Problems, "operation_timeout: no ack within "+h.s.opts.AckTimeout.String())
		h.mu.Lock()
		resp.Deliveries = len(env.Deliveries)
		h.mu.Unlock()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return resp, nil
}

// runEnvelope sends env and redelivers it, with retry_attempt+1 and
// retry_reason "timeout", while it is not acknowledged.
func (h *socketHub) runEnvelope(env *envelope) {
	for attempt := 0; ; attempt++ {
		msg := map[string]any{
			"envelope_id": env.ID, "type": env.Type, "payload": env.Payload,
			"accepts_response_payload": env.AcceptsResponsePayload,
			"retry_attempt":            attempt, "retry_reason": "",
		}
		if attempt > 0 {
			msg["retry_reason"] = "timeout"
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-h.done:
			case <-env.ackCh:
			}
			cancel()
		}()
		conn, err := h.waitConn(ctx)
		if err != nil {
			cancel()
			return
		}
		h.mu.Lock()
		env.Deliveries = append(env.Deliveries, time.Now())
		h.mu.Unlock()
		if err := conn.writeJSON(msg); err != nil {
			h.mu.Lock()
			env.Deliveries = env.Deliveries[:len(env.Deliveries)-1]
			h.mu.Unlock()
			h.drop(conn)
			cancel()
			attempt-- // not delivered: try again on the next connection
			continue
		}
		cancel()
		h.s.logf("socket mode: delivered %s %s (attempt %d)", env.Type, env.ID, attempt)
		if attempt >= h.s.opts.SocketMaxRetries {
			return
		}
		select {
		case <-env.ackCh:
			return
		case <-h.done:
			return
		case <-time.After(h.s.opts.SocketRetryDelay):
		}
	}
}

// Redeliver sends envelope id once more, as Slack does when the bot's ack did not reach it (a connection
// that dropped just after the bot acked, a slow ack): same envelope_id and payload, retry_attempt counting
// the deliveries so far, retry_reason "timeout". It returns once the envelope is written; the bot's answer
// shows in Envelopes as RepeatAcks.
func (s *Server) Redeliver(ctx context.Context, id string) error {
	h := s.sock
	h.mu.Lock()
	env, found := h.envelopes[id]
	h.mu.Unlock()
	if !found {
		return fmt.Errorf("slackfake: no envelope %q", id)
	}
	conn, err := h.waitConn(ctx)
	if err != nil {
		return err
	}
	h.mu.Lock()
	attempt := len(env.Deliveries)
	env.Deliveries = append(env.Deliveries, time.Now())
	msg := map[string]any{
		"envelope_id": env.ID, "type": env.Type, "payload": env.Payload,
		"accepts_response_payload": env.AcceptsResponsePayload,
		"retry_attempt":            attempt, "retry_reason": "timeout",
	}
	h.mu.Unlock()
	if err := conn.writeJSON(msg); err != nil {
		return fmt.Errorf("slackfake: redeliver %s: %w", id, err)
	}
	s.logf("socket mode: redelivered %s %s (attempt %d)", env.Type, env.ID, attempt)
	return nil
}

// SendRaw writes msg as one text frame on the live Socket Mode connection, unchecked: malformed or
// hostile envelopes for robustness tests and fuzzing. Nothing is recorded and no ack is awaited.
func (s *Server) SendRaw(ctx context.Context, msg []byte) error {
	conn, err := s.sock.waitConn(ctx)
	if err != nil {
		return err
	}
	conn.wmu.Lock()
	defer conn.wmu.Unlock()
	_ = conn.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return conn.c.WriteMessage(websocket.TextMessage, msg)
}

// Envelopes returns every Socket Mode envelope sent so far, in order.
func (s *Server) Envelopes() []Envelope {
	h := s.sock
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Envelope, 0, len(h.order))
	for _, id := range h.order {
		e := h.envelopes[id].Envelope
		e.Deliveries = append([]time.Time(nil), e.Deliveries...)
		out = append(out, e)
	}
	return out
}

// SocketConnections is the number of open Socket Mode connections.
func (s *Server) SocketConnections() int {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	return len(s.sock.conns)
}

// WaitForSocket waits until the bot has an open Socket Mode connection.
func (s *Server) WaitForSocket(ctx context.Context) error {
	_, err := s.sock.waitConn(ctx)
	return err
}

// DisconnectSockets sends Slack's {"type":"disconnect"} message (reason e.g.
// "refresh_requested", "warning", "link_disabled") on every connection, then
// closes them.
func (s *Server) DisconnectSockets(reason string) {
	h := s.sock
	h.mu.Lock()
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	for _, c := range conns {
		_ = c.writeJSON(map[string]any{"type": "disconnect", "reason": reason, "debug_info": map[string]any{"host": "slackfake"}})
		_ = c.c.Close()
	}
}
