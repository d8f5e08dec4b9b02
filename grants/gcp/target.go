package gcp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/jitbot/jitbot/grants/providerkit"
)

// Target keys.
const (
	KeyProject      = "project"      // project id (my-project-123) or project number
	KeyFolder       = "folder"       // numeric folder id
	KeyOrganization = "organization" // numeric organization id
	KeyRole         = "role"         // roles/..., projects/<id>/roles/... or organizations/<n>/roles/...
)

// TargetKeys lists every key a gcp-iam target may carry.
var TargetKeys = []string{KeyProject, KeyFolder, KeyOrganization, KeyRole}

// basicRoles are the legacy basic (primitive) roles: IAM refuses conditions on them, and jitbot grants nothing
// without a condition.
var basicRoles = map[string]bool{"roles/owner": true, "roles/editor": true, "roles/viewer": true}

var (
	// Project ids: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter and not ending
	// with a hyphen; legacy domain-scoped ids carry a "domain:" prefix. Project numbers are digits.
	projectIDRe     = regexp.MustCompile(`^(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	numericIDRe     = regexp.MustCompile(`^[1-9][0-9]{0,24}$`)
	predefinedRole  = regexp.MustCompile(`^roles/[A-Za-z0-9_.]{1,128}$`)
	projectRoleRe   = regexp.MustCompile(`^projects/((?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9])/roles/[A-Za-z0-9_.]{3,64}$`)
	orgRoleRe       = regexp.MustCompile(`^organizations/[1-9][0-9]{0,24}/roles/[A-Za-z0-9_.]{3,64}$`)
	emailRe         = regexp.MustCompile("^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
	grantIDRe       = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
	scopeResourceRe = regexp.MustCompile(`^(projects|folders|organizations)/([^/]+)$`)
)

// target is a parsed gcp-iam target.
type target struct {
	key      string // KeyProject, KeyFolder or KeyOrganization
	id       string
	resource string // "projects/<id>", "folders/<n>", "organizations/<n>"
	role     string
}

// ValidateTarget checks a gcp-iam target from the policy file: exactly one of project, folder or organization,
// and a role that IAM accepts in a conditional binding. The policy parser calls it so that mistakes surface in
// `jitbot policy check` rather than at grant time.
func ValidateTarget(m map[string]string) error {
	_, err := parseTarget(m)
	return err
}

func parseTarget(m map[string]string) (target, error) {
	var problems []string
	for k := range m {
		if !slices.Contains(TargetKeys, k) {
			problems = append(problems, fmt.Sprintf("unknown key %q (known keys: %s)", k, strings.Join(TargetKeys, ", ")))
		}
	}
	var t target
	var scopes []string
	for _, k := range []string{KeyProject, KeyFolder, KeyOrganization} {
		v, ok := m[k]
		if !ok {
			continue
		}
		scopes = append(scopes, k)
		t.key, t.id = k, v
		switch k {
		case KeyProject:
			if !projectIDRe.MatchString(v) && !numericIDRe.MatchString(v) {
				problems = append(problems, fmt.Sprintf("project %q is not a project id (6-30 lowercase letters, digits "+
					"and hyphens, starting with a letter) or project number%s", v, prefixHint(v, "projects/")))
			}
			t.resource = "projects/" + v
		case KeyFolder:
			if !numericIDRe.MatchString(v) {
				problems = append(problems, fmt.Sprintf("folder %q is not a numeric folder id%s", v, prefixHint(v, "folders/")))
			}
			t.resource = "folders/" + v
		case KeyOrganization:
			if !numericIDRe.MatchString(v) {
				problems = append(problems, fmt.Sprintf("organization %q is not a numeric organization id%s", v,
					prefixHint(v, "organizations/")))
			}
			t.resource = "organizations/" + v
		}
	}
	switch len(scopes) {
	case 0:
		problems = append(problems, "one of project, folder or organization is required")
	case 1:
	default:
		problems = append(problems, fmt.Sprintf("exactly one of project, folder or organization is allowed, got %s",
			strings.Join(scopes, " and ")))
	}
	role, ok := m[KeyRole]
	t.role = role
	switch {
	case !ok || role == "":
		problems = append(problems, "role is required (for example roles/cloudsql.admin)")
	case basicRoles[role]:
		problems = append(problems, fmt.Sprintf("role %s is a basic role: IAM does not allow conditions on basic roles "+
			"(owner, editor, viewer), and jitbot only grants time-bound conditional bindings; use a predefined or "+
			"custom role instead", role))
	case predefinedRole.MatchString(role), orgRoleRe.MatchString(role):
	case projectRoleRe.MatchString(role):
		// A project-level custom role can only be granted on that project.
		if sub := projectRoleRe.FindStringSubmatch(role); t.key != KeyProject || (t.id != sub[1] && !numericIDRe.MatchString(t.id)) {
			problems = append(problems, fmt.Sprintf("role %s is a custom role of project %s: it can only be granted "+
				"on that project", role, sub[1]))
		}
	default:
		problems = append(problems, fmt.Sprintf("role %q is not a role name (roles/<name>, projects/<id>/roles/<name> "+
			"or organizations/<number>/roles/<name>)", role))
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return target{}, errors.New("gcp target: " + strings.Join(problems, "; "))
	}
	return t, nil
}

func prefixHint(v, prefix string) string {
	if strings.HasPrefix(v, prefix) {
		return fmt.Sprintf(" (write the id alone, without %q)", prefix)
	}
	return ""
}

// NormalizePrincipal turns a principal from the identities section into an IAM member: "user:alice@example.com",
// "group:sre@example.com" or "serviceAccount:bot@p.iam.gserviceaccount.com". A bare email becomes a user. The
// email is lowercased (IAM compares member emails case-insensitively).
func NormalizePrincipal(s string) (string, error) {
	kind, email := "user", s
	if i := strings.IndexByte(s, ':'); i >= 0 {
		kind, email = s[:i], s[i+1:]
	}
	switch kind {
	case "user", "group", "serviceAccount":
	default:
		return "", fmt.Errorf("gcp principal: kind %q is not supported (use user:, group: or serviceAccount:, or a bare "+
			"email for a user)", kind)
	}
	if !emailRe.MatchString(email) || len(email) > 254 {
		return "", errors.New("gcp principal: not an email address (user:alice@example.com, group:team@example.com, " +
			"serviceAccount:name@project.iam.gserviceaccount.com)")
	}
	email = strings.ToLower(email)
	if kind == "serviceAccount" && !strings.HasSuffix(email, ".gserviceaccount.com") {
		return "", errors.New("gcp principal: a serviceAccount email ends with .gserviceaccount.com")
	}
	return kind + ":" + email, nil
}

// parseScope checks one Settings.Scopes / Config.Scopes entry and returns it as a target (without role).
func parseScope(s string) (target, error) {
	m := scopeResourceRe.FindStringSubmatch(s)
	if m == nil {
		return target{}, fmt.Errorf("scope %q: want projects/<id>, folders/<number> or organizations/<number>", s)
	}
	key := map[string]string{"projects": KeyProject, "folders": KeyFolder, "organizations": KeyOrganization}[m[1]]
	t, err := parseTarget(map[string]string{key: m[2], KeyRole: "roles/jitbot.scope"})
	if err != nil {
		return target{}, fmt.Errorf("scope %q: %w", s, err)
	}
	t.role = ""
	return t, nil
}

// Settings is the `gcp-iam` provider block of the policy file, for the policy parser:
//
//	providers:
//	  gcp:
//	    type: gcp-iam
//	    gcp-iam:
//	      endpoint: https://cloudresourcemanager.googleapis.com/   # optional
//	      scopes: [projects/prod-data, folders/123456789012]       # optional, for drift reconciliation
//
// Credentials are never configured here: the adapter uses Application Default Credentials.
type Settings struct {
	// Endpoint overrides the Resource Manager base URL (for a private endpoint or tests). Empty means Google's.
	// https only; http is accepted for localhost, 127.0.0.1 and ::1.
	Endpoint string `policy:"endpoint"`
	// Scopes lists the resources ListOwned scans for jitbot bindings: "projects/<id>", "folders/<number>",
	// "organizations/<number>". Empty disables drift reconciliation for this provider.
	Scopes []string `policy:"scopes"`
}

// Validate reports every problem in s at once.
func (s Settings) Validate() error {
	var errs []error
	if s.Endpoint != "" {
		if err := validateEndpoint(s.Endpoint); err != nil {
			errs = append(errs, &providerkit.FieldError{Key: "endpoint", Err: err})
		}
	}
	seen := map[string]bool{}
	for _, sc := range s.Scopes {
		if _, err := parseScope(sc); err != nil {
			errs = append(errs, &providerkit.FieldError{Key: "scopes", Err: err})
		} else if seen[sc] {
			errs = append(errs, providerkit.SettingErrorf("scopes", "scope %q is listed twice", sc))
		}
		seen[sc] = true
	}
	return errors.Join(errs...)
}

// Config returns the adapter configuration for s (Application Default Credentials).
func (s Settings) Config() Config {
	return Config{Endpoint: s.Endpoint, Scopes: slices.Clone(s.Scopes)}
}

func validateEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return errors.New("endpoint: want an absolute https:// URL")
	}
	if u.User != nil {
		return errors.New("endpoint: must not contain credentials (user:password@); the adapter authenticates with " +
			"Application Default Credentials")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("endpoint: must not have a query or fragment")
	}
	if u.Scheme == "http" {
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return errors.New("endpoint: plain http:// is only accepted for localhost, 127.0.0.1 and ::1 (access " +
				"tokens would cross the network unencrypted)")
		}
	}
	return nil
}
