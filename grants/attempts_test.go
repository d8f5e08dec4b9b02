package grants_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
)

// asyncCloud stands for a cloud whose grant is an asynchronous operation taking `takes` to finish (Identity
// Center provisioning can take minutes). The operation lives at the cloud: a caller that gives up can come
// back with its id (Assignment.Ref) and find it further along. Time is the synctest bubble's.
type asyncCloud struct {
	takes  time.Duration
	budget time.Duration // declared through grants.AttemptBudgeter when > 0

	mu      sync.Mutex
	started map[string]time.Time // operation id -> start
	present map[string]bool      // binding key -> access present
	creates int                  // operations started
	nextID  int
}

func newAsyncCloud(takes time.Duration) *asyncCloud {
	return &asyncCloud{takes: takes, started: map[string]time.Time{}, present: map[string]bool{}}
}

func (c *asyncCloud) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	c.mu.Lock()
	id := strings.TrimPrefix(a.Ref, "op:")
	start, ok := c.started[id]
	if !ok || a.Ref == "" {
		c.nextID++
		id = fmt.Sprint(c.nextID)
		start = time.Now()
		c.started[id] = start
		c.creates++
	}
	c.mu.Unlock()
	ref := "op:" + id
	select {
	case <-time.After(time.Until(start.Add(c.takes))):
	case <-ctx.Done():
		return ref, ctx.Err() // still in flight: the reference lets the next attempt resume
	}
	c.mu.Lock()
	c.present[a.BindingKey] = true
	c.mu.Unlock()
	return ref, nil
}

func (c *asyncCloud) Revoke(ctx context.Context, a grants.Assignment) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.present, a.BindingKey)
	return nil
}

func (c *asyncCloud) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.present[a.BindingKey], nil
}

// budgeted is an asyncCloud that declares an attempt budget.
type budgeted struct{ *asyncCloud }

func (b budgeted) AttemptBudget(op string) time.Duration { return b.budget }

func openStore(t *testing.T) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// activateLikeTheSweeper stores a lease and drives its binding at every due time, as the sweeper would, until
// it is no longer activating. It returns the lease and how many passes it took.
func activateLikeTheSweeper(t *testing.T, st *bolt.Store, m *grants.Manager) (store.Grant, int) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	g := grants.NewLease(grants.LeaseSpec{RequestID: "r1", UserID: "U1", Role: "admin", Provider: "cloud",
		Principal: "alice", Target: map[string]string{"account": "1"}, Duration: time.Hour}, now, now.Add(m.ActivationResumeAfter()))
	if err := st.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
		t.Fatal(err)
	}
	for pass := 1; pass <= 20; pass++ {
		_ = m.Converge(ctx, g.BindingKey)
		cur, err := st.GetGrant(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cur.State != store.GrantActivating {
			return cur, pass
		}
		time.Sleep(time.Until(cur.DueAt)) // the bubble's clock jumps to the next due time
	}
	t.Fatal("still activating after 20 passes")
	return store.Grant{}, 0
}

// TestSixtySecondGrantWithinDeclaredBudget: an adapter whose grant takes 60 s declares a 90 s attempt budget;
// the manager gives its call that long instead of AttemptTimeout (10 s), so one attempt and one operation do.
func TestSixtySecondGrantWithinDeclaredBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := newAsyncCloud(60 * time.Second)
		cloud.budget = 90 * time.Second
		st := openStore(t)
		defer st.Close()
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"cloud": budgeted{cloud}},
			AttemptTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		g, passes := activateLikeTheSweeper(t, st, m)
		if g.State != store.GrantActive || passes != 1 || cloud.creates != 1 {
			t.Fatalf("state %s after %d passes, %d operations started (last error %q); want active after 1 pass and 1 operation",
				g.State, passes, cloud.creates, g.LastError)
		}
		if took := time.Since(start); took != 60*time.Second {
			t.Fatalf("activation took %s of simulated time, want the operation's 60s", took)
		}
	})
}

// TestSixtySecondGrantResumedAcrossAttempts: without a budget every attempt is cut at 10 s, but the adapter
// returns its operation's reference with the timeout and the manager hands it back on the next attempt, so
// the attempts wait for one operation instead of starting a new one each time (which would never finish and
// end in an undo after MaxAttempts).
func TestSixtySecondGrantResumedAcrossAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := newAsyncCloud(60 * time.Second)
		st := openStore(t)
		defer st.Close()
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"cloud": cloud},
			AttemptTimeout: 10 * time.Second, MaxAttempts: 8, BackoffBase: time.Second, BackoffMax: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		g, passes := activateLikeTheSweeper(t, st, m)
		if g.State != store.GrantActive || cloud.creates != 1 {
			t.Fatalf("state %s (end reason %q, last error %q) after %d passes with %d operations started; want active with 1 operation",
				g.State, g.EndReason, g.LastError, passes, cloud.creates)
		}
		if passes < 2 {
			t.Fatalf("activated in %d pass: the 10 s attempt timeout did not apply", passes)
		}
		if g.ProviderRef != "op:1" {
			t.Fatalf("provider reference %q, want the operation's", g.ProviderRef)
		}
	})
}

// TestAttemptBudgetKeepsTheLock: a call that may run for the declared budget must not outlive its binding
// lock, or another replica could take the binding mid-call.
func TestAttemptBudgetKeepsTheLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cloud := newAsyncCloud(60 * time.Second)
		cloud.budget = 90 * time.Second
		st := &lockSpy{Store: openStore(t)}
		defer st.Close()
		m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"cloud": budgeted{cloud}},
			AttemptTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		now := time.Now()
		g := grants.NewLease(grants.LeaseSpec{RequestID: "r1", UserID: "U1", Role: "admin", Provider: "cloud",
			Principal: "alice", Target: map[string]string{"account": "1"}, Duration: time.Hour}, now, now.Add(time.Hour))
		if err := st.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g}}}); err != nil {
			t.Fatal(err)
		}
		if err := m.Activate(ctx, g.ID); err != nil {
			t.Fatal(err)
		}
		if st.minTTL < 90*time.Second {
			t.Fatalf("binding lock taken or renewed for %s, shorter than the 90s attempt budget", st.minTTL)
		}
	})
}

type lockSpy struct {
	*bolt.Store
	minTTL time.Duration
}

func (s *lockSpy) note(ttl time.Duration) {
	if s.minTTL == 0 || ttl < s.minTTL {
		s.minTTL = ttl
	}
}

func (s *lockSpy) AcquireLock(ctx context.Context, name, holder string, ttl time.Duration) (store.Lock, error) {
	s.note(ttl)
	return s.Store.AcquireLock(ctx, name, holder, ttl)
}

func (s *lockSpy) RenewLock(ctx context.Context, l store.Lock, ttl time.Duration) error {
	s.note(ttl)
	return s.Store.RenewLock(ctx, l, ttl)
}
