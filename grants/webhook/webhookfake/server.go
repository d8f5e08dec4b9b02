package webhookfake

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/jitbot/jitbot/internal/httpfake"
)

// Payload is the JSON body jitbot sends (see docs/webhook.md). It is declared here independently of the sender.
type Payload struct {
	Type       string            `json:"type"` // "grant", "revoke" or "check"
	GrantID    string            `json:"grant_id"`
	BindingKey string            `json:"binding_key"`
	RequestID  string            `json:"request_id"`
	UserID     string            `json:"user_id"`
	Principal  string            `json:"principal"`
	Role       string            `json:"role"`
	Target     map[string]string `json:"target"`
	ExpiresAt  string            `json:"expires_at"`
	Generation uint64            `json:"generation"`
	SentAt     string            `json:"sent_at"`
}

// HeaderGeneration is the unsigned copy of Payload.Generation that jitbot sends; the server refuses (400) a
// request whose header disagrees with the signed payload.
const HeaderGeneration = "jitbot-generation"

// Delivery is one verified request. Every verified request is recorded, duplicates included.
type Delivery struct {
	ID        string      // webhook-id
	Header    http.Header // request headers
	Timestamp int64       // webhook-timestamp
	Payload   Payload     // decoded body
	Body      []byte      // raw body as received
	At        time.Time   // when the server recorded it
	Status    int         // the status the server answered (an injected failure, or 200/400)
	// Stale says the operation was not applied because its generation is lower than the last one applied
	// to the same access (it was still answered 200).
	Stale bool
}

// Key identifies deliveries of one type for one grant.
type Key struct{ Type, GrantID string }

// Server is a Standard Webhooks receiver for tests. It verifies every request with Verify, records verified
// deliveries, applies grant/revoke to a present set keyed by grant_id and answers check from that set with
// {"present": bool}. It orders operations as the contract asks: per access (binding_key, else grant_id) it keeps
// the last generation applied and ignores, answering 200, a grant or revoke with a lower one (Delivery.Stale).
// Knobs: FailNext (answer a status for the next N verified requests without applying them), SetLatency (delay
// each request; the delay ends early if the client goes away), HoldNext (hold the next request and apply it
// when released, even after the client gave up: a call that lands late), SetPresent (change state behind the
// sender's back). Use WaitFor to wait for a delivery instead of sleeping.
//
// It also models the optional parts of the contract (docs/webhook.md "Answering"): standing access the principal
// has by other means (SetStanding: a grant then answers {"pre_existing": true} and changes nothing, a revoke
// never removes it), asynchronous provisioning (SetAsync, StartInFlight: a grant or revoke answers
// {"pending": true} until it finishes, and an operation of the opposite kind on the same access meanwhile gets
// 409), and provider-side expiry (Expiry: the expires_at of the last grant applied).
//
// Answers: 405 for a non-POST, 401 for a request that fails verification (recorded in Rejections, not in
// Deliveries), 400 for a verified body that is not a valid payload, 409 for a grant or revoke while the
// opposite operation on the same access is in flight, otherwise 200 with {"ok":true} (grant, revoke; grant also
// returns {"ref": ...}, or {"pre_existing": true}; either may carry {"pending": true}) or {"present":bool} (check,
// true when the principal has the access, jitbot's or standing).
type Server struct {
	secret []byte
	srv    *httptest.Server

	// URL is the base URL of the started server ("" for a Server made by NewHandler).
	URL string

	mu         sync.Mutex
	now        func() time.Time
	failures   httpfake.Injector[int] // injected statuses
	deliveries []Delivery
	counts     map[Key]int
	typeCounts map[string]int
	present    map[string]Payload
	applied    map[string]uint64 // access key -> last generation applied
	standing   map[string]bool   // access key -> the principal has the access by other means
	inFlight   map[string]*operation
	async      time.Duration // how long a new grant or revoke stays pending (0: applied at once)
	holds      []chan struct{}
	rejections []string
	changed    chan struct{}
}

// NewHandler returns a Server that is not listening: use it as an http.Handler.
func NewHandler(secret []byte) *Server {
	return &Server{
		secret:     append([]byte(nil), secret...),
		now:        time.Now,
		counts:     map[Key]int{},
		typeCounts: map[string]int{},
		present:    map[string]Payload{},
		applied:    map[string]uint64{},
		standing:   map[string]bool{},
		inFlight:   map[string]*operation{},
		changed:    make(chan struct{}),
	}
}

// NewServer returns a Server listening on a local httptest.Server. Close it when done.
func NewServer(secret []byte) *Server {
	s := NewHandler(secret)
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	return s
}

// Close shuts the listening server down (no-op for NewHandler).
func (s *Server) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
}

// Client returns an HTTP client for the listening server (http.DefaultClient for NewHandler).
func (s *Server) Client() *http.Client {
	if s.srv != nil {
		return s.srv.Client()
	}
	return http.DefaultClient
}

// SetNow replaces the clock used to check webhook-timestamp.
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// FailNext makes the next n verified requests answer status (with a small JSON body) without being applied.
// 3xx answers carry "Location: /moved"; 429 and 503 carry "Retry-After: 1". Calls queue up in order.
func (s *Server) FailNext(status, n int) {
	s.failures.FailNext(n, status)
}

