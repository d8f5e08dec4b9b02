package redis_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

func rawClient(t testing.TB) goredis.UniversalClient {
	t.Helper()
	o, err := jitredis.ParseURL(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewUniversalClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestLuaSHA256MatchesGo(t *testing.T) {
	c := rawClient(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	var inputs []string
	for _, n := range []int{0, 1, 2, 3, 4, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, 10_000, 70_000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		inputs = append(inputs, string(b), strings.Repeat("a", n), strings.Repeat("\xff", n), strings.Repeat("\x00", n))
	}
	inputs = append(inputs,
		"abc",
		"héllo wörld — ✓ 日本語 🙂",
		strings.Repeat("日本語🙂", 300),
		"0000000000000000000000000000000000000000000000000000000000000000\n1\n{\"type\":\"requested\"}",
	)
	for i := 0; i < 200; i++ {
		b := make([]byte, rng.IntN(300))
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		inputs = append(inputs, string(b))
	}
	for _, in := range inputs {
		got, err := jitredis.ScriptSHA256.Run(ctx, c, nil, in).Text()
		if err != nil {
			t.Fatalf("len %d: %v", len(in), err)
		}
		sum := sha256.Sum256([]byte(in))
		if want := hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("len %d: lua sha256 = %s, want %s", len(in), got, want)
		}
	}
}
