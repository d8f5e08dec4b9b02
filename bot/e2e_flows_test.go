package bot_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/backendtest"
	"github.com/jitbot/jitbot/store"
)

// ---- helpers ----

// flatText collects every string in a JSON document (block texts, action ids, values), decoded, one a line:
// assertions then see "<@U0CAROL>" rather than its JSON-escaped form.
func flatText(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return strings.Join(out, "\n")
}

// msgText is everything a message shows: its text and its blocks.
func msgText(m slackfake.Message) string { return m.Text + "\n" + flatText(m.Blocks) }

// ackText is the text of a slash command's immediate answer (HTTP body or Socket Mode ack payload).
func ackText(t *testing.T, resp *slackfake.Response) string {
	t.Helper()
	var msg struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	if err := json.Unmarshal(resp.Body, &msg); err != nil {
		t.Fatalf("answer %q is not a JSON message: %v", resp.Body, err)
	}
	if msg.ResponseType != "" && msg.ResponseType != "ephemeral" {
		t.Fatalf("answer is %s, want ephemeral: %s", msg.ResponseType, resp.Body)
	}
	return msg.Text
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func mustNotContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Fatalf("%s contains %q:\n%s", what, sub, s)
		}
	}
}

// answer is what the person sees in answer to a command: the acknowledgement itself when it is final, or
// else (an empty ack, or one saying the work is under way, ending in "…") the follow-up posted to the
// command's response_url.
func (w *world) answer(resp *slackfake.Response) string {
	w.t.Helper()
	ack := ""
	if len(bytes.TrimSpace(resp.Body)) > 0 {
		ack = ackText(w.t, resp)
	}
	if ack != "" && !strings.HasSuffix(ack, "…") {
		return ack
	}
	var text string
	err := w.emu.WaitFor(w.ctx, func() bool {
		for _, p := range w.emu.ResponseURLPosts() {
			if p.URL != resp.ResponseURL || p.Error != "" {
				continue
			}
			var m struct {
				Text string `json:"text"`
			}
			if json.Unmarshal(p.Body, &m) == nil {
				text = m.Text
				return true
			}
		}
		return false
	})
	if err != nil {
		w.t.Fatalf("no answer through the response_url after the ack %q: %v", ack, err)
	}
	return text
}

// request runs `/jit <text>` as user and returns the stored request's id and its approval message.
func (w *world) request(user, text string) (string, slackfake.Message) {
	w.t.Helper()
	return w.requestFromAnswer(user, w.command(user, text))
}

// requestFromAnswer finds the request that a `/jit request` answered by resp created, and its approval
// message.
func (w *world) requestFromAnswer(user string, resp *slackfake.Response) (string, slackfake.Message) {
	w.t.Helper()
	answer := w.answer(resp)
	mustContain(w.t, "request answer", answer, "is waiting for")
	id := regexp.MustCompile(`Request (r-[a-z0-9]+)`).FindStringSubmatch(answer)
	if id == nil {
		w.t.Fatalf("no request id in %q", answer)
	}
	msg := w.approvalMessage(func(m slackfake.Message) bool { return strings.Contains(msgText(m), "Access request "+id[1]) })
	w.posted(id[1], msg)
	w.auditLine("`requested` <@" + user + "> · ")
	w.auditLine(" · " + id[1] + " · ")
	return id[1], msg
}

// posted waits until the store knows where the approval message of request id is (the notifier records it
// after posting), so that later snapshots are stable.
func (w *world) posted(id string, msg slackfake.Message) {
	w.t.Helper()
	if err := w.storeWait(func() bool { return w.getRequest(id).Meta["slack_ts"] == msg.TS }); err != nil {
		w.t.Fatalf("the approval message of %s was never recorded: %v", id, err)
	}
}

// storeWait waits for a condition on the store, which (unlike the emulator) cannot say when it changes: it
// re-checks on a short tick until the world's hang guard ends.
func (w *world) storeWait(cond func() bool) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-w.ctx.Done():
			return w.ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// threadReply waits for a reply under the approval message.
func (w *world) threadReply(msg slackfake.Message, contains string) {
	w.t.Helper()
	if _, err := w.emu.WaitForMessage(w.ctx, msg.Channel, func(m slackfake.Message) bool {
		return m.ThreadTS == msg.TS && strings.Contains(m.Text, contains)
	}); err != nil {
		w.t.Fatalf("no thread reply containing %q: %v", contains, err)
	}
}

// approve clicks Approve as approver and returns the grant the provider was told about.
func (w *world) approve(approver string, msg slackfake.Message, reqID string) string {
	w.t.Helper()
	w.click(approver, msg, "jit_approve", reqID)
	d, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "grant" && d.Payload.RequestID == reqID })
	if err != nil {
		w.t.Fatalf("no grant at the provider for %s: %v", reqID, err)
	}
	return d.Payload.GrantID
}

func (w *world) ephemeralIn(ch, user, contains string) slackfake.Ephemeral {
	w.t.Helper()
	e, err := w.emu.WaitForEphemeral(w.ctx, ch, user, func(e slackfake.Ephemeral) bool { return strings.Contains(e.Text, contains) })
	if err != nil {
		w.t.Fatalf("no ephemeral for %s in %s containing %q: %v (ephemerals: %+v)", user, ch, contains, err, w.emu.Ephemerals(ch, user))
	}
	return e
}

// modal waits for user's top modal with callbackID.
func (w *world) modal(user, callbackID string) slackfake.View {
	w.t.Helper()
	var v slackfake.View
	err := w.emu.WaitFor(w.ctx, func() bool {
		st := w.emu.ModalStack(user)
		if len(st) == 0 || st[len(st)-1].CallbackID != callbackID {
			return false
		}
		v = st[len(st)-1]
		return true
	})
	if err != nil {
		w.t.Fatalf("no %s modal for %s: %v", callbackID, user, err)
	}
	return v
}

