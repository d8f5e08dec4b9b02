package main

import (
	"strings"
	"testing"
)

// TestServeNeedsSlackOrAnExplicitOptOut: without SLACK_BOT_TOKEN serve refuses with a message naming both
// ways forward, unless JITBOT_SLACK=off says so; contradictions and bad values are refused too.
func TestServeNeedsSlackOrAnExplicitOptOut(t *testing.T) {
	for name, c := range map[string]struct {
		env  map[string]string
		want string
	}{
		"no token":          {map[string]string{}, "SLACK_BOT_TOKEN is not set"},
		"off with a token":  {map[string]string{"JITBOT_SLACK": "off", "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, "JITBOT_SLACK=off but a Slack token is set"},
		"off with app only": {map[string]string{"JITBOT_SLACK": "off", "SLACK_APP_TOKEN": "xapp-1"}, "JITBOT_SLACK=off but a Slack token is set"},
		"bad value":         {map[string]string{"JITBOT_SLACK": "no"}, "JITBOT_SLACK must be off"},
	} {
		t.Run(name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("JITBOT_DATA_DIR", t.TempDir())
			t.Setenv("JITBOT_POLICY_FILE", "../../examples/policy.yaml")
			t.Setenv("JITBOT_WEBHOOK_SECRET", "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3ODk=")
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			code, _, stderr := runCLI(t, "serve")
			if code != 1 || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want it to say %q", code, stderr, c.want)
			}
			if name == "no token" && !strings.Contains(stderr, "JITBOT_SLACK=off") {
				t.Fatalf("the refusal does not name the opt-out: %s", stderr)
			}
		})
	}
	// audit verify reads the same configuration but never needs Slack.
	clearEnv(t)
	t.Setenv("JITBOT_DATA_DIR", t.TempDir())
	if code, _, stderr := runCLI(t, "audit", "verify"); strings.Contains(stderr, "SLACK_BOT_TOKEN") {
		t.Fatalf("audit verify asked for Slack: exit %d %s", code, stderr)
	}
}

func TestServeHelpPrintsHelpInsteadOfStarting(t *testing.T) {
	clearEnv(t)
	for _, arg := range []string{"--help", "-h", "help"} {
		code, stdout, _ := runCLI(t, "serve", arg)
		if code != 0 || !strings.HasPrefix(stdout, "usage: jitbot serve") {
			t.Fatalf("serve %s: exit %d\n%s", arg, code, stdout)
		}
		for _, v := range []string{"SLACK_BOT_TOKEN", "JITBOT_SLACK", "JITBOT_REDIS_URL", "JITBOT_REDIS_MIN_REPLICAS", "JITBOT_POLICY_POLL_INTERVAL", "default :8080"} {
			if !strings.Contains(stdout, v) {
				t.Errorf("serve %s does not mention %s", arg, v)
			}
		}
	}
	if code, _, stderr := runCLI(t, "serve", "--port=1"); code != 2 || !strings.Contains(stderr, "takes no arguments") {
		t.Fatalf("serve with an argument: exit %d %s", code, stderr)
	}
}
