package playground

import (
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	alice = "U01ALICE" // requests prod-db-admin (SRE)
	carol = "U03CAROL" // DBA approver
	dave  = "U04DAVE"  // DBA approver
)

// TestServesPageWithExamplePolicy: the playground starts with the example policy and serves the page, its
// assets, jitbot's health endpoint and a state naming the policy's users and channels.
func TestServesPageWithExamplePolicy(t *testing.T) {
	pg := startPlayground(t)
	for path, want := range map[string]string{
		"/":                 "<title>jitbot playground</title>",
		"/static/app.js":    "/api/state",
		"/static/style.css": ".bk-header",
		"/healthz":          `"ok"`,
		"/metrics":          "jitbot_",
	} {
		resp, err := http.Get(pg.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, want %q in:\n%.300s", path, resp.StatusCode, want, body)
		}
	}
	c := &client{t: t, base: pg.URL()}
	st := c.state("")
	var names []string
	for _, u := range st.Users {
		names = append(names, u.RealName+"="+u.ID)
	}
	if want := []string{"Alice=U01ALICE", "Bob=U02BOB", "Carol=U03CAROL", "Dave=U04DAVE", "Erin=U05ERIN"}; !slices.Equal(names, want) {
		t.Errorf("users %v, want %v", names, want)
	}
	if st.User != alice {
		t.Errorf("default user %s", st.User)
	}
	var chans []string
	for _, ch := range st.Channels {
		chans = append(chans, ch.Name+"="+ch.ID)
	}
	if want := []string{"general=" + GeneralChannel, "approvals=C0123APPROVALS", "audit=C0123AUDIT", "staging=C0789STAGING"}; !slices.Equal(chans, want) {
		t.Errorf("channels %v, want %v", chans, want)
	}
	if u := st.Users[2]; !slices.Contains(u.Approves, "prod-db-admin") || u.Email != "carol@example.com" {
		t.Errorf("carol = %+v", u)
	}
	if st.PolicyFile != "examples/policy.yaml" {
		t.Errorf("policy file %q", st.PolicyFile)
	}
	if res := c.post("/api/command", ActionRequest{User: "U99NOBODY", Text: "/jit help"}); res.OK || !strings.Contains(res.Error, "unknown user") {
		t.Errorf("unknown user: %+v", res)
	}
	if res := c.post("/api/command", ActionRequest{User: alice, Text: "/deploy now"}); res.OK || !strings.Contains(res.Error, "/jit") {
		t.Errorf("other command: %+v", res)
	}
}

var reqIDRe = regexp.MustCompile(`Access request (r-[a-z0-9]+)`)