func (w *world) submit(user, viewID string, values map[string]map[string]string) *slackfake.Response {
	w.t.Helper()
	resp, err := w.emu.SubmitView(w.ctx, user, viewID, values)
	if err != nil {
		w.t.Fatalf("submit view %s: %v", viewID, err)
	}
	if resp.TimedOut || resp.StatusCode != http.StatusOK || len(resp.Problems) > 0 {
		w.t.Fatalf("submit view %s: status %d timed out %v problems %v", viewID, resp.StatusCode, resp.TimedOut, resp.Problems)
	}
	return resp
}

func (w *world) requests(user string) []store.Request {
	w.t.Helper()
	rs, err := w.st.ListRequests(w.ctx, store.RequestQuery{Requester: user})
	if err != nil {
		w.t.Fatal(err)
	}
	return rs
}

func (w *world) getRequest(id string) store.Request {
	w.t.Helper()
	r, err := w.st.GetRequest(w.ctx, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func (w *world) getGrant(id string) store.Grant {
	w.t.Helper()
	g, err := w.st.GetGrant(w.ctx, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return g
}

func (w *world) auditCount() int {
	w.t.Helper()
	recs, err := w.st.ReadAudit(w.ctx, 0, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	return len(recs)
}

// snapshot is what a refused action must leave alone.
type snapshot struct {
	versions   map[string]int64
	audit      int
	deliveries int
	calls      map[string]int
}

var stateChangingCalls = []string{"chat.postMessage", "chat.update", "views.open", "views.publish"}

func (w *world) snapshot(users ...string) snapshot {
	w.t.Helper()
	// Let work already under way settle first (the notifier records the DMs it posted on the request).
	w.app.Bot.Wait()
	if w.app.Notifier != nil {
		w.app.Notifier.Wait()
	}
	s := snapshot{versions: map[string]int64{}, audit: w.auditCount(), deliveries: len(w.recv.Deliveries()), calls: map[string]int{}}
	for _, u := range users {
		for _, r := range w.requests(u) {
			s.versions[r.ID] = r.Version
		}
	}
	for _, m := range stateChangingCalls {
		s.calls[m] = len(w.emu.Calls(m))
	}
	return s
}

// unchanged fails unless the store, the provider and (except for the methods in allowed) Slack are as in s.
func (w *world) unchanged(s snapshot, allowed ...string) {
	w.t.Helper()
	for id, v := range s.versions {
		if got := w.getRequest(id).Version; got != v {
			w.t.Fatalf("request %s changed: version %d -> %d", id, v, got)
		}
	}
	if got := w.auditCount(); got != s.audit {
		w.t.Fatalf("audit log grew from %d to %d records", s.audit, got)
	}
	if got := len(w.recv.Deliveries()); got != s.deliveries {
		w.t.Fatalf("the provider was called: %d -> %d deliveries", s.deliveries, got)
	}
	for m, n := range s.calls {
		if slices.Contains(allowed, m) {
			continue
		}
		if got := len(w.emu.Calls(m)); got != n {
			w.t.Fatalf("%s was called: %d -> %d calls (%+v)", m, n, got, w.emu.Calls(m)[n:])
		}
	}
}

func (w *world) publishesFor(user string) int {
	n := 0
	for _, c := range w.emu.Calls("views.publish") {
		if c.Params.Get("user_id") == user && c.OK {
			n++
		}
	}
	return n
}

// home opens user's Home tab and waits for the view published in answer.
func (w *world) home(user string, opts ...slackfake.SendOption) (*slackfake.Response, slackfake.View) {
	w.t.Helper()
	before := w.publishesFor(user)
	resp, err := w.emu.OpenHome(w.ctx, user, opts...)
	if err != nil || resp.StatusCode != http.StatusOK {
		w.t.Fatalf("open home for %s: %v %+v", user, err, resp)
	}
	if err := w.emu.WaitFor(w.ctx, func() bool { return w.publishesFor(user) > before }); err != nil {
		w.t.Fatalf("no views.publish for %s: %v", user, err)
	}
	v, ok := w.emu.HomeView(user)
	if !ok {
		w.t.Fatalf("no home view for %s", user)
	}
	return resp, v
}

// ---- 1. request by modal ----

func testRequestByModal(t *testing.T, w *world) {
	// Someone who may request nothing gets an answer, not an empty form.
	mustContain(t, "answer to bob", w.answer(w.command(bob, "")), "There is no role you may request")
	if n := len(w.emu.Calls("views.open")); n != 0 {
		t.Fatalf("views.open called %d times for someone who may request nothing", n)
	}

	w.command(alice, "")
	if _, err := w.emu.WaitForCall(w.ctx, "views.open", nil); err != nil {
		t.Fatal(err)
	}
	modal := w.modal(alice, "jit_request_modal")
	if modal.PrivateMetadata != generalCh {
		t.Fatalf("private_metadata = %q, want the channel %s", modal.PrivateMetadata, generalCh)
	}
	blocks := flatText(modal.Blocks)
	mustContain(t, "request modal", blocks, "db-admin", "db-read")
	mustNotContain(t, "request modal", blocks, "db-root") // dave's role

	// dave sees only his own role.
	w.command(dave, "")
	mustNotContain(t, "dave's modal", flatText(w.modal(dave, "jit_request_modal").Blocks), "db-admin", "db-read")

	// Bad durations: a field error in the form, nothing stored, nothing posted.
	for _, c := range []struct{ duration, says string }{
		{"soon", "soon"},
		{"3h", "exceeds the maximum of 2h for db-read"},
	} {
		resp := w.submit(alice, modal.ID, map[string]map[string]string{
			"role": {"value": "db-read"}, "duration": {"value": c.duration}, "reason": {"value": "INC-7 replica check"}})
		if resp.ViewAction == nil || resp.ViewAction.ResponseAction != "errors" {
			t.Fatalf("duration %q: answer %s, want response_action errors", c.duration, resp.Body)
		}
		mustContain(t, "duration error", resp.ViewAction.Errors["duration"], c.says)
		if v, _ := w.emu.GetView(modal.ID); !v.Open {
			t.Fatalf("the form closed after a field error")
		}
	}
	if rs := w.requests(alice); len(rs) != 0 {
		t.Fatalf("bad input stored requests: %+v", rs)
	}
	if n := len(w.emu.Calls("chat.postMessage")); n != 0 {
		t.Fatalf("bad input posted %d messages", n)
	}

	resp := w.submit(alice, modal.ID, map[string]map[string]string{
		"role": {"value": "db-read"}, "duration": {"value": "30m"}, "reason": {"value": "INC-7 replica check"}})
	if resp.ViewAction != nil && resp.ViewAction.ResponseAction != "" {
		t.Fatalf("valid submission answered %s", resp.Body)
	}
	if v, _ := w.emu.GetView(modal.ID); v.Open {
		t.Fatalf("the form stayed open after a valid submission")
	}
	w.app.Bot.Wait() // the request is stored after the acknowledgement
	rs := w.requests(alice)
	if len(rs) != 1 || rs[0].Role != "db-read" || rs[0].Duration != 30*time.Minute || rs[0].Reason != "INC-7 replica check" ||
		rs[0].State != store.RequestPending || rs[0].Meta["source"] != "modal" {
		t.Fatalf("stored requests: %+v", rs)
	}
	id := rs[0].ID
	msg := w.approvalMessage(func(m slackfake.Message) bool { return strings.Contains(msgText(m), "Access request "+id) })
	mustContain(t, "approval message", msgText(msg), "INC-7 replica check", "30m", "jit_approve", "jit_deny", "0 of 1")
	w.ephemeralIn(generalCh, alice, "Request "+id+" for `db-read` (30m) is waiting for 1 approval(s) in <#"+approvalsCh+">")
	w.auditLine("`requested` <@" + alice + "> · db-read · " + id)
}

// ---- 2. deny with a reason ----

func testDenyWithReason(t *testing.T, w *world) {
	id, msg := w.request(alice, "request db-read 1h INC-9 look at the replica")

	// A bystander and the requester are refused privately; no form opens.
	w.click(dave, msg, "jit_deny", id)
	w.ephemeral(dave, "You are not an approver for db-read")
	w.click(alice, msg, "jit_deny", id)
	w.ephemeral(alice, "cancel it instead")
	if n := len(w.emu.Calls("views.open")); n != 0 {
		t.Fatalf("a refused Deny opened %d forms", n)
	}
	if len(w.emu.ModalStack(dave)) != 0 || len(w.emu.ModalStack(alice)) != 0 {
		t.Fatalf("a refused Deny opened a modal")
	}

	w.click(carol, msg, "jit_deny", id)
	modal := w.modal(carol, "jit_deny_modal")
	if modal.PrivateMetadata != id {
		t.Fatalf("deny modal private_metadata = %q", modal.PrivateMetadata)
	}
	if r := w.getRequest(id); r.State != store.RequestPending {
		t.Fatalf("opening the form changed the request: %+v", r)
	}
	resp := w.submit(carol, modal.ID, map[string]map[string]string{"reason": {"value": "not during the <!channel> freeze"}})
	if resp.ViewAction != nil && resp.ViewAction.ResponseAction != "" {
		t.Fatalf("deny submission answered %s", resp.Body)
	}
	if r := w.getRequest(id); r.State != store.RequestDenied || r.Denial == nil || r.Denial.By != carol {
		t.Fatalf("request after deny: %+v", r)
	}
	reason := "not during the &lt;!channel&gt; freeze" // escaped: nobody smuggles a mention through a reason
	w.approvalMessage(func(m slackfake.Message) bool {
		s := msgText(m)
		return m.TS == msg.TS && strings.Contains(s, "Denied by <@"+carol+">: "+reason) && !strings.Contains(s, "jit_approve") && !strings.Contains(s, "jit_deny")
	})
	w.dm(alice, "Your request "+id+" for `db-read` was denied by <@"+carol+">: "+reason)
	w.auditLine("`denied` <@" + carol + "> · db-read · " + id)
	if _, err := w.emu.WaitForMessage(w.ctx, approvalsCh, func(m slackfake.Message) bool {
		return m.ThreadTS == msg.TS && strings.Contains(m.Text, "Denied by <@"+carol+">")
	}); err != nil {
		t.Fatalf("no thread reply for the denial: %v", err)
	}
	if ds := w.recv.Deliveries(); len(ds) != 0 {
		t.Fatalf("the provider was called for a denied request: %+v", ds)
	}
}

// ---- 3. repeated and late clicks ----

func testRepeatedAndLateClicks(t *testing.T, w *world) {
	id, msg := w.request(alice, "request db-admin 1h INC-11 schema fix")
	w.click(bob, msg, "jit_approve", id)
	w.ephemeral(bob, "recorded (1 of 2)")
	w.approvalMessage(func(m slackfake.Message) bool { return m.TS == msg.TS && strings.Contains(msgText(m), "1 of 2") })
	w.auditLine("`approved` <@" + bob + ">")
	w.threadReply(msg, "Approved by <@"+bob+"> (1/2)")

	// The same approver again: refused, nothing changes.
	snap := w.snapshot(alice)
	w.click(bob, msg, "jit_approve", id)
	w.ephemeral(bob, "You already approved this request (1 of 2 approvals)")
	w.unchanged(snap)

	// A click on a request somebody else already decided: bob's Home tab still shows the buttons.
	id2, msg2 := w.request(alice, "request db-read 1h INC-12 read only")
	_, home := w.home(bob)
	mustContain(t, "bob's home", flatText(home.Blocks), "Waiting for your approval", id2)
	w.approve(carol, msg2, id2)
	w.approvalMessage(func(m slackfake.Message) bool { return m.TS == msg2.TS && strings.Contains(msgText(m), "Active until") })
	w.dm(alice, "Your access to `db-read` is active until")
	w.auditLine("`granted` system:grants · db-read · " + id2)
	w.threadReply(msg2, "Access is active")

	snap = w.snapshot(alice)
	resp, err := w.emu.ClickViewButton(w.ctx, bob, home.ID, "jit_approve", id2, "")
	if err != nil || resp.StatusCode != http.StatusOK || resp.TimedOut {
		t.Fatalf("late click: %v %+v", err, resp)
	}
	w.dm(bob, "Request "+id2+" is already approved (approved by <@"+carol+">)")
	// Clicked in the Home tab: the tab is refreshed without the decided request.
	if err := w.emu.WaitFor(w.ctx, func() bool {
		v, _ := w.emu.HomeView(bob)
		return !strings.Contains(flatText(v.Blocks), id2)
	}); err != nil {
		t.Fatalf("bob's home still shows %s: %v", id2, err)
	}
	w.unchanged(snap, "chat.postMessage", "views.publish") // the DM and the refreshed tab
	if n := len(w.recv.Deliveries()); n != 1 {
		t.Fatalf("%d provider deliveries, want the one grant", n)
	}
}

// ---- 4. done ----

func testDone(t *testing.T, w *world) {
	id, msg := w.request(alice, "request db-read 1h INC-13 data fix")
	g1 := w.approve(carol, msg, id)
	w.dm(alice, "(grant "+g1+")")
	w.threadReply(msg, "Approved by <@"+carol+"> (1/1)")
	w.threadReply(msg, "Access is active (grant "+g1+")")
	w.auditLine("`granted` system:grants · db-read · " + id + " · " + g1)
	w.approvalMessage(func(m slackfake.Message) bool { return m.TS == msg.TS && strings.Contains(msgText(m), "Active until") })

	// Somebody else cannot end it.
	snap := w.snapshot(alice)
	mustContain(t, "ack", ackText(t, w.command(dave, "done "+g1)), "Ending grant "+g1)
	w.ephemeralIn(generalCh, dave, "Only <@"+alice+"> can release grant "+g1)
	w.unchanged(snap)
	if g := w.getGrant(g1); g.State != store.GrantActive {
		t.Fatalf("grant after a refused done: %+v", g)
	}

	mustContain(t, "ack", ackText(t, w.command(alice, "done "+g1)), "Ending grant "+g1)
	if _, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "revoke" && d.Payload.GrantID == g1 }); err != nil {
		t.Fatalf("no revoke at the provider: %v", err)
	}
	w.ephemeralIn(generalCh, alice, "Grant "+g1+" has ended and your access is removed.")
	w.approvalMessage(func(m slackfake.Message) bool {
		return m.TS == msg.TS && strings.Contains(msgText(m), "Access ended (released by <@"+alice+">)")
	})
	w.dm(alice, "Your access to `db-read` has ended (grant "+g1+")")
	w.auditLine("`released` <@" + alice + "> · db-read · " + id + " · " + g1)
	w.auditLine("`revoked`")
	if g := w.getGrant(g1); g.State != store.GrantRevoked || g.EndReason != "released" {
		t.Fatalf("grant after done: %+v", g)
	}

	// The "I'm done" button in the DM that announced the grant.
	id2, msg2 := w.request(alice, "request db-read 1h INC-14 second look")
	g2 := w.approve(carol, msg2, id2)
	dm := w.dm(alice, "(grant "+g2+")") // the DM announcing g2 (nothing else names it yet)
	w.click(alice, dm, "jit_done", g2)
	if _, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "revoke" && d.Payload.GrantID == g2 }); err != nil {
		t.Fatalf("no revoke for the button: %v", err)
	}
	w.ephemeralIn(dm.Channel, alice, "Grant "+g2+" has ended")
	w.approvalMessage(func(m slackfake.Message) bool {
		return m.TS == msg2.TS && strings.Contains(msgText(m), "Access ended (released by <@"+alice+">)")
	})
	w.dm(alice, "Your access to `db-read` has ended (grant "+g2+")")
	// Exactly once each: a release and the sweep it wakes must not both revoke.
	if w.recv.Count("revoke", g1) != 1 || w.recv.Count("revoke", g2) != 1 {
		for _, d := range w.recv.Deliveries() {
			t.Logf("%s %s %s %d", d.Payload.Type, d.Payload.GrantID, d.At.Format("15:04:05.000"), d.Status)
		}
		t.Fatalf("revokes: %d and %d, want one each", w.recv.Count("revoke", g1), w.recv.Count("revoke", g2))
	}
}

