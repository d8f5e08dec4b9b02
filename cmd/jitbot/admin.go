package main

// The admin CLI, for the person on call when Slack itself is down: it works on the configured store
// (JITBOT_DATA_DIR or JITBOT_REDIS_URL) and, for revocations, through the same engine as Slack.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/internal/refuse"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

const adminUsage = `usage:
  jitbot grants list [--user U] [--state S[,S...]] [--json]
                                  live grants (or every grant of a user, or grants in the given states)
  jitbot grants show ID [--json]  one grant and its audit trail
  jitbot grants revoke ID --reason TEXT [--actor NAME]
                                  revoke now through the engine (provider revocation, leases, audit event
                                  naming the operator; --actor defaults to the OS user)
  jitbot requests list [--user U] [--json]
                                  pending requests (or every request of a user)
  jitbot audit export [--since TIME|DURATION]
                                  audit entries as JSON lines
`

// adminCmd runs "grants ..." and "requests ...".
func adminCmd(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	switch cmd + " " + sub {
	case "grants list":
		return grantsList(ctx, args, stdout, stderr)
	case "grants show":
		return grantsShow(ctx, args, stdout, stderr)
	case "grants revoke":
		return grantsRevoke(ctx, args, stdout, stderr)
	case "requests list":
		return requestsList(ctx, args, stdout, stderr)
	}
	if sub == "help" || sub == "-h" || sub == "--help" {
		fmt.Fprint(stdout, adminUsage)
		return 0
	}
	fmt.Fprintf(stderr, "jitbot %s: unknown command %q\n\n%s", cmd, sub, adminUsage)
	return 2
}

// adminStore loads the configuration and opens the configured store without creating one.
func adminStore(ctx context.Context, stderr io.Writer) (Config, store.Store, bool) {
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return cfg, nil, false
	}
	st, err := openExistingStore(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot:", err)
		return cfg, nil, false
	}
	return cfg, st, true
}

// interspersed lets flags follow positional arguments (jitbot grants revoke ID --reason ...).
func interspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func when(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	rel := "in " + policy.FormatDuration(d)
	switch {
	case d == 0:
		rel = "now"
	case d < 0:
		rel = policy.FormatDuration(-d) + " ago"
	}
	return t.UTC().Format(time.RFC3339) + " (" + rel + ")"
}

func grantsList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("grants list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	userID := fs.String("user", "", "only grants of this Slack user id (any state)")
	states := fs.String("state", "", "only these states, comma-separated (without --user: live states only)")
	asJSON := fs.Bool("json", false, "one JSON grant per line")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	q := store.GrantQuery{UserID: *userID}
	if *states != "" {
		for _, s := range strings.Split(*states, ",") {
			st := store.GrantState(strings.TrimSpace(s))
			if !slices.Contains(append(slices.Clone(store.LiveGrantStates), store.GrantRevoked, store.GrantFailed), st) {
				fmt.Fprintf(stderr, "jitbot grants list: unknown state %q (activating, active, revoking, revoke_failed, revoked, failed)\n", s)
				return 2
			}
			if q.UserID == "" && st.Terminal() {
				fmt.Fprintf(stderr, "jitbot grants list: ended grants (%s) are listed per user: add --user\n", st)
				return 2
			}
			q.States = append(q.States, st)
		}
	}
	if q.UserID == "" && len(q.States) == 0 {
		q.States = store.LiveGrantStates
	}
	_, st, ok := adminStore(ctx, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	gs, err := st.ListGrants(ctx, q)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot grants list:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, g := range gs {
			if err := enc.Encode(g); err != nil {
				fmt.Fprintln(stderr, "jitbot grants list:", err)
				return 1
			}
		}
		return 0
	}
	if len(gs) == 0 {
		fmt.Fprintln(stdout, "no grants")
		return 0
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GRANT\tUSER\tROLE\tSTATE\tEXPIRES\tPROVIDER\tREQUEST")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.ID, g.UserID, g.Role, g.State, when(g.ExpiresAt, now), g.Provider, g.RequestID)
	}
	_ = tw.Flush()
	return 0
}

