// Package kube is a grants.Provider for Kubernetes RBAC: a grant is one RoleBinding (target with a namespace) or
// ClusterRoleBinding (no namespace) that binds the principal to a Role or ClusterRole; revoke deletes it.
// Kubernetes has no native expiry for bindings, so jitbot's sweeper is what ends access. See
// docs/providers/kubernetes.md for the policy settings, the RBAC the bot needs, and what revocation does not cut.
//
// # Targets and principals
//
//	role: <Role name>            (requires namespace) -> RoleBinding referencing a Role
//	cluster_role: <ClusterRole>  with namespace       -> RoleBinding referencing a ClusterRole
//	cluster_role: <ClusterRole>  without namespace    -> ClusterRoleBinding
//	namespace: <namespace>       optional
//
// Principals are "user:<name>", "group:<name>" or "serviceaccount:<namespace>/<name>"; a string with none of these
// prefixes is a user name (so OIDC-prefixed names such as "oidc:alice@example.com" work as is).
//
// # Objects
//
// The binding of grant G is named "jitbot-<G>" (lowercased, other characters replaced, with a hash suffix when
// that changed anything, at most 253 bytes) and carries
//
//	labels:      app.kubernetes.io/managed-by=jitbot
//	             jitbot.dev/grant-id=<G, or "h-"+hash when G is not a valid label value>
//	             jitbot.dev/binding=<hash of namespace, roleRef and subject>
//	annotations: jitbot.dev/grant-id, jitbot.dev/request-id, jitbot.dev/slack-user, jitbot.dev/expires-at
//	             (RFC 3339, the expiry known when the binding was created), jitbot.dev/granted-at
//
// Grant first reads the Role or ClusterRole the target names and fails permanently when it does not exist: the
// API server accepts a binding to a missing role from a caller with bind, so a typo would otherwise grant
// nothing while every call reports success. Errors quote the API server's Status message.
//
// Standing access: a binding someone else made (not labelled as jitbot's) that binds the subject to the same role
// in the same scope is the same access. When jitbot holds nothing of its own for the binding (no reference of
// its own, no jitbot binding), Grant creates nothing and returns grants.PreExistingRef, which the manager audits
// and never revokes; Revoke only ever deletes jitbot-labelled bindings. Check reports the access from any of
// these bindings.
//
// Overlapping leases of one principal on one target (grants.Assignment: same principal and target, different
// grant ids) each get their own binding, and the manager calls Revoke only when no lease covers the access any
// more, with the assignment of one of them. Revoke therefore deletes every jitbot binding carrying the same
// jitbot.dev/binding label in the target's scope, not only "jitbot-<G>": otherwise the binding of a lease that
// ended while covered would keep the access forever.
package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/providerkit"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	rbacclient "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Labels and annotations jitbot puts on the bindings it creates.
const (
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	ManagedByJitbot     = "jitbot"
	LabelGrantID        = "jitbot.dev/grant-id"
	LabelBinding        = "jitbot.dev/binding"
	AnnotationGrantID   = "jitbot.dev/grant-id"
	AnnotationRequestID = "jitbot.dev/request-id"
	AnnotationSlackUser = "jitbot.dev/slack-user"
	AnnotationExpiresAt = "jitbot.dev/expires-at"
	AnnotationGrantedAt = "jitbot.dev/granted-at"
)

// Target keys.
const (
	TargetRole        = "role"
	TargetClusterRole = "cluster_role"
	TargetNamespace   = "namespace"
)

// listPageSize bounds one list response.
const listPageSize = 500

// Config configures a Provider.
type Config struct {
	// RESTConfig is used as is when set (its ContentType is forced to JSON). When nil: the kubeconfig file at
	// Kubeconfig if set; otherwise the in-cluster service account when running in a pod; otherwise the
	// standard kubeconfig rules (KUBECONFIG, then ~/.kube/config).
	RESTConfig *rest.Config
	// Kubeconfig is a kubeconfig file path; Context a context in it ("" = its current context).
	Kubeconfig string
	Context    string
	// Namespaces, when not empty, confines the provider to RoleBindings in these namespaces: targets without a
	// namespace (ClusterRoleBindings) or in another namespace are refused, and ListOwned lists only there, so
	// the bot needs no cluster-wide rights. Empty: any namespace and cluster-wide bindings.
	Namespaces []string
	// Now is the clock for the granted-at annotation; time.Now when nil.
	Now func() time.Time
}

// Provider implements grants.Provider, grants.Inventory and grants.OtherAccessInspector.
type Provider struct {
	rc         rest.Interface
	namespaces []string
	now        func() time.Time
}