// ---- 5. extend ----

func expiryOf(t *testing.T, d webhookfake.Delivery) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, d.Payload.ExpiresAt)
	if err != nil {
		t.Fatalf("expires_at %q: %v", d.Payload.ExpiresAt, err)
	}
	return at
}

func testExtend(t *testing.T, w *world) {
	id, msg := w.request(alice, "request db-read 1h INC-15 long migration")
	gid := w.approve(carol, msg, id)
	dm := w.dm(alice, "(grant "+gid+")")
	old := w.getGrant(gid).ExpiresAt

	mustContain(t, "ack", ackText(t, w.command(alice, "extend "+gid+" 30m")), "Extending grant "+gid+" by 30m…")
	want := old.Add(30 * time.Minute)
	d, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool {
		return d.Payload.Type == "grant" && d.Payload.GrantID == gid && expiryOf(t, d).Unix() == want.Unix()
	})
	if err != nil {
		t.Fatalf("the provider was not told the new expiry %v: %v (deliveries %+v)", want, err, w.recv.Deliveries())
	}
	_ = d
	w.ephemeralIn(generalCh, alice, fmt.Sprintf("Grant %s now lasts until <!date^%d^", gid, want.Unix()))
	w.approvalMessage(func(m slackfake.Message) bool {
		return m.TS == msg.TS && strings.Contains(msgText(m), fmt.Sprintf("Active until <!date^%d^", want.Unix()))
	})
	w.auditLine("`extended` <@" + alice + "> · db-read · " + id + " · " + gid)
	w.threadReply(msg, "Extended by 30m by <@"+alice+">")
	w.auditLine("`extended` <@" + alice + "> · db-read · " + id + " · " + gid + " · by: 30m · ")
	if g := w.getGrant(gid); !g.ExpiresAt.Equal(want) {
		t.Fatalf("stored expiry %v, want %v", g.ExpiresAt, want)
	}
	// The DM that announced the grant now shows the new expiry, in place, with its buttons.
	w.messageUpdated(dm, fmt.Sprintf("is active until <!date^%d^{date_short_pretty} at {time}|", want.Unix()), "jit_extend", "jit_done")

	// Beyond the role's maximum (2h from activation): refused, with the maximum named.
	snap := w.snapshot(alice)
	w.command(alice, "extend "+gid+" 1h")
	w.ephemeralIn(generalCh, alice, "would exceed the maximum of 2h")
	w.ephemeralIn(generalCh, alice, "you can extend by at most 30m")
	// Somebody else: refused.
	w.command(dave, "extend "+gid+" 10m")
	w.ephemeralIn(generalCh, dave, "Only <@"+alice+"> can extend grant "+gid)
	w.unchanged(snap)
	if g := w.getGrant(gid); !g.ExpiresAt.Equal(want) {
		t.Fatalf("a refused extension changed the expiry to %v", g.ExpiresAt)
	}

	// The Extend button in the DM opens a form.
	w.click(alice, dm, "jit_extend", gid)
	modal := w.modal(alice, "jit_extend_modal")
	if modal.PrivateMetadata != gid {
		t.Fatalf("extend modal private_metadata = %q", modal.PrivateMetadata)
	}
	resp := w.submit(alice, modal.ID, map[string]map[string]string{"reason": {"value": "a while"}})
	if resp.ViewAction == nil || resp.ViewAction.ResponseAction != "errors" || resp.ViewAction.Errors["reason"] == "" {
		t.Fatalf("bad duration in the extend form answered %s", resp.Body)
	}
	// A refused extension shows under the field, and the form stays open for another try.
	resp = w.submit(alice, modal.ID, map[string]map[string]string{"reason": {"value": "1h"}})
	if resp.ViewAction == nil || resp.ViewAction.ResponseAction != "errors" {
		t.Fatalf("an extension beyond the maximum answered %s, want response_action errors", resp.Body)
	}
	mustContain(t, "extend form error", resp.ViewAction.Errors["reason"], "would exceed the maximum of 2h", "at most 30m")
	if v, _ := w.emu.GetView(modal.ID); !v.Open {
		t.Fatal("the extend form closed after a refusal")
	}
	w.submit(alice, modal.ID, map[string]map[string]string{"reason": {"value": "15m"}})
	want2 := want.Add(15 * time.Minute)
	if _, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool {
		return d.Payload.Type == "grant" && d.Payload.GrantID == gid && expiryOf(t, d).Unix() == want2.Unix()
	}); err != nil {
		t.Fatalf("the provider was not told the second expiry: %v", err)
	}
	w.dm(alice, fmt.Sprintf("Grant %s now lasts until <!date^%d^", gid, want2.Unix()))
	w.approvalMessage(func(m slackfake.Message) bool {
		return m.TS == msg.TS && strings.Contains(msgText(m), fmt.Sprintf("Active until <!date^%d^", want2.Unix()))
	})
	w.messageUpdated(dm, fmt.Sprintf("is active until <!date^%d^", want2.Unix()), "jit_extend")

	// Once the grant ends, the DM says so and its buttons are gone.
	w.command(alice, "done "+gid)
	m := w.messageUpdated(dm, "Your access to `db-read` ended (released by <@"+alice+">)")
	mustNotContain(t, "DM after done", msgText(m), "jit_extend", "jit_done", "is active until")
}

