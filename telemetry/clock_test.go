package telemetry

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
)

// TestClockSkewAgainstRedisTime measures a local clock set off by a known offset against a real Redis's
// TIME. Redis runs on this machine, so its clock is the real one: the measured skew must be the offset
// within the measurement's own uncertainty (half the round trip, plus TIME's microsecond resolution).
func TestClockSkewAgainstRedisTime(t *testing.T) {
	st, err := jitredis.Open(context.Background(), redistest.URL(t), jitredis.Options{Prefix: redistest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, offset := range []time.Duration{0, 3 * time.Second, -90 * time.Second, 400 * time.Millisecond} {
		reg := prometheus.NewRegistry()
		w := NewClockWatch(reg, st, func() time.Time { return time.Now().Add(offset) }, 0)
		var logs bytes.Buffer
		ctx := zerolog.New(&logs).WithContext(context.Background())
		skew, unc, err := w.Measure(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := skew - offset; d > unc+time.Millisecond || d < -unc-time.Millisecond {
			t.Errorf("offset %s: measured skew %s ± %s", offset, skew, unc)
		}
		if got := testutil.ToFloat64(w.skew); got != skew.Seconds() {
			t.Errorf("gauge %v, want %v", got, skew.Seconds())
		}
		big := offset > time.Second || offset < -time.Second
		if warned := strings.Contains(logs.String(), "clock differs"); warned != big {
			t.Errorf("offset %s: warned = %v, want %v (%s)", offset, warned, big, logs.String())
		}
	}
}

type deadClock struct{}

func (deadClock) Time(context.Context) (time.Time, error) {
	return time.Time{}, context.DeadlineExceeded
}

func TestClockSkewCheckErrorsAreCounted(t *testing.T) {
	w := NewClockWatch(prometheus.NewRegistry(), deadClock{}, nil, 0)
	if _, _, err := w.Measure(context.Background()); err == nil {
		t.Fatal("want the store's error")
	}
	if testutil.ToFloat64(w.errors) != 1 {
		t.Fatal("error not counted")
	}
}
