// Package iam is a grants.Provider that grants access through AWS IAM itself. The role's target picks one of
// three modes:
//
//   - group: {"group": "<group name>"}: AddUserToGroup / RemoveUserFromGroup; the principal is an IAM user name.
//     Check: ListGroupsForUser.
//   - managed policy: {"managed_policy_arn": "<policy ARN>", "principal_type": "user"|"role"}: AttachUserPolicy /
//     DetachUserPolicy (or AttachRolePolicy / DetachRolePolicy for principal_type role, the principal then being a
//     role name). principal_type defaults to user. Check: ListAttachedUserPolicies / ListAttachedRolePolicies.
//   - inline policy: {"inline_policy": "<name of a document in Config.Policies>" or a JSON policy document}:
//     PutUserPolicy / DeleteUserPolicy of a policy named "jitbot-<binding key>" on the IAM user (the grant id when
//     the assignment has no binding key). Every statement gets the condition {"DateLessThan": {"aws:CurrentTime":
//     "<expiry, RFC 3339 UTC>"}} so that AWS itself stops honouring the policy at expiry even if jitbot is down
//     (the policy object stays until revoked). A key that is not a valid policy name suffix is replaced by
//     "sha256-" and 32 hex digits of its hash. Check: GetUserPolicy.
//
// Standing access: memberships and attachments carry no marker, so Grant looks first (the Check call of the
// mode) when jitbot holds no reference for the binding; access already there is returned as
// grants.PreExistingRef and Revoke of such an assignment leaves it in place. Access jitbot adds is returned as
// its own reference, also with an error once the change may have reached IAM.
//
// Errors: NoSuchEntity is permanent on grant (the user, role, group or policy does not exist) and success on
// revoke (already absent); on check it means not present. EntityAlreadyExists on grant is success. LimitExceeded,
// AccessDenied, MalformedPolicyDocument, InvalidInput, ValidationError, UnmodifiableEntity, PolicyNotAttachable
// and credential/signature rejections are permanent. Throttling, ServiceFailure, any 5xx, network and context
// errors are retryable; ConcurrentModification is retried here (Config.ConflictRetries) and then retryable.
//
// ListOwned only sees inline-mode grants, because only those carry a label (the policy name): it lists the inline
// policies named "jitbot-*" of the users in Config.ScanUsers. Group memberships and managed policy attachments
// carry no marker and are not listed.
//
// IAM is eventually consistent: a change can take seconds (occasionally minutes) to apply everywhere, so a Check
// right after a grant or revoke reads IAM's control plane, not what every AWS endpoint enforces yet.
package iam

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/aws/internal/awsutil"
	"github.com/jitbot/jitbot/grants/providerkit"
)

// Target keys.
const (
	TargetGroup            = "group"
	TargetManagedPolicyARN = "managed_policy_arn"
	TargetPrincipalType    = "principal_type"
	TargetInlinePolicy     = "inline_policy"
)

// InlinePolicyPrefix starts the name of every inline policy jitbot writes.
const InlinePolicyPrefix = "jitbot-"

// Mode is how a target grants access.
type Mode string

// Modes.
const (
	ModeGroup   Mode = "group"
	ModeManaged Mode = "managed_policy"
	ModeInline  Mode = "inline_policy"
)

