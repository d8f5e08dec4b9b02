package playground

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBrowserApproveFlow opens the playground page in headless Chromium and does what a person does: as
// Alice types the request into the composer, switches to Carol, opens #approvals, clicks Approve in the
// rendered approval message (and confirms), sees "1 of 2", switches to Dave, approves, and sees the
// message change to "Active until" without buttons.
//
// It needs Chromium (scripts/ensure-chromium.sh installs Debian's package). Without it the test fails,
// unless JITBOT_SKIP_BROWSER=1 is set (for developers without a browser; CI never sets it).
func TestBrowserApproveFlow(t *testing.T) {
	bin := findChromium()
	if bin == "" {
		if os.Getenv("JITBOT_SKIP_BROWSER") == "1" {
			t.Skip("JITBOT_SKIP_BROWSER=1 and no Chromium on PATH")
		}
		t.Fatal("headless Chromium is needed for the playground's browser test and none was found " +
			"(looked for $JITBOT_CHROMIUM, chromium, chromium-browser, google-chrome). Install it with " +
			"`sudo scripts/ensure-chromium.sh` (Debian's chromium package), or set JITBOT_SKIP_BROWSER=1 to skip this test locally")
	}
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err == nil {
		t.Logf("browser: %s", strings.TrimSpace(lastLine(string(out))))
	}
	pg := startPlayground(t)
	start := time.Now()
	b := launchBrowser(t, bin, pg.URL()+"/")
	const wait = 30 * time.Second

	b.waitFor("the user list", `document.querySelector('[data-user="U01ALICE"]')`, wait)
	b.click(`[data-user="U01ALICE"]`)
	b.click(`[data-channel-name="general"]`)
	b.waitFor("Alice acting in #general", `document.querySelector("#pane-sub").textContent.includes("Acting as Alice")`, wait)
	b.click(`#composer-input`)
	b.typeText("/jit request prod-db-admin 30s INC-1 test")
	b.waitFor("the ephemeral answer to Alice",
		`[...document.querySelectorAll("#pane .msg-ephemeral")].some(m => m.innerText.includes("is waiting for 2 approval(s) in #approvals"))`, wait)
	var reqID string
	if err := b.eval(`[...document.querySelectorAll("#pane .msg-ephemeral")].find(m => m.innerText.includes("is waiting for")).innerText.match(/Request (r-[a-z0-9]+)/)[1]`, &reqID); err != nil {
		t.Fatal(err)
	}
	t.Logf("alice's request %s is pending (%s)", reqID, time.Since(start).Round(time.Millisecond))
	b.screenshot("1-alice-requested")

	approvalMsg := fmt.Sprintf(`[...document.querySelectorAll("#pane > .msg")].find(m => m.innerText.includes("Access request %s"))`, reqID)
	approveBtn := fmt.Sprintf(`#pane .msg button[data-action-id="jit_approve"][data-value="%s"]`, reqID)
	approveAs := func(user, name string) {
		b.click(fmt.Sprintf(`[data-user="%s"]`, user))
		b.click(`[data-channel-name="approvals"]`)
		b.waitFor(name+" in #approvals", `document.querySelector("#pane-sub").textContent.includes("Acting as `+name+`") && document.querySelector("#pane-title").textContent === "# approvals"`, wait)
		b.waitFor("the Approve button", `document.querySelector('`+approveBtn+`')`, wait)
		b.click(approveBtn)
		// Slack asks to confirm (the button's confirm object); the page shows that dialog.
		b.waitFor("the confirm dialog", `!document.querySelector("#confirm-backdrop").hidden && document.querySelector("#confirm-title").textContent === "Approve this request?"`, wait)
		b.click(`#confirm-ok`)
	}

	approveAs("U03CAROL", "Carol")
	b.waitFor("1 of 2 on the approval message", approvalMsg+`?.innerText.includes("Waiting for approval (1 of 2)")`, wait)
	b.waitFor("Carol's private confirmation", `[...document.querySelectorAll("#pane .msg-ephemeral")].some(m => m.innerText.includes("recorded (1 of 2)"))`, wait)
	t.Logf("carol approved: the message reads 1 of 2 (%s)", time.Since(start).Round(time.Millisecond))
	b.screenshot("2-carol-approved")

	approveAs("U04DAVE", "Dave")
	b.waitFor(`"Active until" on the approval message`, approvalMsg+`?.innerText.includes("Active until")`, wait)
	b.waitFor("the buttons to disappear", `!document.querySelector('`+approveBtn+`')`, wait)
	var text string
	_ = b.eval(approvalMsg+`.innerText`, &text)
	if !strings.Contains(text, "Approved by @Carol, @Dave") {
		t.Fatalf("approval message after the second approval:\n%s", text)
	}
	status := ""
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "Active until") {
			status = strings.TrimSpace(l)
		}
	}
	t.Logf("dave approved: %q (%s)", status, time.Since(start).Round(time.Millisecond))
	b.screenshot("3-dave-approved")

	// The target system received the grant, and the page shows it.
	b.click(`[data-nav="deliveries"]`)
	b.waitFor("the grant delivery", `[...document.querySelectorAll("tr.delivery")].some(r => r.innerText.includes("grant") && r.innerText.includes("alice@example.com"))`, wait)
	t.Logf("the target system received the grant for alice@example.com (%s)", time.Since(start).Round(time.Millisecond))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