var (
	_ grants.Provider             = (*Provider)(nil)
	_ grants.Inventory            = (*Provider)(nil)
	_ grants.OtherAccessInspector = (*Provider)(nil)
)

// New builds a Provider. It makes no API call (ctx is reserved for credential plugins that need one).
func New(ctx context.Context, cfg Config) (*Provider, error) {
	_ = ctx
	for _, ns := range cfg.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("kube: namespace %q: %s", ns, strings.Join(errs, "; "))
		}
	}
	rc, err := restConfig(cfg)
	if err != nil {
		return nil, err
	}
	rc = rest.CopyConfig(rc)
	// JSON on the wire, in production too: a handful of small objects per grant gains nothing from protobuf,
	// JSON is what every apiserver, aggregation layer and auditing proxy understands, and it is the path the
	// tests exercise.
	rc.ContentType = "application/json"
	rc.AcceptContentTypes = "application/json"
	client, err := rbacclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube: client: %w", err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Provider{rc: client.RESTClient(), namespaces: slices.Clone(cfg.Namespaces), now: now}, nil
}

func restConfig(cfg Config) (*rest.Config, error) {
	if cfg.RESTConfig != nil {
		return cfg.RESTConfig, nil
	}
	if cfg.Kubeconfig == "" && cfg.Context == "" {
		if rc, err := rest.InClusterConfig(); err == nil {
			return rc, nil
		} else if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("kube: in-cluster config: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules() // KUBECONFIG, then ~/.kube/config
	if cfg.Kubeconfig != "" {
		path := cfg.Kubeconfig
		if strings.HasPrefix(path, "~/") {
			if home, err := os.UserHomeDir(); err == nil {
				path = home + path[1:]
			}
		}
		rules = &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: cfg.Context}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		// clientcmd errors name files and contexts, never credentials.
		return nil, fmt.Errorf("kube: kubeconfig: %w", err)
	}
	return rc, nil
}

// Settings is the "kubernetes" block of a provider in the policy file.
type Settings struct {
	// Kubeconfig is a kubeconfig path; empty: in-cluster service account, else KUBECONFIG / ~/.kube/config.
	Kubeconfig string `policy:"kubeconfig" yaml:"kubeconfig,omitempty" json:"kubeconfig,omitempty"`
	// Context is a context in the kubeconfig; empty: its current context.
	Context string `policy:"context" yaml:"context,omitempty" json:"context,omitempty"`
	// Namespaces confines the provider to RoleBindings in these namespaces (see Config.Namespaces).
	Namespaces []string `policy:"namespaces" yaml:"namespaces,omitempty" json:"namespaces,omitempty"`
}

// Validate checks the settings without touching the file system or the cluster.
func (s Settings) Validate() error {
	var errs []error
	if s.Kubeconfig != "" && strings.TrimSpace(s.Kubeconfig) != s.Kubeconfig {
		errs = append(errs, providerkit.SettingErrorf("kubeconfig", "leading or trailing space"))
	}
	if s.Context != "" && (strings.TrimSpace(s.Context) != s.Context || hasControl(s.Context)) {
		errs = append(errs, providerkit.SettingErrorf("context", "leading or trailing space or control characters"))
	}
	seen := map[string]bool{}
	for i, ns := range s.Namespaces {
		if e := validation.IsDNS1123Label(ns); len(e) > 0 {
			errs = append(errs, providerkit.SettingErrorf("namespaces", "[%d] %q is not a valid namespace: %s", i, ns, strings.Join(e, "; ")))
		}
		if seen[ns] {
			errs = append(errs, providerkit.SettingErrorf("namespaces", "[%d] %q listed twice", i, ns))
		}
		seen[ns] = true
	}
	return errors.Join(errs...)
}

// ValidateTarget checks a role's target against these settings: ValidateTarget, and with Namespaces set, a
// namespace from the list.
func (s Settings) ValidateTarget(target map[string]string) error {
	if err := ValidateTarget(target); err != nil {
		return err
	}
	return checkScope(s.Namespaces, target[TargetNamespace])
}

// Config turns the settings into a Config.
func (s Settings) Config() Config {
	return Config{Kubeconfig: s.Kubeconfig, Context: s.Context, Namespaces: slices.Clone(s.Namespaces)}
}

func checkScope(namespaces []string, ns string) error {
	if len(namespaces) == 0 {
		return nil
	}
	if ns == "" {
		return fmt.Errorf("kube: target has no namespace, but this provider is confined to namespaces %s: cluster-wide bindings are refused", strings.Join(namespaces, ", "))
	}
	if !slices.Contains(namespaces, ns) {
		return fmt.Errorf("kube: namespace %q is not one of this provider's namespaces (%s)", ns, strings.Join(namespaces, ", "))
	}
	return nil
}

// target is a parsed policy target.
type target struct {
	namespace string
	roleRef   rbacv1.RoleRef
}

// ValidateTarget checks a policy target: exactly one of role and cluster_role, role only with a namespace,
// names that are DNS-1123 subdomains (Role, ClusterRole) or labels (namespace), no other keys.
func ValidateTarget(t map[string]string) error {
	_, err := parseTarget(t)
	return err
}

func parseTarget(t map[string]string) (target, error) {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if k != TargetRole && k != TargetClusterRole && k != TargetNamespace {
			return target{}, fmt.Errorf("kube: unknown target key %q (known: role, cluster_role, namespace)", k)
		}
	}
	role, hasRole := t[TargetRole]
	cr, hasCR := t[TargetClusterRole]
	ns, hasNS := t[TargetNamespace]
	if hasRole == hasCR {
		return target{}, errors.New("kube: a target needs exactly one of role and cluster_role")
	}
	if hasNS {
		if e := validation.IsDNS1123Label(ns); len(e) > 0 {
			return target{}, fmt.Errorf("kube: target namespace %q: %s", ns, strings.Join(e, "; "))
		}
	}
	out := target{namespace: ns, roleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName}}
	if hasRole {
		if !hasNS {
			return target{}, errors.New("kube: a role target needs a namespace (a Role lives in one); use cluster_role for a ClusterRole")
		}
		out.roleRef.Kind, out.roleRef.Name = "Role", role
	} else {
		out.roleRef.Kind, out.roleRef.Name = "ClusterRole", cr
	}
	if e := validation.IsDNS1123Subdomain(out.roleRef.Name); len(e) > 0 {
		return target{}, fmt.Errorf("kube: target %s %q: %s", out.roleRef.Kind, out.roleRef.Name, strings.Join(e, "; "))
	}
	return out, nil
}

