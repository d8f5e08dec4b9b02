package playground

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// stateGate holds the page's GET /api/state requests for one user until released, so a test can put the
// page exactly where a slow answer is still in flight when the person clicks something else.
type stateGate struct {
	mu      sync.Mutex
	user    string
	held    chan struct{} // closed when a held request has arrived
	release chan struct{}
}

func (g *stateGate) arm(user string) (held <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.user, g.held, g.release = user, make(chan struct{}), make(chan struct{})
	return g.held
}

func (g *stateGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release != nil {
		close(g.release)
	}
	g.user, g.release = "", nil
}

func (g *stateGate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		hold := r.URL.Path == "/api/state" && g.user != "" && r.URL.Query().Get("user") == g.user
		var release chan struct{}
		if hold {
			release = g.release
			select {
			case <-g.held:
			default:
				close(g.held)
			}
		}
		g.mu.Unlock()
		if hold {
			// The answer is computed after the release, as a slow server would send it: for the old user.
			<-release
		}
		next.ServeHTTP(w, r)
	})
}

// TestBrowserSwitchUserWhilePollInFlight: a state answer for Carol that arrives after the person clicked
// Dave must not switch the page back to Carol (it did: the in-flight poll overwrote the chosen user, and the
// click on Dave was lost; seen as a flaky TestBrowserApproveFlow on a loaded machine).
func TestBrowserSwitchUserWhilePollInFlight(t *testing.T) {
	bin := findChromium()
	if bin == "" {
		if os.Getenv("JITBOT_SKIP_BROWSER") == "1" {
			t.Skip("JITBOT_SKIP_BROWSER=1 and no Chromium on PATH")
		}
		t.Fatal("headless Chromium is needed (sudo scripts/ensure-chromium.sh), or set JITBOT_SKIP_BROWSER=1")
	}
	pg := startPlayground(t)
	gate := &stateGate{}
	front := httptest.NewServer(gate.wrap(pg.Handler()))
	t.Cleanup(front.Close)
	t.Cleanup(gate.open)
	b := launchBrowser(t, bin, front.URL+"/")
	const wait = 30 * time.Second

	b.waitFor("the user list", `document.querySelector('[data-user="U03CAROL"]')`, wait)
	b.click(`[data-user="U03CAROL"]`)
	b.waitFor("acting as Carol", `document.querySelector("#pane-sub").textContent.includes("Acting as Carol")`, wait)

	held := gate.arm("U03CAROL")
	select { // the page polls every second: wait for its next poll as Carol to be held
	case <-held:
	case <-time.After(wait):
		t.Fatal("the page never polled the state again (hang guard)")
	}
	b.click(`[data-user="U04DAVE"]`)
	gate.open()

	b.waitFor("acting as Dave", `document.querySelector("#pane-sub").textContent.includes("Acting as Dave")`, wait)
	// By now the held answer for Carol has been handled (dropped): the page must still act as Dave.
	var sub string
	if err := b.eval(`document.querySelector("#pane-sub").textContent`, &sub); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sub, "Acting as Dave") {
		t.Fatalf("after a stale answer for Carol the page reads %q, want it acting as Dave", sub)
	}
}
