package bot

import (
	"strings"
	"testing"

	"github.com/jitbot/jitbot/store"
)

// Issue 10: a revoke whose access remains through objects jitbot did not grant is said in the request's thread
// and marked in the audit channel, naming the objects (escaped: their names are not jitbot's).
func TestAccessRemainsIsSaid(t *testing.T) {
	e := store.AuditEvent{Type: store.EventAccessRemains, Actor: "system:grants", Role: "payments-edit", RequestID: "r-1", GrantID: "g-1",
		Details: map[string]string{"provider": "k8s", "other": "rolebinding/payments/carol-by-hand; clusterrolebinding/<!here>"}}
	reply := threadReply(e)
	for _, want := range []string{":warning:", "access remains through rolebinding/payments/carol-by-hand; clusterrolebinding/&lt;!here&gt; that jitbot did not grant", "g-1"} {
		if !strings.Contains(reply, want) {
			t.Fatalf("thread reply %q does not contain %q", reply, want)
		}
	}
	if strings.Contains(reply, "confirmed gone") {
		t.Fatalf("thread reply %q says the access is gone", reply)
	}
	line := AuditLine(e)
	if !strings.HasPrefix(line, ":warning: `access-remains` system:grants · payments-edit · r-1 · g-1") || !strings.Contains(line, "other: rolebinding/payments/carol-by-hand") {
		t.Fatalf("audit line %q", line)
	}
	if strings.Contains(line, "<!here>") {
		t.Fatalf("audit line %q lets an object name mention the channel", line)
	}
}
