package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/slack-go/slack"

	"github.com/jitbot/jitbot/bot"
	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/redistest"
)

// Slash-command load: open-loop at ackRate requests/s; ackWarmup requests first (not counted), then
// ackRate*ackSeconds measured ones.
const (
	ackRate     = 200
	ackSeconds  = 10
	ackWarmup   = ackRate // 1 s
	ackUsers    = 50      // distinct eligible requesters
	ackApprover = "U0ACKAPPROVER"
	ackApprov2  = "U0ACKAPPROVER2"
	ackChannel  = "C0ACKGENERAL" // where the commands are typed
	ackApprovCh = "C0ACKAPPROVALS"
	ackAuditCh  = "C0ACKAUDIT"
	ackSecret   = "bench-slack-signing-secret-0123456789"
)

func ackUser(i int) string { return fmt.Sprintf("U0ACK%04d", i%ackUsers) }

func ackPolicy(tb testing.TB) *policy.Policy {
	p, err := policy.Parse("bench-slack.yaml", []byte(ackPolicySource()))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// ackPolicySource is the benchmark's policy (the in-process benchmark parses it; the process one writes it
// to a file).
func ackPolicySource() string {
	users := make([]string, ackUsers)
	for i := range users {
		users[i] = ackUser(i)
	}
	return fmt.Sprintf(`version: 1
defaults: {approval_channel: %s, audit_channel: %s}
providers:
  hook:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "http://127.0.0.1:1/unused", secret_env: BENCH_HOOK_SECRET, timeout: 5s}
roles:
  db-read:
    description: Read the production database
    provider: hook
    target: {db: main, permission: read}
    requesters: {users: [%[3]s]}
    approvers: {users: [%[4]s]}
    default_duration: 1h
    max_duration: 8h
  db-admin:
    description: Administer the production database
    provider: hook
    target: {db: main, permission: admin}
    requesters: {users: [%[3]s]}
    approvers: {users: [%[4]s]}
    approvals: 2
    default_duration: 30m
    max_duration: 2h
`, ackApprovCh, ackAuditCh, strings.Join(users, ", "), ackApprover+", "+ackApprov2)
}

// ackShot is one pre-built signed slash command, its verb and what a correct ack contains.
type ackShot struct {
	req  *http.Request
	verb string
	want string
}

// ackText is the command mix: 80% `request` (a Redis Commit with an audit entry, then Slack posts by the
// notifier), 10% `roles`, 10% `list` (two index scans). jitbot acknowledges first and does the work on its
// worker pool, answering through response_url: a request's ack says it is being sent, roles and list are
// acknowledged with an empty body and answered afterwards.
func ackText(i int) (text, verb, want string) {
	switch i % 10 {
	case 3:
		return "roles", "roles", ""
	case 7:
		return "list", "list", ""
	}
	role := "db-read"
	if i%2 == 1 {
		role = "db-admin"
	}
	return fmt.Sprintf("request %s 30m INC-%06d investigating a slow query", role, i), "request", "Sending your request for"
}

// buildShots signs n slash-command POSTs to target, numbered from first (each body differs, so each
// signature does: the replay check sees no repeats).
func buildShots(tb testing.TB, target, responseBase string, first, n int) []ackShot {
	ts := time.Now().Unix()
	out := make([]ackShot, n)
	for k := range out {
		i := first + k
		text, verb, want := ackText(i)
		user := ackUser(i)
		form := url.Values{
			"token": {"deprecated-verification-token"}, "team_id": {"T0TEST"}, "team_domain": {"jitbot-test"},
			"channel_id": {ackChannel}, "channel_name": {"general"}, "user_id": {user}, "user_name": {strings.ToLower(user)},
			"command": {"/jit"}, "text": {text}, "api_app_id": {"A0TEST"}, "is_enterprise_install": {"false"},
			"response_url": {fmt.Sprintf("%s/response/bench-%d", responseBase, i)},
			"trigger_id":   {fmt.Sprintf("%d.%d.bench%08x", 1000+i, ts, i)},
		}
		body := []byte(form.Encode())
		req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			tb.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
		req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts, 10))
		req.Header.Set("X-Slack-Signature", slackfake.Sign(ackSecret, ts, body))
		out[k] = ackShot{req: req, verb: verb, want: want}
	}
	return out
}

type loadResult struct {
	lat    []time.Duration            // from due to the whole ack read, sorted
	genLag []time.Duration            // from due to the send starting, sorted (the load generator's own delay)
	svc    []time.Duration            // from the send starting to the whole ack read, sorted (without the generator's delay)
	byVerb map[string][]time.Duration // svc per command verb, sorted
	errs   []string
}

