package identitycenter

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/identitystore"
	istypes "github.com/aws/aws-sdk-go-v2/service/identitystore/types"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin/types"
	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/aws/internal/awsutil"
)

var _ grants.OtherAccessInspector = (*Provider)(nil)

// maxGroupIDs is how many group ids one identitystore IsMemberInGroups call takes (GroupIds: 1 to 100 items,
// as the Identity Store API reference documents it).
const maxGroupIDs = 100

// Inspect (grants.OtherAccessInspector) reports, whatever Assignment.Ref says, whether the user's own account
// assignment of the permission set in the account is present (Ours: what Check answers, the object jitbot
// creates; Identity Center cannot tell jitbot's from an administrator's equal USER assignment, see
// grants.PreExistingRef) and which GROUP assignments of the same permission set in the same account give the
// user the same access through a group the user is a member of (Other, named "group/<GroupId>", sorted).
//
// It makes one ListAccountAssignments pass for the account and permission set (all pages), and, when groups
// are assigned, identitystore IsMemberInGroups for the user and those group ids, at most 100 per call. A
// permission set or account that is gone (ResourceNotFoundException on the list) holds nothing.
//
// The group read is optional: when IsMemberInGroups fails with an error retrying cannot fix (AccessDenied
// because the policy lacks identitystore:IsMemberInGroups, a ResourceNotFoundException, any other permanent
// code), or no IdentityStoreID is configured, Inspect reports Ours alone and logs a warning once per Provider,
// so that a missing permission never fails the verification of a revoke (jitbot then records revoke-verified
// where access may remain through a group). Retryable failures of the group read (throttling, 5xx, network,
// context) are returned as retryable errors, as Check's are: the manager asks again rather than call the access
// gone on a guess. Every error of the list is classified as Check's.
func (p *Provider) Inspect(ctx context.Context, a grants.Assignment) (grants.Presence, error) {
	if err := ctx.Err(); err != nil {
		return grants.Presence{}, fmt.Errorf("identitycenter: inspect %s: %w", a.GrantID, err)
	}
	acct, ps, err := target(a)
	if err != nil {
		return grants.Presence{}, err
	}
	uid, err := p.principalID(ctx, a)
	if err != nil {
		return grants.Presence{}, err
	}
	var pr grants.Presence
	var groups []string
	err = p.list(ctx, acct, ps, func(as types.AccountAssignment) bool {
		id := aws.ToString(as.PrincipalId)
		switch as.PrincipalType {
		case types.PrincipalTypeUser:
			if strings.EqualFold(id, uid) {
				pr.Ours = true
			}
		case types.PrincipalTypeGroup:
			if id != "" && !slices.Contains(groups, id) {
				groups = append(groups, id)
			}
		}
		return true
	})
	if awsutil.Code(err) == "ResourceNotFoundException" {
		return grants.Presence{}, nil // the permission set (or account) does not exist: nothing is assigned
	}
	if err != nil {
		return grants.Presence{}, fmt.Errorf("identitycenter: inspect %s: %w", a.GrantID, err)
	}
	if len(groups) == 0 {
		return pr, nil
	}
	if p.cfg.IdentityStoreID == "" {
		p.warnGroupRead(ctx, "no IdentityStoreID is configured", nil)
		return pr, nil
	}
	member, err := p.memberOf(ctx, uid, groups)
	if err != nil {
		if grants.IsPermanent(err) {
			p.warnGroupRead(ctx, "IsMemberInGroups failed", err)
			return pr, nil
		}
		return grants.Presence{}, fmt.Errorf("identitycenter: inspect %s: %w", a.GrantID, err)
	}
	for _, g := range member {
		pr.Other = append(pr.Other, "group/"+g)
	}
	return pr, nil
}

// memberOf returns, sorted, the groups among groups that the user uid is a member of.
func (p *Provider) memberOf(ctx context.Context, uid string, groups []string) ([]string, error) {
	var member []string
	for batch := range slices.Chunk(groups, maxGroupIDs) {
		var out *identitystore.IsMemberInGroupsOutput
		err := p.withConflictRetry(ctx, func() (e error) {
			out, e = p.store.IsMemberInGroups(ctx, &identitystore.IsMemberInGroupsInput{
				IdentityStoreId: aws.String(p.cfg.IdentityStoreID),
				MemberId:        &istypes.MemberIdMemberUserId{Value: uid},
				GroupIds:        batch,
			})
			return e
		})
		if err != nil {
			return nil, fmt.Errorf("IsMemberInGroups: %w", classify(err))
		}
		for _, r := range out.Results {
			g := aws.ToString(r.GroupId)
			// Only answers about the groups asked: a result naming another group is ignored.
			if r.MembershipExists && slices.Contains(batch, g) && !slices.Contains(member, g) {
				member = append(member, g)
			}
		}
	}
	slices.Sort(member)
	return member, nil
}

// warnGroupRead logs, the first time only, that Inspect reports jitbot's access alone because it cannot read
// group memberships. A call whose context carries no logger (and no Config.Logger) does not use up the warning.
func (p *Provider) warnGroupRead(ctx context.Context, why string, err error) {
	l := zerolog.Ctx(ctx)
	if p.cfg.Logger != nil {
		l = p.cfg.Logger
	}
	if l.GetLevel() == zerolog.Disabled || p.groupWarned.Swap(true) {
		return
	}
	l.Warn().Err(err).Str("provider", "aws-identity-center").Str("why", why).
		Msg("identitycenter: cannot read group memberships; revoke verification reports only the user's own assignment, not access that remains through groups (grant identitystore:IsMemberInGroups to report it)")
}