// messageUpdated waits until the message m (found by channel and ts) shows every one of subs, and returns it.
func (w *world) messageUpdated(m slackfake.Message, subs ...string) slackfake.Message {
	w.t.Helper()
	var cur slackfake.Message
	err := w.emu.WaitFor(w.ctx, func() bool {
		var ok bool
		if cur, ok = w.emu.Message(m.Channel, m.TS); !ok {
			return false
		}
		for _, s := range subs {
			if !strings.Contains(msgText(cur), s) {
				return false
			}
		}
		return true
	})
	if err != nil {
		w.t.Fatalf("message %s was not updated to show %q: %v (now %q)", m.TS, subs, err, msgText(cur))
	}
	return cur
}

// ---- 6. commands and bad input ----

func testCommands(t *testing.T, w *world) {
	answer := func(user, text string, want ...string) string {
		t.Helper()
		resp := w.command(user, text)
		got := w.answer(resp)
		mustContain(t, "answer to /jit "+text, got, want...)
		// Slack shows the answer to the user only.
		if _, err := w.emu.WaitForEphemeral(w.ctx, generalCh, user, func(e slackfake.Ephemeral) bool {
			return (e.Source == "slash_command_response" || e.Source == "response_url") && e.Text == got
		}); err != nil {
			t.Fatalf("answer to /jit %s not shown: %v", text, err)
		}
		return got
	}
	usage := "`/jit request <role> <duration> <reason…>`"
	answer(alice, "help", "*Usage*", usage, "`/jit done <grant>`", "`/jit extend <grant> <duration>`", "`/jit cancel <request>`")
	roles := answer(alice, "roles", "`db-admin`", "`db-read`", "up to 2h", "2 approval(s)")
	mustNotContain(t, "alice's roles", roles, "db-root")
	answer(bob, "roles", "There is no role you may request.")
	answer(alice, "frobnicate now", "I don't know `frobnicate`", "*Usage*")
	answer(alice, "request db-read soon fix", `"soon" is not a duration`, "Usage: "+usage)
	answer(alice, "request db-read 1h", "Usage: "+usage)
	answer(alice, "request db-read 3h fix", "3h exceeds the maximum of 2h for db-read", "Usage: "+usage)
	answer(alice, "request db-nope 1h fix", `There is no role "db-nope". Use `+"`/jit roles`"+` to see the roles you may request.`, "Usage: "+usage)
	// A bare number: one clear message, not the same phrase twice.
	bare := answer(alice, "request db-read 5 fix", `"5" is not a duration`, "Usage: "+usage)
	if n := strings.Count(bare, "is not a duration"); n != 1 {
		t.Fatalf("the answer to a bare number says 'is not a duration' %d times: %s", n, bare)
	}
	// Too few words: the usage with a complete example, parentheses closed.
	mustContain(t, "usage", answer(alice, "breakglass db-read", "Usage: `/jit breakglass <role> <duration> <reason…>`"),
		"(for example `/jit breakglass prod-db-admin 1h INC-4521 failover`)")
	mustContain(t, "roles", roles, "• `db-admin` Admin on the test database (default 2s, up to 1h, 2 approval(s))", "• `db-read` (default 1h, up to 2h, 1 approval(s))")
	answer(alice, "request db-root 1h fix", "You may not request db-root")
	answer(alice, "cancel", "Usage: `/jit cancel <request>`")
	answer(alice, "extend g-1 forever", `"forever" is not a duration`)
	answer(alice, "done", "Usage: `/jit done <grant>`")
	answer(alice, "roles please", "Usage: `/jit roles`")
	answer(alice, "list", "*Your grants*\nnone active", "*Your recent requests*\nnone")
	if rs := w.requests(alice); len(rs) != 0 {
		t.Fatalf("bad input stored requests: %+v", rs)
	}
	if n := len(w.emu.Calls("chat.postMessage")) + len(w.emu.Calls("chat.update")); n != 0 {
		t.Fatalf("bad input made %d Slack posts", n)
	}
	if ds := w.recv.Deliveries(); len(ds) != 0 {
		t.Fatalf("bad input called the provider: %+v", ds)
	}

	id, msg := w.request(alice, "request db-read 45m INC-16 quick look")
	answer(alice, "list", id+" `db-read` 45m, pending: INC-16 quick look")
	w.auditLine("`requested` <@" + alice + "> · db-read · " + id + " · approvals_required: 1 · duration: 45m · ")

	snap := w.snapshot(alice)
	answer(dave, "cancel "+id, "Only the requester can cancel request "+id)
	answer(alice, "cancel r-doesnotexist", "There is no request r-doesnotexist")
	w.unchanged(snap)

	answer(alice, "cancel "+id, "Request "+id+" is cancelled.")
	if r := w.getRequest(id); r.State != store.RequestCancelled {
		t.Fatalf("request after cancel: %+v", r)
	}
	w.approvalMessage(func(m slackfake.Message) bool {
		s := msgText(m)
		return m.TS == msg.TS && strings.Contains(s, "Cancelled by the requester") && !strings.Contains(s, "jit_approve")
	})
	w.auditLine("`cancelled` <@" + alice + "> · db-read · " + id)
	w.threadReply(msg, "Cancelled by the requester")
	answer(alice, "cancel "+id, "Request "+id+" is already cancelled")
}

