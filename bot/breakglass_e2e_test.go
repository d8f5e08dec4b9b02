package bot_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/oncall/pagerduty/pdfake"
	"github.com/jitbot/jitbot/store"
)

// testBreakGlass: `/jit breakglass` by the on-call engineer (PagerDuty says so) is granted at the provider
// without any approver click, announced loudly, re-announced while unreviewed, and reviewed by an approver
// (never the requester); the audit log tells the whole story and verifies.
func testBreakGlass(t *testing.T, mode slackfake.Mode, be backendtest.Backend) {
	now := time.Now()
	pd := pdfake.New(string(hookSecret)) // the world's environment answers every secret with hookSecret
	t.Cleanup(pd.Close)
	pd.AddUser(pdfake.User{ID: "PALICE", Name: "Alice", Email: "alice@example.com"})
	pd.AddOnCall(pdfake.OnCall{UserID: "PALICE", ScheduleID: "PSCHED", ScheduleName: "Database", EscalationPolicyID: "PEP",
		EscalationPolicyName: "Database", Level: 1, Start: now.Add(-time.Hour), End: now.Add(2 * time.Hour)})
	w := newWorldWith(t, mode, be, worldConfig{pagerDuty: pd.URL})

	// Refusals first: a role without break-glass, and someone who may not request the role.
	w.command(alice, "breakglass db-read 30m INC-1 no")
	w.ephemeral(alice, "does not allow break-glass")
	w.command(dave, "breakglass db-bg 30m INC-1 no")
	w.ephemeral(dave, "You may not request db-bg")

	resp := w.command(alice, "breakglass db-bg 20m INC-4521 primary database down")
	if !strings.Contains(string(resp.Body), "Checking that you are on call") {
		t.Fatalf("ack = %s", resp.Body)
	}
	w.ephemeral(alice, "Break-glass")
	granted, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "grant" && d.Payload.Role == "db-bg" })
	if err != nil {
		t.Fatalf("no grant at the provider: %v", err)
	}
	if granted.Payload.Principal != alice {
		t.Fatalf("grant payload %+v", granted.Payload)
	}
	reqID := granted.Payload.RequestID
	if len(w.emu.Calls("views.open")) != 0 {
		t.Fatal("break-glass opened a form")
	}
	// Loud: the approval channel (mentioning the approvers, with a review button), the audit channel, a DM.
	msg := w.approvalMessage(func(m slackfake.Message) bool {
		s := msgText(m)
		return strings.Contains(s, "BREAK-GLASS") && strings.Contains(s, reqID) && strings.Contains(s, "<@"+carol+">") && strings.Contains(s, "jit_review")
	})
	w.auditLine(":rotating_light: `break-glass` <@" + alice + "> · db-bg · " + reqID)
	w.dm(alice, "Your access to `db-bg` is active until")

	// Unreviewed: announced again when the reminder is due (the store's reminder time is moved to now
	// instead of waiting review_every).
	for {
		r := w.getRequest(reqID)
		prev := r.Version
		r.ReviewDueAt = time.Now().Add(-time.Second).Truncate(time.Millisecond)
		err := w.st.Commit(w.ctx, store.Batch{Requests: []store.RequestPut{{Request: &r, PrevVersion: prev}}})
		if err == nil {
			break
		}
		if !errors.Is(err, store.ErrConflict) { // the notifier records its message on the request meanwhile
			t.Fatal(err)
		}
	}
	if _, err := w.emu.WaitForMessage(w.ctx, approvalsCh, func(m slackfake.Message) bool {
		return m.ThreadTS == "" && strings.Contains(m.Text, "still unreviewed") && strings.Contains(m.Text, "<@"+carol+">")
	}); err != nil {
		t.Fatalf("no re-announcement: %v", err)
	}

	// The requester cannot review; the approver can, with a note.
	w.click(alice, msg, "jit_review", reqID)
	w.ephemeral(alice, "cannot review your own")
	w.click(carol, msg, "jit_review", reqID)
	modal := w.modal(carol, "jit_review_modal")
	w.submit(carol, modal.ID, map[string]map[string]string{"reason": {"value": "checked the incident timeline"}})
	w.approvalMessage(func(m slackfake.Message) bool {
		s := msgText(m)
		return m.TS == msg.TS && strings.Contains(s, "Reviewed* by <@"+carol+">") && !strings.Contains(s, "jit_review\"")
	})
	w.auditLine("`break-glass-reviewed` <@" + carol + ">")

	rep, err := audit.Verify(w.ctx, w.st, "")
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	recs, err := w.st.ReadAudit(w.ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var story []string
	for _, rec := range recs {
		if rec.Event.RequestID == reqID {
			story = append(story, rec.Event.Type)
		}
	}
	want := []string{store.EventRequested, store.EventBreakGlass, store.EventGranted, store.EventReviewPending, store.EventReviewed}
	if strings.Join(story, " ") != strings.Join(want, " ") {
		t.Fatalf("audit story of %s = %v, want %v (%d entries verified)", reqID, story, want, rep.Entries)
	}
}

// testBreakGlassModal: the request form offers break-glass when a role allows it; choosing it grants at once
// for the on-call requester and tells them by DM.
func testBreakGlassModal(t *testing.T, mode slackfake.Mode, be backendtest.Backend) {
	now := time.Now()
	pd := pdfake.New(string(hookSecret))
	t.Cleanup(pd.Close)
	pd.AddUser(pdfake.User{ID: "PALICE", Name: "Alice"})
	pd.AddOnCall(pdfake.OnCall{UserID: "PALICE", ScheduleID: "PSCHED", EscalationPolicyID: "PEP", Level: 1, Start: now.Add(-time.Hour), End: now.Add(time.Hour)})
	w := newWorldWith(t, mode, be, worldConfig{pagerDuty: pd.URL})
	w.command(alice, "")
	modal := w.modal(alice, "jit_request_modal")
	w.submit(alice, modal.ID, map[string]map[string]string{
		"role": {"value": "db-bg"}, "duration": {"value": "15m"}, "reason": {"value": "INC-7 failover"}, "kind": {"value": "breakglass"},
	})
	if _, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "grant" && d.Payload.Role == "db-bg" }); err != nil {
		t.Fatalf("no grant at the provider: %v", err)
	}
	w.dm(alice, "Break-glass")
	w.approvalMessage(func(m slackfake.Message) bool { return strings.Contains(msgText(m), "BREAK-GLASS") })
}
