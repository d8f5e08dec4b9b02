package redis_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// An update of a record this process just read takes the record's index list from that read: the commit is
// one round trip (the script), not two.
func TestCommitAfterReadSkipsTheVersionRead(t *testing.T) {
	s, prefix := newStore(t)
	ctx := context.Background()
	commit(t, s, store.Batch{Grants: []store.GrantPut{{Grant: grant("g1", "U1", "B1", t0, store.GrantActive, t0.Add(time.Hour))}}})
	// Another store (a restarted process) has read nothing yet: it reads the version and index list first.
	other := jitredis.New(redistest.Client(t), jitredis.Options{Prefix: prefix})
	rec := &cmdCounter{}
	other.Client().AddHook(redistest.Sent(rec.add))
	gs, err := other.ListGrants(ctx, store.GrantQuery{BindingKey: "B1"})
	if err != nil || len(gs) != 1 {
		t.Fatalf("list: %d grants (%v)", len(gs), err)
	}
	rec.reset()
	g := gs[0]
	g.State, g.DueAt = store.GrantRevoking, t0
	commit(t, other, store.Batch{Grants: []store.GrantPut{{Grant: &g, PrevVersion: g.Version}}})
	if n := rec.count("hmget"); n != 0 {
		t.Fatalf("commit after a read sent %d HMGET, want none (cmds %v)", n, rec.names())
	}
	// And after its own commit, the next update needs no read either.
	rec.reset()
	g.State, g.DueAt = store.GrantRevoked, time.Time{}
	commit(t, other, store.Batch{Grants: []store.GrantPut{{Grant: &g, PrevVersion: g.Version}}})
	if n := rec.count("hmget"); n != 0 {
		t.Fatalf("second commit sent %d HMGET, want none (cmds %v)", n, rec.names())
	}
	got, err := s.ListGrants(ctx, store.GrantQuery{States: []store.GrantState{store.GrantRevoking}})
	if err != nil || len(got) != 0 {
		t.Fatalf("revoking index holds %s (%v), want nothing", grantIDs(got), err)
	}
}

// What this process remembers never makes a commit land that a fresh read would refuse, nor refuses one a
// fresh read would let land.
func TestRememberedIndexListIsOnlyAShortcut(t *testing.T) {
	ctx := context.Background()
	t.Run("another replica updated the record", func(t *testing.T) {
		a, prefix := newStore(t)
		b := jitredis.New(redistest.Client(t), jitredis.Options{Prefix: prefix})
		commit(t, a, store.Batch{Grants: []store.GrantPut{{Grant: grant("g1", "U1", "B1", t0, store.GrantActive, t0.Add(time.Hour))}}})
		stale, err := a.GetGrant(ctx, "g1")
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := b.GetGrant(ctx, "g1")
		if err != nil {
			t.Fatal(err)
		}
		fresh.State = store.GrantRevoking
		commit(t, b, store.Batch{Grants: []store.GrantPut{{Grant: &fresh, PrevVersion: fresh.Version}}})
		stale.Attempts = 3
		err = a.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &stale, PrevVersion: stale.Version}}})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("commit over another replica's update: %v, want a conflict", err)
		}
		if got, _ := a.GetGrant(ctx, "g1"); got.State != store.GrantRevoking || got.Attempts != 0 {
			t.Fatalf("stored %s, %d attempts; want the other replica's update kept", got.State, got.Attempts)
		}
	})
	t.Run("the index list changed at the same version", func(t *testing.T) {
		a, prefix := newStore(t)
		commit(t, a, store.Batch{Grants: []store.GrantPut{{Grant: grant("g1", "U1", "B1", t0, store.GrantActive, t0.Add(time.Hour))}}})
		g, err := a.GetGrant(ctx, "g1")
		if err != nil {
			t.Fatal(err)
		}
		// Behind the store's back (a record written again at the same version): the stored x is no longer the
		// one a remembered.
		c := redistest.Client(t)
		if err := c.HSet(ctx, prefix+":grant:g1", "x", `["`+prefix+`:idx:due"]`).Err(); err != nil {
			t.Fatal(err)
		}
		g.State = store.GrantRevoking
		if err := a.Commit(ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g, PrevVersion: g.Version}}}); err != nil {
			t.Fatalf("commit: %v, want it to land as with a fresh read", err)
		}
		got, err := a.ListGrants(ctx, store.GrantQuery{States: []store.GrantState{store.GrantRevoking}})
		if err != nil || grantIDs(got) != "g1" {
			t.Fatalf("revoking: %s (%v), want g1", grantIDs(got), err)
		}
	})
}

// cmdCounter records the names of the commands sent.
type cmdCounter struct {
	mu   sync.Mutex
	cmds []string
}

func (r *cmdCounter) add(cmds []goredis.Cmder) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cmds {
		r.cmds = append(r.cmds, strings.ToLower(c.Name()))
	}
}

func (r *cmdCounter) reset() { r.mu.Lock(); r.cmds = nil; r.mu.Unlock() }

func (r *cmdCounter) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.cmds...)
}

func (r *cmdCounter) count(name string) int {
	n := 0
	for _, c := range r.names() {
		if c == name {
			n++
		}
	}
	return n
}
