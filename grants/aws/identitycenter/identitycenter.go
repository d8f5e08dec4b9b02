// Package identitycenter is a grants.Provider for AWS IAM Identity Center (formerly AWS SSO) account
// assignments: granting assigns a permission set in an AWS account to an Identity Center user; revoking removes
// that assignment.
//
// # Operations
//
//   - Grant: sso-admin ListAccountAssignments first: an assignment already there while jitbot holds no
//     reference for the binding (Assignment.Ref) is standing access, returned as grants.PreExistingRef and never
//     removed by Revoke. Otherwise CreateAccountAssignment (PrincipalType USER, TargetType AWS_ACCOUNT), then
//     DescribeAccountAssignmentCreationStatus every PollInterval until SUCCEEDED or FAILED. References: "ic:owned"
//     once jitbot's creation SUCCEEDED, "ic:create:<request id>" while it runs (returned with the error when the
//     attempt's time runs out, so that the next attempt resumes polling it instead of creating again).
//   - Revoke: nothing for a pre-existing reference. Otherwise (after waiting for jitbot's own creation request,
//     if the reference names one) DeleteAccountAssignment, then DescribeAccountAssignmentDeletionStatus.
//     ResourceNotFoundException, or a FAILED deletion after which the assignment is absent, is success.
//   - Check: ListAccountAssignments for the account and permission set (all pages), looking for the principal
//     as a USER. ResourceNotFoundException (the permission set or account is gone) means not present.
//   - Inspect (grants.OtherAccessInspector, what jitbot verifies a revoke with): the same list answers whether
//     the user's own assignment is present (as Check) and which groups are assigned the permission set in the
//     account; identitystore IsMemberInGroups (at most 100 group ids per call) tells which of them the user is a
//     member of, reported as "group/<GroupId>": access that remains after jitbot's revoke, recorded as
//     access-remains. The group read is optional: denied (or otherwise permanently failing, or without an
//     IdentityStoreID), Inspect reports the user's own assignment alone and warns once (see Inspect).
//
// # Requests in flight
//
// The adapter never decides from a list while a request for the same assignment runs (a creation in flight is not
// listed yet, a deletion in flight still is): on ConflictException, when the list shows the assignment, and when
// a delete answers ResourceNotFoundException, it lists the instance's IN_PROGRESS creation and deletion requests
// (ListAccountAssignmentCreationStatus / ListAccountAssignmentDeletionStatus), describes each to find those for
// the assignment, waits for them to end, and decides again. All waits of one Grant or Revoke share PollTimeout;
// AttemptBudget declares PollTimeout plus a margin so that the manager's attempt fits.
//
// # Principals
//
// Assignment.Principal is an Identity Center user id ("<10 hex>-<uuid>" or a bare UUID), used as is, or a user
// name (often the e-mail address) that is resolved with identitystore GetUserId on the unique attribute
// "userName". Resolutions are cached for Config.UserCacheTTL. A name that does not resolve is a permanent error
// for grant, revoke and check alike: revoke cannot prove the access is gone if the user was renamed after the
// grant, so it fails loudly instead of claiming success. Map users to ids in the policy where you can.
//
// # Errors
//
// ThrottlingException, InternalServerException, any 5xx, network errors and context errors are retryable.
// ConflictException on create or delete makes the adapter wait for the requests in flight for the assignment
// (see above) and try again, at most Config.ConflictRetries more times, then it is returned as retryable; on the
// other calls it is retried Config.ConflictRetries times with backoff.
// AccessDeniedException, ValidationException, ServiceQuotaExceededException, signature and credential rejections
// are permanent, and so is ResourceNotFoundException on grant. A FAILED request is permanent when its failure
// reason says something does not exist, is not supported, is invalid or exceeds a quota, and retryable otherwise.
// The SDK's own retryer makes at most Config.RetryMaxAttempts attempts per call (default 3), because jitbot
// retries whole operations itself.
//
// # Drift inventory
//
// Account assignments carry no tags, so ListOwned cannot tell jitbot's assignments from anybody else's. It lists
// every USER assignment of the account/permission-set pairs in Config.Scopes (the targets of the policy's roles)
// and reports them with an empty GrantID, marked Unattributed: the reconciler leaves such entries in place (they
// may be standing access) and only reports them. Principals are reported as user ids, or as user names when
// Config.OwnedPrincipal is "user_name" (one identitystore DescribeUser per user); the reconciler can only match
// principals whose form matches what the store holds.
package identitycenter

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/identitystore"
	"github.com/aws/aws-sdk-go-v2/service/identitystore/document"
	istypes "github.com/aws/aws-sdk-go-v2/service/identitystore/types"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin/types"
	"github.com/rs/zerolog"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/aws/internal/awsutil"
	"github.com/jitbot/jitbot/grants/providerkit"
)

// Target keys.
const (
	TargetAccountID        = "account_id"
	TargetPermissionSetARN = "permission_set_arn"
)

// Defaults.
const (
	DefaultPollInterval = 2 * time.Second
	DefaultPollTimeout  = 2 * time.Minute
	DefaultUserCacheTTL = 5 * time.Minute
)