// Principal kinds.
const (
	prefixUser           = "user:"
	prefixGroup          = "group:"
	prefixServiceAccount = "serviceaccount:"
)

// ValidatePrincipal checks a principal: user:<name>, group:<name>, serviceaccount:<namespace>/<name>, or a bare
// user name. Groups and users that stand for everyone (system:authenticated, system:unauthenticated,
// system:serviceaccounts[:*], system:anonymous) are refused: a JIT grant is for one identity.
func ValidatePrincipal(p string) error {
	_, err := parsePrincipal(p)
	return err
}

func parsePrincipal(p string) (rbacv1.Subject, error) {
	switch {
	case strings.HasPrefix(p, prefixServiceAccount):
		ns, name, ok := strings.Cut(p[len(prefixServiceAccount):], "/")
		if !ok {
			return rbacv1.Subject{}, fmt.Errorf("kube: principal %q: a service account is serviceaccount:<namespace>/<name>", p)
		}
		if e := validation.IsDNS1123Label(ns); len(e) > 0 {
			return rbacv1.Subject{}, fmt.Errorf("kube: principal %q: namespace: %s", p, strings.Join(e, "; "))
		}
		if e := validation.IsDNS1123Subdomain(name); len(e) > 0 {
			return rbacv1.Subject{}, fmt.Errorf("kube: principal %q: name: %s", p, strings.Join(e, "; "))
		}
		return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}, nil
	case strings.HasPrefix(p, prefixGroup):
		name := p[len(prefixGroup):]
		if err := checkIdentityName(p, name); err != nil {
			return rbacv1.Subject{}, err
		}
		if name == "system:authenticated" || name == "system:unauthenticated" || name == "system:serviceaccounts" ||
			strings.HasPrefix(name, "system:serviceaccounts:") || name == "system:masters" {
			return rbacv1.Subject{}, fmt.Errorf("kube: principal %q: refusing to grant to a group that stands for many identities or for cluster admins", p)
		}
		return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}, nil
	default:
		name := strings.TrimPrefix(p, prefixUser)
		if err := checkIdentityName(p, name); err != nil {
			return rbacv1.Subject{}, err
		}
		if name == "system:anonymous" {
			return rbacv1.Subject{}, fmt.Errorf("kube: principal %q: refusing to grant to the anonymous user", p)
		}
		return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}, nil
	}
}

func checkIdentityName(p, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("kube: principal %q: empty name", p)
	case len(name) > 1024:
		return fmt.Errorf("kube: principal: name longer than 1024 bytes")
	case !utf8.ValidString(name) || hasControl(name) || strings.TrimSpace(name) != name:
		return fmt.Errorf("kube: principal %q: control characters, invalid UTF-8 or surrounding space", p)
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}

