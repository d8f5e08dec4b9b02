package providertest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providertest"
)

// asyncAPI models a cloud whose assignments are created and deleted asynchronously and carry an end time, where
// an administrator's assignment is the same object as jitbot's: the shape of Identity Center (async) plus a
// self-expiring provider. It exists to show that the lifecycle cases can be met, and how a harness wires them.
type asyncAPI struct {
	mu       sync.Mutex
	assigned map[string]time.Time // binding key -> provider-side end (zero: none)
	inFlight map[string]*asyncOp
	slow     time.Duration // how long a new operation takes; 0: it finishes on the first poll
}

type asyncOp struct {
	deletion bool
	started  time.Time
	takes    time.Duration
	manual   bool // finishes only on Settle
	polled   bool
}

func (f *asyncAPI) done(op *asyncOp) bool {
	if op.manual {
		return false
	}
	if op.takes > 0 {
		return time.Since(op.started) >= op.takes
	}
	return op.polled
}

// finish applies the operation on k if it is done. Caller holds mu.
func (f *asyncAPI) finish(k string) {
	op := f.inFlight[k]
	if op == nil || !f.done(op) {
		return
	}
	delete(f.inFlight, k)
	if op.deletion {
		delete(f.assigned, k)
	} else if _, ok := f.assigned[k]; !ok {
		f.assigned[k] = time.Time{}
	}
}

// asyncAdapter is a correct adapter for asyncAPI.
type asyncAdapter struct{ api *asyncAPI }

func (p asyncAdapter) AttemptBudget(op string) time.Duration { return 3 * time.Second }

// wait polls until no operation is in flight for k.
func (p asyncAdapter) wait(ctx context.Context, k string) error {
	for {
		p.api.mu.Lock()
		if op := p.api.inFlight[k]; op != nil {
			op.polled = true
		}
		p.api.finish(k)
		busy := p.api.inFlight[k] != nil
		p.api.mu.Unlock()
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (p asyncAdapter) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	if err := ctx.Err(); err != nil {
		return a.Ref, err
	}
	k := a.BindingKey
	if err := p.wait(ctx, k); err != nil {
		return a.Ref, err
	}
	p.api.mu.Lock()
	_, present := p.api.assigned[k]
	p.api.mu.Unlock()
	switch {
	case present && (a.Ref == "" || a.Ref == grants.RefUntouched || grants.IsPreExisting(a.Ref)):
		return grants.PreExistingRef("asyncapi"), nil // standing access: nothing to change, nothing to remove
	case !present:
		p.api.mu.Lock()
		p.api.inFlight[k] = &asyncOp{started: time.Now(), takes: p.api.slow}
		p.api.mu.Unlock()
		if err := p.wait(ctx, k); err != nil {
			return "mine", err
		}
	}
	p.api.mu.Lock()
	p.api.assigned[k] = a.ExpiresAt
	p.api.mu.Unlock()
	return "mine", nil
}

func (p asyncAdapter) Revoke(ctx context.Context, a grants.Assignment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if grants.IsPreExisting(a.Ref) || a.Ref == grants.RefUntouched {
		return nil
	}
	k := a.BindingKey
	if err := p.wait(ctx, k); err != nil { // a creation in flight would make any answer now stale
		return err
	}
	p.api.mu.Lock()
	_, present := p.api.assigned[k]
	if present {
		p.api.inFlight[k] = &asyncOp{deletion: true, started: time.Now(), takes: p.api.slow}
	}
	p.api.mu.Unlock()
	return p.wait(ctx, k)
}

func (p asyncAdapter) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	p.api.mu.Lock()
	defer p.api.mu.Unlock()
	_, ok := p.api.assigned[a.BindingKey]
	return ok, nil
}

func TestLifecycleCasesAgainstAsyncReference(t *testing.T) {
	api := &asyncAPI{assigned: map[string]time.Time{}, inFlight: map[string]*asyncOp{}}
	n := 0
	present := func(t *testing.T, a grants.Assignment) bool {
		api.mu.Lock()
		defer api.mu.Unlock()
		_, ok := api.assigned[a.BindingKey]
		return ok
	}
	set := func(t *testing.T, a grants.Assignment, on bool) {
		api.mu.Lock()
		defer api.mu.Unlock()
		if on {
			api.assigned[a.BindingKey] = time.Time{}
		} else {
			delete(api.assigned, a.BindingKey)
		}
	}
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T) grants.Provider { return asyncAdapter{api} },
		Assignment: func(t *testing.T) grants.Assignment {
			n++
			a := grants.Assignment{GrantID: fmt.Sprint("g", n), Principal: "alice", Role: "admin",
				Target: map[string]string{"n": fmt.Sprint(n)}, ExpiresAt: time.Now().Add(time.Hour)}
			a.BindingKey = grants.BindingKey("asyncapi", a.Principal, a.Target)
			return a
		},
		Present:         present,
		Inject:          func(t *testing.T, f providertest.Fault) {},
		Outcome:         func(providertest.Op, providertest.Fault) providertest.Outcome { return providertest.Skip },
		Skip:            map[string]string{"DeadlineInFlight": "no latency model", "CancelledContext": "covered by the reference adapter"},
		SetPresent:      set,
		Standing:        set,
		StandingPresent: present,
		InFlight: func(t *testing.T, a grants.Assignment, op providertest.Op) {
			api.mu.Lock()
			defer api.mu.Unlock()
			if op == providertest.OpRevoke {
				api.assigned[a.BindingKey] = time.Time{}
			}
			api.inFlight[a.BindingKey] = &asyncOp{deletion: op == providertest.OpRevoke, started: time.Now(), takes: 50 * time.Millisecond}
		},
		Settle: func(t *testing.T) {
			api.mu.Lock()
			defer api.mu.Unlock()
			for k, op := range api.inFlight {
				op.manual, op.takes, op.polled = false, 0, true
				api.finish(k)
			}
		},
		ProviderExpiry: func(t *testing.T, a grants.Assignment) (time.Time, bool) {
			api.mu.Lock()
			defer api.mu.Unlock()
			end, ok := api.assigned[a.BindingKey]
			return end, ok && !end.IsZero()
		},
		HonoursCallPending: true,
		Cycles:             20,
		SlowAsync: func(t *testing.T, d time.Duration) {
			api.mu.Lock()
			defer api.mu.Unlock()
			api.slow = d
		},
	})
}
