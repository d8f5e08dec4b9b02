package bot_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/store"
)

// The reminder before expiry comes from the durable due index (grants.Options.RemindBefore): when a grant's
// reminder time is reached, the sweeper records a grant-reminder event and the holder gets one DM with Extend
// and I'm done. I'm done revokes, and the revoke is verified at the provider (revoke-verified, announced in
// the approval thread). Runs on both stores (HTTP against the embedded store, Socket Mode against Redis).
func TestReminderEndToEnd(t *testing.T) {
	for i, be := range backendtest.All() {
		mode := slackfake.ModeHTTP
		if i > 0 {
			mode = slackfake.ModeSocket
		}
		t.Run(be.Name, func(t *testing.T) {
			t.Parallel()
			testReminder(t, newWorld(t, mode, be))
		})
	}
}

func testReminder(t *testing.T, w *world) {
	id, msg := w.request(alice, "request db-read 1h INC-21 reminder check")
	grantID := w.approve(carol, msg, id)
	w.dm(alice, "Your access to `db-read` is active until")
	g := w.getGrant(grantID)
	if want := g.ExpiresAt.Add(-10 * time.Minute); !g.RemindAt.Equal(want) {
		t.Fatalf("remind at %v, want 10 minutes before expiry %v", g.RemindAt, g.ExpiresAt)
	}
	// Move the reminder to now instead of waiting 50 minutes.
	for {
		g := w.getGrant(grantID)
		prev := g.Version
		g.RemindAt = time.Now().Add(-time.Second).Truncate(time.Millisecond)
		g.DueAt = g.RemindAt
		err := w.st.Commit(w.ctx, store.Batch{Grants: []store.GrantPut{{Grant: &g, PrevVersion: prev}}})
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrConflict) {
			t.Fatal(err)
		}
	}
	m := w.dm(alice, "Extend it, or end it now if you are done")
	mustContain(t, "reminder DM", msgText(m), grantID, "jit_extend", "jit_done")
	if err := w.storeWait(func() bool { return w.getGrant(grantID).RemindAt.IsZero() }); err != nil {
		t.Fatalf("the reminder was never recorded as sent: %v", err)
	}
	w.auditLine("`grant-reminder` system:grants · db-read · " + id + " · " + grantID)
	recs, err := w.st.ReadAudit(w.ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Event.Type == store.EventGrantReminder {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("grant-reminder events = %d, want 1", n)
	}
	reminders := 0
	for _, d := range w.emu.DMs(alice) {
		if strings.Contains(d.Text, "Extend it, or end it now") {
			reminders++
		}
	}
	if reminders != 1 {
		t.Fatalf("reminder DMs = %d, want 1", reminders)
	}

	// "I'm done" on the reminder: the access is revoked, then verified at the provider, and the approval
	// thread says when it was confirmed gone.
	w.click(alice, m, "jit_done", grantID)
	w.threadReply(msg, "Access removed (grant "+grantID+")")
	w.threadReply(msg, "Access confirmed gone at")
	w.auditLine("`revoke-verified` system:grants · db-read · " + id + " · " + grantID)
	if g := w.getGrant(grantID); g.State != store.GrantRevoked || g.VerifiedAt.IsZero() {
		t.Fatalf("after I'm done: %s, verified %v", g.State, g.VerifiedAt)
	}
}