// openLoop sends shot i at start+i/rate, each from its own goroutine, whatever the earlier ones are doing,
// and measures each latency from when it was due (so queueing counts: no coordinated omission).
func openLoop(client *http.Client, shots []ackShot, rate int) loadResult {
	n := len(shots)
	lat := make([]time.Duration, n)
	genLag := make([]time.Duration, n)
	svc := make([]time.Duration, n)
	errs := make([]string, n)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now().Add(20 * time.Millisecond)
	for i := range shots {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			genLag[i] = time.Since(due)
			resp, err := client.Do(shots[i].req)
			if err != nil {
				lat[i], errs[i] = time.Since(due), err.Error()
				return
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			lat[i] = time.Since(due)
			svc[i] = lat[i] - genLag[i]
			switch {
			case err != nil:
				errs[i] = err.Error()
			case resp.StatusCode != http.StatusOK:
				errs[i] = fmt.Sprintf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
			case !bytes.Contains(body, []byte(shots[i].want)):
				errs[i] = fmt.Sprintf("ack %s lacks %q", body, shots[i].want)
			}
		}(i, due)
	}
	wg.Wait()
	res := loadResult{lat: lat, genLag: genLag, svc: svc, byVerb: map[string][]time.Duration{}}
	for i, sh := range shots {
		res.byVerb[sh.verb] = append(res.byVerb[sh.verb], svc[i])
	}
	for _, d := range res.byVerb {
		slices.Sort(d)
	}
	for _, e := range errs {
		if e != "" {
			res.errs = append(res.errs, e)
		}
	}
	slices.Sort(res.lat)
	slices.Sort(res.genLag)
	slices.Sort(res.svc)
	return res
}

func ackClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute, DisableCompression: true,
	}}
}

// measureAck runs the warm-up and the measured load against target.
func measureAck(b *testing.B, name, target, responseBase string) loadResult {
	client := ackClient()
	defer client.CloseIdleConnections()
	warm := buildShots(b, target, responseBase, 0, ackWarmup)
	shots := buildShots(b, target, responseBase, ackWarmup, ackRate*ackSeconds)
	if res := openLoop(client, warm, ackRate); len(res.errs) > 0 {
		b.Fatalf("%s warm-up: %d of %d failed, first: %s", name, len(res.errs), len(warm), res.errs[0])
	}
	runtime.GC()
	res := openLoop(client, shots, ackRate)
	if len(res.errs) > 0 {
		b.Fatalf("%s: %d of %d failed, first: %s", name, len(res.errs), len(shots), res.errs[0])
	}
	b.Logf("%s: %d acks at %d/s: p50 %v p90 %v p99 %v max %v; load generator lag p50 %v p99 %v max %v; from send: p50 %v p99 %v",
		name, len(res.lat), ackRate, pct(res.lat, 0.5), pct(res.lat, 0.9), pct(res.lat, 0.99), res.lat[len(res.lat)-1],
		pct(res.genLag, 0.5), pct(res.genLag, 0.99), res.genLag[len(res.genLag)-1], pct(res.svc, 0.5), pct(res.svc, 0.99))
	for _, verb := range []string{"request", "roles", "list"} {
		d := res.byVerb[verb]
		b.Logf("%s: from send, %s (%d): p50 %v p99 %v", name, verb, len(d), pct(d, 0.5), pct(d, 0.99))
	}
	return res
}

