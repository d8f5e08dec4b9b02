package bot_test

import (
	"strings"
	"testing"
)

// testSocketRedelivery: Slack redelivers a Socket Mode envelope whose ack it did not get, with the same
// envelope_id. The bot answers the redelivery (or Slack keeps trying) but acts on each envelope once.
func testSocketRedelivery(t *testing.T, w *world) {
	resp := w.command(alice, "request db-read 1h INC-30 once")
	if resp.EnvelopeID == "" {
		t.Fatal("no envelope id: this test runs in Socket Mode")
	}
	id, msg := w.requestFromAnswer(alice, resp)
	click := w.click(dave, msg, "jit_approve", id) // refused: a redelivery must not answer twice either
	w.ephemeral(dave, "You are not an approver")
	home, err := w.emu.OpenHome(w.ctx, alice)
	if err != nil || home.StatusCode != 200 {
		t.Fatalf("open home: %v %+v", err, home)
	}
	w.app.Bot.Wait()
	publishes := w.publishesFor(alice)
	answers := len(w.emu.Ephemerals(generalCh, alice)) + len(w.emu.Ephemerals(approvalsCh, dave))

	for _, env := range []string{resp.EnvelopeID, click.EnvelopeID, home.EnvelopeID} {
		if err := w.emu.Redeliver(w.ctx, env); err != nil {
			t.Fatal(err)
		}
		if err := w.emu.WaitFor(w.ctx, func() bool {
			for _, e := range w.emu.Envelopes() {
				if e.ID == env {
					return e.RepeatAcks > 0
				}
			}
			return false
		}); err != nil {
			t.Fatalf("the redelivered envelope %s was never acknowledged: %v", env, err)
		}
	}
	w.app.Bot.Wait()
	if rs := w.requests(alice); len(rs) != 1 {
		t.Fatalf("%d requests after a redelivered command, want 1", len(rs))
	}
	if n := w.publishesFor(alice); n != publishes {
		t.Fatalf("home published %d times after a redelivered event, want %d", n, publishes)
	}
	if n := len(w.emu.Ephemerals(generalCh, alice)) + len(w.emu.Ephemerals(approvalsCh, dave)); n != answers {
		t.Fatalf("%d answers after redeliveries, want %d", n, answers)
	}
	for _, e := range w.emu.Envelopes() {
		if strings.Contains(string(e.Payload), "INC-30") && e.RepeatAcks != 1 {
			t.Fatalf("envelope %+v", e)
		}
	}
}
