package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/bot"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/workload"
)

// Audit event types of policy reloads.
const (
	// EventPolicyReloaded: a new policy is in force. Details: sha256 (of the file), previous_sha256,
	// trigger (sighup, file-change, api), roles.
	EventPolicyReloaded = "policy-reloaded"
	// EventPolicyReloadRejected: a changed policy file was invalid and the previous policy stays in force.
	// Details: sha256, trigger, reason.
	EventPolicyReloadRejected = "policy-reload-rejected"
)

// DefaultPolicyPollInterval is how often the policy file is checked for changes when Tuning.PolicyPollInterval
// is zero. Polling the content (not inotify) also sees a Kubernetes ConfigMap's symlink swap.
const DefaultPolicyPollInterval = 5 * time.Second

// policyReloader re-reads the policy file, validates the new policy as start-up would, and puts it in force.
type policyReloader struct {
	a    *App
	path string
	// check validates a parsed policy beyond parsing: provider settings and secrets (as serve does at
	// start-up), and the Slack user groups it names.
	check func(ctx context.Context, p *policy.Policy) error

	mu   sync.Mutex
	data []byte // the file content in force
	sum  string // its sha256, hex
	// rejected is the sha256 of the last content refused, so an invalid file is reported once, not every poll.
	rejected string
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ErrPolicyUnchanged is returned by ReloadPolicy when the file's content is the policy already in force.
var ErrPolicyUnchanged = errors.New("policy file unchanged")

// ReloadPolicy re-reads the policy file (Deps.PolicyFile) and, when it is valid, puts it in force for every
// later decision, including requests that were created before; the reload is an audit event with the file's
// sha256. An invalid file changes nothing: the previous policy stays, the reason is logged and returned, and
// a policy-reload-rejected audit event records the attempt. trigger says why (sighup, file-change, ...).
func (a *App) ReloadPolicy(ctx context.Context, trigger string) error {
	if a.reloader == nil {
		return errors.New("policy reload: jitbot was started without a policy file (Deps.PolicyFile)")
	}
	return a.reloader.reload(ctx, trigger)
}

// PolicySHA256 is the sha256 of the policy file in force ("" when the App was built without a file).
func (a *App) PolicySHA256() string {
	if a.reloader == nil {
		return ""
	}
	a.reloader.mu.Lock()
	defer a.reloader.mu.Unlock()
	return a.reloader.sum
}

func (r *policyReloader) reload(ctx context.Context, trigger string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.a.log.With().Str("policy", r.path).Str("trigger", trigger).Logger()
	data, err := os.ReadFile(r.path)
	if err != nil {
		err = fmt.Errorf("policy reload: read %s: %w", r.path, err)
		log.Error().Err(err).Msg("policy reload failed; the previous policy stays in force")
		return err
	}
	sum := sha256Hex(data)
	if sum == r.sum {
		return ErrPolicyUnchanged
	}
	pol, auth, reason := r.validate(ctx, data)
	if reason != nil {
		err := fmt.Errorf("policy reload: the new policy (sha256 %s) is invalid, the previous one (sha256 %s) stays in force:\n%w", sum, r.sum, reason)
		if sum != r.rejected || trigger != "file-change" {
			r.rejected = sum
			log.Error().Str("sha256", sum).Str("in_force_sha256", r.sum).Str("reason", reason.Error()).Msg("policy reload rejected; the previous policy stays in force")
			r.audit(ctx, store.AuditEvent{Type: EventPolicyReloadRejected, Actor: "system:policy-reload",
				Details: map[string]string{"sha256": sum, "in_force_sha256": r.sum, "trigger": trigger, "reason": reason.Error()}})
		}
		return err
	}
	ev := store.AuditEvent{Type: EventPolicyReloaded, Actor: "system:policy-reload",
		Details: map[string]string{"sha256": sum, "previous_sha256": r.sum, "trigger": trigger, "roles": strconv.Itoa(len(pol.Roles))}}
	// The audit event lands before the policy is used, so no decision under it precedes its record.
	if err := r.audit(ctx, ev); err != nil {
		return fmt.Errorf("policy reload: record the reload: %w (the previous policy stays in force)", err)
	}
	r.a.Approvals.SetPolicy(pol)
	if auth != nil {
		r.a.issuerAuth.Store(auth)
		log.Info().Strs("issuers", pol.IssuerNames()).Msg("policy reload: the API now trusts the new policy's issuers")
	}
	r.data, r.sum, r.rejected = data, sum, ""
	log.Info().Str("sha256", sum).Int("roles", len(pol.Roles)).Msg("policy reloaded")
	return nil
}

// validate parses data and checks it as serve checks a policy at start-up. Providers and on-call sources
// hold live clients built at start-up, so a policy that changes them needs a restart and is refused. When
// the issuers changed and the App owns the API's authenticator, validate also builds the new authenticator
// (nil when nothing is to be replaced), so a reload that cannot trust its issuers changes nothing.
func (r *policyReloader) validate(ctx context.Context, data []byte) (*policy.Policy, workload.Authenticator, error) {
	pol, err := policy.Parse(r.path, data)
	if err != nil {
		return nil, nil, err
	}
	for _, section := range []string{"providers", "oncall_sources"} {
		same, err := sameSection(r.data, data, section)
		if err != nil {
			return nil, nil, err
		}
		if !same {
			return nil, nil, fmt.Errorf("the %s section changed: jitbot builds those clients at start-up, so restart it to apply that change", section)
		}
	}
	if r.check != nil {
		if err := r.check(ctx, pol); err != nil {
			return nil, nil, err
		}
	}
	// Unchanged issuers keep their authenticator, and with it the signing keys it has cached.
	same, err := sameSection(r.data, data, "issuers")
	if err != nil || same || r.a.rebuildAuth == nil {
		return pol, nil, err
	}
	auth, err := r.a.rebuildAuth(ctx, pol)
	if err != nil {
		return nil, nil, err
	}
	return pol, auth, nil
}

// sameSection reports whether the top-level key section decodes to the same value in both YAML documents
// (comments, order and layout do not matter).
func sameSection(a, b []byte, section string) (bool, error) {
	decode := func(doc []byte) (any, error) {
		var m map[string]any
		if err := yaml.NewDecoder(bytes.NewReader(doc)).Decode(&m); err != nil {
			return nil, err
		}
		return m[section], nil
	}
	va, err := decode(a)
	if err != nil {
		return false, fmt.Errorf("the policy in force does not decode: %w", err)
	}
	vb, err := decode(b)
	if err != nil {
		return false, err
	}
	return reflect.DeepEqual(va, vb), nil
}

func (r *policyReloader) audit(ctx context.Context, ev store.AuditEvent) error {
	ev.At = time.Now()
	if r.a.now != nil {
		ev.At = r.a.now()
	}
	if err := r.a.Store.Commit(ctx, store.Batch{Audit: []store.AuditEvent{ev}}); err != nil {
		r.a.log.Error().Err(err).Str("type", ev.Type).Msg("could not record the policy reload in the audit log")
		return err
	}
	r.a.bus.Publish(ctx, ev)
	return nil
}

// watch reloads the policy whenever the file's content changes, checking every interval, until ctx ends.
func (r *policyReloader) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(r.path)
		if err != nil {
			continue // a ConfigMap update swaps the file; the next poll sees the new one
		}
		r.mu.Lock()
		changed := sha256Hex(data) != r.sum
		r.mu.Unlock()
		if changed {
			_ = r.reload(ctx, "file-change")
		}
	}
}

// startupPolicyCheck is what serve checks before it starts: the provider settings and targets, and (with
// Slack) the user groups the policy names. Secrets need no new check: providers and on-call sources, which
// name them, cannot change in a reload.
func startupPolicyCheck(d Deps) func(ctx context.Context, p *policy.Policy) error {
	return func(ctx context.Context, p *policy.Policy) error {
		if probs := CheckPolicy(p); len(probs) > 0 {
			ps := policy.Problems(probs)
			return &ps
		}
		if d.Slack != nil && !d.Slack.SkipGroupCheck && d.Directory != nil {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := bot.CheckGroups(cctx, p, approvals.ChainDirectory{approvals.StaticDirectory(p.Groups), d.Directory}); err != nil {
				return fmt.Errorf("policy user groups: %w", err)
			}
		}
		return nil
	}
}
