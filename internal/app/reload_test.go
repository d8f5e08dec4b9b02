package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// reloadPolicy is a policy file whose approvers, approval count and providers block the tests change.
func reloadPolicy(hookURL, approvers string, approvals int, timeout string) string {
	return fmt.Sprintf(`version: 1
providers:
  target-system:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: %s, secret_env: %s, timeout: %s}
roles:
  db-admin:
    provider: target-system
    target: {resource: test-db}
    requesters: {users: [%s]}
    approvers: {users: [%s]}
    approvals: %d
    max_duration: 1h
    approval_channel: C0APPROVALS
`, hookURL, hookSecretEnv, timeout, alice, approvers, approvals)
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

type reloadEnv struct {
	t    *testing.T
	path string
	st   store.Store
	a    *app.App
	url  string
}

func newReloadEnv(t *testing.T, b backendtest.Backend, poll time.Duration) *reloadEnv {
	return newReloadEnvFrom(t, b, poll, func(hookURL string) string { return reloadPolicy(hookURL, bob+", "+carol, 1, "2s") })
}

// newReloadEnvFrom starts from the policy policyFor returns for the webhook receiver's URL.
func newReloadEnvFrom(t *testing.T, b backendtest.Backend, poll time.Duration, policyFor func(hookURL string) string) *reloadEnv {
	recv := webhookfake.NewServer(hookSecret)
	t.Cleanup(recv.Close)
	e := &reloadEnv{t: t, path: filepath.Join(t.TempDir(), "policy.yaml"), url: recv.URL + "/hook"}
	src := policyFor(e.url)
	e.write(src)
	pol, err := policy.Load(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.st = b.Open(t)
	e.a, err = app.New(t.Context(), app.Deps{Policy: pol, Store: e.st, PolicyFile: e.path, Tuning: app.Tuning{PolicyPollInterval: poll},
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Getenv: func(k string) string {
			if k == hookSecretEnv {
				return string(hookSecret)
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.a.PolicySHA256(); got != sum(src) {
		t.Fatalf("PolicySHA256 = %s, want the file's %s", got, sum(src))
	}
	return e
}

func (e *reloadEnv) write(src string) {
	e.t.Helper()
	// Write and rename, as an editor or a ConfigMap update does, so a poll never reads half a file.
	tmp := e.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(src), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.path); err != nil {
		e.t.Fatal(err)
	}
}

func (e *reloadEnv) events(typ string) []store.AuditEvent {
	e.t.Helper()
	recs, err := e.st.ReadAudit(context.Background(), 0, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AuditEvent
	for _, r := range recs {
		if r.Event.Type == typ {
			out = append(out, r.Event)
		}
	}
	return out
}

// TestPolicyReload: a valid new file is put in force and audited with its sha256; an invalid one changes
// nothing and says why; a request created before the reload is decided under the new policy.
func TestPolicyReload(t *testing.T) {
	for _, b := range backendtest.All() {
		t.Run(b.Name, func(t *testing.T) {
			e := newReloadEnv(t, b, -1)
			ctx := context.Background()
			first := e.a.PolicySHA256()
			req, err := e.a.Approvals.Create(ctx, approvals.NewRequest{Requester: alice, Role: "db-admin", Reason: "INC-1"})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.a.ReloadPolicy(ctx, "sighup"); !errors.Is(err, app.ErrPolicyUnchanged) {
				t.Fatalf("reload of an unchanged file: %v", err)
			}

			// Bob is removed from the approvers: he can no longer approve the request made before.
			second := reloadPolicy(e.url, carol, 1, "2s")
			e.write(second)
			if err := e.a.ReloadPolicy(ctx, "sighup"); err != nil {
				t.Fatalf("reload: %v", err)
			}
			if e.a.PolicySHA256() != sum(second) {
				t.Fatal("the new file's sha256 is not in force")
			}
			evs := e.events(app.EventPolicyReloaded)
			if len(evs) != 1 || evs[0].Details["sha256"] != sum(second) || evs[0].Details["previous_sha256"] != first || evs[0].Details["trigger"] != "sighup" {
				t.Fatalf("reload audit events: %+v", evs)
			}
			if _, err := e.a.Approvals.Approve(ctx, req.ID, bob, ""); !errors.Is(err, approvals.ErrNotEligible) {
				t.Fatalf("approval by a removed approver after reload: %v, want ErrNotEligible", err)
			}

			// Invalid files keep the policy in force, each with its reason.
			for name, bad := range map[string]struct{ src, reason string }{
				"syntax":    {"version: 1\nroles: [\n", "policy-reload-rejected"},
				"semantics": {strings.Replace(second, "approvals: 1", "approvals: 0", 1), "approvals"},
				"providers": {reloadPolicy(e.url, carol, 1, "5s"), "the providers section changed"},
			} {
				e.write(bad.src)
				err := e.a.ReloadPolicy(ctx, "sighup")
				if err == nil || !strings.Contains(err.Error(), "previous one") {
					t.Fatalf("%s: reload of an invalid file: %v", name, err)
				}
				if name != "syntax" && !strings.Contains(err.Error(), bad.reason) {
					t.Fatalf("%s: the error does not say why: %v", name, err)
				}
				if e.a.PolicySHA256() != sum(second) || e.a.Approvals.Policy().Roles["db-admin"].Approvers.Users[0] != carol {
					t.Fatalf("%s: an invalid file replaced the policy in force", name)
				}
			}
			if rej := e.events(app.EventPolicyReloadRejected); len(rej) != 3 || rej[0].Details["reason"] == "" || rej[0].Details["sha256"] == "" {
				t.Fatalf("rejected reload events: %+v", rej)
			}
			if _, err := e.a.Approvals.Approve(ctx, req.ID, carol, ""); err != nil {
				t.Fatalf("approval by the approver in force: %v", err)
			}
		})
	}
}

// TestPolicyReloadOnFileChange: the App notices a changed file by itself, and reports an invalid one once.
func TestPolicyReloadOnFileChange(t *testing.T) {
	e := newReloadEnv(t, backendtest.All()[0], time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	bad := "version: 1\nroles: {}\n"
	e.write(bad)
	waitFor("the rejected reload", func() bool { return len(e.events(app.EventPolicyReloadRejected)) == 1 })
	next := reloadPolicy(e.url, bob+", "+carol, 2, "2s")
	e.write(next)
	waitFor("the reload", func() bool { return e.a.PolicySHA256() == sum(next) })
	if e.a.Approvals.Policy().Roles["db-admin"].Approvals != 2 {
		t.Fatal("the reloaded policy is not the one the approvals service uses")
	}
	evs := e.events(app.EventPolicyReloaded)
	if len(evs) != 1 || evs[0].Details["trigger"] != "file-change" {
		t.Fatalf("reload events: %+v", evs)
	}
	// The invalid version was polled many times but reported once.
	if n := len(e.events(app.EventPolicyReloadRejected)); n != 1 {
		t.Fatalf("%d rejected-reload events for one invalid file, want 1", n)
	}
}