// ---- 7. App Home ----

func testAppHome(t *testing.T, w *world) {
	idRead, msgRead := w.request(alice, "request db-read 1h INC-17 read")
	gid := w.approve(carol, msgRead, idRead)
	w.dm(alice, "(grant "+gid+")")
	idAdmin, _ := w.request(alice, "request db-admin 1h INC-18 admin")

	resp, home := w.home(alice)
	s := flatText(home.Blocks)
	mustContain(t, "alice's home", s, "Your access", gid, "jit_done", "jit_extend", // active grant with its buttons
		"Your pending requests", idAdmin, "0 of 2 approvals", // pending
		"Roles you may request", "`db-admin` (up to 1h)", "`db-read` (up to 2h)")
	mustNotContain(t, "alice's home", s, "db-root", "Waiting for your approval", "jit_approve")
	if home.Type != "home" {
		t.Fatalf("published a %s view", home.Type)
	}

	// Approvers see what waits for them, with the buttons.
	for _, approver := range []string{carol, bob} {
		_, v := w.home(approver)
		s := flatText(v.Blocks)
		mustContain(t, approver+"'s home", s, "Waiting for your approval", idAdmin, "jit_approve", "jit_deny")
		mustNotContain(t, approver+"'s home", s, idRead) // decided
	}
	_, v := w.home(dave)
	s = flatText(v.Blocks)
	mustContain(t, "dave's home", s, "`db-root`")
	mustNotContain(t, "dave's home", s, "Waiting for your approval", idAdmin)

	// A redelivered event (same event_id) publishes once.
	w.app.Bot.Wait()
	if n := w.publishesFor(alice); n != 1 {
		t.Fatalf("%d publishes for one app_home_opened", n)
	}
	if w.mode == slackfake.ModeHTTP {
		retry, err := w.emu.Retry(w.ctx, resp.Request, 1, "http_timeout")
		if err != nil || retry.StatusCode != http.StatusOK {
			t.Fatalf("retried event: %v %+v", err, retry)
		}
		replay, err := w.emu.Replay(w.ctx, resp.Request)
		if err != nil || replay.StatusCode != http.StatusUnauthorized {
			t.Fatalf("replayed event: %v %+v", err, replay)
		}
		// The retry headers are not signed: a replay that adds one is let through once per retry number
		// (a retry within the same second carries the very same signature), however the number is written,
		// and event_id deduplication makes it harmless.
		for i, n := range []string{"3", "03", "+3", "4"} {
			h := resp.Request.Header.Clone()
			h.Set("X-Slack-Retry-Num", n)
			h.Set("X-Slack-Retry-Reason", "http_timeout")
			replay, err := w.emu.Replay(w.ctx, &slackfake.SentRequest{URL: resp.Request.URL, Header: h, Body: resp.Request.Body})
			want := http.StatusUnauthorized
			if i == 0 || n == "4" {
				want = http.StatusOK
			}
			if err != nil || replay.StatusCode != want {
				t.Fatalf("replayed event as retry %q: %v %+v, want status %d", n, err, replay, want)
			}
		}
		w.app.Bot.Wait()
		if n := w.publishesFor(alice); n != 1 {
			t.Fatalf("%d publishes after a redelivered event, want 1", n)
		}
	}

	// "I'm done" from the Home tab ends the grant and refreshes the tab.
	click, err := w.emu.ClickViewButton(w.ctx, alice, home.ID, "jit_done", gid, "")
	if err != nil || click.StatusCode != http.StatusOK {
		t.Fatalf("done from home: %v %+v", err, click)
	}
	if _, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "revoke" && d.Payload.GrantID == gid }); err != nil {
		t.Fatalf("no revoke: %v", err)
	}
	if err := w.emu.WaitFor(w.ctx, func() bool {
		v, _ := w.emu.HomeView(alice)
		return strings.Contains(flatText(v.Blocks), "No active grants.")
	}); err != nil {
		t.Fatalf("home not refreshed after done: %v", err)
	}
	w.dm(alice, "Grant "+gid+" has ended")
}