// SetLatency delays every following request by d before it is verified (0 to stop).
func (s *Server) SetLatency(d time.Duration) { s.failures.SetLatency(d) }

// HoldNext makes the next request wait, once its body was read, until release is called, and then be
// verified and applied as usual even if the client has gone away meanwhile: a delivery that lands after the
// sender gave up on it. arrived is closed when the request is being held.
func (s *Server) HoldNext() (arrived <-chan struct{}, release func()) {
	a, r := make(chan struct{}), make(chan struct{})
	s.mu.Lock()
	s.holds = append(s.holds, a, r)
	s.mu.Unlock()
	return a, func() { close(r) }
}

// Reset clears pending failures and latency. Deliveries, counts and the present set are kept.
func (s *Server) Reset() { s.failures.Clear() }

// Present reports whether the access of grantID (or of a binding key) is present.
func (s *Server) Present(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.standing[id] {
		return true
	}
	for k, p := range s.present {
		if k == id || p.GrantID == id {
			return true
		}
	}
	return false
}

// accessKey is what the receiver keeps access under, as a natural receiver would: the binding when the
// payload names one (overlapping grants share it), else the grant.
func accessKey(p Payload) string {
	if p.BindingKey != "" {
		return p.BindingKey
	}
	return p.GrantID
}

// operation is a grant or revoke the receiver accepted and has not finished: it finishes once it has been
// asked about polls times (resends or opposite operations on the same access), or takes has passed, or Settle.
type operation struct {
	payload Payload
	started time.Time
	takes   time.Duration // 0: only polls or Settle finish it
	polls   int
}

// inFlightPolls is how many requests about the access finish an operation started by StartInFlight.
const inFlightPolls = 2

// SetStanding gives (or takes away) the principal of an access key standing access that jitbot did not make,
// as an administrator would.
func (s *Server) SetStanding(key string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.standing[key] = true
	} else {
		delete(s.standing, key)
	}
}

// Standing reports whether the access key has standing access.
func (s *Server) Standing(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.standing[key]
}

// SetAsync makes every following grant or revoke pending for d of wall time before it takes effect (0: at once).
func (s *Server) SetAsync(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.async = d
}

// StartInFlight starts, behind the sender's back, an operation of type typ ("grant" or "revoke") on an access
// key that is still running: it finishes after two requests about the key, or on Settle.
func (s *Server) StartInFlight(key, typ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight[key] = &operation{payload: Payload{Type: typ, GrantID: key, BindingKey: key}, started: time.Now(), polls: inFlightPolls}
}

// Settle finishes every operation in flight.
func (s *Server) Settle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, op := range s.inFlight {
		s.finishLocked(key, op)
	}
}

// Expiry is the expires_at of the last grant applied to the access key: when the receiver would end the access
// itself.
func (s *Server) Expiry(key string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.present[key]
	if !ok || p.ExpiresAt == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, p.ExpiresAt)
	return t, err == nil
}

// finishLocked applies op and forgets it; s.mu must be held.
func (s *Server) finishLocked(key string, op *operation) {
	delete(s.inFlight, key)
	switch op.payload.Type {
	case "grant":
		s.present[key] = op.payload
	case "revoke":
		delete(s.present, key)
	}
}

// pollLocked looks at key's operation in flight for a request about the key (counted when count is set: a
// grant or revoke), finishes it when it is due, and returns the operation still running or the one it just
// finished; s.mu must be held.
func (s *Server) pollLocked(key string, count bool) (running, finished *operation) {
	op := s.inFlight[key]
	if op == nil {
		return nil, nil
	}
	if count {
		op.polls--
	}
	if op.takes == 0 && op.polls <= 0 || op.takes > 0 && time.Since(op.started) >= op.takes {
		s.finishLocked(key, op)
		return nil, op
	}
	return op, nil
}

// SetPresent adds grantID to the present set or removes it, as an out-of-band change would.
func (s *Server) SetPresent(grantID string, present bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if present {
		s.present[grantID] = Payload{Type: "grant", GrantID: grantID}
	} else {
		delete(s.present, grantID)
	}
}

// Count returns how many verified deliveries of type typ for grantID were received, failed ones included.
func (s *Server) Count(typ, grantID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[Key{typ, grantID}]
}

// CountType returns how many verified deliveries of type typ were received, failed ones included: a cheap
// poll for a load test, where copying Deliveries would compete with the sender for the CPU and the lock.
func (s *Server) CountType(typ string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.typeCounts[typ]
}

// Deliveries returns a copy of every verified delivery, in arrival order.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// Rejections returns the reasons requests failed verification, in arrival order.
func (s *Server) Rejections() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rejections...)
}

