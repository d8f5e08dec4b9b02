package azure

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Target keys understood by the adapter (the policy's role target).
const (
	KeyScope            = "scope"              // ARM scope: /subscriptions/<id>[/resourceGroups/<rg>[/providers/...]] or a management group
	KeyRoleDefinitionID = "role_definition_id" // full role definition id, or its GUID
	KeyPrincipalType    = "principal_type"     // User (default), Group, ServicePrincipal
	KeyMode             = "mode"               // rbac or pim; overrides Config.Mode
)

// Modes.
const (
	ModeRBAC = "rbac" // plain role assignment, created and deleted by jitbot
	ModePIM  = "pim"  // PIM role assignment schedule request: Azure ends the assignment itself at expiry
)

var (
	subScopeRE = regexp.MustCompile(`^/subscriptions/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(/resourceGroups/[A-Za-z0-9_.()\-]{1,90}(/providers/[A-Za-z0-9.]+(/[A-Za-z0-9_.()\-]+)+)?)?$`)
	mgScopeRE  = regexp.MustCompile(`^/providers/Microsoft\.Management/managementGroups/[A-Za-z0-9_.()\-]{1,90}$`)
	roleDefRE  = regexp.MustCompile(`^(/subscriptions/[0-9a-fA-F-]{36}|/providers/Microsoft\.Management/managementGroups/[A-Za-z0-9_.()\-]{1,90})?/providers/Microsoft\.Authorization/roleDefinitions/([0-9a-fA-F-]{36})$`)
)

var principalTypes = map[string]string{"user": "User", "group": "Group", "serviceprincipal": "ServicePrincipal"}

// target is a validated, normalised policy target.
type target struct {
	Scope          string // normalised: leading slash, no trailing slash
	SubscriptionID string // "" for management group scopes
	RoleDefID      string // full id
	RoleGUID       string // lower case
	PrincipalType  string // User, Group or ServicePrincipal
	Mode           string // "" when not overridden
}

// ValidateTarget checks a policy target for this adapter: scope (required), role_definition_id (required),
// principal_type and mode (optional). Unknown keys are refused so that typos do not silently widen access.
func ValidateTarget(t map[string]string) error {
	_, err := parseTarget(t)
	return err
}

func parseTarget(t map[string]string) (target, error) {
	var unknown []string
	for k := range t {
		switch k {
		case KeyScope, KeyRoleDefinitionID, KeyPrincipalType, KeyMode:
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return target{}, fmt.Errorf("azure target: unknown keys %q (known: scope, role_definition_id, principal_type, mode)", unknown)
	}
	var out target
	scope := strings.TrimSuffix(strings.TrimSpace(t[KeyScope]), "/")
	if scope == "" {
		return target{}, fmt.Errorf("azure target: %q is required (e.g. /subscriptions/<id>/resourceGroups/<rg>)", KeyScope)
	}
	if m := subScopeRE.FindStringSubmatch(scope); m != nil {
		out.SubscriptionID = strings.ToLower(m[1])
	} else if !mgScopeRE.MatchString(scope) {
		return target{}, fmt.Errorf("azure target: scope %q is not an ARM scope (/subscriptions/<guid>[/resourceGroups/<rg>[/providers/<ns>/<type>/<name>]] or /providers/Microsoft.Management/managementGroups/<id>)", scope)
	}
	out.Scope = scope

	rd := strings.TrimSpace(t[KeyRoleDefinitionID])
	switch {
	case rd == "":
		return target{}, fmt.Errorf("azure target: %q is required (a role definition GUID or full id)", KeyRoleDefinitionID)
	case IsGUID(rd):
		out.RoleGUID = strings.ToLower(rd)
		if out.SubscriptionID != "" {
			out.RoleDefID = "/subscriptions/" + out.SubscriptionID + "/providers/Microsoft.Authorization/roleDefinitions/" + out.RoleGUID
		} else {
			out.RoleDefID = "/providers/Microsoft.Authorization/roleDefinitions/" + out.RoleGUID
		}
	default:
		m := roleDefRE.FindStringSubmatch(rd)
		if m == nil || !IsGUID(m[2]) {
			return target{}, fmt.Errorf("azure target: role_definition_id %q is neither a GUID nor /[subscriptions/<id>/]providers/Microsoft.Authorization/roleDefinitions/<guid>", rd)
		}
		out.RoleDefID = rd
		out.RoleGUID = strings.ToLower(m[2])
	}

	pt := strings.TrimSpace(t[KeyPrincipalType])
	if pt == "" {
		out.PrincipalType = "User"
	} else if v, ok := principalTypes[strings.ToLower(pt)]; ok {
		out.PrincipalType = v
	} else {
		return target{}, fmt.Errorf("azure target: principal_type %q is not User, Group or ServicePrincipal", pt)
	}

	switch m := strings.ToLower(strings.TrimSpace(t[KeyMode])); m {
	case "":
	case ModeRBAC, ModePIM:
		out.Mode = m
	default:
		return target{}, fmt.Errorf("azure target: mode %q is not rbac or pim", t[KeyMode])
	}
	return out, nil
}

// sdkScope is the scope as the SDK's {scope} path parameter wants it (no leading slash: the SDK adds one).
func (t target) sdkScope() string { return strings.TrimPrefix(t.Scope, "/") }

// roleGUIDOf extracts the GUID at the end of a role definition id ("" if none). Azure answers role definition ids
// in several forms (with and without the subscription prefix), so compare GUIDs.
func roleGUIDOf(id string) string {
	i := strings.LastIndexByte(id, '/')
	g := id[i+1:]
	if !IsGUID(g) {
		return ""
	}
	return strings.ToLower(g)
}

func sameScope(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}