// ---- 8. security (HTTP mode) ----

func testSecurity(t *testing.T, w *world) {
	// auth.test is the readiness check's own periodic call, not an answer to a request.
	answers := func() []slackfake.Call {
		var out []slackfake.Call
		for _, c := range w.emu.Calls("") {
			if c.Method != "auth.test" {
				out = append(out, c)
			}
		}
		return out
	}
	before := len(answers())
	for _, c := range []struct {
		name string
		opt  slackfake.SendOption
	}{
		{"forged signature", slackfake.WithWrongSecret()},
		{"stale timestamp", slackfake.WithStaleTimestamp()},
		{"missing headers", slackfake.WithoutSignature()},
	} {
		resp, err := w.emu.SlashCommand(w.ctx, alice, generalCh, "/jit", "request db-read 1h INC-19 forged", c.opt)
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s command: %v %+v", c.name, err, resp)
		}
		resp, err = w.emu.OpenHome(w.ctx, alice, c.opt)
		if err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s event: %v %+v", c.name, err, resp)
		}
		resp, err = w.emu.URLVerification(w.ctx, c.opt)
		if err == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s url_verification: %v %+v", c.name, err, resp)
		}
	}
	big := strings.Repeat("a", 300<<10)
	resp, err := w.emu.SlashCommand(w.ctx, alice, generalCh, "/jit", "request db-read 1h "+big)
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized command: %v %+v", err, resp)
	}
	w.app.Bot.Wait()
	if rs := w.requests(alice); len(rs) != 0 {
		t.Fatalf("rejected requests stored: %+v", rs)
	}
	if calls := answers(); len(calls) != before {
		t.Fatalf("rejected requests made Slack calls: %+v", calls[before:])
	}
	if es := w.emu.Ephemerals(generalCh, alice); len(es) != 0 {
		t.Fatalf("rejected requests were answered: %+v", es)
	}
	if _, err := w.emu.URLVerification(w.ctx); err != nil {
		t.Fatalf("url_verification: %v", err)
	}

	// A valid request replayed byte for byte is refused and stores nothing more.
	first := w.command(alice, "request db-read 1h INC-20 once")
	replay, err := w.emu.Replay(w.ctx, first.Request)
	if err != nil || replay.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed command: %v %+v", err, replay)
	}
	// The same request with its signature written differently still verifies (slack-go decodes the hex
	// case-insensitively and reads only the first X-Slack-Signature): every such form is the same request,
	// refused as a replay.
	for _, re := range reencodedSignatures(first.Request) {
		replay, err := w.emu.Replay(w.ctx, re.req)
		if err != nil || replay.StatusCode != http.StatusUnauthorized {
			t.Fatalf("replay with %s: %v %+v", re.name, err, replay)
		}
		if !strings.Contains(string(replay.Body), "replayed") {
			t.Fatalf("replay with %s was refused for another reason, so it does not test replay detection: %s", re.name, replay.Body)
		}
	}
	w.app.Bot.Wait()
	rs := w.requests(alice)
	if len(rs) != 1 {
		t.Fatalf("%d requests after a replay, want 1", len(rs))
	}
	id := rs[0].ID
	msg := w.approvalMessage(func(m slackfake.Message) bool { return strings.Contains(msgText(m), id) })
	w.posted(id, msg)
	w.auditLine("`requested` <@" + alice + "> · db-read · " + id)

	// A forged click and a replayed click change nothing.
	snap := w.snapshot(alice)
	forged, err := w.emu.ClickButton(w.ctx, carol, msg.Channel, msg.TS, "jit_approve", id, "", slackfake.WithWrongSecret())
	if err != nil || forged.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged click: %v %+v", err, forged)
	}
	w.app.Bot.Wait()
	w.unchanged(snap)
	click := w.click(dave, msg, "jit_approve", id) // refused by the rules, then replayed
	w.ephemeral(dave, "You are not an approver")
	replay, err = w.emu.Replay(w.ctx, click.Request)
	if err != nil || replay.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed click: %v %+v", err, replay)
	}
	w.app.Bot.Wait()
	w.unchanged(snap)
	if r := w.getRequest(id); r.State != store.RequestPending || len(r.Approvals) != 0 {
		t.Fatalf("request changed: %+v", r)
	}
}

