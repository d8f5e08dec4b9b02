package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/internal/playground"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
)

// dev runs the local playground (internal/playground): the real engine and Slack front end on the embedded
// store with the example policy, against the Slack emulator, with a local signed-webhook receiver standing
// in for the target system and a web page where you act as any user. It serves until ctx ends (SIGINT or
// SIGTERM); standard input is not read.
func dev(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyFile := fs.String("policy", "examples/policy.yaml", "policy file")
	dataDir := fs.String("data", filepath.Join("data", "dev"), "embedded store directory")
	listen := fs.String("listen", "127.0.0.1:8080", "address of the playground page, /healthz, /readyz, /metrics and /slack/*")
	logLevel := fs.String("log-level", "warn", "jitbot's log level (logs go to standard error)")
	hookAddr := fs.String("webhook-addr", os.Getenv("JITBOT_DEV_WEBHOOK_ADDR"),
		"host:port of the local webhook receiver that stands in for the target system (default: the address in the policy's webhook URLs, 127.0.0.1:9099 in examples/policy.yaml; env JITBOT_DEV_WEBHOOK_ADDR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *hookAddr != "" {
		if _, port, err := net.SplitHostPort(*hookAddr); err != nil || port == "" {
			return fmt.Errorf("-webhook-addr %q: want host:port, such as 127.0.0.1:9199", *hookAddr)
		}
	}
	raw, err := os.ReadFile(*policyFile)
	if err != nil {
		return fmt.Errorf("read policy: %w (run from the repository root, or pass -policy)", err)
	}
	pol, err := policy.Parse(*policyFile, raw)
	if err != nil {
		return fmt.Errorf("policy is invalid:\n%w", err)
	}
	if *hookAddr != "" {
		if err := moveWebhooks(pol, *hookAddr); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	st, err := bolt.Open(filepath.Join(*dataDir, "jitbot.db"), bolt.Options{})
	if err != nil {
		return err
	}
	defer st.Close()

	pg, err := playground.Start(playground.Options{Policy: pol, PolicyFile: *policyFile, Store: st, Listen: *listen,
		Logger: newLogger(stderr, *logLevel), Subscribers: []audit.Subscriber{&eventPrinter{w: stdout}}})
	if err != nil {
		return err
	}
	var users []string
	for _, u := range pg.Users() {
		users = append(users, u.RealName+" ("+u.ID+")")
	}
	fmt.Fprintf(stdout, "jitbot playground: open %s/ in a browser\n", pg.URL())
	fmt.Fprintf(stdout, "  policy %s, embedded store %s, Slack emulator in HTTP mode, webhook receiver for the target system\n", *policyFile, *dataDir)
	fmt.Fprintf(stdout, "  act as %s; metrics at %s/metrics; Ctrl-C stops\n", strings.Join(users, ", "), pg.URL())
	return pg.Run(ctx)
}

// eventPrinter prints every audit event on the terminal, so the engine's side of what the page does is seen.
type eventPrinter struct{ w io.Writer }

func (p *eventPrinter) Publish(_ context.Context, events ...store.AuditEvent) {
	for _, e := range events {
		var details []string
		for k, v := range e.Details {
			details = append(details, k+"="+v)
		}
		slices.Sort(details)
		fmt.Fprintf(p.w, "  [audit] %-13s actor=%s request=%s grant=%s role=%s %s\n", e.Type, e.Actor, e.RequestID, e.GrantID, e.Role, strings.Join(details, " "))
	}
}

// moveWebhooks points every webhook provider of the playground's policy at addr, where the playground's
// receiver then listens: the example policy's 127.0.0.1:9099 may be taken on the developer's machine.
func moveWebhooks(pol *policy.Policy, addr string) error {
	for name, p := range pol.Providers {
		if p.Type != "webhook" || p.Webhook == nil {
			continue
		}
		u, err := url.Parse(p.Webhook.URL)
		if err != nil {
			return fmt.Errorf("provider %s: webhook url: %w", name, err)
		}
		u.Host = addr
		p.Webhook.URL = u.String()
	}
	return nil
}