// FormatPrincipal is the principal string of a binding subject (the inverse of the principal syntax).
func FormatPrincipal(s rbacv1.Subject, bindingNamespace string) string {
	switch s.Kind {
	case rbacv1.ServiceAccountKind:
		ns := s.Namespace
		if ns == "" {
			ns = bindingNamespace
		}
		return prefixServiceAccount + ns + "/" + s.Name
	case rbacv1.GroupKind:
		return prefixGroup + s.Name
	default:
		return prefixUser + s.Name
	}
}

// BindingName is the name of grant grantID's binding.
func BindingName(grantID string) string {
	const prefix, maxLen = "jitbot-", 253
	var b strings.Builder
	for _, r := range strings.ToLower(grantID) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.TrimRight(b.String(), "-")
	suffix := ""
	if s != grantID || len(prefix)+len(s) > maxLen {
		// Sanitising is lossy ("G-1" and "g-1" both become "g-1"): a hash of the original keeps names apart.
		suffix = "-" + shortHash(grantID, 10)
	}
	if over := len(prefix) + len(s) + len(suffix) - maxLen; over > 0 {
		s = strings.TrimRight(s[:len(s)-over], "-")
	}
	return prefix + s + suffix
}

// grantLabel is the grant-id label value: the id itself when it is a valid label value, else a hash.
func grantLabel(grantID string) string {
	if len(validation.IsValidLabelValue(grantID)) == 0 {
		return grantID
	}
	return "h-" + shortHash(grantID, 40)
}

func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// bindingKey hashes what the binding grants: the scope, the role and the subject. Leases of one principal on one
// target share it.
func bindingKey(t target, s rbacv1.Subject) string {
	h := sha256.New()
	for _, f := range []string{t.namespace, t.roleRef.Kind, t.roleRef.Name, s.Kind, s.APIGroup, s.Namespace, s.Name} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// spec is one assignment resolved into the binding it needs.
type spec struct {
	t        target
	subject  rbacv1.Subject
	name     string
	grantLbl string
	key      string
}

func (s spec) resource() string {
	if s.t.namespace == "" {
		return "clusterrolebindings"
	}
	return "rolebindings"
}

// ref is how humans and logs name the binding.
func (s spec) ref() string {
	if s.t.namespace == "" {
		return "clusterrolebinding/" + s.name
	}
	return "rolebinding/" + s.t.namespace + "/" + s.name
}

func (p *Provider) resolve(a grants.Assignment) (spec, error) {
	if a.GrantID == "" {
		return spec{}, grants.Permanent(errors.New("kube: assignment has no grant id"))
	}
	t, err := parseTarget(a.Target)
	if err != nil {
		return spec{}, grants.Permanent(err)
	}
	if err := checkScope(p.namespaces, t.namespace); err != nil {
		return spec{}, grants.Permanent(err)
	}
	sub, err := parsePrincipal(a.Principal)
	if err != nil {
		return spec{}, grants.Permanent(err)
	}
	return spec{t: t, subject: sub, name: BindingName(a.GrantID), grantLbl: grantLabel(a.GrantID), key: bindingKey(t, sub)}, nil
}

// binding is the fields of a RoleBinding or ClusterRoleBinding that jitbot reads and writes (the two kinds have
// the same shape on the wire).
type binding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Subjects          []rbacv1.Subject `json:"subjects,omitempty"`
	RoleRef           rbacv1.RoleRef   `json:"roleRef"`
}

type bindingList struct {
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []binding `json:"items"`
}