type reencoded struct {
	name string
	req  *slackfake.SentRequest
}

// reencodedSignatures returns req with its X-Slack-Signature written in every other form that Slack's
// verifier accepts: upper-case and mixed-case hex, and a second, different signature header after the
// valid one (only the first is read).
func reencodedSignatures(req *slackfake.SentRequest) []reencoded {
	sig := req.Header.Get("X-Slack-Signature")
	hexPart := strings.TrimPrefix(sig, "v0=")
	mixed := []byte(hexPart)
	for i := range mixed {
		if i%2 == 0 {
			mixed[i] = strings.ToUpper(string(mixed[i]))[0]
		}
	}
	with := func(values ...string) *slackfake.SentRequest {
		h := req.Header.Clone()
		h["X-Slack-Signature"] = values
		return &slackfake.SentRequest{URL: req.URL, Header: h, Body: req.Body}
	}
	return []reencoded{
		{"upper-case hex", with("v0=" + strings.ToUpper(hexPart))},
		{"mixed-case hex", with("v0=" + string(mixed))},
		{"a second signature header", with(sig, "v0="+strings.Repeat("0", 64))},
		{"a second signature header, upper-case first", with("v0="+strings.ToUpper(hexPart), sig)},
	}
}

// ---- 9. resilience ----

