package bot

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/jitbot/jitbot/approvals"
	"github.com/jitbot/jitbot/policy"
)

// Directory resolves Slack user groups through usergroups.users.list, caching each answer for TTL (the
// method is Tier 2: about 20 calls a minute). Errors are never cached and make eligibility fail closed.
type Directory struct {
	api SlackAPI
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	members []string
	at      time.Time
}

var _ approvals.Directory = (*Directory)(nil)

// NewDirectory returns a Directory; ttl <= 0 means 5 minutes.
func NewDirectory(api SlackAPI, ttl time.Duration) *Directory {
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	return &Directory{api: api, ttl: ttl, now: time.Now, cache: map[string]cached{}}
}

// ErrNoUserGroups means the workspace cannot use user groups (a free plan).
var ErrNoUserGroups = errors.New("this Slack workspace has no user groups (they need a paid plan)")

func (d *Directory) GroupMembers(ctx context.Context, groupID string) ([]string, error) {
	d.mu.Lock()
	c, ok := d.cache[groupID]
	d.mu.Unlock()
	if ok && d.now().Sub(c.at) < d.ttl {
		return c.members, nil
	}
	members, err := d.api.GetUserGroupMembersContext(ctx, groupID)
	if err != nil {
		var se slack.SlackErrorResponse
		if errors.As(err, &se) {
			switch se.Err {
			case "plan_upgrade_required", "paid_teams_only":
				return nil, fmt.Errorf("bot: user group %s: %w; list the group under groups: in the policy instead", groupID, ErrNoUserGroups)
			case "no_such_subteam", "subteam_not_found":
				return nil, fmt.Errorf("bot: user group %s does not exist in this workspace: %w", groupID, approvals.ErrUnknownGroup)
			}
		}
		return nil, fmt.Errorf("bot: resolve user group %s: %w", groupID, err)
	}
	d.mu.Lock()
	d.cache[groupID] = cached{members: members, at: d.now()}
	d.mu.Unlock()
	return members, nil
}

// CheckGroups resolves every user group the policy names and does not define statically, so that a
// workspace without user groups (or a typo in a group id) stops start-up with a clear message instead of
// failing every request later.
func CheckGroups(ctx context.Context, p *policy.Policy, d approvals.Directory) error {
	seen := map[string]bool{}
	var errs []error
	for _, name := range p.RoleNames() {
		r, _ := p.Role(name)
		for _, g := range append(append([]string{}, r.Requesters.Groups...), r.Approvers.Groups...) {
			if seen[g] {
				continue
			}
			seen[g] = true
			if _, static := p.Groups[g]; static {
				continue
			}
			if _, err := d.GroupMembers(ctx, g); err != nil {
				errs = append(errs, fmt.Errorf("%s: role %s names user group %s: %w", p.File, name, g, err))
			}
		}
	}
	return errors.Join(errs...)
}
