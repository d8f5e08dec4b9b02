package webhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func key(t *testing.T) []byte {
	t.Helper()
	k, err := ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func assignment(id string) grants.Assignment {
	return grants.Assignment{
		GrantID: id, RequestID: "req-" + id, UserID: "U012ABC", Role: "admin", Principal: "alice@example.com",
		Target:    map[string]string{"account": "123456789012"},
		ExpiresAt: time.Date(2030, 1, 2, 4, 4, 5, 0, time.FixedZone("CET", 3600)),
	}
}

func newProvider(t *testing.T, url string, mod ...func(*Config)) *Provider {
	t.Helper()
	cfg := Config{URL: url, Secret: key(t), Timeout: 2 * time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newReceiver(t *testing.T) *webhookfake.Server {
	t.Helper()
	s := webhookfake.NewServer(key(t))
	t.Cleanup(s.Close)
	return s
}

// Every secret form and the signature must stay out of errors.
func assertClean(t *testing.T, err error, extra ...string) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error() + fmt.Sprintf("%+v", err)
	k := key(t)
	for _, s := range append([]string{testSecret, strings.TrimPrefix(testSecret, "whsec_"), string(k), base64.StdEncoding.EncodeToString(k)}, extra...) {
		if s != "" && strings.Contains(msg, s) {
			t.Fatalf("error leaks a secret or signature: %s", msg)
		}
	}
}

// The Standard Webhooks test vector, from libraries/go/webhook_test.go (TestWebhookSign) in
// github.com/standard-webhooks/standard-webhooks.
func TestSignSpecVector(t *testing.T) {
	got := sign(key(t), "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("sign = %s, want %s", got, want)
	}
}

func TestParseSecret(t *testing.T) {
	k, err := ParseSecret("  " + testSecret + "\n")
	if err != nil || base64.StdEncoding.EncodeToString(k) != "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" {
		t.Fatalf("whsec form: %x %v", k, err)
	}
	if k, err := ParseSecret("plain text key"); err != nil || string(k) != "plain text key" {
		t.Fatalf("raw form: %q %v", k, err)
	}
	for _, bad := range []string{"", "   ", "whsec_", "whsec_not*base64!secretvalue"} {
		_, err := ParseSecret(bad)
		if err == nil {
			t.Fatalf("ParseSecret(%q) accepted", bad)
		}
		if strings.Contains(err.Error(), "not*base64") {
			t.Fatalf("error echoes the secret: %v", err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "", Secret: []byte("k")},
		{URL: "/relative", Secret: []byte("k")},
		{URL: "ftp://example.com/x", Secret: []byte("k")},
		{URL: "https:///nohost", Secret: []byte("k")},
		{URL: "https://example.com/hook"},
		{URL: "https://example.com/hook", Secret: []byte("k"), Timeout: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	client := &http.Client{}
	p, err := New(Config{URL: "https://example.com/hook", Secret: []byte("s3cr3t-value"), Client: client})
	if err != nil {
		t.Fatal(err)
	}
	if p.timeout != DefaultTimeout {
		t.Errorf("timeout %s, want default %s", p.timeout, DefaultTimeout)
	}
	if client.CheckRedirect != nil {
		t.Error("New modified the caller's http.Client")
	}
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p), fmt.Sprintf("%v", *p)} {
		if strings.Contains(s, "s3cr3t") || strings.Contains(s, base64.StdEncoding.EncodeToString([]byte("s3cr3t-value"))) {
			t.Errorf("formatting the provider shows the secret: %s", s)
		}
	}
}

func TestDeliveryVerifiedByIndependentReceiver(t *testing.T) {
	rcv := newReceiver(t)
	sent := time.Date(2029, 5, 6, 7, 8, 9, 0, time.UTC)
	// The receiver checks the timestamp against its own clock: align it with the sender's fixed clock.
	rcv.SetNow(func() time.Time { return sent.Add(30 * time.Second) })
	p := newProvider(t, rcv.URL, func(c *Config) { c.Now = func() time.Time { return sent } })

	a := assignment("g-1")
	a.Generation = 4097
	ref, err := p.Grant(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	if ref != "rcv-grant_g-1_4097" {
		t.Errorf("ref = %q, want the receiver's", ref)
	}
	if rej := rcv.Rejections(); len(rej) != 0 {
		t.Fatalf("receiver rejected deliveries: %v", rej)
	}
	d, err := rcv.WaitFor(t.Context(), func(d webhookfake.Delivery) bool { return d.Payload.Type == "grant" })
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != "grant_g-1_4097" || d.Timestamp != sent.Unix() || d.Header.Get(HeaderGeneration) != "4097" {
		t.Errorf("id %q ts %d generation header %q", d.ID, d.Timestamp, d.Header.Get(HeaderGeneration))
	}
	if ct, ua := d.Header.Get("Content-Type"), d.Header.Get("User-Agent"); ct != "application/json" || ua != "jitbot" {
		t.Errorf("Content-Type %q User-Agent %q", ct, ua)
	}
	var raw map[string]any
	if err := json.Unmarshal(d.Body, &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": "grant", "grant_id": "g-1", "request_id": "req-g-1", "user_id": "U012ABC", "principal": "alice@example.com",
		"role": "admin", "target": map[string]any{"account": "123456789012"},
		"expires_at": "2030-01-02T03:04:05Z", "generation": float64(4097), "sent_at": "2029-05-06T07:08:09Z",
	}
	if fmt.Sprint(raw) != fmt.Sprint(want) {
		t.Errorf("payload\n got %v\nwant %v", raw, want)
	}
	if !rcv.Present("g-1") {
		t.Error("receiver did not apply the grant")
	}

	// No target and no expiry: target is {} and expires_at is omitted.
	b := grants.Assignment{GrantID: "g-2", Principal: "bob"}
	if _, err := p.Grant(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	d, _ = rcv.WaitFor(t.Context(), func(d webhookfake.Delivery) bool { return d.Payload.GrantID == "g-2" })
	if s := string(d.Body); !strings.Contains(s, `"target":{}`) || strings.Contains(s, "expires_at") || strings.Contains(s, "generation") {
		t.Errorf("payload %s", s)
	}
	if d.Header.Get(HeaderGeneration) != "" {
		t.Errorf("generation header %q without a generation", d.Header.Get(HeaderGeneration))
	}
}

// One webhook-id per operation (issue 10 item 6): activation, extension, a shortened expiry and the revoke of
// one grant each have their own id, so a receiver that de-duplicates on webhook-id (as Standard Webhooks
// suggests) drops none of them; a resend of the same operation keeps its id.
func TestWebhookIDs(t *testing.T) {
	rcv := newReceiver(t)
	p := newProvider(t, rcv.URL)
	a := assignment("g-retry")
	a.Generation = 4097

	rcv.FailNext(http.StatusServiceUnavailable, 1)
	if _, err := p.Grant(t.Context(), a); err == nil || grants.IsPermanent(err) {
		t.Fatalf("503: %v", err)
	}
	if _, err := p.Grant(t.Context(), a); err != nil { // the same operation again
		t.Fatal(err)
	}
	extend := a
	extend.Generation, extend.ExpiresAt = 8193, a.ExpiresAt.Add(time.Hour)
	if _, err := p.Grant(t.Context(), extend); err != nil {
		t.Fatal(err)
	}
	shorten := a
	shorten.Generation = 8194
	if _, err := p.Grant(t.Context(), shorten); err != nil {
		t.Fatal(err)
	}
	revoke := a
	revoke.Generation = 12289
	if err := p.Revoke(t.Context(), revoke); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := p.Check(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	unordered := assignment("g-retry")
	for range 2 {
		if _, err := p.Grant(t.Context(), unordered); err != nil {
			t.Fatal(err)
		}
	}
	ds := rcv.Deliveries()
	if len(ds) != 9 {
		t.Fatalf("%d deliveries", len(ds))
	}
	want := []string{"grant_g-retry_4097", "grant_g-retry_4097", "grant_g-retry_8193", "grant_g-retry_8194", "revoke_g-retry_12289"}
	for i, id := range want {
		if ds[i].ID != id {
			t.Errorf("delivery %d: id %q, want %q", i, ds[i].ID, id)
		}
	}
	if ds[0].Status != 503 || ds[1].Status != 200 {
		t.Errorf("statuses %d %d", ds[0].Status, ds[1].Status)
	}
	if !strings.HasPrefix(ds[5].ID, "check_g-retry_r") || ds[5].ID == ds[6].ID {
		t.Errorf("check ids %q %q: want fresh per call", ds[5].ID, ds[6].ID)
	}
	if !strings.HasPrefix(ds[7].ID, "grant_g-retry_r") || ds[7].ID == ds[8].ID {
		t.Errorf("ids without a generation %q %q: want fresh per call", ds[7].ID, ds[8].ID)
	}
	seen := map[string]bool{}
	for _, d := range ds[1:] {
		if seen[d.ID] {
			t.Errorf("id %q used by two operations", d.ID)
		}
		seen[d.ID] = true
	}
	if n := rcv.Count("grant", "g-retry"); n != 6 {
		t.Errorf("grant count %d, want 6 (every attempt recorded)", n)
	}

	// Grant ids outside [A-Za-z0-9_-] are hashed: no '.', stable, distinct.
	odd := operationID(TypeGrant, "lease.42/ü", 5)
	if strings.ContainsAny(odd, ". /") || odd != operationID(TypeGrant, "lease.42/ü", 5) || odd == operationID(TypeGrant, "lease.43/ü", 5) || !strings.HasSuffix(odd, "_5") {
		t.Errorf("hashed id %q", odd)
	}
	if long := operationID(TypeRevoke, strings.Repeat("a", 200), 1<<40); !strings.HasPrefix(long, "revoke_h_") || len(long) > 64 {
		t.Errorf("long id %q", long)
	}
}

func TestStaleTimestampRejected(t *testing.T) {
	rcv := newReceiver(t)
	p := newProvider(t, rcv.URL, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(-10 * time.Minute) } })
	_, err := p.Grant(t.Context(), assignment("g-stale"))
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 401 || !grants.IsPermanent(err) {
		t.Fatalf("stale delivery: %v", err)
	}
	if rej := rcv.Rejections(); len(rej) != 1 || !strings.Contains(rej[0], "tolerance") {
		t.Fatalf("rejections %v", rej)
	}
	if rcv.Present("g-stale") {
		t.Fatal("stale delivery applied")
	}
}

func TestWrongSecretRejected(t *testing.T) {
	rcv := newReceiver(t)
	p := newProvider(t, rcv.URL, func(c *Config) { c.Secret = []byte("another key entirely") })
	if _, err := p.Grant(t.Context(), assignment("g-x")); !grants.IsPermanent(err) {
		t.Fatalf("wrong secret: %v", err)
	}
	if len(rcv.Rejections()) != 1 || len(rcv.Deliveries()) != 0 {
		t.Fatal("delivery signed with another key was accepted")
	}
}

func TestStatusClassification(t *testing.T) {
	cases := []struct {
		status    int
		permanent bool
	}{
		{400, true}, {401, true}, {403, true}, {404, true}, {405, true}, {410, true}, {422, true},
		{408, false}, {409, false}, {429, false},
		{500, false}, {502, false}, {503, false}, {504, false},
		{301, true}, {302, true}, {303, true}, {307, true}, {308, true},
	}
	rcv := newReceiver(t)
	p := newProvider(t, rcv.URL)
	for _, c := range cases {
		for _, op := range []string{TypeGrant, TypeRevoke, TypeCheck} {
			t.Run(fmt.Sprintf("%d/%s", c.status, op), func(t *testing.T) {
				rcv.FailNext(c.status, 1)
				a := assignment(fmt.Sprintf("g-%d-%s", c.status, op))
				var err error
				switch op {
				case TypeGrant:
					_, err = p.Grant(t.Context(), a)
				case TypeRevoke:
					err = p.Revoke(t.Context(), a)
				case TypeCheck:
					_, err = p.Check(t.Context(), a)
				}
				var se *StatusError
				if !errors.As(err, &se) || se.StatusCode != c.status {
					t.Fatalf("err = %v, want a StatusError %d", err, c.status)
				}
				if grants.IsPermanent(err) != c.permanent {
					t.Fatalf("%v: permanent = %v, want %v", err, grants.IsPermanent(err), c.permanent)
				}
				if !strings.Contains(err.Error(), fmt.Sprint(c.status)) || !strings.Contains(err.Error(), "injected") {
					t.Fatalf("error lacks status or body snippet: %v", err)
				}
				if c.status >= 300 && c.status < 400 && !strings.Contains(err.Error(), "redirect") {
					t.Fatalf("redirect error unclear: %v", err)
				}
				if (c.status == 429 || c.status == 503) && se.RetryAfter != time.Second {
					t.Fatalf("RetryAfter = %s", se.RetryAfter)
				}
			})
		}
	}
	for _, status := range []int{200, 201, 202, 204} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
		if _, err := newProvider(t, srv.URL).Grant(t.Context(), assignment("g-ok")); err != nil {
			t.Errorf("%d: %v", status, err)
		}
		srv.Close()
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	var hits atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/collect?token=abc", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	_, err := newProvider(t, redirector.URL).Grant(t.Context(), assignment("g-redir"))
	if !grants.IsPermanent(err) || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("redirect: %v", err)
	}
	if strings.Contains(err.Error(), "token=abc") {
		t.Fatalf("error shows the Location query: %v", err)
	}
	if hits.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}

func TestCheckAnswer(t *testing.T) {
	for body, wantErr := range map[string]bool{
		`{"present": true}`: false, `{"present": false}`: false,
		``: true, `ok`: true, `{}`: true, `{"present": "yes"}`: true,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
		_, err := newProvider(t, srv.URL).Check(t.Context(), assignment("g-c"))
		srv.Close()
		if (err != nil) != wantErr || (err != nil && !grants.IsPermanent(err)) {
			t.Errorf("check answer %q: err = %v", body, err)
		}
	}
}

// The receiver holds the request until the call has returned, so the attempt timeout is what ends the call
// whatever the machine's load (a provider that ignored its timeout would hang here instead of passing).
func TestTimeoutIsRetryable(t *testing.T) {
	rcv := newReceiver(t)
	_, release := rcv.HoldNext()
	defer release()
	p := newProvider(t, rcv.URL, func(c *Config) { c.Timeout = 100 * time.Millisecond })
	_, err := p.Grant(t.Context(), assignment("g-slow"))
	if err == nil || grants.IsPermanent(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	if !strings.Contains(err.Error(), "no answer within 100ms") {
		t.Errorf("error does not say it timed out: %v", err)
	}
}

// Cancelling the caller's context while the request is at the receiver ends the call (deterministically: the
// receiver holds the request until the call has returned).
func TestContextCancellation(t *testing.T) {
	rcv := newReceiver(t)
	arrived, release := rcv.HoldNext()
	defer release()
	p := newProvider(t, rcv.URL, func(c *Config) { c.Timeout = 10 * time.Second })
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-arrived; cancel() }()
	err := p.Revoke(ctx, assignment("g-cancel"))
	if !errors.Is(err, context.Canceled) || grants.IsPermanent(err) {
		t.Fatalf("cancel in flight: %v", err)
	}
	// Already cancelled: nothing is sent.
	if _, err := p.Grant(ctx, assignment("g-cancel2")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before: %v", err)
	}
	if rcv.Count("grant", "g-cancel2") != 0 {
		t.Fatal("a request was sent with a cancelled context")
	}
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	p := newProvider(t, "http://user:pw-secret@"+strings.TrimPrefix(url, "http://")+"/hook?token=q-secret")
	_, err := p.Grant(t.Context(), assignment("g-net"))
	if err == nil || grants.IsPermanent(err) {
		t.Fatalf("connection refused: %v", err)
	}
	if s := err.Error(); strings.Contains(s, "pw-secret") || strings.Contains(s, "q-secret") || !strings.Contains(s, "/hook") {
		t.Fatalf("error shows URL credentials or lacks the path: %v", err)
	}
}

// A receiver that echoes the request (signature included) and even the secret must not get either into errors.
func TestNoSecretInErrors(t *testing.T) {
	k := key(t)
	var lastSig atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sig := r.Header.Get("webhook-signature")
		lastSig.Store(sig)
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "debug: sig=%s secret=%s b64=%s raw=%s\x00\x1b[31m", sig, testSecret, base64.StdEncoding.EncodeToString(k), k)
	}))
	defer srv.Close()
	p := newProvider(t, srv.URL)
	_, err := p.Grant(t.Context(), assignment("g-leak"))
	if err == nil || grants.IsPermanent(err) {
		t.Fatalf("500: %v", err)
	}
	sig := lastSig.Load().(string)
	assertClean(t, err, sig, strings.TrimPrefix(sig, "v1,"))
	if !strings.Contains(err.Error(), "[redacted]") || strings.ContainsAny(err.Error(), "\x00\x1b") {
		t.Fatalf("snippet not sanitised: %v", err)
	}

	// Long bodies are truncated.
	long := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, strings.Repeat("x", 10000))
	}))
	defer long.Close()
	_, err = newProvider(t, long.URL).Grant(t.Context(), assignment("g-long"))
	var se *StatusError
	if !errors.As(err, &se) || len(se.Body) > snippetLimit+len("…") {
		t.Fatalf("body not truncated: %d bytes", len(se.Body))
	}
}

