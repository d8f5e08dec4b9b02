package approvals

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Directory resolves user groups to their members. Implementations: StaticDirectory (groups written in the
// policy) and the Slack user-group resolver in bot/. An error means membership is unknown, and jitbot then
// refuses (fails closed).
type Directory interface {
	GroupMembers(ctx context.Context, groupID string) ([]string, error)
}

// StaticDirectory serves the `groups:` section of the policy file.
type StaticDirectory map[string][]string

// ErrUnknownGroup is returned by StaticDirectory for a group it does not define.
var ErrUnknownGroup = errors.New("unknown user group")

func (d StaticDirectory) GroupMembers(_ context.Context, groupID string) ([]string, error) {
	m, ok := d[groupID]
	if !ok {
		return nil, fmt.Errorf("approvals: group %s: %w", groupID, ErrUnknownGroup)
	}
	return m, nil
}

// ChainDirectory asks each directory in turn and returns the first answer that is not ErrUnknownGroup.
type ChainDirectory []Directory

func (c ChainDirectory) GroupMembers(ctx context.Context, groupID string) ([]string, error) {
	var lastErr error = fmt.Errorf("approvals: group %s: %w", groupID, ErrUnknownGroup)
	for _, d := range c {
		m, err := d.GroupMembers(ctx, groupID)
		if err == nil {
			return m, nil
		}
		lastErr = err
		if !errors.Is(err, ErrUnknownGroup) {
			return nil, err
		}
	}
	return nil, lastErr
}

// isMember reports whether user is listed directly or through one of groups. A group lookup error is returned
// (the caller fails closed), unless the user is already listed directly.
func isMember(ctx context.Context, dir Directory, users, groups []string, user string) (bool, error) {
	if slices.Contains(users, user) {
		return true, nil
	}
	for _, g := range groups {
		if dir == nil {
			return false, fmt.Errorf("approvals: no directory to resolve group %s", g)
		}
		members, err := dir.GroupMembers(ctx, g)
		if err != nil {
			return false, err
		}
		if slices.Contains(members, user) {
			return true, nil
		}
	}
	return false, nil
}
