// Package httpfake holds what the on-call fakes (pdfake, ogfake) share: request recording, fault injection
// (status answers with Retry-After, latency, hanging until the client gives up) and API key checks.
package httpfake

import (
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Request is one recorded request. The Authorization header is not kept; AuthOK says whether it was right.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header // without Authorization
	AuthOK bool
	Time   time.Time
}

// Fault is what an injected failure does. With Status 0 the request is served normally after Delay.
type Fault struct {
	Status     int           // HTTP status to answer with (e.g. 500, 429, 503)
	RetryAfter string        // Retry-After header value, if any
	Body       string        // response body; default: a JSON error in the tool's format
	Delay      time.Duration // wait before answering (cut short when the client goes away)
}

// Box records requests and applies faults. The zero value is ready to use.
type Box struct {
	mu      sync.Mutex
	queue   []Fault
	always  *Fault
	latency time.Duration
	reqs    []Request
}

// FailNext makes the next n requests fail with f.
func (b *Box) FailNext(n int, f Fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for range n {
		b.queue = append(b.queue, f)
	}
}

// FailAlways makes every request fail with f until Heal.
func (b *Box) FailAlways(f Fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.always = &f
}

// Heal removes every injected fault and the latency.
func (b *Box) Heal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queue, b.always, b.latency = nil, nil, 0
}

// SetLatency delays every answer by d (cut short when the client goes away).
func (b *Box) SetLatency(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.latency = d
}

// Requests returns a copy of what was recorded.
func (b *Box) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.reqs...)
}

// Reset forgets the recorded requests.
func (b *Box) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reqs = nil
}

// Serve records r, applies latency and any fault, checks auth, then calls next. errorBody renders a tool-format
// error for a status; unauthorized writes the tool's 401 answer.
func (b *Box) Serve(w http.ResponseWriter, r *http.Request, authOK bool, errorBody func(status int) string,
	unauthorized func(w http.ResponseWriter), next func(w http.ResponseWriter, r *http.Request)) {
	h := r.Header.Clone()
	h.Del("Authorization")
	b.mu.Lock()
	b.reqs = append(b.reqs, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: h, AuthOK: authOK, Time: time.Now()})
	var f *Fault
	if len(b.queue) > 0 {
		f = &b.queue[0]
		b.queue = b.queue[1:]
	} else if b.always != nil {
		f = b.always
	}
	delay := b.latency
	b.mu.Unlock()

	if f != nil {
		delay += f.Delay
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if f != nil && f.Status != 0 {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		body := f.Body
		if body == "" {
			body = errorBody(f.Status)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(body))
		return
	}
	if !authOK {
		unauthorized(w)
		return
	}
	next(w, r)
}
