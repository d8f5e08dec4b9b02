package bot

import (
	"strings"
	"testing"

	"github.com/jitbot/jitbot/store"
)

// Issue 10 item 1: the requester (and the request's thread) are told when the access pre-existed the grant.
func TestPreExistingAccessIsSaid(t *testing.T) {
	granted := store.AuditEvent{Type: store.EventGranted, GrantID: "g-1", Details: map[string]string{"pre_existing": "true"}}
	if got := threadReply(granted); !strings.Contains(got, "already had this access") {
		t.Fatalf("granted thread reply %q does not say the access pre-existed", got)
	}
	revoked := store.AuditEvent{Type: store.EventRevoked, GrantID: "g-1", Details: map[string]string{"pre_existing": "true"}}
	if got := threadReply(revoked); strings.Contains(got, "Access removed") || !strings.Contains(got, "left in place") {
		t.Fatalf("revoked thread reply %q claims removal of access that stays", got)
	}
	plain := store.AuditEvent{Type: store.EventRevoked, GrantID: "g-2"}
	if got := threadReply(plain); got != ":lock: Access removed (grant g-2)." {
		t.Fatalf("ordinary revoke reply changed: %q", got)
	}
}