// grantTrail is the audit events that name the grant (or its request), oldest first.
func grantTrail(ctx context.Context, st store.Store, g store.Grant) ([]store.AuditRecord, error) {
	var out []store.AuditRecord
	var seq uint64
	for {
		recs, err := st.ReadAudit(ctx, seq, 1000)
		if err != nil {
			return out, err
		}
		for _, r := range recs {
			seq = r.Seq
			if r.Event.GrantID == g.ID || (g.RequestID != "" && r.Event.RequestID == g.RequestID && r.Event.GrantID == "") {
				out = append(out, r)
			}
		}
		if len(recs) < 1000 {
			return out, nil
		}
	}
}

func grantsShow(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("grants show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "the grant as JSON (and its audit trail as JSON lines)")
	pos, err := interspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprint(stderr, "usage: jitbot grants show ID [--json]\n")
		return 2
	}
	_, st, ok := adminStore(ctx, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	g, err := st.GetGrant(ctx, pos[0])
	if errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(stderr, "jitbot grants show: there is no grant %q\n", pos[0])
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "jitbot grants show:", err)
		return 1
	}
	trail, err := grantTrail(ctx, st, g)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot grants show: audit trail:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		_ = enc.Encode(g)
		for _, r := range trail {
			_ = enc.Encode(exportedEntry{Seq: r.Seq, PrevHash: r.PrevHash, Hash: r.Hash, Event: r.Event})
		}
		return 0
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" && v != "-" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("grant", g.ID)
	row("request", g.RequestID)
	row("user", g.UserID)
	row("role", g.Role)
	row("state", string(g.State))
	row("provider", g.Provider)
	row("principal", g.Principal)
	for _, k := range slices.Sorted(mapKeys(g.Target)) {
		row("target."+k, g.Target[k])
	}
	row("duration", policy.FormatDuration(g.Duration))
	row("activated", when(g.ActivatedAt, now))
	row("expires", when(g.ExpiresAt, now))
	row("ended", when(g.EndedAt, now))
	row("end reason", g.EndReason)
	row("ended by", g.EndedBy)
	row("revoked", when(g.RevokedAt, now))
	row("covered by", g.CoveredBy)
	row("last error", g.LastError)
	_ = tw.Flush()
	fmt.Fprintf(stdout, "\naudit trail (%d events):\n", len(trail))
	for _, r := range trail {
		fmt.Fprintf(stdout, "  %6d  %s  %-22s %s%s\n", r.Seq, r.Event.At.UTC().Format(time.RFC3339), r.Event.Type, r.Event.Actor, detailText(r.Event.Details))
	}
	return 0
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func detailText(d map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(mapKeys(d)) {
		fmt.Fprintf(&b, "  %s=%q", k, d[k])
	}
	return b.String()
}

func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

func grantsRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("grants revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	actor := fs.String("actor", "", "who is revoking, recorded in the audit event (default: the OS user)")
	reason := fs.String("reason", "", "why (required; recorded in the audit event)")
	pos, err := interspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprint(stderr, "usage: jitbot grants revoke ID --reason TEXT [--actor NAME]\n")
		return 2
	}
	sysUser := osUser()
	if *actor == "" {
		*actor = sysUser
	}
	*actor, *reason = strings.TrimSpace(*actor), strings.TrimSpace(*reason)
	if *actor == "" {
		fmt.Fprintln(stderr, "jitbot grants revoke: --actor is required (the OS user could not be determined)")
		return 2
	}
	if *reason == "" {
		fmt.Fprintln(stderr, "jitbot grants revoke: --reason is required: it is recorded in the audit log")
		return 2
	}
	cfg, st, ok := adminStore(ctx, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	// Refuse before building providers when the grant does not exist or is over.
	g, err := st.GetGrant(ctx, pos[0])
	if errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(stderr, "jitbot grants revoke: there is no grant %q (nothing changed)\n", pos[0])
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "jitbot grants revoke:", err)
		return 1
	}
	if g.State.Terminal() {
		fmt.Fprintf(stderr, "jitbot grants revoke: grant %s is already %s (nothing changed)\n", g.ID, g.State)
		return 1
	}
	pol, err := loadPolicyForServe(cfg.PolicyFile)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot grants revoke: the providers come from the policy:", err)
		return 1
	}
	providers, err := app.BuildProviders(ctx, pol, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot grants revoke:", err)
		return 1
	}
	host, _ := os.Hostname()
	mgr, err := grants.NewManager(grants.Options{
		Store: st, Providers: providers, Holder: "cli-" + *actor + "-" + store.NewID("c"),
		AttemptTimeout: cfg.ProviderTimeout, MaxAttempts: cfg.MaxAttempts, BackoffBase: cfg.RetryBackoffBase, BackoffMax: cfg.RetryBackoffMax,
	})
	if err != nil {
		fmt.Fprintln(stderr, "jitbot grants revoke:", err)
		return 1
	}
	out, err := mgr.OperatorRevoke(ctx, g.ID, *actor, *reason, map[string]string{"via": "cli", "os_user": sysUser, "host": host})
	if msg, refused := refuse.Message(err); refused {
		fmt.Fprintf(stderr, "jitbot grants revoke: %s (nothing changed)\n", msg)
		return 1
	}
	if err != nil && out.ID == "" {
		// The binding lock was busy or the commit did not land: the grant was not touched.
		fmt.Fprintf(stderr, "jitbot grants revoke: %v (nothing changed; try again)\n", err)
		return 1
	}
	switch {
	case out.State == store.GrantRevoked && out.CoveredBy != "":
		fmt.Fprintf(stdout, "grant %s ended (recorded as revoked by %s), but the access stays at %s because grant %s still covers the same binding: revoke that one too\n",
			out.ID, *actor, out.Provider, out.CoveredBy)
	case out.State == store.GrantRevoked:
		fmt.Fprintf(stdout, "grant %s revoked at %s by %s\n", out.ID, out.Provider, *actor)
	case err != nil:
		fmt.Fprintf(stderr, "jitbot grants revoke: grant %s is ended and recorded as revoked by %s, but the provider call failed: %v\n"+
			"state %s: jitbot serve keeps retrying (attempt %d); check the provider\n", out.ID, *actor, err, out.State, out.Attempts)
		return 1
	default:
		fmt.Fprintf(stdout, "grant %s is %s (ended by %s); jitbot serve completes the revocation\n", out.ID, out.State, *actor)
	}
	return 0
}

func requestsList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("requests list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	userID := fs.String("user", "", "every request of this Slack user id (default: the pending requests)")
	asJSON := fs.Bool("json", false, "one JSON request per line")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	q := store.RequestQuery{Requester: *userID}
	if q.Requester == "" {
		q.State = store.RequestPending
	}
	_, st, ok := adminStore(ctx, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	rs, err := st.ListRequests(ctx, q)
	if err != nil {
		fmt.Fprintln(stderr, "jitbot requests list:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rs {
			if err := enc.Encode(r); err != nil {
				fmt.Fprintln(stderr, "jitbot requests list:", err)
				return 1
			}
		}
		return 0
	}
	if len(rs) == 0 {
		fmt.Fprintln(stdout, "no requests")
		return 0
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tREQUESTER\tROLE\tSTATE\tAPPROVALS\tCREATED\tGRANT\tREASON")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", r.ID, r.Requester, r.Role, r.State, len(r.Approvals), r.RequiredApprovals,
			when(r.CreatedAt, now), orDash(r.GrantID), clipText(r.Reason, 60))
	}
	_ = tw.Flush()
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clipText(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