func testRateLimitedUpdate(t *testing.T, w *world) {
	id, msg := w.request(alice, "request db-read 1h INC-21 throttled")
	w.emu.RateLimit("chat.update", 2, time.Second)
	w.approve(carol, msg, id)
	w.approvalMessage(func(m slackfake.Message) bool {
		s := msgText(m)
		return m.TS == msg.TS && strings.Contains(s, "Active until") && !strings.Contains(s, "jit_approve")
	})
	// The emulator shows the new message before it records the call: wait for the record.
	var calls []slackfake.Call
	if err := w.emu.WaitFor(w.ctx, func() bool {
		calls = w.emu.Calls("chat.update")
		return len(calls) >= 3 && calls[len(calls)-1].OK
	}); err != nil {
		t.Fatalf("chat.update calls: %+v", calls)
	}
	first := slices.IndexFunc(calls, func(c slackfake.Call) bool { return c.HTTPStatus == http.StatusTooManyRequests })
	if first < 0 || len(calls) != first+3 || calls[first+1].HTTPStatus != http.StatusTooManyRequests || !calls[first+2].OK {
		t.Fatalf("chat.update calls: %+v", calls)
	}
	// Retry-After is honoured: no retry before the second it asked for.
	for i := first + 1; i <= first+2; i++ {
		if gap := calls[i].At.Sub(calls[i-1].At); gap < 900*time.Millisecond {
			t.Fatalf("chat.update retried after %v despite Retry-After: 1", gap)
		}
	}
	if _, err := w.st.GetRequest(w.ctx, id); err != nil {
		t.Fatal(err)
	}
	if r := w.getRequest(id); r.State != store.RequestApproved {
		t.Fatalf("request: %+v", r)
	}
}

func testFailingPostMessage(t *testing.T, w *world) {
	// chat.postMessage fails for a while: the request is stored and acknowledged right away, and every
	// message arrives once Slack takes them again.
	w.emu.RateLimit("chat.postMessage", 4, time.Second)
	resp := w.command(alice, "request db-read 1h INC-22 during an outage")
	mustContain(t, "answer", w.answer(resp), "is waiting for 1 approval(s)")
	rs := w.requests(alice)
	if len(rs) != 1 || rs[0].State != store.RequestPending {
		t.Fatalf("stored: %+v", rs)
	}
	id := rs[0].ID
	msg := w.approvalMessage(func(m slackfake.Message) bool { return strings.Contains(msgText(m), id) })
	w.auditLine("`requested` <@" + alice + "> · db-read · " + id)

	w.emu.RateLimit("chat.postMessage", 4, time.Second)
	gid := w.approve(carol, msg, id)
	if r := w.getRequest(id); r.State != store.RequestApproved || r.GrantID != gid {
		t.Fatalf("request: %+v", r)
	}
	w.dm(alice, "Your access to `db-read` is active until")
	w.auditLine("`granted` system:grants · db-read · " + id)
	w.approvalMessage(func(m slackfake.Message) bool { return m.TS == msg.TS && strings.Contains(msgText(m), "Active until") })
	limited := 0
	for _, c := range w.emu.Calls("chat.postMessage") {
		if c.HTTPStatus == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 8 {
		t.Fatalf("%d rate-limited posts, want 8", limited)
	}
}

// testApprovalChannelDown: the bot cannot post in the approval channel at all. Requests are still stored,
// and an approver can decide from the Home tab.
func testApprovalChannelDown(t *testing.T, w *world) {
	resp := w.command(alice, "request db-read 1h INC-23 channel down")
	mustContain(t, "answer", w.answer(resp), "is waiting for 1 approval(s)")
	rs := w.requests(alice)
	if len(rs) != 1 {
		t.Fatalf("stored: %+v", rs)
	}
	id := rs[0].ID
	if _, err := w.emu.WaitForCall(w.ctx, "chat.postMessage", func(c slackfake.Call) bool {
		return c.Params.Get("channel") == approvalsCh && c.Error == "not_in_channel"
	}); err != nil {
		t.Fatal(err)
	}
	_, home := w.home(carol)
	mustContain(t, "carol's home", flatText(home.Blocks), id, "jit_approve")
	click, err := w.emu.ClickViewButton(w.ctx, carol, home.ID, "jit_approve", id, "")
	if err != nil || click.StatusCode != http.StatusOK {
		t.Fatalf("approve from home: %v %+v", err, click)
	}
	d, err := w.recv.WaitFor(w.ctx, func(d webhookfake.Delivery) bool { return d.Payload.Type == "grant" && d.Payload.RequestID == id })
	if err != nil {
		t.Fatalf("no grant: %v", err)
	}
	w.dm(alice, "Your access to `db-read` is active until")
	w.auditLine("`granted` system:grants · db-read · " + id + " · " + d.Payload.GrantID)
	if len(w.emu.Messages(approvalsCh)) != 0 {
		t.Fatalf("messages in a channel the bot is not in")
	}
}

// ---- 10. free plan ----

func testFreePlan(t *testing.T, mode slackfake.Mode, be backendtest.Backend) {
	emu := newEmulator(t, worldConfig{freePlan: true})
	pol := testPolicy(t, "http://127.0.0.1:1", worldConfig{})
	st := be.Prepare(t)()
	t.Cleanup(func() { _ = st.Close() })
	_, err := newApp(t, mode, emu, st, pol)
	if err == nil {
		t.Fatal("app.New accepted a policy naming a Slack user group on a free-plan workspace")
	}
	t.Logf("app.New: %v", err)
	mustContain(t, "error", err.Error(), "S0DBA", "user groups", "paid plan", "groups:", "db-admin")

	// With the group listed statically the bot starts and the group's members approve.
	w := newWorldWith(t, mode, be, worldConfig{freePlan: true, staticDBA: true})
	id, msg := w.request(alice, "request db-read 1h INC-24 static group")
	w.approve(bob, msg, id)
	w.dm(alice, "Your access to `db-read` is active until")
	for _, c := range w.emu.Calls("usergroups.users.list") {
		if c.OK {
			t.Fatalf("usergroups.users.list answered on a free plan: %+v", c)
		}
	}
}