func (p *Provider) desired(s spec, a grants.Assignment) binding {
	kind := "ClusterRoleBinding"
	if s.t.namespace != "" {
		kind = "RoleBinding"
	}
	ann := map[string]string{
		AnnotationGrantID:   a.GrantID,
		AnnotationGrantedAt: p.now().UTC().Format(time.RFC3339),
	}
	if a.RequestID != "" {
		ann[AnnotationRequestID] = a.RequestID
	}
	if a.UserID != "" {
		ann[AnnotationSlackUser] = a.UserID
	}
	if !a.ExpiresAt.IsZero() {
		ann[AnnotationExpiresAt] = a.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return binding{
		TypeMeta: metav1.TypeMeta{Kind: kind, APIVersion: rbacv1.SchemeGroupVersion.String()},
		ObjectMeta: metav1.ObjectMeta{
			Name:      s.name,
			Namespace: s.t.namespace,
			Labels: map[string]string{
				LabelManagedBy: ManagedByJitbot,
				LabelGrantID:   s.grantLbl,
				LabelBinding:   s.key,
			},
			Annotations: ann,
		},
		Subjects: []rbacv1.Subject{s.subject},
		RoleRef:  s.t.roleRef,
	}
}

// owned reports whether b is jitbot's binding for grant label lbl.
func owned(b binding, lbl string) bool {
	return b.Labels[LabelManagedBy] == ManagedByJitbot && b.Labels[LabelGrantID] == lbl
}

// grantsAccess reports whether b binds exactly the subject to the role, as jitbot created it.
func grantsAccess(b binding, s spec) bool {
	if b.RoleRef != s.t.roleRef || len(b.Subjects) != 1 {
		return false
	}
	sub := b.Subjects[0]
	if sub.Kind == rbacv1.ServiceAccountKind && sub.Namespace == "" {
		sub.Namespace = b.Namespace
	}
	return sub == s.subject
}

// bindsSubject reports whether b lists the subject (among possibly others added by hand).
func bindsSubject(b binding, want rbacv1.Subject) bool {
	for _, sub := range b.Subjects {
		if sub.Kind == rbacv1.ServiceAccountKind && sub.Namespace == "" {
			sub.Namespace = b.Namespace
		}
		if sub == want {
			return true
		}
	}
	return false
}

func (p *Provider) req(verb string, s spec) *rest.Request {
	r := p.rc.Verb(verb).Resource(s.resource()).MaxRetries(0)
	if s.t.namespace != "" {
		r = r.Namespace(s.t.namespace)
	}
	return r
}

// Grant creates the binding. A binding of that name that jitbot created for this grant with the same subject and
// role counts as success; any other object of that name is a permanent name clash.
func (p *Provider) Grant(ctx context.Context, a grants.Assignment) (string, error) {
	s, err := p.resolve(a)
	if err != nil {
		return "", err
	}
	if err := p.roleExists(ctx, s.t); err != nil {
		return "", err
	}
	if !grants.OwnRef(a.Ref) {
		// Standing access decides only when jitbot holds nothing of its own for the binding.
		own, standing, err := p.scan(ctx, s)
		if err != nil {
			return "", classify(ctx, "grant: list "+s.resource(), err, opGrant)
		}
		if !own && len(standing) > 0 {
			return grants.PreExistingRef(standing[0]), nil
		}
	}
	body, err := json.Marshal(p.desired(s, a))
	if err != nil {
		return "", grants.Permanent(fmt.Errorf("kube: encode %s: %w", s.ref(), err))
	}
	err = p.req("POST", s).SetHeader("Content-Type", "application/json").Body(body).Do(ctx).Error()
	if err == nil {
		return s.ref(), nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return "", classifyRole(ctx, "grant: create "+s.ref()+" binding "+s.t.roleRef.Kind+" "+s.t.roleRef.Name, err, opGrant, &s.t.roleRef)
	}
	cur, found, err := p.get(ctx, s)
	if err != nil {
		return "", classify(ctx, "grant: read existing "+s.ref(), err, opGrant)
	}
	switch {
	case !found:
		return "", fmt.Errorf("kube: grant: %s existed a moment ago and is gone now (deleted concurrently); retry", s.ref())
	case cur.DeletionTimestamp != nil:
		return "", fmt.Errorf("kube: grant: %s is being deleted; retry once it is gone", s.ref())
	case !owned(cur, s.grantLbl):
		return "", grants.Permanent(fmt.Errorf("kube: grant: %s already exists and is not jitbot's binding for grant %s (labels %s=%q, %s=%q): a name clash; remove or rename that object",
			s.ref(), a.GrantID, LabelManagedBy, cur.Labels[LabelManagedBy], LabelGrantID, cur.Labels[LabelGrantID]))
	case !grantsAccess(cur, s):
		return "", grants.Permanent(fmt.Errorf("kube: grant: %s exists for this grant but was modified (roleRef %s/%s, %d subjects; want %s/%s for %s): delete it to let jitbot recreate it",
			s.ref(), cur.RoleRef.Kind, cur.RoleRef.Name, len(cur.Subjects), s.t.roleRef.Kind, s.t.roleRef.Name, FormatPrincipal(s.subject, s.t.namespace)))
	}
	return s.ref(), nil
}

// roleExists checks that the Role or ClusterRole a target names exists. The API server does not: holding bind
// on a role name, the bot may create a binding to a role that does not exist, and such a grant "succeeds", is
// reported present, and gives nobody anything (a typo in the policy would fail silently). Needs get on roles
// or clusterroles (docs/providers/kubernetes.md).
func (p *Provider) roleExists(ctx context.Context, t target) error {
	res, where := "clusterroles", ""
	r := p.rc.Get().MaxRetries(0)
	if t.roleRef.Kind == "Role" {
		res, where = "roles", fmt.Sprintf(" in namespace %q (or that namespace does not exist)", t.namespace)
		r = r.Namespace(t.namespace)
	}
	_, err := doRaw(ctx, r.Resource(res).Name(t.roleRef.Name))
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("kube: grant: get %s %s: %w", t.roleRef.Kind, t.roleRef.Name, ctx.Err())
	case apierrors.IsNotFound(err):
		return grants.Permanent(fmt.Errorf("kube: grant: %s %q does not exist%s, so a binding to it would grant nothing: check the role's target in the policy (or create the role first)",
			t.roleRef.Kind, t.roleRef.Name, where))
	case apierrors.IsForbidden(err):
		return grants.Permanent(fmt.Errorf("kube: grant: cannot check that %s %q exists%s: the bot needs get on %s (part of the RBAC in docs/providers/kubernetes.md). Apiserver said: %w",
			t.roleRef.Kind, t.roleRef.Name, where, res, err))
	}
	return classify(ctx, "grant: get "+t.roleRef.Kind+" "+t.roleRef.Name, err, opCheck)
}

