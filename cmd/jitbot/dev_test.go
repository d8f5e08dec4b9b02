package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDevServesThePlayground starts `jitbot dev` with the example policy and no standard input (as under a
// process manager, without a TTY): it prints the page's URL, keeps serving the page, the playground's state
// (the policy's users, with names) and /healthz, and stops cleanly when its context ends (SIGINT/SIGTERM).
// The playground itself is tested in internal/playground (JSON API flow and a headless Chromium test).
func TestDevServesThePlayground(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	// The example policy with the receiver on a free port, so the test never collides with a running playground.
	raw, err := os.ReadFile("../../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(strings.NewReplacer("127.0.0.1:9099", freeAddr(t), "127.0.0.1:9098", freeAddr(t)).Replace(string(raw))), 0o600); err != nil {
		t.Fatal(err)
	}
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "-policy", pol, "-data", filepath.Join(dir, "data"), "-listen", freeAddr(t)}, strings.NewReader(""), outW, io.Discard)
		outW.Close()
	}()
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(outR)
		rx := regexp.MustCompile(`jitbot playground: open (http://\S+)/ in a browser`)
		for sc.Scan() {
			if m := rx.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
		}
	}()
	var base string
	select {
	case base = <-urlc:
	case code := <-done:
		t.Fatalf("dev exited %d before printing its URL", code)
	case <-time.After(20 * time.Second):
		t.Fatal("dev never printed its URL")
	}
	time.Sleep(300 * time.Millisecond) // standard input is already closed: it must keep serving
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if page := get("/"); !strings.Contains(page, "<title>jitbot playground</title>") {
		t.Fatalf("page: %.300s", page)
	}
	if h := get("/healthz"); !strings.Contains(h, "ok") {
		t.Fatalf("healthz: %s", h)
	}
	var st struct {
		Users []struct {
			ID       string `json:"id"`
			RealName string `json:"real_name"`
		} `json:"users"`
		Channels []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(get("/api/state")), &st); err != nil {
		t.Fatal(err)
	}
	var users, chans []string
	for _, u := range st.Users {
		users = append(users, u.RealName+"="+u.ID)
	}
	for _, c := range st.Channels {
		chans = append(chans, c.Name)
	}
	if got := strings.Join(users, ","); got != "Alice=U01ALICE,Bob=U02BOB,Carol=U03CAROL,Dave=U04DAVE,Erin=U05ERIN" {
		t.Fatalf("users %s", got)
	}
	if got := strings.Join(chans, ","); got != "general,approvals,audit,staging" {
		t.Fatalf("channels %s", got)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("dev exited %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not stop after its context ended")
	}
}

// TestDevWebhookAddrIsConfigurable: the playground's second port (the webhook receiver, 127.0.0.1:9099 in the
// example policy) moves with -webhook-addr (or JITBOT_DEV_WEBHOOK_ADDR), with the example policy unchanged.
func TestDevWebhookAddrIsConfigurable(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	hook := freeAddr(t)
	t.Setenv("JITBOT_DEV_WEBHOOK_ADDR", hook)
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "-policy", "../../examples/policy.yaml", "-data", filepath.Join(dir, "data"), "-listen", freeAddr(t)}, strings.NewReader(""), outW, io.Discard)
		outW.Close()
	}()
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "jitbot playground: open") {
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case code := <-done:
		t.Fatalf("dev exited %d", code)
	}
	resp, err := http.Post("http://"+hook+"/jitbot", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("nothing listens on the configured webhook address %s: %v", hook, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode/100 != 4 {
		t.Fatalf("unsigned POST to the receiver: %d, want a 4xx refusal", resp.StatusCode)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("dev exited %d", code)
	}
	if code, _, stderr := runCLI(t, "dev", "-webhook-addr", "9099"); code != 1 || !strings.Contains(stderr, "want host:port") {
		t.Fatalf("bad -webhook-addr: exit %d %s", code, stderr)
	}
}
