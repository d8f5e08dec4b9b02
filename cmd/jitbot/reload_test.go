//go:build unix

package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeReloadsPolicyOnSIGHUP: SIGHUP makes a running serve re-read its policy file; an invalid file
// keeps the policy in force and the log says why.
func TestServeReloadsPolicyOnSIGHUP(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	orig, err := os.ReadFile("../../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	t.Setenv("JITBOT_DATA_DIR", dir)
	t.Setenv("JITBOT_SLACK", "off")
	t.Setenv("JITBOT_POLICY_FILE", path)
	t.Setenv("JITBOT_WEBHOOK_SECRET", "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3ODk=")
	t.Setenv("JITBOT_LISTEN_ADDR", addr)
	t.Setenv("JITBOT_POLICY_POLL_INTERVAL", "0") // only SIGHUP reloads
	ctx, cancel := context.WithCancel(context.Background())
	var buf bytes.Buffer
	stderr := &syncWriter{w: &buf}
	logs := func() string { stderr.mu.Lock(); defer stderr.mu.Unlock(); return buf.String() }
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve"}, strings.NewReader(""), io.Discard, stderr) }()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("ready", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if !strings.Contains(logs(), `"policy_sha256":"`) {
		t.Fatalf("the start-up line does not name the policy's sha256:\n%s", logs())
	}

	// An invalid file: the reason is logged and the policy stays.
	if err := os.WriteFile(path, []byte("version: 1\nroles: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the rejection", func() bool { return strings.Contains(logs(), "policy reload rejected") })
	if !strings.Contains(logs(), "no roles are defined") {
		t.Fatalf("the rejection does not say why:\n%s", logs())
	}

	changed := bytes.Replace(orig, []byte("version: 1"), []byte("version: 1\n# reviewed"), 1)
	if err := os.WriteFile(path, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the reload", func() bool { return strings.Contains(logs(), `"message":"policy reloaded"`) })
}