var (
	accountIDRe   = regexp.MustCompile(`^\d{12}$`)
	permSetARNRe  = regexp.MustCompile(`^arn:(aws|aws-us-gov|aws-cn|aws-iso|aws-iso-b):sso:::permissionSet/(sso)?ins-[a-zA-Z0-9-.]{16}/ps-[a-zA-Z0-9-./]{16}$`)
	instanceARNRe = regexp.MustCompile(`^arn:(aws|aws-us-gov|aws-cn|aws-iso|aws-iso-b):sso:::instance/(sso)?ins-[a-zA-Z0-9-.]{16}$`)
	storeIDRe     = regexp.MustCompile(`^d-[0-9a-f]{10}$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	userIDRe      = regexp.MustCompile(`^([0-9a-f]{10}-)?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
	regionRe      = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)
)

// Scope is one account/permission-set pair that ListOwned inspects.
type Scope struct {
	AccountID        string
	PermissionSetARN string
}

// Config configures a Provider.
type Config struct {
	// InstanceARN of the Identity Center instance ("arn:aws:sso:::instance/ssoins-..."). Required.
	InstanceARN string
	// IdentityStoreID of the instance ("d-..."). Required to resolve user names.
	IdentityStoreID string
	// Region of the Identity Center instance. Required.
	Region string
	// Endpoint overrides the endpoint of both sso-admin and identitystore (tests, private endpoints).
	Endpoint string
	// Credentials; nil uses the SDK's default chain (config.LoadDefaultConfig).
	Credentials aws.CredentialsProvider
	// HTTPClient; nil uses the SDK's default.
	HTTPClient aws.HTTPClient

	// PollInterval between status polls (default DefaultPollInterval); PollTimeout bounds the wait for an
	// asynchronous request (default DefaultPollTimeout), after which the operation returns a retryable error.
	PollInterval, PollTimeout time.Duration
	// RetryMaxAttempts per SDK call, first attempt included (default 3; 1 disables the SDK's retries).
	RetryMaxAttempts int
	// RetryMaxBackoff caps the SDK's backoff (default 2s).
	RetryMaxBackoff time.Duration
	// ConflictRetries is how often a ConflictException is retried here (default 4; negative disables);
	// ConflictBackoff is the first delay, doubled each time (default 250ms).
	ConflictRetries int
	ConflictBackoff time.Duration
	// UserCacheTTL is how long a resolved user name is remembered (default 5m; negative disables the cache).
	UserCacheTTL time.Duration

	// Scopes are the account/permission-set pairs ListOwned lists (see the package documentation).
	Scopes []Scope
	// OwnedPrincipal is how ListOwned reports principals: "user_id" (default) or "user_name".
	OwnedPrincipal string
	// Logger receives the warning that Inspect cannot read group memberships (see Inspect); nil uses the
	// logger of the call's context (zerolog.Ctx).
	Logger *zerolog.Logger
}

// Settings is what the policy's provider block of type "aws-identity-center" provides.
type Settings struct {
	InstanceARN     string `policy:"instance_arn"`      // required
	IdentityStoreID string `policy:"identity_store_id"` // required
	Region          string `policy:"region"`            // required
	Endpoint        string `policy:"endpoint"`          // optional https URL
}

// Validate checks the settings; every problem is reported.
func (s Settings) Validate() error {
	var errs []error
	if !instanceARNRe.MatchString(s.InstanceARN) {
		errs = append(errs, providerkit.SettingErrorf("instance_arn", "%q is not an Identity Center instance ARN (arn:aws:sso:::instance/ssoins-<16 characters>)", s.InstanceARN))
	}
	if !storeIDRe.MatchString(s.IdentityStoreID) {
		errs = append(errs, providerkit.SettingErrorf("identity_store_id", "%q is not an identity store id (d-<10 hex digits>)", s.IdentityStoreID))
	}
	if !regionRe.MatchString(s.Region) {
		errs = append(errs, providerkit.SettingErrorf("region", "%q is not an AWS region such as us-east-1", s.Region))
	}
	if s.Endpoint != "" {
		if err := awsutil.ValidateEndpoint(s.Endpoint); err != nil {
			errs = append(errs, &providerkit.FieldError{Key: "endpoint", Err: err})
		}
	}
	return errors.Join(errs...)
}

// Config returns a Config carrying the settings (credentials from the default chain).
func (s Settings) Config() Config {
	return Config{InstanceARN: s.InstanceARN, IdentityStoreID: s.IdentityStoreID, Region: s.Region, Endpoint: s.Endpoint}
}