// VerifyTarget checks a policy target against the cluster: the target is valid for this provider and the Role or
// ClusterRole it names exists. For `jitbot policy check` when the cluster is reachable; it creates nothing.
func (p *Provider) VerifyTarget(ctx context.Context, target map[string]string) error {
	t, err := parseTarget(target)
	if err != nil {
		return grants.Permanent(err)
	}
	if err := checkScope(p.namespaces, t.namespace); err != nil {
		return grants.Permanent(err)
	}
	return p.roleExists(ctx, t)
}

// doRaw runs r and returns the body. On an error answer it returns the API server's own Status (reason and
// message, such as `User "x" cannot get resource "rolebindings"`): Result.Raw alone reports only a generic
// "unknown (get rolebindings...)" for a JSON error body; Result.Error decodes the Status.
func doRaw(ctx context.Context, r *rest.Request) ([]byte, error) {
	res := r.Do(ctx)
	raw, err := res.Raw()
	if err != nil {
		if serr := res.Error(); serr != nil {
			err = serr
		}
		return nil, err
	}
	return raw, nil
}

func (p *Provider) get(ctx context.Context, s spec) (binding, bool, error) {
	raw, err := doRaw(ctx, p.req("GET", s).Name(s.name))
	if apierrors.IsNotFound(err) {
		return binding{}, false, nil
	}
	if err != nil {
		return binding{}, false, err
	}
	var b binding
	if err := json.Unmarshal(raw, &b); err != nil {
		return binding{}, false, fmt.Errorf("decode %s: %w", s.ref(), err)
	}
	return b, true, nil
}

// scan lists the bindings in the target's scope and reports whether a jitbot binding of this access exists
// (any lease's) and the references of the bindings someone else made that bind the subject to the same role
// (none if none) - standing access, which jitbot neither duplicates nor removes.
func (p *Provider) scan(ctx context.Context, s spec) (own bool, standing []string, err error) {
	items, err := p.list(ctx, s.t.namespace, s.resource(), "")
	if apierrors.IsNotFound(err) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	for _, b := range items {
		if b.RoleRef != s.t.roleRef || !bindsSubject(b, s.subject) || b.DeletionTimestamp != nil {
			continue
		}
		if b.Labels[LabelManagedBy] == ManagedByJitbot {
			if b.Labels[LabelBinding] == s.key {
				own = true
			}
			continue
		}
		standing = append(standing, refOf(s.t.namespace, b.Name))
	}
	return own, standing, nil
}

// Revoke deletes every binding jitbot made for this principal and role in the target's scope (the assignment's
// own "jitbot-<grant id>" and those of overlapping leases that ended while covered). Each delete carries a UID
// precondition: the object deleted is the one listed, never a namesake created in between by someone else.
func (p *Provider) Revoke(ctx context.Context, a grants.Assignment) error {
	s, err := p.resolve(a)
	if err != nil {
		return err
	}
	sel := LabelManagedBy + "=" + ManagedByJitbot + "," + LabelBinding + "=" + s.key
	items, err := p.list(ctx, s.t.namespace, s.resource(), sel)
	if apierrors.IsNotFound(err) {
		// A collection that does not exist holds nothing (the apiserver answers an empty list even for a
		// namespace that does not exist, so this is a proxy or an API not served: nothing of ours is there).
		return nil
	}
	if err != nil {
		return classify(ctx, "revoke: list "+s.resource(), err, opRevoke)
	}
	for _, b := range items {
		if b.RoleRef != s.t.roleRef || !bindsSubject(b, s.subject) {
			continue // carries the label but does not give this subject this role: not this assignment
		}
		if err := p.deleteUID(ctx, s, b.Name, b.UID); err != nil {
			return classify(ctx, "revoke: delete "+refOf(s.t.namespace, b.Name), err, opRevoke)
		}
	}
	return nil
}

