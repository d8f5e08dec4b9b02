// Package playground is jitbot's local playground: the real engine and Slack front end running against the
// Slack emulator (bot/slackfake) in HTTP mode, a local signed-webhook receiver standing in for the target
// system, and a web page where a person acts as any user of the policy. The page is rendered from the Block
// Kit jitbot really sent; every action goes through the emulator as Slack would send it (signed slash
// commands, block_actions built from the stored message, view_submission).
package playground

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/audit"
	"github.com/jitbot/jitbot/bot/slackfake"
	"github.com/jitbot/jitbot/grants/webhook/webhookfake"
	"github.com/jitbot/jitbot/internal/app"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
)

// Options configures a Playground. Policy and Store are required.
type Options struct {
	Policy     *policy.Policy
	PolicyFile string // shown on the page
	Store      store.Store
	// Listen is the address of the page, its JSON API and jitbot's own endpoints (/healthz, /readyz,
	// /metrics, /slack/*). Default 127.0.0.1:8080; use 127.0.0.1:0 for a free port.
	Listen string
	Logger zerolog.Logger
	// Subscribers receive every committed audit event (the terminal printer of `jitbot dev`).
	Subscribers []audit.Subscriber
	Tuning      app.Tuning
	// ShutdownTimeout bounds the graceful shutdown in Run. Default 5s.
	ShutdownTimeout time.Duration
}

