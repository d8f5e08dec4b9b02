package telemetry

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// slackBodyLimit bounds how much of a Slack answer is read to find its "ok" field; Web API answers are small.
const slackBodyLimit = 1 << 20

// SlackTransport counts every Slack Web API call by method and result, from the answers Slack actually gave:
// ok; error (HTTP 200 with "ok": false, counted by Slack's error code in jitbot_slack_api_errors_total);
// ratelimited (HTTP 429); http_error (another status); network_error (no answer).
type SlackTransport struct {
	next   http.RoundTripper
	calls  *prometheus.CounterVec
	errors *prometheus.CounterVec
}

// NewSlackTransport registers the Slack API metrics on reg and returns a RoundTripper that records them
// around next (http.DefaultTransport when nil).
func NewSlackTransport(reg prometheus.Registerer, next http.RoundTripper) *SlackTransport {
	if next == nil {
		next = http.DefaultTransport
	}
	t := &SlackTransport{
		next: next,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitbot_slack_api_calls_total", Help: "Slack Web API calls by method and result (ok, error, ratelimited, http_error, network_error).",
		}, []string{"method", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jitbot_slack_api_errors_total", Help: "Slack Web API answers with ok:false, by method and Slack's error code.",
		}, []string{"method", "error"}),
	}
	reg.MustRegister(t.calls, t.errors)
	return t
}

// RoundTrip implements http.RoundTripper.
func (t *SlackTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	method := slackMethod(r.URL.Path)
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		t.calls.WithLabelValues(method, "network_error").Inc()
		return resp, err
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		t.calls.WithLabelValues(method, "ratelimited").Inc()
	case resp.StatusCode != http.StatusOK:
		t.calls.WithLabelValues(method, "http_error").Inc()
	case strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"):
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, slackBodyLimit))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var answer struct {
			OK    *bool  `json:"ok"`
			Error string `json:"error"`
		}
		if rerr == nil && json.Unmarshal(body, &answer) == nil && answer.OK != nil && !*answer.OK {
			t.calls.WithLabelValues(method, "error").Inc()
			t.errors.WithLabelValues(method, slackErrorCode(answer.Error)).Inc()
		} else {
			t.calls.WithLabelValues(method, "ok").Inc()
		}
	default:
		t.calls.WithLabelValues(method, "ok").Inc()
	}
	return resp, nil
}

// slackMethod is the Web API method of a request path (".../api/chat.postMessage" → "chat.postMessage"),
// limited to the characters Slack's method names use so that a label cannot grow without bound.
func slackMethod(path string) string {
	m := path[strings.LastIndexByte(path, '/')+1:]
	if m == "" || len(m) > 64 || strings.Trim(m, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.") != "" {
		return "other"
	}
	return m
}

func slackErrorCode(code string) string {
	if code == "" || len(code) > 64 || strings.Trim(code, "abcdefghijklmnopqrstuvwxyz_") != "" {
		return "other"
	}
	return code
}

// LeaderGauge registers jitbot_sweeper_leader: 1 while this replica holds the sweeper lock. Summed over
// replicas it should be 1; its changes count leader changes.
func LeaderGauge(reg prometheus.Registerer, leading func() bool) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "jitbot_sweeper_leader", Help: "1 while this replica leads the sweeper (holds its lock), else 0.",
	}, func() float64 {
		if leading() {
			return 1
		}
		return 0
	}))
}
