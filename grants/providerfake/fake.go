// Package providerfake is an in-memory grants.Provider for engine tests: it models access per binding
// (principal + target), records every call, and fails on demand.
//
// Other access: SetOther gives a binding's principal the same access through objects jitbot did not grant
// (as a hand-made Kubernetes RoleBinding or a GCP IAM binding without jitbot's condition would), and the fake
// is a grants.OtherAccessInspector that reports them. Where it diverges from the real adapters: its Check
// reports only the access jitbot granted (Grant/Revoke), never the other access, whatever Assignment.Ref
// says (the kube, gcp and azure adapters count other access in Check unless the lease holds a reference of
// jitbot's own); Grant never reports other access as pre-existing (it grants regardless) and Revoke never removes it;
// an Inspect call is recorded, held, failed and ignored as a "check" (Calls("check"), FailNext("check", ...)),
// so that tests written against Check see the same calls.
package providerfake

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jitbot/jitbot/grants"
)

var (
	_ grants.Provider             = (*Fake)(nil)
	_ grants.OtherAccessInspector = (*Fake)(nil)
)

// Call is one recorded provider call.
type Call struct {
	Op         string // grant, revoke, check
	Assignment grants.Assignment
	Err        error
	// WasPresent says whether the binding was present when the call arrived: a revoke of something absent
	// is a duplicate revoke the provider could see.
	WasPresent bool
}

// Fake is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	present map[string]grants.Assignment
	other   map[string][]string // binding key -> objects jitbot did not grant that give the same access
	calls   []Call
	fail    []failure
	latency time.Duration
	hold    map[string]*gate
	landed  map[*gate]chan struct{}
}

type gate struct {
	arrived chan struct{}
	proceed chan struct{}
	// landing: the call ignores its context while held and is applied when released, as a request the
	// provider received and applies after jitbot stopped waiting for it.
	landing bool
}

// HoldLanding makes the next call of op wait, after it arrived, until release is called, and then apply,
// whatever happened to the caller's context meanwhile: a call the provider received and applies after the
// caller stalled past its binding lock (the caller waits, then succeeds), or after the caller gave up on it
// (its context ended: the caller gets ctx's error at once, and the call still applies on release). landed is
// closed once the call was applied.
func (f *Fake) HoldLanding(op string) (arrived <-chan struct{}, release func(), landed <-chan struct{}) {
	g := &gate{arrived: make(chan struct{}), proceed: make(chan struct{}), landing: true}
	done := make(chan struct{})
	f.mu.Lock()
	if f.hold == nil {
		f.hold = map[string]*gate{}
	}
	f.hold[op] = g
	if f.landed == nil {
		f.landed = map[*gate]chan struct{}{}
	}
	f.landed[g] = done
	f.mu.Unlock()
	return g.arrived, func() { close(g.proceed) }, done
}

// Hold makes the next call of op wait, after it arrived, until release is called: tests use it to run
// something else while a provider call is in flight.
func (f *Fake) Hold(op string) (arrived <-chan struct{}, release func()) {
	g := &gate{arrived: make(chan struct{}), proceed: make(chan struct{})}
	f.mu.Lock()
	if f.hold == nil {
		f.hold = map[string]*gate{}
	}
	f.hold[op] = g
	f.mu.Unlock()
	return g.arrived, func() { close(g.proceed) }
}

type failure struct {
	op  string
	err error
	// ignore: answer success without applying (a provider that acknowledges a change it did not make, or
	// an eventually consistent one that has not made it yet).
	ignore bool
}

// IgnoreNext makes the next n calls of op ("grant", "revoke" or "" for any) answer success without changing
// anything.
func (f *Fake) IgnoreNext(op string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.fail = append(f.fail, failure{op: op, ignore: true})
	}
}

// New returns an empty Fake.
func New() *Fake { return &Fake{present: map[string]grants.Assignment{}, other: map[string][]string{}} }

// SetOther makes a's principal hold a's access also through objects (short names, as an adapter reports
// them) that jitbot did not grant; no objects removes that other access.
func (f *Fake) SetOther(a grants.Assignment, objects ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(objects) == 0 {
		delete(f.other, Key(a))
		return
	}
	f.other[Key(a)] = slices.Clone(objects)
}

