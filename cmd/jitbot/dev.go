package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/grants/webhook/receiver"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/internal/refuse"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/store/bolt"
)

// dev runs the local playground: the real engine on the embedded store with the example policy, a local
// signed-webhook receiver standing in for the target system, and a prompt where you act as any user.
func dev(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policyFile := fs.String("policy", "examples/policy.yaml", "policy file")
	dataDir := fs.String("data", filepath.Join("data", "dev"), "embedded store directory")
	listen := fs.String("listen", "127.0.0.1:8080", "address for /healthz, /readyz and /metrics")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raw, err := os.ReadFile(*policyFile)
	if err != nil {
		return fmt.Errorf("read policy: %w (run from the repository root, or pass -policy)", err)
	}
	pol, err := policy.Parse(*policyFile, raw)
	if err != nil {
		return fmt.Errorf("policy is invalid:\n%w", err)
	}

	// Every webhook provider in the policy is served by one local receiver with a fresh secret.
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	env := map[string]string{}
	for _, p := range pol.Providers {
		if p.Type == "webhook" {
			env[p.Webhook.SecretEnv] = "whsec_" + base64.StdEncoding.EncodeToString(secret)
		}
	}
	recv := receiver.NewHandler(secret)
	for _, p := range pol.Providers {
		if p.Type != "webhook" {
			continue
		}
		u, err := url.Parse(p.Webhook.URL)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", u.Host)
		if err != nil {
			return fmt.Errorf("playground webhook receiver for provider %s on %s: %w", p.Name, u.Host, err)
		}
		srv := &http.Server{Handler: recv, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		break // one receiver serves every webhook provider of the example policy
	}

	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return err
	}
	st, err := bolt.Open(filepath.Join(*dataDir, "jitbot.db"), bolt.Options{})
	if err != nil {
		return err
	}
	defer st.Close()

	log := newLogger(io.Discard, "info")
	printer := &eventPrinter{w: stdout}
	a, err := app.New(app.Deps{Policy: pol, Store: st, Logger: log, Subscribers: []audit.Subscriber{printer},
		Getenv: func(k string) string { return env[k] }})
	if err != nil {
		return err
	}
	cfg := Config{ListenAddr: *listen, ShutdownTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "jitbot playground: policy %s, embedded store %s, webhook receiver for the target system, metrics at http://%s/metrics\n", *policyFile, *dataDir, *listen)
	fmt.Fprintln(stdout, devHelp(pol))

	replDone := make(chan struct{})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(replDone)
		repl(rctx, a, pol, recv, stdin, stdout)
		// Keep serving when stdin closes (for example under a process manager), until a signal arrives.
	}()
	return serveHTTP(ctx, log, cfg, a, a.Handler())
}

func devHelp(pol *policy.Policy) string {
	users := knownUsers(pol)
	return fmt.Sprintf(`Act as a user with "as USER" (users in this policy: %s), then type /jit commands:
  request ROLE DURATION REASON...   roles   list   approve REQUEST   deny REQUEST REASON...
  cancel REQUEST   done GRANT   extend GRANT DURATION   audit   deliveries   help   quit`, strings.Join(users, ", "))
}

func knownUsers(pol *policy.Policy) []string {
	var users []string
	add := func(us ...string) {
		for _, u := range us {
			if !slices.Contains(users, u) {
				users = append(users, u)
			}
		}
	}
	for _, name := range pol.RoleNames() {
		r, _ := pol.Role(name)
		add(r.Requesters.Users...)
		add(r.Approvers.Users...)
	}
	for _, members := range pol.Groups {
		add(members...)
	}
	slices.Sort(users)
	return users
}

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