// ValidateTarget checks a role's target map: account_id (12 digits) and permission_set_arn, nothing else.
func ValidateTarget(t map[string]string) error {
	var errs []error
	for k := range t {
		if k != TargetAccountID && k != TargetPermissionSetARN {
			errs = append(errs, fmt.Errorf("unknown target key %q (aws-identity-center targets take %s and %s)", k, TargetAccountID, TargetPermissionSetARN))
		}
	}
	switch acct, ok := t[TargetAccountID]; {
	case !ok:
		errs = append(errs, fmt.Errorf("target needs %s (the 12-digit AWS account id)", TargetAccountID))
	case !accountIDRe.MatchString(acct):
		errs = append(errs, fmt.Errorf("%s %q is not a 12-digit AWS account id (quote it in YAML so leading zeros survive)", TargetAccountID, acct))
	}
	switch ps, ok := t[TargetPermissionSetARN]; {
	case !ok:
		errs = append(errs, fmt.Errorf("target needs %s (arn:aws:sso:::permissionSet/ssoins-.../ps-...)", TargetPermissionSetARN))
	case !permSetARNRe.MatchString(ps):
		errs = append(errs, fmt.Errorf("%s %q is not a permission set ARN (arn:aws:sso:::permissionSet/ssoins-<16>/ps-<16>)", TargetPermissionSetARN, ps))
	}
	return errors.Join(errs...)
}

// IsUserID reports whether p has the form of an Identity Center user id (and is therefore used as is).
func IsUserID(p string) bool { return userIDRe.MatchString(p) }

type cached struct {
	id      string
	expires time.Time
}

// Provider implements grants.Provider, grants.Inventory and grants.OtherAccessInspector.
type Provider struct {
	cfg   Config
	sso   *ssoadmin.Client
	store *identitystore.Client

	mu    sync.Mutex
	users map[string]cached
	now   func() time.Time

	groupWarned atomic.Bool // Inspect has warned that it cannot read group memberships
}

var (
	_ grants.Provider  = (*Provider)(nil)
	_ grants.Inventory = (*Provider)(nil)
)

// New builds a Provider. It makes no API call.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if !instanceARNRe.MatchString(cfg.InstanceARN) {
		return nil, fmt.Errorf("identitycenter: InstanceARN %q is not an Identity Center instance ARN", cfg.InstanceARN)
	}
	if cfg.IdentityStoreID != "" && !storeIDRe.MatchString(cfg.IdentityStoreID) {
		return nil, fmt.Errorf("identitycenter: IdentityStoreID %q is not an identity store id", cfg.IdentityStoreID)
	}
	if cfg.Region == "" {
		return nil, errors.New("identitycenter: Region is required")
	}
	for i, s := range cfg.Scopes {
		if err := ValidateTarget(map[string]string{TargetAccountID: s.AccountID, TargetPermissionSetARN: s.PermissionSetARN}); err != nil {
			return nil, fmt.Errorf("identitycenter: Scopes[%d]: %w", i, err)
		}
	}
	switch cfg.OwnedPrincipal {
	case "", "user_id", "user_name":
	default:
		return nil, fmt.Errorf("identitycenter: OwnedPrincipal %q: want user_id or user_name", cfg.OwnedPrincipal)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = DefaultPollTimeout
	}
	if cfg.ConflictRetries == 0 {
		cfg.ConflictRetries = awsutil.DefaultConflictRetries
	}
	if cfg.ConflictBackoff <= 0 {
		cfg.ConflictBackoff = awsutil.DefaultConflictBackoff
	}
	if cfg.UserCacheTTL == 0 {
		cfg.UserCacheTTL = DefaultUserCacheTTL
	}
	awsCfg, err := awsutil.AWSConfig(ctx, awsutil.ClientConfig{
		Region: cfg.Region, Endpoint: cfg.Endpoint, Credentials: cfg.Credentials, HTTPClient: cfg.HTTPClient,
		RetryMaxAttempts: cfg.RetryMaxAttempts, RetryMaxBackoff: cfg.RetryMaxBackoff,
	})
	if err != nil {
		return nil, fmt.Errorf("identitycenter: loading AWS configuration: %w", err)
	}
	return &Provider{
		cfg:   cfg,
		sso:   ssoadmin.NewFromConfig(awsCfg),
		store: identitystore.NewFromConfig(awsCfg),
		users: map[string]cached{},
		now:   time.Now,
	}, nil
}

// Scopes returns the account/permission-set pairs ListOwned lists.
func (p *Provider) Scopes() []Scope { return slices.Clone(p.cfg.Scopes) }

// target extracts and validates the target of a.
func target(a grants.Assignment) (acct, ps string, err error) {
	if err := ValidateTarget(a.Target); err != nil {
		return "", "", grants.Permanent(fmt.Errorf("identitycenter: grant %s: %w", a.GrantID, err))
	}
	return a.Target[TargetAccountID], a.Target[TargetPermissionSetARN], nil
}

// classify marks err permanent when retrying cannot help. ResourceNotFoundException is permanent here; revoke
// and check handle it before classifying.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	switch awsutil.Code(err) {
	case "AccessDeniedException", "ValidationException", "ServiceQuotaExceededException", "ResourceNotFoundException",
		"UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
		"MissingAuthenticationTokenException", "InvalidClientTokenId", "UnknownOperationException",
		"SerializationException":
		return grants.Permanent(err)
	}
	return err
}

