package redis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// TestAuditChainAcrossReplicas: each Store chains audit links against the head it last saw; when another
// replica appended meanwhile the commit is re-chained. Two replicas committing concurrently must still
// leave one gap-free, verifiable chain with every event exactly once.
func TestAuditChainAcrossReplicas(t *testing.T) {
	url, prefix := redistest.URL(t), redistest.Prefix(t)
	open := func() *jitredis.Store {
		o, err := jitredis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		s := jitredis.New(goredis.NewUniversalClient(o), jitredis.Options{Prefix: prefix})
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	replicas := []*jitredis.Store{open(), open()}
	ctx := context.Background()
	const perWorker, workers = 25, 4
	var wg sync.WaitGroup
	for r, s := range replicas {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWorker {
					ev := store.AuditEvent{Type: "test", At: time.Now(), Actor: fmt.Sprintf("replica-%d/worker-%d", r, w), RequestID: fmt.Sprintf("r-%d", i)}
					if err := s.Commit(ctx, store.Batch{Audit: []store.AuditEvent{ev, ev}}); err != nil {
						t.Errorf("commit: %v", err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	recs, err := replicas[0].ReadAudit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(replicas) * workers * perWorker * 2; len(recs) != want {
		t.Fatalf("%d audit entries, want %d", len(recs), want)
	}
	if _, _, err := store.VerifyChain(recs, 0, store.GenesisHash); err != nil {
		t.Fatalf("chain: %v", err)
	}
	// Batches stay contiguous: the two events of one commit are neighbours.
	for i := 0; i < len(recs); i += 2 {
		if recs[i].Event.Actor != recs[i+1].Event.Actor || recs[i].Event.RequestID != recs[i+1].Event.RequestID {
			t.Fatalf("entries %d and %d come from different commits", i+1, i+2)
		}
	}
}