// User is a person of the example workspace.
type User struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`      // handle, e.g. "alice"
	RealName string   `json:"real_name"` // e.g. "Alice"
	Email    string   `json:"email,omitempty"`
	Requests []string `json:"requests"` // roles this user may request
	Approves []string `json:"approves"` // roles this user may approve
}

// Channel is a channel of the example workspace.
type Channel struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Purpose says why the channel exists ("approvals for prod-db-admin, …").
	Purpose string `json:"purpose,omitempty"`
}

// GeneralChannel is the id of the channel where people type commands by default.
const GeneralChannel = "C0PLAYGENERAL"

// Playground is a running playground. Start it with Start, run it with Run.
type Playground struct {
	opts     Options
	pol      *policy.Policy
	emu      *slackfake.Server
	recv     *webhookfake.Server
	app      *app.App
	users    []User
	userByID map[string]User
	channels []Channel
	chanByID map[string]Channel
	ln       net.Listener
	hookSrv  *http.Server
	srv      *http.Server
	url      string
	handler  http.Handler

	jobsState *pipelines // local OIDC issuers and simulated pipeline jobs
}

// Start builds everything and starts listening (the webhook receiver on the address of the policy's webhook
// provider, and the page on Options.Listen), but runs nothing yet: call Run.
func Start(opts Options) (_ *Playground, err error) {
	if opts.Policy == nil || opts.Store == nil {
		return nil, errors.New("playground: Policy and Store are required")
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:8080"
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	p := &Playground{opts: opts, pol: opts.Policy}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()

	// Every webhook provider of the policy is served by one local receiver with a fresh secret.
	secret := make([]byte, 24)
	_, _ = rand.Read(secret)
	env := map[string]string{}
	hookHost := ""
	for _, name := range sortedKeys(p.pol.Providers) {
		prov := p.pol.Providers[name]
		if prov.Type != "webhook" || prov.Webhook == nil {
			continue
		}
		env[prov.Webhook.SecretEnv] = "whsec_" + base64.StdEncoding.EncodeToString(secret)
		u, err := url.Parse(prov.Webhook.URL)
		if err != nil {
			return nil, err
		}
		if hookHost == "" {
			hookHost = u.Host
		} else if u.Host != hookHost {
			return nil, fmt.Errorf("playground: webhook providers must share one receiver address (%s and %s)", hookHost, u.Host)
		}
	}
	p.recv = webhookfake.NewHandler(secret)
	if hookHost != "" {
		ln, err := net.Listen("tcp", hookHost)
		if err != nil {
			return nil, fmt.Errorf("playground webhook receiver on %s: %w", hookHost, err)
		}
		p.hookSrv = &http.Server{Handler: p.recv, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = p.hookSrv.Serve(ln) }()
	}

	p.users = workspaceUsers(p.pol)
	p.userByID = map[string]User{}
	for _, u := range p.users {
		p.userByID[u.ID] = u
	}
	p.channels = workspaceChannels(p.pol)
	p.chanByID = map[string]Channel{}
	for _, c := range p.channels {
		p.chanByID[c.ID] = c
	}
	var emuUsers []slackfake.User
	for _, u := range p.users {
		emuUsers = append(emuUsers, slackfake.User{ID: u.ID, Name: u.Name, RealName: u.RealName, Email: u.Email})
	}
	var emuGroups []slackfake.UserGroup
	for _, id := range sortedKeys(p.pol.Groups) {
		emuGroups = append(emuGroups, slackfake.UserGroup{ID: id, Handle: strings.ToLower(shortName(id)), Name: shortName(id), Members: p.pol.Groups[id]})
	}
	var emuChannels []slackfake.Channel
	for _, c := range p.channels {
		emuChannels = append(emuChannels, slackfake.Channel{ID: c.ID, Name: c.Name})
	}
	p.emu = slackfake.New(slackfake.Options{Users: emuUsers, UserGroups: emuGroups, Channels: emuChannels})

	if err := p.startIssuers(); err != nil {
		return nil, err
	}
	p.app, err = app.New(context.Background(), app.Deps{Policy: p.pol, Store: opts.Store, Logger: opts.Logger, Subscribers: opts.Subscribers,
		Getenv: func(k string) string { return env[k] }, Tuning: opts.Tuning,
		Slack: &app.SlackConfig{BotToken: p.emu.BotToken(), SigningSecret: p.emu.SigningSecret(), APIURL: p.emu.APIURL()}})
	if err != nil {
		return nil, err
	}

	p.ln, err = net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("playground page on %s: %w", opts.Listen, err)
	}
	p.url = "http://" + dialable(p.ln.Addr())
	p.emu.SetRequestURLs(p.url+"/slack/commands", p.url+"/slack/interactions", p.url+"/slack/events")
	p.handler = p.routes(p.app.Handler())
	return p, nil
}

// URL is where the page is served, e.g. http://127.0.0.1:8080 (no trailing slash).
func (p *Playground) URL() string { return p.url }

// Emulator is the Slack emulator the playground drives (for tests).
func (p *Playground) Emulator() *slackfake.Server { return p.emu }

// Receiver is the webhook receiver standing in for the target system (for tests).
func (p *Playground) Receiver() *webhookfake.Server { return p.recv }

// Users are the people of the example workspace, in the order the page lists them.
func (p *Playground) Users() []User { return p.users }

// Channels are the channels of the example workspace, general first.
func (p *Playground) Channels() []Channel { return p.channels }

// Handler serves the page, the JSON API and jitbot's own endpoints.
func (p *Playground) Handler() http.Handler { return p.handler }

// Run serves and runs the engine (sweeper, notifier, Slack handlers) until ctx ends, then shuts down
// gracefully and closes everything Start opened (but not the store).
func (p *Playground) Run(ctx context.Context) error {
	defer p.Close()
	p.srv = &http.Server{Handler: p.handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	engineCtx, stopEngine := context.WithCancel(ctx)
	defer stopEngine()
	engineDone := make(chan error, 1)
	go func() { engineDone <- p.app.Run(engineCtx) }()
	httpDone := make(chan error, 1)
	go func() { httpDone <- p.srv.Serve(p.ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-httpDone:
		err = fmt.Errorf("playground http server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.ShutdownTimeout)
	defer cancel()
	_ = p.srv.Shutdown(sctx)
	stopEngine()
	select {
	case e := <-engineDone:
		if err == nil {
			err = e
		}
	case <-sctx.Done():
	}
	return err
}

// Close stops the listeners and the emulator. Run calls it; call it yourself only when Run never ran.
func (p *Playground) Close() {
	if p.srv == nil && p.ln != nil {
		_ = p.ln.Close()
	}
	if p.hookSrv != nil {
		_ = p.hookSrv.Close()
	}
	if p.emu != nil {
		p.emu.Close()
	}
	p.stopIssuers()
}

// dialable turns a listener address into one a local client can dial (":8080" -> "127.0.0.1:8080").
func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// shortName turns a made-up Slack id into a readable name: "U01ALICE" -> "ALICE", "C0123APPROVALS" ->
// "APPROVALS", "S0456DBA" -> "DBA". An id without such a tail is returned as is.
func shortName(id string) string {
	rest := strings.TrimLeftFunc(id[min(1, len(id)):], unicode.IsDigit)
	if rest == "" {
		return id
	}
	return rest
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	r := []rune(strings.ToLower(s))
	r[0] = unicode.ToUpper(r[0])
	return string(r)
}

// workspaceUsers lists every user the policy names (requesters, approvers, group members, identities),
// with a handle and an email taken from the identities when they hold an email address.
func workspaceUsers(pol *policy.Policy) []User {
	var ids []string
	add := func(us ...string) {
		for _, u := range us {
			if !slices.Contains(ids, u) {
				ids = append(ids, u)
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
	for id := range pol.Identities {
		add(id)
	}
	slices.Sort(ids)
	members := func(s policy.Subjects) []string {
		out := slices.Clone(s.Users)
		for _, g := range s.Groups {
			out = append(out, pol.Groups[g]...)
		}
		return out
	}
	var users []User
	for _, id := range ids {
		u := User{ID: id, Name: strings.ToLower(shortName(id)), Requests: []string{}, Approves: []string{}}
		for _, prov := range sortedKeys(pol.Identities[id]) {
			if p := pol.Identities[id][prov]; strings.Contains(p, "@") {
				u.Email = p
				u.Name = strings.ToLower(p[:strings.Index(p, "@")])
				break
			}
		}
		u.RealName = titleCase(u.Name)
		for _, name := range pol.RoleNames() {
			r, _ := pol.Role(name)
			if slices.Contains(members(r.Requesters), id) {
				u.Requests = append(u.Requests, name)
			}
			if slices.Contains(members(r.Approvers), id) {
				u.Approves = append(u.Approves, name)
			}
		}
		users = append(users, u)
	}
	return users
}

// workspaceChannels lists #general and every approval and audit channel of the policy.
func workspaceChannels(pol *policy.Policy) []Channel {
	var order []string
	approves := map[string][]string{}
	audits := map[string]bool{}
	seen := func(id string) {
		if id != "" && !slices.Contains(order, id) {
			order = append(order, id)
		}
	}
	seen(pol.Defaults.ApprovalChannel)
	seen(pol.Defaults.AuditChannel)
	for _, name := range pol.RoleNames() {
		r, _ := pol.Role(name)
		seen(r.ApprovalChannel)
		seen(r.AuditChannel)
		if r.ApprovalChannel != "" {
			approves[r.ApprovalChannel] = append(approves[r.ApprovalChannel], name)
		}
		if r.AuditChannel != "" {
			audits[r.AuditChannel] = true
		}
	}
	if pol.Defaults.AuditChannel != "" {
		audits[pol.Defaults.AuditChannel] = true
	}
	chans := []Channel{{ID: GeneralChannel, Name: "general", Purpose: "type /jit commands here"}}
	names := map[string]bool{"general": true}
	for _, id := range order {
		base := strings.ToLower(shortName(id))
		name := base
		for i := 2; names[name]; i++ {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		names[name] = true
		var why []string
		if len(approves[id]) > 0 {
			why = append(why, "approvals for "+strings.Join(approves[id], ", "))
		}
		if audits[id] {
			why = append(why, "audit log")
		}
		chans = append(chans, Channel{ID: id, Name: name, Purpose: strings.Join(why, "; ")})
	}
	return chans
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