// withConflictRetry runs fn, retrying ConflictException with doubling backoff.
func (p *Provider) withConflictRetry(ctx context.Context, fn func() error) error {
	return awsutil.RetryCode(ctx, "ConflictException", p.cfg.ConflictRetries, p.cfg.ConflictBackoff, fn)
}

// principalID resolves a.Principal to a user id.
func (p *Provider) principalID(ctx context.Context, a grants.Assignment) (string, error) {
	name := strings.TrimSpace(a.Principal)
	if name == "" {
		return "", grants.Permanent(fmt.Errorf("identitycenter: grant %s: empty principal", a.GrantID))
	}
	if IsUserID(name) {
		return name, nil
	}
	if p.cfg.IdentityStoreID == "" {
		return "", grants.Permanent(fmt.Errorf("identitycenter: principal %q is not a user id and no IdentityStoreID is configured to resolve it", name))
	}
	if p.cfg.UserCacheTTL > 0 {
		p.mu.Lock()
		c, ok := p.users[name]
		p.mu.Unlock()
		if ok && p.now().Before(c.expires) {
			return c.id, nil
		}
	}
	out, err := p.store.GetUserId(ctx, &identitystore.GetUserIdInput{
		IdentityStoreId: aws.String(p.cfg.IdentityStoreID),
		AlternateIdentifier: &istypes.AlternateIdentifierMemberUniqueAttribute{Value: istypes.UniqueAttribute{
			AttributePath:  aws.String("userName"),
			AttributeValue: document.NewLazyDocument(name),
		}},
	})
	if err != nil {
		if awsutil.Code(err) == "ResourceNotFoundException" {
			return "", grants.Permanent(fmt.Errorf("identitycenter: no Identity Center user named %q in %s (if the user was renamed or deleted after a grant, check its assignments by hand): %w", name, p.cfg.IdentityStoreID, err))
		}
		return "", fmt.Errorf("identitycenter: resolving user %q: %w", name, classify(err))
	}
	id := aws.ToString(out.UserId)
	if !IsUserID(id) {
		return "", fmt.Errorf("identitycenter: GetUserId for %q returned a malformed user id", name)
	}
	if p.cfg.UserCacheTTL > 0 {
		p.mu.Lock()
		p.users[name] = cached{id: id, expires: p.now().Add(p.cfg.UserCacheTTL)}
		p.mu.Unlock()
	}
	return id, nil
}

// References Grant returns and reads back from Assignment.Ref.
const (
	refOwned    = "ic:owned"  // jitbot created the assignment, and it is jitbot's to remove
	refCreating = "ic:create" // jitbot asked for the assignment; ":<request id>" once the request id is known
)

// refPreExisting marks an assignment that was there before jitbot granted it (standing access).
var refPreExisting = grants.PreExistingRef("identitycenter")

var requestIDRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

type ownership int

const (
	ownUnknown  ownership = iota // jitbot holds no reference for the binding: look before deciding
	ownJitbot                    // jitbot created (or asked to create) the assignment
	ownStanding                  // the assignment pre-existed the grant
)

// parseRef reads a reference. Anything jitbot does not recognise counts as jitbot's own (fail closed: an
// assignment jitbot cannot prove is standing access is removed at revoke); a bare request id is what older
// versions returned.
func parseRef(ref string) (ownership, string) {
	switch {
	case ref == "", ref == grants.RefUntouched:
		return ownUnknown, ""
	case grants.IsPreExisting(ref):
		return ownStanding, ""
	case strings.HasPrefix(ref, refCreating+":"):
		if id := strings.TrimPrefix(ref, refCreating+":"); requestIDRe.MatchString(id) {
			return ownJitbot, id
		}
	case requestIDRe.MatchString(ref):
		return ownJitbot, ref
	}
	return ownJitbot, ""
}

// key is one account assignment of a USER.
type key struct{ acct, ps, uid string }

func (k key) matches(st *types.AccountAssignmentOperationStatus) bool {
	return st != nil && aws.ToString(st.TargetId) == k.acct && aws.ToString(st.PermissionSetArn) == k.ps &&
		st.PrincipalType == types.PrincipalTypeUser && strings.EqualFold(aws.ToString(st.PrincipalId), k.uid)
}

// errUnknownRequest: the service does not know a request id (another region, or forgotten).
var errUnknownRequest = errors.New("the service does not know the request id")

// AttemptBudget implements grants.AttemptBudgeter: a grant or revoke may wait PollTimeout for asynchronous
// requests (its own and any in flight for the same assignment), plus the API calls around the waits.
func (p *Provider) AttemptBudget(op string) time.Duration {
	if op == "check" {
		return 0
	}
	return p.cfg.PollTimeout + attemptMargin
}

// attemptMargin covers the API calls of one grant or revoke besides its waits.
const attemptMargin = 20 * time.Second

