package playground

// A small Chrome DevTools Protocol client for the browser test: it starts headless Chromium with a remote
// debugging port, attaches to the page over a WebSocket and sends real input events (mouse clicks at an
// element's position, typed text, the Enter key). No npm, no driver binary.

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// findChromium returns the Chromium binary: $JITBOT_CHROMIUM, else chromium, chromium-browser,
// google-chrome on PATH.
func findChromium() string {
	if p := os.Getenv("JITBOT_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		return ""
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

type browser struct {
	t   *testing.T
	cmd *exec.Cmd
	ws  *websocket.Conn

	mu      sync.Mutex
	nextID  int
	pending map[int]chan cdpMessage
	wmu     sync.Mutex
}

type cdpMessage struct {
	ID     int             `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

var devtoolsRe = regexp.MustCompile(`DevTools listening on (ws://[^\s]+)`)

// launchBrowser starts headless Chromium on url and attaches to its page. The flags are the ones this
// machine's Chromium needs (no sandbox as root, no background networking on a closed network, a fresh
// profile).
func launchBrowser(t *testing.T, bin, url string) *browser {
	t.Helper()
	profile := t.TempDir()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
		"--disable-dev-shm-usage", "--user-data-dir="+profile, "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
		"--window-size=1280,900", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the wrapper script's children die with the group
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	b := &browser{t: t, cmd: cmd, pending: map[int]chan cdpMessage{}}
	t.Cleanup(b.close)

	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := devtoolsRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var browserWS string
	select {
	case browserWS = <-found:
	case <-time.After(60 * time.Second):
		t.Fatal("chromium did not print its DevTools address within 60s")
	}
	// ws://127.0.0.1:PORT/devtools/browser/ID -> the page target from /json/list.
	hostPort := strings.TrimPrefix(browserWS, "ws://")
	hostPort = hostPort[:strings.Index(hostPort, "/")]
	var pageWS string
	deadline := time.Now().Add(30 * time.Second)
	for pageWS == "" {
		if time.Now().After(deadline) {
			t.Fatal("chromium shows no page target")
		}
		resp, err := http.Get("http://" + hostPort + "/json/list")
		if err == nil {
			var targets []struct{ Type, URL, WebSocketDebuggerURL string }
			_ = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, tg := range targets {
				if tg.Type == "page" && tg.WebSocketDebuggerURL != "" {
					pageWS = tg.WebSocketDebuggerURL
					break
				}
			}
		}
		if pageWS == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	ws, _, err := websocket.DefaultDialer.Dial(pageWS, nil)
	if err != nil {
		t.Fatalf("attach to the page: %v", err)
	}
	b.ws = ws
	go b.read()
	b.call("Runtime.enable", nil, nil)
	b.call("Page.enable", nil, nil)
	return b
}

func (b *browser) read() {
	for {
		var m cdpMessage
		if err := b.ws.ReadJSON(&m); err != nil {
			b.mu.Lock()
			for id, ch := range b.pending {
				close(ch)
				delete(b.pending, id)
			}
			b.mu.Unlock()
			return
		}
		if m.ID == 0 {
			b.event(m)
			continue
		}
		b.mu.Lock()
		ch := b.pending[m.ID]
		delete(b.pending, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// event logs what the page itself reports: uncaught exceptions and console errors.
func (b *browser) event(m cdpMessage) {
	switch m.Method {
	case "Runtime.exceptionThrown":
		var p struct {
			ExceptionDetails struct {
				Text      string
				Exception struct{ Description string }
			}
		}
		_ = json.Unmarshal(m.Params, &p)
		b.t.Logf("page exception: %s %s", p.ExceptionDetails.Text, p.ExceptionDetails.Exception.Description)
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string
			Args []struct {
				Value       any
				Description string
			}
		}
		_ = json.Unmarshal(m.Params, &p)
		if p.Type == "error" || p.Type == "warning" {
			var parts []string
			for _, a := range p.Args {
				parts = append(parts, fmt.Sprint(a.Value, a.Description))
			}
			b.t.Logf("page console.%s: %s", p.Type, strings.Join(parts, " "))
		}
	}
}

// call sends one CDP command and decodes its result into out (may be nil).
func (b *browser) call(method string, params any, out any) {
	b.t.Helper()
	if err := b.try(method, params, out); err != nil {
		b.t.Fatalf("%s: %v", method, err)
	}
}

func (b *browser) try(method string, params any, out any) error {
	if params == nil {
		params = map[string]any{}
	}
	ch := make(chan cdpMessage, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	b.wmu.Lock()
	err := b.ws.WriteJSON(map[string]any{"id": id, "method": method, "params": params})
	b.wmu.Unlock()
	if err != nil {
		return err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return errors.New("the browser connection closed")
		}
		if m.Error != nil {
			return fmt.Errorf("%d %s", m.Error.Code, m.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(m.Result, out)
		}
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("no answer within 30s")
	}
}

// eval runs a JavaScript expression in the page and decodes its (JSON-serialisable) value into out.
func (b *browser) eval(expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.try("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("%s %s", res.ExceptionDetails.Text, res.ExceptionDetails.Exception.Description)
	}
	if out != nil && len(res.Result.Value) > 0 {
		return json.Unmarshal(res.Result.Value, out)
	}
	return nil
}

// waitFor polls a JavaScript condition until it is true (a hang guard, not a speed check).
func (b *browser) waitFor(what, cond string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		err := b.eval("Boolean("+cond+")", &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var text string
			_ = b.eval(`document.querySelector("#main") ? document.querySelector("#main").innerText : document.body.innerText`, &text)
			b.screenshot("failure")
			b.t.Fatalf("the page never showed %s (condition %s, last error %v); the page reads:\n%s", what, cond, err, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// click scrolls the first element matching the CSS selector into view and clicks its centre with real
// mouse events (pressed and released), as a person would.
func (b *browser) click(selector string) {
	b.t.Helper()
	var box struct{ X, Y float64 }
	sel, _ := json.Marshal(selector)
	expr := fmt.Sprintf(`(() => { const el = document.querySelector(%s); if (!el) return null;
		el.scrollIntoView({block: "center"}); const r = el.getBoundingClientRect();
		return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()`, sel)
	if err := b.eval(expr, &box); err != nil || (box.X == 0 && box.Y == 0) {
		b.t.Fatalf("no element %s to click (%v)", selector, err)
	}
	for _, typ := range []string{"mouseMoved", "mousePressed", "mouseReleased"} {
		b.call("Input.dispatchMouseEvent", map[string]any{"type": typ, "x": box.X, "y": box.Y, "button": "left", "clickCount": 1}, nil)
	}
}

// typeText types text into the focused element and presses Enter.
func (b *browser) typeText(text string) {
	b.t.Helper()
	b.call("Input.insertText", map[string]any{"text": text}, nil)
	for _, typ := range []string{"keyDown", "keyUp"} {
		p := map[string]any{"type": typ, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}
		if typ == "keyDown" {
			p["text"] = "\r"
		}
		b.call("Input.dispatchKeyEvent", p, nil)
	}
}

// screenshot saves a PNG of the page into $JITBOT_BROWSER_ARTIFACTS (when set) and logs where.
func (b *browser) screenshot(name string) {
	dir := os.Getenv("JITBOT_BROWSER_ARTIFACTS")
	if dir == "" {
		return
	}
	var res struct{ Data string }
	if err := b.try("Page.captureScreenshot", map[string]any{"format": "png"}, &res); err != nil {
		b.t.Logf("screenshot: %v", err)
		return
	}
	png, _ := base64.StdEncoding.DecodeString(res.Data)
	path := dir + "/" + name + ".png"
	if err := os.WriteFile(path, png, 0o644); err == nil {
		b.t.Logf("screenshot %s", path)
	}
}

func (b *browser) close() {
	if b.ws != nil {
		_ = b.ws.Close()
	}
	if b.cmd.Process != nil {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL) // our own process group only
		_ = b.cmd.Wait()
	}
}