// TestWholeFlowThroughTheAPI drives the page's JSON API as people would: a request typed as a slash
// command, refusals, two approvals by button (the message changes to 1 of 2, then Active until), the grant
// at the target system, the requester's DM and App Home, release with "I'm done" (revoke), then the request
// form (field errors, then a valid submission) and a denial through the deny form.
func TestWholeFlowThroughTheAPI(t *testing.T) {
	pg := startPlayground(t)
	c := &client{t: t, base: pg.URL()}

	c.mustPost("/api/command", ActionRequest{User: alice, Channel: GeneralChannel, Text: "/jit request prod-db-admin 5h INC-1 too long"})
	c.waitFor(alice, "the refusal of 5h", func(s State) bool {
		_, ok := s.channel("general").find("5h exceeds the maximum of 4h")
		return ok
	})
	c.mustPost("/api/command", ActionRequest{User: alice, Channel: GeneralChannel, Text: "/jit request prod-db-admin 30s INC-1 test"})
	st := c.waitFor(alice, "the ephemeral answer", func(s State) bool {
		m, ok := s.channel("general").find("is waiting for 2 approval(s) in #approvals")
		return ok && m.Ephemeral
	})
	// Ephemerals are the requester's only.
	if _, ok := c.state(carol).channel("general").find("is waiting for"); ok {
		t.Fatal("carol sees alice's ephemeral")
	}
	_ = st

	st = c.waitFor(carol, "the approval message", func(s State) bool {
		_, ok := s.channel("approvals").find("Access request", "INC-1 test", "0 of 2")
		return ok
	})
	msg, _ := st.channel("approvals").find("Access request", "INC-1 test")
	reqID := reqIDRe.FindStringSubmatch(msg.Plain)[1]
	approve, ok := msg.button("jit_approve")
	if !ok || !approve.Confirm || approve.Value != reqID {
		t.Fatalf("approve button %+v in %+v", approve, msg)
	}
	if !strings.Contains(msg.HTML, `class="bk-mention"`) || !strings.Contains(msg.Plain, "Requester\n@Alice") {
		t.Fatalf("mention not rendered as a name: %s", msg.Plain)
	}
	click := func(user string, m MessageView, b ButtonView) ActionResult {
		return c.mustPost("/api/click", ActionRequest{User: user, Channel: "C0123APPROVALS", TS: m.TS, ActionID: b.ActionID, BlockID: b.BlockID, Value: b.Value})
	}

	click(alice, msg, approve)
	c.waitFor(alice, "the self-approval refusal", func(s State) bool {
		m, ok := s.channel("approvals").find("You cannot approve your own request")
		return ok && m.Ephemeral
	})

	click(carol, msg, approve)
	c.waitFor(carol, "1 of 2", func(s State) bool {
		m, ok := s.channel("approvals").find(reqID, "1 of 2", "Waiting for approval")
		_, told := s.channel("approvals").find("recorded (1 of 2)")
		return ok && told && m.Edited
	})

	// The deny button opens a modal for dave; he closes it.
	deny, _ := msg.button("jit_deny")
	click(dave, msg, deny)
	st = c.waitFor(dave, "the deny form", func(s State) bool { return s.Modal != nil && s.Modal.CallbackID == "jit_deny_modal" })
	if !strings.Contains(st.Modal.Plain, "Why are you denying "+reqID) || st.Modal.Title != "Deny request" {
		t.Fatalf("deny modal %+v", st.Modal)
	}
	c.mustPost("/api/close", ActionRequest{User: dave, ViewID: st.Modal.ID})
	c.waitFor(dave, "the deny form to close", func(s State) bool { return s.Modal == nil })

	click(dave, msg, approve)
	st = c.waitFor(dave, "Active until", func(s State) bool {
		m, ok := s.channel("approvals").find(reqID, "2 of 2", "Active until")
		return ok && len(m.Buttons) == 0 && len(s.Deliveries) > 0
	})
	d := st.Deliveries[0]
	if d.Type != "grant" || d.Principal != "alice@example.com" || d.Role != "prod-db-admin" || d.RequestID != reqID || d.Status != 200 {
		t.Fatalf("delivery %+v", d)
	}
	grantID := d.GrantID
	c.waitFor(alice, "the requester's DM", func(s State) bool {
		_, ok := s.DM.find("Your access to prod-db-admin is active until")
		return ok
	})
	c.waitFor(alice, "the audit line", func(s State) bool {
		_, ok := s.channel("audit").find("granted", grantID)
		return ok
	})

	// App Home: the grant with its buttons; "I'm done" revokes it.
	c.mustPost("/api/home", ActionRequest{User: alice})
	st = c.waitFor(alice, "the App Home tab", func(s State) bool {
		return s.Home != nil && strings.Contains(s.Home.Plain, grantID) && len(s.Home.Buttons) > 0
	})
	var done ButtonView
	for _, b := range st.Home.Buttons {
		if b.ActionID == "jit_done" {
			done = b
		}
	}
	c.mustPost("/api/click", ActionRequest{User: alice, ViewID: st.Home.ID, ActionID: done.ActionID, BlockID: done.BlockID, Value: done.Value})
	// The revoke, then the check that verifies the access is gone (the newest delivery).
	st = c.waitFor(alice, "the revoke and its verification", func(s State) bool {
		m, ok := s.channel("approvals").find(reqID, "Access ended (released by @Alice)")
		return ok && m.Edited && len(s.Deliveries) >= 3 && s.Deliveries[0].Type == "check" && s.Deliveries[1].Type == "revoke"
	})
	if d := st.Deliveries[1]; d.GrantID != grantID || d.Principal != "alice@example.com" {
		t.Fatalf("revoke delivery %+v", d)
	}
	msg, _ = st.channel("approvals").find(reqID)
	var replies []string
	for _, r := range msg.Replies {
		replies = append(replies, r.Plain)
	}
	if all := strings.Join(replies, "\n"); !strings.Contains(all, "Approved by @Carol") || !strings.Contains(all, "Access removed") {
		t.Errorf("thread replies:\n%s", all)
	}

	// The request form: a bad duration comes back as a field error; a good submission closes it.
	c.mustPost("/api/command", ActionRequest{User: alice, Channel: GeneralChannel, Text: "/jit"})
	st = c.waitFor(alice, "the request form", func(s State) bool { return s.Modal != nil && s.Modal.CallbackID == "jit_request_modal" })
	var inputs []string
	for _, in := range st.Modal.Inputs {
		inputs = append(inputs, in.BlockID+":"+in.Type)
	}
	if want := []string{"role:static_select", "duration:plain_text_input", "reason:plain_text_input"}; !slices.Equal(inputs, want) {
		t.Fatalf("inputs %v", inputs)
	}
	if !strings.Contains(st.Modal.HTML, `<select`) || !strings.Contains(st.Modal.HTML, `<textarea`) || !strings.Contains(st.Modal.HTML, `value="prod-db-readonly"`) {
		t.Fatalf("modal html %s", st.Modal.HTML)
	}
	viewID := st.Modal.ID
	res := c.mustPost("/api/submit", ActionRequest{User: alice, ViewID: viewID, Values: map[string]map[string]string{
		"role": {"value": "prod-db-readonly"}, "duration": {"value": "forever"}, "reason": {"value": "INC-2 read"}}})
	if res.Closed || res.Errors["duration"] == "" {
		t.Fatalf("submit with a bad duration: %+v", res)
	}
	st = c.waitFor(alice, "the field error", func(s State) bool { return s.Modal != nil && s.Modal.Errors["duration"] != "" })
	if !strings.Contains(st.Modal.HTML, `class="bk-error"`) {
		t.Fatalf("field error not rendered: %s", st.Modal.HTML)
	}
	res = c.mustPost("/api/submit", ActionRequest{User: alice, ViewID: viewID, Values: map[string]map[string]string{
		"role": {"value": "prod-db-readonly"}, "duration": {"value": "1h"}, "reason": {"value": "INC-2 read"}}})
	if !res.Closed {
		t.Fatalf("valid submission: %+v", res)
	}
	c.waitFor(alice, "the form to close and the answer", func(s State) bool {
		_, ok := s.channel("general").find("prod-db-readonly", "is waiting for 1 approval(s)")
		return s.Modal == nil && ok
	})

	// Carol denies it through the deny form.
	st = c.waitFor(carol, "the second approval message", func(s State) bool {
		_, ok := s.channel("approvals").find("INC-2 read", "0 of 1")
		return ok
	})
	msg2, _ := st.channel("approvals").find("INC-2 read")
	deny, _ = msg2.button("jit_deny")
	c.mustPost("/api/click", ActionRequest{User: carol, Channel: "C0123APPROVALS", TS: msg2.TS, ActionID: deny.ActionID, BlockID: deny.BlockID, Value: deny.Value})
	st = c.waitFor(carol, "the deny form", func(s State) bool { return s.Modal != nil })
	c.mustPost("/api/submit", ActionRequest{User: carol, ViewID: st.Modal.ID, Values: map[string]map[string]string{"reason": {"value": "use the replica"}}})
	c.waitFor(carol, "the denial", func(s State) bool {
		m, ok := s.channel("approvals").find("INC-2 read", "Denied by @Carol: use the replica")
		return ok && len(m.Buttons) == 0 && s.Modal == nil
	})
	for _, d := range c.state(alice).Deliveries {
		if d.Role != "prod-db-admin" {
			t.Fatalf("a denied request reached the target system: %+v", d)
		}
	}
}
