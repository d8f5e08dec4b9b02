// Package identitycenter is a grants.Provider for AWS IAM Identity Center (formerly AWS SSO) account
// assignments: granting assigns a permission set in an AWS account to an Identity Center user; revoking removes
// that assignment.
//
// # Operations
//
//   - Grant: sso-admin CreateAccountAssignment (PrincipalType USER, TargetType AWS_ACCOUNT), then
//     DescribeAccountAssignmentCreationStatus every PollInterval until SUCCEEDED or FAILED (at most PollTimeout).
//     The reference returned is the creation request id. Creating an assignment that already exists is treated
//     as success: the API accepts it (AWS does not document the outcome; Terraform's provider relies on the call
//     not failing), and if the request ever ends FAILED or in a ConflictException the adapter lists the
//     assignments and succeeds when the assignment is there.
//   - Revoke: DeleteAccountAssignment, then DescribeAccountAssignmentDeletionStatus. ResourceNotFoundException, or
//     a FAILED/conflicting deletion after which the assignment is absent, is success.
//   - Check: ListAccountAssignments for the account and permission set (all pages), looking for the principal
//     as a USER. ResourceNotFoundException (the permission set or account is gone) means not present.
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
// ConflictException is retried here Config.ConflictRetries times with backoff, then returned as retryable.
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
// and reports them with an empty GrantID. Only list pairs whose permission set is handed out exclusively through
// jitbot: a reconciler that revokes what it does not track would otherwise remove standing access granted by
// other means. Principals are reported as user ids, or as user names when Config.OwnedPrincipal is
// "user_name" (one identitystore DescribeUser per user); the reconciler can only match (and so only decide
// about) principals whose form matches what the store holds.
package identitycenter

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/identitystore"
	"github.com/aws/aws-sdk-go-v2/service/identitystore/document"
	istypes "github.com/aws/aws-sdk-go-v2/service/identitystore/types"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin"
	"github.com/aws/aws-sdk-go-v2/service/ssoadmin/types"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/aws/internal/awsutil"
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
}

// Settings is what the policy's provider block of type "aws-identity-center" provides.
type Settings struct {
	InstanceARN     string // instance_arn, required
	IdentityStoreID string // identity_store_id, required
	Region          string // region, required
	Endpoint        string // endpoint, optional https URL
}