var (
	nameRe      = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	groupRe     = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)
	grantIDRe   = regexp.MustCompile(`^[\w+=,.@-]{1,121}$`) // 128 minus len("jitbot-")
	policyARNRe = regexp.MustCompile(`^arn:(aws|aws-us-gov|aws-cn):iam::(aws|\d{12}):policy/[\w+=,.@/-]+$`)
	regionRe    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d$`)
	policyNmRe  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// Config configures a Provider.
type Config struct {
	// Region used for signing; IAM is global. Default "us-east-1" (use "cn-north-1" / "us-gov-west-1" in those
	// partitions).
	Region string
	// Endpoint overrides the IAM endpoint (tests, private endpoints).
	Endpoint string
	// Credentials; nil uses the SDK's default chain (config.LoadDefaultConfig).
	Credentials aws.CredentialsProvider
	// HTTPClient; nil uses the SDK's default.
	HTTPClient aws.HTTPClient
	// RetryMaxAttempts per SDK call, first attempt included (default 3; 1 disables the SDK's retries);
	// RetryMaxBackoff caps its backoff (default 2s).
	RetryMaxAttempts int
	RetryMaxBackoff  time.Duration
	// ConflictRetries: how often ConcurrentModification is retried here (default 4; negative disables);
	// ConflictBackoff: the first delay, doubled each time (default 250ms).
	ConflictRetries int
	ConflictBackoff time.Duration
	// Policies are named inline policy documents (JSON) that inline_policy targets may refer to.
	Policies map[string]string
	// ScanUsers are the IAM users whose inline policies ListOwned lists.
	ScanUsers []string
}

// Settings is what the policy's provider block of type "aws-iam" provides.
type Settings struct {
	Region    string            `policy:"region"`     // optional (default us-east-1)
	Endpoint  string            `policy:"endpoint"`   // optional https URL
	Policies  map[string]string `policy:"policies"`   // name -> JSON policy document, optional
	ScanUsers []string          `policy:"scan_users"` // IAM users ListOwned inspects, optional
}

// Validate checks the settings; every problem is reported.
func (s Settings) Validate() error {
	var errs []error
	if s.Region != "" && !regionRe.MatchString(s.Region) {
		errs = append(errs, providerkit.SettingErrorf("region", "%q is not an AWS region such as us-east-1", s.Region))
	}
	if s.Endpoint != "" {
		if err := awsutil.ValidateEndpoint(s.Endpoint); err != nil {
			errs = append(errs, &providerkit.FieldError{Key: "endpoint", Err: err})
		}
	}
	for _, name := range slices.Sorted(mapsKeys(s.Policies)) {
		if !policyNmRe.MatchString(name) {
			errs = append(errs, providerkit.SettingErrorf("policies", "name %q: use letters, digits, '.', '_' and '-' (at most 64)", name))
		}
		if _, err := Document(s.Policies[name], time.Unix(0, 0)); err != nil {
			errs = append(errs, providerkit.SettingErrorf("policies", "%s: %w", name, err))
		}
	}
	for _, u := range s.ScanUsers {
		if !nameRe.MatchString(u) {
			errs = append(errs, providerkit.SettingErrorf("scan_users", "%q is not an IAM user name", u))
		}
	}
	return errors.Join(errs...)
}

// ValidateTarget checks a target like the package-level ValidateTarget and, for inline_policy targets that name a
// policy, that the name is one of s.Policies.
func (s Settings) ValidateTarget(t map[string]string) error {
	if err := ValidateTarget(t); err != nil {
		return err
	}
	if v, ok := t[TargetInlinePolicy]; ok && !isJSON(v) {
		if _, ok := s.Policies[v]; !ok {
			return fmt.Errorf("%s %q names no policy of the provider's policies (known: %s)", TargetInlinePolicy, v,
				strings.Join(slices.Sorted(mapsKeys(s.Policies)), ", "))
		}
	}
	return nil
}

// Config returns a Config carrying the settings (credentials from the default chain).
func (s Settings) Config() Config {
	return Config{Region: s.Region, Endpoint: s.Endpoint, Policies: s.Policies, ScanUsers: s.ScanUsers}
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func isJSON(v string) bool { return strings.HasPrefix(strings.TrimSpace(v), "{") }

// ModeOf returns the mode a target selects.
func ModeOf(t map[string]string) (Mode, error) {
	var modes []Mode
	if _, ok := t[TargetGroup]; ok {
		modes = append(modes, ModeGroup)
	}
	if _, ok := t[TargetManagedPolicyARN]; ok {
		modes = append(modes, ModeManaged)
	}
	if _, ok := t[TargetInlinePolicy]; ok {
		modes = append(modes, ModeInline)
	}
	switch len(modes) {
	case 1:
		return modes[0], nil
	case 0:
		return "", fmt.Errorf("target needs exactly one of %s, %s or %s", TargetGroup, TargetManagedPolicyARN, TargetInlinePolicy)
	}
	return "", fmt.Errorf("target sets %v: use exactly one of %s, %s or %s", modes, TargetGroup, TargetManagedPolicyARN, TargetInlinePolicy)
}

// ValidateTarget checks a role's target map for aws-iam (see the package documentation for the modes).
func ValidateTarget(t map[string]string) error {
	mode, err := ModeOf(t)
	if err != nil {
		return err
	}
	var errs []error
	allowed := map[Mode][]string{
		ModeGroup:   {TargetGroup},
		ModeManaged: {TargetManagedPolicyARN, TargetPrincipalType},
		ModeInline:  {TargetInlinePolicy},
	}[mode]
	for _, k := range slices.Sorted(mapsKeys(t)) {
		if !slices.Contains(allowed, k) {
			errs = append(errs, fmt.Errorf("target key %q does not go with %s (allowed: %s)", k, mode, strings.Join(allowed, ", ")))
		}
	}
	switch mode {
	case ModeGroup:
		if !groupRe.MatchString(t[TargetGroup]) {
			errs = append(errs, fmt.Errorf("%s %q is not an IAM group name (1-128 of letters, digits and +=,.@_-)", TargetGroup, t[TargetGroup]))
		}
	case ModeManaged:
		if !policyARNRe.MatchString(t[TargetManagedPolicyARN]) {
			errs = append(errs, fmt.Errorf("%s %q is not a managed policy ARN (arn:aws:iam::aws:policy/... or arn:aws:iam::<account>:policy/...)", TargetManagedPolicyARN, t[TargetManagedPolicyARN]))
		}
		if pt, ok := t[TargetPrincipalType]; ok && pt != "user" && pt != "role" {
			errs = append(errs, fmt.Errorf("%s %q: want user or role", TargetPrincipalType, pt))
		}
	case ModeInline:
		v := t[TargetInlinePolicy]
		if isJSON(v) {
			if _, err := Document(v, time.Unix(0, 0)); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", TargetInlinePolicy, err))
			}
		} else if !policyNmRe.MatchString(v) {
			errs = append(errs, fmt.Errorf("%s %q is neither a JSON policy document nor a policy name", TargetInlinePolicy, v))
		}
	}
	return errors.Join(errs...)
}

// Document returns policy with the condition DateLessThan aws:CurrentTime = expiry added to every statement (an
// earlier aws:CurrentTime bound already present is kept). It checks the document's outline: a JSON object with a
// Statement (object or array of objects), each with Effect Allow or Deny.
func Document(policy string, expiry time.Time) (string, error) {
	dec := json.NewDecoder(strings.NewReader(policy))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return "", fmt.Errorf("policy document is not a JSON object: %w", err)
	}
	if dec.More() {
		return "", errors.New("policy document has trailing data")
	}
	if _, ok := doc["Version"]; !ok {
		doc["Version"] = "2012-10-17"
	}
	var stmts []any
	switch st := doc["Statement"].(type) {
	case map[string]any:
		stmts = []any{st}
	case []any:
		stmts = st
	default:
		return "", errors.New("policy document needs a Statement (an object or a list of objects)")
	}
	if len(stmts) == 0 {
		return "", errors.New("policy document has no statements")
	}
	bound := expiry.UTC().Format(time.RFC3339)
	for i, s := range stmts {
		m, ok := s.(map[string]any)
		if !ok {
			return "", fmt.Errorf("statement %d is not an object", i)
		}
		if e, _ := m["Effect"].(string); e != "Allow" && e != "Deny" {
			return "", fmt.Errorf("statement %d: Effect must be Allow or Deny", i)
		}
		cond, _ := m["Condition"].(map[string]any)
		if cond == nil {
			if m["Condition"] != nil {
				return "", fmt.Errorf("statement %d: Condition is not an object", i)
			}
			cond = map[string]any{}
		}
		dlt, _ := cond["DateLessThan"].(map[string]any)
		if dlt == nil {
			if cond["DateLessThan"] != nil {
				return "", fmt.Errorf("statement %d: Condition.DateLessThan is not an object", i)
			}
			dlt = map[string]any{}
		}
		if prev, ok := dlt["aws:CurrentTime"].(string); ok {
			if t, err := time.Parse(time.RFC3339, prev); err == nil && t.Before(expiry) {
				bound = t.UTC().Format(time.RFC3339)
			}
		}
		dlt["aws:CurrentTime"] = bound
		cond["DateLessThan"] = dlt
		m["Condition"] = cond
		bound = expiry.UTC().Format(time.RFC3339)
	}
	doc["Statement"] = stmts
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return "", err
	}
	return strings.TrimSpace(buf.String()), nil
}

// bindingKeyRe matches jitbot binding keys (grants.BindingKey), which name the inline policy shared by
// overlapping grants.
var bindingKeyRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

// InlinePolicyName is the name of the inline policy of a binding (or, without one, of a grant id).
func InlinePolicyName(grantID string) string {
	if grantIDRe.MatchString(grantID) {
		return InlinePolicyPrefix + grantID
	}
	sum := sha256.Sum256([]byte(grantID))
	return InlinePolicyPrefix + "sha256-" + hex.EncodeToString(sum[:16])
}

// Provider implements grants.Provider and grants.Inventory.
type Provider struct {
	cfg    Config
	client *iam.Client
}

var (
	_ grants.Provider  = (*Provider)(nil)
	_ grants.Inventory = (*Provider)(nil)
)

// New builds a Provider. It makes no API call.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if err := (Settings{Region: cfg.Region, Policies: cfg.Policies, ScanUsers: cfg.ScanUsers}).Validate(); err != nil {
		return nil, fmt.Errorf("iam: %w", err)
	}
	if cfg.ConflictRetries == 0 {
		cfg.ConflictRetries = awsutil.DefaultConflictRetries
	}
	if cfg.ConflictBackoff <= 0 {
		cfg.ConflictBackoff = awsutil.DefaultConflictBackoff
	}
	awsCfg, err := awsutil.AWSConfig(ctx, awsutil.ClientConfig{
		Region: cfg.Region, Endpoint: cfg.Endpoint, Credentials: cfg.Credentials, HTTPClient: cfg.HTTPClient,
		RetryMaxAttempts: cfg.RetryMaxAttempts, RetryMaxBackoff: cfg.RetryMaxBackoff,
	})
	if err != nil {
		return nil, fmt.Errorf("iam: loading AWS configuration: %w", err)
	}
	return &Provider{cfg: cfg, client: iam.NewFromConfig(awsCfg)}, nil
}

var permanentCodes = []string{
	"NoSuchEntity", "LimitExceeded", "AccessDenied", "AccessDeniedException", "MalformedPolicyDocument",
	"InvalidInput", "ValidationError", "UnmodifiableEntity", "PolicyNotAttachable", "InvalidClientTokenId",
	"SignatureDoesNotMatch", "IncompleteSignature", "MissingAuthenticationToken", "OptInRequired", "InvalidAction",
	"MalformedQueryString", "InvalidParameterValue", "PackedPolicyTooLarge",
}

func classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if slices.Contains(permanentCodes, awsutil.Code(err)) {
		return grants.Permanent(err)
	}
	return err
}

func (p *Provider) withConflictRetry(ctx context.Context, fn func() error) error {
	return awsutil.RetryCode(ctx, "ConcurrentModification", p.cfg.ConflictRetries, p.cfg.ConflictBackoff, fn)
}

type plan struct {
	mode    Mode
	role    bool   // managed mode on a role
	name    string // user or role name
	group   string
	arn     string
	doc     string // inline: policy source
	polName string // inline: policy name
}

func (p *Provider) plan(op string, a grants.Assignment) (plan, error) {
	perm := func(format string, args ...any) (plan, error) {
		return plan{}, grants.Permanent(fmt.Errorf("iam: %s %s: "+format, append([]any{op, a.GrantID}, args...)...))
	}
	if err := ValidateTarget(a.Target); err != nil {
		return perm("%w", err)
	}
	mode, _ := ModeOf(a.Target)
	pl := plan{mode: mode, name: a.Principal}
	if !nameRe.MatchString(a.Principal) {
		return perm("principal %q is not an IAM user or role name", a.Principal)
	}
	switch mode {
	case ModeGroup:
		pl.group = a.Target[TargetGroup]
	case ModeManaged:
		pl.arn = a.Target[TargetManagedPolicyARN]
		pl.role = a.Target[TargetPrincipalType] == "role"
	case ModeInline:
		key := a.BindingKey // overlapping grants of one access share one policy, removed by the one revoke
		if key == "" {
			key = a.GrantID
		}
		if key == "" {
			return perm("inline policies are named after the binding or grant id, which are empty")
		}
		pl.polName = InlinePolicyName(key)
		v := a.Target[TargetInlinePolicy]
		if isJSON(v) {
			pl.doc = v
		} else if doc, ok := p.cfg.Policies[v]; ok {
			pl.doc = doc
		} else if op == "grant" {
			return perm("inline_policy %q names no configured policy", v)
		}
	}
	return pl, nil
}

// Grant implements grants.Provider.
func (p *Provider) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	if err := ctx.Err(); err != nil {
		return grants.Untouched(a.Ref), fmt.Errorf("iam: grant %s: %w", a.GrantID, err)
	}
	pl, err := p.plan("grant", a)
	if err != nil {
		return grants.Untouched(a.Ref), err
	}
	if pl.mode != ModeInline && !grants.OwnRef(a.Ref) {
		// A membership or attachment carries no marker: look before adding, so that one an administrator made
		// is recorded as standing access (never removed by jitbot) rather than taken over.
		present, what, err := p.present(ctx, pl)
		if err != nil { // NoSuchEntity here: the user or role does not exist (permanent)
			return grants.Untouched(a.Ref), fmt.Errorf("iam: grant %s: %s: %w", a.GrantID, what, classify(err))
		}
		if present {
			return grants.PreExistingRef(pl.ref()), nil
		}
	}
	// From here jitbot adds the access and it is jitbot's to remove, also when the answer is lost.
	ref := pl.ref()
	var what string
	switch pl.mode {
	case ModeGroup:
		what = "AddUserToGroup"
		err = p.withConflictRetry(ctx, func() error {
			_, e := p.client.AddUserToGroup(ctx, &iam.AddUserToGroupInput{GroupName: &pl.group, UserName: &pl.name})
			return e
		})
	case ModeManaged:
		if pl.role {
			what = "AttachRolePolicy"
			err = p.withConflictRetry(ctx, func() error {
				_, e := p.client.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: &pl.name, PolicyArn: &pl.arn})
				return e
			})
		} else {
			what = "AttachUserPolicy"
			err = p.withConflictRetry(ctx, func() error {
				_, e := p.client.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: &pl.name, PolicyArn: &pl.arn})
				return e
			})
		}
	case ModeInline:
		if a.ExpiresAt.IsZero() {
			return grants.Untouched(a.Ref), grants.Permanent(fmt.Errorf("iam: grant %s: inline policies need an expiry", a.GrantID))
		}
		doc, derr := Document(pl.doc, a.ExpiresAt)
		if derr != nil {
			return grants.Untouched(a.Ref), grants.Permanent(fmt.Errorf("iam: grant %s: %w", a.GrantID, derr))
		}
		what = "PutUserPolicy"
		err = p.withConflictRetry(ctx, func() error {
			_, e := p.client.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: &pl.name, PolicyName: &pl.polName, PolicyDocument: &doc})
			return e
		})
	}
	if awsutil.Code(err) == "EntityAlreadyExists" {
		err = nil
	}
	if err != nil {
		return ref, fmt.Errorf("iam: grant %s: %s: %w", a.GrantID, what, classify(err))
	}
	return ref, nil
}

// ref names the access for humans; Grant returns it (or grants.PreExistingRef of it).
func (pl plan) ref() string {
	switch {
	case pl.mode == ModeGroup:
		return "group/" + pl.group + "/user/" + pl.name
	case pl.mode == ModeManaged && pl.role:
		return "role/" + pl.name + "/" + pl.arn
	case pl.mode == ModeManaged:
		return "user/" + pl.name + "/" + pl.arn
	}
	return "user/" + pl.name + "/inline/" + pl.polName
}

// Revoke implements grants.Provider.
func (p *Provider) Revoke(ctx context.Context, a grants.Assignment) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("iam: revoke %s: %w", a.GrantID, err)
	}
	if grants.IsPreExisting(a.Ref) || a.Ref == grants.RefUntouched {
		return nil // standing access an administrator made, or nothing jitbot applied: not jitbot's to remove
	}
	pl, err := p.plan("revoke", a)
	if err != nil {
		return err
	}
	var what string
	switch pl.mode {
	case ModeGroup:
		what = "RemoveUserFromGroup"
		err = p.withConflictRetry(ctx, func() error {
			_, e := p.client.RemoveUserFromGroup(ctx, &iam.RemoveUserFromGroupInput{GroupName: &pl.group, UserName: &pl.name})
			return e
		})
	case ModeManaged:
		if pl.role {
			what = "DetachRolePolicy"
			err = p.withConflictRetry(ctx, func() error {
				_, e := p.client.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: &pl.name, PolicyArn: &pl.arn})
				return e
			})
		} else {
			what = "DetachUserPolicy"
			err = p.withConflictRetry(ctx, func() error {
				_, e := p.client.DetachUserPolicy(ctx, &iam.DetachUserPolicyInput{UserName: &pl.name, PolicyArn: &pl.arn})
				return e
			})
		}
	case ModeInline:
		what = "DeleteUserPolicy"
		err = p.withConflictRetry(ctx, func() error {
			_, e := p.client.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: &pl.name, PolicyName: &pl.polName})
			return e
		})
	}
	if awsutil.Code(err) == "NoSuchEntity" {
		return nil // the membership, attachment, policy or principal is gone
	}
	if err != nil {
		return fmt.Errorf("iam: revoke %s: %s: %w", a.GrantID, what, classify(err))
	}
	return nil
}

// Check implements grants.Provider.
func (p *Provider) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("iam: check %s: %w", a.GrantID, err)
	}
	pl, err := p.plan("check", a)
	if err != nil {
		return false, err
	}
	present, what, err := p.present(ctx, pl)
	if awsutil.Code(err) == "NoSuchEntity" {
		return false, nil // the principal (or the inline policy) does not exist
	}
	if err != nil {
		return false, fmt.Errorf("iam: check %s: %s: %w", a.GrantID, what, classify(err))
	}
	return present, nil
}

// present reports whether the planned access exists, and which call said so. A NoSuchEntity error is returned
// as is: for the inline mode it means the policy is absent, otherwise that the user or role does not exist.
func (p *Provider) present(ctx context.Context, pl plan) (present bool, what string, err error) {
	switch pl.mode {
	case ModeGroup:
		what = "ListGroupsForUser"
		pager := iam.NewListGroupsForUserPaginator(p.client, &iam.ListGroupsForUserInput{UserName: &pl.name})
		for pager.HasMorePages() && !present {
			var out *iam.ListGroupsForUserOutput
			if err = p.withConflictRetry(ctx, func() (e error) { out, e = pager.NextPage(ctx); return e }); err != nil {
				break
			}
			for _, g := range out.Groups {
				if aws.ToString(g.GroupName) == pl.group {
					present = true
				}
			}
		}
	case ModeManaged:
		if pl.role {
			what = "ListAttachedRolePolicies"
			pager := iam.NewListAttachedRolePoliciesPaginator(p.client, &iam.ListAttachedRolePoliciesInput{RoleName: &pl.name})
			for pager.HasMorePages() && !present {
				var out *iam.ListAttachedRolePoliciesOutput
				if err = p.withConflictRetry(ctx, func() (e error) { out, e = pager.NextPage(ctx); return e }); err != nil {
					break
				}
				for _, ap := range out.AttachedPolicies {
					present = present || aws.ToString(ap.PolicyArn) == pl.arn
				}
			}
		} else {
			what = "ListAttachedUserPolicies"
			pager := iam.NewListAttachedUserPoliciesPaginator(p.client, &iam.ListAttachedUserPoliciesInput{UserName: &pl.name})
			for pager.HasMorePages() && !present {
				var out *iam.ListAttachedUserPoliciesOutput
				if err = p.withConflictRetry(ctx, func() (e error) { out, e = pager.NextPage(ctx); return e }); err != nil {
					break
				}
				for _, ap := range out.AttachedPolicies {
					present = present || aws.ToString(ap.PolicyArn) == pl.arn
				}
			}
		}
	case ModeInline:
		what = "GetUserPolicy"
		err = p.withConflictRetry(ctx, func() error {
			_, e := p.client.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: &pl.name, PolicyName: &pl.polName})
			return e
		})
		present = err == nil
	}
	return present, what, err
}

// ListOwned implements grants.Inventory: the inline policies named "jitbot-*" of Config.ScanUsers. Owned.GrantID
// is the policy name without the prefix ("" for hashed names); Owned.Target is {"inline_policy": <policy name>}.
func (p *Provider) ListOwned(ctx context.Context) ([]grants.Owned, error) {
	var owned []grants.Owned
	for _, user := range p.cfg.ScanUsers {
		pager := iam.NewListUserPoliciesPaginator(p.client, &iam.ListUserPoliciesInput{UserName: aws.String(user)})
		for pager.HasMorePages() {
			var out *iam.ListUserPoliciesOutput
			err := p.withConflictRetry(ctx, func() (e error) { out, e = pager.NextPage(ctx); return e })
			if awsutil.Code(err) == "NoSuchEntity" {
				break // the user is gone, and its policies with it
			}
			if err != nil {
				return nil, fmt.Errorf("iam: listing inline policies of %s: %w", user, classify(err))
			}
			for _, name := range out.PolicyNames {
				if !strings.HasPrefix(name, InlinePolicyPrefix) {
					continue
				}
				id := strings.TrimPrefix(name, InlinePolicyPrefix)
				binding := ""
				switch {
				case strings.HasPrefix(id, "sha256-"):
					id = ""
				case bindingKeyRe.MatchString(id):
					binding, id = id, ""
				}
				owned = append(owned, grants.Owned{
					BindingKey: binding, GrantID: id, Principal: user,
					Target: map[string]string{TargetInlinePolicy: name},
					Ref:    "user/" + user + "/inline/" + name,
				})
			}
		}
	}
	return owned, nil
}