// bareAckHandler is the floor any Slack app pays: verify the signature, parse the form, one Redis write
// (the same replay mark jitbot makes), 200.
func bareAckHandler(secret string, st store.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bot.MaxBodyBytes))
		if err != nil {
			http.Error(w, "could not read the request", http.StatusBadRequest)
			return
		}
		sv, err := slack.NewSecretsVerifier(r.Header, secret)
		if err == nil {
			_, _ = sv.Write(body)
			err = sv.Ensure()
		}
		if err != nil {
			http.Error(w, "invalid Slack signature", http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sc, err := slack.SlashCommandParse(r)
		if err != nil {
			http.Error(w, "malformed slash command", http.StatusBadRequest)
			return
		}
		if first, err := st.MarkSeen(r.Context(), "slack-sig:"+r.Header.Get("X-Slack-Signature"), 6*time.Minute); err != nil || !first {
			http.Error(w, "replayed or store down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		// Echo what the mix checks for, so the same shots validate.
		_, _ = fmt.Fprintf(w, `{"response_type":"ephemeral","text":"%s: Sending your request for"}`, sc.UserID)
	})
}

// BenchmarkSlashCommandAck: signed POST /slack/commands at a fixed 200 requests/s for 10 s (open loop,
// latency from each request's due time) against jitbot on Redis with its Slack Web API calls going to the
// emulator; the same load against a bare verify+parse+one-Redis-write handler. Targets: jitbot p99 < 25 ms
// and at most 1.5x the bare handler's p99.
func BenchmarkSlashCommandAck(b *testing.B) {
	for b.Loop() {
		redisURL := redistest.URL(b)
		pol := ackPolicy(b)

		// The floor: a bare handler on its own store.
		bareStore := openRedis(b, redisURL, redistest.Prefix(b))
		bareSrv := httptest.NewServer(bareAckHandler(ackSecret, bareStore))
		bare := measureAck(b, "bare", bareSrv.URL+"/slack/commands", "http://127.0.0.1:1")
		bareSrv.Close()
		_ = bareStore.Close()
		runtime.GC()

		// jitbot: Redis store, Slack front end in HTTP mode, Web API -> emulator.
		users := []slackfake.User{{ID: ackApprover, Name: "approver"}, {ID: ackApprov2, Name: "approver2"}}
		for i := range ackUsers {
			users = append(users, slackfake.User{ID: ackUser(i), Name: strings.ToLower(ackUser(i))})
		}
		emu := slackfake.New(slackfake.Options{SigningSecret: ackSecret, Users: users, Channels: []slackfake.Channel{
			{ID: ackChannel, Name: "general"}, {ID: ackApprovCh, Name: "approvals"}, {ID: ackAuditCh, Name: "audit"}}})
		st := openRedis(b, redisURL, redistest.Prefix(b))
		a, err := app.New(b.Context(), app.Deps{Policy: pol, Store: st, Logger: zerolog.Nop(),
			Getenv: func(string) string { return string(secret) },
			Slack:  &app.SlackConfig{BotToken: emu.BotToken(), SigningSecret: emu.SigningSecret(), APIURL: emu.APIURL()},
			Tuning: app.Tuning{ProviderTimeout: 5 * time.Second}})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(a.Handler())
		emu.SetRequestURLs(srv.URL+"/slack/commands", srv.URL+"/slack/interactions", srv.URL+"/slack/events")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()

		jit := measureAck(b, "jitbot", srv.URL+"/slack/commands", emu.URL())
		loadEnd := time.Now()

		// How far behind the Slack side (approval messages, posted asynchronously) was when the load ended.
		want := 0
		for i := range ackWarmup + ackRate*ackSeconds {
			if _, verb, _ := ackText(i); verb == "request" {
				want++
			}
		}
		backlog := want - len(emu.Messages(ackApprovCh))
		deadline := time.Now().Add(2 * time.Minute)
		for len(emu.Messages(ackApprovCh)) < want && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		posted := len(emu.Messages(ackApprovCh))
		drain := time.Since(loadEnd)

		cancel()
		if err := <-done; err != nil {
			b.Errorf("app stopped with %v", err)
		}
		srv.Close()
		emu.Close()
		_ = st.Close()
		if posted < want {
			b.Errorf("only %d of %d approval messages were posted to the emulator", posted, want)
		}
		b.Logf("notifier: %d approval messages still to post when the load ended; all %d posted %v after it", backlog, posted, drain.Round(time.Millisecond))

		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(pct(jit.lat, 0.5)), "jitbot_p50_ms")
		b.ReportMetric(ms(pct(jit.lat, 0.99)), "jitbot_p99_ms")
		b.ReportMetric(ms(jit.lat[len(jit.lat)-1]), "jitbot_max_ms")
		b.ReportMetric(ms(pct(bare.lat, 0.5)), "bare_p50_ms")
		b.ReportMetric(ms(pct(bare.lat, 0.99)), "bare_p99_ms")
		b.ReportMetric(ms(bare.lat[len(bare.lat)-1]), "bare_max_ms")
		b.ReportMetric(float64(pct(jit.lat, 0.99))/float64(pct(bare.lat, 0.99)), "p99_ratio")
		b.ReportMetric(ms(max(pct(jit.genLag, 0.99), pct(bare.genLag, 0.99))), "gen_lag_p99_ms")
		// The same ratio without the load generator's own delay (timer granularity), which both sides share.
		b.ReportMetric(float64(pct(jit.svc, 0.99))/float64(pct(bare.svc, 0.99)), "svc_p99_ratio")
	}
}
