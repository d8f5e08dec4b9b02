package app_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store/bolt"
)

// TestSignedCheckpointReachesTheAuditChannel: the leader's checkpoint is posted to the policy's audit channel
// (through the Slack emulator), and the line copied from Slack proves the store with audit.VerifyLog.
func TestSignedCheckpointReachesTheAuditChannel(t *testing.T) {
	const auditCh, approvalsCh = "C0AUDIT", "C0APPROVALS"
	emu := slackfake.New(slackfake.Options{
		Users:    []slackfake.User{{ID: alice, Name: "alice"}, {ID: bob, Name: "bob"}},
		Channels: []slackfake.Channel{{ID: auditCh, Name: "audit"}, {ID: approvalsCh, Name: "approvals"}},
	})
	t.Cleanup(emu.Close)
	recv := webhookfake.NewServer(hookSecret)
	t.Cleanup(recv.Close)
	pol, err := policy.Parse("audit-slack.yaml", []byte(fmt.Sprintf(`version: 1
defaults: {approval_channel: %s, audit_channel: %s}
providers:
  target-system:
    type: webhook
    principal_from: slack_user_id
    webhook: {url: "%s/hook", secret_env: %s, timeout: 2s}
roles:
  db-admin:
    provider: target-system
    target: {resource: test-db, permission: admin}
    requesters: {users: [%s]}
    approvers: {users: [%s]}
    default_duration: 1h
    max_duration: 1h
`, approvalsCh, auditCh, recv.URL, hookSecretEnv, alice, bob)))
	if err != nil {
		t.Fatal(err)
	}
	priv, _, err := audit.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.ParseSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), "jitbot.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cpFile := filepath.Join(t.TempDir(), "checkpoints")
	a, err := app.New(t.Context(), app.Deps{
		Policy: pol, Store: st, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		Slack: &app.SlackConfig{BotToken: emu.BotToken(), SigningSecret: emu.SigningSecret(), APIURL: emu.APIURL(), SkipGroupCheck: true},
		Getenv: func(k string) string {
			if k == hookSecretEnv {
				return string(hookSecret)
			}
			return ""
		},
		Audit: app.AuditOptions{Signer: signer, CheckpointFile: cpFile},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req, err := a.Approvals.Create(ctx, approvals.NewRequest{Requester: alice, Role: "db-admin", Reason: "INC-9"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Approvals.Approve(ctx, req.ID, bob, ""); err != nil {
		t.Fatal(err)
	}
	c, ok, err := a.Monitor.Checkpoint(ctx)
	if err != nil || !ok || !c.Signed() {
		t.Fatalf("checkpoint: %+v %v %v", c, ok, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second) // guards a hang only
	defer cancel()
	msg, err := emu.WaitForMessage(wctx, auditCh, func(m slackfake.Message) bool { return strings.Contains(m.Text, audit.CheckpointPrefix) })
	if err != nil {
		t.Fatalf("no checkpoint in the audit channel: %v (messages %+v)", err, emu.Messages(auditCh))
	}
	fromSlack, err := audit.ParseCheckpoint(msg.Text)
	if err != nil {
		t.Fatalf("the posted line %q does not parse: %v", msg.Text, err)
	}
	rep, err := audit.VerifyLog(ctx, st, audit.VerifyOptions{Checkpoints: []audit.Checkpoint{fromSlack}, Keys: []audit.PublicKey{signer.Public()}})
	if err != nil || rep.Checkpoints != 1 || rep.LatestCheckpoint.Seq != c.Seq {
		t.Fatalf("verify against the Slack copy: %+v %v", rep, err)
	}
	a.Notifier.Wait()
}