func refOf(ns, name string) string {
	if ns == "" {
		return "clusterrolebinding/" + name
	}
	return "rolebinding/" + ns + "/" + name
}

func (p *Provider) deleteUID(ctx context.Context, s spec, name string, uid types.UID) error {
	opts := metav1.DeleteOptions{
		TypeMeta:      metav1.TypeMeta{Kind: "DeleteOptions", APIVersion: "v1"},
		Preconditions: &metav1.Preconditions{UID: &uid},
	}
	body, err := json.Marshal(opts)
	if err != nil {
		return err
	}
	err = p.req("DELETE", s).Name(name).SetHeader("Content-Type", "application/json").Body(body).Do(ctx).Error()
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (p *Provider) list(ctx context.Context, namespace, resource, selector string) ([]binding, error) {
	var out []binding
	cont := ""
	for {
		r := p.rc.Get().Resource(resource).MaxRetries(0).Param("limit", fmt.Sprint(listPageSize))
		if selector != "" {
			r = r.Param("labelSelector", selector)
		}
		if namespace != "" {
			r = r.Namespace(namespace)
		}
		if cont != "" {
			r = r.Param("continue", cont)
		}
		raw, err := doRaw(ctx, r)
		if err != nil {
			return nil, err
		}
		var l bindingList
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, fmt.Errorf("decode %s list: %w", resource, err)
		}
		for i := range l.Items {
			if l.Items[i].Namespace == "" {
				l.Items[i].Namespace = namespace
			}
		}
		out = append(out, l.Items...)
		if l.Continue == "" {
			return out, nil
		}
		cont = l.Continue
	}
}

// Check reports whether the principal holds the role in the target's scope: through the grant's binding (read
// first), another jitbot binding of the same access (an overlapping lease's), or - unless the lease carries a
// reference of jitbot's own, when only jitbot's access is asked about - a binding someone else made (standing
// access, which Grant reported as pre-existing).
//
// Check keeps answering "is the access there" as Grant and Revoke understand the access (with a jitbot
// reference, jitbot's own): the tools and the shared suite rely on that. The manager verifies revokes with
// Inspect, which answers both questions at once.
func (p *Provider) Check(ctx context.Context, a grants.Assignment) (bool, error) {
	s, err := p.resolve(a)
	if err != nil {
		return false, err
	}
	b, found, err := p.get(ctx, s)
	if err != nil {
		return false, classify(ctx, "check: get "+s.ref(), err, opCheck)
	}
	if found && b.DeletionTimestamp == nil && owned(b, s.grantLbl) && grantsAccess(b, s) {
		return true, nil
	}
	own, standing, err := p.scan(ctx, s)
	if err != nil {
		return false, classify(ctx, "check: list "+s.resource(), err, opCheck)
	}
	if grants.OwnRef(a.Ref) {
		return own, nil // the lease's access is jitbot's: a binding someone added since is not it
	}
	return own || len(standing) > 0, nil
}

// Inspect reports, whatever Assignment.Ref says, whether jitbot's access is present (the grant's binding, or
// another jitbot binding of the same access) and which bindings someone else made bind the subject to the same
// role in the target's scope ("rolebinding/<namespace>/<name>", "clusterrolebinding/<name>"): after jitbot's
// revoke those keep the access, and they are not jitbot's to remove. It looks where Grant looks for standing
// access (the same kind of binding in the same scope, the subject itself); access through a group the user is
// in, or a ClusterRoleBinding of the ClusterRole a namespaced target names, is not seen.
func (p *Provider) Inspect(ctx context.Context, a grants.Assignment) (grants.Presence, error) {
	s, err := p.resolve(a)
	if err != nil {
		return grants.Presence{}, err
	}
	b, found, err := p.get(ctx, s)
	if err != nil {
		return grants.Presence{}, classify(ctx, "check: get "+s.ref(), err, opCheck)
	}
	own, standing, err := p.scan(ctx, s)
	if err != nil {
		return grants.Presence{}, classify(ctx, "check: list "+s.resource(), err, opCheck)
	}
	ours := own || found && b.DeletionTimestamp == nil && owned(b, s.grantLbl) && grantsAccess(b, s)
	return grants.Presence{Ours: ours, Other: standing}, nil
}