// Grant implements grants.Provider.
func (p *Provider) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	if err := ctx.Err(); err != nil {
		return grants.Untouched(a.Ref), fmt.Errorf("identitycenter: grant %s: %w", a.GrantID, err)
	}
	acct, ps, err := target(a)
	if err != nil {
		return grants.Untouched(a.Ref), err
	}
	uid, err := p.principalID(ctx, a)
	if err != nil {
		return grants.Untouched(a.Ref), err
	}
	k := key{acct, ps, uid}
	deadline := p.now().Add(p.cfg.PollTimeout)
	own, req := parseRef(a.Ref)
	if req != "" {
		// An earlier attempt's creation request: wait for it rather than asking again.
		st, err := p.waitRequest(ctx, deadline, false, req, nil)
		switch {
		case errors.Is(err, errUnknownRequest):
		case err != nil:
			return a.Ref, fmt.Errorf("identitycenter: grant %s: waiting for creation request %s: %w", a.GrantID, req, err)
		case st.Status == types.StatusValuesFailed && permanentReason(aws.ToString(st.FailureReason)):
			return refCreating, grants.Permanent(fmt.Errorf("identitycenter: grant %s: creation request %s FAILED: %s", a.GrantID, req, aws.ToString(st.FailureReason)))
		}
	}
	ref, err := p.ensure(ctx, deadline, k, own)
	if err != nil {
		return ref, fmt.Errorf("identitycenter: grant %s: %w", a.GrantID, err)
	}
	return ref, nil
}

// ensure makes the assignment k present and says whose it is. It decides from the assignment list only when
// no request for k is in flight: a deletion in progress still lists the assignment, a creation in progress
// does not yet.
func (p *Provider) ensure(ctx context.Context, deadline time.Time, k key, own ownership) (string, error) {
	mine := own == ownJitbot
	errRef := func(req string) string {
		switch {
		case mine && req != "":
			return refCreating + ":" + req
		case mine:
			return refCreating
		case own == ownStanding:
			return refPreExisting
		}
		return grants.RefUntouched // nothing sent that could have changed anything
	}
	backoff := p.cfg.ConflictBackoff
	var lastConflict error
	for round := 0; round <= max(p.cfg.ConflictRetries, 1); round++ {
		present := false
		err := p.list(ctx, k.acct, k.ps, func(as types.AccountAssignment) bool {
			present = as.PrincipalType == types.PrincipalTypeUser && strings.EqualFold(aws.ToString(as.PrincipalId), k.uid)
			return !present
		})
		if awsutil.Code(err) == "ResourceNotFoundException" {
			return errRef(""), grants.Permanent(fmt.Errorf("ListAccountAssignments: the permission set or account does not exist: %w", err))
		}
		if err != nil {
			return errRef(""), err
		}
		if present {
			waited, err := p.settle(ctx, deadline, k, true, false)
			if err != nil {
				return errRef(""), err
			}
			if waited {
				continue // a deletion finished meanwhile: look again
			}
			if mine {
				return refOwned, nil
			}
			return refPreExisting, nil // standing access: an administrator's, not jitbot's to remove
		}
		// Absent: jitbot asks for it, and from the moment the request may have reached the service the
		// assignment is jitbot's to remove (an answer lost on the way back must not make it look standing).
		wasMine := mine
		mine = true
		// Sent exactly once (no SDK retries): an error answer then proves that this one request was not taken,
		// whereas a retried call could fail with a code after an earlier try had been applied.
		out, err := p.sso.CreateAccountAssignment(ctx, &ssoadmin.CreateAccountAssignmentInput{
			InstanceArn:      aws.String(p.cfg.InstanceARN),
			PermissionSetArn: aws.String(k.ps),
			PrincipalId:      aws.String(k.uid),
			PrincipalType:    types.PrincipalTypeUser,
			TargetId:         aws.String(k.acct),
			TargetType:       types.TargetTypeAwsAccount,
		}, func(o *ssoadmin.Options) { o.Retryer = aws.NopRetryer{} })
		if code := awsutil.Code(err); code != "" && awsutil.Status(err) < 500 {
			mine = wasMine // the service answered 4xx: it did not take the request
			if code == "ConflictException" {
				lastConflict = err
				// Another request for this assignment is in flight: wait for it to end, then decide again.
				waited, serr := p.settle(ctx, deadline, k, true, true)
				if serr != nil {
					return errRef(""), serr
				}
				if !waited {
					if serr := awsutil.Sleep(ctx, backoff); serr != nil {
						return errRef(""), fmt.Errorf("%w (after %w)", serr, err)
					}
					backoff *= 2
				}
				continue
			}
		}
		if err != nil {
			return errRef(""), fmt.Errorf("CreateAccountAssignment: %w", classify(err))
		}
		if out.AccountAssignmentCreationStatus == nil || out.AccountAssignmentCreationStatus.RequestId == nil {
			return errRef(""), errors.New("CreateAccountAssignment returned no request id")
		}
		reqID := aws.ToString(out.AccountAssignmentCreationStatus.RequestId)
		st, err := p.waitRequest(ctx, deadline, false, reqID, out.AccountAssignmentCreationStatus)
		if err != nil {
			return errRef(reqID), fmt.Errorf("waiting for creation request %s: %w", reqID, err)
		}
		if st.Status != types.StatusValuesFailed {
			return refOwned, nil
		}
		reason := aws.ToString(st.FailureReason)
		// The request may fail because the assignment exists meanwhile: what counts is whether it is there.
		if present, cerr := p.present(ctx, k.acct, k.ps, k.uid); cerr == nil && present {
			return refOwned, nil
		}
		ferr := fmt.Errorf("creation request %s FAILED: %s", reqID, reason)
		if permanentReason(reason) {
			return errRef(""), grants.Permanent(ferr)
		}
		return errRef(""), ferr
	}
	return errRef(""), fmt.Errorf("requests for the assignment kept conflicting (retrying is safe): CreateAccountAssignment: %w", lastConflict)
}