func TestAssignmentWithoutGrantID(t *testing.T) {
	rcv := newReceiver(t)
	p := newProvider(t, rcv.URL)
	if _, err := p.Grant(t.Context(), grants.Assignment{Principal: "x"}); !grants.IsPermanent(err) {
		t.Fatalf("no grant id: %v", err)
	}
	if len(rcv.Deliveries()) != 0 {
		t.Fatal("sent anyway")
	}
}

// The request shown in docs/webhook.md is what the provider sends.
func TestDocWorkedExample(t *testing.T) {
	var gotBody, gotSig, gotID, gotTS, gotGen string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody, gotSig, gotID, gotTS = string(b), r.Header.Get("webhook-signature"), r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		gotGen = r.Header.Get("jitbot-generation")
	}))
	defer srv.Close()
	sent := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newProvider(t, srv.URL+"/jitbot", func(c *Config) { c.Now = func() time.Time { return sent } })
	a := grants.Assignment{
		GrantID: "g-7Q2", BindingKey: "5e1f0c7a9b2d4e6f8a0b1c2d3e4f5a6b", RequestID: "r-51", UserID: "U012ABC", Principal: "alice@example.com", Role: "admin",
		Target: map[string]string{"account": "123456789012"}, ExpiresAt: sent.Add(time.Hour), Generation: 4097,
	}
	if _, err := p.Grant(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	const wantBody = `{"type":"grant","grant_id":"g-7Q2","binding_key":"5e1f0c7a9b2d4e6f8a0b1c2d3e4f5a6b","request_id":"r-51","user_id":"U012ABC","principal":"alice@example.com","role":"admin","target":{"account":"123456789012"},"expires_at":"2026-01-01T01:00:00Z","generation":4097,"sent_at":"2026-01-01T00:00:00Z"}`
	if gotBody != wantBody || gotID != "grant_g-7Q2_4097" || gotTS != "1767225600" || gotSig != "v1,w2WuPrwtTXCIsEwQShE6bnCnDPlzeZtwc4MW2ELa3mY=" || gotGen != "4097" {
		t.Fatalf("docs/webhook.md is out of date:\nbody %s\nid %s ts %s sig %s generation %s", gotBody, gotID, gotTS, gotSig, gotGen)
	}
	doc, err := os.ReadFile("../../docs/webhook.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{wantBody, "webhook-id: " + gotID, "webhook-signature: " + gotSig, "jitbot-generation: " + gotGen, "signature:      " + gotSig, "signed content: " + gotID + "." + gotTS + "."} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/webhook.md does not show %q", want)
		}
	}
	h := http.Header{}
	h.Set("webhook-id", gotID)
	h.Set("webhook-timestamp", gotTS)
	h.Set("webhook-signature", gotSig)
	if err := webhookfake.Verify(key(t), h, []byte(gotBody), sent); err != nil {
		t.Fatal(err)
	}
}