// Key is the binding a call acts on.
func Key(a grants.Assignment) string {
	var sb strings.Builder
	sb.WriteString(a.Principal)
	for _, k := range slices.Sorted(maps.Keys(a.Target)) {
		sb.WriteString("|" + k + "=" + a.Target[k])
	}
	return sb.String()
}

// FailNext makes the next n calls of op ("grant", "revoke" or "" for any) fail with err.
func (f *Fake) FailNext(op string, err error, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.fail = append(f.fail, failure{op: op, err: err})
	}
}

// SetLatency delays every call (honouring ctx).
func (f *Fake) SetLatency(d time.Duration) {
	f.mu.Lock()
	f.latency = d
	f.mu.Unlock()
}

// ErrUnavailable is a retryable failure for FailNext.
var ErrUnavailable = errors.New("fake provider unavailable")

func (f *Fake) do(ctx context.Context, op string, a grants.Assignment, apply func(present bool)) error {
	f.mu.Lock()
	lat := f.latency
	g := f.hold[op]
	delete(f.hold, op)
	f.mu.Unlock()
	if g != nil && g.landing {
		close(g.arrived)
		land := func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			_, was := f.present[Key(a)]
			apply(was)
			f.calls = append(f.calls, Call{Op: op, Assignment: a, WasPresent: was})
			close(f.landed[g])
			delete(f.landed, g)
		}
		select {
		case <-g.proceed:
			land()
			return nil
		case <-ctx.Done():
			go func() { <-g.proceed; land() }() // the caller gave up; the provider applies it anyway
			return ctx.Err()
		}
	}
	if g != nil {
		close(g.arrived)
		select {
		case <-g.proceed:
		case <-ctx.Done():
		}
	}
	if lat > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(lat):
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		f.calls = append(f.calls, Call{Op: op, Assignment: a, Err: err})
		return err
	}
	key := Key(a)
	_, was := f.present[key]
	for i, fl := range f.fail {
		if fl.op == "" || fl.op == op {
			f.fail = slices.Delete(f.fail, i, i+1)
			f.calls = append(f.calls, Call{Op: op, Assignment: a, Err: fl.err, WasPresent: was})
			if fl.ignore {
				if op == "check" {
					apply(was) // a check reports what is there
				}
				return nil
			}
			return fl.err
		}
	}
	apply(was)
	f.calls = append(f.calls, Call{Op: op, Assignment: a, WasPresent: was})
	return nil
}

func (f *Fake) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	err := f.do(ctx, "grant", a, func(bool) { f.present[Key(a)] = a })
	if err != nil {
		return "", err
	}
	return "fake-" + a.GrantID, nil
}

func (f *Fake) Revoke(ctx context.Context, a grants.Assignment) error {
	return f.do(ctx, "revoke", a, func(bool) { delete(f.present, Key(a)) })
}

func (f *Fake) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	var present bool
	err := f.do(ctx, "check", a, func(was bool) { present = was })
	return present, err
}

// Inspect reports jitbot's access (as Check) and the other access set by SetOther. It is recorded as a check.
func (f *Fake) Inspect(ctx context.Context, a grants.Assignment) (grants.Presence, error) {
	var pr grants.Presence
	err := f.do(ctx, "check", a, func(was bool) { pr = grants.Presence{Ours: was, Other: slices.Clone(f.other[Key(a)])} })
	return pr, err
}

// Present reports whether the binding of a is present.
func (f *Fake) Present(a grants.Assignment) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.present[Key(a)]
	return ok
}

// PresentCount is how many bindings are present.
func (f *Fake) PresentCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.present)
}

// Calls returns a copy of every call so far, optionally only of op.
func (f *Fake) Calls(op string) []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Call
	for _, c := range f.calls {
		if op == "" || c.Op == op {
			out = append(out, c)
		}
	}
	return out
}

var _ grants.Inventory = (*Fake)(nil)

// ListOwned returns every present binding, labelled like a real adapter labels its objects.
func (f *Fake) ListOwned(ctx context.Context) ([]grants.Owned, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []grants.Owned
	for _, k := range slices.Sorted(maps.Keys(f.present)) {
		a := f.present[k]
		out = append(out, grants.Owned{BindingKey: a.BindingKey, GrantID: a.GrantID, Principal: a.Principal, Target: a.Target, Ref: "fake/" + k})
	}
	return out, nil
}
