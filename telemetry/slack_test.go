package telemetry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/slack-go/slack"
)

// TestSlackTransportCountsWhatSlackAnswered drives the real slack-go client through the transport against a
// server that answers as Slack does: ok, ok:false with an error code, and 429 with Retry-After.
func TestSlackTransportCountsWhatSlackAnswered(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		switch {
		case strings.HasSuffix(r.URL.Path, "/auth.test"):
			w.Write([]byte(`{"ok":true,"user_id":"UBOT","team_id":"T1"}`))
		case strings.HasSuffix(r.URL.Path, "/chat.postMessage") && r.FormValue("channel") == "CLIMIT":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"ok":false,"error":"ratelimited"}`))
		case strings.HasSuffix(r.URL.Path, "/chat.postMessage"):
			w.Write([]byte(`{"ok":false,"error":"channel_not_found"}`))
		}
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	tr := NewSlackTransport(reg, nil)
	api := slack.New("xoxb-test", slack.OptionAPIURL(srv.URL+"/api/"), slack.OptionHTTPClient(&http.Client{Transport: tr}))
	ctx := context.Background()
	if _, err := api.AuthTestContext(ctx); err != nil {
		t.Fatalf("auth.test through the transport: %v", err)
	}
	_, _, err := api.PostMessageContext(ctx, "CGONE", slack.MsgOptionText("x", false))
	if err == nil || !strings.Contains(err.Error(), "channel_not_found") {
		t.Fatalf("the client must still see Slack's error after the transport read the body: %v", err)
	}
	_, _, err = api.PostMessageContext(ctx, "CLIMIT", slack.MsgOptionText("x", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) {
		t.Fatalf("want a rate-limited error, got %v", err)
	}
	expect := `
# HELP jitbot_slack_api_calls_total Slack Web API calls by method and result (ok, error, ratelimited, http_error, network_error).
# TYPE jitbot_slack_api_calls_total counter
jitbot_slack_api_calls_total{method="auth.test",result="ok"} 1
jitbot_slack_api_calls_total{method="chat.postMessage",result="error"} 1
jitbot_slack_api_calls_total{method="chat.postMessage",result="ratelimited"} 1
# HELP jitbot_slack_api_errors_total Slack Web API answers with ok:false, by method and Slack's error code.
# TYPE jitbot_slack_api_errors_total counter
jitbot_slack_api_errors_total{error="channel_not_found",method="chat.postMessage"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "jitbot_slack_api_calls_total", "jitbot_slack_api_errors_total"); err != nil {
		t.Fatal(err)
	}
}

func TestSlackMethodLabelIsBounded(t *testing.T) {
	for in, want := range map[string]string{"/api/chat.postMessage": "chat.postMessage", "/api/": "other", "/api/x%20y": "other", "/api/" + strings.Repeat("a", 80): "other"} {
		if got := slackMethod(in); got != want {
			t.Errorf("slackMethod(%q) = %q, want %q", in, got, want)
		}
	}
}