// A receiver that answers {"pending": true} gets the same operation again (same webhook-id, same generation:
// a resend it can de-duplicate) until it answers without pending. The receiver here is written from
// docs/webhook.md "Answering", not from the reference receiver.
func TestPendingIsResentUntilDone(t *testing.T) {
	var ids, gens []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids = append(ids, r.Header.Get("webhook-id"))
		gens = append(gens, r.Header.Get("jitbot-generation"))
		if len(ids) < 3 {
			io.WriteString(w, `{"pending": true}`)
			return
		}
		io.WriteString(w, `{"ref": "op-7"}`)
	}))
	defer srv.Close()
	p := newProvider(t, srv.URL, func(c *Config) { c.PollInterval = time.Millisecond })
	a := assignment("g-p")
	a.Generation = 4097
	ref, err := p.Grant(t.Context(), a)
	if err != nil || ref != "op-7" {
		t.Fatalf("grant = %q, %v; want op-7 once the receiver is done", ref, err)
	}
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] || gens[0] != "4097" || gens[2] != "4097" {
		t.Fatalf("deliveries: ids %v generations %v; want three deliveries of one operation", ids, gens)
	}
}

// A receiver still pending when the wait ends: a retryable error, and the grant's reference is jitbot's own
// (the receiver accepted the operation, so whatever it creates must be removed at revoke).
func TestPendingPastTheWaitIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"pending": true}`) }))
	defer srv.Close()
	p := newProvider(t, srv.URL, func(c *Config) { c.PollInterval = time.Millisecond; c.PendingTimeout = 20 * time.Millisecond })
	ref, err := p.Grant(t.Context(), assignment("g-q"))
	if err == nil || grants.IsPermanent(err) {
		t.Fatalf("grant of a receiver that stays pending: err = %v, want a retryable error", err)
	}
	if ref == "" || ref == grants.RefUntouched || grants.IsPreExisting(ref) {
		t.Fatalf("grant ref = %q, want jitbot's own reference (the operation was accepted)", ref)
	}
	if err := p.Revoke(t.Context(), assignment("g-q")); err == nil {
		t.Fatal("revoke of a receiver that stays pending succeeded")
	}
}

// {"pre_existing": true} is believed only when jitbot has made no call of its own for the binding; a revoke of a
// pre-existing grant sends nothing.
func TestPreExistingAnswer(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, `{"pre_existing": true}`)
	}))
	defer srv.Close()
	p := newProvider(t, srv.URL)
	for _, c := range []struct {
		ref      string
		standing bool
	}{{"", true}, {grants.RefUntouched, true}, {grants.RefCallPending, false}, {"grant_g-s_1", false}} {
		a := assignment("g-s")
		a.Ref = c.ref
		ref, err := p.Grant(t.Context(), a)
		if err != nil || grants.IsPreExisting(ref) != c.standing {
			t.Errorf("grant with ref %q = %q, %v; want pre-existing %v", c.ref, ref, err, c.standing)
		}
	}
	before := calls.Load()
	a := assignment("g-s")
	a.Ref = grants.PreExistingRef("webhook")
	if err := p.Revoke(t.Context(), a); err != nil || calls.Load() != before {
		t.Fatalf("revoke of pre-existing access: err %v, %d calls sent; want none", err, calls.Load()-before)
	}
}