func repl(ctx context.Context, a *app.App, pol *policy.Policy, recv *receiver.Server, in io.Reader, out io.Writer) {
	users := knownUsers(pol)
	user := ""
	if len(users) > 0 {
		user = users[0]
	}
	sc := bufio.NewScanner(in)
	for {
		fmt.Fprintf(out, "%s> ", user)
		if !sc.Scan() {
			fmt.Fprintln(out)
			return
		}
		words := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "/jit"))
		if len(words) == 0 {
			continue
		}
		cmd, rest := words[0], words[1:]
		var err error
		switch cmd {
		case "quit", "exit":
			return
		case "help":
			fmt.Fprintln(out, devHelp(pol))
		case "as":
			if len(rest) != 1 {
				err = errors.New("usage: as USER")
				break
			}
			user = rest[0]
		case "roles":
			roles, e := a.Approvals.RequestableRoles(ctx, user)
			err = e
			for _, r := range roles {
				fmt.Fprintf(out, "  %-20s %s (up to %s, %d approval(s))\n", r.Name, r.Description, policy.FormatDuration(r.MaxDuration), r.Approvals)
			}
		case "request":
			if len(rest) < 3 {
				err = errors.New("usage: request ROLE DURATION REASON...")
				break
			}
			d, e := policy.ParseDuration(rest[1])
			if e != nil {
				err = e
				break
			}
			req, e := a.Approvals.Create(ctx, approvals.NewRequest{Requester: user, Role: rest[0], Duration: d, Reason: strings.Join(rest[2:], " "), Source: "playground"})
			err = e
			if e == nil {
				fmt.Fprintf(out, "  request %s is pending (%d approval(s) needed)\n", req.ID, req.RequiredApprovals)
			}
		case "approve":
			if len(rest) != 1 {
				err = errors.New("usage: approve REQUEST")
				break
			}
			o, e := a.Approvals.Approve(ctx, rest[0], user, "")
			err = e
			if e == nil {
				if o.GrantID != "" {
					fmt.Fprintf(out, "  %s approved (%d of %d approvals); grant %s\n", o.Request.ID, len(o.Request.Approvals), o.Request.RequiredApprovals, o.GrantID)
				} else {
					fmt.Fprintf(out, "  %s: %d of %d approvals; still pending\n", o.Request.ID, len(o.Request.Approvals), o.Request.RequiredApprovals)
				}
			}
		case "deny":
			if len(rest) < 2 {
				err = errors.New("usage: deny REQUEST REASON...")
				break
			}
			_, err = a.Approvals.Deny(ctx, rest[0], user, strings.Join(rest[1:], " "))
		case "cancel":
			if len(rest) != 1 {
				err = errors.New("usage: cancel REQUEST")
				break
			}
			_, err = a.Approvals.Cancel(ctx, rest[0], user)
		case "done":
			if len(rest) != 1 {
				err = errors.New("usage: done GRANT")
				break
			}
			_, err = a.Grants.Release(ctx, rest[0], user)
		case "extend":
			if len(rest) != 2 {
				err = errors.New("usage: extend GRANT DURATION")
				break
			}
			d, e := policy.ParseDuration(rest[1])
			if e != nil {
				err = e
				break
			}
			g, e := a.Grants.Extend(ctx, rest[0], user, d)
			err = e
			if e == nil {
				fmt.Fprintf(out, "  %s now expires at %s\n", g.ID, g.ExpiresAt.Local().Format(time.TimeOnly))
			}
		case "list":
			err = listMine(ctx, a, user, out)
		case "audit":
			rep, e := audit.Verify(ctx, a.Store, "")
			err = e
			if e == nil {
				fmt.Fprintf(out, "  audit log ok: %d entries, head %s\n", rep.Entries, rep.HeadHash)
			}
		case "deliveries":
			for _, d := range recv.Deliveries() {
				fmt.Fprintf(out, "  %s %-6s grant=%s principal=%s role=%s expires=%s\n", d.At.Local().Format(time.TimeOnly), d.Payload.Type, d.Payload.GrantID, d.Payload.Principal, d.Payload.Role, d.Payload.ExpiresAt)
			}
		default:
			err = fmt.Errorf("unknown command %q; type help", cmd)
		}
		if err != nil {
			if msg, ok := refuse.Message(err); ok {
				fmt.Fprintln(out, "  refused:", msg)
			} else {
				fmt.Fprintln(out, "  error:", err)
			}
		}
	}
}

func listMine(ctx context.Context, a *app.App, user string, out io.Writer) error {
	reqs, err := a.Store.ListRequests(ctx, store.RequestQuery{Requester: user, Limit: 10})
	if err != nil {
		return err
	}
	for _, r := range reqs {
		fmt.Fprintf(out, "  request %s %-9s %s for %s: %s\n", r.ID, r.State, r.Role, policy.FormatDuration(r.Duration), r.Reason)
	}
	gs, err := a.Store.ListGrants(ctx, store.GrantQuery{UserID: user, Limit: 10})
	if err != nil {
		return err
	}
	for _, g := range gs {
		until := ""
		if !g.ExpiresAt.IsZero() {
			until = "until " + g.ExpiresAt.Local().Format(time.TimeOnly)
		}
		fmt.Fprintf(out, "  grant   %s %-9s %s %s\n", g.ID, g.State, g.Role, until)
	}
	return nil
}
