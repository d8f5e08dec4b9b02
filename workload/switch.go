package workload

import (
	"context"
	"sync/atomic"
)

// Switch is an Authenticator whose implementation can be replaced while calls are in flight: a policy
// reload that changes the trusted issuers puts a new one in force without a restart. A call uses the
// authenticator that was in force when it started.
type Switch struct {
	cur atomic.Pointer[Authenticator]
}

// NewSwitch returns a Switch that starts with a.
func NewSwitch(a Authenticator) *Switch {
	s := &Switch{}
	s.Store(a)
	return s
}

// Store puts a in force for every later call.
func (s *Switch) Store(a Authenticator) { s.cur.Store(&a) }

// Authenticate verifies bearer with the authenticator in force.
func (s *Switch) Authenticate(ctx context.Context, bearer string) (Identity, error) {
	return (*s.cur.Load()).Authenticate(ctx, bearer)
}

// Recognizes reports whether the authenticator in force recognises bearer (true when it does not say).
func (s *Switch) Recognizes(bearer string) bool {
	if r, ok := (*s.cur.Load()).(Recognizer); ok {
		return r.Recognizes(bearer)
	}
	return true
}
