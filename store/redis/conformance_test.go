package redis_test

import (
	"context"
	"strconv"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
	"github.com/jitbot/jitbot/store/storetest"
)

// TestConformance runs the shared store.Store suite on Redis (and, from TestOnCluster, on a Redis Cluster).
func TestConformance(t *testing.T) { testConformance(t) }

func testConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newStore(t)
		return s
	})
}

// redisTamperer edits the audit keys with a raw client, behind the Store's API.
type redisTamperer struct {
	c      goredis.UniversalClient
	prefix string
}

func (r redisTamperer) DeleteAuditEntry(ctx context.Context, seq uint64) error {
	return r.c.HDel(ctx, r.prefix+":audit:log", strconv.FormatUint(seq, 10)).Err()
}

func (r redisTamperer) SetAuditHead(ctx context.Context, h store.AuditHead) error {
	return r.c.MSet(ctx, r.prefix+":audit:seq", strconv.FormatUint(h.Seq, 10), r.prefix+":audit:head", h.Hash).Err()
}

func TestAuditTamper(t *testing.T) {
	storetest.RunAuditTamper(t, func(t *testing.T) (store.Store, storetest.AuditTamperer) {
		s, prefix := newStore(t)
		return s, redisTamperer{c: redistest.Client(t), prefix: prefix}
	})
}

func (r redisTamperer) PutAuditEntry(ctx context.Context, rec store.AuditRecord) error {
	return r.c.HSet(ctx, r.prefix+":audit:log", strconv.FormatUint(rec.Seq, 10), rec.PrevHash+"\n"+rec.Hash+"\n"+string(rec.Raw)).Err()
}

func TestAuditKeyed(t *testing.T) {
	storetest.RunAuditKeyed(t, func(t *testing.T) storetest.KeyedStorage {
		prefix, url := redistest.Prefix(t), redistest.URL(t)
		raw := redistest.Client(t)
		return func(key []byte) (store.Store, storetest.AuditTamperer) {
			s, err := jitredis.Open(context.Background(), url, jitredis.Options{Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			s.SetAuditLinkKey(key)
			return s, redisTamperer{c: raw, prefix: prefix}
		}
	})
}