// permanentReason reports whether a FailureReason describes something retrying cannot fix. Failure reasons are
// free text and not documented; the list is conservative (anything else is retried by jitbot).
func permanentReason(reason string) bool {
	r := strings.ToLower(reason)
	for _, s := range []string{"not found", "does not exist", "doesn't exist", "not supported", "invalid", "not valid",
		"quota", "limit exceeded", "exceeded the", "access denied", "not authorized", "not a member"} {
		if strings.Contains(r, s) {
			return true
		}
	}
	return false
}

// describe returns the status of a creation (deletion=false) or deletion request.
func (p *Provider) describe(ctx context.Context, deletion bool, id string) (*types.AccountAssignmentOperationStatus, error) {
	var st *types.AccountAssignmentOperationStatus
	err := p.withConflictRetry(ctx, func() error {
		if deletion {
			o, e := p.sso.DescribeAccountAssignmentDeletionStatus(ctx, &ssoadmin.DescribeAccountAssignmentDeletionStatusInput{
				InstanceArn: aws.String(p.cfg.InstanceARN), AccountAssignmentDeletionRequestId: aws.String(id),
			})
			if e == nil {
				st = o.AccountAssignmentDeletionStatus
			}
			return e
		}
		o, e := p.sso.DescribeAccountAssignmentCreationStatus(ctx, &ssoadmin.DescribeAccountAssignmentCreationStatusInput{
			InstanceArn: aws.String(p.cfg.InstanceARN), AccountAssignmentCreationRequestId: aws.String(id),
		})
		if e == nil {
			st = o.AccountAssignmentCreationStatus
		}
		return e
	})
	if err != nil {
		if awsutil.Code(err) == "ResourceNotFoundException" {
			return nil, fmt.Errorf("status of request %s: %w: %w", id, errUnknownRequest, err)
		}
		return nil, classify(err)
	}
	if st == nil {
		return nil, errors.New("status response without a status")
	}
	return st, nil
}

// waitRequest polls a request until it is no longer IN_PROGRESS, deadline passes (a retryable error: the
// next attempt resumes from the request id) or ctx ends. With st nil it asks first (resuming).
func (p *Provider) waitRequest(ctx context.Context, deadline time.Time, deletion bool, id string,
	st *types.AccountAssignmentOperationStatus) (*types.AccountAssignmentOperationStatus, error) {
	if st == nil {
		var err error
		if st, err = p.describe(ctx, deletion, id); err != nil {
			return nil, err
		}
	}
	for st.Status == types.StatusValuesInProgress || st.Status == "" {
		if !p.now().Before(deadline) {
			return nil, fmt.Errorf("request %s still IN_PROGRESS after %s (the next attempt resumes waiting)", id, p.cfg.PollTimeout)
		}
		if err := awsutil.Sleep(ctx, p.cfg.PollInterval); err != nil {
			return nil, err
		}
		next, err := p.describe(ctx, deletion, id)
		if err != nil {
			return nil, err
		}
		st = next
	}
	return st, nil
}

// settle waits until no deletion (deletions) and no creation (creations) of k is in flight. It reports whether
// it found any: a caller that decided from a list must then look again.
func (p *Provider) settle(ctx context.Context, deadline time.Time, k key, deletions, creations bool) (bool, error) {
	waited := false
	for _, deletion := range []bool{true, false} {
		if deletion && !deletions || !deletion && !creations {
			continue
		}
		ids, err := p.inFlight(ctx, k, deletion)
		if err != nil {
			return waited, err
		}
		for _, id := range ids {
			waited = true
			if _, err := p.waitRequest(ctx, deadline, deletion, id, nil); err != nil && !errors.Is(err, errUnknownRequest) {
				return waited, fmt.Errorf("waiting for a request in flight for the same assignment: %w", err)
			}
		}
	}
	return waited, nil
}

