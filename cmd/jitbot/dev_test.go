package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestPlaygroundWholeFlow types commands into `jitbot dev` and reads what a person would see.
func TestPlaygroundWholeFlow(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	// The example policy with the receiver on a free port, so the test never collides with a running playground.
	raw, err := os.ReadFile("../../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	hookAddr := freeAddr(t)
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(strings.Replace(string(raw), "127.0.0.1:9099", hookAddr, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "-policy", pol, "-data", filepath.Join(dir, "data"), "-listen", freeAddr(t)}, inR, outW, io.Discard)
		outW.Close()
	}()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(re string) []string {
		t.Helper()
		rx := regexp.MustCompile(re)
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("playground exited while waiting for %q", re)
				}
				if m := rx.FindStringSubmatch(l); m != nil {
					return m
				}
			case <-timeout:
				t.Fatalf("playground never printed %q", re)
			}
		}
	}
	say := func(s string) {
		if _, err := io.WriteString(inW, s+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	expect(`jitbot playground`)
	say("as U01ALICE")
	say("/jit request prod-db-admin 5h INC-1 too long")
	expect(`refused: 5h exceeds the maximum of 4h`)
	say("request prod-db-admin 2s INC-4521 failover")
	req := expect(`request (r-[a-z0-9]+) is pending \(2 approval\(s\) needed\)`)[1]
	say("approve " + req)
	expect(`refused: You cannot approve your own request`)
	say("as U03CAROL")
	say("approve " + req)
	expect(`1 of 2 approvals; still pending`)
	say("as U04DAVE")
	say("approve " + req)
	// Activation happens inside the approval, so its audit line comes before the approval's answer.
	grant := expect(`\[audit\] granted .*grant=(g-[a-z0-9]+)`)[1]
	expect(`approved \(2 of 2 approvals\); grant ` + grant)
	expect(`\[audit\] revoked .*grant=` + grant)
	say("deliveries")
	expect(`revoke grant=` + grant + ` principal=alice@example.com role=prod-db-admin`)
	say("audit")
	expect(`audit log ok: \d+ entries`)
	say("quit")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("dev exited %d", code)
	}
}
