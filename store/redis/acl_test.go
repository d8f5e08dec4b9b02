package redis_test

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jitbot/jitbot/store"
	jitredis "github.com/jitbot/jitbot/store/redis"
	"github.com/jitbot/jitbot/store/redistest"
	"github.com/jitbot/jitbot/store/storetest"
)

// aclFromDocs reads the least-privilege ACL rule that docs/redis.md tells operators to create, so the
// documentation and this test cannot drift apart.
func aclFromDocs(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/redis.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(doc), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "ACL SETUSER jitbot "); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatal("docs/redis.md has no line starting with ACL SETUSER jitbot")
	return nil
}

// TestConformanceWithLeastPrivilegeACL runs the whole store conformance suite (and the durability check) as
// an ACL user that may run only the commands docs/redis.md lists, on only jitbot's keys: if the code starts
// using another command, this fails and the list must be updated.
func TestConformanceWithLeastPrivilegeACL(t *testing.T) {
	rule := aclFromDocs(t)
	for i, r := range rule {
		switch {
		case strings.HasPrefix(r, ">"):
			rule[i] = ">acl-test-password"
		case strings.HasPrefix(r, "~"):
			rule[i] = "~{jitacl}*"
		}
	}
	args := append([]string{"--user", "jitbot"}, rule...)
	args = append(args, "--user", "default", "off")
	_, addr := redistest.StartServer(t, args...)
	url := "redis://jitbot:acl-test-password@" + addr + "/0"
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		return openAt(t, url, jitredis.Options{Prefix: fmt.Sprintf("{jitacl}%d", n.Add(1))})
	})
	d, err := openAt(t, url, jitredis.Options{Prefix: "{jitacl}"}).CheckDurability(t.Context())
	if err != nil || d.ConfigErr != nil {
		t.Fatalf("durability check as the documented user: %v %v", err, d.ConfigErr)
	}
	// And the rule really is narrow: another key space is refused.
	s := openAt(t, url, jitredis.Options{Prefix: "{other}"})
	if _, err := s.GetRequest(t.Context(), "r-1"); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("a key outside the ACL's pattern was readable: %v", err)
	}
}