// inFlight returns the ids of the instance's IN_PROGRESS creation (or deletion) requests for k: the list gives
// only ids and statuses, so each is described to learn its assignment.
func (p *Provider) inFlight(ctx context.Context, k key, deletion bool) ([]string, error) {
	filter := &types.OperationStatusFilter{Status: types.StatusValuesInProgress}
	var pages func() (bool, []types.AccountAssignmentOperationStatusMetadata, error)
	if deletion {
		pager := ssoadmin.NewListAccountAssignmentDeletionStatusPaginator(p.sso, &ssoadmin.ListAccountAssignmentDeletionStatusInput{
			InstanceArn: aws.String(p.cfg.InstanceARN), Filter: filter, MaxResults: aws.Int32(100)})
		pages = func() (bool, []types.AccountAssignmentOperationStatusMetadata, error) {
			if !pager.HasMorePages() {
				return false, nil, nil
			}
			var out *ssoadmin.ListAccountAssignmentDeletionStatusOutput
			err := p.withConflictRetry(ctx, func() (e error) { out, e = pager.NextPage(ctx); return e })
			if err != nil {
				return false, nil, err
			}
			return true, out.AccountAssignmentsDeletionStatus, nil
		}
	} else {
		pager := ssoadmin.NewListAccountAssignmentCreationStatusPaginator(p.sso, &ssoadmin.ListAccountAssignmentCreationStatusInput{
			InstanceArn: aws.String(p.cfg.InstanceARN), Filter: filter, MaxResults: aws.Int32(100)})
		pages = func() (bool, []types.AccountAssignmentOperationStatusMetadata, error) {
			if !pager.HasMorePages() {
				return false, nil, nil
			}
			var out *ssoadmin.ListAccountAssignmentCreationStatusOutput
			err := p.withConflictRetry(ctx, func() (e error) { out, e = pager.NextPage(ctx); return e })
			if err != nil {
				return false, nil, err
			}
			return true, out.AccountAssignmentsCreationStatus, nil
		}
	}
	var ids []string
	for {
		more, items, err := pages()
		if err != nil {
			return nil, fmt.Errorf("listing requests in flight: %w", classify(err))
		}
		if !more {
			return ids, nil
		}
		for _, m := range items {
			if m.Status != types.StatusValuesInProgress || m.RequestId == nil {
				continue
			}
			st, err := p.describe(ctx, deletion, aws.ToString(m.RequestId))
			if errors.Is(err, errUnknownRequest) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if k.matches(st) && (st.Status == types.StatusValuesInProgress || st.Status == "") {
				ids = append(ids, aws.ToString(m.RequestId))
			}
		}
	}
}

// Revoke implements grants.Provider. An assignment that pre-existed the grant (Assignment.Ref is
// grants.PreExistingRef) is left in place.
func (p *Provider) Revoke(ctx context.Context, a grants.Assignment) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("identitycenter: revoke %s: %w", a.GrantID, err)
	}
	own, req := parseRef(a.Ref)
	if own == ownStanding || a.Ref == grants.RefUntouched {
		return nil // standing access, or nothing of jitbot's was ever applied: not jitbot's to remove
	}
	acct, ps, err := target(a)
	if err != nil {
		return err
	}
	uid, err := p.principalID(ctx, a)
	if err != nil {
		return err
	}
	k := key{acct, ps, uid}
	deadline := p.now().Add(p.cfg.PollTimeout)
	if req != "" {
		// jitbot's own creation may still be running: deleting now would conflict, and a list would not show
		// the assignment yet. Let it end first.
		if _, err := p.waitRequest(ctx, deadline, false, req, nil); err != nil && !errors.Is(err, errUnknownRequest) {
			return fmt.Errorf("identitycenter: revoke %s: waiting for creation request %s: %w", a.GrantID, req, err)
		}
	}
	if err := p.remove(ctx, deadline, k); err != nil {
		return fmt.Errorf("identitycenter: revoke %s: %w", a.GrantID, err)
	}
	return nil
}

// remove makes the assignment k absent, waiting out any request in flight for it, so that success is final.
func (p *Provider) remove(ctx context.Context, deadline time.Time, k key) error {
	backoff := p.cfg.ConflictBackoff
	var lastConflict error
	for round := 0; round <= max(p.cfg.ConflictRetries, 1); round++ {
		out, err := p.sso.DeleteAccountAssignment(ctx, &ssoadmin.DeleteAccountAssignmentInput{
			InstanceArn:      aws.String(p.cfg.InstanceARN),
			PermissionSetArn: aws.String(k.ps),
			PrincipalId:      aws.String(k.uid),
			PrincipalType:    types.PrincipalTypeUser,
			TargetId:         aws.String(k.acct),
			TargetType:       types.TargetTypeAwsAccount,
		})
		switch code := awsutil.Code(err); {
		case err == nil:
		case code == "ResourceNotFoundException":
			// Absent (or its permission set or account is gone), unless a creation still running is about to
			// make it appear.
			waited, serr := p.settle(ctx, deadline, k, false, true)
			if serr != nil {
				return serr
			}
			if waited {
				continue
			}
			return nil
		case code == "ConflictException":
			lastConflict = err
			waited, serr := p.settle(ctx, deadline, k, true, true)
			if serr != nil {
				return serr
			}
			if !waited {
				if serr := awsutil.Sleep(ctx, backoff); serr != nil {
					return fmt.Errorf("%w (after %w)", serr, err)
				}
				backoff *= 2
			}
			continue
		default:
			return fmt.Errorf("DeleteAccountAssignment: %w", classify(err))
		}
		if out.AccountAssignmentDeletionStatus == nil || out.AccountAssignmentDeletionStatus.RequestId == nil {
			return errors.New("DeleteAccountAssignment returned no request id")
		}
		reqID := aws.ToString(out.AccountAssignmentDeletionStatus.RequestId)
		st, err := p.waitRequest(ctx, deadline, true, reqID, out.AccountAssignmentDeletionStatus)
		if err != nil {
			// The next attempt's DeleteAccountAssignment meets this deletion (ConflictException) and waits.
			return fmt.Errorf("waiting for deletion request %s: %w", reqID, err)
		}
		if st.Status != types.StatusValuesFailed {
			return nil
		}
		if present, cerr := p.present(ctx, k.acct, k.ps, k.uid); cerr == nil && !present {
			return nil
		}
		ferr := fmt.Errorf("deletion request %s FAILED: %s", reqID, aws.ToString(st.FailureReason))
		if permanentReason(aws.ToString(st.FailureReason)) {
			return grants.Permanent(ferr)
		}
		return ferr
	}
	return fmt.Errorf("requests for the assignment kept conflicting (retrying is safe): DeleteAccountAssignment: %w", lastConflict)
}

