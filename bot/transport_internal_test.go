package bot

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// A request whose timestamp lies in the future verifies until 5 minutes after that timestamp: its replay
// record must last that long, not a fixed window from when it was first seen.
func TestReplayRecordOutlivesTheSignatureWindow(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for _, skew := range []time.Duration{-5 * time.Minute, -time.Minute, 0, 4 * time.Minute, 5 * time.Minute} {
		ts := now.Add(skew)
		h := http.Header{"X-Slack-Request-Timestamp": {strconv.FormatInt(ts.Unix(), 10)}}
		_, ttl := replayKey(h, []byte("body"), now)
		verifiesUntil := ts.Add(signatureWindow)
		if now.Add(ttl).Before(verifiesUntil.Add(replayMargin)) {
			t.Errorf("timestamp %v from now: record kept %v, but the request verifies until %v from now", skew, ttl, verifiesUntil.Sub(now))
		}
	}
}

// The key depends on what the signature covers, the timestamp's value and the body, and on nothing else.
func TestReplayKeyIgnoresHowHeadersAreWritten(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a, _ := replayKey(http.Header{"X-Slack-Request-Timestamp": {"1800000000"}, "X-Slack-Signature": {"v0=ab"}}, []byte("b"), now)
	b, _ := replayKey(http.Header{"X-Slack-Request-Timestamp": {"+1800000000"}, "X-Slack-Signature": {"v0=AB"}}, []byte("b"), now)
	c, _ := replayKey(http.Header{"X-Slack-Request-Timestamp": {"1800000000"}}, []byte("c"), now)
	if a != b {
		t.Errorf("one request, two keys: %q and %q", a, b)
	}
	if a == c {
		t.Errorf("two bodies, one key %q", a)
	}
	for in, want := range map[string]int{"1": 1, "01": 1, "+1": 1, "3": 3} {
		if n, ok := retryNum(http.Header{"X-Slack-Retry-Num": {in}}); !ok || n != want {
			t.Errorf("retryNum(%q) = %d, %v; want %d", in, n, ok, want)
		}
	}
	for _, in := range []string{"", "x", "0", "-1", "11", "99999999999999999999"} {
		if _, ok := retryNum(http.Header{"X-Slack-Retry-Num": {in}}); ok {
			t.Errorf("retryNum(%q) taken as a retry", in)
		}
	}
}
