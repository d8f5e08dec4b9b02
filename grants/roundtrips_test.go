package grants_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerfake"
	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// The store costs of a mass expiry, counted rather than timed (a shared machine's wall clock says little):
// every revocation and every check of a revoke waits for its store round trips in turn, on one of the
// sweeper's workers, between provider calls. See docs/benchmarks.md (mass expiry).

// rtCounter is a go-redis hook counting round trips (one per command sent alone, one per pipeline) and
// commands. Lock releases are counted apart: the store sends them without waiting for the answer.
type rtCounter struct {
	mu       sync.Mutex
	trips    int
	releases int
	commands map[string]int
}

func (c *rtCounter) count(cmds []goredis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch name := cmds[0].Name(); {
	case redistest.AllLockReleases(cmds):
		c.releases += len(cmds)
	case name == "hello" || name == "client":
		// A new connection's handshake: the pool's, not the revocation's.
	default:
		c.trips++
	}
	for _, cmd := range cmds {
		c.commands[cmd.Name()]++
	}
}

func (c *rtCounter) take() (trips, releases int, commands map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	trips, releases, commands = c.trips, c.releases, c.commands
	c.trips, c.releases, c.commands = 0, 0, map[string]int{}
	return trips, releases, commands
}

// callSpy counts the store calls a worker waits on.
type callSpy struct {
	grants.Store
	mu    sync.Mutex
	calls map[string]int
}

func (s *callSpy) note(name string) {
	s.mu.Lock()
	s.calls[name]++
	s.mu.Unlock()
}

func (s *callSpy) take() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = map[string]int{}
	return c
}

func (s *callSpy) Commit(ctx context.Context, b store.Batch) error {
	s.note("Commit")
	return s.Store.Commit(ctx, b)
}

func (s *callSpy) GetGrant(ctx context.Context, id string) (store.Grant, error) {
	s.note("GetGrant")
	return s.Store.GetGrant(ctx, id)
}

func (s *callSpy) ListGrants(ctx context.Context, q store.GrantQuery) ([]store.Grant, error) {
	s.note("ListGrants")
	return s.Store.ListGrants(ctx, q)
}

func (s *callSpy) ClaimDueGrants(ctx context.Context, now time.Time, limit int, hold time.Duration) ([]store.Grant, error) {
	s.note("ClaimDueGrants")
	return s.Store.ClaimDueGrants(ctx, now, limit, hold)
}

func (s *callSpy) AcquireLock(ctx context.Context, name, holder string, ttl time.Duration) (store.Lock, error) {
	s.note("AcquireLock")
	return s.Store.AcquireLock(ctx, name, holder, ttl)
}

func (s *callSpy) RenewLock(ctx context.Context, l store.Lock, ttl time.Duration) error {
	s.note("RenewLock")
	return s.Store.RenewLock(ctx, l, ttl)
}

func (s *callSpy) ReleaseLock(ctx context.Context, l store.Lock) error {
	s.note("ReleaseLock")
	return s.Store.ReleaseLock(ctx, l)
}