// Check implements grants.Provider.
func (p *Provider) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("identitycenter: check %s: %w", a.GrantID, err)
	}
	acct, ps, err := target(a)
	if err != nil {
		return false, err
	}
	uid, err := p.principalID(ctx, a)
	if err != nil {
		return false, err
	}
	present, err := p.present(ctx, acct, ps, uid)
	if err != nil {
		return false, fmt.Errorf("identitycenter: check %s: %w", a.GrantID, err)
	}
	return present, nil
}

// present lists the assignments of acct/ps and looks for the user uid.
func (p *Provider) present(ctx context.Context, acct, ps, uid string) (bool, error) {
	found := false
	err := p.list(ctx, acct, ps, func(as types.AccountAssignment) bool {
		if as.PrincipalType == types.PrincipalTypeUser && strings.EqualFold(aws.ToString(as.PrincipalId), uid) {
			found = true
			return false
		}
		return true
	})
	if awsutil.Code(err) == "ResourceNotFoundException" {
		return false, nil // the permission set (or account) does not exist: nothing is assigned
	}
	return found, err
}

// list calls fn for every assignment of acct/ps until fn returns false.
func (p *Provider) list(ctx context.Context, acct, ps string, fn func(types.AccountAssignment) bool) error {
	pager := ssoadmin.NewListAccountAssignmentsPaginator(p.sso, &ssoadmin.ListAccountAssignmentsInput{
		InstanceArn: aws.String(p.cfg.InstanceARN), AccountId: aws.String(acct), PermissionSetArn: aws.String(ps),
		MaxResults: aws.Int32(100),
	})
	for pager.HasMorePages() {
		var page *ssoadmin.ListAccountAssignmentsOutput
		err := p.withConflictRetry(ctx, func() error {
			var e error
			page, e = pager.NextPage(ctx)
			return e
		})
		if err != nil {
			if awsutil.Code(err) == "ResourceNotFoundException" {
				return err
			}
			return fmt.Errorf("ListAccountAssignments: %w", classify(err))
		}
		for _, as := range page.AccountAssignments {
			if !fn(as) {
				return nil
			}
		}
	}
	return nil
}

// ListOwned implements grants.Inventory over Config.Scopes (see the package documentation for its limits).
func (p *Provider) ListOwned(ctx context.Context) ([]grants.Owned, error) {
	var owned []grants.Owned
	names := map[string]string{}
	for _, s := range p.cfg.Scopes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := p.list(ctx, s.AccountID, s.PermissionSetARN, func(as types.AccountAssignment) bool {
			if as.PrincipalType != types.PrincipalTypeUser {
				return true
			}
			owned = append(owned, grants.Owned{
				Unattributed: true, // assignments carry no label: this may be standing access
				Principal:    aws.ToString(as.PrincipalId),
				Target:       map[string]string{TargetAccountID: s.AccountID, TargetPermissionSetARN: s.PermissionSetARN},
				Ref:          fmt.Sprintf("%s/%s/USER/%s", s.AccountID, s.PermissionSetARN, aws.ToString(as.PrincipalId)),
			})
			return true
		})
		if awsutil.Code(err) == "ResourceNotFoundException" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("identitycenter: listing %s/%s: %w", s.AccountID, s.PermissionSetARN, err)
		}
	}
	if p.cfg.OwnedPrincipal == "user_name" {
		for i := range owned {
			id := owned[i].Principal
			name, ok := names[id]
			if !ok {
				out, err := p.store.DescribeUser(ctx, &identitystore.DescribeUserInput{
					IdentityStoreId: aws.String(p.cfg.IdentityStoreID), UserId: aws.String(id),
				})
				if err != nil {
					return nil, fmt.Errorf("identitycenter: describing user %s: %w", id, classify(err))
				}
				name = aws.ToString(out.UserName)
				names[id] = name
			}
			owned[i].Principal = name
		}
	}
	return owned, nil
}