// WaitFor returns the first delivery, already recorded or still to come, for which match reports true. It
// returns ctx's error if ctx ends first. match runs without the server's lock held.
func (s *Server) WaitFor(ctx context.Context, match func(Delivery) bool) (Delivery, error) {
	seen := 0
	for {
		s.mu.Lock()
		batch := append([]Delivery(nil), s.deliveries[seen:]...)
		changed := s.changed
		s.mu.Unlock()
		for _, d := range batch {
			if match(d) {
				return d, nil
			}
		}
		seen += len(batch)
		select {
		case <-changed:
		case <-ctx.Done():
			return Delivery{}, ctx.Err()
		}
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}

	s.mu.Lock()
	now := s.now
	var held, proceed chan struct{}
	if len(s.holds) > 0 {
		held, proceed, s.holds = s.holds[0], s.holds[1], s.holds[2:]
	}
	s.mu.Unlock()
	if held != nil {
		close(held)
		<-proceed
	}
	if !httpfake.Wait(r.Context(), s.failures.Latency(), nil) {
		return // the client gave up: nothing is recorded or applied
	}

	if err := Verify(s.secret, r.Header, body, now()); err != nil {
		s.mu.Lock()
		s.rejections = append(s.rejections, err.Error())
		s.mu.Unlock()
		http.Error(w, "invalid webhook signature", http.StatusUnauthorized)
		return
	}

	d := Delivery{ID: r.Header.Get(HeaderID), Header: r.Header.Clone(), Body: body, At: time.Now()}
	d.Timestamp, _ = strconv.ParseInt(r.Header.Get(HeaderTimestamp), 10, 64)
	decodeErr := json.Unmarshal(body, &d.Payload)

	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.record(&d)

	if status, ok := s.failures.Take(nil); ok {
		d.Status = status
		switch {
		case d.Status >= 300 && d.Status < 400:
			w.Header().Set("Location", "/moved")
		case d.Status == http.StatusTooManyRequests || d.Status == http.StatusServiceUnavailable:
			w.Header().Set("Retry-After", "1")
		}
		writeJSON(w, d.Status, map[string]string{"error": fmt.Sprintf("injected %d", d.Status)})
		return
	}
	if decodeErr != nil || d.Payload.GrantID == "" {
		d.Status = http.StatusBadRequest
		writeJSON(w, d.Status, map[string]string{"error": "invalid payload"})
		return
	}
	if h := r.Header.Get(HeaderGeneration); h != "" && h != strconv.FormatUint(d.Payload.Generation, 10) {
		d.Status = http.StatusBadRequest
		writeJSON(w, d.Status, map[string]string{"error": "generation header does not match the signed payload"})
		return
	}
	d.Status = http.StatusOK
	key := accessKey(d.Payload)
	if (d.Payload.Type == "grant" || d.Payload.Type == "revoke") && d.Payload.Generation > 0 && d.Payload.Generation < s.applied[key] {
		d.Stale = true // superseded by a later operation: acknowledged, not applied
		writeJSON(w, d.Status, map[string]any{"ok": true, "ignored": "an operation with a later generation was applied"})
		return
	}
	running, finished := s.pollLocked(key, d.Payload.Type == "grant" || d.Payload.Type == "revoke")
	switch d.Payload.Type {
	case "grant", "revoke":
		if running != nil && running.payload.Type != d.Payload.Type {
			d.Status = http.StatusConflict // the contract: never "done" while the opposite change is running
			writeJSON(w, d.Status, map[string]string{"error": "another operation on this access is in progress"})
			return
		}
		if d.Payload.Generation > 0 {
			s.applied[key] = d.Payload.Generation
		}
		if running != nil { // a resend of the operation in flight
			writeJSON(w, d.Status, map[string]any{"ok": true, "pending": true})
			return
		}
		if finished != nil && finished.payload.Type == d.Payload.Type && finished.payload.GrantID == d.Payload.GrantID {
			// The resend that finds its operation finished: done (a later grant's new end still applies).
			s.finishLocked(key, &operation{payload: d.Payload})
			writeJSON(w, d.Status, map[string]any{"ok": true})
			return
		}
		if d.Payload.Type == "grant" && s.standing[key] {
			if _, ours := s.present[key]; !ours {
				writeJSON(w, d.Status, map[string]any{"ok": true, "pre_existing": true})
				return
			}
		}
		if s.async > 0 {
			s.inFlight[key] = &operation{payload: d.Payload, started: time.Now(), takes: s.async}
			writeJSON(w, d.Status, map[string]any{"ok": true, "pending": true})
			return
		}
		s.finishLocked(key, &operation{payload: d.Payload})
		if d.Payload.Type == "grant" {
			writeJSON(w, d.Status, map[string]any{"ok": true, "ref": "rcv-" + d.ID})
		} else {
			writeJSON(w, d.Status, map[string]any{"ok": true})
		}
	case "check":
		_, ok := s.present[key]
		writeJSON(w, d.Status, map[string]any{"present": ok || s.standing[key]})
	default:
		d.Status = http.StatusBadRequest
		writeJSON(w, d.Status, map[string]string{"error": "unknown type"})
	}
}

// record appends d and wakes WaitFor callers; s.mu must be held.
func (s *Server) record(d *Delivery) {
	s.deliveries = append(s.deliveries, *d)
	s.counts[Key{d.Payload.Type, d.Payload.GrantID}]++
	s.typeCounts[d.Payload.Type]++
	close(s.changed)
	s.changed = make(chan struct{})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