// ListOwned lists the bindings labelled app.kubernetes.io/managed-by=jitbot: RoleBindings in every namespace
// (or in Config.Namespaces) and, unless confined to namespaces, ClusterRoleBindings. A binding with several
// subjects (edited by hand) yields one Owned per subject.
func (p *Provider) ListOwned(ctx context.Context) ([]grants.Owned, error) {
	sel := LabelManagedBy + "=" + ManagedByJitbot
	var out []grants.Owned
	add := func(items []binding) {
		for _, b := range items {
			id := b.Annotations[AnnotationGrantID]
			if id == "" || grantLabel(id) != b.Labels[LabelGrantID] {
				// The annotation is missing or disagrees with the label: trust the label unless it is a hash.
				id = b.Labels[LabelGrantID]
				if strings.HasPrefix(id, "h-") {
					id = ""
				}
			}
			t := map[string]string{}
			if b.Namespace != "" {
				t[TargetNamespace] = b.Namespace
			}
			if b.RoleRef.Kind == "Role" {
				t[TargetRole] = b.RoleRef.Name
			} else {
				t[TargetClusterRole] = b.RoleRef.Name
			}
			for _, sub := range b.Subjects {
				out = append(out, grants.Owned{GrantID: id, Principal: FormatPrincipal(sub, b.Namespace), Target: maps.Clone(t), Ref: refOf(b.Namespace, b.Name)})
			}
		}
	}
	if len(p.namespaces) == 0 {
		items, err := p.list(ctx, "", "rolebindings", sel)
		if err != nil {
			return nil, classify(ctx, "list rolebindings in all namespaces", err, opCheck)
		}
		add(items)
		items, err = p.list(ctx, "", "clusterrolebindings", sel)
		if err != nil {
			return nil, classify(ctx, "list clusterrolebindings", err, opCheck)
		}
		add(items)
		return out, nil
	}
	for _, ns := range p.namespaces {
		items, err := p.list(ctx, ns, "rolebindings", sel)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, classify(ctx, "list rolebindings in "+ns, err, opCheck)
		}
		add(items)
	}
	return out, nil
}

type op int

const (
	opGrant op = iota
	opRevoke
	opCheck
)

// classify wraps an API error: permanent when retrying cannot help, retryable otherwise. A context that ended
// is always reported as such (retryable: the next attempt gets a fresh context).
func classify(ctx context.Context, what string, err error, o op) error {
	return classifyRole(ctx, what, err, o, nil)
}

// classifyRole is classify naming the role in an escalation refusal.
func classifyRole(ctx context.Context, what string, err error, o op, role *rbacv1.RoleRef) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("kube: %s: %w", what, cerr)
	}
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		// Transport errors, timeouts, undecodable answers: retryable.
		return fmt.Errorf("kube: %s: %w", what, err)
	}
	status := st.Status()
	code := int(status.Code)
	switch {
	case apierrors.IsForbidden(err):
		if strings.Contains(status.Message, "attempting to grant RBAC permissions not currently held") {
			rule := "resources [roles or clusterroles], resourceNames [<role>]"
			if role != nil {
				res := "clusterroles"
				if role.Kind == "Role" {
					res = "roles"
				}
				rule = fmt.Sprintf("resources [%s], resourceNames [%s]", res, role.Name)
			}
			return grants.Permanent(fmt.Errorf("kube: %s: refused by RBAC escalation prevention: the bot may only bind a role whose permissions it holds itself, "+
				"or one it has the `bind` verb on. Grant the bot `bind` on exactly this role (rule: apiGroups [rbac.authorization.k8s.io], verbs [bind], %s; see docs/providers/kubernetes.md). Apiserver said: %w", what, rule, err))
		}
		return grants.Permanent(fmt.Errorf("kube: %s: forbidden: the bot's RBAC lacks this verb (it needs create, get, list and delete on rolebindings/clusterrolebindings, "+
			"plus `bind` on the roles it grants; see docs/providers/kubernetes.md). Apiserver said: %w", what, err))
	case apierrors.IsNotFound(err):
		if o == opGrant {
			return grants.Permanent(fmt.Errorf("kube: %s: not found (the namespace or the role does not exist): %w", what, err))
		}
		return fmt.Errorf("kube: %s: %w", what, err) // revoke and check handle NotFound themselves
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsNotAcceptable(err), apierrors.IsUnsupportedMediaType(err), apierrors.IsRequestEntityTooLargeError(err),
		code == 410:
		return grants.Permanent(fmt.Errorf("kube: %s: %w", what, err))
	}
	// Conflict, TooManyRequests, 5xx, Timeout, ServerTimeout, Unauthorized (credentials may be rotating): retry.
	if apierrors.IsTooManyRequests(err) {
		if d, ok := apierrors.SuggestsClientDelay(err); ok {
			return fmt.Errorf("kube: %s (retry after %ds): %w", what, d, err)
		}
	}
	return fmt.Errorf("kube: %s: %w", what, err)
}
