package redis

import (
	"strconv"
	"sync"
)

// Index lists known from reads. An update must name in KEYS the index keys its record occupies now (its x
// field), and the commit script checks them against the stored x together with the version. Every read of a
// record (get, fetch) takes v and x with the JSON in the same round trip, and every commit knows what it
// wrote, so the store remembers, per record key, the last version it saw and that version's x: a Commit of a
// record this process read (or wrote) at PrevVersion takes x from here instead of reading it again, one round
// trip less per transition (a revocation reads the binding's leases under the lock and then commits them).
//
// The script's check is unchanged, so a remembered x never makes a write land that would not have landed: at
// worst (a record deleted and created again at the same version, or edited behind the store's back) the
// script answers "conflict", and Commit forgets what it remembered and tries once more with a fresh read,
// exactly as before.

// xCacheMax bounds the records remembered; when it is reached, about half are forgotten (a version and x are
// needed only between a read and the commit that follows it).
const xCacheMax = 4096

type xEntry struct {
	v int64
	x string
}

type xCache struct {
	mu sync.Mutex
	m  map[string]xEntry
}

// note remembers that the record at key is at version v with index list x. v, x as read from the hash; a
// record without a readable version is forgotten.
func (c *xCache) note(key string, v, x any) {
	vs, ok1 := v.(string)
	xs, ok2 := x.(string)
	ver, err := strconv.ParseInt(vs, 10, 64)
	if !ok1 || !ok2 || err != nil {
		c.forget(key)
		return
	}
	c.put(key, ver, xs)
}

func (c *xCache) put(key string, v int64, x string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]xEntry)
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= xCacheMax {
		n := 0
		for k := range c.m { // map order: an arbitrary half
			delete(c.m, k)
			if n++; n >= xCacheMax/2 {
				break
			}
		}
	}
	c.m[key] = xEntry{v: v, x: x}
}

// lookup returns the x remembered for key at version v.
func (c *xCache) lookup(key string, v int64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || e.v != v {
		return "", false
	}
	return e.x, true
}

func (c *xCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}
