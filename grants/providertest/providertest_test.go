package providertest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providertest"
)

// fakeAPI stands for a cloud API: a set of bindings, one pending fault, optional latency. It is the ground
// truth, and the shape a cloud adapter's fake takes.
type fakeAPI struct {
	mu       sync.Mutex
	bindings map[string]bool
	fault    providertest.Fault
	latency  time.Duration
}

var errConflict = errors.New("fake: conflict")

func (f *fakeAPI) call(ctx context.Context, fn func() error) error {
	f.mu.Lock()
	latency, fault := f.latency, f.fault
	f.fault = 0
	f.mu.Unlock()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	switch fault {
	case providertest.Throttled:
		return errors.New("fake: 429 throttled")
	case providertest.Conflict:
		return errConflict
	case providertest.NotFound:
		return fmt.Errorf("fake: 404 not found")
	case providertest.AccessDenied:
		return fmt.Errorf("fake: 403 access denied")
	case providertest.ServerError:
		return fmt.Errorf("fake: 500 internal")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return fn()
}

// adapter is a minimal reference adapter: it classifies the fake's errors and retries a conflict once.
type adapter struct{ api *fakeAPI }

func key(a grants.Assignment) string { return a.Principal + "|" + a.Role + "|" + a.GrantID }

func classify(err error, notFoundOK bool) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	switch msg := err.Error(); {
	case msg == "fake: 404 not found" && notFoundOK:
		return nil
	case msg == "fake: 404 not found", msg == "fake: 403 access denied":
		return grants.Permanent(err)
	}
	return err
}

func (p adapter) do(ctx context.Context, notFoundOK bool, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := p.api.call(ctx, fn)
	if errors.Is(err, errConflict) {
		err = p.api.call(ctx, fn) // resolve a conflict by retrying once
	}
	return classify(err, notFoundOK)
}

func (p adapter) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	return "ref-" + a.GrantID, p.do(ctx, false, func() error { p.api.bindings[key(a)] = true; return nil })
}

func (p adapter) Revoke(ctx context.Context, a grants.Assignment) error {
	return p.do(ctx, true, func() error { delete(p.api.bindings, key(a)); return nil })
}

func (p adapter) Check(ctx context.Context, a grants.Assignment) (present bool, err error) {
	err = p.do(ctx, true, func() error { present = p.api.bindings[key(a)]; return nil })
	return present, err
}

func TestSuiteAgainstReferenceAdapter(t *testing.T) {
	api := &fakeAPI{bindings: map[string]bool{}}
	n := 0
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T) grants.Provider { return adapter{api} },
		Assignment: func(t *testing.T) grants.Assignment {
			n++
			return grants.Assignment{GrantID: fmt.Sprint("g", n), Principal: "alice", Role: "admin"}
		},
		Present: func(t *testing.T, a grants.Assignment) bool {
			api.mu.Lock()
			defer api.mu.Unlock()
			return api.bindings[key(a)]
		},
		Inject: func(t *testing.T, f providertest.Fault) {
			api.mu.Lock()
			defer api.mu.Unlock()
			api.fault = f
		},
		SetPresent: func(t *testing.T, a grants.Assignment, present bool) {
			api.mu.Lock()
			defer api.mu.Unlock()
			api.bindings[key(a)] = present
		},
		Latency: func(t *testing.T, d time.Duration) {
			api.mu.Lock()
			defer api.mu.Unlock()
			api.latency = d
		},
		Reset: func(t *testing.T) {
			api.mu.Lock()
			defer api.mu.Unlock()
			api.fault, api.latency = 0, 0
		},
		Secrets: []string{"AKIDEXAMPLESECRET"},
	})
}

func TestDefaultOutcomes(t *testing.T) {
	for _, c := range []struct {
		op   providertest.Op
		f    providertest.Fault
		want providertest.Outcome
	}{
		{providertest.OpGrant, providertest.Throttled, providertest.Retryable},
		{providertest.OpCheck, providertest.ServerError, providertest.Retryable},
		{providertest.OpRevoke, providertest.Conflict, providertest.RetryableOrSuccess},
		{providertest.OpGrant, providertest.AccessDenied, providertest.Permanent},
		{providertest.OpGrant, providertest.NotFound, providertest.Permanent},
		{providertest.OpRevoke, providertest.NotFound, providertest.Success},
		{providertest.OpCheck, providertest.NotFound, providertest.Success},
	} {
		if got := providertest.DefaultOutcome(c.op, c.f); got != c.want {
			t.Errorf("DefaultOutcome(%s, %s) = %s, want %s", c.op, c.f, got, c.want)
		}
	}
}
