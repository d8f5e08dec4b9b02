package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

const adminHookSecretEnv = "JITBOT_TEST_ADMIN_HOOK_SECRET"

// adminPolicy writes a policy with a webhook provider at recv and points JITBOT_POLICY_FILE at it.
func adminPolicy(t *testing.T, recv *webhookfake.Server) *policy.Policy {
	t.Helper()
	src := fmt.Sprintf(`version: 1
providers:
  target-system:
    type: webhook
    principal_from: slack_user_id
    webhook:
      url: %s/hook
      secret_env: %s
      timeout: 2s
roles:
  db-admin:
    description: Admin on the test database
    provider: target-system
    target: {resource: test-db, permission: admin}
    requesters: {users: [U0ALICE, U0ERIN]}
    approvers: {users: [U0BOB]}
    approvals: 1
    default_duration: 1h
    max_duration: 4h
    pending_ttl: 10m
    approval_channel: C0APPROVALS
`, recv.URL, adminHookSecretEnv)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JITBOT_POLICY_FILE", path)
	t.Setenv(adminHookSecretEnv, "admin-cli-test-secret-0123456789")
	p, err := policy.Parse(path, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// activeGrant makes a real grant through the engine (request, approval, activation at the webhook), as
// jitbot serve would have, and returns its id; the store is closed afterwards.
func activeGrant(t *testing.T, cs cliStore, pol *policy.Policy, requester string) (requestID, grantID string) {
	t.Helper()
	st := cs.open()
	defer st.Close()
	a, err := app.New(t.Context(), app.Deps{Policy: pol, Store: st, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req, err := a.Approvals.Create(ctx, approvals.NewRequest{Requester: requester, Role: "db-admin", Reason: "INC-77 database down"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := a.Approvals.Approve(ctx, req.ID, "U0BOB", "")
	if err != nil || out.GrantID == "" {
		t.Fatalf("approve: %+v %v", out, err)
	}
	g, err := st.GetGrant(ctx, out.GrantID)
	if err != nil || g.State != store.GrantActive {
		t.Fatalf("grant after approval: %+v %v", g, err)
	}
	return req.ID, out.GrantID
}

func TestAdminCLIListsAndRevokesThroughTheEngine(t *testing.T) {
	bothCLIStores(t, func(t *testing.T, cs cliStore) {
		recv := webhookfake.NewServer([]byte("admin-cli-test-secret-0123456789"))
		t.Cleanup(recv.Close)
		pol := adminPolicy(t, recv)
		reqID, grantID := activeGrant(t, cs, pol, "U0ALICE")
		if !recv.Present(grantID) {
			t.Fatal("test bug: the grant is not present at the provider")
		}

		code, stdout, stderr := runCLI(t, "grants", "list")
		if code != 0 || !strings.Contains(stdout, grantID) || !strings.Contains(stdout, "active") || !strings.Contains(stdout, "U0ALICE") {
			t.Fatalf("grants list: exit %d, %q %q", code, stdout, stderr)
		}
		code, stdout, _ = runCLI(t, "grants", "list", "--json", "--user", "U0ALICE")
		var listed store.Grant
		if code != 0 || json.Unmarshal([]byte(strings.SplitN(stdout, "\n", 2)[0]), &listed) != nil || listed.ID != grantID {
			t.Fatalf("grants list --json --user: exit %d, %q", code, stdout)
		}
		if code, _, stderr := runCLI(t, "grants", "list", "--state", "bogus"); code != 2 || !strings.Contains(stderr, "unknown state") {
			t.Fatalf("bad state: exit %d %q", code, stderr)
		}
		code, stdout, _ = runCLI(t, "requests", "list", "--user", "U0ALICE")
		if code != 0 || !strings.Contains(stdout, reqID) || !strings.Contains(stdout, "approved") || !strings.Contains(stdout, "INC-77") {
			t.Fatalf("requests list: exit %d, %q", code, stdout)
		}
		code, stdout, _ = runCLI(t, "grants", "show", grantID)
		if code != 0 || !strings.Contains(stdout, "principal:") || !strings.Contains(stdout, "granted") || !strings.Contains(stdout, "requested") {
			t.Fatalf("grants show: exit %d, %q", code, stdout)
		}

		// Another process's operation holds the grant's binding: the CLI waits its turn, then says nothing
		// changed. (A bbolt file is open in one process at a time: nobody else can hold its locks.)
		if cs.sharedLocks {
			st0 := cs.open()
			held, err := st0.AcquireLock(context.Background(), "binding:"+listed.BindingKey, "someone-else", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			st0.Close()
			t.Setenv("JITBOT_PROVIDER_TIMEOUT", "1s") // how long the CLI waits for the lock
			code, _, stderr = runCLI(t, "grants", "revoke", grantID, "--reason", "busy")
			if code != 1 || !strings.Contains(stderr, "busy") || !strings.Contains(stderr, "nothing changed") {
				t.Fatalf("revoke of a busy binding: exit %d, %q", code, stderr)
			}
			st0 = cs.open()
			if err := st0.ReleaseLock(context.Background(), held); err != nil {
				t.Fatal(err)
			}
			st0.Close()
			os.Unsetenv("JITBOT_PROVIDER_TIMEOUT")
		}

		// Bad input changes nothing.
		if code, _, stderr := runCLI(t, "grants", "revoke", grantID); code != 2 || !strings.Contains(stderr, "--reason is required") {
			t.Fatalf("revoke without a reason: exit %d, %q", code, stderr)
		}
		if code, _, stderr := runCLI(t, "grants", "revoke", "g-nope", "--reason", "x"); code != 1 || !strings.Contains(stderr, "no grant") {
			t.Fatalf("revoke of an unknown grant: exit %d, %q", code, stderr)
		}
		if !recv.Present(grantID) || recv.Count("revoke", grantID) != 0 {
			t.Fatal("a refused revoke reached the provider")
		}

		code, stdout, stderr = runCLI(t, "grants", "revoke", grantID, "--reason", "Slack down, INC-77 over", "--actor", "oncall-ann")
		if code != 0 || !strings.Contains(stdout, "revoked at target-system by oncall-ann") {
			t.Fatalf("revoke: exit %d, %q %q", code, stdout, stderr)
		}
		if recv.Present(grantID) || recv.Count("revoke", grantID) != 1 {
			t.Fatalf("the provider still has the access (revokes %d)", recv.Count("revoke", grantID))
		}
		st := cs.open()
		g, err := st.GetGrant(context.Background(), grantID)
		if err != nil || g.State != store.GrantRevoked || g.EndReason != "revoked_by_operator" || g.EndedBy != "cli:oncall-ann" {
			t.Fatalf("grant after CLI revoke: %+v, %v", g, err)
		}
		recs, err := st.ReadAudit(context.Background(), 0, 0)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		var opEv *store.AuditEvent
		var types []string
		for i, r := range recs {
			types = append(types, r.Event.Type)
			if r.Event.Type == grants.EventOperatorRevoked {
				opEv = &recs[i].Event
			}
		}
		if opEv == nil || opEv.Actor != "cli:oncall-ann" || opEv.GrantID != grantID || opEv.Details["reason"] != "Slack down, INC-77 over" ||
			opEv.Details["operator"] != "oncall-ann" || opEv.Details["os_user"] != osUser() || opEv.Details["via"] != "cli" {
			t.Fatalf("operator audit event = %+v (trail %v)", opEv, types)
		}
		// The provider revocation comes after the operator's decision (its verification at the provider is
		// due in the store's index, for the sweeper of a running serve).
		if !slices.Equal(types[len(types)-2:], []string{grants.EventOperatorRevoked, store.EventRevoked}) {
			t.Fatalf("trail %v: want operator-revoked, then revoked, at the end", types)
		}
		if code, _, stderr := runCLI(t, "grants", "revoke", grantID, "--reason", "again"); code != 1 || !strings.Contains(stderr, "already revoked") {
			t.Fatalf("second revoke: exit %d, %q", code, stderr)
		}
		if code, stdout, stderr := runCLI(t, "audit", "verify"); code != 0 {
			t.Fatalf("audit verify after the CLI revoke: %s %s", stdout, stderr)
		}

		// --actor defaults to the OS user.
		_, second := activeGrant(t, cs, pol, "U0ERIN")
		if code, _, stderr := runCLI(t, "grants", "revoke", second, "--reason", "leaver"); code != 0 {
			t.Fatalf("revoke with the default actor: exit %d %q", code, stderr)
		}
		code, stdout, _ = runCLI(t, "audit", "export", "--since", "1h")
		var last exportedEntry
		var found bool
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var e exportedEntry
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("export line %q: %v", line, err)
			}
			if e.Event.Type == grants.EventOperatorRevoked && e.Event.GrantID == second {
				last, found = e, true
			}
		}
		if code != 0 || !found || last.Event.Actor != "cli:"+osUser() || last.Hash == "" {
			t.Fatalf("export: exit %d, operator event %+v (found %v)", code, last, found)
		}
		if code, stdout, _ := runCLI(t, "audit", "export", "--since", time.Now().Add(time.Hour).Format(time.RFC3339)); code != 0 || stdout != "" {
			t.Fatalf("export --since the future: exit %d, %q", code, stdout)
		}
	})
}