// Validate checks the settings; every problem is reported.
func (s Settings) Validate() error {
	var errs []error
	if !instanceARNRe.MatchString(s.InstanceARN) {
		errs = append(errs, fmt.Errorf("instance_arn: %q is not an Identity Center instance ARN (arn:aws:sso:::instance/ssoins-<16 characters>)", s.InstanceARN))
	}
	if !storeIDRe.MatchString(s.IdentityStoreID) {
		errs = append(errs, fmt.Errorf("identity_store_id: %q is not an identity store id (d-<10 hex digits>)", s.IdentityStoreID))
	}
	if !regionRe.MatchString(s.Region) {
		errs = append(errs, fmt.Errorf("region: %q is not an AWS region such as us-east-1", s.Region))
	}
	if s.Endpoint != "" {
		if err := validateEndpoint(s.Endpoint); err != nil {
			errs = append(errs, fmt.Errorf("endpoint: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Config returns a Config carrying the settings (credentials from the default chain).
func (s Settings) Config() Config {
	return Config{InstanceARN: s.InstanceARN, IdentityStoreID: s.IdentityStoreID, Region: s.Region, Endpoint: s.Endpoint}
}

func validateEndpoint(e string) error {
	switch {
	case strings.HasPrefix(e, "https://"):
	case strings.HasPrefix(e, "http://localhost"), strings.HasPrefix(e, "http://127.0.0.1"), strings.HasPrefix(e, "http://[::1]"):
	default:
		return fmt.Errorf("%q must be an https:// URL (plain http only for localhost)", e)
	}
	if strings.Contains(strings.SplitN(strings.SplitN(e, "://", 2)[1], "/", 2)[0], "@") {
		return errors.New("must not contain credentials")
	}
	return nil
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

// Provider implements grants.Provider and grants.Inventory.
type Provider struct {
	cfg   Config
	sso   *ssoadmin.Client
	store *identitystore.Client

	mu    sync.Mutex
	users map[string]cached
	now   func() time.Time
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

// Grant implements grants.Provider.
func (p *Provider) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("identitycenter: grant %s: %w", a.GrantID, err)
	}
	acct, ps, err := target(a)
	if err != nil {
		return "", err
	}
	uid, err := p.principalID(ctx, a)
	if err != nil {
		return "", err
	}
	var out *ssoadmin.CreateAccountAssignmentOutput
	err = p.withConflictRetry(ctx, func() error {
		var e error
		out, e = p.sso.CreateAccountAssignment(ctx, &ssoadmin.CreateAccountAssignmentInput{
			InstanceArn:      aws.String(p.cfg.InstanceARN),
			PermissionSetArn: aws.String(ps),
			PrincipalId:      aws.String(uid),
			PrincipalType:    types.PrincipalTypeUser,
			TargetId:         aws.String(acct),
			TargetType:       types.TargetTypeAwsAccount,
		})
		return e
	})
	if err != nil {
		if awsutil.Code(err) == "ConflictException" {
			if present, cerr := p.present(ctx, acct, ps, uid); cerr == nil && present {
				return "", nil
			}
		}
		return "", fmt.Errorf("identitycenter: grant %s: CreateAccountAssignment: %w", a.GrantID, classify(err))
	}
	if out.AccountAssignmentCreationStatus == nil || out.AccountAssignmentCreationStatus.RequestId == nil {
		return "", fmt.Errorf("identitycenter: grant %s: CreateAccountAssignment returned no request id", a.GrantID)
	}
	st := out.AccountAssignmentCreationStatus
	reqID := aws.ToString(st.RequestId)
	st, err = p.wait(ctx, st, func(ctx context.Context) (*types.AccountAssignmentOperationStatus, error) {
		o, e := p.sso.DescribeAccountAssignmentCreationStatus(ctx, &ssoadmin.DescribeAccountAssignmentCreationStatusInput{
			InstanceArn: aws.String(p.cfg.InstanceARN), AccountAssignmentCreationRequestId: aws.String(reqID),
		})
		if e != nil {
			return nil, e
		}
		return o.AccountAssignmentCreationStatus, nil
	})
	if err != nil {
		return reqID, fmt.Errorf("identitycenter: grant %s: waiting for creation request %s: %w", a.GrantID, reqID, err)
	}
	if st.Status == types.StatusValuesFailed {
		reason := aws.ToString(st.FailureReason)
		// The request may fail because the assignment already exists (or a concurrent request made it): what
		// counts is whether it is there now.
		present, cerr := p.present(ctx, acct, ps, uid)
		if cerr == nil && present {
			return reqID, nil
		}
		ferr := fmt.Errorf("identitycenter: grant %s: creation request %s FAILED: %s", a.GrantID, reqID, reason)
		if permanentReason(reason) {
			return reqID, grants.Permanent(ferr)
		}
		return reqID, ferr
	}
	return reqID, nil
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

// wait polls until st is no longer IN_PROGRESS, PollTimeout passes or ctx ends.
func (p *Provider) wait(ctx context.Context, st *types.AccountAssignmentOperationStatus,
	describe func(context.Context) (*types.AccountAssignmentOperationStatus, error)) (*types.AccountAssignmentOperationStatus, error) {
	deadline := p.now().Add(p.cfg.PollTimeout)
	for st.Status == types.StatusValuesInProgress || st.Status == "" {
		if !p.now().Before(deadline) {
			return nil, fmt.Errorf("still IN_PROGRESS after %s (retrying is safe)", p.cfg.PollTimeout)
		}
		if err := awsutil.Sleep(ctx, p.cfg.PollInterval); err != nil {
			return nil, err
		}
		var next *types.AccountAssignmentOperationStatus
		err := p.withConflictRetry(ctx, func() error {
			var e error
			next, e = describe(ctx)
			return e
		})
		if err != nil {
			if awsutil.Code(err) == "ResourceNotFoundException" {
				// The request id is unknown to the region we asked: nothing to wait for, and nothing proven.
				return nil, fmt.Errorf("status request: %w", err)
			}
			return nil, classify(err)
		}
		if next == nil {
			return nil, errors.New("status response without a status")
		}
		st = next
	}
	return st, nil
}

// Revoke implements grants.Provider.
func (p *Provider) Revoke(ctx context.Context, a grants.Assignment) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("identitycenter: revoke %s: %w", a.GrantID, err)
	}
	acct, ps, err := target(a)
	if err != nil {
		return err
	}
	uid, err := p.principalID(ctx, a)
	if err != nil {
		return err
	}
	var out *ssoadmin.DeleteAccountAssignmentOutput
	err = p.withConflictRetry(ctx, func() error {
		var e error
		out, e = p.sso.DeleteAccountAssignment(ctx, &ssoadmin.DeleteAccountAssignmentInput{
			InstanceArn:      aws.String(p.cfg.InstanceARN),
			PermissionSetArn: aws.String(ps),
			PrincipalId:      aws.String(uid),
			PrincipalType:    types.PrincipalTypeUser,
			TargetId:         aws.String(acct),
			TargetType:       types.TargetTypeAwsAccount,
		})
		return e
	})
	switch code := awsutil.Code(err); {
	case err == nil:
	case code == "ResourceNotFoundException":
		return nil // the assignment (or its permission set or account) is gone: nothing to revoke
	case code == "ConflictException":
		if present, cerr := p.present(ctx, acct, ps, uid); cerr == nil && !present {
			return nil
		}
		fallthrough
	default:
		return fmt.Errorf("identitycenter: revoke %s: DeleteAccountAssignment: %w", a.GrantID, classify(err))
	}
	if out.AccountAssignmentDeletionStatus == nil || out.AccountAssignmentDeletionStatus.RequestId == nil {
		return fmt.Errorf("identitycenter: revoke %s: DeleteAccountAssignment returned no request id", a.GrantID)
	}
	reqID := aws.ToString(out.AccountAssignmentDeletionStatus.RequestId)
	st, err := p.wait(ctx, out.AccountAssignmentDeletionStatus, func(ctx context.Context) (*types.AccountAssignmentOperationStatus, error) {
		o, e := p.sso.DescribeAccountAssignmentDeletionStatus(ctx, &ssoadmin.DescribeAccountAssignmentDeletionStatusInput{
			InstanceArn: aws.String(p.cfg.InstanceARN), AccountAssignmentDeletionRequestId: aws.String(reqID),
		})
		if e != nil {
			return nil, e
		}
		return o.AccountAssignmentDeletionStatus, nil
	})
	if err != nil {
		return fmt.Errorf("identitycenter: revoke %s: waiting for deletion request %s: %w", a.GrantID, reqID, err)
	}
	if st.Status == types.StatusValuesFailed {
		present, cerr := p.present(ctx, acct, ps, uid)
		if cerr == nil && !present {
			return nil
		}
		ferr := fmt.Errorf("identitycenter: revoke %s: deletion request %s FAILED: %s", a.GrantID, reqID, aws.ToString(st.FailureReason))
		if permanentReason(aws.ToString(st.FailureReason)) {
			return grants.Permanent(ferr)
		}
		return ferr
	}
	return nil
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
				Principal: aws.ToString(as.PrincipalId),
				Target:    map[string]string{TargetAccountID: s.AccountID, TargetPermissionSetARN: s.PermissionSetARN},
				Ref:       fmt.Sprintf("%s/%s/USER/%s", s.AccountID, s.PermissionSetARN, aws.ToString(as.PrincipalId)),
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