// sweepExpiries stores n expired leases of n bindings and sweeps twice, as the sweeper does in a burst: the
// first sweep revokes them all, the second runs the checks that verify those revokes (due right after the
// revoke: the fake provider has no propagation delay). after is called after each sweep.
func sweepExpiries(t *testing.T, st grants.Store, n int, after func(phase string)) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	fake := providerfake.New()
	m, err := grants.NewManager(grants.Options{Store: st, Providers: map[string]grants.Provider{"fake": fake}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	// One worker: the counts are those of one worker's sequence of calls.
	s, err := grants.NewSweeper(grants.SweeperOptions{Manager: m, Store: st, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range n {
		g := lease(fmt.Sprintf("mass%03d", i), now)
		g.State, g.DueAt = store.GrantActive, g.ExpiresAt
		commitGrant(t, st, &g)
		ids[i] = g.ID
	}
	after("seed")
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	if claimed, err := s.Sweep(ctx); err != nil || claimed != n {
		t.Fatalf("first sweep claimed %d (%v), want %d", claimed, err, n)
	}
	runtime.ReadMemStats(&ms1)
	t.Logf("revoke: %d allocations, %d KiB allocated per grant (this process: engine, store client, fake provider)", (ms1.Mallocs-ms0.Mallocs)/uint64(n), (ms1.TotalAlloc-ms0.TotalAlloc)/uint64(n)/1024)
	after("revoke")
	runtime.ReadMemStats(&ms0)
	if claimed, err := s.Sweep(ctx); err != nil || claimed != n {
		t.Fatalf("second sweep claimed %d (%v), want %d", claimed, err, n)
	}
	runtime.ReadMemStats(&ms1)
	t.Logf("check: %d allocations, %d KiB allocated per grant", (ms1.Mallocs-ms0.Mallocs)/uint64(n), (ms1.TotalAlloc-ms0.TotalAlloc)/uint64(n)/1024)
	after("check")
	for _, id := range ids {
		g, err := st.GetGrant(ctx, id)
		if err != nil || g.State != store.GrantRevoked || g.VerifiedAt.IsZero() {
			t.Fatalf("%s: %s, verified at %v (%v); want revoked and verified", id, g.State, g.VerifiedAt, err)
		}
	}
	if r, c := len(fake.Calls("revoke")), len(fake.Calls("check")); r != n || c != n {
		t.Fatalf("%d revokes and %d checks at the provider, want %d of each", r, c, n)
	}
}

// Redis round trips per revocation and per check of a revoke, in a sweep of many expiries, that the worker
// making them waits for. The bounds are the counts this code makes (one script takes the lock and reads the
// binding's leases, whose records the claim named; then the commit, often sharing a pipeline with another
// worker's; a check also re-reads the lease and lists the binding again under the lock), plus the sweep's own
// claims shared by all; the unlock is sent without waiting and counted apart. (A revocation took 4.06 round
// trips when the lock, the binding's index and its records were each one.)
func TestRedisRoundTripsPerRevocation(t *testing.T) {
	const n = 50
	client := redistest.Client(t)
	rt := &rtCounter{commands: map[string]int{}}
	client.AddHook(redistest.Sent(rt.count))
	st := jitredis.New(client, jitredis.Options{Prefix: redistest.Prefix(t)})
	// Load the scripts first, so that no NOSCRIPT retry is counted.
	if _, err := st.ClaimDueGrants(context.Background(), time.Now(), 1, 0); err != nil {
		t.Fatal(err)
	}
	limits := map[string]float64{"revoke": 2.1, "check": 5.1}
	sweepExpiries(t, st, n, func(phase string) {
		trips, releases, cmds := rt.take()
		if phase == "seed" {
			return
		}
		per := float64(trips) / n
		t.Logf("%s: %.2f Redis round trips waited on per grant (%d for %d grants), and %d lock releases not waited on; commands: %v", phase, per, trips, n, releases, cmds)
		if per > limits[phase] {
			t.Errorf("%s: %.2f Redis round trips per grant, want at most %.2f", phase, per, limits[phase])
		}
	})
}

// The store calls a worker waits on per revocation and per check, on both back ends (on bbolt, every write
// among them waits for a transaction's fsync; reads are local).
func TestStoreCallsPerRevocation(t *testing.T) {
	stores(t, func(t *testing.T, base managerStore) {
		const n = 50
		spy := &callSpy{Store: base, calls: map[string]int{}}
		sweepExpiries(t, spy, n, func(phase string) {
			calls := spy.take()
			if phase == "seed" {
				return
			}
			writes := calls["AcquireLock"] + calls["RenewLock"] + calls["Commit"]
			t.Logf("%s: %.2f store writes waited on per grant (lock, renew, commit; the unlock and the sweep's claims aside); calls: %v", phase, float64(writes)/n, calls)
			if writes > 2*n {
				t.Errorf("%s: %d lock and commit writes for %d grants, want at most 2 per grant", phase, writes, n)
			}
		})
	})
}
