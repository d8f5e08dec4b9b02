// Package httpfake holds what the fakes of the APIs jitbot talks to share. Injector is the fault and latency
// injection of every provider fake (awsfake, azurefake, gcpfake, kubefake, the webhook receiver, pdfake, ogfake);
// Box adds, for the on-call fakes, request recording, status faults with Retry-After and API key checks.
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
	faults Injector[Fault]
	mu     sync.Mutex
	reqs   []Request
}

// FailNext makes the next n requests fail with f.
func (b *Box) FailNext(n int, f Fault) { b.faults.FailNext(n, f) }

// FailAlways makes every request fail with f until Heal.
func (b *Box) FailAlways(f Fault) { b.faults.FailAlways(f) }

// Heal removes every injected fault and the latency.
func (b *Box) Heal() { b.faults.Clear() }

// SetLatency delays every answer by d (cut short when the client goes away).
func (b *Box) SetLatency(d time.Duration) { b.faults.SetLatency(d) }

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
	b.mu.Unlock()
	f, faulty := b.faults.Take(nil)
	if !Wait(r.Context(), b.faults.Latency()+f.Delay, nil) {
		return
	}
	if faulty && f.Status != 0 {
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
