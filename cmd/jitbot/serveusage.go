package main

import (
	"fmt"
	"reflect"
	"strings"
)

// serveUsage is `jitbot serve --help`: what serve does and every variable it reads, with its default, taken
// from Config itself so the list cannot go stale.
func serveUsage() string {
	var b strings.Builder
	b.WriteString(`usage: jitbot serve

Runs the bot: the Slack front end, the approval engine and the sweeper that revokes expired access, with
/healthz, /readyz and /metrics on JITBOT_LISTEN_ADDR. It takes no arguments; configuration comes from the
environment (docs/operations.md; the policy format is in docs/policy.md):

`)
	t := reflect.TypeOf(Config{})
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" {
			continue
		}
		if def := f.Tag.Get("default"); def != "" {
			fmt.Fprintf(&b, "  %-30s default %s\n", name, def)
		} else {
			fmt.Fprintf(&b, "  %s\n", name)
		}
	}
	b.WriteString(`
plus the secrets the policy names in *_env settings. Without SLACK_BOT_TOKEN serve refuses to start unless
JITBOT_SLACK=off says it runs without Slack on purpose (API-only, for pipelines). SIGHUP reloads the policy;
SIGINT or SIGTERM shut down gracefully.
`)
	return b.String()
}
